// MariaDB/MySQL behind ODBC (Connector/ODBC): two-phase through XA statements and the
// mysql driver's dialect (statements, recover format, server traits, error table), so
// that a branch prepared here and one prepared by the mysql driver are interchangeable.
// The server keeps a prepared branch attached to the session that prepared it and lets
// only that session finish it until the session ends: the connection keeps the branch
// after XA PREPARE (phase two on it costs nothing), a process-wide registry lets the
// session of another thread finish it there, and anything else this session does first
// detaches it by reconnecting. Compiled only when the mysql dialect is built.
#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <mutex>

#include "../mysql/dialect.hpp"
#include "../mysql/registry.hpp"
#include "backend.hpp"
#include "xarm/xa.h"

namespace xarm::odbc {

namespace {

/// A session's connection while it keeps a prepared branch attached, reachable through
/// the registry by the session of another thread that finishes the branch. Every use of
/// dbc by another session holds mu.
struct branch_holder {
    std::mutex mu;
    SQLHDBC dbc = SQL_NULL_HDBC;  ///< null once the owning session is closing
    std::optional<xid> prepared;  ///< the attached prepared branch
    long session_id = 0;          ///< the server's CONNECTION_ID() for dbc
};

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

// The first column of the first row, if any.
std::optional<std::string> first_value(const outcome& r) {
    if (r.failed || r.rows.rows.empty() || r.rows.rows[0].empty() || !r.rows.rows[0][0])
        return std::nullopt;
    return *r.rows.rows[0][0];
}

class mysql_rules final : public backend_rules {
  public:
    /// b: what SQL_DBMS_NAME says (mariadb or mysql).
    mysql_rules(session& s, backend b, bool read_only_vote)
        : backend_rules(s, b), m_read_only_vote(read_only_vote) {
        if (b != backend::mysql) return;
        // Connector/ODBC may call a MariaDB server "MySQL", and SQL_DBMS_VER is only the
        // number: the server's own version string says which it is.
        m_server_version = first_value(m_s.run("SELECT VERSION()", true)).value_or("");
        m_s.rollback_quietly();
        if (mysql::detect_dialect(m_server_version) == mysql::dialect::mariadb)
            m_which = backend::mariadb;
    }

    // Connector/ODBC passes the server's error number as the native code.
    int rollback_code(const diag_record& d) const noexcept override {
        const int code = mysql::xa_code_of(static_cast<unsigned>(d.native), 0);
        return is_rollback_code(code) ? code : error_table::rollback_code(d);
    }
    int xa_code(const diag_record& d, op o) const noexcept override {
        switch (o) {
            case op::open:
                return XAER_RMERR;  // xa_open answers only XAER_RMERR or XAER_INVAL
            case op::end:
            case op::commit_one:
                // The branch's work is rolled back when these fail (the session rolls
                // back what a failed XA COMMIT ONE PHASE left).
                return rollback_code(d);
            default:
                break;
        }
        if (const auto* e = mysql::lookup_server_error(static_cast<unsigned>(d.native)))
            return e->xa_code;
        return d.sqlstate.starts_with("40") ? error_table::rollback_code(d) : XAER_RMERR;
    }
    bool lost_connection(const diag_record& d) const noexcept override {
        return mysql::is_connection_lost(static_cast<unsigned>(d.native));
    }
    std::string explain(const diag_record& d, op) const override {
        const auto* e = mysql::lookup_server_error(static_cast<unsigned>(d.native));
        return e != nullptr && e->explanation != nullptr ? e->explanation : "";
    }

    std::string native_driver() const override { return "mysql"; }
    sql_syntax syntax() const override { return sql_syntax::mysql(); }

    void declare(capability_set& c, const std::string& via) override;
    void release_held_branch() override;
    void start(const xid& x) override;
    vote prepare(const xid& x) override;
    void commit_one_phase(const xid& x) override;
    void rollback_branch(const xid& x) override;
    void finish_prepared(const xid& x, bool commit) override;
    std::vector<xid> recover() override;
    void close() noexcept override;

  private:
    void xa_end_if_needed(const xid& x);
    /// XA RECOVER. held: this connection holds a prepared branch (the query runs without
    /// switching autocommit, which the server refuses then).
    std::vector<xid> recover_listed(bool held);
    /// Phase two on the connection that holds x (h.mu held): true when done there.
    bool finish_on_holder(branch_holder& h, const xid& x, bool commit);
    /// Phase two of a branch no live session of this process holds.
    void finish_detached(const xid& x, bool commit, bool was_ours, long closed_session);
    /// The session's write counter (mysql::write_counter_sql), nullopt if unknown.
    std::optional<unsigned long long> write_counter();
    /// This connection's server session id (CONNECTION_ID()), 0 if unknown.
    long fetch_session_id();
    /// A SELECT COUNT(*)'s answer on this connection, or nullopt when it failed.
    std::optional<long> count_rows(const std::string& sql);
    /// MySQL: @@xa_detach_on_prepare (8.0.30+), false where the variable does not exist.
    bool read_detach_on_prepare();

    bool m_read_only_vote;          // XARM_READ_ONLY_VOTE=on
    std::string m_server_version;   // SELECT VERSION()
    bool m_xa_end_pending = false;  // XA END not yet sent for the open branch
    long m_session_id = 0;          // CONNECTION_ID()
    std::string m_server;           // @@hostname:@@port (registry key)
    std::shared_ptr<branch_holder> m_holder = std::make_shared<branch_holder>();
    bool m_detach_on_prepare = false;                // MySQL 8: @@xa_detach_on_prepare=ON
    std::optional<unsigned long long> m_write_base;  // MariaDB: write counter at XA START
};

// Two-phase through ODBC to MariaDB or MySQL: XA statements, with the mysql driver's
// dialect (recover format, server traits) and the branch holder for phase two from
// other threads.
void mysql_rules::declare(capability_set& c, const std::string& via) {
    const bool mariadb = m_which == backend::mariadb;
    c.yes(capability::two_phase,
          "XA START/END/PREPARE/COMMIT/ROLLBACK " + via +
              "; the server keeps a prepared branch attached to its session: phase two "
              "on the same session runs there, from another thread of this process on "
              "that session's connection, and anything else this session does first "
              "reopens the connection to detach the branch (xarm_odbc_hdbc stays the "
              "same handle)")
        .yes(capability::recovery, std::string("XA RECOVER ") +
                                       (mariadb ? "FORMAT='SQL'" : "CONVERT XID") +
                                       ", read byte-exact " + via)
        .no(capability::read_only_vote,
            "MySQL's XA PREPARE gives no read-only answer, and xarm reads "
            "MariaDB's session counters to tell");
    if (mariadb && m_read_only_vote)
        c.yes(capability::read_only_vote,
              "XARM_READ_ONLY_VOTE=on: a branch whose session write counters (rows "
              "written, updated or deleted; DELETE and UPDATE statements) did not move "
              "since XA START is rolled back at prepare and votes XA_RDONLY; MariaDB "
              "would otherwise discard it once its session ends, and XA COMMIT from "
              "elsewhere would answer XA_HEURRB. Cost: about 1 ms of server time for "
              "each of the two readings per branch " +
                  via);
    else if (mariadb)
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
    m_holder->dbc = m_s.dbc();
    m_holder->session_id = m_session_id;
    if (!mariadb) {
        const auto traits = mysql::traits_of(mysql::parse_server_version(m_server_version));
        m_detach_on_prepare = traits.has_detach_on_prepare && read_detach_on_prepare();
        if (traits.recover_needs_privilege)
            c.yes(capability::recovery,
                  "XA RECOVER CONVERT XID, read byte-exact " + via +
                      "; MySQL 8 answers it only to users with the XA_RECOVER_ADMIN "
                      "privilege (error 1227 otherwise)");
        if (m_s.odbc_driver().find("maodbc") != std::string::npos)
            c.no(capability::recovery,
                 "MariaDB Connector/ODBC cannot read XA RECOVER's result (it sees no "
                 "columns and leaves the connection unusable), and a MySQL server has no "
                 "anonymous compound statement to wrap it in: use MySQL's Connector/ODBC "
                 "or the native mysql driver to recover");
    }
}

void mysql_rules::close() noexcept {
    // A prepared branch still attached here: detach it and wait until the server has
    // closed the old session, so that once xa_close returns any connection, of any
    // process, can finish the branch (costs a reconnect only in this case).
    try {
        release_held_branch();
    } catch (const std::exception&) {
        // The connection is gone: the server detaches the branch by itself.
    }
    std::lock_guard g(m_holder->mu);
    if (m_holder->prepared)
        holder_registry::instance().detached(m_server, *m_holder->prepared, m_session_id);
    m_holder->dbc = SQL_NULL_HDBC;
}

void mysql_rules::release_held_branch() {
    std::lock_guard g(m_holder->mu);
    if (!m_holder->prepared) return;  // none, or another thread finished it meanwhile
    const xid x = *std::exchange(m_holder->prepared, std::nullopt);
    const long old_session = m_session_id;
    holder_registry::instance().detached(m_server, x, old_session);
    // The server keeps the prepared branches of closed sessions: reconnecting detaches it.
    m_s.reopen(
        "reopening the connection to detach a prepared branch from it failed (the branch "
        "stays prepared on the server)");
    m_session_id = fetch_session_id();
    m_holder->session_id = m_session_id;
    // SQLDisconnect returns before the server has torn the old session down; until it
    // has, the branch is still attached there and XA COMMIT elsewhere says unknown XID:
    // wait (briefly) for that here, so that another process can finish the branch from
    // now on.
    if (old_session > 0)
        mysql::wait_session_gone(old_session, [&](const std::string& q) { return count_rows(q); });
}

void mysql_rules::start(const xid& x) {
    m_s.run_or_raise(mysql::xa_start_sql(x), false, op::start, "XA START");
    m_xa_end_pending = true;
    m_write_base = m_which == backend::mariadb && m_read_only_vote ? write_counter() : std::nullopt;
}

void mysql_rules::xa_end_if_needed(const xid& x) {
    // XA END is sent when the branch is prepared or finished, so that TMJOIN and
    // TMRESUME need nothing from the server.
    if (!m_xa_end_pending) return;
    m_xa_end_pending = false;
    m_s.run_or_raise(mysql::xa_end_sql(x), false, op::end, "XA END");
}

vote mysql_rules::prepare(const xid& x) {
    // Wrote nothing (the counters are read while the branch is still active): roll back
    // here and vote read-only, rather than prepare a branch MariaDB would discard when
    // the connection is reopened. Unknown counts as written.
    if (m_xa_end_pending && m_write_base && write_counter() == m_write_base) {
        try {
            xa_end_if_needed(x);
            m_s.run_or_raise(mysql::xa_rollback_sql(x), false, op::prepare,
                             "XA ROLLBACK of a branch that wrote nothing");
        } catch (const error&) {
            m_s.run(mysql::xa_rollback_sql(x), false);
            throw;
        }
        return vote::read_only;
    }
    try {
        xa_end_if_needed(x);
        m_s.run_or_raise(mysql::xa_prepare_sql(x), false, op::prepare, "XA PREPARE");
    } catch (const error&) {
        // Whatever XA END or XA PREPARE left, the branch is over: roll back what remains.
        m_s.run(mysql::xa_rollback_sql(x), false);
        throw;
    }
    // The server keeps the prepared branch attached to this session (MySQL 8 with
    // xa_detach_on_prepare=ON does not): keep it there, so that phase two on this session
    // costs nothing; the registry lets another thread of this process finish it here, and
    // anything else this session does first detaches it (release_held_branch).
    if (!m_detach_on_prepare) {
        {
            std::lock_guard g(m_holder->mu);
            m_holder->prepared = x;
        }
        holder_registry::instance().attach(m_server, x, m_holder);
    }
    return vote::ok;
}

void mysql_rules::commit_one_phase(const xid& x) {
    try {
        xa_end_if_needed(x);
        m_s.run_or_raise(mysql::xa_commit_sql(x, true), false, op::commit_one,
                         "XA COMMIT ONE PHASE");
    } catch (const operational_error&) {
        throw;
    } catch (const error&) {
        m_s.run(mysql::xa_rollback_sql(x), false);
        throw;
    }
}

void mysql_rules::rollback_branch(const xid& x) {
    // XA END fails when the server already rolled the branch back (deadlock): XA ROLLBACK
    // still ends it.
    if (m_xa_end_pending) {
        m_xa_end_pending = false;
        auto e = m_s.run(mysql::xa_end_sql(x), false);
        if (e.failed && is_connection_loss(e.diag, *this))
            raise_diag(e.diag, *this, op::rollback, "XA END");
    }
    auto r = m_s.run(mysql::xa_rollback_sql(x), false);
    // ER_XA_RBROLLBACK etc.: rolled back all the same.
    if (r.failed && !is_rollback_code(xa_code_for(r.diag, *this, op::finish)))
        raise_diag(r.diag, *this, op::rollback, "XA ROLLBACK");
}

bool mysql_rules::finish_on_holder(branch_holder& h, const xid& x, bool commit) {
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
    if (is_connection_loss(*d, *this)) {
        // The server detaches the branch when it notices: finish it from another
        // connection (or by recovery).
        h.prepared.reset();
        reg.detached(m_server, x, h.session_id);
        raise_diag(*d, *this, op::finish, what);
    }
    // ER_XA_RBROLLBACK: the server rolled the branch back; unknown XID (or XAER_OUTSIDE,
    // which the holding session never answers for its own prepared branch): finished on
    // this connection behind xarm's back (XA COMMIT through xarm_odbc_hdbc).
    if (n == mysql::errnum::xa_rbrollback || n == mysql::errnum::xaer_nota ||
        n == mysql::errnum::xaer_outside) {
        h.prepared.reset();
        reg.forget(m_server, x);
        if (n != mysql::errnum::xa_rbrollback) raise_diag(*d, *this, op::finish, what);
        if (commit) mysql::raise_rolled_back_at_commit(x, n);
        return true;
    }
    raise_diag(*d, *this, op::finish, what);
}

// XA COMMIT/ROLLBACK of a prepared branch by xid: on the connection that holds it (this
// session's or, through the registry, another thread's), else on this one, waiting out
// its detachment from a session the server is closing.
void mysql_rules::finish_prepared(const xid& x, bool commit) {
    // 1. Held by this session's connection: the common path (prepare, then commit).
    {
        std::lock_guard g(m_holder->mu);
        if (m_holder->prepared == x && finish_on_holder(*m_holder, x, commit)) return;
    }
    // 2. Held by another session of this process (another thread): finish it there.
    auto [h, was_ours, closed_session] = holder_registry::instance().owner(m_server, x);
    if (h && h != m_holder) {
        std::lock_guard g(h->mu);
        if (h->dbc != SQL_NULL_HDBC && h->prepared == x && finish_on_holder(*h, x, commit)) return;
    }
    // 3. Detached (its session reconnected or ended, or the server restarted): any
    // connection that holds no branch itself will do.
    release_held_branch();
    finish_detached(x, commit, was_ours, closed_session);
}

void mysql_rules::finish_detached(const xid& x, bool commit, bool was_ours, long closed_session) {
    const std::string sql = mysql::xa_finish_sql(x, commit);
    const char* what = mysql::xa_finish_verb(commit);
    auto& reg = holder_registry::instance();
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
                m_s.run_autocommit(sql, false, op::finish, what);
                return 0;
            } catch (const error& e) {
                if (e.native_code() <= 0 || e.xa_code() == XAER_RMFAIL) throw;
                last = std::current_exception();
                return static_cast<unsigned>(e.native_code());
            }
        },
        [&] {
            const auto listed = recover_listed(false);
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
}

std::vector<xid> mysql_rules::recover() {
    // XA RECOVER (also in a compound statement) works on a connection that holds a
    // prepared branch, but switching autocommit does not (1399): held, the query runs as
    // it is, with the holder locked against another thread's phase two.
    std::unique_lock lk(m_holder->mu);
    auto listed = recover_listed(m_holder->prepared.has_value());
    lk.unlock();
    holder_registry::instance().prune(m_server, listed);
    return listed;
}

std::vector<xid> mysql_rules::recover_listed(bool held) {
    std::vector<xid> out;
    const auto d = m_which == backend::mariadb ? mysql::dialect::mariadb : mysql::dialect::mysql;
    // MariaDB Connector/ODBC (3.1) does not see XA RECOVER's result set: it reports no
    // columns, leaves the rows unread (every later statement on the connection fails
    // with an empty diagnostic) and can crash on the next call. The same statement in an
    // anonymous compound statement comes back as an ordinary result set, read as any
    // CALL's; MySQL has no such statement, and Connector/ODBC is not used there.
    const std::string sql = d == mysql::dialect::mariadb
                                ? "BEGIN NOT ATOMIC " + mysql::xa_recover_sql(d) + "; END"
                                : mysql::xa_recover_sql(d);
    auto r = held ? m_s.run_or_raise(sql, true, op::recover, "XA RECOVER")
                  : m_s.run_autocommit(sql, true, op::recover, "XA RECOVER");
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
    return out;
}

std::optional<unsigned long long> mysql_rules::write_counter() {
    const auto v = first_value(m_s.run(mysql::write_counter_sql, true));
    return v ? mysql::parse_write_counter(*v) : std::nullopt;
}

long mysql_rules::fetch_session_id() {
    auto r = m_s.run("SELECT CONNECTION_ID(), @@hostname, @@port", true);
    m_s.rollback_quietly();
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

std::optional<long> mysql_rules::count_rows(const std::string& sql) {
    const auto v = first_value(m_s.run(sql, true));
    m_s.rollback_quietly();
    if (!v) return std::nullopt;
    try {
        return std::stol(*v);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

bool mysql_rules::read_detach_on_prepare() {
    // MySQL 8.0.30+: XA PREPARE detaches the branch from the session by itself (the
    // default); then nothing is held after prepare and no reconnect is ever needed.
    const auto v = first_value(m_s.run(mysql::detach_on_prepare_sql, true));
    m_s.rollback_quietly();
    return v && mysql::parse_detach_on_prepare(*v);
}

}  // namespace

std::unique_ptr<backend_rules> make_mysql_rules(session& s, backend b, bool read_only_vote) {
    return std::make_unique<mysql_rules>(s, b, read_only_vote);
}

}  // namespace xarm::odbc
