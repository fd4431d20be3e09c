// xarm_pq_bench: the cost of xarm over libpq. Each transaction does one UPDATE and one
// INSERT on a small table, two-phase and one-phase, through (a) libpq directly (also on
// the switch's own PGconn), (b) the xarm C++ API and (c) the xarm C switch with the SQL
// sent on xarm_pq_conn. Prints tx/s, latency percentiles and the xarm/direct ratios. Not
// a test: figures only.
#include <libpq-fe.h>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dialect.hpp"
#include "xarm/connection.hpp"
#include "xarm/driver/codec.hpp"
#include "xarm/xa.h"
#include "xarm/xid.hpp"

extern "C" {
extern struct xa_switch_t xarm_pq_switch;
PGconn* xarm_pq_conn(int rmid);
}

namespace {

using clock_type = std::chrono::steady_clock;

struct conn_deleter {
    void operator()(PGconn* c) const noexcept { PQfinish(c); }
};

void must(PGconn* c, const std::string& sql) {
    PGresult* r = PQexec(c, sql.c_str());
    const auto st = PQresultStatus(r);
    PQclear(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        throw std::runtime_error(sql + ": " + PQerrorMessage(c));
}

void must(PGresult* r, PGconn* c, const char* what) {
    const auto st = PQresultStatus(r);
    PQclear(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        throw std::runtime_error(std::string(what) + ": " + PQerrorMessage(c));
}

// Parameters in libpq's text format, as an application writing PQexecParams by hand
// would pass them.
struct text_params {
    std::string a, b;
    const char* values[2];
    explicit text_params(long x, long y = 0) : a(std::to_string(x)), b(std::to_string(y)) {
        values[0] = a.c_str();
        values[1] = b.c_str();
    }
};

struct stats {
    std::string name;
    double tps = 0;
    double p50 = 0, p95 = 0, p99 = 0;  // microseconds
    std::size_t n = 0;
    std::vector<double> slice_tps;  // per interleaved slice, for paired ratios
};

struct bench_case {
    std::string name;
    std::function<void(long)> tx;
    std::vector<double> lat;  // microseconds
    double busy = 0;          // seconds spent running it
    long next = 0;
};

// Runs the cases in interleaved slices (a shared machine's load then hits all alike).
// The median over the slices of a case's throughput against its baseline's in the same
// slice: adjacent in time, so a load that comes and goes hits both sides of each ratio.
double paired_ratio(const stats& s, const stats& base) {
    std::vector<double> r;
    for (std::size_t i = 0; i < s.slice_tps.size() && i < base.slice_tps.size(); ++i)
        r.push_back(s.slice_tps[i] / base.slice_tps[i]);
    if (r.empty()) return 0;
    std::sort(r.begin(), r.end());
    return r.size() % 2 ? r[r.size() / 2] : (r[r.size() / 2 - 1] + r[r.size() / 2]) / 2;
}

std::vector<stats> measure(std::vector<bench_case>& cases, double seconds) {
    const int rounds = 10;
    for (auto& c : cases)
        for (int i = 0; i < 20; ++i) c.tx(c.next++);  // warm-up
    std::vector<std::vector<double>> slice_tps(cases.size());
    for (int r = 0; r < rounds; ++r) {
        for (std::size_t k = 0; k < cases.size(); ++k) {
            auto& c = cases[k];
            const auto start = clock_type::now();
            const auto stop = start + std::chrono::duration<double>(seconds / rounds);
            const auto before = c.lat.size();
            for (auto now = start; now < stop;) {
                c.tx(c.next++);
                auto after = clock_type::now();
                c.lat.push_back(std::chrono::duration<double, std::micro>(after - now).count());
                now = after;
            }
            const double took = std::chrono::duration<double>(clock_type::now() - start).count();
            c.busy += took;
            slice_tps[k].push_back(static_cast<double>(c.lat.size() - before) / took);
        }
    }
    std::vector<stats> out;
    for (std::size_t k = 0; k < cases.size(); ++k) {
        auto& c = cases[k];
        std::sort(c.lat.begin(), c.lat.end());
        auto pct = [&](double p) {
            return c.lat[std::min(c.lat.size() - 1, static_cast<std::size_t>(p * c.lat.size()))];
        };
        out.push_back({c.name, c.lat.size() / c.busy, pct(0.50), pct(0.95), pct(0.99), c.lat.size(),
                       slice_tps[k]});
    }
    return out;
}

void usage() {
    fmt::print(
        "usage: xarm_pq_bench [--seconds S] [--info CONNINFO]\n"
        "  Runs N transactions (one UPDATE and one INSERT each) for S seconds per case\n"
        "  (default 2), two-phase and one-phase, through libpq directly, the xarm C++ API\n"
        "  and the xarm C switch, and prints tx/s, p50/p95/p99 latency and xarm/direct\n"
        "  ratios. CONNINFO defaults to $XARM_TEST_PQ (see tools/devservers env).\n");
}

}  // namespace

int main(int argc, char** argv) {
    double seconds = 2;
    std::string info = std::getenv("XARM_TEST_PQ") ? std::getenv("XARM_TEST_PQ") : "";
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            usage();
            return 0;
        } else if (a == "--seconds" && i + 1 < argc) {
            seconds = std::atof(argv[++i]);
        } else if (a == "--info" && i + 1 < argc) {
            info = argv[++i];
        } else {
            usage();
            return 2;
        }
    }
    if (info.empty() || seconds <= 0 || seconds > 60) {
        usage();
        return 2;
    }
    try {
        std::unique_ptr<PGconn, conn_deleter> admin(PQconnectdb(info.c_str()));
        if (PQstatus(admin.get()) != CONNECTION_OK)
            throw std::runtime_error(std::string("cannot connect: ") + PQerrorMessage(admin.get()));
        const std::string tag =
            fmt::format("{}_{}", getpid(), clock_type::now().time_since_epoch().count() % 1000000);
        const std::string acc = "xarm_bench_acc_" + tag, log = "xarm_bench_log_" + tag;
        must(admin.get(),
             fmt::format("CREATE TABLE {} (id int PRIMARY KEY, v bigint NOT NULL)", acc));
        must(admin.get(),
             fmt::format("INSERT INTO {} SELECT g, 0 FROM generate_series(1, 16) g", acc));
        must(admin.get(), fmt::format("CREATE TABLE {} (n bigint NOT NULL)", log));
        auto upd = [&](long i) {
            return fmt::format("UPDATE {} SET v = v + 1 WHERE id = {}", acc, i % 16 + 1);
        };
        auto ins = [&](long i) { return fmt::format("INSERT INTO {} (n) VALUES ({})", log, i); };
        const std::string prefix = "xarm-bench-" + tag;
        auto gid_of = [&](const char* kind, long i) {
            return xarm::xid(1, fmt::format("{}-{}-{}", prefix, kind, i), "b");
        };

        std::unique_ptr<PGconn, conn_deleter> direct(PQconnectdb(info.c_str()));
        auto xc = xarm::connect("pq", info);
        const int rmid = 1;
        std::string sinfo = info;
        if (xarm_pq_switch.xa_open_entry(sinfo.data(), rmid, TMNOFLAGS) != XA_OK)
            throw std::runtime_error("xa_open failed");
        PGconn* sw = xarm_pq_conn(rmid);
        auto xa = [](int rc, const char* what) {
            if (rc != XA_OK) throw std::runtime_error(fmt::format("{} returned {}", what, rc));
        };

        std::vector<bench_case> two_cases, one_cases;
        two_cases.push_back({"libpq direct",
                             [&](long i) {
                                 const std::string gid = xarm::encode_pg_gid(gid_of("d", i));
                                 must(direct.get(), "BEGIN");
                                 must(direct.get(), upd(i));
                                 must(direct.get(), ins(i));
                                 must(direct.get(), "PREPARE TRANSACTION '" + gid + "'");
                                 must(direct.get(), "COMMIT PREPARED '" + gid + "'");
                             },
                             {},
                             0,
                             0});
        // What xarm sends: the read-only check, a statement prepared once, travels with
        // PREPARE in one pipeline.
        must(PQprepare(direct.get(), "ro_check", xarm::pq::read_only_check_sql, 0, nullptr),
             direct.get(), "PQprepare");
        two_cases.push_back(
            {"libpq +RO check",
             [&](long i) {
                 const std::string gid = xarm::encode_pg_gid(gid_of("q", i));
                 PGconn* d = direct.get();
                 must(d, "BEGIN");
                 must(d, upd(i));
                 must(d, ins(i));
                 const std::string prep = "PREPARE TRANSACTION '" + gid + "'";
                 PQenterPipelineMode(d);
                 PQsendQueryPrepared(d, "ro_check", 0, nullptr, nullptr, nullptr, 0);
                 PQsendQueryParams(d, prep.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0);
                 PQpipelineSync(d);
                 for (int nulls = 0; nulls < 3;) {  // each query ends with a null
                     PGresult* r = PQgetResult(d);
                     if (r == nullptr) {
                         ++nulls;
                         continue;
                     }
                     nulls = 0;
                     const auto st = PQresultStatus(r);
                     PQclear(r);
                     if (st == PGRES_PIPELINE_SYNC) break;
                     if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                         throw std::runtime_error(std::string("pipeline: ") + PQerrorMessage(d));
                 }
                 PQexitPipelineMode(d);
                 must(d, "COMMIT PREPARED '" + gid + "'");
             },
             {},
             0,
             0});
        // The same check as text with PREPARE (parsed and planned every time): what
        // xarm sent before.
        two_cases.push_back(
            {"libpq +RO check text",
             [&](long i) {
                 const std::string gid = xarm::encode_pg_gid(gid_of("r", i));
                 must(direct.get(), "BEGIN");
                 must(direct.get(), upd(i));
                 must(direct.get(), ins(i));
                 must(direct.get(),
                      "SELECT 1 / (pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL)::int; "
                      "PREPARE TRANSACTION '" +
                          gid + "'");
                 must(direct.get(), "COMMIT PREPARED '" + gid + "'");
             },
             {},
             0,
             0});
        two_cases.push_back({"xarm C++ API",
                             [&](long i) {
                                 xc.tpc_begin(gid_of("c", i));
                                 xc.execute(upd(i));
                                 xc.execute(ins(i));
                                 xc.tpc_prepare();
                                 xc.tpc_commit();
                             },
                             {},
                             0,
                             0});
        // The same SQL by hand on the switch's own PGconn (between branches): the same
        // server backend as the switch path, so no scheduling luck of one backend
        // against another enters the ratio.
        two_cases.push_back({"libpq on switch PGconn",
                             [&](long i) {
                                 const std::string gid = xarm::encode_pg_gid(gid_of("h", i));
                                 must(sw, "BEGIN");
                                 must(sw, upd(i));
                                 must(sw, ins(i));
                                 must(sw, "PREPARE TRANSACTION '" + gid + "'");
                                 must(sw, "COMMIT PREPARED '" + gid + "'");
                             },
                             {},
                             0,
                             0});
        two_cases.push_back(
            {"xarm C switch",
             [&](long i) {
                 XID x{};
                 gid_of("s", i).to_c(x);
                 xa(xarm_pq_switch.xa_start_entry(&x, rmid, TMNOFLAGS), "xa_start");
                 must(sw, upd(i));
                 must(sw, ins(i));
                 xa(xarm_pq_switch.xa_end_entry(&x, rmid, TMSUCCESS), "xa_end");
                 xa(xarm_pq_switch.xa_prepare_entry(&x, rmid, TMNOFLAGS), "xa_prepare");
                 xa(xarm_pq_switch.xa_commit_entry(&x, rmid, TMNOFLAGS), "xa_commit");
             },
             {},
             0,
             0});
        one_cases.push_back({"libpq direct",
                             [&](long i) {
                                 must(direct.get(), "BEGIN");
                                 must(direct.get(), upd(i));
                                 must(direct.get(), ins(i));
                                 must(direct.get(), "COMMIT");
                             },
                             {},
                             0,
                             0});
        one_cases.push_back({"xarm C++ API",
                             [&](long i) {
                                 xc.tpc_begin(gid_of("c1", i));
                                 xc.execute(upd(i));
                                 xc.execute(ins(i));
                                 xc.tpc_commit();
                             },
                             {},
                             0,
                             0});
        one_cases.push_back({"libpq on switch PGconn",
                             [&](long i) {
                                 must(sw, "BEGIN");
                                 must(sw, upd(i));
                                 must(sw, ins(i));
                                 must(sw, "COMMIT");
                             },
                             {},
                             0,
                             0});
        one_cases.push_back({"xarm C switch",
                             [&](long i) {
                                 XID x{};
                                 gid_of("s1", i).to_c(x);
                                 xa(xarm_pq_switch.xa_start_entry(&x, rmid, TMNOFLAGS), "xa_start");
                                 must(sw, upd(i));
                                 must(sw, ins(i));
                                 xa(xarm_pq_switch.xa_end_entry(&x, rmid, TMSUCCESS), "xa_end");
                                 xa(xarm_pq_switch.xa_commit_entry(&x, rmid, TMONEPHASE),
                                    "xa_commit(TMONEPHASE)");
                             },
                             {},
                             0,
                             0});

        // Bound parameters: the same transaction with the values as parameters, by hand
        // with PQexecParams / PQexecPrepared and through the C++ API.
        const std::string upd_sql = fmt::format("UPDATE {} SET v = v + $1 WHERE id = $2", acc);
        const std::string ins_sql = fmt::format("INSERT INTO {} (n) VALUES ($1)", log);
        must(PQprepare(direct.get(), "upd", upd_sql.c_str(), 2, nullptr), direct.get(),
             "PQprepare");
        must(PQprepare(direct.get(), "ins", ins_sql.c_str(), 1, nullptr), direct.get(),
             "PQprepare");
        const std::string xupd = fmt::format("UPDATE {} SET v = v + ? WHERE id = ?", acc);
        const std::string xins = fmt::format("INSERT INTO {} (n) VALUES (?)", log);
        auto st_upd = xc.prepare(xupd);
        auto st_ins = xc.prepare(xins);
        std::vector<bench_case> param_cases;
        param_cases.push_back(
            {"PQexecParams",
             [&](long i) {
                 const std::string gid = xarm::encode_pg_gid(gid_of("pp", i));
                 PGconn* d = direct.get();
                 must(d, "BEGIN");
                 text_params u(1, i % 16 + 1), n(i);
                 must(PQexecParams(d, upd_sql.c_str(), 2, nullptr, u.values, nullptr, nullptr, 0),
                      d, "UPDATE");
                 must(PQexecParams(d, ins_sql.c_str(), 1, nullptr, n.values, nullptr, nullptr, 0),
                      d, "INSERT");
                 must(d, "PREPARE TRANSACTION '" + gid + "'");
                 must(d, "COMMIT PREPARED '" + gid + "'");
             },
             {},
             0,
             0});
        param_cases.push_back({"xarm execute(sql, args)",
                               [&](long i) {
                                   xc.tpc_begin(gid_of("cp", i));
                                   xc.execute(xupd, 1, i % 16 + 1);
                                   xc.execute(xins, i);
                                   xc.tpc_prepare();
                                   xc.tpc_commit();
                               },
                               {},
                               0,
                               0});
        param_cases.push_back(
            {"PQexecPrepared",
             [&](long i) {
                 const std::string gid = xarm::encode_pg_gid(gid_of("pe", i));
                 PGconn* d = direct.get();
                 must(d, "BEGIN");
                 text_params u(1, i % 16 + 1), n(i);
                 must(PQexecPrepared(d, "upd", 2, u.values, nullptr, nullptr, 0), d, "UPDATE");
                 must(PQexecPrepared(d, "ins", 1, n.values, nullptr, nullptr, 0), d, "INSERT");
                 must(d, "PREPARE TRANSACTION '" + gid + "'");
                 must(d, "COMMIT PREPARED '" + gid + "'");
             },
             {},
             0,
             0});
        param_cases.push_back({"xarm statement",
                               [&](long i) {
                                   xarm::branch b(xc, gid_of("cs", i));
                                   st_upd.execute(1, i % 16 + 1);
                                   st_ins.execute(i);
                                   b.prepare();
                                   b.commit();
                               },
                               {},
                               0,
                               0});

        auto two = measure(two_cases, seconds);
        auto one = measure(one_cases, seconds);
        auto params = measure(param_cases, seconds);
        auto print = [](const char* title, const std::vector<stats>& v, const char* trips,
                        std::vector<std::size_t> base = {}) {
            fmt::print("\n{}\n  round trips per transaction: {}\n", title, trips);
            fmt::print("  {:<24} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n", "path", "n",
                       "tx/s", "p50 us", "p95 us", "p99 us", "tx/s ratio", "paired");
            for (std::size_t k = 0; k < v.size(); ++k) {
                const auto& s = v[k];
                const auto& ref = v[k < base.size() ? base[k] : 0];
                fmt::print(
                    "  {:<24} {:>8} {:>10.0f} {:>10.0f} {:>10.0f} {:>10.0f} {:>10.3f} {:>10.3f}\n",
                    s.name, s.n, s.tps, s.p50, s.p95, s.p99, s.tps / ref.tps, paired_ratio(s, ref));
            }
        };
        fmt::print(
            "xarm_pq_bench: {} s per case (10 interleaved slices), one UPDATE + one INSERT per "
            "transaction\n"
            "  tx/s ratio: total throughput against the baseline; paired: the median of the "
            "per-slice ratios\n",
            seconds);
        auto same_conn = [](const std::vector<stats>& v) {
            const auto& through = v.back();
            const auto& hand = v[v.size() - 2];
            fmt::print(
                "  xarm C switch against libpq on the same PGconn: tx/s {:.3f}, paired {:.3f}\n",
                through.tps / hand.tps, paired_ratio(through, hand));
        };
        print("two-phase (BEGIN, UPDATE, INSERT, PREPARE TRANSACTION, COMMIT PREPARED)", two,
              "direct 5, C++ API 4 (BEGIN sent with the UPDATE), switch 5");
        same_conn(two);
        print("one-phase (BEGIN, UPDATE, INSERT, COMMIT)", one,
              "direct 4, C++ API 3 (BEGIN sent with the UPDATE), switch 4");
        same_conn(one);
        print(
            "two-phase with bound parameters (ratios: xarm execute against PQexecParams, "
            "xarm statement against PQexecPrepared)",
            params, "by hand 5, C++ API 4 (BEGIN pipelined with the UPDATE)", {0, 0, 2, 2});

        xarm_pq_switch.xa_close_entry(sinfo.data(), rmid, TMNOFLAGS);
        must(admin.get(), fmt::format("DROP TABLE {}, {}", acc, log));
    } catch (const std::exception& e) {
        fmt::print(stderr, "xarm_pq_bench: {}\n", e.what());
        return 1;
    }
    return 0;
}
