// Recovery fences a commit marker: a dead coordinator's COMMIT of the marker may still be
// running on the server (its session waits at commit), invisible to a SELECT. Recovery
// must neither presume abort while that commit can still happen nor miss it once it
// happened. Real PostgreSQL as the last resource (one-phase-only) and as the last agent
// (a two-phase resource committed in one phase with the marker); the commit is held open
// by a deferred trigger that waits for an advisory lock the test holds. The last case
// kills a real coordinator process (SIGKILL) while its last agent's COMMIT waits, and
// recovers in another coordinator of the same id and log.
#define BOOST_TEST_MODULE xarm_tm_fence
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include <fmt/format.h>

#include "fake_resource.hpp"
#include "tm_support.hpp"
#include "xarm/connection.hpp"
#include "xarm/tm.hpp"
#include "xarm_testing.hpp"

using namespace xarm;
using namespace xarm::tm;
using namespace xarm::tm::testing;
using xarm::testing::needs;
using xarm::testing::server;
namespace utf = boost::unit_test;
using namespace std::chrono_literals;

namespace {

constexpr long hold_key = 770011;

/// The marker table with a deferred trigger that makes the COMMIT of a marker of a
/// coordinator whose id starts with 'fence' wait for advisory lock hold_key (of this
/// database); removed at the end.
struct held_commits {
    connection admin;
    explicit held_commits(const std::string& info) : admin(xarm::connect("pq", info)) {
        admin.execute(
            "CREATE TABLE IF NOT EXISTS xarm_tm_marker (gtrid VARCHAR(160) NOT NULL "
            "PRIMARY KEY)");
        admin.execute(fmt::format(
            "CREATE OR REPLACE FUNCTION xarm_test_hold_commit() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN IF NEW.gtrid LIKE 'fence%' THEN PERFORM "
            "pg_advisory_xact_lock_shared({}); END IF; RETURN NULL; END $$",
            hold_key));
        admin.execute("DROP TRIGGER IF EXISTS xarm_test_hold ON xarm_tm_marker");
        admin.execute(
            "CREATE CONSTRAINT TRIGGER xarm_test_hold AFTER INSERT ON xarm_tm_marker DEFERRABLE "
            "INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION xarm_test_hold_commit()");
        admin.execute("DELETE FROM xarm_tm_marker WHERE gtrid LIKE 'fence%'");
        admin.commit();
    }
    ~held_commits() {
        try {
            admin.rollback();
            admin.execute("DROP TRIGGER IF EXISTS xarm_test_hold ON xarm_tm_marker");
            admin.execute("DROP FUNCTION IF EXISTS xarm_test_hold_commit()");
            admin.execute("DELETE FROM xarm_tm_marker WHERE gtrid LIKE 'fence%'");
            admin.commit();
        } catch (const std::exception&) {
        }
    }
};

/// Waits until a session waits for the advisory lock (the held COMMIT); its backend pid.
std::int64_t wait_for_waiter(connection& c) {
    for (int i = 0; i < 1000; ++i) {
        const auto r =
            c.query(fmt::format("SELECT pid FROM pg_locks WHERE locktype = "
                                "'advisory' AND objid = {} AND NOT granted",
                                hold_key));
        c.rollback();
        if (!r.rows.empty()) return r.rows.at(0).get<std::int64_t>(0);
        std::this_thread::sleep_for(10ms);
    }
    BOOST_FAIL("the dead coordinator's COMMIT never started waiting");
    return 0;
}

/// As a recovery after a crash sees it: a prepared branch of resource 'other' (a fake)
/// and the marker's COMMIT still running on resource 'lr' (PostgreSQL), which recovery
/// makes one-phase-only (a last resource) or two-phase (a last agent).
struct scenario {
    bool agent;
    std::string info = server("XARM_TEST_PQ");
    held_commits table{info};
    connection holder = xarm::connect("pq", info);
    connection dead = xarm::connect("pq", info);  // the dead coordinator's session
    std::shared_ptr<fake_store> other = std::make_shared<fake_store>();
    const std::string gtrid = "fence.00000000000000f1." + std::to_string(::getpid());
    const xid branch{format_id, gtrid, "2"};
    std::future<void> dead_commit;
    std::int64_t dead_pid = 0;

    explicit scenario(bool last_agent) : agent(last_agent) {
        dead_pid = dead.query("SELECT pg_backend_pid()").scalar<std::int64_t>();
        (void)holder.query(fmt::format("SELECT pg_advisory_lock({})", hold_key));
        holder.commit();
        other->prepared.insert(branch);
        // The dead coordinator had prepared 'other' and was committing the last resource's
        // work with its marker when it died: its COMMIT is still running on the server.
        dead.execute("INSERT INTO xarm_tm_marker (gtrid) VALUES (?)", gtrid);
        dead_commit = std::async(std::launch::async, [this] { dead.commit(); });
        (void)wait_for_waiter(holder);
    }
    ~scenario() {
        try {
            (void)holder.query("SELECT pg_advisory_unlock_all()");
            holder.commit();
            if (dead_commit.valid()) dead_commit.wait();
        } catch (const std::exception&) {
        }
    }

    std::future<recovery_report> recover_async() {
        return std::async(std::launch::async, [this] {
            auto log = std::make_shared<memory_log>("fence");
            coordinator c(coordinator::options{"fence", log, {}, {}, {}, {}});
            return c.recover(
                [this](const std::string& n) -> std::unique_ptr<resource> {
                    if (n == "lr")
                        return std::make_unique<connection_resource>(
                            "lr", xarm::connect("pq", info),
                            agent ? connection_resource::mode::automatic
                                  : connection_resource::mode::one_phase_only);
                    return std::make_unique<fake_resource>(n, other);
                },
                {"lr", "other"});
        });
    }
};

}  // namespace

namespace {
void waits_then_commits(bool agent) {
    scenario s(agent);
    auto rec = s.recover_async();
    // Recovery must not decide while the marker's COMMIT can still happen.
    BOOST_TEST((rec.wait_for(700ms) == std::future_status::timeout),
               "recovery decided while the last resource's commit was still running");
    (void)s.holder.query(fmt::format("SELECT pg_advisory_unlock({})", hold_key));
    s.holder.commit();
    s.dead_commit.get();  // the marker committed
    const auto rep = rec.get();
    BOOST_TEST((rep.committed == std::vector<xid>{s.branch}));
    BOOST_TEST(rep.rolled_back.empty());
    BOOST_TEST(s.other->has_committed(s.gtrid));
}

void waits_then_rolls_back(bool agent) {
    scenario s(agent);
    auto rec = s.recover_async();
    BOOST_TEST((rec.wait_for(700ms) == std::future_status::timeout),
               "recovery decided while the last resource's commit was still running");
    // The held COMMIT fails (cancelled in its trigger): the marker never commits.
    (void)s.holder.query("SELECT pg_cancel_backend(?)", s.dead_pid);
    s.holder.commit();
    BOOST_CHECK_THROW(s.dead_commit.get(), xarm::error);
    const auto rep = rec.get();
    BOOST_TEST(rep.committed.empty());
    BOOST_TEST((rep.rolled_back == std::vector<xid>{s.branch}));
    BOOST_TEST(!s.other->has_committed(s.gtrid));
}
}  // namespace

BOOST_AUTO_TEST_CASE(recovery_waits_for_a_marker_commit_still_running_then_commits,
                     *utf::precondition(needs{"XARM_TEST_PQ"})) {
    waits_then_commits(false);
}

BOOST_AUTO_TEST_CASE(recovery_rolls_back_once_the_marker_commit_failed,
                     *utf::precondition(needs{"XARM_TEST_PQ"})) {
    waits_then_rolls_back(false);
}

// The same with the marker on a two-phase resource (a last agent): recovery reads and
// fences markers there too.
BOOST_AUTO_TEST_CASE(a_last_agents_marker_commit_still_running_is_waited_for_then_commits,
                     *utf::precondition(needs{"XARM_TEST_PQ"})) {
    waits_then_commits(true);
}

BOOST_AUTO_TEST_CASE(a_last_agents_marker_commit_that_failed_means_rollback,
                     *utf::precondition(needs{"XARM_TEST_PQ"})) {
    waits_then_rolls_back(true);
}

namespace {

long long rows_in(const std::string& info, const std::string& table) {
    auto c = xarm::connect("pq", info);
    const auto n = c.query("SELECT COUNT(*) FROM " + table).scalar<std::int64_t>();
    c.rollback();
    return n;
}

/// A real coordinator in a child process, killed with SIGKILL while its last agent's
/// COMMIT (database 2) is held open; then recovery in this process.
void killed_coordinator(bool release) {
    const std::string pq1 = server("XARM_TEST_PQ"), pq2 = server("XARM_TEST_PQ_DB2");
    const std::string id = "fencek" + std::to_string(::getpid() % 100000);
    const std::string table = "xfence_" + std::to_string(::getpid());
    const auto dir = std::filesystem::temp_directory_path() / xarm::testing::unique("xarm-fence");
    std::filesystem::create_directories(dir);
    const auto log_path = dir / "c.log";
    for (const auto& info : {pq1, pq2}) {
        auto c = xarm::connect("pq", info);
        c.execute("CREATE TABLE " + table + " (v TEXT)");
        c.commit();
    }
    held_commits table2{pq2};  // the last agent's database: its marker COMMIT waits
    connection holder = xarm::connect("pq", pq2);
    (void)holder.query(fmt::format("SELECT pg_advisory_lock({})", hold_key));
    holder.commit();

    const pid_t child = ::fork();
    if (child == 0) {
        // The coordinator: a on database 1, b on database 2, both two-phase; b, enlisted
        // later, is the last agent (equal ranks).
        int rc = 3;
        try {
            coordinator::options o;
            o.id = id;
            o.log_path = log_path;
            o.create_log = true;
            coordinator c(std::move(o));
            connection_resource a("a", xarm::connect("pq", pq1)), b("b", xarm::connect("pq", pq2));
            auto t = c.begin();
            t.enlist(a);
            t.enlist(b);
            a.conn().execute("INSERT INTO " + table + " VALUES ('x')");
            b.conn().execute("INSERT INTO " + table + " VALUES ('x')");
            t.commit();  // waits in b's COMMIT until killed
            rc = 0;
        } catch (...) {
            rc = 4;
        }
        ::_exit(rc);
    }
    BOOST_REQUIRE(child > 0);
    const std::int64_t dead_backend = wait_for_waiter(holder);
    // Database 1's branch is prepared; nothing is logged (the marker is the decision).
    BOOST_TEST(xarm::testing::pg_prepared_of(pq1, id) == 1u);
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    BOOST_TEST((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));

    auto rec = std::async(std::launch::async, [&] {
        coordinator::options o;
        o.id = id;
        o.log_path = log_path;  // the dead coordinator's log (its lock went with it)
        coordinator c(std::move(o));
        return c.recover(
            [&](const std::string& n) {
                return std::make_unique<connection_resource>(
                    n, xarm::connect("pq", n == "a" ? pq1 : pq2));
            },
            {"a", "b"});
    });
    BOOST_TEST((rec.wait_for(700ms) == std::future_status::timeout),
               "recovery decided while the killed coordinator's last-agent COMMIT still ran");
    if (release) {
        (void)holder.query(fmt::format("SELECT pg_advisory_unlock({})", hold_key));
    } else {
        (void)holder.query("SELECT pg_cancel_backend(?)", dead_backend);
    }
    holder.commit();
    const auto rep = rec.get();
    for (const auto& e : rep.errors) BOOST_TEST_MESSAGE("error: " << e);
    BOOST_TEST(rep.complete());
    BOOST_TEST(rep.committed.size() == (release ? 1u : 0u));
    BOOST_TEST(rep.rolled_back.size() == (release ? 0u : 1u));
    // All or nothing, nothing left prepared.
    BOOST_TEST(rows_in(pq1, table) == (release ? 1 : 0));
    BOOST_TEST(rows_in(pq2, table) == (release ? 1 : 0));
    BOOST_TEST(xarm::testing::pg_prepared_of(pq1, id) == 0u);
    (void)holder.query("SELECT pg_advisory_unlock_all()");
    holder.commit();
    for (const auto& info : {pq1, pq2}) {
        auto c = xarm::connect("pq", info);
        c.execute("DROP TABLE " + table);
        c.commit();
    }
    std::filesystem::remove_all(dir);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_killed_coordinators_held_last_agent_commit_then_commits,
                     *utf::precondition(needs{"XARM_TEST_PQ"}) *
                         utf::precondition(needs{"XARM_TEST_PQ_DB2"})) {
    killed_coordinator(true);
}

BOOST_AUTO_TEST_CASE(a_killed_coordinators_held_last_agent_commit_fails_then_rolls_back,
                     *utf::precondition(needs{"XARM_TEST_PQ"}) *
                         utf::precondition(needs{"XARM_TEST_PQ_DB2"})) {
    killed_coordinator(false);
}

// Finished markers are deleted a batch at a time, inside a later last agent's deferred
// marker statement (PostgreSQL: a data-modifying WITH sent with the branch's first
// statement). On a real server that statement works: every transaction commits, and of
// 2 batches + 5 transactions' markers only the last 5 are left.
BOOST_AUTO_TEST_CASE(finished_markers_are_deleted_in_batches_with_a_later_marker,
                     *utf::precondition(needs{"XARM_TEST_PQ"}) *
                         utf::precondition(needs{"XARM_TEST_PQ_DB2"})) {
    const std::string id = "mb" + std::to_string(::getpid() % 100000);
    const std::string work = "xarm_tm_batch_" + id;
    auto log = std::make_shared<memory_log>(id);
    coordinator co(coordinator::options{id, log, {}, {}, {}, {}});
    connection_resource a("a", xarm::connect("pq", server("XARM_TEST_PQ"))),
        b("b", xarm::connect("pq", server("XARM_TEST_PQ_DB2")));
    for (auto* r : {&a, &b}) {
        r->conn().execute("CREATE TABLE " + work + " (n INT)");
        r->conn().commit();
    }
    const std::size_t n = 2 * coordinator::marker_batch + 5;
    for (std::size_t i = 0; i < n; ++i) {
        auto t = co.begin();
        t.enlist(a);
        t.enlist(b);
        a.conn().execute("INSERT INTO " + work + " (n) VALUES (?)", static_cast<std::int64_t>(i));
        b.conn().execute("INSERT INTO " + work + " (n) VALUES (?)", static_cast<std::int64_t>(i));
        t.commit();
        BOOST_TEST_REQUIRE((t.result() == outcome::committed));
    }
    BOOST_TEST(co.stats().last_agent == n);
    BOOST_TEST(log->forced.empty());  // the markers decided, nothing was forced
    // The agent (PostgreSQL ranks first; a tie goes to the later) holds the markers.
    connection agent_db = xarm::connect("pq", server("XARM_TEST_PQ_DB2"));
    const auto left =
        agent_db.query("SELECT COUNT(*) FROM xarm_tm_marker WHERE gtrid LIKE ?", id + ".%")
            .rows.at(0)
            .get<std::int64_t>(0);
    agent_db.rollback();
    BOOST_TEST(left == 5);
    for (auto* r : {&a, &b}) {
        BOOST_TEST(
            r->conn().query("SELECT COUNT(*) FROM " + work).rows.at(0).get<std::int64_t>(0) ==
            static_cast<std::int64_t>(n));
        r->conn().execute("DROP TABLE " + work);
        r->conn().commit();
    }
    agent_db.execute("DELETE FROM xarm_tm_marker WHERE gtrid LIKE ?", id + ".%");
    agent_db.commit();
}
