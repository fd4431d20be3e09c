// xarm's sqlite driver vs sqlite3_exec by hand, in the same run: one-phase transactions
// (begin, one INSERT, commit) through the XA switch (the application's INSERT on
// xarm_sqlite_db, as an XA program does), through the C++ API, and by hand on a second
// connection to the same file. The cases run interleaved in ten slices, so that a shared
// machine's load hits all alike; the ratios within one run are what counts. Run twice:
// synchronous=FULL (SQLite's default: every COMMIT waits for the disk) and
// synchronous=OFF (no fsync: the library's own cost shows).
//
//   xarm_sqlite_bench [--seconds S] [--dir DIR]
#include <sqlite3.h>
#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "interleaved_bench.hpp"
#include "xarm/connection.hpp"
#include "xarm/xa.h"

extern "C" struct xa_switch_t xarm_sqlite_switch;
extern "C" sqlite3* xarm_sqlite_db(int rmid);

namespace {

using xarm::bench::figures;

void check(int rc, const char* what) {
    if (rc != XA_OK) throw std::runtime_error(fmt::format("{} answered {}", what, rc));
}

void exec(sqlite3* db, const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string m = err != nullptr ? err : "?";
        sqlite3_free(err);
        throw std::runtime_error(fmt::format("{}: {}", sql, m));
    }
}

void bench(const std::string& path, const char* sync, std::chrono::milliseconds run_for) {
    const std::string info = "path=" + path;
    // By hand: a second connection to the same file.
    sqlite3* raw = nullptr;
    if (sqlite3_open(path.c_str(), &raw) != SQLITE_OK)
        throw std::runtime_error("sqlite3_open " + path);
    struct closer {
        sqlite3* db;
        ~closer() { sqlite3_close(db); }
    } close_raw{raw};
    const std::string pragma = fmt::format("PRAGMA synchronous={}", sync);
    exec(raw, pragma.c_str());
    exec(raw, "CREATE TABLE IF NOT EXISTS t (id INTEGER, v INTEGER)");
    // Through the switch (rmid 1) and the C++ API.
    const int rmid = 1;
    check(xarm_sqlite_switch.xa_open_entry(const_cast<char*>(info.c_str()), rmid, TMNOFLAGS),
          "xa_open");
    sqlite3* sw = xarm_sqlite_db(rmid);
    exec(sw, pragma.c_str());
    auto c = xarm::connect("sqlite", info);
    exec(c.native_handle<sqlite3*>(), pragma.c_str());  // outside a transaction
    const char* insert = "INSERT INTO t VALUES (1, 2)";
    const std::string tag = fmt::format("s{}", ::getpid());

    const auto f = xarm::bench::interleaved(
        {[&](long i) {
             XID x{};
             xarm::xid(1, fmt::format("{}-{}", tag, i), "b").to_c(x);
             check(xarm_sqlite_switch.xa_start_entry(&x, rmid, TMNOFLAGS), "xa_start");
             exec(sw, insert);
             check(xarm_sqlite_switch.xa_end_entry(&x, rmid, TMSUCCESS), "xa_end");
             check(xarm_sqlite_switch.xa_commit_entry(&x, rmid, TMONEPHASE), "xa_commit");
         },
         [&](long i) {
             c.tpc_begin(c.xid(1, fmt::format("{}-c-{}", tag, i), "b"));
             c.execute(insert);
             c.tpc_commit();
         },
         [&](long) {
             exec(raw, "BEGIN");
             exec(raw, insert);
             exec(raw, "COMMIT");
         }},
        run_for, 20);
    xarm_sqlite_switch.xa_close_entry(const_cast<char*>(""), rmid, TMNOFLAGS);
    const char* labels[] = {"one-phase, xarm C switch", "one-phase, xarm C++ API",
                            "one-phase, sqlite3_exec by hand"};
    fmt::print("synchronous={}:\n", sync);
    for (std::size_t k = 0; k < f.size(); ++k)
        fmt::print("  {:<34} {:>8.0f} tx/s  p50 {:>6.0f} us  p95 {:>6.0f} us  (n={})\n", labels[k],
                   f[k].tps, f[k].p50, f[k].p95, f[k].n);
    fmt::print("  ratio switch/by hand (tx/s): {:.3f}   C++/by hand: {:.3f}\n", f[0].tps / f[2].tps,
               f[1].tps / f[2].tps);
}

}  // namespace

int main(int argc, char** argv) {
    double seconds = 2;
    std::filesystem::path dir = std::filesystem::temp_directory_path();
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--seconds")
            seconds = std::atof(argv[i + 1]);
        else if (a == "--dir")
            dir = argv[i + 1];
        else {
            fmt::print(stderr, "usage: xarm_sqlite_bench [--seconds S] [--dir DIR]\n");
            return 2;
        }
    }
    const auto run_for = std::chrono::milliseconds(static_cast<long>(seconds * 1000));
    const auto path = dir / fmt::format("xarm_sqlite_bench_{}.db", ::getpid());
    int rc = 0;
    try {
        bench(path.string(), "FULL", run_for);
        bench(path.string(), "OFF", run_for);
    } catch (const std::exception& e) {
        fmt::print(stderr, "benchmark failed: {}\n", e.what());
        rc = 1;
    }
    for (const char* suffix : {"", "-journal", "-wal", "-shm"})
        std::filesystem::remove(path.string() + suffix);
    return rc;
}
