// ODBC primitives. The connection runs with autocommit off, so the first statement
// begins a transaction (PEP 249); one-phase commit and rollback go through SQLEndTran.
// Two-phase commit goes through the backend's own SQL when the DBMS is one we know
// (backend.hpp), with the native drivers' dialect code, so the two drivers' branches are
// interchangeable.
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
#include <utility>

#include "backend.hpp"
#include "xarm/xa.h"

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
            raise_odbc(SQL_HANDLE_ENV, h, error_table::generic(), op::open,
                       "SQLSetEnvAttr(ODBC 3)");
        return p;
    }();
    return env.get();
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
    const std::string conn = std::move(keys.conn);
    if (conn.find_first_not_of(" \t\r\n") == std::string::npos)
        raise(
            XAER_INVAL, "08001",
            "info string: an ODBC connection string is required (e.g. DSN=name;UID=user;PWD=...)");
    connect(conn);
    m_rules = make_rules(*this, recognise(), keys.read_only_vote);
    m_quirks = m_rules->quirks();
    if (auto again = m_rules->reconnect_with(conn)) {
        m_dbc.reset();
        connect(*again);
    }
    declare();
}

session::~session() {
    if (m_rules) m_rules->close();
}

const error_table& session::errors() const noexcept {
    return m_rules ? static_cast<const error_table&>(*m_rules) : error_table::generic();
}

std::string session::dbms() const {
    return m_rules ? m_rules->native_driver() : "odbc";
}

sql_syntax session::syntax() const {
    return m_rules ? m_rules->syntax() : sql_syntax::standard();
}

void session::connect(const std::string& conn) {
    SQLHDBC raw = SQL_NULL_HDBC;
    if (!ok(SQLAllocHandle(SQL_HANDLE_DBC, environment(), &raw)))
        raise_odbc(SQL_HANDLE_ENV, environment(), error_table::generic(), op::open,
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

backend session::recognise() {
    const std::string name = get_info(m_dbc.get(), SQL_DBMS_NAME);
    const std::string ver = get_info(m_dbc.get(), SQL_DBMS_VER);
    m_odbc_driver = get_info(m_dbc.get(), SQL_DRIVER_NAME);
    m_dbc.get_deleter().serialize = m_odbc_driver.empty() || serialize_connects(m_odbc_driver);
    m_dbms = fmt::format("{} {}", name.empty() ? "unnamed DBMS" : name, ver);
    return backend_from_dbms_name(name);
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
    m_rules->declare(c, via);
    m_caps = std::move(c);
}

void session::set_autocommit(bool on) {
    if (m_autocommit == on) return;
    const auto v = static_cast<SQLULEN>(on ? SQL_AUTOCOMMIT_ON : SQL_AUTOCOMMIT_OFF);
    // ODBC passes an integer attribute's value in the pointer argument.
    if (!ok(SQLSetConnectAttr(m_dbc.get(), SQL_ATTR_AUTOCOMMIT,
                              reinterpret_cast<SQLPOINTER>(v),  // NOLINT(performance-no-int-to-ptr)
                              0)))
        raise_odbc(SQL_HANDLE_DBC, m_dbc.get(), errors(), op::statement,
                   on ? "SQLSetConnectAttr(autocommit on)" : "SQLSetConnectAttr(autocommit off)");
    m_autocommit = on;
}

void session::reopen(std::string_view why) {
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
        raise(diagnostic{
            XAER_RMFAIL, d.sqlstate, d.native, {}, fmt::format("{}: {}", why, d.message)});
    }
    m_autocommit = true;
    set_autocommit(false);
}

// ---- statements -------------------------------------------------------------------

result session::run_or_raise(std::string_view sql, bool collect, op o, std::string_view context) {
    auto out = run(sql, collect);
    if (out.failed) raise_diag(out.diag, errors(), o, context);
    return std::move(out.rows);
}

result session::run_autocommit(std::string_view sql, bool collect, op o, std::string_view context) {
    // With a transaction open on this connection, switching autocommit on would commit
    // it: run inside it instead (PostgreSQL then refuses COMMIT PREPARED with 25001).
    if (m_branch || m_local) return run_or_raise(sql, collect, o, context);
    set_autocommit(true);
    auto out = run(sql, collect);
    set_autocommit(false);
    if (out.failed) raise_diag(out.diag, errors(), o, context);
    return std::move(out.rows);
}

void session::end_tran(SQLSMALLINT what, op o, std::string_view context) {
    if (!ok(SQLEndTran(SQL_HANDLE_DBC, m_dbc.get(), what)))
        raise_odbc(SQL_HANDLE_DBC, m_dbc.get(), errors(), o, context);
}

void session::rollback_quietly() noexcept {
    SQLEndTran(SQL_HANDLE_DBC, m_dbc.get(), SQL_ROLLBACK);
}

void session::commit_transaction() {
    if (!ok(SQLEndTran(SQL_HANDLE_DBC, m_dbc.get(), SQL_COMMIT))) {
        // A failed COMMIT (a deferred constraint, a serialization failure) may leave the
        // transaction open in some drivers: roll it back, so that the one-phase outcome is
        // a clean rollback, never a half-state.
        diag_record d = read_diag(SQL_HANDLE_DBC, m_dbc.get());
        rollback_quietly();
        raise_diag(d, errors(), op::commit_one, "COMMIT (SQLEndTran)");
    }
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

void session::start(const xid& x, start_mode mode) {
    if (mode != start_mode::fresh) return;  // join/resume: the transaction is still open
    m_rules->release_held_branch();
    m_branch_failure.reset();
    m_wrote = false;
    m_rules->start(x);
    m_branch = true;
}

void session::start_with_timeout(const xid& x, std::chrono::seconds timeout) {
    const auto limit = m_rules->branch_timeout_sql(timeout);
    // Declared only where the rules have the statement (the core refuses the others).
    if (!limit) return native_session::start_with_timeout(x, timeout);
    start(x, start_mode::fresh);
    try {
        run_or_raise(*limit, false, op::start, "setting the branch's timeout");
    } catch (const error&) {
        // No branch began (the core forgets it): leave no transaction behind either.
        try {
            rollback(x, false);
        } catch (const error&) {
        }
        throw;
    }
}

void session::end(const xid&, end_mode mode) {
    // The backend's end of the branch (MariaDB's XA END) comes with prepare or commit, so
    // that TMJOIN and TMRESUME need nothing from the server.
    if (mode == end_mode::suspend || !m_branch_failure) return;
    const diag_record d = *m_branch_failure;
    raise(diagnostic{m_rules->rollback_code(d),
                     d.sqlstate,
                     d.native,
                     {},
                     "a statement of the branch failed, so the branch can only be rolled back "
                     "(preparing the rest would commit part of its work): " +
                         d.message});
}

vote session::prepare(const xid& x) {
    if (!m_branch)
        raise(XAER_NOTA, "XAE04", "no branch is open on this ODBC connection: " + x.to_string());
    m_branch = false;
    return m_rules->prepare(x);
}

void session::commit(const xid& x, bool one_phase) {
    if (!one_phase) {
        m_rules->finish_prepared(x, true);
        return;
    }
    if (!m_branch)
        raise(XAER_NOTA, "XAE04", "no branch is open on this ODBC connection: " + x.to_string());
    m_branch = false;
    m_rules->commit_one_phase(x);
}

void session::rollback(const xid& x, bool prepared) {
    if (prepared) {
        m_rules->finish_prepared(x, false);
        return;
    }
    if (!m_branch)
        raise(XAER_NOTA, "XAE04", "no branch is open on this ODBC connection: " + x.to_string());
    m_branch = false;
    m_branch_failure.reset();
    m_rules->rollback_branch(x);
}

std::vector<xid> session::recover() {
    return m_rules->recover();  // SQLite: never a prepared branch (others are not asked)
}

}  // namespace xarm::odbc
