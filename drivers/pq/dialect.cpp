// PostgreSQL's two-phase SQL dialect (no libpq here: the odbc driver links this too).
#include "dialect.hpp"

#include <fmt/format.h>

#include "xarm/driver/codec.hpp"
#include "xarm/error.hpp"
#include "xarm/xa.h"

namespace xarm::pq {

std::string quote_literal(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 4);
    out += "E'";
    for (char c : text) {
        if (c == '\0')
            raise(XAER_INVAL, "22021",
                  "a PostgreSQL string literal cannot contain a NUL byte (gid or name refused)");
        if (c == '\'' || c == '\\') out += c;  // doubled: '' and \\ in an E'' literal
        out += c;
    }
    out += '\'';
    return out;
}

std::string gid_literal(const xid& x) {
    return quote_literal(encode_pg_gid(x));
}

std::string prepare_sql(const xid& x) {
    return "PREPARE TRANSACTION " + gid_literal(x);
}
std::string commit_prepared_sql(const xid& x) {
    return "COMMIT PREPARED " + gid_literal(x);
}
std::string rollback_prepared_sql(const xid& x) {
    return "ROLLBACK PREPARED " + gid_literal(x);
}

// The function is volatile, so the division is evaluated at run time, never folded.
const char* const read_only_check_sql =
    "SELECT 1 / (pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL)::int";

std::string check_and_prepare_sql(const xid& x) {
    return fmt::format("{}; {}", read_only_check_sql, prepare_sql(x));
}

const char* const wrote_nothing_sql = "SELECT pg_catalog.pg_current_xact_id_if_assigned() IS NULL";

bool parse_bool(std::string_view v) {
    return v == "t" || v == "1" || v == "true" || v == "TRUE";
}

bool tag_proves_write(std::string_view tag) noexcept {
    // A modified row always gets the transaction an id, so "UPDATE 3" proves a write.
    for (std::string_view verb : {"INSERT ", "UPDATE ", "DELETE ", "MERGE ", "COPY "}) {
        if (tag.substr(0, verb.size()) != verb) continue;
        const auto last = tag.rfind(' ');
        const auto count = tag.substr(last + 1);
        return !count.empty() && count != "0" &&
               count.find_first_not_of("0123456789") == std::string_view::npos;
    }
    return false;
}

// Only a superuser or the role that prepared a transaction can finish it, and only from
// its database (PostgreSQL's LockGXact): list exactly those, so that a monitor's
// recovery never loops over branches it cannot finish.
const char* const recover_sql =
    "SELECT gid FROM pg_catalog.pg_prepared_xacts "
    "WHERE database = pg_catalog.current_database() "
    "AND (owner = current_user OR (SELECT rolsuper FROM pg_catalog.pg_roles "
    "WHERE rolname = current_user)) "
    "ORDER BY prepared, gid";

xid parse_recovered_gid(std::string_view gid) {
    return decode_pg_gid(gid);
}

std::vector<xid> parse_recovered(const std::vector<std::string>& gids) {
    std::vector<xid> out;
    out.reserve(gids.size());
    for (const auto& g : gids) out.push_back(parse_recovered_gid(g));
    return out;
}

const char* const max_prepared_sql =
    "SELECT pg_catalog.current_setting('max_prepared_transactions')";

capability_set capabilities_for(long max_prepared) {
    capability_set c;
    if (max_prepared > 0) {
        c.yes(capability::two_phase, "PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED")
            .yes(capability::recovery,
                 "pg_prepared_xacts of the current database: the current role's branches, or "
                 "all of them for a superuser")
            .yes(capability::read_only_vote,
                 "a branch that was assigned no transaction id wrote nothing: it votes "
                 "XA_RDONLY and leaves no prepared transaction");
    } else {
        const std::string why =
            "the server has max_prepared_transactions = 0, which disables PREPARE TRANSACTION "
            "(set it > 0 in postgresql.conf and restart the server)";
        c.no(capability::two_phase, why)
            .no(capability::recovery, why)
            .no(capability::read_only_vote, why);
    }
    c.yes(capability::one_phase, "COMMIT of the branch's transaction block")
        .yes(capability::join, "TMJOIN of an ended branch on the same connection")
        .yes(capability::suspend_resume, "on the same thread, with no other branch in between")
        .no(capability::migrate,
            "a PostgreSQL transaction belongs to one session, and xarm keeps one session per "
            "thread: it cannot move to another thread's connection")
        .no(capability::async, "libpq calls are made synchronously by this driver")
        .no(capability::interleave,
            "a PostgreSQL session holds one transaction at a time (a prepared branch no "
            "longer occupies it)")
        .yes(capability::timeout,
             "SET LOCAL idle_in_transaction_session_timeout, sent with the branch's BEGIN: "
             "PostgreSQL ends the session (rolling the branch back) once it has been idle in "
             "the branch that long; a prepared branch is not timed");
    return c;
}

std::string branch_timeout_sql(std::chrono::seconds timeout) {
    constexpr long long most = 2147483;  // the setting is an int of milliseconds
    if (timeout.count() <= 0 || timeout.count() > most)
        raise(XAER_INVAL, "22023",
              fmt::format("a branch timeout of {} seconds: PostgreSQL takes 1 to {}",
                          timeout.count(), most));
    return fmt::format("SET LOCAL idle_in_transaction_session_timeout = {}",
                       static_cast<long long>(timeout.count()) * 1000);
}

namespace {

// The SQLSTATE table: exact codes first, then classes ("23" matches 23xxx).
struct entry {
    std::string_view state;
    int rollback;  // XA_RB* when this error aborts a transaction
};
constexpr entry rollback_table[] = {
    {"40P01", XA_RBDEADLOCK}, {"40001", XA_RBTRANSIENT}, {"40002", XA_RBINTEGRITY},
    {"40003", XA_RBOTHER},    {"57014", XA_RBTIMEOUT},   {"55P03", XA_RBTIMEOUT},
    {"25P03", XA_RBTIMEOUT},  {"25P04", XA_RBTIMEOUT},   {"23", XA_RBINTEGRITY},
    {"40", XA_RBROLLBACK},
};

bool matches(std::string_view state, std::string_view key) {
    return key.size() == 2 ? state.substr(0, 2) == key : state == key;
}

}  // namespace

bool is_connection_loss(std::string_view s) noexcept {
    return s.substr(0, 2) == "08" || s == "57P01" || s == "57P02" || s == "57P03";
}

int rollback_code_for(std::string_view s) noexcept {
    for (const auto& e : rollback_table)
        if (matches(s, e.state)) return e.rollback;
    return XA_RBROLLBACK;
}

int xa_code_for(std::string_view s, op o) noexcept {
    if (is_connection_loss(s)) return XAER_RMFAIL;
    switch (o) {
        case op::open:
            return XAER_RMERR;  // xa_open answers only XAER_RMERR or XAER_INVAL
        case op::end:
        case op::commit_one:
            return rollback_code_for(s);
        case op::prepare:
            // PREPARE TRANSACTION that fails rolls the transaction back.
            if (s == "0A000" || s == "42710" || s == "55000") return XA_RBOTHER;
            return rollback_code_for(s);
        case op::commit_prepared:
            // "prepared transaction ... is busy": another backend (a dead coordinator's
            // last command) is still finishing it; try again later.
            if (s == "55000") return XA_RETRY;
            [[fallthrough]];
        case op::finish:
            if (s == "42704") return XAER_NOTA;   // no such prepared transaction
            if (s == "25001") return XAER_PROTO;  // inside a transaction block
            return XAER_RMERR;                    // 42501 (owner), 0A000 (other database), ...
        case op::statement:
            // The block is aborted either way; class 40 is a rollback the caller can retry,
            // and a timeout (a branch's, idle past tpc_begin's limit) rolled it back too.
            if (s.substr(0, 2) == "40" || s == "25P03" || s == "25P04") return rollback_code_for(s);
            return XAER_RMERR;
        case op::rollback:
        case op::recover:
            return XAER_RMERR;
    }
    return XAER_RMERR;
}

std::string explain(std::string_view s, op o) {
    if (o == op::prepare && s == "0A000")
        return "PostgreSQL cannot prepare a transaction that used temporary objects (temporary "
               "tables, ON COMMIT, WITH HOLD cursors, LISTEN, advisory session locks...): the "
               "branch was rolled back; use ordinary tables in two-phase branches";
    if (o == op::prepare && s == "42710")
        return "the gid is already used by another prepared transaction (duplicate xid): the "
               "branch was rolled back";
    if (o == op::prepare && s == "55000")
        return "prepared transactions are disabled on this server "
               "(max_prepared_transactions = 0): the branch was rolled back";
    if ((o == op::finish || o == op::commit_prepared) && s == "42501")
        return "permission denied: the prepared transaction belongs to another role; only that "
               "role or a superuser can commit or roll it back (xa_recover lists only the "
               "branches this role may finish)";
    if ((o == op::finish || o == op::commit_prepared) && s == "0A000")
        return "the prepared transaction belongs to another database; connect to that database "
               "to finish it";
    if ((o == op::finish || o == op::commit_prepared) && s == "42704")
        return "no such prepared transaction in this server";
    if ((o == op::finish || o == op::commit_prepared) && s == "25001")
        return "COMMIT/ROLLBACK PREPARED cannot run inside a transaction block: finish the "
               "local transaction on this connection first";
    if (o == op::prepare && s == "26000")
        return "xarm's read-only check statement was deallocated on the connection "
               "(DEALLOCATE ALL or DISCARD ALL sent on it directly): the branch was rolled "
               "back; the check is parsed again for the next branch";
    if ((o == op::prepare || o == op::commit_one) && s.substr(0, 2) == "23")
        return "a deferred constraint was violated: the branch was rolled back";
    if (o == op::commit_prepared && s == "55000")
        return "the prepared transaction is busy: another session is still finishing it "
               "(XA_RETRY: try again)";
    return {};
}

}  // namespace xarm::pq
