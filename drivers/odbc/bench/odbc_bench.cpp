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

#include "interleaved_bench.hpp"
#include "xarm/connection.hpp"
#include "xarm/driver/codec.hpp"
#include "xarm/xid.hpp"

namespace {

constexpr auto run_for = std::chrono::milliseconds(2000);  // per case, all slices

using xarm::bench::figures;

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

    std::vector<std::function<void(long)>> cases = {
        [&](long i) {
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
        }};
    // MariaDB: one-phase XA by hand too (XA START, INSERT, XA END, XA COMMIT ONE PHASE),
    // the same round trips xarm needs, to tell xarm's cost from XA's.
    if (!pg)
        cases.push_back([&](long i) {
            const std::string e =
                xarm::encode_mysql_xid(xarm::xid(1, fmt::format("{}-o-{}", tag, i), "b"));
            raw.exec("XA START " + e);
            raw.exec(insert);
            raw.exec("XA END " + e);
            raw.exec("XA COMMIT " + e + " ONE PHASE");
        });
    const auto f = xarm::bench::interleaved(cases, run_for);
    const auto &x2 = f[0], &r2 = f[1], &x1 = f[2], &r1 = f[3];
    print("two-phase, xarm odbc", x2);
    print("two-phase, direct ODBC SQL", r2);
    fmt::print("  ratio xarm/direct (tx/s): {:.2f}\n", x2.tps / r2.tps);
    print("one-phase, xarm odbc", x1);
    print("one-phase, direct ODBC", r1);
    fmt::print("  ratio xarm/direct (tx/s): {:.2f}\n", x1.tps / r1.tps);
    if (f.size() > 4) {
        print("one-phase, direct ODBC XA SQL", f[4]);
        fmt::print("  ratio xarm/direct XA SQL (tx/s): {:.2f}\n", x1.tps / f[4].tps);
    }
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
