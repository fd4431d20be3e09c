// The MySQL/MariaDB SQL dialect of XA, independent of any client library: statement
// texts, XA RECOVER parsing, server detection and the server-error table. Built as the
// static library xarm_mysql_dialect so that the ODBC driver can speak XA to a MySQL or
// MariaDB backend without Connector/C++.
#pragma once

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
inline constexpr unsigned lock_wait_timeout = 1205;  ///< ER_LOCK_WAIT_TIMEOUT
inline constexpr unsigned deadlock = 1213;           ///< ER_LOCK_DEADLOCK
inline constexpr unsigned xaer_nota = 1397;          ///< ER_XAER_NOTA: unknown XID
inline constexpr unsigned xaer_inval = 1398;         ///< ER_XAER_INVAL
inline constexpr unsigned xaer_rmfail = 1399;        ///< ER_XAER_RMFAIL: wrong XA state
inline constexpr unsigned xaer_outside = 1400;       ///< ER_XAER_OUTSIDE
inline constexpr unsigned xaer_rmerr = 1401;         ///< ER_XAER_RMERR
inline constexpr unsigned xa_rbrollback = 1402;      ///< ER_XA_RBROLLBACK
inline constexpr unsigned xaer_dupid = 1440;         ///< ER_XAER_DUPID
inline constexpr unsigned xa_rbtimeout = 1613;       ///< ER_XA_RBTIMEOUT
inline constexpr unsigned xa_rbdeadlock = 1614;      ///< ER_XA_RBDEADLOCK
}  // namespace errnum

/// XA COMMIT of a prepared branch answered ER_XA_RBROLLBACK: the server had rolled the
/// branch back (MariaDB does so for one that wrote nothing once its connection ends, but
/// cannot say whether it wrote). A commit must not report success then: XA_HEURRB, the
/// code the XA specification gives a prepared branch found rolled back.
[[noreturn]] void raise_rolled_back_at_commit(const xid& x, unsigned native);

}  // namespace xarm::mysql
