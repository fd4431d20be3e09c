// The ODBC driver's internals: one ODBC connection (SQLHDBC) per session. ODBC itself has
// no two-phase commit (its enlistment attributes need Microsoft's DTC), so a session
// recognises the DBMS behind the connection at open and does two-phase through that
// backend's own SQL when it knows it (PostgreSQL, MariaDB/MySQL), reusing the native
// drivers' dialect libraries; anything else gets local work and one-phase commit only.
#pragma once

#include <sql.h>
#include <sqlext.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "xarm/driver/driver.hpp"

namespace xarm::odbc {

// ---- handles -------------------------------------------------------------------

struct env_deleter {
    void operator()(SQLHENV h) const noexcept { SQLFreeHandle(SQL_HANDLE_ENV, h); }
};
struct dbc_deleter {
    /// Disconnect under connect_mutex() (see there); true until the driver is known.
    bool serialize = true;
    void operator()(SQLHDBC h) const noexcept;  // disconnects first when connected
};
struct stmt_deleter {
    void operator()(SQLHSTMT h) const noexcept { SQLFreeHandle(SQL_HANDLE_STMT, h); }
};
using env_ptr = std::unique_ptr<std::remove_pointer_t<SQLHENV>, env_deleter>;
using dbc_ptr = std::unique_ptr<std::remove_pointer_t<SQLHDBC>, dbc_deleter>;
using stmt_ptr = std::unique_ptr<std::remove_pointer_t<SQLHSTMT>, stmt_deleter>;

/// The process's ODBC environment (ODBC 3), made once.
SQLHENV environment();

/// Held around connecting and disconnecting through an ODBC driver that shares state
/// between its connections without locking it (serialize_connects), and around any
/// first connect, before the driver is known.
std::mutex& connect_mutex();
/// True for the ODBC drivers (SQL_DRIVER_NAME) whose connects must not overlap:
/// MariaDB Connector/ODBC 3.1 (libmaodbc) and psqlODBC 13 (psqlodbcw/psqlodbca).
bool serialize_connects(std::string_view odbc_driver_name) noexcept;

// ---- backends ------------------------------------------------------------------

/// The DBMS behind a connection, from SQLGetInfo(SQL_DBMS_NAME).
enum class backend { unknown, postgresql, mariadb, mysql, sqlite, virtuoso };
const char* to_string(backend b) noexcept;
backend backend_from_dbms_name(std::string_view dbms_name) noexcept;

// ---- Virtuoso (virtuoso.cpp) ------------------------------------------------------

/// What a connection to OpenLink Virtuoso can do: one-phase only, with the reason
/// (`via` names the connection's DBMS and ODBC driver).
void declare_virtuoso(capability_set& c, const std::string& via);
/// Virtuoso's lexical rules: ISO SQL, except that '...' strings take C escapes.
sql_syntax virtuoso_syntax();

// ---- the native-error table (error.cpp) -----------------------------------------

/// What the driver was doing when ODBC reported an error (the mapping depends on it).
enum class op {
    open,             ///< connecting, recognising the DBMS
    statement,        ///< the branch's or a local transaction's work
    start,            ///< beginning the branch (XA START)
    end,              ///< ending the branch's work (XA END)
    prepare,          ///< PREPARE TRANSACTION / XA PREPARE: a failure rolls the branch back
    commit_one,       ///< one-phase commit: a failure rolls the branch back
    finish,           ///< ROLLBACK PREPARED, XA COMMIT/ROLLBACK of a prepared branch
    commit_prepared,  ///< PostgreSQL's COMMIT PREPARED ("busy" there is XA_RETRY)
    rollback,         ///< rollback of an unprepared branch or a local transaction
    recover,          ///< the recovery query
};

/// One ODBC diagnostic record.
struct diag_record {
    std::string sqlstate;  ///< five characters ("HY000" when the driver gave none)
    long native = 0;       ///< the DBMS's own error number (MySQL errno, ...)
    std::string message;
};

/// The first diagnostic record of a handle (SQLGetDiagRec), or a generic one.
diag_record read_diag(SQLSMALLINT type, SQLHANDLE h);
/// The XA code the table gives a diagnostic during o, for backend b.
int xa_code_for(const diag_record& d, backend b, op o) noexcept;
/// The XA_RB* code for an error that aborted (or must abort) a branch's work.
int rollback_code_for(const diag_record& d, backend b) noexcept;
/// True when the diagnostic means the connection is gone.
bool is_connection_loss(const diag_record& d, backend b) noexcept;
/// Raises the error for d during o; context says what was being done (never the
/// connection string, which holds the password).
[[noreturn]] void raise_diag(const diag_record& d, backend b, op o, std::string_view context);
/// Reads the handle's diagnostic and raises it.
[[noreturn]] void raise_odbc(SQLSMALLINT type, SQLHANDLE h, backend b, op o,
                             std::string_view context);
inline bool ok(SQLRETURN rc) noexcept {
    return rc == SQL_SUCCESS || rc == SQL_SUCCESS_WITH_INFO;
}

// ---- the session ---------------------------------------------------------------

struct prepared;

/// MariaDB/MySQL: a session's connection while it keeps a prepared branch attached (the
/// server lets only that session finish it until the session ends), reachable through a
/// process-wide registry (session.cpp) by the session of another thread that finishes
/// the branch. Every use of dbc by another session holds mu.
struct branch_holder {
    std::mutex mu;
    SQLHDBC dbc = SQL_NULL_HDBC;  ///< null once the owning session is closing
    backend which = backend::unknown;
    std::optional<xid> prepared;  ///< the attached prepared branch
    long session_id = 0;          ///< MariaDB: the server's CONNECTION_ID() for dbc
};

/// Takes xarm's own keys out of an ODBC connection string (the ODBC driver never sees
/// them): XARM_READ_ONLY_VOTE=on|off (MariaDB: read the session write counters to vote
/// XA_RDONLY; default off). Keys are case-insensitive; braced values are kept whole.
struct xarm_keys {
    std::string conn;  ///< the connection string without xarm's keys
    bool read_only_vote = false;
};
xarm_keys take_xarm_keys(std::string_view conn);

/// A statement's outcome: the last result set and the row count.
struct outcome {
    result rows;
    bool failed = false;
    diag_record diag;  ///< when failed
};

class session final : public native_session {
  public:
    session(const session&) = delete;
    session& operator=(const session&) = delete;
    /// conn: an ODBC connection string; it holds the password: never put it in a message.
    explicit session(const std::string& conn);
    ~session() override;

    capability_set capabilities() const override { return m_caps; }
    void start(const xid& x, start_mode mode) override;
    void start_with_timeout(const xid& x, std::chrono::seconds timeout) override;
    void end(const xid& x, end_mode mode) override;
    vote prepare(const xid& x) override;
    void commit(const xid& x, bool one_phase) override;
    void rollback(const xid& x, bool prepared) override;
    /// A heuristic outcome (XA_HEURRB at commit) leaves nothing on the server to forget.
    void forget(const xid&) override {}
    std::vector<xid> recover() override;
    std::int64_t execute(std::string_view sql) override;
    result query(std::string_view sql) override;
    /// The backend's lexical rules; placeholders stay `?` (ODBC's own).
    sql_syntax syntax() const override;
    /// SQLBindParameter + SQLExecDirect on a fresh statement handle.
    result execute_params(std::string_view sql, std::span<const value> params, bool rows) override;
    /// SQLPrepare on a statement handle kept until the statement is released (or the
    /// connection is reopened, after which it is prepared again on first use).
    std::unique_ptr<native_statement> prepare(std::string_view sql, std::size_t params) override;
    result execute_prepared(native_statement& st, std::span<const value> params,
                            bool rows) override;
    void commit_local() override;
    void rollback_local() override;
    bool in_local_transaction() const override { return m_local; }
    /// The application now sends statements itself, unseen here: from then on the
    /// PostgreSQL one-phase commit checks the block before COMMIT.
    void* native_handle() noexcept override {
        m_direct = true;
        return m_dbc.get();
    }
    /// The native driver describing the DBMS behind the connection, or none.
    std::string dbms() const override {
        switch (m_backend) {
            case backend::postgresql:
                return "pq";
            case backend::mariadb:
            case backend::mysql:
                return "mysql";
            case backend::sqlite:
                return "sqlite";
            case backend::virtuoso:  // no native driver describes it
            case backend::unknown:
                break;
        }
        return "odbc";
    }

    backend which() const noexcept { return m_backend; }

  private:
    void connect(const std::string& conn);
    void recognise();
    void declare();
    void declare_postgresql(capability_set& c, const std::string& via);
    void declare_mysql(capability_set& c, const std::string& via);
    void set_autocommit(bool on);
    /// Runs one statement on a fresh statement handle. collect: keep the rows. Never
    /// throws for an SQL error: the caller maps it.
    outcome run(std::string_view sql, bool collect);
    /// The same with bound parameters.
    outcome run(std::string_view sql, std::span<const value> params, bool collect);
    /// Reads what an executed statement handle returns (every result; the last one that
    /// has columns gives the rows).
    outcome fetch(SQLHSTMT st, bool collect);
    /// An application statement (execute, query): a local transaction begins outside a
    /// branch; a failure makes the branch rollback-only and is raised.
    result work(const std::function<outcome()>& run);
    friend struct prepared;
    void release_statement_handles() noexcept;
    /// run, raising the mapped error on failure.
    result run_or_raise(std::string_view sql, bool collect, op o, std::string_view context);
    /// A statement that must run outside any transaction (COMMIT PREPARED, recovery).
    result run_autocommit(std::string_view sql, bool collect, op o, std::string_view context);
    void end_tran(SQLSMALLINT what, op o, std::string_view context);
    /// A statement of the branch or of a local transaction failed: remember how.
    void note_failure(const diag_record& d);
    /// MariaDB keeps a prepared XA branch attached to its session: detach it by
    /// reconnecting (the server keeps prepared branches of closed sessions).
    void reconnect();
    /// MariaDB/MySQL: when this connection still holds a prepared branch (kept after XA
    /// PREPARE so that phase two on this session costs nothing), detach it now by
    /// reconnecting, before the connection does anything else.
    void detach_held();

    // Per backend.
    vote prepare_pq(const xid& x);
    vote prepare_my(const xid& x);
    void xa_end_if_needed(const xid& x);
    /// held: this connection holds a prepared branch (the query runs without switching
    /// autocommit, which the server refuses then).
    std::vector<xid> recover_my(bool held);
    void finish_prepared(const xid& x, bool commit);
    /// MariaDB/MySQL: XA COMMIT/ROLLBACK of a prepared branch by xid: on the connection
    /// that holds it (this session's or, through the registry, another thread's), else
    /// on this one, waiting out its detachment from a session the server is closing.
    void finish_my(const xid& x, bool commit);
    /// finish_my on the connection that holds x (h->mu held): true when done there.
    bool finish_on_holder(branch_holder& h, const xid& x, bool commit);
    /// MariaDB: the session's write counter (mysql::write_counter_sql), nullopt if unknown.
    std::optional<unsigned long long> write_counter();
    /// MariaDB: this connection's server session id (CONNECTION_ID()), 0 if unknown.
    long fetch_session_id();
    /// MariaDB: waits (bounded) until the server has closed session id, so that the
    /// branch it held is detached and any connection can finish it.
    void wait_session_closed(long id);
    /// A SELECT COUNT(*)'s answer on this connection, or nullopt when it failed.
    std::optional<long> count_rows(const std::string& sql);
    /// MySQL: @@xa_detach_on_prepare (8.0.30+), false where the variable does not exist.
    bool read_detach_on_prepare();

    std::string m_conn;  // the connection string as connected (holds the password)
    dbc_ptr m_dbc;
    backend m_backend = backend::unknown;
    std::string m_dbms;            // "PostgreSQL 15.x", for messages
    std::string m_server_version;  // MySQL/MariaDB: SELECT VERSION()
    std::string m_odbc_driver;     // SQL_DRIVER_NAME, e.g. psqlodbcw.so
    capability_set m_caps;
    bool m_two_phase = false;
    bool m_autocommit = false;
    bool m_branch = false;          // a branch's transaction is open on this connection
    bool m_xa_end_pending = false;  // MariaDB: XA END not yet sent for the open branch
    bool m_local = false;           // a local transaction is open
    bool m_direct = false;          // the application has the HDBC (native_handle)
    std::optional<diag_record> m_branch_failure;     // a statement of the branch failed
    long m_session_id = 0;                           // MariaDB: CONNECTION_ID()
    std::string m_server;                            // MariaDB: @@hostname:@@port (registry key)
    std::shared_ptr<branch_holder> m_holder;         // MariaDB: the prepared branch kept attached
    bool m_read_only_vote = false;                   // XARM_READ_ONLY_VOTE=on
    bool m_detach_on_prepare = false;                // MySQL 8: @@xa_detach_on_prepare=ON
    std::optional<unsigned long long> m_write_base;  // MariaDB: write counter at XA START
    /// Prepared statements' handles, freed before the connection is reopened.
    std::vector<prepared*> m_prepared;
};

}  // namespace xarm::odbc
