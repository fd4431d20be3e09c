// The driver interface: the database primitives a driver implements. The XA protocol
// (states, flags, which call is legal when, which code to return) is the core's; a
// driver never checks protocol state. Adding a driver touches nothing in xa/.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xarm/capability.hpp"
#include "xarm/driver/codec.hpp"
#include "xarm/driver/sql.hpp"
#include "xarm/error.hpp"
#include "xarm/export.h"
#include "xarm/result.hpp"
#include "xarm/value.hpp"
#include "xarm/xid.hpp"

namespace xarm {

enum class start_mode { fresh, join, resume };
enum class end_mode { success, fail, suspend };

/// A statement prepared on a native session (native_session::prepare). The core destroys
/// every one before the session that made it.
class XARM_API native_statement {
  public:
    native_statement() = default;
    virtual ~native_statement();
    native_statement(const native_statement&) = delete;
    native_statement& operator=(const native_statement&) = delete;
};

/// One open database connection. The core calls a primitive only when the protocol
/// allows it; primitives report failure by throwing xarm::error with the XA code from
/// the driver's native-error table (a rollback code only when the branch is gone).
class XARM_API native_session {
  public:
    native_session() = default;
    virtual ~native_session();
    native_session(const native_session&) = delete;
    native_session& operator=(const native_session&) = delete;

    virtual capability_set capabilities() const = 0;

    // Branch primitives.
    virtual void start(const xid& x, start_mode mode) = 0;
    /// start(x, fresh) for a branch the server is to end (rolling it back) once it has
    /// been inactive (idle or suspended, not prepared) for `timeout` (> 0). Drivers that
    /// declare capability::timeout override it; the core never calls the default.
    virtual void start_with_timeout(const xid& x, std::chrono::seconds timeout);
    virtual void end(const xid& x, end_mode mode) = 0;
    virtual vote prepare(const xid& x) = 0;
    /// one_phase: the branch is idle on this session. Otherwise x is prepared (by this
    /// session or any other, possibly an unparsed foreign name).
    virtual void commit(const xid& x, bool one_phase) = 0;
    /// prepared=false: the branch is idle on this session; true: prepared anywhere.
    virtual void rollback(const xid& x, bool prepared) = 0;
    /// Every prepared branch this connection may finish, foreign names included.
    virtual std::vector<xid> recover() = 0;
    /// Forget a heuristically completed branch. Drivers whose servers never report
    /// heuristic outcomes keep this default, which the core never reaches.
    virtual void forget(const xid& x);

    // Local work (autocommit off, as PEP 249 wants: the first statement begins a
    // transaction). Inside a branch, the same calls do the branch's work.
    /// The text as written (the database's own syntax; several statements where the
    /// database takes them), no parameters.
    virtual std::int64_t execute(std::string_view sql) = 0;
    virtual result query(std::string_view sql) = 0;

    // Bound parameters. sql is one statement whose placeholders the core has already
    // rewritten as syntax() says, exactly params.size() of them; every value is bound
    // through the client library's own binding, never pasted into the text. rows=false:
    // the caller wants only the count of rows changed.
    /// How the core finds placeholders in this database's SQL (standard SQL by default).
    virtual sql_syntax syntax() const;
    /// Default: not supported (0A000) unless params is empty.
    virtual result execute_params(std::string_view sql, std::span<const value> params, bool rows);
    /// A statement to run many times, server-side where the client library can. Default:
    /// the text kept and run through execute_params each time.
    virtual std::unique_ptr<native_statement> prepare(std::string_view sql, std::size_t params);
    virtual result execute_prepared(native_statement& st, std::span<const value> params, bool rows);
    /// Queues sql (placeholders as syntax() says, params.size() of them) to run first in
    /// the branch just started on this session, sent together with the branch's first
    /// round trip (pq: with its pending BEGIN), so that it costs none of its own. True
    /// when queued; a queued statement is never dropped except by withdraw_deferred() or
    /// a rollback: a branch that runs no statement sends it (and waits for its answer)
    /// before prepare, a one-phase commit or handing out the native handle. Its failure
    /// is the failure of the statement it travels with (the branch's work fails). The
    /// default, and whenever the branch's first round trip has gone already: false,
    /// nothing queued (the caller runs the statement itself).
    virtual bool defer_statement(std::string_view sql, std::span<const value> params);
    /// Drops the statement defer_statement() queued, when it was not sent yet (true);
    /// false when there is none or it is on its way (then it stays part of the branch).
    virtual bool withdraw_deferred();
    virtual void commit_local() = 0;
    virtual void rollback_local() = 0;
    /// A local transaction has begun and is not finished (xa_start must say XAER_OUTSIDE).
    virtual bool in_local_transaction() const = 0;

    /// The database's own handle (PGconn*, sqlite3*, ...), for applications' SQL work.
    virtual void* native_handle() noexcept = 0;

    /// Which database this session talks to, as the name of the driver whose profile()
    /// describes it ("pq", "mysql", "sqlite"). Empty (the default): the driver's own.
    /// A bridge (ODBC) names the database behind it.
    virtual std::string dbms() const { return {}; }
};

/// What the conformance suite and the `xarm` command need to know of a database's SQL,
/// supplied by the database's own driver so that adding a driver touches only its
/// folder. An empty field: the database has no such thing (the cases needing it are
/// not applicable).
struct dbms_profile {
    std::string lock_timeout = {};     ///< makes a blocked statement fail within about a second
    std::string foreign_prepare = {};  ///< fmt {table}, {gid}: a transaction prepared outside XA
    std::string foreign_commit = {};   ///< fmt {gid}: commits it by name
    /// Rows (server name, prepared at, owner, database) of the prepared transactions.
    std::string prepared_details = {};
    /// Column types for booleans, 64-bit integers, doubles, UTF-8 text, bytes, timestamps.
    std::string type_boolean = {}, type_integer = {}, type_real = {}, type_text = {},
                type_binary = {}, type_time = {};
    /// Select-list items holding ? inside this database's own quoting and comments, in
    /// place of the standard `"id" AS "q?"` (empty: the standard form is all it has).
    std::string own_quoting = {};
};

/// A development or CI server a driver is tested against: the environment variable
/// holding its info string, and the label of its column in the conformance matrix.
struct test_server {
    std::string label;     ///< "pq", "odbc/mysql"
    std::string variable;  ///< "XARM_TEST_PQ"; empty: `fallback` needs no server
    std::string dbms;      ///< the database behind it (see native_session::dbms)
    /// An info string used when there is no variable, with {dir} standing for a
    /// scratch directory (SQLite: "path={dir}/conformance.db").
    std::string fallback = {};
};

/// A database driver: a name, a declaration, and connections.
class XARM_API driver {
  public:
    driver() = default;
    virtual ~driver();
    driver(const driver&) = delete;
    driver& operator=(const driver&) = delete;
    virtual std::string_view name() const noexcept = 0;
    /// What connections of this driver can do, before any is opened (ODBC: the most a
    /// connection can have; the connection's own list is authoritative).
    virtual capability_set capabilities() const = 0;
    /// The keys the info string accepts, with a short description each, for --help.
    virtual std::string info_help() const = 0;
    /// Opens a connection; XAER_INVAL for a bad info string, XAER_RMERR when it cannot
    /// be opened (the server is unreachable, the login fails). Messages never contain a
    /// password.
    virtual std::unique_ptr<native_session> open(std::string_view info) const = 0;

    /// The SQL snippets of the database this driver is native to; none for a bridge.
    virtual std::optional<dbms_profile> profile() const { return std::nullopt; }
    /// The server's name for a branch (pq: its gid), matching the first column of
    /// profile()->prepared_details; empty when there is no such name.
    virtual std::string server_name(const xid& /*x*/) const { return {}; }
    /// The servers `xarm conformance --all` and the test suite run this driver against.
    virtual std::vector<test_server> test_servers() const { return {}; }
    /// An info string this driver cannot open, carrying `secret` as its password (the
    /// suite checks that no message shows it).
    virtual std::string unusable_info(std::string_view usable, std::string_view secret) const;
};

}  // namespace xarm
