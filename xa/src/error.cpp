#include "xarm/error.hpp"

#include "xarm/xa.h"

namespace xarm {

namespace {
std::string what_of(const diagnostic& d) {
    std::string s = d.driver.empty() ? std::string("xarm") : "xarm/" + d.driver;
    s += ": ";
    s += d.message;
    s += " [";
    s += xa_code_name(d.xa_code);
    if (!d.sqlstate.empty()) s += ", SQLSTATE " + d.sqlstate;
    if (d.native_code != 0) s += ", native " + std::to_string(d.native_code);
    s += "]";
    return s;
}
}  // namespace

error::error(diagnostic d) : std::runtime_error(what_of(d)), m_diag(std::move(d)) {}

operational_error::operational_error(diagnostic d, bool in_doubt)
    : error(std::move(d)), m_in_doubt(in_doubt) {}

void raise(diagnostic d, bool in_doubt) {
    if (d.sqlstate.empty()) d.sqlstate = "HY000";
    const int c = d.xa_code;
    // A rollback code first: the branch is gone whatever the SQLSTATE (PostgreSQL says
    // 0A000 when it cannot prepare a transaction that used temporary objects).
    if (is_rollback_code(c)) throw rollback_error(std::move(d));
    if (d.sqlstate == "0A000") throw not_supported_error(std::move(d));
    if (is_heuristic_code(c)) throw heuristic_error(std::move(d));
    switch (c) {
        case XAER_RMFAIL:
            throw operational_error(std::move(d), in_doubt);
        case XAER_PROTO:
        case XAER_INVAL:
        case XAER_NOTA:
        case XAER_DUPID:
        case XAER_OUTSIDE:
        case XAER_ASYNC:
            throw programming_error(std::move(d));
        default:
            if (d.sqlstate.starts_with("22")) throw data_error(std::move(d));
            throw database_error(std::move(d));
    }
}

void raise(int xa_code, std::string sqlstate, std::string message, long native_code) {
    raise(diagnostic{xa_code, std::move(sqlstate), native_code, {}, std::move(message)});
}

bool is_rollback_code(int c) noexcept {
    return c >= XA_RBBASE && c <= XA_RBEND;
}
bool is_heuristic_code(int c) noexcept {
    return c >= XA_HEURMIX && c <= XA_HEURHAZ;
}

const char* xa_code_name(int c) noexcept {
    switch (c) {
        case XA_RBROLLBACK:
            return "XA_RBROLLBACK";
        case XA_RBCOMMFAIL:
            return "XA_RBCOMMFAIL";
        case XA_RBDEADLOCK:
            return "XA_RBDEADLOCK";
        case XA_RBINTEGRITY:
            return "XA_RBINTEGRITY";
        case XA_RBOTHER:
            return "XA_RBOTHER";
        case XA_RBPROTO:
            return "XA_RBPROTO";
        case XA_RBTIMEOUT:
            return "XA_RBTIMEOUT";
        case XA_RBTRANSIENT:
            return "XA_RBTRANSIENT";
        case XA_NOMIGRATE:
            return "XA_NOMIGRATE";
        case XA_HEURHAZ:
            return "XA_HEURHAZ";
        case XA_HEURCOM:
            return "XA_HEURCOM";
        case XA_HEURRB:
            return "XA_HEURRB";
        case XA_HEURMIX:
            return "XA_HEURMIX";
        case XA_RETRY:
            return "XA_RETRY";
        case XA_RDONLY:
            return "XA_RDONLY";
        case XA_OK:
            return "XA_OK";
        case XAER_ASYNC:
            return "XAER_ASYNC";
        case XAER_RMERR:
            return "XAER_RMERR";
        case XAER_NOTA:
            return "XAER_NOTA";
        case XAER_INVAL:
            return "XAER_INVAL";
        case XAER_PROTO:
            return "XAER_PROTO";
        case XAER_RMFAIL:
            return "XAER_RMFAIL";
        case XAER_DUPID:
            return "XAER_DUPID";
        case XAER_OUTSIDE:
            return "XAER_OUTSIDE";
        default:
            return "XA_UNKNOWN";
    }
}

}  // namespace xarm
