// PostgreSQL's two-phase SQL dialect, without libpq: the statement texts, the recovery
// and read-only queries and the SQLSTATE -> XA table. Shared by the pq driver (libpq)
// and the odbc driver (when the backend is PostgreSQL), as the static library
// xarm_pq_dialect. The API is stable: add functions, do not change these.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "xarm/driver/driver.hpp"
#include "xarm/xid.hpp"

namespace xarm::pq {

/// An SQL string literal for any text, E'...' with ' and \ doubled, so it reads the same
/// whatever standard_conforming_strings is; XAER_INVAL (22021) when text contains NUL.
std::string quote_literal(std::string_view text);

/// The gid of x as an SQL literal: encode_pg_gid (DESIGN §4), or an unparsed xid's name.
std::string gid_literal(const xid& x);

/// "PREPARE TRANSACTION E'<gid>'" (success: command status "PREPARE TRANSACTION";
/// "ROLLBACK" means the block had already failed and nothing was prepared).
std::string prepare_sql(const xid& x);
/// "COMMIT PREPARED E'<gid>'" (outside any transaction block).
std::string commit_prepared_sql(const xid& x);
/// "ROLLBACK PREPARED E'<gid>'" (outside any transaction block).
std::string rollback_prepared_sql(const xid& x);

/// Read-only vote and prepare in one round trip: "<read_only_check_sql>; PREPARE ...".
/// When the branch wrote nothing the check fails with read_only_sqlstate (22012) before
/// PREPARE runs, the block is aborted and the caller sends ROLLBACK and votes read-only.
std::string check_and_prepare_sql(const xid& x);
/// The check alone: fails with read_only_sqlstate when no transaction id was assigned
/// (pg_current_xact_id_if_assigned() IS NULL: the branch wrote nothing), else one row.
extern const char* const read_only_check_sql;
/// The SQLSTATE the read-only check fails with (division_by_zero).
inline constexpr std::string_view read_only_sqlstate = "22012";
/// A plain query answering one boolean column: "t" when the transaction wrote nothing.
extern const char* const wrote_nothing_sql;
/// Parses wrote_nothing_sql's value ("t"/"f", "1"/"0", "true"/"false").
bool parse_bool(std::string_view value);

/// True when a statement's command tag proves the transaction wrote (INSERT, UPDATE,
/// DELETE, MERGE or COPY with a row count > 0): prepare can then skip the read-only check.
bool tag_proves_write(std::string_view command_tag) noexcept;

/// Lists gids this connection may finish: current database, owned by current_user, or
/// all of the database's when current_user is a superuser; oldest first. One column gid.
extern const char* const recover_sql;
/// One recovered gid as an xid: ours/pgjdbc/psycopg/LIXA decode, others are unparsed.
xid parse_recovered_gid(std::string_view gid);
/// All rows of recover_sql (column 0 values) as xids, in order.
std::vector<xid> parse_recovered(const std::vector<std::string>& gids);

/// One column: max_prepared_transactions as an integer text.
extern const char* const max_prepared_sql;
/// The connection's capability list given max_prepared_transactions (from max_prepared_sql).
capability_set capabilities_for(long max_prepared_transactions);

/// What was being done when the server reported an error (the mapping depends on it).
enum class op {
    open,             ///< connecting, or the checks right after
    statement,        ///< the branch's or a local transaction's work
    end,              ///< xa_end found the block failed: the error that aborted it
    prepare,          ///< PREPARE TRANSACTION (a failure there rolls the branch back)
    commit_one,       ///< COMMIT of an unprepared branch (a failure there rolls it back)
    finish,           ///< ROLLBACK PREPARED by gid
    commit_prepared,  ///< COMMIT PREPARED by gid
    rollback,         ///< ROLLBACK of an unprepared branch
    recover,          ///< the recovery query
};

/// The XA code for a server error with sqlstate during o (the one SQLSTATE table).
/// Connection loss (class 08, 57P01-57P03) is XAER_RMFAIL in every context; in prepare,
/// commit_one and end every other error is an XA_RB* code (the branch is gone).
int xa_code_for(std::string_view sqlstate, op o) noexcept;
/// The XA_RB* code for the error that aborted a transaction (40P01 -> XA_RBDEADLOCK,
/// 40001 -> XA_RBTRANSIENT, 23xxx/40002 -> XA_RBINTEGRITY, 57014/55P03 -> XA_RBTIMEOUT,
/// else XA_RBROLLBACK); empty sqlstate -> XA_RBROLLBACK.
int rollback_code_for(std::string_view sqlstate) noexcept;
/// True for SQLSTATEs that mean the session is gone (class 08, 57P01, 57P02, 57P03).
bool is_connection_loss(std::string_view sqlstate) noexcept;
/// A sentence explaining sqlstate in o when the server's own text is not enough
/// (temporary objects, permission on another role's branch, prepared transactions
/// disabled, branch in another database, ...); empty when there is none.
std::string explain(std::string_view sqlstate, op o);

}  // namespace xarm::pq
