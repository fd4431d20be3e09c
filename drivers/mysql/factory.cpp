// The MySQL/MariaDB driver object and the library's exported C symbols.
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "mysql.hpp"
#include "xarm/driver/info.hpp"
#include "xarm/driver/switch.hpp"
#include "xarm/xa.h"

namespace xarm::mysql {

namespace {

int int_option(const std::map<std::string, std::string>& kv, const char* key, int fallback, int min,
               int max) {
    auto it = kv.find(key);
    if (it == kv.end()) return fallback;
    try {
        std::size_t used = 0;
        const int v = std::stoi(it->second, &used);
        if (used == it->second.size() && v >= min && v <= max) return v;
    } catch (const std::exception&) {
    }
    raise(XAER_INVAL, "08001",
          fmt::format("info string: {} must be a whole number from {} to {}", key, min, max));
}

bool on_off_option(const std::map<std::string, std::string>& kv, const char* key, bool fallback) {
    auto it = kv.find(key);
    if (it == kv.end()) return fallback;
    if (it->second == "on") return true;
    if (it->second == "off") return false;
    raise(XAER_INVAL, "08001",
          fmt::format("info string: {} must be on or off, not '{}'", key, it->second));
}

class mysql_driver final : public driver {
  public:
    std::string_view name() const noexcept override { return "mysql"; }
    capability_set capabilities() const override { return declared_capabilities(); }
    std::string info_help() const override {
        return "host=NAME (default 127.0.0.1)\n"
               "port=N (default 3306)\n"
               "socket=PATH (Unix socket; instead of host and port)\n"
               "user=NAME (required)\n"
               "password=SECRET\n"
               "database=NAME (default schema)\n"
               "connect_timeout=SECONDS (default 10)\n"
               "multi_statements=on|off (default on: XA END travels with the next XA verb in "
               "one round trip; also lets application SQL hold several statements)\n"
               "max_parked=N (default 64: connections this process keeps aside per server, "
               "all sessions together, holding prepared branches; never more than half the "
               "server's max_connections. At the bound a session closes its own oldest, "
               "which detaches its branch, or waits for another session's to be freed)\n"
               "park_wait_ms=N (default 5000: how long XA START waits for a parked "
               "connection to be freed at the bound before it fails, saying which)\n"
               "read_only_vote=on|off (default off: a branch that wrote nothing votes XA_OK and "
               "is committed on the connection that prepared it; on: MariaDB's session write "
               "counters are read at XA START and at prepare, about 1 ms of server time each, "
               "and such a branch votes XA_RDONLY, so that it survives its connection's end; "
               "needed when phase two may run in another process or after a crash)";
    }
    std::unique_ptr<native_session> open(std::string_view info) const override {
        auto kv = parse_info(
            info, {"host", "port", "socket", "user", "password", "database", "connect_timeout",
                   "multi_statements", "max_parked", "park_wait_ms", "read_only_vote"});
        options o;
        auto get = [&](const char* k, std::string& into) {
            if (auto it = kv.find(k); it != kv.end()) into = it->second;
        };
        get("host", o.host);
        get("socket", o.socket);
        get("user", o.user);
        get("password", o.password);
        get("database", o.database);
        if (o.user.empty()) raise(XAER_INVAL, "08001", "info string: 'user' is required");
        o.port = int_option(kv, "port", 3306, 1, 65535);
        o.connect_timeout = int_option(kv, "connect_timeout", 10, 1, 3600);
        o.max_parked = int_option(kv, "max_parked", 64, 0, 10000);
        o.park_wait_ms = int_option(kv, "park_wait_ms", 5000, 0, 600000);
        o.multi_statements = on_off_option(kv, "multi_statements", true);
        o.read_only_vote = on_off_option(kv, "read_only_vote", false);
        auto first = connect(o);
        dialect d = dialect::mariadb;
        long max_connections = 0;
        try {
            std::unique_ptr<sql::ResultSet> rs(
                first->stmt->executeQuery("SELECT VERSION(), @@max_connections"));
            rs->next();
            d = detect_dialect(rs->getString(1).asStdString());
            max_connections = static_cast<long>(rs->getInt64(2));
            // SELECT began nothing on the server, but say so explicitly for autocommit=0.
            first->conn->rollback();
        } catch (const sql::SQLException& e) {
            raise_sql(e, XAER_RMERR, "reading the server version", true);
        }
        return std::make_unique<session>(std::move(o), d, std::move(first), max_connections);
    }
    std::optional<dbms_profile> profile() const override {
        return dbms_profile{
            .lock_timeout = "SET SESSION innodb_lock_wait_timeout = 1",
            .foreign_prepare =
                "XA START '{gid}'\nINSERT INTO {table} (id, v) VALUES (900, 'foreign')\n"
                "XA END '{gid}'\nXA PREPARE '{gid}'",
            .foreign_commit = "XA COMMIT '{gid}'",
            .type_boolean = "BOOLEAN",
            .type_integer = "BIGINT",
            .type_real = "DOUBLE",
            .type_text = "TEXT CHARACTER SET utf8mb4",
            .type_binary = "LONGBLOB",
            .type_time = "DATETIME(6)",
            .own_quoting = "`id` AS `q?`, \"?\" AS dq, '\\'?' AS bs # ?\n",
        };
    }
    std::vector<test_server> test_servers() const override {
        return {{"mysql", "XARM_TEST_MYSQL", "mysql"}};
    }
};

std::shared_ptr<const driver> instance() {
    static const auto d = std::make_shared<const mysql_driver>();
    return d;
}

}  // namespace
}  // namespace xarm::mysql

XARM_DEFINE_DRIVER_EXPORTS(mysql, ::xarm::mysql::instance)

extern "C" XARM_API sql::Connection* xarm_mysql_conn(int rmid) {
    return static_cast<sql::Connection*>(::xarm::native_handle_for(::xarm::mysql::instance, rmid));
}

/// Process-wide counts, for monitoring and tests: the connections set aside holding
/// prepared branches (all servers) and the entries of the registry that finds them.
extern "C" XARM_API void xarm_mysql_counts(long* parked, long* registry) {
    if (parked != nullptr) *parked = ::xarm::mysql::parked_connections();
    if (registry != nullptr) *registry = ::xarm::mysql::registry_entries();
}

/// For C programs, which cannot use Connector/C++'s sql::Connection: runs one statement
/// on the calling thread's session for rmid (as the application's own statements on
/// xarm_mysql_conn would). Returns the number of rows it changed (0 for a query, whose
/// rows are discarded), or -1 with the reason in errbuf (NUL-terminated, at most errlen
/// bytes; errbuf may be NULL).
extern "C" XARM_API long long xarm_mysql_execute(int rmid, const char* sql, char* errbuf,
                                                 size_t errlen) {
    auto say = [&](const std::string& m) {
        if (errbuf != nullptr && errlen > 0) {
            const size_t n = std::min(m.size(), errlen - 1);
            std::memcpy(errbuf, m.data(), n);
            errbuf[n] = '\0';
        }
        return -1LL;
    };
    sql::Connection* c = xarm_mysql_conn(rmid);
    if (c == nullptr) return say("rmid " + std::to_string(rmid) + " is not open on this thread");
    if (sql == nullptr) return say("no statement");
    try {
        std::unique_ptr<sql::Statement> st(c->createStatement());
        if (st->execute(sql)) {
            std::unique_ptr<sql::ResultSet> rs(st->getResultSet());
            while (rs->next()) {
            }
            return 0;
        }
        return static_cast<long long>(st->getUpdateCount());
    } catch (const sql::SQLException& e) {
        return say(std::string(e.what()) + " [SQLSTATE " + e.getSQLState() + "]");
    } catch (const std::exception& e) {
        return say(e.what());
    }
}
