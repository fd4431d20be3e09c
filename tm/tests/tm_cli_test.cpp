// End-to-end tests of the transaction manager through the `xarm` command, against the
// development servers, as an operator would meet the failures:
// - a decision log named by a relative path, recovered from another directory: refused
//   ("no decision log at ..."), nothing changed, as is a configuration lacking a
//   resource the log names, and the demo restarted with the wrong path (it creates a
//   log only on its first start); the right path then recovers;
// - recovery started while the coordinator runs: refused at once, naming the holder,
//   every time, and the running demo's invariant holds;
// - MariaDB killed while the demo runs with 4 threads: the demo ends with its
//   documented status (never a signal), and recovery restores the invariant.
#define BOOST_TEST_MODULE xarm_tm_cli
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "demo_transfer.hpp"
#include "tm_support.hpp"
#include "xarm/tm.hpp"
#include "xarm_testing.hpp"

namespace fs = std::filesystem;
using namespace xarm;
using xarm::testing::child;
using xarm::testing::contains;
using xarm::testing::run_xarm;
using xarm::testing::scratch;
using xarm::testing::short_id;
using xarm::testing::slurp;
using namespace std::chrono_literals;

namespace {

/// The demo's database options for xarm (the log is given separately).
std::vector<std::string> db_args(const demo::demo_databases& d) {
    std::vector<std::string> a;
    if (!d.pq.empty()) a.insert(a.end(), {"--pq", d.pq});
    if (!d.mysql.empty()) a.insert(a.end(), {"--mysql", d.mysql});
    if (!d.pq2.empty()) a.insert(a.end(), {"--pq2", d.pq2});
    if (!d.sqlite.empty()) a.insert(a.end(), {"--sqlite", d.sqlite});
    a.insert(a.end(), {"--coordinator", d.coordinator, "--table", d.table});
    return a;
}

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

/// What a recovery must not change: prepared branches of the coordinator and balances.
struct snapshot {
    std::size_t pq_prepared = 0, mysql_prepared = 0;
    std::map<std::string, std::string> sums;
    bool operator==(const snapshot&) const = default;
};

snapshot take(const demo::demo_databases& d) {
    snapshot s;
    s.pq_prepared = xarm::testing::pg_prepared_of(d.pq, d.coordinator);
    if (!d.mysql.empty())
        s.mysql_prepared = xarm::testing::mysql_prepared_of(d.mysql, d.coordinator);
    auto sum = [&](const char* drv, const std::string& info) {
        auto c = xarm::connect(drv, info);
        auto r = c.query("SELECT COALESCE(SUM(balance), 0) FROM " + d.table);
        c.rollback();
        auto j = c.query("SELECT COUNT(*) FROM " + d.table + "_journal");
        c.rollback();
        s.sums[drv] = r.rows.at(0).at(0).value_or("") + "/" + j.rows.at(0).at(0).value_or("");
    };
    sum("pq", d.pq);
    if (!d.mysql.empty()) sum("mysql", d.mysql);
    return s;
}

std::string describe(const snapshot& s) {
    std::ostringstream o;
    o << "pq prepared " << s.pq_prepared << ", mysql prepared " << s.mysql_prepared;
    for (auto& [k, v] : s.sums) o << ", " << k << " " << v;
    return o.str();
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
}

demo::demo_databases pq_and_mariadb() {
    demo::demo_databases d;
    d.pq = xarm::testing::server("XARM_TEST_PQ");
    d.mysql = xarm::testing::server("XARM_TEST_MYSQL");
    d.table = short_id("xcli");
    d.coordinator = short_id("c");
    return d;
}

void write_config(const fs::path& file, const demo::demo_databases& d, const std::string& log) {
    std::ofstream f(file);
    f << "[coordinator]\nid = \"" << d.coordinator << "\"\nlog = \"" << log << "\"\n"
      << "[resource.pq]\ndriver = \"pq\"\nopen = \"${XARM_TEST_PQ}\"\n"
      << "[resource.mysql]\ndriver = \"mysql\"\nopen = \"${XARM_TEST_MYSQL}\"\n";
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_relative_log_path_recovered_elsewhere_is_refused_and_changes_nothing,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_MYSQL"})) {
    scratch tmp;
    const auto app = tmp.dir / "app", elsewhere = tmp.dir / "elsewhere";
    fs::create_directories(app / "run");
    fs::create_directories(elsewhere / "run");
    const auto d = pq_and_mariadb();
    const auto out = tmp.dir / "out";

    // The first commit of a transfer done, the other branch still prepared (the forced-log
    // path: with a last agent, one branch commits before and one at between_commits).
    auto r = run_xarm(
        std::vector<std::string>{"demo", "transfer", "--log", "run/c.tmlog"} + db_args(d) +
            std::vector<std::string>{"--reset", "--transfers", "40", "--threads", "2",
                                     "--last-agent", "off", "--crash-at", "between_commits@2"},
        out, app);
    BOOST_REQUIRE_MESSAGE(r.code == 99, "demo exit " << r.code << "\n" << r.output);
    BOOST_REQUIRE(fs::exists(app / "run/c.tmlog"));
    const snapshot before = take(d);
    BOOST_TEST_REQUIRE(before.pq_prepared + before.mysql_prepared > 0u, describe(before));

    // The same relative path from another directory: there is no log there.
    r = run_xarm(std::vector<std::string>{"recover", "--log", "run/c.tmlog"} + db_args(d), out,
                 elsewhere);
    BOOST_TEST(r.code == 3, "recover exit " << r.code << "\n" << r.output);
    BOOST_TEST(contains(r.output, "no decision log at " + (elsewhere / "run/c.tmlog").string()),
               r.output);
    BOOST_TEST(!fs::exists(elsewhere / "run/c.tmlog"));
    // A wrong absolute path, and a configuration naming one.
    r = run_xarm(
        std::vector<std::string>{"recover", "--log", (elsewhere / "c.tmlog").string()} + db_args(d),
        out);
    BOOST_TEST(r.code == 3, r.output);
    BOOST_TEST(contains(r.output, "no decision log at " + (elsewhere / "c.tmlog").string()),
               r.output);
    const auto wrong_cfg = tmp.dir / "wrong.toml";
    write_config(wrong_cfg, d, (elsewhere / "c.tmlog").string());
    r = run_xarm({"recover", "--coordinator", d.coordinator, "--config", wrong_cfg.string()}, out,
                 elsewhere);
    BOOST_TEST(r.code == 3, r.output);
    BOOST_TEST(contains(r.output, "no decision log at " + (elsewhere / "c.tmlog").string()),
               r.output);
    // A relative path in a configuration is refused before anything is opened.
    const auto rel_cfg = tmp.dir / "relative.toml";
    write_config(rel_cfg, d, "run/c.tmlog");
    r = run_xarm({"recover", "--config", rel_cfg.string()}, out, app);
    BOOST_TEST(r.code == 3, r.output);
    BOOST_TEST(contains(r.output, "coordinator.log: 'run/c.tmlog' is a relative path"), r.output);
    // The demo mode without any log is a usage error, never a default path.
    r = run_xarm(std::vector<std::string>{"recover"} + db_args(d), out, elsewhere);
    BOOST_TEST(r.code == 2, r.output);
    BOOST_TEST(contains(r.output, "no decision log given"), r.output);

    // The demo itself restarted with the wrong path: it ran before (its tables exist), so
    // it must not start a new, empty log whose start-up recovery would presume abort.
    r = run_xarm(std::vector<std::string>{"demo", "transfer", "--log", "run/c.tmlog"} + db_args(d) +
                     std::vector<std::string>{"--transfers", "5"},
                 out, elsewhere);
    BOOST_TEST(r.code == 3, r.output);
    BOOST_TEST(contains(r.output, "no decision log at " + (elsewhere / "run/c.tmlog").string()),
               r.output);
    BOOST_TEST(contains(r.output, "its tables exist"), r.output);
    BOOST_TEST(!fs::exists(elsewhere / "run/c.tmlog"));

    // The right log, but a configuration without one of the resources it names.
    const auto partial_cfg = tmp.dir / "partial.toml";
    {
        std::ofstream f(partial_cfg);
        f << "[coordinator]\nid = \"" << d.coordinator << "\"\nlog = \""
          << (app / "run/c.tmlog").string() << "\"\n"
          << "[resource.pq]\ndriver = \"pq\"\nopen = \"${XARM_TEST_PQ}\"\n";
    }
    r = run_xarm({"recover", "--config", partial_cfg.string()}, out, elsewhere);
    BOOST_TEST(r.code == 3, r.output);
    BOOST_TEST(contains(r.output, "recovery refused"), r.output);
    BOOST_TEST(contains(r.output, "not given: 'mysql'"), r.output);

    const snapshot after = take(d);
    BOOST_TEST((after == before), "before: " << describe(before) << "\nafter: " << describe(after));

    // The right path, through a configuration, recovers; then the demo's own check.
    const auto cfg = tmp.dir / "right.toml";
    write_config(cfg, d, (app / "run/c.tmlog").string());
    r = run_xarm({"recover", "--coordinator", d.coordinator, "--config", cfg.string()}, out,
                 elsewhere);
    BOOST_TEST(r.code == 0, r.output);
    BOOST_TEST(contains(r.output, "nothing in doubt"), r.output);
    BOOST_TEST(xarm::testing::pg_prepared_of(d.pq, d.coordinator) == 0u);
    BOOST_TEST(xarm::testing::mysql_prepared_of(d.mysql, d.coordinator) == 0u);
    r = run_xarm(std::vector<std::string>{"recover", "--log", "run/c.tmlog"} + db_args(d), out,
                 app);
    BOOST_TEST(r.code == 0, r.output);
    BOOST_TEST(contains(r.output, "invariant holds"), r.output);
    drop_tables(d);
}

BOOST_AUTO_TEST_CASE(recovery_while_the_coordinator_runs_is_refused_every_time,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_MYSQL"})) {
    scratch tmp;
    auto d = pq_and_mariadb();
    const auto log = (tmp.dir / "c.tmlog").string();
    const auto cfg = tmp.dir / "c.toml";
    write_config(cfg, d, log);
    child demo(std::vector<std::string>{"demo", "transfer", "--log", log} + db_args(d) +
                   std::vector<std::string>{"--reset", "--transfers", "3000", "--threads", "4"},
               tmp.dir / "demo.out");
    BOOST_REQUIRE_MESSAGE(demo.wait_for("demo transfer: running", 60s), slurp(demo.out()));
    const std::string holder = "in use by pid " + std::to_string(demo.pid());
    for (int i = 0; i < 6; ++i) {
        BOOST_TEST_CONTEXT("attempt " << i) {
            const auto t0 = std::chrono::steady_clock::now();
            auto r = i % 2 == 0
                         ? run_xarm(std::vector<std::string>{"recover", "--log", log} + db_args(d),
                                    tmp.dir / "r.out")
                         : run_xarm({"recover", "--coordinator", d.coordinator, "--config",
                                     cfg.string()},
                                    tmp.dir / "r.out");
            const auto took = std::chrono::steady_clock::now() - t0;
            BOOST_TEST(r.code == 3, r.output);
            BOOST_TEST(contains(r.output, holder), r.output);
            BOOST_TEST(!contains(r.output, "recovery: "), r.output);
            // At once: the lock is tried before any database is touched.
            BOOST_TEST(took < 3s);
        }
    }
    BOOST_REQUIRE_MESSAGE(demo.running(),
                          "the demo ended before the recoveries were tried (raise --transfers): "
                              << slurp(demo.out()));
    const int rc = demo.wait_for_exit(300s);
    BOOST_TEST(rc == 0, "demo exit " << rc << "\n" << slurp(demo.out()));
    BOOST_TEST(contains(slurp(demo.out()), "invariant holds"), slurp(demo.out()));
    // Its log is free now: recovery runs and finds nothing to do.
    auto r = run_xarm({"recover", "--config", cfg.string()}, tmp.dir / "r.out");
    BOOST_TEST(r.code == 0, r.output);
    BOOST_TEST(contains(r.output, "recovery: 0 committed, 0 rolled back"), r.output);
    drop_tables(d);
}

namespace {
/// Starts a killed server again whatever happens to the test.
struct restart_on_exit {
    std::string ctl, server;
    ~restart_on_exit() {
        (void)std::system((ctl + " start " + server + " >/dev/null 2>&1").c_str());
    }
};
}  // namespace

BOOST_AUTO_TEST_CASE(mariadb_killed_mid_run_ends_the_demo_with_its_status_and_recovery_restores,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_MYSQL"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_DEVSERVERS"})) {
    scratch tmp;
    auto d = pq_and_mariadb();
    d.sqlite = (tmp.dir / "lr.db").string();
    const std::string ctl = xarm::testing::server("XARM_DEVSERVERS");
    const auto log = (tmp.dir / "c.tmlog").string();
    child demo(std::vector<std::string>{"demo", "transfer", "--log", log} + db_args(d) +
                   std::vector<std::string>{"--reset", "--transfers", "1000000", "--threads", "4"},
               tmp.dir / "demo.out");
    BOOST_REQUIRE_MESSAGE(demo.wait_for("demo transfer: running", 60s), slurp(demo.out()));
    std::this_thread::sleep_for(700ms);  // transfers under way on every thread
    {
        restart_on_exit guard{ctl, "mysql"};
        BOOST_REQUIRE(std::system((ctl + " kill mysql >/dev/null 2>&1").c_str()) == 0);
        const int rc = demo.wait_for_exit(120s);
        const std::string out = slurp(demo.out());
        BOOST_TEST(rc == 1, "demo exit " << rc << " (1 is documented; above 128 a signal)\n"
                                         << out);
        BOOST_TEST(contains(out, "stopped early: a database was lost during the run"), out);
        BOOST_TEST(contains(out, "xarm recover --coordinator " + d.coordinator), out);
    }  // MariaDB starts again
    auto r =
        run_xarm(std::vector<std::string>{"recover", "--log", log, "--attempts", "20"} + db_args(d),
                 tmp.dir / "r.out");
    BOOST_TEST(r.code == 0, r.output << "\ndemo:\n" << slurp(demo.out()));
    BOOST_TEST(contains(r.output, "invariant holds"), r.output);
    BOOST_TEST(xarm::testing::pg_prepared_of(d.pq, d.coordinator) == 0u);
    BOOST_TEST(xarm::testing::mysql_prepared_of(d.mysql, d.coordinator) == 0u);
    drop_tables(d);
}

// Branch mode against PostgreSQL: the listing (text and JSON) names a prepared branch
// with the server's details, --commit and --rollback finish just the branch they name,
// and a branch that is not in doubt is refused without touching the others.
BOOST_AUTO_TEST_CASE(recover_lists_and_finishes_prepared_branches_of_a_server,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"})) {
    const std::string info = std::getenv("XARM_TEST_PQ");
    scratch tmp;
    const auto out = tmp.dir / "out";
    const std::string g = short_id("xarm-cli-recover-");
    auto c = xarm::connect("pq", info);
    c.execute("CREATE TABLE IF NOT EXISTS xarm_cli_recover (v text)");
    c.commit();
    const std::vector<xid> xs{connection::xid(7, g, "a"), connection::xid(7, g, "b")};
    for (const auto& x : xs) {  // prepared, then left in doubt by closing the connection
        auto p = xarm::connect("pq", info);
        p.tpc_begin(x);
        p.execute("INSERT INTO xarm_cli_recover (v) VALUES (?)", x.bqual());
        p.tpc_prepare();
    }
    auto mine = [&](const std::string& text) {
        std::size_t n = 0;
        for (const auto& x : xs) n += contains(text, x.to_string()) ? 1 : 0;
        return n;
    };
    const std::vector<std::string> server{"recover", "--driver", "pq", "--open", info};

    auto r = run_xarm(server, out);
    BOOST_TEST(r.code == 0, r.output);
    BOOST_TEST(mine(r.output) == 2u, r.output);
    BOOST_TEST(contains(r.output, "owner"), r.output);  // the server's details

    r = run_xarm(server + std::vector<std::string>{"--json"}, out);
    BOOST_TEST(r.code == 0, r.output);
    BOOST_TEST(contains(r.output, "\"gtrid_hex\""), r.output);
    BOOST_TEST(mine(r.output) == 2u, r.output);

    // Not in doubt: refused, nothing finished.
    r = run_xarm(server + std::vector<std::string>{"--commit",
                                                   connection::xid(7, g, "z").to_string(), "--yes"},
                 out);
    BOOST_TEST(r.code == 1, r.output);
    BOOST_TEST(contains(r.output, "is not in doubt"), r.output);

    r = run_xarm(server + std::vector<std::string>{"--commit", xs[0].to_string(), "--yes"}, out);
    BOOST_TEST(r.code == 0, r.output);
    BOOST_TEST(contains(r.output, "committed " + xs[0].to_string()), r.output);

    r = run_xarm(server + std::vector<std::string>{"--rollback", xs[1].to_string(), "--yes"}, out);
    BOOST_TEST(r.code == 0, r.output);
    BOOST_TEST(contains(r.output, "rolled back " + xs[1].to_string()), r.output);

    r = run_xarm(server, out);
    BOOST_TEST(mine(r.output) == 0u, r.output);
    auto rows = c.query("SELECT v FROM xarm_cli_recover WHERE v IN ('a', 'b') ORDER BY v");
    BOOST_TEST_REQUIRE(rows.rows.size() == 1u);
    BOOST_TEST(rows.rows[0].get<std::string>(0) == "a");  // committed; b rolled back
    c.execute("DELETE FROM xarm_cli_recover");
    c.commit();
}
