// The MySQL/MariaDB native-error table as exceptions; the table itself is the dialect's
// (dialect.cpp), shared with the ODBC driver.
#include <fmt/format.h>

#include "mysql.hpp"
#include "xarm/xa.h"

namespace xarm::mysql {

unsigned errnum_of(const sql::SQLException& e) noexcept {
    return static_cast<unsigned>(e.getErrorCode());
}

void raise_sql(const sql::SQLException& e, int fallback, const std::string& context, bool force) {
    const unsigned n = errnum_of(e);
    const server_error* t = lookup_server_error(n);
    const int code = (force || t == nullptr) ? fallback : t->xa_code;
    std::string state = (t != nullptr && t->sqlstate != nullptr) ? t->sqlstate : e.getSQLState();
    if (state.size() != 5) state = "HY000";
    raise(code, std::move(state),
          n != 0 ? fmt::format("{}: {} (server error {})", context, e.what(), n)
                 : fmt::format("{}: {}", context, e.what()),
          static_cast<long>(n));
}

}  // namespace xarm::mysql
