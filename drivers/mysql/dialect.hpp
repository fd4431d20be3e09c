// The MySQL/MariaDB SQL dialect of XA, independent of any client library: statement
// texts, XA RECOVER parsing, server detection and the server-error table. Built as the
// static library xarm_mysql_dialect so that the ODBC driver can speak XA to a MySQL or
// MariaDB backend without Connector/C++.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "xarm/driver/codec.hpp"
#include "xarm/xid.hpp"

namespace xarm::mysql {

/// Which server family speaks: the two differ in XA RECOVER's binary-safe form.
enum class dialect {
    mariadb,  ///< XA RECOVER FORMAT='SQL' (MariaDB 10.3+)
    mysql,    ///< XA RECOVER CONVERT XID (MySQL 5.7+)
};

/// The dialect of a server from its version string (SELECT VERSION() or the handshake).
dialect detect_dialect(std::string_view server_version) noexcept;
/// "mariadb" or "mysql", for messages.
const char* to_string(dialect d) noexcept;

/// A server's family and version, from its version string: "8.0.36-0ubuntu0.22.04.1",
/// "8.4.0-commercial", "5.7.44-log", "10.11.6-MariaDB-0+deb12u1", and MariaDB's
/// replication-compatible "5.5.5-10.11.6-MariaDB" (the real version follows 5.5.5-).
/// Numbers that cannot be read stay 0.
struct server_version {
    dialect family = dialect::mysql;
    int major = 0, minor = 0, patch = 0;
    bool at_least(int ma, int mi, int pa) const noexcept;
};
server_version parse_server_version(std::string_view server_version_string) noexcept;

/// What differs in XA between the servers xarm knows (documented in drivers/mysql/README.md).
struct xa_traits {
    /// MySQL 8.0.30+: @@xa_detach_on_prepare exists (default ON): XA PREPARE detaches the
    /// branch from its session, so any connection can finish it at once and the session
    /// is free; read the variable itself (a session or global setting may differ).
    bool has_detach_on_prepare = false;
    /// MySQL 8.0+: XA RECOVER needs the XA_RECOVER_ADMIN privilege (else error 1227).
    bool recover_needs_privilege = false;
    /// MariaDB: information_schema.SESSION_STATUS (the read-only vote's write counter).
    bool has_session_status = false;
    /// MariaDB 10.3+: anonymous compound statements (BEGIN NOT ATOMIC ... END).
    bool has_compound_statements = false;
};
xa_traits traits_of(const server_version& v) noexcept;

/// The statement reading @@xa_detach_on_prepare (only where traits_of says it exists).
inline constexpr const char* detach_on_prepare_sql = "SELECT @@xa_detach_on_prepare";
/// Its value as read ("1", "ON"): true when XA PREPARE detaches the branch.
bool parse_detach_on_prepare(std::string_view value) noexcept;

/// XA START <xid>; the xid is always written as hex literals (encode_mysql_xid).
std::string xa_start_sql(const xid& x);
/// XA END <xid>.
std::string xa_end_sql(const xid& x);
/// XA PREPARE <xid>.
std::string xa_prepare_sql(const xid& x);
/// "XA END <xid>;XA PREPARE <xid>": one round trip on a multi-statement connection.
std::string xa_end_prepare_sql(const xid& x);
/// XA COMMIT <xid> [ONE PHASE].
std::string xa_commit_sql(const xid& x, bool one_phase);
/// XA ROLLBACK <xid>.
std::string xa_rollback_sql(const xid& x);
/// Phase two of a prepared branch: XA COMMIT <xid> (commit) or XA ROLLBACK <xid>, and
/// the verb's name for messages.
std::string xa_finish_sql(const xid& x, bool commit);
const char* xa_finish_verb(bool commit) noexcept;
/// MariaDB: one number that moves whenever a statement of this session may have written a
/// table, read inside the branch at XA START and again before XA PREPARE. MariaDB has no
/// "this transaction wrote" flag a client may read (information_schema.INNODB_TRX needs
/// the PROCESS privilege), and discards a prepared branch that wrote nothing when its
/// connection ends, so that XA COMMIT then says it was rolled back. The sum takes the
/// Handler_write/update/delete row calls (every engine, triggers, routines, LOAD DATA;
/// not internal temporary tables) and the DELETE/UPDATE statement counts, since DELETE
/// without WHERE empties MyISAM, Aria and MEMORY tables with no row call (seen on
/// MariaDB 10.11: Aria keeps such a branch as a write). It may move for writes that need
/// no commit (a TEMPORARY table, an UPDATE that matched nothing): such a branch is then
/// prepared as before. Not for MySQL servers (no information_schema.SESSION_STATUS).
extern const char* const write_counter_sql;
/// Parses write_counter_sql's value; nullopt when it is not a number.
std::optional<unsigned long long> parse_write_counter(std::string_view value) noexcept;

/// The XA RECOVER form of d whose data column cannot be confused by the xid's bytes.
std::string xa_recover_sql(dialect d);

/// One XA RECOVER row (columns formatID, gtrid_length, bqual_length, data, as read from
/// xa_recover_sql(d)) as a byte-exact xid; nullopt when the row does not parse (then
/// the caller may return it as xid::unparsed(data)).
std::optional<xid> parse_recover_row(dialect d, long format_id, long gtrid_length,
                                     long bqual_length, std::string_view data);

/// What a server error number means to XA.
struct server_error {
    int xa_code;           ///< the XA code to report (XAER_* or XA_RB*)
    const char* sqlstate;  ///< SQLSTATE to report, or nullptr: keep the server's own
    bool connection_lost;  ///< the connection is gone (XAER_RMFAIL; outcome may be unknown)
    /// What the user should know, added to the message (a server difference, a
    /// privilege to grant), or nullptr.
    const char* explanation = nullptr;
};

/// The table entry for a server (or client library: 2006, 2013, ...) error number;
/// nullptr when the number is not in the table (report XAER_RMERR with the server's
/// SQLSTATE).
const server_error* lookup_server_error(unsigned errnum) noexcept;
/// The XA code for errnum, or fallback when the table does not know it.
int xa_code_of(unsigned errnum, int fallback) noexcept;
/// True for errors that mean the connection is unusable (server gone, killed, lost).
bool is_connection_lost(unsigned errnum) noexcept;

/// Server error numbers the drivers test for by name.
namespace errnum {
inline constexpr unsigned lock_wait_timeout = 1205;        ///< ER_LOCK_WAIT_TIMEOUT
inline constexpr unsigned deadlock = 1213;                 ///< ER_LOCK_DEADLOCK
inline constexpr unsigned xaer_nota = 1397;                ///< ER_XAER_NOTA: unknown XID
inline constexpr unsigned xaer_inval = 1398;               ///< ER_XAER_INVAL
inline constexpr unsigned xaer_rmfail = 1399;              ///< ER_XAER_RMFAIL: wrong XA state
inline constexpr unsigned xaer_outside = 1400;             ///< ER_XAER_OUTSIDE
inline constexpr unsigned xaer_rmerr = 1401;               ///< ER_XAER_RMERR
inline constexpr unsigned xa_rbrollback = 1402;            ///< ER_XA_RBROLLBACK
inline constexpr unsigned xaer_dupid = 1440;               ///< ER_XAER_DUPID
inline constexpr unsigned xa_rbtimeout = 1613;             ///< ER_XA_RBTIMEOUT
inline constexpr unsigned xa_rbdeadlock = 1614;            ///< ER_XA_RBDEADLOCK
inline constexpr unsigned unknown_system_variable = 1193;  ///< ER_UNKNOWN_SYSTEM_VARIABLE
inline constexpr unsigned specific_access_denied = 1227;   ///< ER_SPECIFIC_ACCESS_DENIED_ERROR
inline constexpr unsigned xa_temp_table = 4091;            ///< ER_XA_TEMP_TABLE (MySQL 8.0.30+)
}  // namespace errnum

/// Phase two of a prepared branch by xid on a connection other than the one that prepared
/// it. MariaDB answers "unknown XID" (1397) while the branch is still attached to a
/// server session: a live one (of another process, or of this process outside the
/// driver's reach), or one the client has just closed and the server is still tearing
/// down (SQLDisconnect and Connection::close return before that). Both drivers finish
/// such branches with finish_detached.
struct detached_wait {
    /// How long a branch may stay attached to a session this process has closed before
    /// the drivers give up: far more than a local server takes to tear a session down
    /// (a few ms), short enough to answer a caller that must retry later.
    static constexpr std::chrono::milliseconds budget{2000};
    /// The pause between XA COMMIT/ROLLBACK attempts (each costs XA RECOVER too).
    static constexpr std::chrono::milliseconds pause{20};
    /// The pause between cheaper checks that the old session is gone (PROCESSLIST).
    static constexpr std::chrono::milliseconds poll{2};
    /// After the old session left PROCESSLIST: time for the server to finish detaching
    /// its branch (wait_session_gone).
    static constexpr std::chrono::milliseconds settle{20};
};

/// Calls gone() every detached_wait::poll until it is true or detached_wait::budget has
/// passed; returns its last answer.
bool wait_detached(const std::function<bool()>& gone);

/// Runs a SELECT COUNT(*) and returns its answer, or nullopt when it could not.
using count_query = std::function<std::optional<long>(const std::string& sql)>;

/// Waits (up to detached_wait::budget) until the server has torn down `session` (a
/// CONNECTION_ID()), a connection this process closed while it held a prepared branch.
/// MariaDB 10.11 makes the branch visible to other sessions before it detaches the
/// branch's InnoDB transaction from the closing session, and an XA COMMIT arriving in
/// between answers success yet commits nothing (the transaction stays prepared, out of
/// XA RECOVER's sight, until a restart lists it again). The wait lasts until the session
/// has left PROCESSLIST (a user always sees its own sessions), which MariaDB does a few
/// instructions before that detach, then detached_wait::settle more: it narrows the
/// server's window to a stall of the closing thread longer than that, not closes it.
/// With session 0 (the holder is unknown: a branch of another process, or of a crashed
/// coordinator, being recovered) it waits until none of this user's sessions is being
/// torn down (PROCESSLIST command 'Killed'). Returns false when the budget passed first.
bool wait_session_gone(long session, const count_query& count);

/// What finish_detached found.
enum class detached_result {
    finished,        ///< XA COMMIT/ROLLBACK succeeded
    rolled_back,     ///< the server had rolled the branch back (1402, ER_XA_RBROLLBACK)
    not_prepared,    ///< unknown XID and not listed by XA RECOVER: no such branch
    still_attached,  ///< unknown XID, yet listed: attached to a live session
    failed,          ///< another server error (errnum): the caller reports it
};
struct detached_outcome {
    detached_result what;
    unsigned errnum = 0;  ///< the last server error (0 after finished)
};

/// The retry loop of phase two on a branch possibly still attached to a closing session.
/// attempt: sends XA COMMIT or XA ROLLBACK once, returns 0 or the server's error number
/// (a lost connection may throw instead: it propagates). listed: runs XA RECOVER and
/// says whether the branch is there. wait: the branch was attached to a connection this
/// process closed, so "unknown XID" while listed means "not torn down yet": try again
/// every detached_wait::pause within detached_wait::budget; without wait,
/// still_attached at once.
detached_outcome finish_detached(const std::function<unsigned()>& attempt,
                                 const std::function<bool()>& listed, bool wait);

/// The message when wait_session_gone gave up: what (e.g. "XA COMMIT") of x.
std::string closing_session_message(std::string_view what, const xid& x);

/// The message for detached_result::still_attached: what (e.g. "XA COMMIT") of x, and
/// why it cannot be done from here now.
std::string still_attached_message(std::string_view what, const xid& x);

/// XA COMMIT of a prepared branch answered ER_XA_RBROLLBACK: the server had rolled the
/// branch back (MariaDB does so for one that wrote nothing once its connection ends, but
/// cannot say whether it wrote). A commit must not report success then: XA_HEURRB, the
/// code the XA specification gives a prepared branch found rolled back.
[[noreturn]] void raise_rolled_back_at_commit(const xid& x, unsigned native);

}  // namespace xarm::mysql
