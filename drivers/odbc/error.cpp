// The ODBC native-error table: an ODBC diagnostic (SQLSTATE + native code) as an XA code.
// PostgreSQL and MariaDB/MySQL backends use their native drivers' tables (the dialect
// libraries), since psqlODBC passes the server's SQLSTATE through and Connector/ODBC the
// server's error number; other backends get the generic ODBC table below.
#include <fmt/format.h>

#include <array>

#include "odbc.hpp"
#include "xarm/error.hpp"
#include "xarm/xa.h"

#ifdef XARM_ODBC_WITH_PQ_DIALECT
#include "../pq/dialect.hpp"
#endif
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
#include "../mysql/dialect.hpp"
#endif

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

#ifdef XARM_ODBC_WITH_PQ_DIALECT
pq::op pq_op(op o) {
    switch (o) {
        case op::open:
            return pq::op::open;
        case op::statement:
        case op::start:
            return pq::op::statement;
        case op::end:
            return pq::op::end;
        case op::prepare:
            return pq::op::prepare;
        case op::commit_one:
            return pq::op::commit_one;
        case op::finish:
            return pq::op::finish;
        case op::commit_prepared:
            return pq::op::commit_prepared;
        case op::rollback:
            return pq::op::rollback;
        case op::recover:
            return pq::op::recover;
    }
    return pq::op::statement;
}
#endif

#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
// Connector/ODBC passes the server's error number as the native code.
int mysql_rollback_code(const diag_record& d) {
    const int code = mysql::xa_code_of(static_cast<unsigned>(d.native), 0);
    return is_rollback_code(code) ? code : generic_rollback_code(d.sqlstate);
}

int mysql_xa_code(const diag_record& d, op o) {
    const mysql::server_error* e = mysql::lookup_server_error(static_cast<unsigned>(d.native));
    switch (o) {
        case op::open:
            return XAER_RMERR;  // xa_open answers only XAER_RMERR or XAER_INVAL
        case op::end:
        case op::commit_one:
            // The branch's work is rolled back when these fail (the session rolls back
            // what a failed XA COMMIT ONE PHASE left).
            return mysql_rollback_code(d);
        default:
            break;
    }
    if (e != nullptr) return e->xa_code;
    return starts(d.sqlstate, "40") ? generic_rollback_code(d.sqlstate) : XAER_RMERR;
}
#endif

}  // namespace

bool is_connection_loss(const diag_record& d, backend b) noexcept {
    // Class 08 is ODBC's own for a lost or unusable connection, whatever the backend.
    if (starts(d.sqlstate, "08") || d.sqlstate == "HYT01") return true;
    switch (b) {
        case backend::postgresql:
#ifdef XARM_ODBC_WITH_PQ_DIALECT
            return pq::is_connection_loss(d.sqlstate);
#else
            return d.sqlstate == "57P01" || d.sqlstate == "57P02" || d.sqlstate == "57P03";
#endif
        case backend::mariadb:
        case backend::mysql:
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
            return mysql::is_connection_lost(static_cast<unsigned>(d.native));
#else
            // CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED, ER_CONNECTION_KILLED
            return d.native == 2006 || d.native == 2013 || d.native == 2055 || d.native == 1927;
#endif
        default:
            return false;
    }
}

int rollback_code_for(const diag_record& d, [[maybe_unused]] backend b) noexcept {
#ifdef XARM_ODBC_WITH_PQ_DIALECT
    if (b == backend::postgresql) return pq::rollback_code_for(d.sqlstate);
#endif
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    if (b == backend::mariadb || b == backend::mysql) return mysql_rollback_code(d);
#endif
    return generic_rollback_code(d.sqlstate);
}

int xa_code_for(const diag_record& d, backend b, op o) noexcept {
    if (is_connection_loss(d, b)) return XAER_RMFAIL;
#ifdef XARM_ODBC_WITH_PQ_DIALECT
    if (b == backend::postgresql) return pq::xa_code_for(d.sqlstate, pq_op(o));
#endif
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    if (b == backend::mariadb || b == backend::mysql) return mysql_xa_code(d, o);
#endif
    switch (o) {
        case op::open:
            return XAER_RMERR;
        case op::end:
        case op::prepare:
        case op::commit_one:
            return rollback_code_for(d, b);
        case op::statement:
        case op::start:
            return starts(d.sqlstate, "40") ? rollback_code_for(d, b) : XAER_RMERR;
        case op::finish:
        case op::commit_prepared:
        case op::rollback:
        case op::recover:
            return XAER_RMERR;
    }
    return XAER_RMERR;
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

void raise_diag(const diag_record& d, backend b, op o, std::string_view context) {
    std::string msg = fmt::format("{}: {}", context, d.message);
#ifdef XARM_ODBC_WITH_PQ_DIALECT
    if (b == backend::postgresql) {
        if (auto why = pq::explain(d.sqlstate, pq_op(o)); !why.empty()) msg += " (" + why + ")";
    }
#endif
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
    if (b == backend::mariadb || b == backend::mysql) {
        const auto* e = mysql::lookup_server_error(static_cast<unsigned>(d.native));
        if (e != nullptr && e->explanation != nullptr) msg += fmt::format(" ({})", e->explanation);
    }
#endif
    raise(diagnostic{xa_code_for(d, b, o), d.sqlstate, d.native, {}, std::move(msg)},
          // A lost connection during prepare or commit leaves the outcome unknown.
          is_connection_loss(d, b) && (o == op::prepare || o == op::commit_one || o == op::finish ||
                                       o == op::commit_prepared));
}

void raise_odbc(SQLSMALLINT type, SQLHANDLE h, backend b, op o, std::string_view context) {
    raise_diag(read_diag(type, h), b, o, context);
}

}  // namespace xarm::odbc
