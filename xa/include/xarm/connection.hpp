// The DB-API-style C++ API: PEP 249's two-phase extension on one connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xarm/capability.hpp"
#include "xarm/error.hpp"
#include "xarm/export.h"
#include "xarm/result.hpp"
#include "xarm/value.hpp"
#include "xarm/xid.hpp"

// The client libraries' connection types, for native_handle<T>() (declared as they do).
typedef struct pg_conn PGconn;
typedef struct sqlite3 sqlite3;
namespace sql {
class Connection;
}

namespace xarm {

class connection;
class statement;
class branch;
// The driver-author SDK's types (xarm/driver/): an application needs only their names.
class driver;
class rm_session;

/// tpc_begin's flags: python-oracledb's TPC_BEGIN_NEW, _JOIN, _RESUME, _PROMOTE.
enum class tpc_begin_flag { fresh, join, resume, promote };
/// tpc_end's flags: python-oracledb's TPC_END_NORMAL, _SUSPEND.
enum class tpc_end_flag { normal, suspend };

/// Which driver hands out a native handle of type Handle (connection::native_handle<Handle>).
template <class Handle>
struct native_handle_of;
template <>
struct native_handle_of<PGconn*> {
    static constexpr const char* driver = "pq";
};
template <>
struct native_handle_of<sql::Connection*> {
    static constexpr const char* driver = "mysql";
};
template <>
struct native_handle_of<sqlite3*> {
    static constexpr const char* driver = "sqlite";
};
/// SQLHDBC (unixODBC declares it as void*).
template <>
struct native_handle_of<void*> {
    static constexpr const char* driver = "odbc";
};

namespace detail {
/// Where a connection is now: a cell statements and branch guards reach it through, so
/// that moving the connection (whose move operations stay the defaulted ones) keeps them
/// working, and destroying it makes them fail cleanly instead of dangling.
template <class D>
class anchor {
  protected:
    anchor() : m_self(std::make_shared<D*>(static_cast<D*>(this))) {}
    anchor(anchor&& o) noexcept : m_self(std::move(o.m_self)) {
        if (m_self) *m_self = static_cast<D*>(this);
    }
    anchor& operator=(anchor&& o) noexcept {
        m_self = std::move(o.m_self);
        if (m_self) *m_self = static_cast<D*>(this);
        return *this;
    }
    ~anchor() = default;
    anchor(const anchor&) = delete;
    anchor& operator=(const anchor&) = delete;
    std::weak_ptr<D*> self() const noexcept { return m_self; }

  private:
    std::shared_ptr<D*> m_self;
};
}  // namespace detail

/// Loads a driver by name ("pq", "mysql", "sqlite", "odbc": libxarm_<name>.so, searched
/// in $XARM_DRIVER_PATH, beside libxarm, then the system's library path) or by library
/// path. The error lists every place tried.
XARM_API std::shared_ptr<const driver> load_driver(std::string_view name_or_path);
/// The library load_driver(name_or_path) loads (the same search), as a path when it was
/// found in a directory, else the bare file name the system's search found.
XARM_API std::string driver_library(std::string_view name_or_path);
/// The names of the drivers in the places load_driver searches by name (libraries
/// libxarm_<name>.so that export a driver), each once, sorted.
XARM_API std::vector<std::string> available_drivers();
/// The driver describing database `dbms` (connection::dbms()): the driver of that name
/// when it is found and has a profile(), else null. A bridge's connections are
/// described by their database's own driver.
XARM_API std::shared_ptr<const driver> describing_driver(std::string_view dbms);

/// One database connection speaking PEP 249's two-phase API. Usable from any one
/// thread at a time.
///
/// Statements take parameters written as `?` whatever the database (rewritten for
/// PostgreSQL as $1, $2, ...; a `?` inside a literal, a quoted identifier, a dollar quote
/// or a comment is no placeholder) and bound through the client library's own binding,
/// never pasted into the text: nullptr or std::nullopt (NULL), bool, integers up to 64
/// bits, float and double, std::string, std::string_view and const char* (text),
/// xarm::bytes (binary), a std::chrono::sys_time (a timestamp, UTC, to the microsecond),
/// std::optional of any of them, and xarm::value. A statement without arguments is sent
/// as written (several statements where the database takes them).
class XARM_API connection : private detail::anchor<connection> {
  public:
    connection(std::shared_ptr<const driver> drv, std::string_view info);
    ~connection();
    connection(connection&&) noexcept;
    connection& operator=(connection&&) noexcept;
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    /// PEP 249 xid(format_id, gtrid, bqual); validates (programming_error).
    static xarm::xid xid(long format_id, std::string_view gtrid, std::string_view bqual);

    /// Begins a branch, or goes on with one of this connection's (python-oracledb's
    /// tpc_begin):
    /// - tpc_begin_flag::fresh (TPC_BEGIN_NEW): a new branch; programming_error inside a
    ///   branch or with local work pending. `timeout` > 0: the branch may stay inactive
    ///   (idle between statements, or suspended; never once prepared) that many seconds,
    ///   after which the server rolls it back and ends the session (capability::timeout,
    ///   else not_supported_error); later calls then raise operational_error or
    ///   rollback_error, and the connection must be closed.
    /// - tpc_begin_flag::join (TPC_BEGIN_JOIN): x is the branch ended here by tpc_end();
    ///   its work goes on (capability::join).
    /// - tpc_begin_flag::resume (TPC_BEGIN_RESUME): x is the branch suspended here by
    ///   tpc_end(x, suspend) (capability::suspend_resume).
    /// - tpc_begin_flag::promote (TPC_BEGIN_PROMOTE): always not_supported_error (XA has
    ///   no promotion of local work into a branch; see README).
    /// join/resume with a timeout, a negative timeout or a flag outside the enumeration:
    /// programming_error.
    void tpc_begin(const xarm::xid& x, tpc_begin_flag flags = tpc_begin_flag::fresh,
                   std::chrono::seconds timeout = std::chrono::seconds{0});
    /// Ends (tpc_end_flag::normal, TPC_END_NORMAL) or suspends (tpc_end_flag::suspend,
    /// TPC_END_SUSPEND, capability::suspend_resume) the active branch: x must be the
    /// current branch, a null xid meaning it. Afterwards no statements until the branch
    /// is joined or resumed; tpc_prepare(), tpc_commit() and tpc_rollback() take it as it
    /// is. programming_error without an active branch; rollback_error when its work
    /// failed (the branch is then rolled back and the connection free).
    void tpc_end(const xarm::xid& x = {}, tpc_end_flag flags = tpc_end_flag::normal);
    /// Phase one: ends the branch's work (when tpc_end() did not) and prepares it, and
    /// returns the vote, which says whether a commit is needed: vote::read_only when the
    /// branch wrote nothing and is already gone (drivers that declare read_only_vote).
    /// Afterwards only tpc_commit() or tpc_rollback() are allowed.
    vote tpc_prepare();
    /// Phase two when prepared, else a one-phase commit. A read-only vote at prepare
    /// leaves nothing to do. After any answer, success or error, the connection is out
    /// of the branch and can begin another.
    void tpc_commit();
    /// Right after tpc_begin(), before any statement of the branch: queues a statement
    /// (with `?` placeholders and their arguments) to run first in the branch, in the same
    /// round trip as the branch's first statement where the driver can (pq: with its
    /// BEGIN), so that it costs no round trip of its own. True when queued. Once queued it
    /// is part of the branch: a branch that runs no statement sends it (alone, waiting for
    /// its answer) before tpc_prepare() or a one-phase tpc_commit(); its failure is that
    /// of the branch's first statement. False (nothing queued, run it yourself): the
    /// driver cannot defer (mysql, sqlite, odbc), or the branch's first round trip has gone.
    bool tpc_defer(std::string_view sql, std::span<const value> params);
    /// Drops the statement tpc_defer() queued if it was not sent yet (true); false when
    /// there is none or it went out already (it stays part of the branch).
    bool tpc_withdraw_deferred();
    /// By xid. one_phase=false: commits a prepared branch: this connection's (as
    /// tpc_commit()) or, outside a branch, any (recovery). one_phase=true: commits in one
    /// phase the branch ended on this connection by tpc_end(), unprepared. Anything else
    /// (a branch not ended here, one_phase for a prepared one, a prepared branch of
    /// another connection while one is in progress here) is a programming_error.
    void tpc_commit(const xarm::xid& x, bool one_phase = false);
    void tpc_rollback();
    /// By xid: this connection's branch (as tpc_rollback()), or outside a branch any
    /// prepared one (recovery).
    void tpc_rollback(const xarm::xid& x);
    /// Forgets a heuristically completed branch (xa_forget); not inside a branch. PEP 249
    /// has no forget: this is XA's, for branches a tpc_commit() reported heuristic.
    void tpc_forget(const xarm::xid& x);
    /// In-doubt branches this connection may finish, foreign names as unparsed xids.
    std::vector<xarm::xid> tpc_recover();

    /// Runs a statement (in the branch when one is active); returns rows affected.
    std::int64_t execute(std::string_view sql);
    result query(std::string_view sql);
    /// With bound parameters: c.execute("UPDATE t SET v = ? WHERE id = ?", v, id). A
    /// number of arguments other than the number of placeholders is a programming_error
    /// (SQLSTATE 07001) before anything is sent.
    template <bindable... Args>
    requires(sizeof...(Args) > 0) std::int64_t execute(std::string_view sql, const Args&... args) {
        const value params[] = {value(args)...};
        return execute(sql, std::span<const value>(params));
    }
    template <bindable... Args>
    requires(sizeof...(Args) > 0) result query(std::string_view sql, const Args&... args) {
        const value params[] = {value(args)...};
        return query(sql, std::span<const value>(params));
    }
    /// With parameters assembled at run time.
    std::int64_t execute(std::string_view sql, std::span<const value> params);
    result query(std::string_view sql, std::span<const value> params);
    /// A statement to run many times (server-side where the client library has it),
    /// usable across transactions and branches for as long as the connection is open.
    statement prepare(std::string_view sql);
    /// Local transaction control; programming_error inside a branch (PEP 249).
    void commit();
    void rollback();

    capability_set capabilities() const;
    const driver& drv() const;
    /// Which database the connection talks to, as the name of the driver describing it
    /// (driver::profile): "pq", "mysql", "sqlite"; through ODBC the DBMS behind it.
    std::string dbms() const;
    /// The current branch, or a null xid.
    xarm::xid current() const;
    /// True between tpc_prepare() and tpc_commit()/tpc_rollback().
    bool prepared() const noexcept;
    /// True while the current branch is ended (tpc_end normal) or suspended by tpc_end.
    bool ended() const noexcept;
    /// The client library's connection, untyped; prefer native_handle<Handle>().
    void* native_handle() noexcept;
    /// The client library's connection: PGconn* (pq), sql::Connection* (mysql), sqlite3*
    /// (sqlite), SQLHDBC (odbc); programming_error when this connection's driver hands
    /// out another type. Never close or free it.
    /// - pq: taking the PGconn switches the session to direct mode for good: since the
    ///   application may now send statements itself, every later tpc_begin sends BEGIN at
    ///   once (a round trip more per branch), and a BEGIN still pending is sent now.
    /// - mysql: the sql::Connection* changes: a connection holding a prepared MariaDB
    ///   branch is set aside and work goes on on another one, so the pointer is valid
    ///   only until the next call on this connection (take it again after tpc_begin, a
    ///   statement outside a branch, tpc_prepare or phase two).
    /// - odbc: the SQLHDBC stays the same, but through MariaDB it is reconnected after
    ///   each tpc_prepare (statement handles made on it are freed then).
    template <class Handle>
    Handle native_handle() {
        return static_cast<Handle>(checked_native_handle(native_handle_of<Handle>::driver));
    }
    void close();

    /// The protocol session, for code that drives XA verbs with flags directly.
    rm_session& session();

  private:
    friend class statement;
    friend class branch;
    friend class detail::anchor<connection>;
    struct state;  // the protocol session and the current branch (connection.cpp)
    void check_open() const;
    const char* phase_text() const noexcept;
    void leave_branch() noexcept;
    void abandon_branch() noexcept;
    /// xa_end of the current branch (TMSUCCESS or TMSUSPEND); when the work failed, rolls
    /// back and leaves the branch before rethrowing.
    void end_branch(long flags);
    /// Statements are not allowed between tpc_prepare() and phase two.
    void check_statement(const char* what) const;
    result run(std::string_view sql, std::span<const value> params, bool rows);
    result run_prepared(std::uint64_t id, std::size_t expected, std::span<const value> params,
                        bool rows);
    void* checked_native_handle(const char* driver);

    std::unique_ptr<state> m_state;  // null once moved from
};

/// xarm::connect("pq", "host=... dbname=..."): load_driver + connection.
XARM_API connection connect(std::string_view driver_name_or_path, std::string_view info);

/// A prepared statement of a connection: auto st = c.prepare(sql); st.execute(args...).
/// Follows its connection when that is moved; once the connection is closed or
/// destroyed, using it is a programming_error.
class XARM_API statement {
  public:
    statement() = default;
    ~statement();
    statement(statement&& o) noexcept;
    statement& operator=(statement&&) noexcept;
    statement(const statement&) = delete;
    statement& operator=(const statement&) = delete;

    template <bindable... Args>
    std::int64_t execute(const Args&... args) {
        const value params[sizeof...(Args) + 1] = {value(args)...};
        return execute(std::span<const value>(params, sizeof...(Args)));
    }
    template <bindable... Args>
    result query(const Args&... args) {
        const value params[sizeof...(Args) + 1] = {value(args)...};
        return query(std::span<const value>(params, sizeof...(Args)));
    }
    std::int64_t execute(std::span<const value> params);
    result query(std::span<const value> params);

    /// The text as given to prepare(), and its number of placeholders.
    const std::string& sql() const noexcept { return m_sql; }
    std::size_t parameters() const noexcept { return m_params; }

  private:
    friend class connection;
    statement(std::weak_ptr<connection*> c, std::uint64_t id, std::size_t params, std::string sql)
        : m_conn(std::move(c)), m_id(id), m_params(params), m_sql(std::move(sql)) {}
    void release() noexcept;
    std::weak_ptr<connection*> m_conn;
    std::uint64_t m_id = 0;
    std::size_t m_params = 0;
    std::string m_sql;
};

/// A two-phase branch for the length of a scope: the constructor begins it (tpc_begin);
/// prepare() and commit() finish it; leaving the scope without commit() or rollback()
/// rolls it back (the destructor never throws). commit() without prepare() is a
/// one-phase commit. Once commit() or rollback() was called, whatever their outcome, the
/// destructor leaves the branch alone.
class XARM_API branch {
  public:
    branch(connection& c, const xarm::xid& x);
    ~branch();
    branch(const branch&) = delete;
    branch& operator=(const branch&) = delete;
    branch(branch&&) = delete;
    branch& operator=(branch&&) = delete;

    /// tpc_prepare(): the vote.
    vote prepare();
    void commit();
    void rollback();
    const xarm::xid& xid() const noexcept { return m_xid; }

  private:
    connection& conn() const;
    std::weak_ptr<connection*> m_conn;
    xarm::xid m_xid;
    bool m_done = false;
};

}  // namespace xarm
