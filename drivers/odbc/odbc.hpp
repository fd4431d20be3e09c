// The ODBC driver's internals: one ODBC connection (SQLHDBC) per session. ODBC itself has
// no two-phase commit (its enlistment attributes need Microsoft's DTC), so a session
// recognises the DBMS behind the connection at open and hands everything that depends on
// it to that backend's rules (backend.hpp): two-phase through the backend's own SQL when
// xarm knows it (PostgreSQL, MariaDB/MySQL, reusing the native drivers' dialect
// libraries), local work and one-phase commit only for anything else.
#pragma once

#include <sql.h>
#include <sqlext.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
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
backend backend_from_dbms_name(std::string_view dbms_name) noexcept;

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

/// How a DBMS's diagnostics map to XA codes. The base is ODBC's generic table (standard
/// SQLSTATEs only); a backend with a native driver in xarm (PostgreSQL, MariaDB/MySQL)
/// replaces it with that driver's table (psqlODBC passes the server's SQLSTATE through,
/// Connector/ODBC the server's error number).
class error_table {
  public:
    error_table() = default;
    error_table(const error_table&) = delete;
    error_table& operator=(const error_table&) = delete;
    virtual ~error_table() = default;
    /// The XA_RB* code for an error that aborted (or must abort) a branch's work.
    virtual int rollback_code(const diag_record& d) const noexcept;
    /// The XA code for d during o, the connection being still there.
    virtual int xa_code(const diag_record& d, op o) const noexcept;
    /// True when d means the connection is gone, beyond ODBC's own class 08.
    virtual bool lost_connection(const diag_record&) const noexcept { return false; }
    /// What d means, to add to its message; empty when there is nothing to add.
    virtual std::string explain(const diag_record&, op) const { return {}; }

    /// The generic table, used until the DBMS is known.
    static const error_table& generic() noexcept;
};

/// True when the diagnostic means the connection is gone.
bool is_connection_loss(const diag_record& d, const error_table& t) noexcept;
/// The XA code the table gives a diagnostic during o.
int xa_code_for(const diag_record& d, const error_table& t, op o) noexcept;
/// Raises the error for d during o; context says what was being done (never the
/// connection string, which holds the password).
[[noreturn]] void raise_diag(const diag_record& d, const error_table& t, op o,
                             std::string_view context);
/// Reads the handle's diagnostic and raises it.
[[noreturn]] void raise_odbc(SQLSMALLINT type, SQLHANDLE h, const error_table& t, op o,
                             std::string_view context);
inline bool ok(SQLRETURN rc) noexcept {
    return rc == SQL_SUCCESS || rc == SQL_SUCCESS_WITH_INFO;
}

// ---- the session ---------------------------------------------------------------

struct prepared;
class backend_rules;

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

/// How values travel through a backend's ODBC driver.
struct binding_quirks {
    bool times_as_text = false;     ///< timestamps bound as text (sqliteodbc)
    bool integers_as_text = false;  ///< integers bound and read as text (Virtuoso)
};

/// One ODBC connection. It keeps the connection, the statements and the branch's state
/// (open, failed, local transaction); whatever depends on the DBMS behind it goes to its
/// backend's rules, chosen once the DBMS is recognised.
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
    /// The application now sends statements itself, unseen here (see handle_given).
    void* native_handle() noexcept override {
        m_direct = true;
        return m_dbc.get();
    }
    /// The native driver describing the DBMS behind the connection, or none.
    std::string dbms() const override;

    // ---- for the backend rules -----------------------------------------------------

    SQLHDBC dbc() const noexcept { return m_dbc.get(); }
    /// The DBMS's name and version, for messages ("PostgreSQL 15.x").
    const std::string& dbms_text() const noexcept { return m_dbms; }
    /// The ODBC driver's file name (SQL_DRIVER_NAME, e.g. psqlodbcw.so).
    const std::string& odbc_driver() const noexcept { return m_odbc_driver; }
    /// The error table in force: the backend's, or the generic one before it is known.
    const error_table& errors() const noexcept;
    /// Runs one statement on a fresh statement handle. collect: keep the rows. Never
    /// throws for an SQL error: the caller maps it.
    outcome run(std::string_view sql, bool collect);
    /// run, raising the mapped error on failure.
    result run_or_raise(std::string_view sql, bool collect, op o, std::string_view context);
    /// A statement that must run outside any transaction (COMMIT PREPARED, recovery).
    result run_autocommit(std::string_view sql, bool collect, op o, std::string_view context);
    /// SQLEndTran, raising the mapped error on failure.
    void end_tran(SQLSMALLINT what, op o, std::string_view context);
    /// SQLEndTran(SQL_ROLLBACK), whatever it answers (cleaning up after a failure).
    void rollback_quietly() noexcept;
    /// One-phase commit of the connection's transaction through SQLEndTran; a failure
    /// leaves it rolled back.
    void commit_transaction();
    /// SQLDisconnect + SQLDriverConnect on the same handle: the value applications got
    /// from xarm_odbc_hdbc stays valid (their statement handles do not: ours are freed
    /// first and prepared again on their next use). why: the message's start if it fails
    /// (XAER_RMFAIL).
    void reopen(std::string_view why);
    /// True once the application has the connection's handle (xarm_odbc_hdbc) and may
    /// send statements this session never sees.
    bool handle_given() const noexcept { return m_direct; }
    /// True when a statement of the open branch run through this session changed rows
    /// and returned none (INSERT, UPDATE, DELETE): the branch provably wrote.
    bool branch_wrote() const noexcept { return m_wrote; }
    /// True when a statement of the open branch failed (run through this session).
    bool branch_failed() const noexcept { return m_branch_failure.has_value(); }
    /// The failure of a statement of the open branch, taken (nullopt if none).
    std::optional<diag_record> take_branch_failure() noexcept {
        return std::exchange(m_branch_failure, std::nullopt);
    }

  private:
    void connect(const std::string& conn);
    /// Reads the DBMS's and the ODBC driver's names: the backend behind the connection.
    backend recognise();
    void declare();
    void set_autocommit(bool on);
    /// run with bound parameters.
    outcome run(std::string_view sql, std::span<const value> params, bool collect);
    /// Reads what an executed statement handle returns (every result; the last one that
    /// has columns gives the rows).
    outcome fetch(SQLHSTMT st, bool collect);
    /// An application statement (execute, query): a local transaction begins outside a
    /// branch; a failure makes the branch rollback-only and is raised.
    result work(const std::function<outcome()>& run);
    friend struct prepared;
    void release_statement_handles() noexcept;
    /// A statement of the branch or of a local transaction failed: remember how.
    void note_failure(const diag_record& d);

    std::string m_conn;  // the connection string as connected (holds the password)
    dbc_ptr m_dbc;
    std::string m_dbms;         // "PostgreSQL 15.x", for messages
    std::string m_odbc_driver;  // SQL_DRIVER_NAME, e.g. psqlodbcw.so
    capability_set m_caps;
    binding_quirks m_quirks;
    bool m_autocommit = false;
    bool m_branch = false;  // a branch's transaction is open on this connection
    bool m_local = false;   // a local transaction is open
    bool m_direct = false;  // the application has the HDBC (native_handle)
    bool m_wrote = false;   // a statement of the branch provably wrote (branch_wrote)
    std::optional<diag_record> m_branch_failure;  // a statement of the branch failed
    /// Prepared statements' handles, freed before the connection is reopened.
    std::vector<prepared*> m_prepared;
    /// Declared last: destroyed first, while the connection is still there.
    std::unique_ptr<backend_rules> m_rules;
};

}  // namespace xarm::odbc
