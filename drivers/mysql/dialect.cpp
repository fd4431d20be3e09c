// The MySQL/MariaDB XA dialect: statement texts, XA RECOVER parsing, the error table.
#include "dialect.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <thread>
#include <vector>

#include "xarm/driver/codec.hpp"
#include "xarm/error.hpp"
#include "xarm/xa.h"

namespace xarm::mysql {

dialect detect_dialect(std::string_view v) noexcept {
    // MariaDB reports e.g. "10.11.6-MariaDB-0+deb12u1" (older proxies "5.5.5-10.11...").
    for (std::size_t i = 0; i + 7 <= v.size(); ++i) {
        bool match = true;
        for (std::size_t j = 0; j < 7 && match; ++j)
            match = std::tolower(static_cast<unsigned char>(v[i + j])) == "mariadb"[j];
        if (match) return dialect::mariadb;
    }
    return dialect::mysql;
}

const char* to_string(dialect d) noexcept {
    return d == dialect::mariadb ? "mariadb" : "mysql";
}

bool server_version::at_least(int ma, int mi, int pa) const noexcept {
    if (major != ma) return major > ma;
    if (minor != mi) return minor > mi;
    return patch >= pa;
}

server_version parse_server_version(std::string_view s) noexcept {
    server_version v;
    v.family = detect_dialect(s);
    // MariaDB before 11 sent "5.5.5-" in front of its version so that old replicas
    // accept it: the version is what follows.
    if (v.family == dialect::mariadb && s.starts_with("5.5.5-")) s.remove_prefix(6);
    int* parts[] = {&v.major, &v.minor, &v.patch};
    std::size_t pos = 0;
    for (int* p : parts) {
        const auto [end, ec] = std::from_chars(s.data() + pos, s.data() + s.size(), *p);
        if (ec != std::errc{}) {
            *p = 0;
            break;
        }
        pos = static_cast<std::size_t>(end - s.data());
        if (pos >= s.size() || s[pos] != '.') break;
        ++pos;
    }
    return v;
}

xa_traits traits_of(const server_version& v) noexcept {
    xa_traits t;
    if (v.family == dialect::mariadb) {
        t.has_session_status = true;
        t.has_compound_statements = v.at_least(10, 1, 0);
        return t;
    }
    t.has_detach_on_prepare = v.at_least(8, 0, 30);
    t.recover_needs_privilege = v.at_least(8, 0, 0);
    return t;
}

bool parse_detach_on_prepare(std::string_view value) noexcept {
    return value == "1" || value == "ON" || value == "on";
}

std::string xa_start_sql(const xid& x) {
    return "XA START " + encode_mysql_xid(x);
}
std::string xa_end_sql(const xid& x) {
    return "XA END " + encode_mysql_xid(x);
}
std::string xa_prepare_sql(const xid& x) {
    return "XA PREPARE " + encode_mysql_xid(x);
}
std::string xa_end_prepare_sql(const xid& x) {
    const std::string e = encode_mysql_xid(x);
    return fmt::format("XA END {0};XA PREPARE {0}", e);
}
std::string xa_commit_sql(const xid& x, bool one_phase) {
    return "XA COMMIT " + encode_mysql_xid(x) + (one_phase ? " ONE PHASE" : "");
}
std::string xa_rollback_sql(const xid& x) {
    return "XA ROLLBACK " + encode_mysql_xid(x);
}
std::string xa_finish_sql(const xid& x, bool commit) {
    return commit ? xa_commit_sql(x, false) : xa_rollback_sql(x);
}
const char* xa_finish_verb(bool commit) noexcept {
    return commit ? "XA COMMIT" : "XA ROLLBACK";
}

const char* const write_counter_sql =
    "SELECT SUM(CAST(VARIABLE_VALUE AS UNSIGNED)) FROM information_schema.SESSION_STATUS WHERE "
    "VARIABLE_NAME IN "
    "('HANDLER_WRITE','HANDLER_UPDATE','HANDLER_DELETE','COM_DELETE','COM_DELETE_MULTI',"
    "'COM_UPDATE','COM_UPDATE_MULTI')";

std::optional<unsigned long long> parse_write_counter(std::string_view value) noexcept {
    if (value.empty()) return std::nullopt;
    unsigned long long n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc{} || end != value.data() + value.size()) return std::nullopt;
    return n;
}

std::string xa_recover_sql(dialect d) {
    return d == dialect::mariadb ? "XA RECOVER FORMAT='SQL'" : "XA RECOVER CONVERT XID";
}

namespace {

// One literal of MariaDB's FORMAT='SQL' output at data[pos]: X'hex', 'text' (with ''
// and backslash escapes) or a decimal number. Advances pos past it.
std::optional<std::string> read_literal(std::string_view data, std::size_t& pos) {
    if (pos >= data.size()) return std::nullopt;
    if ((data[pos] == 'X' || data[pos] == 'x') && pos + 1 < data.size() && data[pos + 1] == '\'') {
        const auto close = data.find('\'', pos + 2);
        if (close == std::string_view::npos) return std::nullopt;
        auto bytes = hex_decode(data.substr(pos + 2, close - pos - 2));
        pos = close + 1;
        return bytes;
    }
    if (data[pos] == '\'') {
        std::string out;
        for (std::size_t i = pos + 1; i < data.size(); ++i) {
            const char c = data[i];
            if (c == '\\' && i + 1 < data.size()) {
                const char n = data[++i];
                switch (n) {
                    case '0':
                        out.push_back('\0');
                        break;
                    case 'n':
                        out.push_back('\n');
                        break;
                    case 'r':
                        out.push_back('\r');
                        break;
                    case 't':
                        out.push_back('\t');
                        break;
                    case 'Z':
                        out.push_back('\x1a');
                        break;
                    default:
                        out.push_back(n);
                }
            } else if (c == '\'') {
                if (i + 1 < data.size() && data[i + 1] == '\'') {
                    out.push_back('\'');
                    ++i;
                } else {
                    pos = i + 1;
                    return out;
                }
            } else {
                out.push_back(c);
            }
        }
        return std::nullopt;
    }
    const std::size_t start = pos;
    if (data[pos] == '-') ++pos;
    while (pos < data.size() && std::isdigit(static_cast<unsigned char>(data[pos]))) ++pos;
    if (pos == start) return std::nullopt;
    return std::string(data.substr(start, pos - start));
}

}  // namespace

std::optional<xid> parse_recover_row(dialect d, long format_id, long gtrid_length,
                                     long bqual_length, std::string_view data) {
    if (format_id < 0 || gtrid_length < 1 || gtrid_length > static_cast<long>(xid::max_gtrid) ||
        bqual_length < 0 || bqual_length > static_cast<long>(xid::max_bqual))
        return std::nullopt;
    const auto glen = static_cast<std::size_t>(gtrid_length);
    const auto blen = static_cast<std::size_t>(bqual_length);
    std::string gtrid, bqual;
    if (d == dialect::mysql) {
        // CONVERT XID: "0x" + hex(gtrid bytes followed by bqual bytes).
        if (data.size() < 2 || data[0] != '0' || (data[1] != 'x' && data[1] != 'X'))
            return std::nullopt;
        auto bytes = hex_decode(data.substr(2));
        if (!bytes || bytes->size() != glen + blen) return std::nullopt;
        gtrid = bytes->substr(0, glen);
        bqual = bytes->substr(glen);
    } else {
        // FORMAT='SQL': gtrid[,bqual[,formatID]], each X'hex' or a quoted string; the
        // parts MariaDB leaves out are the defaults (empty bqual, format 1).
        std::vector<std::string> parts;
        std::size_t pos = 0;
        while (true) {
            auto lit = read_literal(data, pos);
            if (!lit) return std::nullopt;
            parts.push_back(std::move(*lit));
            if (pos == data.size()) break;
            if (data[pos] != ',' || parts.size() == 3) return std::nullopt;
            ++pos;
        }
        gtrid = parts[0];
        if (parts.size() > 1) bqual = parts[1];
        if (parts.size() > 2 && parts[2] != std::to_string(format_id)) return std::nullopt;
        if (gtrid.size() != glen || bqual.size() != blen) return std::nullopt;
    }
    if (format_id > xid::max_format) return std::nullopt;
    return xid(format_id, gtrid, bqual);
}

namespace {
struct entry {
    unsigned errnum;
    server_error e;
};
// Server errors (1xxx) and client-library errors (2xxx) as XA sees them. Deadlock and
// lock-wait timeout name the rollback reason: InnoDB rolls back the whole transaction
// on a deadlock, and the driver makes a branch rollback-only after a lock-wait timeout.
constexpr entry table[] = {
    {1397, {XAER_NOTA, "XAE04", false}},      // ER_XAER_NOTA: unknown XID
    {1398, {XAER_INVAL, "XAE05", false}},     // ER_XAER_INVAL
    {1399, {XAER_PROTO, "XAE07", false}},     // ER_XAER_RMFAIL: command illegal in this XA state
    {1400, {XAER_OUTSIDE, "XAE09", false}},   // ER_XAER_OUTSIDE: work done outside the branch
    {1401, {XAER_RMERR, "XAE03", false}},     // ER_XAER_RMERR
    {1402, {XA_RBROLLBACK, "XA100", false}},  // ER_XA_RBROLLBACK
    {1440, {XAER_DUPID, "XAE08", false}},     // ER_XAER_DUPID
    {1613, {XA_RBTIMEOUT, "XA106", false}},   // ER_XA_RBTIMEOUT
    {1614, {XA_RBDEADLOCK, "XA102", false}},  // ER_XA_RBDEADLOCK
    {1213, {XA_RBDEADLOCK, "40001", false}},  // ER_LOCK_DEADLOCK
    {1205, {XA_RBTIMEOUT, "40001", false}},   // ER_LOCK_WAIT_TIMEOUT
    {1179, {XAER_OUTSIDE, "25000", false}},   // ER_CANT_DO_THIS_DURING_AN_TRANSACTION
    {1045, {XAER_RMERR, "28000", false}},     // ER_ACCESS_DENIED_ERROR
    {1044, {XAER_RMERR, "42000", false}},     // ER_DBACCESS_DENIED_ERROR
    {1049, {XAER_RMERR, "3D000", false}},     // ER_BAD_DB_ERROR
    {1040, {XAER_RMERR, "08004", false}},     // ER_CON_COUNT_ERROR
    {1053, {XAER_RMFAIL, "08S01", true}},     // ER_SERVER_SHUTDOWN
    {1152, {XAER_RMFAIL, "08S01", true}},     // ER_ABORTING_CONNECTION
    {1927, {XAER_RMFAIL, "08S01", true}},     // ER_CONNECTION_KILLED (MariaDB)
    {2002, {XAER_RMFAIL, "08001", true}},     // CR_CONNECTION_ERROR (socket)
    {2003, {XAER_RMFAIL, "08001", true}},     // CR_CONN_HOST_ERROR
    {2005, {XAER_RMFAIL, "08001", true}},     // CR_UNKNOWN_HOST
    {2006, {XAER_RMFAIL, "08S01", true}},     // CR_SERVER_GONE_ERROR
    {2013, {XAER_RMFAIL, "08S01", true}},     // CR_SERVER_LOST
    {2055, {XAER_RMFAIL, "08S01", true}},     // CR_SERVER_LOST_EXTENDED
    {4031, {XAER_RMFAIL, "08S01", true}},     // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
    // MySQL 8 (WL#7194): XA RECOVER, and XA COMMIT/ROLLBACK of a branch another user
    // prepared, need XA_RECOVER_ADMIN. The number is generic; the server's message names
    // the privilege.
    {1227,
     {XAER_RMERR, "42000", false,
      "MySQL 8 allows XA RECOVER only to users with the XA_RECOVER_ADMIN privilege "
      "(GRANT XA_RECOVER_ADMIN ON *.* TO the user xarm connects as); without it xarm "
      "cannot recover"}},
    // MySQL 8.0.30+ with xa_detach_on_prepare=ON (the default): a temporary table in an
    // XA branch is refused, since the branch may outlive its session.
    {4091,
     {XAER_RMERR, "0A000", false,
      "not supported by MySQL 8.0.30+ with xa_detach_on_prepare=ON (its default): "
      "temporary tables cannot be used inside an XA transaction; use an ordinary "
      "table, or set xa_detach_on_prepare=OFF on the server"}},
};
}  // namespace

const server_error* lookup_server_error(unsigned errnum) noexcept {
    for (const auto& t : table)
        if (t.errnum == errnum) return &t.e;
    return nullptr;
}

int xa_code_of(unsigned errnum, int fallback) noexcept {
    const server_error* e = lookup_server_error(errnum);
    return e ? e->xa_code : fallback;
}

bool is_connection_lost(unsigned errnum) noexcept {
    const server_error* e = lookup_server_error(errnum);
    return e != nullptr && e->connection_lost;
}

bool wait_detached(const std::function<bool()>& gone) {
    const auto deadline = std::chrono::steady_clock::now() + detached_wait::budget;
    // Backing off: each PROCESSLIST reading holds the server's session list, which the
    // closing session needs in order to leave it; many waiters polling fast starve it.
    auto pause = detached_wait::poll;
    for (;;) {
        if (gone()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, detached_wait::pause);
    }
}

bool wait_session_gone(long session, const count_query& count) {
    // Any of this user's sessions being torn down (KILL, or a client gone) when the one
    // that held the branch is unknown (another process's, a crashed coordinator's).
    const std::string closing =
        session > 0
            ? fmt::format("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {}",
                          session)
            : "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Killed'";
    bool seen = session > 0;
    // Unreadable (a lost connection): the finish that follows reports it.
    const bool gone = wait_detached([&] {
        const auto n = count(closing);
        if (n && *n > 0) seen = true;
        return !n || *n == 0;
    });
    if (gone && seen) std::this_thread::sleep_for(detached_wait::settle);
    return gone;
}

detached_outcome finish_detached(const std::function<unsigned()>& attempt,
                                 const std::function<bool()>& listed, bool wait) {
    const auto deadline = std::chrono::steady_clock::now() + detached_wait::budget;
    for (;;) {
        const unsigned err = attempt();
        if (err == 0) return {detached_result::finished, 0};
        if (err == errnum::xa_rbrollback) return {detached_result::rolled_back, err};
        if (err != errnum::xaer_nota) return {detached_result::failed, err};
        if (!listed()) return {detached_result::not_prepared, err};
        if (!wait || std::chrono::steady_clock::now() >= deadline)
            return {detached_result::still_attached, err};
        std::this_thread::sleep_for(detached_wait::pause);
    }
}

std::string closing_session_message(std::string_view what, const xid& x) {
    return fmt::format(
        "{}: branch {} was prepared on a connection this process closed, and the server has "
        "not finished closing that session within {} ms: retry",
        what, x.to_string(), detached_wait::budget.count());
}

std::string still_attached_message(std::string_view what, const xid& x) {
    return fmt::format(
        "{}: branch {} is prepared but still attached to the live connection that prepared "
        "it, in another process or outside xarm (MariaDB lets only that connection finish it "
        "until it disconnects; xarm bridges this only inside one process): retry after that "
        "connection ends, or finish it from there",
        what, x.to_string());
}

void raise_rolled_back_at_commit(const xid& x, unsigned native) {
    xarm::raise(XA_HEURRB, "XA100",
                fmt::format("XA COMMIT of prepared branch {}: the server had rolled it back "
                            "(MariaDB discards a prepared branch that wrote nothing when its "
                            "connection ends; any work it held is not committed)",
                            x.to_string()),
                static_cast<long>(native));
}

}  // namespace xarm::mysql
