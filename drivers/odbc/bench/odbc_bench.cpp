// xarm's ODBC driver vs the same SQL issued directly through ODBC, in the same run:
// two-phase (begin, one INSERT, prepare, commit) and one-phase transactions, against
// the backends named by XARM_TEST_ODBC_PQ / XARM_TEST_ODBC_MYSQL. Prints tx/s and
// latency percentiles; the four cases run interleaved, about two seconds each.
#include <sql.h>
#include <sqlext.h>

#include <fmt/format.h>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "xarm/connection.hpp"
#include "xarm/driver/codec.hpp"
#include "xarm/xid.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
constexpr auto run_for = std::chrono::milliseconds(2000);  // per case, all slices

struct figures {
    double tps = 0, p50 = 0, p95 = 0, p99 = 0;
    std::size_t n = 0;
};

// Runs the cases in interleaved slices (10 rounds of run_for / 10 each), so that a
// shared machine's load hits all alike; the ratios within one run are what counts.
std::vector<figures> measure(const std::vector<std::function<void(long)>>& cases) {
    constexpr int rounds = 10;
    std::vector<std::vector<double>> lat(cases.size());
    std::vector<double> busy(cases.size(), 0.0);
    long i = 0;
    for (const auto& tx : cases)
        for (int w = 0; w < 10; ++w) tx(i++);  // warm-up
    for (int r = 0; r < rounds; ++r)
        for (std::size_t k = 0; k < cases.size(); ++k) {
            const auto start = clock_type::now();
            while (clock_type::now() - start < run_for / rounds) {
                const auto t0 = clock_type::now();
                cases[k](i++);
                lat[k].push_back(
                    std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
            }
            busy[k] += std::chrono::duration<double>(clock_type::now() - start).count();
        }
    std::vector<figures> out;
    for (std::size_t k = 0; k < cases.size(); ++k) {
        auto& l = lat[k];
        std::sort(l.begin(), l.end());
        auto pct = [&](double p) {
            return l[std::min(l.size() - 1, static_cast<std::size_t>(p * l.size()))];
        };
        out.push_back({l.size() / busy[k], pct(0.50), pct(0.95), pct(0.99), l.size()});
    }
    return out;
}

void print(const std::string& label, const figures& f) {
    fmt::print(
        "  {:<34} {:>8.0f} tx/s  p50 {:>7.0f} us  p95 {:>7.0f} us  p99 {:>7.0f} us  (n={})\n",
        label, f.tps, f.p50, f.p95, f.p99, f.n);
}

// Direct ODBC, no xarm.
struct raw_odbc {
    SQLHENV env = SQL_NULL_HENV;
    SQLHDBC dbc = SQL_NULL_HDBC;
    explicit raw_odbc(const std::string& conn) {
        SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &env);
        SQLSetEnvAttr(env, SQL_ATTR_ODBC_VERSION, reinterpret_cast<SQLPOINTER>(SQL_OV_ODBC3), 0);
        SQLAllocHandle(SQL_HANDLE_DBC, env, &dbc);
        if (!SQL_SUCCEEDED(SQLDriverConnect(dbc, nullptr, (SQLCHAR*)conn.c_str(), SQL_NTS, nullptr,
                                            0, nullptr, SQL_DRIVER_NOPROMPT)))
            throw std::runtime_error("direct ODBC connection failed");
        autocommit(false);
    }
    ~raw_odbc() {
        SQLEndTran(SQL_HANDLE_DBC, dbc, SQL_ROLLBACK);
        SQLDisconnect(dbc);
        SQLFreeHandle(SQL_HANDLE_DBC, dbc);
        SQLFreeHandle(SQL_HANDLE_ENV, env);
    }
    void autocommit(bool on) {
        SQLSetConnectAttr(dbc, SQL_ATTR_AUTOCOMMIT,
                          reinterpret_cast<SQLPOINTER>(
                              static_cast<SQLULEN>(on ? SQL_AUTOCOMMIT_ON : SQL_AUTOCOMMIT_OFF)),
                          0);
    }
    void exec(const std::string& sql) {
        SQLHSTMT st;
        SQLAllocHandle(SQL_HANDLE_STMT, dbc, &st);
        SQLRETURN rc = SQLExecDirect(st, (SQLCHAR*)sql.c_str(), SQL_NTS);
        std::string why;
        if (!SQL_SUCCEEDED(rc) && rc != SQL_NO_DATA) {
            SQLCHAR state[6] = {}, msg[512] = {};
            SQLINTEGER native = 0;
            SQLSMALLINT len = 0;
            SQLGetDiagRec(SQL_HANDLE_STMT, st, 1, state, &native, msg, sizeof msg, &len);
            why = fmt::format("{} [{}] {}", sql.substr(0, 40), reinterpret_cast<char*>(state),
                              reinterpret_cast<char*>(msg));
        }
        SQLFreeHandle(SQL_HANDLE_STMT, st);
        if (!why.empty()) throw std::runtime_error("direct ODBC statement failed: " + why);
    }
    void commit() { SQLEndTran(SQL_HANDLE_DBC, dbc, SQL_COMMIT); }
};

void bench(const char* label, const char* var, bool pg) {
    const char* info = std::getenv(var);
    if (info == nullptr) {
        fmt::print("{}: {} not set, skipped\n", label, var);
        return;
    }
    const std::string table = fmt::format("xarm_odbc_bench_{}", ::getpid());
    auto c = xarm::connect("odbc", info);
    c.execute("CREATE TABLE " + table + " (id BIGINT, v INT)");
    c.commit();
    // Drop the table whatever happens (a server restarted by another test, ...).
    struct dropper {
        std::string info, table;
        ~dropper() {
            try {
                auto d = xarm::connect("odbc", info);
                d.execute("DROP TABLE " + table);
                d.commit();
            } catch (const std::exception&) {
            }
        }
    } drop{info, table};
    raw_odbc raw(info);
    const std::string insert = "INSERT INTO " + table + " VALUES (1, 2)";
    const std::string tag = fmt::format("b{}", ::getpid());
    fmt::print("{} ({}):\n", label, var);

    const auto f = measure({[&](long i) {
                                c.tpc_begin(c.xid(1, fmt::format("{}-x-{}", tag, i), "b"));
                                c.execute(insert);
                                c.tpc_prepare();
                                c.tpc_commit();
                            },
                            [&](long i) {
                                const xarm::xid x(1, fmt::format("{}-r-{}", tag, i), "b");
                                if (pg) {
                                    const std::string gid = "'" + xarm::encode_pg_gid(x) + "'";
                                    raw.exec(insert);
                                    raw.exec("PREPARE TRANSACTION " + gid);
                                    raw.autocommit(true);
                                    raw.exec("COMMIT PREPARED " + gid);
                                    raw.autocommit(false);
                                } else {
                                    const std::string e = xarm::encode_mysql_xid(x);
                                    raw.exec("XA START " + e);
                                    raw.exec(insert);
                                    raw.exec("XA END " + e);
                                    raw.exec("XA PREPARE " + e);
                                    raw.exec("XA COMMIT " + e);  // same session: no reconnect
                                }
                            },
                            [&](long i) {
                                c.tpc_begin(c.xid(1, fmt::format("{}-y-{}", tag, i), "b"));
                                c.execute(insert);
                                c.tpc_commit();
                            },
                            [&](long) {
                                raw.exec(insert);
                                raw.commit();
                            }});
    const auto &x2 = f[0], &r2 = f[1], &x1 = f[2], &r1 = f[3];
    print("two-phase, xarm odbc", x2);
    print("two-phase, direct ODBC SQL", r2);
    fmt::print("  ratio xarm/direct (tx/s): {:.2f}\n", x2.tps / r2.tps);
    print("one-phase, xarm odbc", x1);
    print("one-phase, direct ODBC", r1);
    fmt::print("  ratio xarm/direct (tx/s): {:.2f}\n", x1.tps / r1.tps);
}

}  // namespace

int main() {
    try {
        bench("PostgreSQL through psqlODBC", "XARM_TEST_ODBC_PQ", true);
        bench("MariaDB through Connector/ODBC", "XARM_TEST_ODBC_MYSQL", false);
    } catch (const std::exception& e) {
        fmt::print(stderr, "benchmark failed: {}\n", e.what());
        return 1;
    }
    return 0;
}
