// `xarm demo sqlite` and `xarm demo transfer`: the demonstrations of the main job.
#include <cstdlib>
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "demo_sqlite.hpp"
#include "demo_transfer.hpp"

namespace xarm::cli {

namespace {
std::string env_or_empty(const char* var) {
    const char* v = std::getenv(var);
    return v ? v : "";
}
}  // namespace

void add_demo_databases(CLI::App& app, xarm::demo::demo_databases& db) {
    db.pq = env_or_empty("XARM_TEST_PQ");
    db.mysql = env_or_empty("XARM_TEST_MYSQL");
    app.add_option("--pq", db.pq, "PostgreSQL conninfo (default: $XARM_TEST_PQ)");
    app.add_option("--mysql", db.mysql, "MariaDB/MySQL info string (default: $XARM_TEST_MYSQL)");
    app.add_option("--pq2", db.pq2, "a second PostgreSQL database");
    app.add_option("--sqlite", db.sqlite, "SQLite file: the one-phase last resource");
    app.add_option("--odbc", db.odbc,
                   "an ODBC connection string, after the others (Virtuoso: a one-phase last "
                   "resource, e.g. $XARM_TEST_ODBC_VIRTUOSO)");
    app.add_option("--log", db.log,
                   "the coordinator's decision log file (required unless --log-in-pq or "
                   "--config; no default); demo transfer creates it on its first start only "
                   "(tables missing, or --reset)");
    app.add_flag("--log-in-pq", db.log_in_pq, "keep the decision log in table xarm_tm_log of --pq");
    app.add_option("--config", db.config,
                   "a coordinator configuration file (TOML): its resources are the databases, "
                   "its log and id are used");
    app.add_option("--coordinator", db.coordinator,
                   "coordinator id (1-16 of [A-Za-z0-9_-]; default: demo, or the --config file's)");
    app.add_option("--table", db.table, "account table name")->capture_default_str();
    app.add_option("--last-agent", db.last_agent,
                   "the last-agent setting: auto (default), off (prepare every database and "
                   "force the decision log), or a database's resource name (pq, mysql, pq2)");
}

void check_demo_databases(const CLI::App& app, const xarm::demo::demo_databases& db) {
    if (!db.config.empty()) {
        for (const char* opt :
             {"--pq", "--mysql", "--pq2", "--sqlite", "--odbc", "--log", "--log-in-pq"})
            if (app.get_option(opt)->count() > 0)
                throw usage_error(std::string("--config describes the databases and the log: do "
                                              "not combine it with ") +
                                  opt);
        return;
    }
    if (const auto why = xarm::demo::log_problem(db); !why.empty()) throw usage_error(why);
}

runner add_demo(CLI::App& app) {
    app.require_subcommand(1);
    auto* sqlite =
        app.add_subcommand("sqlite", "the SQLite driver through the C switch and the C++ API");
    auto path = std::make_shared<std::string>("xarm-demo.db");
    sqlite->add_option("--path", *path, "database file (recreated)")->capture_default_str();

    auto* transfer = app.add_subcommand(
        "transfer", "atomic money transfers across databases through xarm::tm, with crash points");
    auto o = std::make_shared<xarm::demo::demo_transfer_options>();
    add_demo_databases(*transfer, o->db);
    transfer
        ->add_option("--transfers", o->transfers,
                     "number of transfers (0: only start-up recovery and the check)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    transfer->add_option("--threads", o->threads, "threads running transfers")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    transfer->add_option("--accounts", o->accounts, "accounts per database")
        ->capture_default_str()
        ->check(CLI::Range(2, 100000));
    transfer->add_flag("--reset", o->reset, "drop and recreate the demo tables");
    transfer->add_option("--crash-at", o->crash_at, "crash (exit 99) at POINT or POINT@K");
    transfer->add_flag("--list-crash-points", o->list_crash_points, "list the crash points");
    transfer->add_option("--seed", o->seed, "random seed")->capture_default_str();
    transfer->footer(
        "Exit status: 0 every transfer committed or rolled back and the invariant holds;\n"
        "1 a database was lost during the run (the demo stops) or transfers stayed in doubt:\n"
        "  `xarm recover` with the same --config, or --coordinator/--log and databases,\n"
        "  finishes them once the database is back; 2 bad usage; 3 setup error (the log\n"
        "  in use or unreadable, a database unreachable at start); 4 the invariant is\n"
        "  broken; 99 a --crash-at point was reached.");

    return [sqlite, transfer, path, o]() -> int {
        if (sqlite->parsed()) return demo_sqlite(*path, std::cout);
        if (transfer->parsed()) {
            if (!o->list_crash_points) check_demo_databases(*transfer, o->db);
            return xarm::demo::demo_transfer(*o, std::cout);
        }
        return exit_usage;
    };
}

}  // namespace xarm::cli
