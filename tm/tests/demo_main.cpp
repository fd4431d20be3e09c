// The crash tests' child program: the transfer demo and coordinator recovery with a
// small argument parser (the real command line is `xarm demo transfer` / `xarm recover`).
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "demo_transfer.hpp"

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr
            << "usage: xarm_tm_demo transfer|recover [--pq S] [--mysql S] [--pq2 S] [--sqlite "
               "PATH] [--odbc S]\n"
               "  [--log PATH | --log-in-pq] [--coordinator ID] [--last-agent auto|off|NAME] "
               "[--table T] [--transfers N] "
               "[--threads N]\n"
               "  [--accounts N] [--reset] [--crash-at POINT] [--list-crash-points] [--no-check]\n"
               "  [--attempts N]\n";
        return 64;
    }
    const std::string cmd = argv[1];
    xarm::demo::demo_transfer_options t;
    xarm::demo::tm_recover_options r;
    auto& db = t.db;
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << a << " needs a value\n";
                std::exit(64);
            }
            return argv[++i];
        };
        if (a == "--pq")
            db.pq = val();
        else if (a == "--mysql")
            db.mysql = val();
        else if (a == "--pq2")
            db.pq2 = val();
        else if (a == "--sqlite")
            db.sqlite = val();
        else if (a == "--odbc")
            db.odbc = val();
        else if (a == "--log")
            db.log = val();
        else if (a == "--log-in-pq")
            db.log_in_pq = true;
        else if (a == "--coordinator")
            db.coordinator = val();
        else if (a == "--last-agent")
            db.last_agent = val();
        else if (a == "--table")
            db.table = val();
        else if (a == "--transfers")
            t.transfers = std::stoi(val());
        else if (a == "--threads")
            t.threads = std::stoi(val());
        else if (a == "--accounts")
            t.accounts = std::stoi(val());
        else if (a == "--seed")
            t.seed = static_cast<unsigned>(std::stoul(val()));
        else if (a == "--reset")
            t.reset = true;
        else if (a == "--crash-at")
            t.crash_at = val();
        else if (a == "--list-crash-points")
            t.list_crash_points = true;
        else if (a == "--no-check")
            r.check = false;
        else if (a == "--attempts")
            r.attempts = std::stoi(val());
        else {
            std::cerr << "unknown option " << a << "\n";
            return 64;
        }
    }
    r.db = db;
    if (cmd == "transfer") return xarm::demo::demo_transfer(t, std::cout);
    if (cmd == "recover") {
        // Recovery itself can be crashed: XARM_CRASH_AT=during_recovery.
        return xarm::demo::tm_recover(r, std::cout);
    }
    std::cerr << "unknown command " << cmd << "\n";
    return 64;
}
