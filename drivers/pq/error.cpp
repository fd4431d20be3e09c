// The PostgreSQL native-error table's libpq side: reading errors from results and the
// connection. Which XA code an SQLSTATE gets is dialect.cpp's table (one place).
#include <fmt/format.h>

#include "pq.hpp"
#include "xarm/error.hpp"
#include "xarm/xa.h"

namespace xarm::pq {

namespace {
std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}
std::string field(const PGresult* r, int code) {
    const char* v = r ? PQresultErrorField(r, code) : nullptr;
    return v ? v : "";
}
}  // namespace

bool succeeded(const PGresult* r) noexcept {
    if (r == nullptr) return false;
    switch (PQresultStatus(r)) {
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
        case PGRES_EMPTY_QUERY:
            return true;
        default:
            return false;
    }
}

server_error read_error(PGconn* c, const PGresult* r) {
    server_error e;
    e.sqlstate = field(r, PG_DIAG_SQLSTATE);
    e.message = field(r, PG_DIAG_MESSAGE_PRIMARY);
    if (auto d = field(r, PG_DIAG_MESSAGE_DETAIL); !d.empty()) e.message += " (" + d + ")";
    if (auto h = field(r, PG_DIAG_MESSAGE_HINT); !h.empty()) e.message += " hint: " + h;
    if (e.message.empty()) {
        const char* m = r ? PQresultErrorMessage(r) : nullptr;
        e.message = trim(m && *m ? m : PQerrorMessage(c));
    }
    if (e.message.empty()) e.message = "unknown libpq failure";
    e.lost = PQstatus(c) == CONNECTION_BAD;
    if (e.lost && !is_connection_loss(e.sqlstate)) {
        // The server may have said why (57P01 terminated by an administrator); keep that
        // state, else the generic "connection failure".
        if (e.sqlstate.empty() || e.sqlstate.substr(0, 2) != "57") e.sqlstate = "08006";
    }
    if (e.sqlstate.empty()) e.sqlstate = "HY000";
    return e;
}

void raise_server(const server_error& e, op o, std::string_view context) {
    int code = e.lost ? XAER_RMFAIL : xa_code_for(e.sqlstate, o);
    std::string msg = fmt::format("{}: {}", context, e.message);
    if (auto why = explain(e.sqlstate, o); !why.empty()) msg += "; " + why;
    if (code == XAER_RMFAIL) msg += " (the connection to PostgreSQL is lost)";
    raise(code, e.sqlstate, std::move(msg));
}

void raise_connect(PGconn* c) {
    std::string m = c ? trim(PQerrorMessage(c)) : "out of memory";
    // libpq's text names the host, port and user, never the password or the conninfo.
    raise(XAER_RMERR, "08001", "cannot connect to PostgreSQL: " + m);
}

void check_conninfo(const std::string& info) {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(info.c_str(), &err);
    if (opts != nullptr) {
        PQconninfoFree(opts);
        return;
    }
    std::string m = err ? trim(err) : "out of memory";
    PQfreemem(err);
    // libpq quotes a fragment of the string in some messages ('missing "=" after "..."'),
    // which may be part of a value: keep only option names.
    if (m.rfind("invalid connection option", 0) != 0 &&
        m.rfind("invalid URI query parameter", 0) != 0) {
        std::string cleaned;
        bool in_quote = false;
        for (char ch : m) {
            if (ch == '"') {
                if (!in_quote) cleaned += "\"...\"";
                in_quote = !in_quote;
            } else if (!in_quote) {
                cleaned += ch;
            }
        }
        m = cleaned;
    }
    raise(XAER_INVAL, "08001", "invalid libpq connection string: " + m);
}

}  // namespace xarm::pq
