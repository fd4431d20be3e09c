// The ODBC native-error table: an ODBC diagnostic (SQLSTATE + native code) as an XA code.
// This is the generic table (standard SQLSTATEs); PostgreSQL and MariaDB/MySQL backends
// replace it with their native drivers' tables (postgresql.cpp, mysql.cpp).
#include <fmt/format.h>

#include <array>

#include "odbc.hpp"
#include "xarm/error.hpp"
#include "xarm/xa.h"

namespace xarm::odbc {

namespace {

bool starts(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

// The generic table: standard SQLSTATEs (ISO 9075 / ODBC 3) only.
struct entry {
    std::string_view state;  // exact, or a two-character class
    int rollback;
};
constexpr entry rollback_table[] = {
    {"40P01", XA_RBDEADLOCK}, {"40001", XA_RBTRANSIENT}, {"40002", XA_RBINTEGRITY},
    {"40003", XA_RBOTHER},    {"HYT00", XA_RBTIMEOUT},   {"23", XA_RBINTEGRITY},
    {"40", XA_RBROLLBACK},
};

bool matches(std::string_view state, std::string_view key) {
    return key.size() == 2 ? starts(state, key) : state == key;
}

int generic_rollback_code(std::string_view s) {
    for (const auto& e : rollback_table)
        if (matches(s, e.state)) return e.rollback;
    return XA_RBROLLBACK;
}

}  // namespace

int error_table::rollback_code(const diag_record& d) const noexcept {
    return generic_rollback_code(d.sqlstate);
}

int error_table::xa_code(const diag_record& d, op o) const noexcept {
    switch (o) {
        case op::open:
            return XAER_RMERR;
        case op::end:
        case op::prepare:
        case op::commit_one:
            return rollback_code(d);
        case op::statement:
        case op::start:
            return starts(d.sqlstate, "40") ? rollback_code(d) : XAER_RMERR;
        case op::finish:
        case op::commit_prepared:
        case op::rollback:
        case op::recover:
            return XAER_RMERR;
    }
    return XAER_RMERR;
}

const error_table& error_table::generic() noexcept {
    static const error_table t;
    return t;
}

bool is_connection_loss(const diag_record& d, const error_table& t) noexcept {
    // Class 08 is ODBC's own for a lost or unusable connection, whatever the backend.
    return starts(d.sqlstate, "08") || d.sqlstate == "HYT01" || t.lost_connection(d);
}

int xa_code_for(const diag_record& d, const error_table& t, op o) noexcept {
    return is_connection_loss(d, t) ? XAER_RMFAIL : t.xa_code(d, o);
}

diag_record read_diag(SQLSMALLINT type, SQLHANDLE h) {
    diag_record d;
    std::array<SQLCHAR, 6> state{};
    SQLINTEGER native = 0;
    std::array<SQLCHAR, 1024> text{};
    SQLSMALLINT len = 0;
    // Every record, so that a driver's context ("the connection was lost") is kept; the
    // first one's SQLSTATE and native code decide the mapping.
    for (SQLSMALLINT i = 1; i <= 4; ++i) {
        SQLRETURN rc = SQLGetDiagRec(type, h, i, state.data(), &native, text.data(),
                                     static_cast<SQLSMALLINT>(text.size()), &len);
        if (!ok(rc)) break;
        if (i == 1) {
            d.sqlstate = reinterpret_cast<const char*>(state.data());
            d.native = native;
        } else {
            d.message += " / ";
        }
        d.message += reinterpret_cast<const char*>(text.data());
    }
    if (d.sqlstate.size() != 5) d.sqlstate = "HY000";
    if (d.message.empty()) d.message = "the ODBC driver reported an error without a diagnostic";
    return d;
}

void raise_diag(const diag_record& d, const error_table& t, op o, std::string_view context) {
    std::string msg = fmt::format("{}: {}", context, d.message);
    if (auto why = t.explain(d, o); !why.empty()) msg += " (" + why + ")";
    const bool lost = is_connection_loss(d, t);
    raise(
        diagnostic{lost ? XAER_RMFAIL : t.xa_code(d, o), d.sqlstate, d.native, {}, std::move(msg)},
        // A lost connection during prepare or commit leaves the outcome unknown.
        lost && (o == op::prepare || o == op::commit_one || o == op::finish ||
                 o == op::commit_prepared));
}

void raise_odbc(SQLSMALLINT type, SQLHANDLE h, const error_table& t, op o,
                std::string_view context) {
    raise_diag(read_diag(type, h), t, o, context);
}

}  // namespace xarm::odbc
