// xarm_tm_bench: what the transaction manager costs and what its optimisations buy, on
// the development PostgreSQL server (XARM_TEST_PQ, _DB2, _DB3, _DB4). Prints figures;
// not a test. Each scenario runs for a couple of seconds.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "xarm/connection.hpp"
#include "xarm/tm.hpp"

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using namespace xarm;

namespace {

double run_seconds = 2.0;
std::string table;

struct figures {
    double tps = 0, p50 = 0, p95 = 0, p99 = 0;  // latencies in ms
    std::uint64_t n = 0;
};

/// Runs body(thread) repeatedly on `threads` threads for run_seconds.
figures measure(int threads, const std::function<std::function<void()>(int)>& make_body) {
    std::vector<std::vector<double>> lat(static_cast<std::size_t>(threads));
    std::atomic<bool> stop{false};
    std::vector<std::function<void()>> bodies;
    for (int t = 0; t < threads; ++t) bodies.push_back(make_body(t));
    std::vector<std::thread> ts;
    const auto t0 = clock_type::now();
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] {
            auto& body = bodies[static_cast<std::size_t>(t)];
            while (!stop.load(std::memory_order_relaxed)) {
                const auto a = clock_type::now();
                body();
                lat[static_cast<std::size_t>(t)].push_back(
                    std::chrono::duration<double, std::milli>(clock_type::now() - a).count());
            }
        });
    std::this_thread::sleep_for(std::chrono::duration<double>(run_seconds));
    stop = true;
    for (auto& t : ts) t.join();
    const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    std::vector<double> all;
    for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
    std::sort(all.begin(), all.end());
    figures f;
    f.n = all.size();
    f.tps = static_cast<double>(all.size()) / secs;
    auto pct = [&](double p) {
        return all.empty()
                   ? 0.0
                   : all[std::min(all.size() - 1,
                                  static_cast<std::size_t>(p * static_cast<double>(all.size())))];
    };
    f.p50 = pct(0.50);
    f.p95 = pct(0.95);
    f.p99 = pct(0.99);
    return f;
}

void print(const char* name, const figures& f) {
    std::printf("  %-46s %8.0f tx/s  p50 %6.2f ms  p95 %6.2f ms  p99 %6.2f ms  (%llu tx)\n", name,
                f.tps, f.p50, f.p95, f.p99, static_cast<unsigned long long>(f.n));
}

std::string insert_sql() {
    return "INSERT INTO " + table + " (v) VALUES ('x')";
}

struct ctx {
    std::vector<std::string> dbs;
    fs::path dir;
    std::atomic<int> ids{0};
    std::shared_ptr<tm::coordinator> coord(const char* name, int k) {
        tm::coordinator::options o;
        o.id = std::string(name) + std::to_string(::getpid() % 10000) + "n" + std::to_string(k);
        o.log_path = dir / (o.id + ".log");
        o.create_log = true;
        return std::make_shared<tm::coordinator>(std::move(o));
    }
};

/// The manager over the first n databases, threads threads.
figures managed(ctx& c, std::size_t n, int threads, const std::shared_ptr<tm::coordinator>& co) {
    return measure(threads, [&, n](int) {
        auto res = std::make_shared<std::vector<std::unique_ptr<tm::connection_resource>>>();
        for (std::size_t i = 0; i < n; ++i)
            res->push_back(std::make_unique<tm::connection_resource>(
                "db" + std::to_string(i), xarm::connect("pq", c.dbs[i])));
        return std::function<void()>([res, co] {
            auto t = co->begin();
            for (auto& r : *res) {
                t.enlist(*r);
                r->conn().execute(insert_sql());
            }
            t.commit();
        });
    });
}

}  // namespace

int main() {
    const char* vars[] = {"XARM_TEST_PQ", "XARM_TEST_PQ_DB2", "XARM_TEST_PQ_DB3",
                          "XARM_TEST_PQ_DB4"};
    ctx c;
    for (const char* v : vars)
        if (const char* s = std::getenv(v)) c.dbs.push_back(s);
    if (c.dbs.size() < 2) {
        std::fprintf(stderr,
                     "xarm_tm_bench: set XARM_TEST_PQ and XARM_TEST_PQ_DB2 (..._DB4) "
                     "(tools/devservers env)\n");
        return 2;
    }
    if (const char* s = std::getenv("XARM_BENCH_SECONDS")) run_seconds = std::atof(s);
    table = "xtm_bench_" + std::to_string(::getpid());
    c.dir = fs::temp_directory_path() / ("xarm-tm-bench-" + std::to_string(::getpid()));
    fs::create_directories(c.dir);
    for (auto& db : c.dbs) {
        auto k = xarm::connect("pq", db);
        k.execute("CREATE TABLE " + table + " (id BIGSERIAL PRIMARY KEY, v TEXT)");
        k.commit();
    }
    std::printf("xarm_tm_bench: PostgreSQL, %zu databases, %.1f s per scenario, log in %s\n",
                c.dbs.size(), run_seconds, c.dir.c_str());

    std::printf("\n1. one resource: the manager (one-phase, no log) vs the driver alone\n");
    const figures driver_alone = measure(1, [&](int) {
        auto k = std::make_shared<connection>(xarm::connect("pq", c.dbs[0]));
        return std::function<void()>([k] {
            k->execute(insert_sql());
            k->commit();
        });
    });
    print("driver alone (INSERT; COMMIT)", driver_alone);
    const figures one = managed(c, 1, 1, c.coord("b", 1));
    print("manager, 1 resource", one);
    std::printf("  ratio manager/driver: %.2f\n", one.tps / driver_alone.tps);

    std::printf(
        "\n2. two resources: the manager (parallel phases + forced log) vs by hand, sequential\n");
    const figures by_hand = measure(1, [&](int) {
        auto a = std::make_shared<connection>(xarm::connect("pq", c.dbs[0]));
        auto b = std::make_shared<connection>(xarm::connect("pq", c.dbs[1]));
        auto n = std::make_shared<int>(0);
        const std::string g = "xtmbench" + std::to_string(::getpid());
        return std::function<void()>([a, b, n, g] {
            const std::string gt = g + "." + std::to_string(++*n);
            a->tpc_begin(connection::xid(1, gt, "a"));
            b->tpc_begin(connection::xid(1, gt, "b"));
            a->execute(insert_sql());
            b->execute(insert_sql());
            a->tpc_prepare();
            b->tpc_prepare();
            a->tpc_commit();
            b->tpc_commit();
        });
    });
    print("by hand: prepare a, prepare b, commit a, commit b", by_hand);
    auto co2 = c.coord("b", 2);
    const figures two = managed(c, 2, 1, co2);
    print("manager, 2 resources (with the decision log)", two);
    std::printf("  ratio manager/by hand: %.2f\n", two.tps / by_hand.tps);

    std::printf(
        "\n3. 1, 2, 4 databases through the manager (one thread): latency vs the slowest, not the "
        "sum\n");
    figures base;
    for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{4}}) {
        if (n > c.dbs.size()) break;
        const figures f = managed(c, n, 1, c.coord("b", 3 + static_cast<int>(n)));
        char name[64];
        std::snprintf(name, sizeof name, "%zu database%s", n, n > 1 ? "s" : "");
        print(name, f);
        if (n == 2) base = f;
        if (n == 4 && base.p50 > 0)
            std::printf("  p50 4 dbs / 2 dbs: %.2f (the sum would be 2.00)\n", f.p50 / base.p50);
    }

    std::printf(
        "\n4. group commit: two databases, 1 vs 16 threads (log flushes per transaction)\n");
    for (int threads : {1, 16}) {
        auto co = c.coord("g", threads);
        const figures f = managed(c, 2, threads, co);
        const auto st = co->log().stats();
        char name[64];
        std::snprintf(name, sizeof name, "%d thread%s", threads, threads > 1 ? "s" : "");
        print(name, f);
        std::printf("    log: %llu decisions, %llu flushes: %.3f flushes per transaction\n",
                    static_cast<unsigned long long>(st.forced_records),
                    static_cast<unsigned long long>(st.syncs),
                    st.forced_records
                        ? static_cast<double>(st.syncs) / static_cast<double>(st.forced_records)
                        : 0.0);
    }

    for (auto& db : c.dbs) {
        auto k = xarm::connect("pq", db);
        k.execute("DROP TABLE " + table);
        k.commit();
    }
    fs::remove_all(c.dir);
    return 0;
}
