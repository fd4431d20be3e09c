// xarm's MySQL driver against the same XA statements sent directly through
// Connector/C++, in one run: two-phase and one-phase, through the C++ API and the C
// switch. Prints transactions per second, latency percentiles and the ratios.
#include <cppconn/connection.h>
#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <fmt/format.h>
#include <mysql_driver.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dialect.hpp"
#include "xarm/connection.hpp"
#include "xarm/driver/info.hpp"
#include "xarm/xa.h"
#include "xarm/xarm.h"

extern "C" struct xa_switch_t xarm_mysql_switch;
extern "C" sql::Connection* xarm_mysql_conn(int rmid);

namespace {

using clock_type = std::chrono::steady_clock;

struct figures {
    std::string name;
    double tps = 0;
    double p50 = 0, p95 = 0, p99 = 0;  // microseconds
};

// One scenario: a transaction run repeatedly; latencies gathered over several rounds.
struct scenario {
    scenario(std::string label, std::function<void(long)> f)
        : name(std::move(label)), tx(std::move(f)) {}
    std::string name;
    std::function<void(long)> tx;
    std::vector<double> lat;  // microseconds
    double busy = 0;          // seconds spent in tx
    long n = 0;
};

// Runs the scenarios in interleaved rounds, so that drifting load on a shared machine
// hits them all alike.
void run_rounds(std::vector<scenario>& all, double seconds, int rounds) {
    for (auto& s : all)
        for (int i = 0; i < 20; ++i) s.tx(s.n++);  // warm-up
    for (int r = 0; r < rounds; ++r)
        for (auto& s : all) {
            const auto stop = clock_type::now() + std::chrono::duration<double>(seconds / rounds);
            while (clock_type::now() < stop) {
                const auto t0 = clock_type::now();
                s.tx(s.n++);
                const double us =
                    std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
                s.lat.push_back(us);
                s.busy += us / 1e6;
            }
        }
}

figures summarise(scenario& s) {
    std::sort(s.lat.begin(), s.lat.end());
    auto pct = [&](double p) {
        return s.lat[std::min(s.lat.size() - 1,
                              static_cast<std::size_t>(p * static_cast<double>(s.lat.size())))];
    };
    return {s.name, static_cast<double>(s.lat.size()) / s.busy, pct(0.50), pct(0.95), pct(0.99)};
}

std::unique_ptr<sql::Connection> raw(const std::map<std::string, std::string>& kv, bool multi) {
    sql::ConnectOptionsMap m;
    auto get = [&](const char* k, const char* d) {
        auto it = kv.find(k);
        return it == kv.end() ? std::string(d) : it->second;
    };
    m["hostName"] = sql::SQLString(get("host", "127.0.0.1"));
    m["port"] = std::stoi(get("port", "3306"));
    if (kv.count("socket")) m["socket"] = sql::SQLString(kv.at("socket"));
    m["userName"] = sql::SQLString(get("user", ""));
    m["password"] = sql::SQLString(get("password", ""));
    if (kv.count("database")) m["schema"] = sql::SQLString(kv.at("database"));
    if (multi) m["CLIENT_MULTI_STATEMENTS"] = true;
    return std::unique_ptr<sql::Connection>(sql::mysql::get_mysql_driver_instance()->connect(m));
}

void run(sql::Statement& s, const std::string& q) {
    if (s.execute(q)) std::unique_ptr<sql::ResultSet> rs(s.getResultSet());
}
void run2(sql::Statement& s, const std::string& q) {  // two statements, one round trip
    run(s, q);
    if (s.getMoreResults()) std::unique_ptr<sql::ResultSet> rs(s.getResultSet());
}

void check(int rc, const char* what) {
    if (rc == XA_OK) return;
    xarm_diag d{};
    xarm_last_error(1, &d);
    throw std::runtime_error(fmt::format("{} returned {}: {}", what, rc, d.message));
}

void usage() {
    fmt::print(
        "usage: xarm_mysql_bench [--seconds S] [--info 'host=... user=...']\n"
        "  Compares xarm's MySQL driver (C++ API and C switch) with the same XA statements\n"
        "  sent directly through Connector/C++, two-phase and one-phase, in one run.\n"
        "  --seconds S   measuring time per scenario (default 2, at most 60)\n"
        "  --info STR    xa_open info string (default: $XARM_TEST_MYSQL)\n");
}

}  // namespace

int main(int argc, char** argv) {
    double seconds = 2;
    std::string info = std::getenv("XARM_TEST_MYSQL") ? std::getenv("XARM_TEST_MYSQL") : "";
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            usage();
            return 0;
        } else if (a == "--seconds" && i + 1 < argc) {
            seconds = std::clamp(std::atof(argv[++i]), 0.1, 60.0);
        } else if (a == "--info" && i + 1 < argc) {
            info = argv[++i];
        } else {
            usage();
            return 2;
        }
    }
    if (info.empty()) {
        fmt::print(stderr, "no server: set XARM_TEST_MYSQL or pass --info\n");
        return 2;
    }
    try {
        const auto kv = xarm::parse_info(
            info, {"host", "port", "socket", "user", "password", "database", "connect_timeout",
                   "multi_statements", "max_parked", "read_only_vote"});
        const std::string table = fmt::format("xarm_bench_{}", ::getpid());
        const std::string insert = fmt::format("INSERT INTO {} (v) VALUES (1)", table);
        auto admin = raw(kv, false);
        {
            std::unique_ptr<sql::Statement> s(admin->createStatement());
            run(*s, fmt::format("CREATE TABLE {} (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT) "
                                "ENGINE=InnoDB",
                                table));
        }
        const std::string acc = fmt::format("xarm_bench_acc_{}", ::getpid());
        {
            std::unique_ptr<sql::Statement> s(admin->createStatement());
            run(*s,
                fmt::format("CREATE TABLE {} (id INT PRIMARY KEY, v BIGINT) ENGINE=InnoDB", acc));
            std::string rows;
            for (int i = 1; i <= 16; ++i) rows += fmt::format("{}({}, 0)", i > 1 ? "," : "", i);
            run(*s, fmt::format("INSERT INTO {} VALUES {}", acc, rows));
        }
        const std::string prefix = fmt::format("bench-{}-", ::getpid());
        auto gid = [&](const char* kind, long n) {
            return xarm::xid(1, prefix + kind + std::to_string(n), "b");
        };
        std::vector<scenario> sc;
        using namespace xarm::mysql;

        // Connector/C++ directly: the statements xarm sends, XA END with the next verb.
        auto native = raw(kv, true);
        native->setAutoCommit(false);
        std::unique_ptr<sql::Statement> ns(native->createStatement());
        sc.push_back({"native 2PC (END+PREPARE batched)", [&](long n) {
                          auto x = gid("n2-", n);
                          run(*ns, xa_start_sql(x));
                          run(*ns, insert);
                          run2(*ns, xa_end_prepare_sql(x));
                          run(*ns, xa_commit_sql(x, false));
                      }});
        sc.push_back({"native 2PC (one statement per trip)", [&](long n) {
                          auto x = gid("n2s-", n);
                          run(*ns, xa_start_sql(x));
                          run(*ns, insert);
                          run(*ns, xa_end_sql(x));
                          run(*ns, xa_prepare_sql(x));
                          run(*ns, xa_commit_sql(x, false));
                      }});
        sc.push_back({"native 1PC (END+COMMIT ONE PHASE)", [&](long n) {
                          auto x = gid("n1-", n);
                          run(*ns, xa_start_sql(x));
                          run(*ns, insert);
                          run2(*ns, xa_end_sql(x) + ";" + xa_commit_sql(x, true));
                      }});

        // xarm, C++ API.
        auto c = xarm::connect("mysql", info);
        auto cpp_2pc = [&](xarm::connection& conn, const char* kind) {
            return [&conn, &gid, &insert, kind](long n) {
                conn.tpc_begin(gid(kind, n));
                conn.execute(insert);
                conn.tpc_prepare();
                conn.tpc_commit();
            };
        };
        sc.push_back({"xarm C++ 2PC", cpp_2pc(c, "c2-")});
        sc.push_back({"xarm C++ 1PC", [&](long n) {
                          c.tpc_begin(gid("c1-", n));
                          c.execute(insert);
                          c.tpc_commit();
                      }});

        // xarm, C switch; the work goes through the native connection, as in a monitor.
        std::string open_info = info;
        check(xarm_mysql_switch.xa_open_entry(open_info.data(), 1, TMNOFLAGS), "xa_open");
        std::unique_ptr<sql::Statement> cs(xarm_mysql_conn(1)->createStatement());
        auto rm_tx = [&](int rmid, sql::Statement& st, const xarm::xid& x, bool two_phase) {
            XID cx{};
            x.to_c(cx);
            check(xarm_mysql_switch.xa_start_entry(&cx, rmid, TMNOFLAGS), "xa_start");
            run(st, insert);
            check(xarm_mysql_switch.xa_end_entry(&cx, rmid, TMSUCCESS), "xa_end");
            if (two_phase) {
                check(xarm_mysql_switch.xa_prepare_entry(&cx, rmid, TMNOFLAGS), "xa_prepare");
                check(xarm_mysql_switch.xa_commit_entry(&cx, rmid, TMNOFLAGS), "xa_commit");
            } else {
                check(xarm_mysql_switch.xa_commit_entry(&cx, rmid, TMONEPHASE), "xa_commit");
            }
        };
        auto c_tx = [&](const xarm::xid& x, bool two_phase) { rm_tx(1, *cs, x, two_phase); };
        sc.push_back({"xarm C switch 2PC", [&](long n) { c_tx(gid("s2-", n), true); }});
        sc.push_back({"xarm C switch 1PC", [&](long n) { c_tx(gid("s1-", n), false); }});
        // The same with the read-only vote on: the session write counters are read with XA
        // START and before XA END (the C++ API skips the second reading: its INSERT
        // reported a changed row).
        const std::string ro_info = kv.count("read_only_vote") ? info : info + " read_only_vote=on";
        auto c_ro = xarm::connect("mysql", ro_info);
        sc.push_back({"xarm C++ 2PC read_only_vote=on", cpp_2pc(c_ro, "r2-")});
        std::string ro_open = ro_info;
        check(xarm_mysql_switch.xa_open_entry(ro_open.data(), 3, TMNOFLAGS), "xa_open");
        std::unique_ptr<sql::Statement> ro_cs(xarm_mysql_conn(3)->createStatement());
        sc.push_back({"xarm C switch 2PC read_only_vote=on",
                      [&](long n) { rm_tx(3, *ro_cs, gid("rs-", n), true); }});
        // Bound parameters: UPDATE + INSERT two-phase, by hand with Connector/C++
        // PreparedStatements (prepared once, as a careful application does) and through
        // the C++ API (execute(sql, args) and prepared statements).
        const std::string upd = fmt::format("UPDATE {} SET v = v + ? WHERE id = ?", acc);
        const std::string ins = fmt::format("INSERT INTO {} (v) VALUES (?)", table);
        std::unique_ptr<sql::PreparedStatement> p_upd(native->prepareStatement(upd));
        std::unique_ptr<sql::PreparedStatement> p_ins(native->prepareStatement(ins));
        sc.push_back({"native 2PC params (PreparedStatement)", [&](long n) {
                          auto x = gid("np-", n);
                          run(*ns, xa_start_sql(x));
                          p_upd->setInt64(1, 1);
                          p_upd->setInt64(2, n % 16 + 1);
                          p_upd->executeUpdate();
                          p_ins->setInt64(1, n);
                          p_ins->executeUpdate();
                          run2(*ns, xa_end_prepare_sql(x));
                          run(*ns, xa_commit_sql(x, false));
                      }});
        sc.push_back({"xarm C++ 2PC params execute(sql, args)", [&](long n) {
                          c.tpc_begin(gid("cp-", n));
                          c.execute(upd, 1, n % 16 + 1);
                          c.execute(ins, n);
                          c.tpc_prepare();
                          c.tpc_commit();
                      }});
        auto st_upd = c.prepare(upd);
        auto st_ins = c.prepare(ins);
        sc.push_back({"xarm C++ 2PC params statement", [&](long n) {
                          xarm::branch b(c, gid("cs-", n));
                          st_upd.execute(1, n % 16 + 1);
                          st_ins.execute(n);
                          b.prepare();
                          b.commit();
                      }});

        // The affinity bridge: what detaching a prepared branch by reconnecting would
        // cost, against xarm's way: rmid 2 prepares and starts the next branch at once
        // (the driver sets the connection holding the prepared branch aside), another
        // thread commits every 4 branches through its own connection.
        sc.push_back({"connect + disconnect (a reconnect)", [&](long) { auto k = raw(kv, true); }});
        std::string oi = info;
        check(xarm_mysql_switch.xa_open_entry(oi.data(), 2, TMNOFLAGS), "xa_open");
        auto b = xarm::connect("mysql", info);
        std::vector<xarm::xid> pending;
        sc.push_back(
            {"xarm C 2PC, phase two by another thread", [&](long n) {
                 auto x = gid("p-", n);
                 XID cx{};
                 x.to_c(cx);
                 check(xarm_mysql_switch.xa_start_entry(&cx, 2, TMNOFLAGS), "xa_start");
                 {
                     std::unique_ptr<sql::Statement> st(xarm_mysql_conn(2)->createStatement());
                     run(*st, insert);
                 }
                 check(xarm_mysql_switch.xa_end_entry(&cx, 2, TMSUCCESS), "xa_end");
                 check(xarm_mysql_switch.xa_prepare_entry(&cx, 2, TMNOFLAGS), "xa_prepare");
                 pending.push_back(x);
                 if (pending.size() == 4) {
                     std::thread t([&] {
                         for (const auto& p : pending) b.tpc_commit(p);
                     });
                     t.join();
                     pending.clear();
                 }
             }});

        run_rounds(sc, seconds, 4);
        for (const auto& p : pending) b.tpc_commit(p);
        xarm_mysql_switch.xa_close_entry(oi.data(), 2, TMNOFLAGS);
        cs.reset();
        xarm_mysql_switch.xa_close_entry(open_info.data(), 1, TMNOFLAGS);
        ro_cs.reset();
        xarm_mysql_switch.xa_close_entry(ro_open.data(), 3, TMNOFLAGS);
        std::vector<figures> rows;
        for (auto& s : sc) rows.push_back(summarise(s));
        {
            std::unique_ptr<sql::Statement> s(admin->createStatement());
            run(*s, "DROP TABLE " + table);
            run(*s, "DROP TABLE " + acc);
        }
        auto base = [&](const std::string& n) -> const figures* {
            for (const auto& r : rows)
                if (r.name == n) return &r;
            return nullptr;
        };
        fmt::print("{:<44} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}\n",
                   fmt::format("scenario ({:g} s each, 4 rounds)", seconds), "tx/s", "p50 us",
                   "p95 us", "p99 us", "tx/s x", "p50 x");
        for (const auto& r : rows) {
            const figures* ref = nullptr;
            if (r.name.find("params") != std::string::npos)
                ref = r.name.rfind("xarm", 0) == 0 ? base("native 2PC params (PreparedStatement)")
                                                   : nullptr;
            else if (r.name.rfind("xarm C++", 0) == 0 || r.name.rfind("xarm C switch", 0) == 0)
                ref = base(r.name.find("2PC") != std::string::npos
                               ? "native 2PC (END+PREPARE batched)"
                               : "native 1PC (END+COMMIT ONE PHASE)");
            fmt::print("{:<44} {:>8.0f} {:>8.0f} {:>8.0f} {:>8.0f} {:>7} {:>7}\n", r.name, r.tps,
                       r.p50, r.p95, r.p99, ref ? fmt::format("{:.2f}", r.tps / ref->tps) : "",
                       ref ? fmt::format("{:.2f}", ref->p50 / r.p50) : "");
        }
        fmt::print(
            "ratios: xarm against native for the same kind (2PC: the batched native run; params: "
            "the native PreparedStatements); "
            "tx/s x = xarm/native throughput, p50 x = native/xarm median latency (above 1: "
            "xarm faster)\n");
    } catch (const std::exception& e) {
        fmt::print(stderr, "benchmark failed: {}\n", e.what());
        return 1;
    }
    return 0;
}
