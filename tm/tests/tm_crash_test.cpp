// Crash tests of the transaction manager with real servers: for every crash point a
// child process runs transfers and dies there (_exit 99); recovery must then leave every
// transfer on all databases or on none, nothing of this coordinator in doubt, and the
// sum of the balances unchanged. Also: a server killed between the phases, a
// connection cut mid-commit, recovery while a server is down, recovery crashed itself.
#define BOOST_TEST_MODULE xarm_tm_crash
#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "demo_transfer.hpp"
#include "scratch_pg.hpp"
#include "tm_support.hpp"
#include "xarm/tm.hpp"
#include "xarm/xa.h"
#include "xarm_testing.hpp"

namespace fs = std::filesystem;
using namespace xarm;
using xarm::testing::scratch;
using xarm::testing::short_id;
using xarm::testing::slurp;

namespace {

/// Runs the demo program; returns its exit code (or 128+signal). Output to log_file.
int run_child(const std::vector<std::string>& args, const std::string& crash_at,
              const fs::path& log_file) {
    return xarm::testing::child(XARM_TM_DEMO, args, log_file, {}, crash_at).wait();
}

struct setup_t {
    demo::demo_databases db;
    std::vector<std::string> args() const {
        std::vector<std::string> a;
        if (!db.pq.empty()) a.insert(a.end(), {"--pq", db.pq});
        if (!db.mysql.empty()) a.insert(a.end(), {"--mysql", db.mysql});
        if (!db.pq2.empty()) a.insert(a.end(), {"--pq2", db.pq2});
        if (!db.sqlite.empty()) a.insert(a.end(), {"--sqlite", db.sqlite});
        if (!db.odbc.empty()) a.insert(a.end(), {"--odbc", db.odbc});
        a.insert(a.end(), {"--log", db.log, "--coordinator", db.coordinator, "--table", db.table});
        return a;
    }
};

/// Branches of coordinator id still prepared in the databases (independent of tm).
std::size_t own_in_doubt(const demo::demo_databases& d) {
    std::size_t n = 0;
    auto count = [&](const char* drv, const std::string& info) {
        if (info.empty()) return;
        auto c = xarm::connect(drv, info);
        for (auto& x : c.tpc_recover())
            if (x.format_id() == tm::format_id && x.gtrid().starts_with(d.coordinator + ".")) ++n;
    };
    count("pq", d.pq);
    count("mysql", d.mysql);
    count("pq", d.pq2);
    return n;
}

void drop_tables(const demo::demo_databases& d) {
    auto drop = [&](const char* drv, const std::string& info) {
        if (info.empty()) return;
        try {
            auto c = xarm::connect(drv, info);
            c.execute("DROP TABLE IF EXISTS " + d.table + "_journal");
            c.execute("DROP TABLE IF EXISTS " + d.table);
            c.commit();
        } catch (const std::exception&) {
        }
    };
    drop("pq", d.pq);
    drop("mysql", d.mysql);
    drop("pq", d.pq2);
    if (d.odbc.empty()) return;
    // Virtuoso has no DROP TABLE IF EXISTS.
    try {
        auto c = xarm::connect("odbc", d.odbc);
        for (const auto& t : {d.table + "_journal", d.table}) {
            try {
                c.execute("DROP TABLE " + t);
                c.commit();
            } catch (const std::exception&) {
                c.rollback();
            }
        }
    } catch (const std::exception&) {
    }
}

/// How a transaction of the demo commits.
enum class path {
    forced_log,     // every database prepared, the decision forced to the log
    last_agent,     // one two-phase database committed in one phase with the marker
    last_resource,  // a one-phase-only database (SQLite, or db.odbc) committed last with the marker
};

/// Crash at every point that this configuration reaches, recover, check. agent: the
/// demo's --last-agent on the last-agent path ("auto", or a resource name).
void crash_every_point(setup_t s, path p, const char* agent = "auto") {
    scratch tmp;
    const std::size_t two_phase = !s.db.pq.empty() + !s.db.mysql.empty() + !s.db.pq2.empty();
    const bool marker = p != path::forced_log;
    // Every transfer writes on every database: no read-only vote.
    const std::size_t prepared = two_phase - (p == path::last_agent ? 1 : 0);
    for (const auto& [point, what] : tm::crash_points()) {
        if (point == "during_recovery") continue;  // its own test
        bool reached = true;
        if (point.starts_with("after_prepare:"))
            reached = std::stoul(point.substr(14)) <= prepared;
        else if (point.find("last_resource") != std::string::npos)
            reached = marker;
        else if (point == "before_decision" || point == "after_decision_logged")
            reached = !marker;
        BOOST_TEST_CONTEXT("crash point " << point) {
            s.db.table = short_id("xtm");
            s.db.coordinator = short_id("c");
            s.db.log = (tmp.dir / (s.db.coordinator + ".log")).string();
            if (p == path::last_resource && s.db.odbc.empty())
                s.db.sqlite = (tmp.dir / (s.db.coordinator + ".db")).string();
            const auto out = tmp.dir / (s.db.coordinator + ".out");
            auto args = s.args();
            args.insert(args.begin(), "transfer");
            auto a = args;
            a.insert(a.end(), {"--reset", "--transfers", "40", "--threads", "2", "--last-agent",
                               p == path::forced_log ? "off" : agent});
            // The 5th time the point is passed: earlier transfers finished normally.
            const int rc = run_child(a, point + "@5", out);
            BOOST_TEST(rc == (reached ? 99 : 0), "child exit " << rc << "\n" << slurp(out));

            demo::tm_recover_options ro;
            ro.db = s.db;
            std::ostringstream report;
            const int rrc = demo::tm_recover(ro, report);
            BOOST_TEST(rrc == 0, "recovery:\n" << report.str() << "child:\n" << slurp(out));
            BOOST_TEST(own_in_doubt(s.db) == 0u);
            BOOST_TEST(report.str().find("invariant holds") != std::string::npos, report.str());
            // Recovery again finds nothing to do.
            std::ostringstream again;
            BOOST_TEST(demo::tm_recover(ro, again) == 0, again.str());
            BOOST_TEST(again.str().find("0 committed, 0 rolled back") != std::string::npos,
                       again.str());
            drop_tables(s.db);
        }
    }
}

setup_t two_postgres() {
    setup_t s;
    s.db.pq = xarm::testing::server("XARM_TEST_PQ");
    s.db.pq2 = xarm::testing::server("XARM_TEST_PQ_DB2");
    return s;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(crash_points)

setup_t postgres_and_mariadb() {
    setup_t s;
    s.db.pq = xarm::testing::server("XARM_TEST_PQ");
    s.db.mysql = xarm::testing::server("XARM_TEST_MYSQL");
    return s;
}

// Two PostgreSQL databases: the second is the last agent (equal ranks, the later one),
// its marker deferred (sent with its branch's first statement).
BOOST_AUTO_TEST_CASE(every_point_two_postgresql_databases_last_agent,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"})) {
    crash_every_point(two_postgres(), path::last_agent);
}

BOOST_AUTO_TEST_CASE(every_point_two_postgresql_databases_forced_log,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"})) {
    crash_every_point(two_postgres(), path::forced_log);
}

BOOST_AUTO_TEST_CASE(every_point_postgresql_and_sqlite_last_resource,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"})) {
    crash_every_point(two_postgres(), path::last_resource);
}

// PostgreSQL and MariaDB, MariaDB named the last agent: its marker is written while
// PostgreSQL prepares (the MariaDB driver cannot defer it).
BOOST_AUTO_TEST_CASE(every_point_postgresql_and_mariadb_last_agent,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_MYSQL"})) {
    crash_every_point(postgres_and_mariadb(), path::last_agent, "mysql");
}

// PostgreSQL and MariaDB, auto: PostgreSQL (it ranks above MariaDB) is the last agent, its
// marker deferred.
BOOST_AUTO_TEST_CASE(every_point_postgresql_and_mariadb_last_agent_auto,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_MYSQL"})) {
    crash_every_point(postgres_and_mariadb(), path::last_agent);
}

BOOST_AUTO_TEST_CASE(every_point_postgresql_and_mariadb_forced_log,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_MYSQL"})) {
    crash_every_point(postgres_and_mariadb(), path::forced_log);
}

BOOST_AUTO_TEST_CASE(every_point_postgresql_mariadb_and_sqlite_last_resource,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_MYSQL"})) {
    crash_every_point(postgres_and_mariadb(), path::last_resource);
}

// Virtuoso cannot prepare through ODBC (drivers/odbc/virtuoso.cpp): it takes part as the
// one-phase last resource, its commit marker in its own table xarm_tm_marker.
setup_t postgres_and_virtuoso() {
    setup_t s = two_postgres();
    s.db.odbc = xarm::testing::server("XARM_TEST_ODBC_VIRTUOSO");
    return s;
}

BOOST_AUTO_TEST_CASE(every_point_two_postgresql_databases_and_virtuoso_last_resource,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"}) *
                         boost::unit_test::precondition(xarm::testing::needs{
                             "XARM_TEST_ODBC_VIRTUOSO"})) {
    crash_every_point(postgres_and_virtuoso(), path::last_resource);
}

// The coordinator dies just before or just after Virtuoso's one-phase commit, and the
// Virtuoso server is then killed (SIGKILL) before recovery: with it down, recovery
// decides nothing (the PostgreSQL branches stay prepared); once it is back, the marker
// that committed with the work (rolled forward from Virtuoso's transaction log) or its
// absence decides.
void virtuoso_killed_after_coordinator_crash(const std::string& point, bool committed) {
    scratch tmp;
    setup_t s = postgres_and_virtuoso();
    const std::string ctl = xarm::testing::server("XARM_DEVSERVERS");
    s.db.table = short_id("xtmv");
    s.db.coordinator = short_id("v");
    s.db.log = (tmp.dir / (s.db.coordinator + ".log")).string();
    const auto out = tmp.dir / (s.db.coordinator + ".out");
    auto args = s.args();
    args.insert(args.begin(), "transfer");
    args.insert(args.end(), {"--reset", "--transfers", "20", "--threads", "1"});
    // One thread: exactly 4 transfers finished before the one the crash interrupts.
    const int rc = run_child(args, point + "@5", out);
    BOOST_TEST(rc == 99, "child exit " << rc << "\n" << slurp(out));
    BOOST_REQUIRE(std::system((ctl + " kill virtuoso >/dev/null 2>&1").c_str()) == 0);

    demo::tm_recover_options ro;
    ro.db = s.db;
    ro.attempts = 1;
    ro.check = false;
    std::ostringstream down;
    BOOST_TEST(demo::tm_recover(ro, down) != 0, down.str());
    BOOST_TEST(own_in_doubt(s.db) == 2u, down.str());  // both PostgreSQL branches wait

    BOOST_REQUIRE(std::system((ctl + " start virtuoso >/dev/null 2>&1").c_str()) == 0);
    ro.attempts = 5;
    ro.check = true;
    std::ostringstream up;
    BOOST_TEST(demo::tm_recover(ro, up) == 0, up.str() << "child:\n" << slurp(out));
    BOOST_TEST(own_in_doubt(s.db) == 0u);
    BOOST_TEST(up.str().find("invariant holds") != std::string::npos, up.str());
    // The interrupted transfer is on every database (the marker committed) or on none.
    const auto want =
        committed ? "5 transfers on all 3 databases" : "4 transfers on all 3 databases";
    BOOST_TEST(up.str().find(want) != std::string::npos, up.str());
    drop_tables(s.db);
}

BOOST_AUTO_TEST_CASE(virtuoso_killed_before_its_last_resource_commit,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"}) *
                         boost::unit_test::precondition(xarm::testing::needs{
                             "XARM_TEST_ODBC_VIRTUOSO"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_DEVSERVERS"})) {
    virtuoso_killed_after_coordinator_crash("before_last_resource_commit", false);
}

BOOST_AUTO_TEST_CASE(virtuoso_killed_after_its_last_resource_commit,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"}) *
                         boost::unit_test::precondition(xarm::testing::needs{
                             "XARM_TEST_ODBC_VIRTUOSO"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_DEVSERVERS"})) {
    virtuoso_killed_after_coordinator_crash("after_last_resource_commit", true);
}

BOOST_AUTO_TEST_CASE(decision_log_in_postgresql_crash_after_decision,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"})) {
    scratch tmp;
    setup_t s = two_postgres();
    s.db.table = short_id("xtm");
    s.db.coordinator = short_id("c");
    s.db.log_in_pq = true;
    const auto out = tmp.dir / "t.out";
    auto a = s.args();
    a.insert(a.begin(), "transfer");
    a.insert(a.end(), {"--log-in-pq", "--reset", "--transfers", "40", "--threads", "4",
                       "--last-agent", "off"});
    for (const char* point :
         {"after_decision_logged@6", "between_commits@4", "before_decision@3"}) {
        BOOST_TEST(run_child(a, point, out) == 99, point << "\n" << slurp(out));
        demo::tm_recover_options ro;
        ro.db = s.db;
        std::ostringstream report;
        BOOST_TEST(demo::tm_recover(ro, report) == 0, point << "\n" << report.str() << slurp(out));
        BOOST_TEST(own_in_doubt(s.db) == 0u);
    }
    drop_tables(s.db);
}

BOOST_AUTO_TEST_CASE(recovery_itself_crashes_and_is_run_again,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"})) {
    scratch tmp;
    setup_t s = two_postgres();
    s.db.table = short_id("xtm");
    s.db.coordinator = short_id("c");
    s.db.log = (tmp.dir / "r.log").string();
    const auto out = tmp.dir / "r.out";
    auto a = s.args();
    a.insert(a.begin(), "transfer");
    a.insert(a.end(), {"--reset", "--transfers", "40", "--threads", "4", "--last-agent", "off"});
    BOOST_TEST(run_child(a, "after_decision_logged@6", out) == 99, slurp(out));
    BOOST_TEST(own_in_doubt(s.db) > 0u);
    auto r = s.args();
    r.insert(r.begin(), "recover");
    BOOST_TEST(run_child(r, "during_recovery", out) == 99, slurp(out));
    demo::tm_recover_options ro;
    ro.db = s.db;
    std::ostringstream report;
    BOOST_TEST(demo::tm_recover(ro, report) == 0, report.str() << slurp(out));
    BOOST_TEST(own_in_doubt(s.db) == 0u);
    drop_tables(s.db);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(failures)

namespace {
/// Wraps a resource and runs `before_commit` just before its phase-two commit.
class interposer final : public tm::resource {
  public:
    interposer(tm::resource& r, std::function<void()> f) : m_r(r), m_f(std::move(f)) {}
    std::string name() const override { return m_r.name(); }
    bool can_prepare() const override { return m_r.can_prepare(); }
    void begin(const xid& x) override { m_r.begin(x); }
    vote prepare(const xid& x) override { return m_r.prepare(x); }
    void commit(const xid& x, bool one_phase) override {
        if (m_f) m_f();
        m_r.commit(x, one_phase);
    }
    void rollback(const xid& x) override { m_r.rollback(x); }
    std::vector<xid> recover() override { return m_r.recover(); }
    void commit_recovered(const xid& x) override { m_r.commit_recovered(x); }
    void rollback_recovered(const xid& x) override { m_r.rollback_recovered(x); }

  private:
    tm::resource& m_r;
    std::function<void()> m_f;
};

long long count_rows(const std::string& info, const std::string& table) {
    auto c = xarm::connect("pq", info);
    auto r = c.query("SELECT COUNT(*) FROM " + table);
    return std::stoll(*r.rows.at(0).at(0));
}

void make_table(const std::string& info, const std::string& table) {
    auto c = xarm::connect("pq", info);
    c.execute("CREATE TABLE " + table + " (v TEXT)");
    c.commit();
}

void drop_table(const std::string& info, const std::string& table) {
    auto c = xarm::connect("pq", info);
    c.execute("DROP TABLE IF EXISTS " + table);
    c.commit();
}
}  // namespace

BOOST_AUTO_TEST_CASE(connection_cut_mid_commit_then_recovered,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"})) {
    scratch tmp;
    const std::string pq = xarm::testing::server("XARM_TEST_PQ"),
                      pq2 = xarm::testing::server("XARM_TEST_PQ_DB2");
    const std::string table = short_id("xtmcut");
    make_table(pq, table);
    make_table(pq2, table);
    const std::string id = short_id("k");
    auto factory = [&](const std::string& n) {
        return std::make_unique<tm::connection_resource>(n,
                                                         xarm::connect("pq", n == "a" ? pq : pq2));
    };
    {
        tm::coordinator c(tm::coordinator::options{id, {}, tmp.dir / "cut.log", {}, {}, {}, true});
        tm::connection_resource a("a", xarm::connect("pq", pq)), b("b", xarm::connect("pq", pq2));
        auto pid = a.conn().query("SELECT pg_backend_pid()").rows.at(0).at(0).value();
        a.conn().commit();
        auto admin = xarm::connect("pq", pq);
        interposer cut(a, [&] {
            admin.query("SELECT pg_terminate_backend(" + pid + ")");
            admin.commit();
        });
        auto t = c.begin();
        t.enlist(cut);
        t.enlist(b);
        a.conn().execute("INSERT INTO " + table + " VALUES ('x')");
        b.conn().execute("INSERT INTO " + table + " VALUES ('x')");
        t.commit();  // decided: returns, with a's branch left for recovery
        BOOST_TEST(t.unfinished().size() == 1u);
        BOOST_TEST(count_rows(pq2, table) == 1);
        BOOST_TEST(count_rows(pq, table) == 0);
        auto rep = c.recover(factory, {"a", "b"});
        BOOST_TEST(rep.committed.size() == 1u);
        BOOST_TEST(rep.complete());
    }
    BOOST_TEST(count_rows(pq, table) == 1);
    drop_table(pq, table);
    drop_table(pq2, table);
}

namespace {
/// Wraps a resource made for recovery: counts the XA_RETRY answers to commit_recovered
/// and runs `on_retry(count)` after each.
class retry_watch final : public tm::resource {
  public:
    retry_watch(std::unique_ptr<tm::resource> r, std::function<void(int)> on_retry)
        : m_r(std::move(r)), m_on_retry(std::move(on_retry)) {}
    std::string name() const override { return m_r->name(); }
    bool can_prepare() const override { return m_r->can_prepare(); }
    void begin(const xid& x) override { m_r->begin(x); }
    vote prepare(const xid& x) override { return m_r->prepare(x); }
    void commit(const xid& x, bool one_phase) override { m_r->commit(x, one_phase); }
    void rollback(const xid& x) override { m_r->rollback(x); }
    std::vector<xid> recover() override { return m_r->recover(); }
    void commit_recovered(const xid& x) override {
        try {
            m_r->commit_recovered(x);
        } catch (const xarm::error& e) {
            if (e.xa_code() == XA_RETRY) m_on_retry(++m_retries);
            throw;
        }
    }
    void rollback_recovered(const xid& x) override { m_r->rollback_recovered(x); }

  private:
    std::unique_ptr<tm::resource> m_r;
    std::function<void(int)> m_on_retry;
    int m_retries = 0;
};
}  // namespace

// A decided branch that PostgreSQL reports busy (55000: another session is still
// finishing it; here its PREPARE waits for a synchronous standby that never comes, on a
// scratch server) is retried with back-off, not reported as an error, and committed once
// the other session is done: committed, reported committed, nothing left prepared.
BOOST_AUTO_TEST_CASE(busy_branch_is_retried_until_committed,
                     *boost::unit_test::precondition(xarm::testing::can_start_postgres{})) {
    scratch tmp;
    xarm::testing::scratch_pg pg(xarm::testing::never_synchronous);
    const std::string local = pg.info() + xarm::testing::local_commit;
    make_table(local, "t");
    const std::string id = short_id("busy");
    const xid x(tm::format_id, id + ".00000000000000ab.1", "a");
    {
        // What a previous process of this coordinator decided before it died.
        tm::file_log::options lo;
        lo.create = true;
        tm::file_log log(tmp.dir / "busy.log", id, lo);
        log.force(tm::log_record{tm::log_record::kind::commit, x.gtrid(), {{"a", x.bqual()}}});
    }
    xarm::testing::busy_branch busy(pg.info(), x, "INSERT INTO t VALUES ('x')");
    int retries = 0;
    auto factory = [&](const std::string& n) -> std::unique_ptr<tm::resource> {
        return std::make_unique<retry_watch>(
            std::make_unique<tm::connection_resource>(n, xarm::connect("pq", local)), [&](int k) {
                retries = k;
                BOOST_TEST(busy.waiting());
                if (k == 2) busy.release();  // the other session finishes
            });
    };
    tm::coordinator c(tm::coordinator::options{id, {}, tmp.dir / "busy.log", {}, {}, {}});
    const auto rep = c.recover(factory, {"a"});
    BOOST_TEST(retries == 2);
    BOOST_TEST(rep.committed.size() == 1u);
    for (const auto& h : rep.heuristic) BOOST_TEST_MESSAGE("heuristic: " << h);
    for (const auto& e : rep.errors) BOOST_TEST_MESSAGE("error: " << e);
    BOOST_TEST(rep.complete());
    BOOST_TEST(count_rows(local, "t") == 1);
    BOOST_TEST(count_rows(local, "pg_prepared_xacts") == 0);
    BOOST_TEST(c.log().live().empty());
}

// The last resource's (or last agent's) connection lost while its COMMIT is under way (on
// a scratch server: the commit record is written and the session waits for a synchronous
// standby when it is terminated). The manager cannot know the outcome: in doubt, never
// "rolled back"; recovery finds the marker that committed with the work and commits the
// rest.
void lost_during_commit(bool agent) {
    scratch tmp;
    xarm::testing::scratch_pg pg(xarm::testing::never_synchronous);
    const std::string local = pg.info() + xarm::testing::local_commit;
    make_table(local, "t");
    make_table(local, "w");
    auto factory = [&](const std::string& n) {
        return std::make_unique<tm::connection_resource>(
            n, xarm::connect("pq", local),
            n == "last" && !agent ? tm::connection_resource::mode::one_phase_only
                                  : tm::connection_resource::mode::automatic);
    };
    const std::string id = short_id("lrc");
    tm::coordinator c(tm::coordinator::options{id, {}, tmp.dir / "lrc.log", {}, {}, {}, true});
    auto a = factory("a");
    auto last = factory("last");
    const std::string pid =
        last->conn().query("SELECT pg_backend_pid()::text").rows.at(0).at(0).value();
    last->conn().commit();
    auto t = c.begin();
    t.enlist(*a);
    t.enlist(*last);
    a->conn().execute("INSERT INTO t VALUES ('x')");
    last->conn().execute("INSERT INTO w VALUES ('x')");
    last->conn().execute("SET LOCAL synchronous_commit = on");  // this COMMIT waits
    auto killer = xarm::testing::terminate_in_commit(local, pid, "SyncRep");
    try {
        t.commit();
        BOOST_FAIL("a commit whose last resource was lost returned");
    } catch (const operational_error& e) {
        const std::string m = e.what();
        BOOST_TEST_MESSAGE(m);
        BOOST_TEST(e.in_doubt());
        BOOST_TEST(m.find("in doubt") != std::string::npos, m);
        BOOST_TEST(m.find("rolled back") == std::string::npos, m);
    }
    killer.join();
    BOOST_TEST((t.result() == tm::outcome::in_doubt));
    // The server did commit the last resource's work, with its marker; "a" waits prepared.
    BOOST_TEST(count_rows(local, "w") == 1);
    BOOST_TEST(count_rows(local, "t") == 0);
    BOOST_TEST(count_rows(local, "pg_prepared_xacts") == 1);
    // (both resources are in one database: each lists the prepared branch)
    const auto rep = c.recover(factory, {"a", "last"});
    for (const auto& h : rep.heuristic) BOOST_TEST_MESSAGE("heuristic: " << h);
    for (const auto& e : rep.errors) BOOST_TEST_MESSAGE("error: " << e);
    BOOST_TEST(rep.committed.size() == 1u);
    BOOST_TEST(rep.rolled_back.empty());
    BOOST_TEST(rep.complete());
    BOOST_TEST(count_rows(local, "t") == 1);
    BOOST_TEST(count_rows(local, "pg_prepared_xacts") == 0);
    BOOST_TEST(c.log().stats().forced_records == 0u);  // the marker alone decided
}

BOOST_AUTO_TEST_CASE(last_resource_lost_during_commit_is_in_doubt_and_resolved_by_its_marker,
                     *boost::unit_test::precondition(xarm::testing::can_start_postgres{})) {
    lost_during_commit(false);
}

// "last" is two-phase here: with "a" (same rank) it is the last agent, enlisted later.
BOOST_AUTO_TEST_CASE(last_agent_lost_during_commit_is_in_doubt_and_resolved_by_its_marker,
                     *boost::unit_test::precondition(xarm::testing::can_start_postgres{})) {
    lost_during_commit(true);
}

// The server of both databases killed in phase two, after the decision: by the forced
// log, or by b's marker (b is the last agent; the wrapped a is not one).
void server_killed_between_the_phases(bool agent) {
    scratch tmp;
    const std::string pq = xarm::testing::server("XARM_TEST_PQ"),
                      pq2 = xarm::testing::server("XARM_TEST_PQ_DB2");
    const std::string ctl = xarm::testing::server("XARM_DEVSERVERS");
    const std::string table = short_id("xtmkill");
    make_table(pq, table);
    make_table(pq2, table);
    const std::string id = short_id("k");
    auto factory = [&](const std::string& n) {
        return std::make_unique<tm::connection_resource>(n,
                                                         xarm::connect("pq", n == "a" ? pq : pq2));
    };
    tm::coordinator::options co{id, {}, tmp.dir / "kill.log", {}, {}, {}, true};
    co.last_agent = agent ? "auto" : "off";
    tm::coordinator c(std::move(co));
    {
        tm::connection_resource a("a", xarm::connect("pq", pq)), b("b", xarm::connect("pq", pq2));
        bool killed = false;
        interposer kill(a, [&] {
            if (!killed)
                BOOST_REQUIRE(std::system((ctl + " kill pq >/dev/null 2>&1").c_str()) == 0);
            killed = true;
        });
        auto t = c.begin();
        t.enlist(kill);
        t.enlist(b);
        a.conn().execute("INSERT INTO " + table + " VALUES ('x')");
        b.conn().execute("INSERT INTO " + table + " VALUES ('x')");
        t.commit();  // both databases live in the killed server
        BOOST_TEST(killed);
        BOOST_TEST(t.unfinished().size() >= 1u);
    }
    // Recovery while the server is down: retried, then reported, nothing decided wrongly.
    tm::recovery_options fast{2, std::chrono::milliseconds(50), std::chrono::milliseconds(100)};
    auto down = c.recover(factory, {"a", "b"}, fast);
    BOOST_TEST(!down.complete());
    BOOST_TEST(down.errors.size() >= 1u);
    // The decision is kept: in the log, or as b's marker (the log holds nothing).
    BOOST_TEST(c.log().live().size() == (agent ? 0u : 1u));
    BOOST_TEST(c.stats().last_agent == (agent ? 1u : 0u));
    BOOST_REQUIRE(std::system((ctl + " start pq >/dev/null 2>&1").c_str()) == 0);
    tm::recovery_options patient{20, std::chrono::milliseconds(200),
                                 std::chrono::milliseconds(1000)};
    auto up = c.recover(factory, {"a", "b"}, patient);
    BOOST_TEST(up.complete(), [&] {
        std::string s;
        for (auto& e : up.errors) s += e + "\n";
        return s;
    }());
    BOOST_TEST(count_rows(pq, table) == 1);
    BOOST_TEST(count_rows(pq2, table) == 1);
    BOOST_TEST(c.log().live().empty());
    drop_table(pq, table);
    drop_table(pq2, table);
}

BOOST_AUTO_TEST_CASE(server_killed_between_the_phases_then_recovered,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_DEVSERVERS"})) {
    server_killed_between_the_phases(false);
}

BOOST_AUTO_TEST_CASE(server_killed_after_the_last_agent_committed_then_recovered,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_DEVSERVERS"})) {
    server_killed_between_the_phases(true);
}

BOOST_AUTO_TEST_CASE(a_branch_rolled_back_by_an_administrator_between_the_phases,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"})) {
    scratch tmp;
    const std::string pq = xarm::testing::server("XARM_TEST_PQ"),
                      pq2 = xarm::testing::server("XARM_TEST_PQ_DB2");
    const std::string table = short_id("xtmgone");
    make_table(pq, table);
    make_table(pq2, table);
    const std::string id = short_id("g");
    tm::coordinator c(tm::coordinator::options{id, {}, tmp.dir / "gone.log", {}, {}, {}, true});
    tm::connection_resource a("a", xarm::connect("pq", pq)), b("b", xarm::connect("pq", pq2));
    auto admin = xarm::connect("pq", pq2);
    xid bx;
    interposer vanish(b, [&] { admin.tpc_rollback(bx); });
    {
        auto t = c.begin();
        t.enlist(a);
        bx = t.enlist(vanish);
        std::optional<tm::outcome> told;
        t.after_commit([&](tm::outcome o) { told = o; });
        a.conn().execute("INSERT INTO " + table + " VALUES ('x')");
        b.conn().execute("INSERT INTO " + table + " VALUES ('x')");
        BOOST_CHECK_THROW(t.commit(), heuristic_error);  // never "committed"
        BOOST_TEST((told == tm::outcome::heuristic));
    }
    BOOST_TEST(count_rows(pq, table) == 1);
    BOOST_TEST(count_rows(pq2, table) == 0);
    // Both connections are usable again: the next transaction commits on them.
    {
        auto t = c.begin();
        t.enlist(a);
        t.enlist(b);
        a.conn().execute("INSERT INTO " + table + " VALUES ('y')");
        b.conn().execute("INSERT INTO " + table + " VALUES ('y')");
        t.commit();
        BOOST_TEST((t.result() == tm::outcome::committed));
    }
    BOOST_TEST(count_rows(pq, table) == 2);
    BOOST_TEST(count_rows(pq2, table) == 1);
    drop_table(pq, table);
    drop_table(pq2, table);
}

BOOST_AUTO_TEST_CASE(a_connection_is_usable_after_any_phase_two_answer,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"})) {
    const std::string pq = xarm::testing::server("XARM_TEST_PQ");
    auto c = xarm::connect("pq", pq);
    auto admin = xarm::connect("pq", pq);
    const std::string table = short_id("xtmuse");
    make_table(pq, table);
    const std::string g = short_id("usable");
    // Gone under our feet: phase two answers XAER_NOTA...
    const auto x = connection::xid(7, g, "1");
    c.tpc_begin(x);
    c.execute("INSERT INTO " + table + " VALUES ('x')");
    c.tpc_prepare();
    admin.tpc_rollback(x);
    BOOST_CHECK_EXCEPTION(c.tpc_commit(), programming_error,
                          [](const programming_error& e) { return e.xa_code() == XAER_NOTA; });
    BOOST_TEST(c.current().is_null());
    // ...and the same connection begins and commits the next branch (XAER_PROTO before).
    const auto y = connection::xid(7, g, "2");
    c.tpc_begin(y);
    c.execute("INSERT INTO " + table + " VALUES ('y')");
    c.tpc_prepare();
    c.tpc_commit();
    BOOST_TEST(count_rows(pq, table) == 1);
    drop_table(pq, table);
}

/// A trigger makes every INSERT into the marker table fail.
void forbid_markers_pq(const std::string& info) {
    auto c = xarm::connect("pq", info);
    c.execute(
        "CREATE TABLE IF NOT EXISTS xarm_tm_marker (gtrid VARCHAR(160) NOT NULL PRIMARY KEY)");
    c.execute(
        "CREATE OR REPLACE FUNCTION xtm_no_marker() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN RAISE EXCEPTION 'markers are forbidden in this test'; END$$");
    c.execute("DROP TRIGGER IF EXISTS xtm_no_marker ON xarm_tm_marker");
    c.execute(
        "CREATE TRIGGER xtm_no_marker BEFORE INSERT ON xarm_tm_marker FOR EACH ROW EXECUTE "
        "FUNCTION xtm_no_marker()");
    c.commit();
}
void allow_markers_pq(const std::string& info) {
    auto c = xarm::connect("pq", info);
    c.execute("DROP TRIGGER IF EXISTS xtm_no_marker ON xarm_tm_marker");
    c.commit();
}

BOOST_AUTO_TEST_CASE(a_last_resource_whose_marker_fails_commits_nothing,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"})) {
    scratch tmp;
    const std::string pq = xarm::testing::server("XARM_TEST_PQ"),
                      pq2 = xarm::testing::server("XARM_TEST_PQ_DB2");
    const std::string table = short_id("xtmmark");
    make_table(pq, table);
    const std::string id = short_id("m");
    tm::coordinator c(tm::coordinator::options{id, {}, tmp.dir / "m.log", {}, {}, {}, true});

    // SQLite as the last resource: the marker and the work are one local transaction.
    {
        const auto db = (tmp.dir / "last.db").string();
        auto lite = xarm::connect("sqlite", "path=" + db);
        lite.execute("CREATE TABLE work (v TEXT)");
        lite.execute("CREATE TABLE xarm_tm_marker (gtrid VARCHAR(160) NOT NULL PRIMARY KEY)");
        lite.execute(
            "CREATE TRIGGER no_marker BEFORE INSERT ON xarm_tm_marker BEGIN SELECT "
            "RAISE(ABORT, 'markers are forbidden in this test'); END");
        lite.commit();
        tm::connection_resource last("lite", std::move(lite));
        tm::connection_resource a("a", xarm::connect("pq", pq));
        auto t = c.begin();
        t.enlist(a);
        t.enlist(last);
        a.conn().execute("INSERT INTO " + table + " VALUES ('x')");
        last.conn().execute("INSERT INTO work VALUES ('x')");
        BOOST_CHECK_THROW(t.commit(), rollback_error);
        auto check = xarm::connect("sqlite", "path=" + db);
        BOOST_TEST(*check.query("SELECT COUNT(*) FROM work").rows.at(0).at(0) == "0");
        BOOST_TEST(count_rows(pq, table) == 0);
    }
    // A server database as the last resource (PostgreSQL in one-phase-only mode).
    forbid_markers_pq(pq2);
    make_table(pq2, table);
    {
        tm::connection_resource last("pqlast", xarm::connect("pq", pq2),
                                     tm::connection_resource::mode::one_phase_only);
        tm::connection_resource a("a", xarm::connect("pq", pq));
        auto t = c.begin();
        t.enlist(a);
        t.enlist(last);
        a.conn().execute("INSERT INTO " + table + " VALUES ('x')");
        last.conn().execute("INSERT INTO " + table + " VALUES ('x')");
        BOOST_CHECK_THROW(t.commit(), rollback_error);
        BOOST_TEST(count_rows(pq, table) == 0);
        BOOST_TEST(count_rows(pq2, table) == 0);
    }
    allow_markers_pq(pq2);
    drop_table(pq, table);
    drop_table(pq2, table);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(table_log_on_postgresql)

BOOST_AUTO_TEST_CASE(decisions_in_a_table_survive_and_drive_recovery,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"})) {
    const std::string pq = xarm::testing::server("XARM_TEST_PQ"),
                      pq2 = xarm::testing::server("XARM_TEST_PQ_DB2");
    const std::string id = short_id("tl");
    const std::string table = short_id("xtmtl");
    failures::make_table(pq2, table);
    // A crashed coordinator's state: a decision in the table, a branch prepared.
    const xid x(tm::format_id, id + ".00000000000000aa.1", "1");
    {
        tm::table_log::options first_start;
        first_start.create = true;
        auto log = std::make_shared<tm::table_log>("pq", pq, id, first_start);
        log->force(tm::log_record{tm::log_record::kind::commit, x.gtrid(), {{"b", "1"}}});
        auto c = xarm::connect("pq", pq2);
        c.tpc_begin(x);
        c.execute("INSERT INTO " + table + " VALUES ('decided')");
        c.tpc_prepare();
    }
    auto log = std::make_shared<tm::table_log>("pq", pq, id);
    auto live = log->live();
    BOOST_REQUIRE(live.size() == 1u);
    BOOST_TEST(live[0].gtrid == x.gtrid());
    BOOST_TEST((live[0].branches == std::vector<std::pair<std::string, std::string>>{{"b", "1"}}));
    tm::coordinator::options co{id, log, {}, {}, {}, {}};
    co.last_agent = "off";  // every decision goes to the table
    tm::coordinator c(std::move(co));
    auto rep = c.recover(
        [&](const std::string& n) {
            return std::make_unique<tm::connection_resource>(
                n, xarm::connect("pq", n == "a" ? pq : pq2));
        },
        {"a", "b"});
    BOOST_TEST(rep.committed.size() == 1u);
    BOOST_TEST(rep.log_records_finished == 1u);
    BOOST_TEST(failures::count_rows(pq2, table) == 1);
    BOOST_TEST(log->live().empty());

    // Concurrent decisions share database commits.
    failures::make_table(pq, table);
    std::vector<std::thread> ts;
    for (int i = 0; i < 8; ++i)
        ts.emplace_back([&] {
            tm::connection_resource a("a", xarm::connect("pq", pq)),
                b("b", xarm::connect("pq", pq2));
            for (int k = 0; k < 10; ++k) {
                auto t = c.begin();
                t.enlist(a);
                t.enlist(b);
                a.conn().execute("INSERT INTO " + table + " VALUES ('t')");
                b.conn().execute("INSERT INTO " + table + " VALUES ('t')");
                t.commit();
            }
        });
    for (auto& t : ts) t.join();
    const auto st = log->stats();
    BOOST_TEST(st.forced_records == 80u);
    BOOST_TEST(st.syncs < st.forced_records);
    BOOST_TEST_MESSAGE("table log: " << st.forced_records << " decisions in " << st.syncs
                                     << " commits");
    BOOST_TEST(failures::count_rows(pq, table) == 80);
    BOOST_TEST(failures::count_rows(pq2, table) == 81);
    BOOST_TEST(log->live().empty());
    failures::drop_table(pq, table);
    failures::drop_table(pq2, table);
    auto k = xarm::connect("pq", pq);
    k.execute("DELETE FROM xarm_tm_log WHERE coordinator = '" + id + "'");
    k.commit();
}

BOOST_AUTO_TEST_SUITE_END()
