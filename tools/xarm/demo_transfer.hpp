// `xarm demo transfer` and `xarm recover --coordinator`: money moved between account
// tables in several databases by xarm::tm, with crash points, and the recovery that
// finishes what a crash left in doubt and checks that no money appeared or vanished.
#pragma once

#include <ostream>
#include <string>

namespace xarm::demo {

/// The databases of the demo and its coordinator's log: either a configuration file
/// (every configured resource takes part) or the options below.
struct demo_databases {
    std::string pq;      ///< PostgreSQL conninfo (CLI default: $XARM_TEST_PQ)
    std::string mysql;   ///< MariaDB/MySQL info (CLI default: $XARM_TEST_MYSQL)
    std::string pq2;     ///< a second PostgreSQL database (e.g. $XARM_TEST_PQ_DB2)
    std::string sqlite;  ///< SQLite database file: the one-phase last resource
    /// An ODBC connection string (resource "odbc", after the others): a database that
    /// takes part as whatever it can through ODBC; Virtuoso: a one-phase last resource.
    std::string odbc;
    /// The coordinator's decision log (a file). No default: a log found relative to
    /// whatever directory the program happens to start in is how a crash's decisions
    /// get lost. Required unless log_in_pq or config. demo_transfer creates it only on
    /// the demo's first start (its tables missing, or reset).
    std::string log;
    /// Keep the decision log in table xarm_tm_log of the PostgreSQL database `pq`
    /// instead of the file (for coordinators on several machines).
    bool log_in_pq = false;
    /// A coordinator configuration file (xarm/tm_config.hpp): resources, log and id come
    /// from it and the fields above are ignored.
    std::string config;
    /// Coordinator id (1-16 of [A-Za-z0-9_-]); empty: "demo", or the config file's id
    /// (a different one given with a config file is an error).
    std::string coordinator;
    std::string table = "xarm_demo_account";  ///< account table; journal is <table>_journal
    /// The coordinator's last_agent setting ("auto", "off", a resource name); empty: the
    /// configuration file's, or "auto".
    std::string last_agent;
};

/// Why these options cannot name a decision log (empty when they can).
std::string log_problem(const demo_databases& d);

/// Exit statuses of demo_transfer and tm_recover.
inline constexpr int exit_done = 0;        ///< everything finished (and the invariant holds)
inline constexpr int exit_unresolved = 1;  ///< something left for (another) recovery
inline constexpr int exit_setup = 3;       ///< nothing done: configuration, log, connection
inline constexpr int exit_broken = 4;      ///< the invariant is broken (a bug)

struct demo_transfer_options {
    demo_databases db;
    int transfers = 100;
    int threads = 4;
    int accounts = 10;                 ///< per database
    long long initial_balance = 1000;  ///< per account
    bool reset = false;                ///< drop and recreate the tables (else created when missing)
    std::string crash_at;              ///< a crash point, "<name>" or "<name>@<k>" (k-th hit)
    bool list_crash_points = false;    ///< print the crash points and return
    unsigned seed = 1;
};

/// Runs the transfers; prints progress and a summary to out. Once set up it prints a
/// line starting "demo transfer: running". Returns exit_done when every transfer
/// committed or rolled back and the invariant holds; exit_unresolved when a database
/// was lost during the run (the demo stops, saying so) or transfers stayed in doubt:
/// `xarm recover --coordinator` finishes them once the database is back; exit_setup
/// when it could not start (the log missing or in use, a database unreachable);
/// exit_broken when the invariant is broken. Crashing at --crash-at ends the process
/// (99). No exception leaves a worker thread.
int demo_transfer(const demo_transfer_options& o, std::ostream& out);

struct tm_recover_options {
    demo_databases db;
    int attempts = 5;   ///< per unreachable database, with exponential back-off
    bool check = true;  ///< check the demo's invariant afterwards (when its tables exist)
};

/// Coordinator-mode recovery: opens the log as configured (never creating it; a log in
/// use by a running coordinator is refused, naming it), reconnects every database,
/// commits the branches the log (or the last resource's marker) decided, rolls back the
/// rest, and prints the report with what each outcome means. Returns exit_done when
/// nothing stays in doubt (and the check passes), exit_unresolved when something is
/// unresolved (heuristic outcome, unreachable database), exit_setup on a setup error
/// (nothing changed), exit_broken when the demo's invariant is broken.
int tm_recover(const tm_recover_options& o, std::ostream& out);

/// The demo's checks over its databases: every transfer on all of them or none, the
/// sum of the balances unchanged, nothing of the coordinator prepared. Prints what it
/// finds; true when all hold. For tests.
bool check_invariant(const demo_databases& d, std::ostream& out);

}  // namespace xarm::demo
