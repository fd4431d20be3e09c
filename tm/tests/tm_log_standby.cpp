// The table-log tests' second process: opens the decision log of a coordinator in
// PostgreSQL (failing at once when it is owned, or standing by with --wait), then
// holds it for a while or takes the coordinator over and recovers its transactions.
//
//   xarm_tm_log_standby --log-db INFO --coordinator ID [--wait] [--timeout-ms N]
//                       [--hold-ms N] [--recover NAME=INFO]...
//
// Prints "owner" once it owns the log, then the recovery report. Exit codes: 0 done
// (recovery complete), 1 recovery left something in doubt, 3 the log was refused or the
// wait timed out (message printed), 64 bad arguments.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <thread>

#include "xarm/tm.hpp"

using namespace xarm;

int main(int argc, char** argv) {
    std::string log_db, id;
    tm::table_log::options o;
    long hold_ms = 0;
    std::map<std::string, std::string> resources;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << a << " needs a value\n";
                std::exit(64);
            }
            return argv[++i];
        };
        if (a == "--log-db") {
            log_db = val();
        } else if (a == "--coordinator") {
            id = val();
        } else if (a == "--wait") {
            o.wait_for_lock = true;
        } else if (a == "--timeout-ms") {
            o.lock_timeout = std::chrono::milliseconds(std::stol(val()));
        } else if (a == "--hold-ms") {
            hold_ms = std::stol(val());
        } else if (a == "--recover") {
            const std::string v = val();
            const auto eq = v.find('=');
            if (eq == std::string::npos) {
                std::cerr << "--recover NAME=INFO\n";
                return 64;
            }
            resources[v.substr(0, eq)] = v.substr(eq + 1);
        } else {
            std::cerr << "unknown option " << a << "\n";
            return 64;
        }
    }
    if (log_db.empty() || id.empty()) {
        std::cerr << "usage: xarm_tm_log_standby --log-db INFO --coordinator ID [--wait] "
                     "[--timeout-ms N] [--hold-ms N] [--recover NAME=INFO]...\n";
        return 64;
    }
    std::shared_ptr<tm::table_log> log;
    try {
        log = std::make_shared<tm::table_log>("pq", log_db, id, o);
    } catch (const std::exception& e) {
        std::cout << "refused: " << e.what() << std::endl;
        return 3;
    }
    std::cout << "owner pid " << ::getpid() << std::endl;
    int rc = 0;
    if (!resources.empty()) {
        try {
            tm::coordinator::options co;
            co.id = id;
            co.log = log;
            co.factory = [&](const std::string& name) -> std::unique_ptr<tm::resource> {
                auto it = resources.find(name);
                if (it == resources.end()) return nullptr;
                return std::make_unique<tm::connection_resource>(name,
                                                                 xarm::connect("pq", it->second));
            };
            for (const auto& [name, info] : resources) co.resources.push_back(name);
            tm::coordinator c(std::move(co));  // recovers at start-up: the takeover
            const auto& r = *c.startup_recovery();
            std::cout << "recovery: " << r.committed.size() << " committed, "
                      << r.rolled_back.size() << " rolled back, " << r.heuristic.size()
                      << " heuristic, " << r.errors.size() << " errors, " << r.log_records_finished
                      << " log records finished" << std::endl;
            for (const auto& h : r.heuristic) std::cout << "  HEURISTIC: " << h << "\n";
            for (const auto& e : r.errors) std::cout << "  error: " << e << "\n";
            rc = r.complete() ? 0 : 1;
        } catch (const std::exception& e) {
            std::cout << "recovery failed: " << e.what() << std::endl;
            return 1;
        }
    }
    if (hold_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
    return rc;
}
