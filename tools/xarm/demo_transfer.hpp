// `xarm demo transfer` and `xarm recover --coordinator`: money moved between account
// tables in several databases by xarm::tm, with crash points, and the recovery that
// finishes what a crash left in doubt and checks that no money appeared or vanished.
#pragma once

#include <ostream>
#include <string>

namespace xarm::demo {

/// The databases of the demo. Empty strings are left out; at least two are needed.
struct demo_databases {
    std::string pq;                       ///< PostgreSQL conninfo (CLI default: $XARM_TEST_PQ)
    std::string mysql;                    ///< MariaDB/MySQL info (CLI default: $XARM_TEST_MYSQL)
    std::string pq2;                      ///< a second PostgreSQL database (e.g. $XARM_TEST_PQ_DB2)
    std::string sqlite;                   ///< SQLite database file: the one-phase last resource
    std::string log = "xarm-demo.tmlog";  ///< the coordinator's decision log (a file)
    /// Keep the decision log in table xarm_tm_log of the PostgreSQL database `pq`
    /// instead of the file (for coordinators on several machines).
    bool log_in_pq = false;
    std::string coordinator = "demo";         ///< coordinator id (1-16 of [A-Za-z0-9_-])
    std::string table = "xarm_demo_account";  ///< account table; journal is <table>_journal
};

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

/// Runs the transfers; prints progress and a summary to out. Returns 0 when every
/// transfer committed or rolled back and the invariant holds, 1 when it is broken,
/// 2 on a setup error (message on out). Crashing at --crash-at ends the process (99).
int demo_transfer(const demo_transfer_options& o, std::ostream& out);

struct tm_recover_options {
    demo_databases db;
    int attempts = 5;   ///< per unreachable database, with exponential back-off
    bool check = true;  ///< check the demo's invariant afterwards (when its tables exist)
};

/// Coordinator-mode recovery: reopens the log, reconnects every database, commits the
/// branches the log (or the last resource's marker) decided, rolls back the rest, and
/// prints the report. Returns 0 when nothing stays in doubt (and the check passes),
/// 1 when something is unresolved (heuristic outcome, unreachable database), 2 when
/// the invariant is broken, 3 on a setup error.
int tm_recover(const tm_recover_options& o, std::ostream& out);

}  // namespace xarm::demo
