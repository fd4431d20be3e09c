// ODBC primitives. The connection runs with autocommit off, so the first statement
// begins a transaction (PEP 249); one-phase commit and rollback go through SQLEndTran.
// Two-phase commit goes through the backend's own SQL when the DBMS is one we know
// (PostgreSQL: PREPARE TRANSACTION; MariaDB/MySQL: XA), with the native drivers'
// dialect code, so the two drivers' branches are interchangeable.
//
// A failed statement (run through execute/query) inside a branch makes the branch
// rollback-only here, whatever the ODBC driver does with the failure (psqlODBC may roll
// back only the statement, MariaDB does): preparing the rest of the work would commit
// part of what the application asked for. Statements an application runs itself on
// xarm_odbc_hdbc are not seen here: PostgreSQL aborts the block for them (psqlODBC is
// told not to hide it); MariaDB keeps the branch, as with any MariaDB client.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <exception>
#include <map>
#include <thread>
#include <utility>

#include "odbc.hpp"
#include "xarm/xa.h"

#ifdef XARM_ODBC_WITH_PQ_DIALECT
#include "../pq/dialect.hpp"
#endif
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
#include "../mysql/dialect.hpp"
#include "../mysql/registry.hpp"
#endif

namespace xarm::odbc {

// ---- handles and backends -----------------------------------------------------------

void dbc_deleter::operator()(SQLHDBC h) const noexcept {
    // An open transaction makes some drivers refuse to disconnect (25000): roll it back,
    // as a closing server connection would.
    SQLEndTran(SQL_HANDLE_DBC, h, SQL_ROLLBACK);
    std::unique_lock lk(connect_mutex(), std::defer_lock);
    if (serialize) lk.lock();
    SQLDisconnect(h);
    SQLFreeHandle(SQL_HANDLE_DBC, h);
}

std::mutex& connect_mutex() {
    static std::mutex m;
    return m;
}

bool serialize_connects(std::string_view odbc_driver_name) noexcept {
    // MariaDB Connector/ODBC 3.1 keeps one environment block for all connections made
    // through one ODBC environment. Connecting (the driver manager's SQLSetEnvAttr on
    // it, which reads the block's connection list and writes the block's diagnostics)
    // runs without the block's lock, while another thread's connect or disconnect
    // changes the list and rewrites the diagnostics under it: a data race on that
    // shared block (ThreadSanitizer sees it when threads open resource managers at
    // once). psqlODBC 13 calls setlocale() while connecting, which changes the
    // process's locale under another thread's connect (ThreadSanitizer: setlocale
    // frees the locale name libpq is reading in pg_char_to_encoding).
    return odbc_driver_name.find("maodbc") != std::string_view::npos ||
           odbc_driver_name.find("psqlodbc") != std::string_view::npos;
}

SQLHENV environment() {
    static env_ptr env = [] {
        SQLHENV h = SQL_NULL_HENV;
        if (!ok(SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &h)))
            raise(XAER_RMERR, "HY001", "cannot allocate the ODBC environment (unixODBC)");
        env_ptr p(h);
        // ODBC passes an integer attribute's value in the pointer argument.
        if (!ok(SQLSetEnvAttr(h, SQL_ATTR_ODBC_VERSION,
                              reinterpret_cast<SQLPOINTER>(  // NOLINT(performance-no-int-to-ptr)
                                  static_cast<SQLULEN>(SQL_OV_ODBC3)),
                              0)))
            raise_odbc(SQL_HANDLE_ENV, h, backend::unknown, op::open, "SQLSetEnvAttr(ODBC 3)");
        return p;
    }();
    return env.get();
}

const char* to_string(backend b) noexcept {
    switch (b) {
        case backend::postgresql:
            return "PostgreSQL";
        case backend::mariadb:
            return "MariaDB";
        case backend::mysql:
            return "MySQL";
        case backend::sqlite:
            return "SQLite";
        case backend::virtuoso:
            return "Virtuoso";
        case backend::unknown:
            break;
    }
    return "an unrecognised DBMS";
}

backend backend_from_dbms_name(std::string_view name) noexcept {
    std::string low;
    for (char c : name) low += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (low.find("postgres") != std::string::npos) return backend::postgresql;
    if (low.find("mariadb") != std::string::npos) return backend::mariadb;
    if (low.find("mysql") != std::string::npos) return backend::mysql;
    if (low.find("sqlite") != std::string::npos) return backend::sqlite;
    if (low.find("virtuoso") != std::string::npos) return backend::virtuoso;  // OpenLink Virtuoso
    return backend::unknown;
}

namespace {

std::string get_info(SQLHDBC dbc, SQLUSMALLINT what) {
    std::array<SQLCHAR, 256> buf{};
    SQLSMALLINT len = 0;
    if (!ok(SQLGetInfo(dbc, what, buf.data(), static_cast<SQLSMALLINT>(buf.size()), &len)))
        return {};
    return reinterpret_cast<const char*>(buf.data());
}

#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
// MariaDB/MySQL prepared branches kept attached to a live session of this process, so
// that phase two from any session reaches the connection the server insists on
// (drivers/mysql/registry.hpp, shared with the native driver).
class holder_registry : public mysql::attached_registry<branch_holder> {
  public:
    static holder_registry& instance() {
        // Leaked on purpose: sessions may still close during static destruction.
        static auto* r = new holder_registry;
        return *r;
    }
};
#endif

// Runs sql (no result expected) on dbc, which may be another session's connection;
// the diagnostic when it fails.
std::optional<diag_record> exec_on(SQLHDBC dbc, const std::string& sql) {
    SQLHSTMT raw = SQL_NULL_HSTMT;
    if (!ok(SQLAllocHandle(SQL_HANDLE_STMT, dbc, &raw))) return read_diag(SQL_HANDLE_DBC, dbc);
    stmt_ptr st(raw);
    SQLRETURN rc = SQLExecDirect(raw, reinterpret_cast<SQLCHAR*>(const_cast<char*>(sql.c_str())),
                                 static_cast<SQLINTEGER>(sql.size()));
    if (rc != SQL_NO_DATA && !ok(rc)) return read_diag(SQL_HANDLE_STMT, raw);
    while (ok(SQLMoreResults(raw))) {
    }
    return std::nullopt;
}

bool key_is(std::string_view k, std::string_view want) {
    while (!k.empty() && (k.front() == ' ' || k.front() == '\t')) k.remove_prefix(1);
    while (!k.empty() && (k.back() == ' ' || k.back() == '\t')) k.remove_suffix(1);
    return k.size() == want.size() &&
           std::equal(k.begin(), k.end(), want.begin(), [](char a, char b) {
               return std::toupper(static_cast<unsigned char>(a)) == b;
           });
}

}  // namespace

xarm_keys take_xarm_keys(std::string_view conn) {
    xarm_keys out;
    std::size_t i = 0;
    while (i < conn.size()) {
        // One attribute: up to the next ';' outside braces.
        std::size_t j = i;
        bool braced = false;
        while (j < conn.size() && (braced || conn[j] != ';')) {
            if (conn[j] == '{')
                braced = true;
            else if (conn[j] == '}')
                braced = false;
            ++j;
        }
        const std::string_view attr = conn.substr(i, j - i);
        const auto eq = attr.find('=');
        if (eq != std::string_view::npos && key_is(attr.substr(0, eq), "XARM_READ_ONLY_VOTE")) {
            std::string v;
            for (char c : attr.substr(eq + 1))
                if (c != ' ' && c != '\t')
                    v += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (v == "on" || v == "1" || v == "yes" || v == "true")
                out.read_only_vote = true;
            else if (v == "off" || v == "0" || v == "no" || v == "false")
                out.read_only_vote = false;
            else
                raise(XAER_INVAL, "HY024",
                      "info string: XARM_READ_ONLY_VOTE takes on or off, not '" + v + "'");
        } else if (!attr.empty()) {
            if (!out.conn.empty()) out.conn += ';';
            out.conn += attr;
        }
        i = j + 1;
    }
    if (!conn.empty() && conn.back() == ';' && !out.conn.empty()) out.conn += ';';
    return out;
}

// ---- connection -------------------------------------------------------------------

session::session(const std::string& info) {
    xarm_keys keys = take_xarm_keys(info);
    std::string conn = std::move(keys.conn);
    m_read_only_vote = keys.read_only_vote;
    if (conn.find_first_not_of(" \t\r\n") == std::string::npos)
        raise(
            XAER_INVAL, "08001",
            "info string: an ODBC connection string is required (e.g. DSN=name;UID=user;PWD=...)");
    connect(conn);
    recognise();
#ifdef XARM_ODBC_WITH_PQ_DIALECT
    // psqlODBC (13.02) rolls back only the failed statement by default (a savepoint
    // around each one), and with Protocol=7.4-1 rolls back the whole transaction and
    // carries on in a new one: either way a later PREPARE TRANSACTION would prepare part
    // of the work. Reconnect with Protocol=7.4-0 (no rollback by the driver), so that
    // the server's own rule holds (an error aborts the whole block), also for the work
    // applications do directly on xarm_odbc_hdbc. The later key wins in psqlODBC.
    if (m_backend == backend::postgresql && m_odbc_driver.find("psqlodbc") != std::string::npos) {
        m_dbc.reset();
        connect(conn + (conn.ends_with(';') ? "" : ";") + "Protocol=7.4-0");
    }
#endif
    declare();
}

session::~session() {
    if (!m_holder) return;
    // A prepared branch still attached here: detach it and wait until the server has
    // closed the old session, so that once xa_close returns any connection, of any
    // process, can finish the branch (costs a reconnect only in this case).
    try {
        detach_held();
    } catch (const std::exception&) {
        // The connection is gone: the server detaches the branch by itself.
    }
    std::lock_guard g(m_holder->mu);
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    if (m_holder->prepared)
        holder_registry::instance().detached(m_server, *m_holder->prepared, m_session_id);
#endif
    m_holder->dbc = SQL_NULL_HDBC;
}

void session::connect(const std::string& conn) {
    SQLHDBC raw = SQL_NULL_HDBC;
    if (!ok(SQLAllocHandle(SQL_HANDLE_DBC, environment(), &raw)))
        raise_odbc(SQL_HANDLE_ENV, environment(), backend::unknown, op::open,
                   "cannot allocate an ODBC connection handle");
    SQLSMALLINT out_len = 0;
    // Until it has connected, the driver behind conn is unknown: serialize.
    std::unique_lock lk(connect_mutex(), std::defer_lock);
    const bool serialize = m_odbc_driver.empty() || serialize_connects(m_odbc_driver);
    if (serialize) lk.lock();
    SQLRETURN rc =
        SQLDriverConnect(raw, nullptr, reinterpret_cast<SQLCHAR*>(const_cast<char*>(conn.c_str())),
                         SQL_NTS, nullptr, 0, &out_len, SQL_DRIVER_NOPROMPT);
    if (serialize) lk.unlock();
    if (!ok(rc)) {
        diag_record d = read_diag(SQL_HANDLE_DBC, raw);
        SQLFreeHandle(SQL_HANDLE_DBC, raw);  // never connected: nothing to disconnect
        // The message is the driver manager's or the driver's, never the connection string.
        raise(diagnostic{d.sqlstate == "IM002" ? XAER_INVAL : XAER_RMERR,
                         d.sqlstate,
                         d.native,
                         {},
                         "cannot connect through ODBC (SQLDriverConnect): " + d.message});
    }
    m_dbc.reset(raw);
    m_dbc.get_deleter().serialize = serialize;
    m_conn = conn;
    m_autocommit = true;
    set_autocommit(false);
}

void session::recognise() {
    const std::string name = get_info(m_dbc.get(), SQL_DBMS_NAME);
    const std::string ver = get_info(m_dbc.get(), SQL_DBMS_VER);
    m_odbc_driver = get_info(m_dbc.get(), SQL_DRIVER_NAME);
    m_dbc.get_deleter().serialize = m_odbc_driver.empty() || serialize_connects(m_odbc_driver);
    m_backend = backend_from_dbms_name(name);
    m_dbms = fmt::format("{} {}", name.empty() ? "unnamed DBMS" : name, ver);
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    // Connector/ODBC may call a MariaDB server "MySQL", and SQL_DBMS_VER is only the
    // number: the server's own version string says which it is.
    if (m_backend == backend::mysql) {
        auto v = run("SELECT VERSION()", true);
        if (!v.failed && !v.rows.rows.empty() && !v.rows.rows[0].empty() && v.rows.rows[0][0])
            m_server_version = *v.rows.rows[0][0];
        if (mysql::detect_dialect(m_server_version) == mysql::dialect::mariadb)
            m_backend = backend::mariadb;
        SQLEndTran(SQL_HANDLE_DBC, m_dbc.get(), SQL_ROLLBACK);
    }
#endif
}

void session::declare() {
    const std::string via = fmt::format("through ODBC ({}, {})", m_dbms,
                                        m_odbc_driver.empty() ? "driver" : m_odbc_driver);
    capability_set c;
    c.yes(capability::one_phase, "SQLEndTran(SQL_COMMIT) of the branch's transaction " + via)
        .yes(capability::join, "TMJOIN of an ended branch on the same connection")
        .yes(capability::suspend_resume, "on the same thread, with no other branch in between")
        .no(capability::migrate,
            "an ODBC connection's transaction belongs to the connection, and xarm keeps one "
            "connection per thread: a branch cannot move to another thread")
        .no(capability::async, "this driver makes ODBC calls synchronously")
        .no(capability::interleave, "an ODBC connection holds one transaction at a time")
        .no(capability::timeout,
            "ODBC's timeouts (SQL_ATTR_CONNECTION_TIMEOUT, SQL_ATTR_QUERY_TIMEOUT) bound waits "
            "for the server, not a transaction's inactivity; xarm gives a branch a timeout "
            "through ODBC only with a PostgreSQL backend, whose own setting it knows; this "
            "connection reaches " +
                m_dbms);
    const std::string no_2pc =
        "ODBC has no two-phase commit (its enlistment attributes need Microsoft's DTC), and "
        "xarm does two-phase through ODBC only with a backend whose own SQL it knows "
        "(PostgreSQL, MariaDB/MySQL); this connection reaches " +
        m_dbms;
    switch (m_backend) {
        case backend::postgresql:
            declare_postgresql(c, via);
            break;
        case backend::mariadb:
        case backend::mysql:
            declare_mysql(c, via);
            break;
        case backend::sqlite:
            c.no(capability::two_phase,
                 "SQLite cannot keep a prepared transaction: a transaction that survives the "
                 "crash of the process that prepared it does not exist in SQLite (" +
                     via + ")")
                .yes(capability::recovery,
                     "always empty: a SQLite backend never holds a prepared branch")
                .no(capability::read_only_vote, "there is no prepare to vote at");
            break;
        case backend::virtuoso:
            declare_virtuoso(c, via);
            break;
        case backend::unknown:
            c.no(capability::two_phase, no_2pc)
                .no(capability::recovery,
                    "there is no portable way to list a DBMS's prepared transactions through "
                    "ODBC, and an empty list could hide branches this DBMS holds; this "
                    "connection reaches " +
                        m_dbms)
                .no(capability::read_only_vote, "there is no prepare to vote at");
            break;
    }
    m_caps = std::move(c);
}

namespace {
// A backend whose dialect driver was not built: no two-phase through ODBC.
[[maybe_unused]] void without_dialect(capability_set& c, const std::string& why) {
    c.no(capability::two_phase, why)
        .no(capability::recovery, why)
        .no(capability::read_only_vote, why);
}
}  // namespace

// Two-phase through ODBC to PostgreSQL: the pq driver's own statements and capabilities.
void session::declare_postgresql(capability_set& c, const std::string& via) {
#ifdef XARM_ODBC_WITH_PQ_DIALECT
    long max_prepared = 0;
    auto r =
        run_autocommit(pq::max_prepared_sql, true, op::open, "reading max_prepared_transactions");
    if (!r.rows.empty() && r.rows[0].size() == 1 && r.rows[0][0]) {
        try {
            max_prepared = std::stol(*r.rows[0][0]);
        } catch (const std::exception&) {
            max_prepared = 0;
        }
    }
    for (const auto& s : pq::capabilities_for(max_prepared).list()) {
        if (s.what != capability::two_phase && s.what != capability::recovery &&
            s.what != capability::read_only_vote)
            continue;
        if (s.supported)
            c.yes(s.what, s.reason + ", " + via);
        else
            c.no(s.what, s.reason);
    }
    m_two_phase = max_prepared > 0;
    c.yes(capability::timeout,
          "SET LOCAL idle_in_transaction_session_timeout as the branch's first "
          "statement " +
              via +
              ": PostgreSQL ends the session (rolling the branch back) once it has been "
              "idle in the branch that long; a prepared branch is not timed");
#else
    without_dialect(c, "this build of xarm has no PostgreSQL dialect (drivers/pq)");
#endif
}

// Two-phase through ODBC to MariaDB or MySQL: XA statements, with the mysql driver's
// dialect (recover format, server traits) and the branch holder for phase two from
// other threads.
void session::declare_mysql(capability_set& c, const std::string& via) {
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    c.yes(capability::two_phase,
          "XA START/END/PREPARE/COMMIT/ROLLBACK " + via +
              "; the server keeps a prepared branch attached to its session: phase two "
              "on the same session runs there, from another thread of this process on "
              "that session's connection, and anything else this session does first "
              "reopens the connection to detach the branch (xarm_odbc_hdbc stays the "
              "same handle)")
        .yes(capability::recovery,
             std::string("XA RECOVER ") +
                 (m_backend == backend::mariadb ? "FORMAT='SQL'" : "CONVERT XID") +
                 ", read byte-exact " + via)
        .no(capability::read_only_vote,
            "MySQL's XA PREPARE gives no read-only answer, and xarm reads "
            "MariaDB's session counters to tell");
    if (m_backend == backend::mariadb && m_read_only_vote)
        c.yes(capability::read_only_vote,
              "XARM_READ_ONLY_VOTE=on: a branch whose session write counters (rows "
              "written, updated or deleted; DELETE and UPDATE statements) did not move "
              "since XA START is rolled back at prepare and votes XA_RDONLY; MariaDB "
              "would otherwise discard it once its session ends, and XA COMMIT from "
              "elsewhere would answer XA_HEURRB. Cost: about 1 ms of server time for "
              "each of the two readings per branch " +
                  via);
    else if (m_backend == backend::mariadb)
        c.no(capability::read_only_vote,
             "off by default (XARM_READ_ONLY_VOTE=off): a branch that wrote nothing "
             "votes XA_OK and is committed on the session that prepared it, from any "
             "thread of this process; MariaDB discards such a branch once that session "
             "ends (xa_close, another branch started before phase two, a crash), and "
             "XA COMMIT from elsewhere then answers XA_HEURRB. Add "
             "XARM_READ_ONLY_VOTE=on to the connection string to vote XA_RDONLY "
             "instead, at the cost of reading the session write counters "
             "(information_schema.SESSION_STATUS, about 1 ms of server time per "
             "reading, two per branch)");
    c.yes(capability::one_phase, "XA COMMIT ... ONE PHASE " + via);
    m_session_id = fetch_session_id();
    m_holder = std::make_shared<branch_holder>();
    m_holder->dbc = m_dbc.get();
    m_holder->session_id = m_session_id;
    m_holder->which = m_backend;
    if (m_backend == backend::mysql) {
        const auto traits = mysql::traits_of(mysql::parse_server_version(m_server_version));
        m_detach_on_prepare = traits.has_detach_on_prepare && read_detach_on_prepare();
        if (traits.recover_needs_privilege)
            c.yes(capability::recovery,
                  "XA RECOVER CONVERT XID, read byte-exact " + via +
                      "; MySQL 8 answers it only to users with the XA_RECOVER_ADMIN "
                      "privilege (error 1227 otherwise)");
    }
    if (m_backend == backend::mysql && m_odbc_driver.find("maodbc") != std::string::npos)
        c.no(capability::recovery,
             "MariaDB Connector/ODBC cannot read XA RECOVER's result (it sees no "
             "columns and leaves the connection unusable), and a MySQL server has no "
             "anonymous compound statement to wrap it in: use MySQL's Connector/ODBC "
             "or the native mysql driver to recover");
    m_two_phase = true;
#else
    without_dialect(c, "this build of xarm has no MySQL dialect (drivers/mysql)");
#endif
}

void session::set_autocommit(bool on) {
    if (m_autocommit == on) return;
    const auto v = static_cast<SQLULEN>(on ? SQL_AUTOCOMMIT_ON : SQL_AUTOCOMMIT_OFF);
    // ODBC passes an integer attribute's value in the pointer argument.
    if (!ok(SQLSetConnectAttr(m_dbc.get(), SQL_ATTR_AUTOCOMMIT,
                              reinterpret_cast<SQLPOINTER>(v),  // NOLINT(performance-no-int-to-ptr)
                              0)))
        raise_odbc(SQL_HANDLE_DBC, m_dbc.get(), m_backend, op::statement,
                   on ? "SQLSetConnectAttr(autocommit on)" : "SQLSetConnectAttr(autocommit off)");
    m_autocommit = on;
}

void session::reconnect() {
    // SQLDisconnect + SQLDriverConnect on the same handle: the value applications got
    // from xarm_odbc_hdbc stays valid (their statement handles do not: ours are freed
    // first and prepared again on their next use).
    release_statement_handles();
    SQLSMALLINT out_len = 0;
    SQLRETURN rc = SQL_ERROR;
    {
        std::unique_lock lk(connect_mutex(), std::defer_lock);
        if (m_dbc.get_deleter().serialize) lk.lock();
        SQLDisconnect(m_dbc.get());
        rc = SQLDriverConnect(m_dbc.get(), nullptr,
                              reinterpret_cast<SQLCHAR*>(const_cast<char*>(m_conn.c_str())),
                              SQL_NTS, nullptr, 0, &out_len, SQL_DRIVER_NOPROMPT);
    }
    if (!ok(rc)) {
        diag_record d = read_diag(SQL_HANDLE_DBC, m_dbc.get());
        // The branch is prepared on the server; only this session is gone.
        raise(diagnostic{XAER_RMFAIL,
                         d.sqlstate,
                         d.native,
                         {},
                         "reopening the connection to detach a prepared branch from it "
                         "failed (the branch stays prepared on the server): " +
                             d.message});
    }
    m_autocommit = true;
    set_autocommit(false);
    m_session_id = fetch_session_id();
    if (m_holder) m_holder->session_id = m_session_id;
}

std::optional<unsigned long long> session::write_counter() {
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    auto r = run(mysql::write_counter_sql, true);
    if (r.failed || r.rows.rows.empty() || r.rows.rows[0].empty() || !r.rows.rows[0][0])
        return std::nullopt;
    return mysql::parse_write_counter(*r.rows.rows[0][0]);
#else
    return std::nullopt;
#endif
}

long session::fetch_session_id() {
    auto r = run("SELECT CONNECTION_ID(), @@hostname, @@port", true);
    SQLEndTran(SQL_HANDLE_DBC, m_dbc.get(), SQL_ROLLBACK);
    if (r.failed || r.rows.rows.empty() || r.rows.rows[0].size() < 3 || !r.rows.rows[0][0])
        return 0;
    // The registry's key: branch names are server-wide (the connection string may differ).
    if (m_server.empty())
        m_server =
            fmt::format("{}:{}", r.rows.rows[0][1].value_or("?"), r.rows.rows[0][2].value_or("?"));
    try {
        return std::stol(*r.rows.rows[0][0]);
    } catch (const std::exception&) {
        return 0;
    }
}

void session::wait_session_closed(long id) {
    if (id <= 0) return;
        // SQLDisconnect returns before the server has torn the session down; until it has,
        // the prepared branch is still attached there (XA COMMIT elsewhere says XAER_NOTA,
        // or worse: see wait_session_gone).
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    mysql::wait_session_gone(id, [&](const std::string& q) { return count_rows(q); });
#endif
}

std::optional<long> session::count_rows(const std::string& sql) {
    auto r = run(sql, true);
    SQLEndTran(SQL_HANDLE_DBC, m_dbc.get(), SQL_ROLLBACK);
    if (r.failed || r.rows.rows.empty() || r.rows.rows[0].empty() || !r.rows.rows[0][0])
        return std::nullopt;
    try {
        return std::stol(*r.rows.rows[0][0]);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

bool session::read_detach_on_prepare() {
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    // MySQL 8.0.30+: XA PREPARE detaches the branch from the session by itself (the
    // default); then nothing is held after prepare and no reconnect is ever needed.
    auto r = run(mysql::detach_on_prepare_sql, true);
    SQLEndTran(SQL_HANDLE_DBC, m_dbc.get(), SQL_ROLLBACK);
    return !r.failed && !r.rows.rows.empty() && !r.rows.rows[0].empty() && r.rows.rows[0][0] &&
           mysql::parse_detach_on_prepare(*r.rows.rows[0][0]);
#else
    return false;
#endif
}

void session::detach_held() {
    if (!m_holder) return;
    std::lock_guard g(m_holder->mu);
    if (!m_holder->prepared) return;  // none, or another thread finished it meanwhile
    [[maybe_unused]] const xid x = *std::exchange(m_holder->prepared, std::nullopt);
    const long old_session = m_session_id;
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    holder_registry::instance().detached(m_server, x, old_session);
#endif
    reconnect();
    // Until the server has torn the old session down the branch is still attached there
    // and XA COMMIT elsewhere says unknown XID: wait (briefly) for that here, so that
    // another process can finish the branch from now on.
    wait_session_closed(old_session);
}

// ---- statements -------------------------------------------------------------------

result session::run_or_raise(std::string_view sql, bool collect, op o, std::string_view context) {
    auto out = run(sql, collect);
    if (out.failed) raise_diag(out.diag, m_backend, o, context);
    return std::move(out.rows);
}

result session::run_autocommit(std::string_view sql, bool collect, op o, std::string_view context) {
    // With a transaction open on this connection, switching autocommit on would commit
    // it: run inside it instead (PostgreSQL then refuses COMMIT PREPARED with 25001).
    if (m_branch || m_local) return run_or_raise(sql, collect, o, context);
    set_autocommit(true);
    auto out = run(sql, collect);
    set_autocommit(false);
    if (out.failed) raise_diag(out.diag, m_backend, o, context);
    return std::move(out.rows);
}

void session::end_tran(SQLSMALLINT what, op o, std::string_view context) {
    if (!ok(SQLEndTran(SQL_HANDLE_DBC, m_dbc.get(), what)))
        raise_odbc(SQL_HANDLE_DBC, m_dbc.get(), m_backend, o, context);
}

void session::note_failure(const diag_record& d) {
    if (m_branch && !m_branch_failure) m_branch_failure = d;
}

void session::commit_local() {
    if (!m_local) return;
    m_local = false;
    end_tran(SQL_COMMIT, op::rollback, "COMMIT (SQLEndTran)");
}

void session::rollback_local() {
    if (!m_local) return;
    m_local = false;
    end_tran(SQL_ROLLBACK, op::rollback, "ROLLBACK (SQLEndTran)");
}

// ---- branches ---------------------------------------------------------------------

void session::start([[maybe_unused]] const xid& x, start_mode mode) {
    if (mode != start_mode::fresh) return;  // join/resume: the transaction is still open
    detach_held();
    m_branch_failure.reset();
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    if (m_backend == backend::mariadb || m_backend == backend::mysql) {
        run_or_raise(mysql::xa_start_sql(x), false, op::start, "XA START");
        m_xa_end_pending = true;
        m_write_base =
            m_backend == backend::mariadb && m_read_only_vote ? write_counter() : std::nullopt;
    }
#endif
    m_branch = true;
}

void session::start_with_timeout(const xid& x, std::chrono::seconds timeout) {
#ifdef XARM_ODBC_WITH_PQ_DIALECT
    // Declared for PostgreSQL backends only (the core refuses the others).
    const std::string limit = pq::branch_timeout_sql(timeout);
    start(x, start_mode::fresh);
    try {
        run_or_raise(limit, false, op::start, "SET LOCAL idle_in_transaction_session_timeout");
    } catch (const error&) {
        // No branch began (the core forgets it): leave no transaction behind either.
        try {
            rollback(x, false);
        } catch (const error&) {
        }
        throw;
    }
#else
    native_session::start_with_timeout(x, timeout);
#endif
}

void session::end(const xid&, end_mode mode) {
    // XA END is sent when the branch is prepared or finished, so that TMJOIN and
    // TMRESUME need nothing from the server.
    if (mode == end_mode::suspend || !m_branch_failure) return;
    const diag_record d = *m_branch_failure;
    raise(diagnostic{rollback_code_for(d, m_backend),
                     d.sqlstate,
                     d.native,
                     {},
                     "a statement of the branch failed, so the branch can only be rolled back "
                     "(preparing the rest would commit part of its work): " +
                         d.message});
}

void session::xa_end_if_needed([[maybe_unused]] const xid& x) {
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    if (!m_xa_end_pending) return;
    m_xa_end_pending = false;
    run_or_raise(mysql::xa_end_sql(x), false, op::end, "XA END");
#endif
}

vote session::prepare(const xid& x) {
    if (!m_branch)
        raise(XAER_NOTA, "XAE04", "no branch is open on this ODBC connection: " + x.to_string());
    if (m_backend == backend::postgresql && m_two_phase) return prepare_pq(x);
    if ((m_backend == backend::mariadb || m_backend == backend::mysql) && m_two_phase)
        return prepare_my(x);
    // Unreachable: the core refuses prepare because two_phase is declared missing.
    raise(XAER_RMERR, "0A000", "two-phase commit is not supported through ODBC to " + m_dbms);
}

vote session::prepare_pq([[maybe_unused]] const xid& x) {
#ifdef XARM_ODBC_WITH_PQ_DIALECT
    m_branch = false;
    auto abandon = [&](const diag_record& d, op o, std::string_view what) {
        SQLEndTran(SQL_HANDLE_DBC, m_dbc.get(), SQL_ROLLBACK);
        raise_diag(d, m_backend, o, what);
    };
    // The read-only check also finds a transaction block the server aborted after an
    // error (25P02), which PREPARE TRANSACTION would silently turn into ROLLBACK.
    auto check = run(pq::wrote_nothing_sql, true);
    if (check.failed)
        abandon(check.diag, op::end, "checking the branch before PREPARE TRANSACTION");
    if (!check.rows.rows.empty() && !check.rows.rows[0].empty() && check.rows.rows[0][0] &&
        pq::parse_bool(*check.rows.rows[0][0])) {
        end_tran(SQL_ROLLBACK, op::rollback, "ROLLBACK of a read-only branch");
        return vote::read_only;
    }
    auto prep = run(pq::prepare_sql(x), false);
    if (prep.failed) abandon(prep.diag, op::prepare, "PREPARE TRANSACTION");
    return vote::ok;
#else
    raise(XAER_RMERR, "0A000", "no PostgreSQL dialect in this build");
#endif
}

vote session::prepare_my([[maybe_unused]] const xid& x) {
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    m_branch = false;
    // Wrote nothing (the counters are read while the branch is still active): roll back
    // here and vote read-only, rather than prepare a branch MariaDB would discard when
    // the connection is reopened below. Unknown counts as written.
    if (m_xa_end_pending && m_write_base && write_counter() == m_write_base) {
        try {
            xa_end_if_needed(x);
            run_or_raise(mysql::xa_rollback_sql(x), false, op::prepare,
                         "XA ROLLBACK of a branch that wrote nothing");
        } catch (const error&) {
            run(mysql::xa_rollback_sql(x), false);
            throw;
        }
        return vote::read_only;
    }
    try {
        xa_end_if_needed(x);
        run_or_raise(mysql::xa_prepare_sql(x), false, op::prepare, "XA PREPARE");
    } catch (const error&) {
        // Whatever XA END or XA PREPARE left, the branch is over: roll back what remains.
        run(mysql::xa_rollback_sql(x), false);
        throw;
    }
    // The server keeps the prepared branch attached to this session (MySQL 8 with
    // xa_detach_on_prepare=ON does not): keep it there, so that phase two on this session
    // costs nothing; the registry lets another thread of this process finish it here, and
    // anything else this session does first detaches it (detach_held).
    if (!m_detach_on_prepare) {
        {
            std::lock_guard g(m_holder->mu);
            m_holder->prepared = x;
        }
        holder_registry::instance().attach(m_server, x, m_holder);
    }
    return vote::ok;
#else
    raise(XAER_RMERR, "0A000", "no MySQL dialect in this build");
#endif
}

void session::commit(const xid& x, bool one_phase) {
    const bool mysql_like = m_backend == backend::mariadb || m_backend == backend::mysql;
    if (one_phase) {
        if (!m_branch)
            raise(XAER_NOTA, "XAE04",
                  "no branch is open on this ODBC connection: " + x.to_string());
        m_branch = false;
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
        if (mysql_like) {
            try {
                xa_end_if_needed(x);
                run_or_raise(mysql::xa_commit_sql(x, true), false, op::commit_one,
                             "XA COMMIT ONE PHASE");
            } catch (const operational_error&) {
                throw;
            } catch (const error&) {
                run(mysql::xa_rollback_sql(x), false);
                throw;
            }
            return;
        }
#endif
#ifdef XARM_ODBC_WITH_PQ_DIALECT
        if (m_backend == backend::postgresql) {
            // COMMIT of a block the server aborted answers ROLLBACK, which ODBC reports as
            // success. A failure of a statement run through xarm is known here; one run
            // on xarm_odbc_hdbc is not, so once the application has the handle, look
            // first (a round trip).
            if (m_branch_failure) {
                const diag_record d = *std::exchange(m_branch_failure, std::nullopt);
                SQLEndTran(SQL_HANDLE_DBC, m_dbc.get(), SQL_ROLLBACK);
                raise_diag(d, m_backend, op::end, "a statement of the branch failed before COMMIT");
            }
            if (m_direct) {
                auto check = run(pq::wrote_nothing_sql, false);
                if (check.failed) {
                    SQLEndTran(SQL_HANDLE_DBC, m_dbc.get(), SQL_ROLLBACK);
                    raise_diag(check.diag, m_backend, op::end, "checking the branch before COMMIT");
                }
            }
        }
#endif
        if (!ok(SQLEndTran(SQL_HANDLE_DBC, m_dbc.get(), SQL_COMMIT))) {
            // A failed COMMIT (a deferred constraint, a serialization failure) may leave
            // the transaction open in some drivers: roll it back, so that the one-phase
            // outcome is a clean rollback, never a half-state.
            diag_record d = read_diag(SQL_HANDLE_DBC, m_dbc.get());
            SQLEndTran(SQL_HANDLE_DBC, m_dbc.get(), SQL_ROLLBACK);
            raise_diag(d, m_backend, op::commit_one, "COMMIT (SQLEndTran)");
        }
        return;
    }
    finish_prepared(x, true);
}

void session::rollback(const xid& x, bool prepared) {
    const bool mysql_like = m_backend == backend::mariadb || m_backend == backend::mysql;
    if (!prepared) {
        if (!m_branch)
            raise(XAER_NOTA, "XAE04",
                  "no branch is open on this ODBC connection: " + x.to_string());
        m_branch = false;
        m_branch_failure.reset();
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
        if (mysql_like) {
            // XA END fails when the server already rolled the branch back (deadlock):
            // XA ROLLBACK still ends it.
            if (m_xa_end_pending) {
                m_xa_end_pending = false;
                auto e = run(mysql::xa_end_sql(x), false);
                if (e.failed && is_connection_loss(e.diag, m_backend))
                    raise_diag(e.diag, m_backend, op::rollback, "XA END");
            }
            auto r = run(mysql::xa_rollback_sql(x), false);
            // ER_XA_RBROLLBACK etc.: rolled back all the same.
            if (r.failed && !is_rollback_code(xa_code_for(r.diag, m_backend, op::finish)))
                raise_diag(r.diag, m_backend, op::rollback, "XA ROLLBACK");
            return;
        }
#endif
        end_tran(SQL_ROLLBACK, op::rollback, "ROLLBACK (SQLEndTran)");
        return;
    }
    finish_prepared(x, false);
}

// Phase two of a prepared branch (ours or recovered), through the backend's own SQL.
void session::finish_prepared([[maybe_unused]] const xid& x, [[maybe_unused]] bool commit) {
    if (!m_two_phase)
        raise(XAER_NOTA, "XAE04",
              "no such prepared branch: two-phase commit is not supported "
              "through ODBC to " +
                  m_dbms);
#ifdef XARM_ODBC_WITH_PQ_DIALECT
    if (m_backend == backend::postgresql) {
        if (commit)
            run_autocommit(pq::commit_prepared_sql(x), false, op::commit_prepared,
                           "COMMIT PREPARED");
        else
            run_autocommit(pq::rollback_prepared_sql(x), false, op::finish, "ROLLBACK PREPARED");
        return;
    }
#endif
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    if (m_backend == backend::mariadb || m_backend == backend::mysql) {
        finish_my(x, commit);
        return;
    }
#endif
}

std::vector<xid> session::recover() {
    switch (m_backend) {
        case backend::postgresql: {
#ifdef XARM_ODBC_WITH_PQ_DIALECT
            auto r =
                run_autocommit(pq::recover_sql, true, op::recover, "reading pg_prepared_xacts");
            std::vector<std::string> gids;
            for (const auto& row : r.rows)
                if (!row.empty() && row[0]) gids.push_back(*row[0]);
            return pq::parse_recovered(gids);
#else
            break;
#endif
        }
        case backend::mariadb:
        case backend::mysql: {
            // XA RECOVER (also in a compound statement) works on a connection that holds a
            // prepared branch, but switching autocommit does not (1399): held, the query
            // runs as it is, with the holder locked against another thread's phase two.
            if (!m_holder) return recover_my(false);
            std::unique_lock lk(m_holder->mu);
            auto listed = recover_my(m_holder->prepared.has_value());
            lk.unlock();
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
            holder_registry::instance().prune(m_server, listed);
#endif
            return listed;
        }
        default:
            break;
    }
    return {};  // SQLite: never a prepared branch (unknown backends never get here)
}

bool session::finish_on_holder([[maybe_unused]] branch_holder& h, [[maybe_unused]] const xid& x,
                               [[maybe_unused]] bool commit) {
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    const char* what = mysql::xa_finish_verb(commit);
    auto& reg = holder_registry::instance();
    // The branch's own session finishes it: no autocommit switch needed.
    const auto d = exec_on(h.dbc, mysql::xa_finish_sql(x, commit));
    if (!d) {
        h.prepared.reset();
        reg.forget(m_server, x);
        return true;
    }
    const auto n = static_cast<unsigned>(d->native);
    if (is_connection_loss(*d, h.which)) {
        // The server detaches the branch when it notices: finish it from another
        // connection (or by recovery).
        h.prepared.reset();
        reg.detached(m_server, x, h.session_id);
        raise_diag(*d, h.which, op::finish, what);
    }
    // ER_XA_RBROLLBACK: the server rolled the branch back; unknown XID (or XAER_OUTSIDE,
    // which the holding session never answers for its own prepared branch): finished on
    // this connection behind xarm's back (XA COMMIT through xarm_odbc_hdbc).
    if (n == mysql::errnum::xa_rbrollback || n == mysql::errnum::xaer_nota ||
        n == mysql::errnum::xaer_outside) {
        h.prepared.reset();
        reg.forget(m_server, x);
        if (n != mysql::errnum::xa_rbrollback) raise_diag(*d, h.which, op::finish, what);
        if (commit) mysql::raise_rolled_back_at_commit(x, n);
        return true;
    }
    raise_diag(*d, h.which, op::finish, what);
#else
    return false;
#endif
}

void session::finish_my([[maybe_unused]] const xid& x, [[maybe_unused]] bool commit) {
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    const std::string sql = mysql::xa_finish_sql(x, commit);
    const char* what = mysql::xa_finish_verb(commit);
    auto& reg = holder_registry::instance();
    // 1. Held by this session's connection: the common path (prepare, then commit).
    {
        std::lock_guard g(m_holder->mu);
        if (m_holder->prepared == x && finish_on_holder(*m_holder, x, commit)) return;
    }
    // 2. Held by another session of this process (another thread): finish it there.
    auto [h, was_ours, closed_session] = reg.owner(m_server, x);
    if (h && h != m_holder) {
        std::lock_guard g(h->mu);
        if (h->dbc != SQL_NULL_HDBC && h->prepared == x && finish_on_holder(*h, x, commit)) return;
    }
    // 3. Detached (its session reconnected or ended, or the server restarted): any
    // connection that holds no branch itself will do.
    detach_held();
    // Not while the server tears down the session that held the branch (closed here, or
    // unknown: any closing one): an XA COMMIT meanwhile would answer success, committing
    // nothing.
    if (!mysql::wait_session_gone(closed_session,
                                  [&](const std::string& q) { return count_rows(q); }))
        raise(commit ? XA_RETRY : XAER_RMERR, "55006", mysql::closing_session_message(what, x));
    std::exception_ptr last;
    const auto out = mysql::finish_detached(
        [&]() -> unsigned {
            try {
                // MariaDB refuses XA COMMIT/ROLLBACK of a branch other than the session's
                // own in "multi-statement transaction mode", which autocommit off is.
                run_autocommit(sql, false, op::finish, what);
                return 0;
            } catch (const error& e) {
                if (e.native_code() <= 0 || e.xa_code() == XAER_RMFAIL) throw;
                last = std::current_exception();
                return static_cast<unsigned>(e.native_code());
            }
        },
        [&] {
            const auto listed = recover_my(false);
            return std::find(listed.begin(), listed.end(), x) != listed.end();
        },
        was_ours);
    switch (out.what) {
        case mysql::detached_result::finished:
            break;
        case mysql::detached_result::rolled_back:
            // Done, for a rollback; for a commit a heuristic rollback, never a success.
            if (was_ours) reg.forget(m_server, x);
            if (commit) mysql::raise_rolled_back_at_commit(x, out.errnum);
            return;
        case mysql::detached_result::not_prepared:
            if (was_ours) reg.forget(m_server, x);
            std::rethrow_exception(last);
        case mysql::detached_result::still_attached:
            raise(commit ? XA_RETRY : XAER_RMERR, "55006", mysql::still_attached_message(what, x),
                  static_cast<long>(out.errnum));
        case mysql::detached_result::failed:
            std::rethrow_exception(last);
    }
    if (was_ours) reg.forget(m_server, x);
#endif
}

std::vector<xid> session::recover_my(bool held) {
    std::vector<xid> out;
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    const auto d = m_backend == backend::mariadb ? mysql::dialect::mariadb : mysql::dialect::mysql;
    // MariaDB Connector/ODBC (3.1) does not see XA RECOVER's result set: it reports no
    // columns, leaves the rows unread (every later statement on the connection fails
    // with an empty diagnostic) and can crash on the next call. The same statement in an
    // anonymous compound statement comes back as an ordinary result set, read as any
    // CALL's; MySQL has no such statement, and Connector/ODBC is not used there.
    const std::string sql = d == mysql::dialect::mariadb
                                ? "BEGIN NOT ATOMIC " + mysql::xa_recover_sql(d) + "; END"
                                : mysql::xa_recover_sql(d);
    auto r = held ? run_or_raise(sql, true, op::recover, "XA RECOVER")
                  : run_autocommit(sql, true, op::recover, "XA RECOVER");
    for (const auto& row : r.rows) {
        if (row.size() < 4 || !row[0] || !row[1] || !row[2] || !row[3]) continue;
        std::optional<xid> x;
        try {
            x = mysql::parse_recover_row(d, std::stol(*row[0]), std::stol(*row[1]),
                                         std::stol(*row[2]), *row[3]);
        } catch (const std::exception&) {
            x.reset();
        }
        out.push_back(x ? *x : xid::unparsed(*row[3]));
    }
#endif
    return out;
}

}  // namespace xarm::odbc
