// Recovery fences a last resource's commit marker: a dead coordinator's COMMIT of the
// marker may still be running on the server (its session waits at commit), invisible
// to a SELECT. Recovery must neither presume abort while that commit can still happen
// nor miss it once it happened. Real PostgreSQL as the last resource; the commit is
// held open by a deferred trigger that waits for an advisory lock the test holds.
#define BOOST_TEST_MODULE xarm_tm_fence
#include <chrono>
#include <future>
#include <thread>

#include <fmt/format.h>

#include "fake_resource.hpp"
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

/// The marker table with a deferred trigger that makes the COMMIT of a marker of
/// coordinator 'fence' wait for advisory lock hold_key; removed at the end.
struct held_commits {
    connection admin;
    explicit held_commits(const std::string& info) : admin(xarm::connect("pq", info)) {
        admin.execute(
            "CREATE TABLE IF NOT EXISTS xarm_tm_marker (gtrid VARCHAR(160) NOT NULL "
            "PRIMARY KEY)");
        admin.execute(fmt::format(
            "CREATE OR REPLACE FUNCTION xarm_test_hold_commit() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN IF NEW.gtrid LIKE 'fence.%' THEN PERFORM "
            "pg_advisory_xact_lock_shared({}); END IF; RETURN NULL; END $$",
            hold_key));
        admin.execute("DROP TRIGGER IF EXISTS xarm_test_hold ON xarm_tm_marker");
        admin.execute(
            "CREATE CONSTRAINT TRIGGER xarm_test_hold AFTER INSERT ON xarm_tm_marker DEFERRABLE "
            "INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION xarm_test_hold_commit()");
        admin.execute("DELETE FROM xarm_tm_marker WHERE gtrid LIKE 'fence.%'");
        admin.commit();
    }
    ~held_commits() {
        try {
            admin.rollback();
            admin.execute("DROP TRIGGER IF EXISTS xarm_test_hold ON xarm_tm_marker");
            admin.execute("DROP FUNCTION IF EXISTS xarm_test_hold_commit()");
            admin.execute("DELETE FROM xarm_tm_marker WHERE gtrid LIKE 'fence.%'");
            admin.commit();
        } catch (const std::exception&) {
        }
    }
};

/// Waits until a session waits for the advisory lock (the held COMMIT).
void wait_for_waiter(connection& c) {
    for (int i = 0; i < 500; ++i) {
        const auto n = c.query(fmt::format("SELECT count(*) FROM pg_locks WHERE locktype = "
                                           "'advisory' AND objid = {} AND NOT granted",
                                           hold_key))
                           .scalar<std::int64_t>();
        c.rollback();
        if (n > 0) return;
        std::this_thread::sleep_for(10ms);
    }
    BOOST_FAIL("the dead coordinator's COMMIT never started waiting");
}

struct scenario {
    std::string info = server("XARM_TEST_PQ");
    held_commits table{info};
    connection holder = xarm::connect("pq", info);
    connection dead = xarm::connect("pq", info);  // the dead coordinator's session
    std::shared_ptr<fake_store> other = std::make_shared<fake_store>();
    const std::string gtrid = "fence.00000000000000f1." + std::to_string(::getpid());
    const xid branch{format_id, gtrid, "2"};
    std::future<void> dead_commit;
    std::int64_t dead_pid = 0;

    scenario() {
        dead_pid = dead.query("SELECT pg_backend_pid()").scalar<std::int64_t>();
        (void)holder.query(fmt::format("SELECT pg_advisory_lock({})", hold_key));
        holder.commit();
        other->prepared.insert(branch);
        // The dead coordinator had prepared 'other' and was committing the last resource's
        // work with its marker when it died: its COMMIT is still running on the server.
        dead.execute("INSERT INTO xarm_tm_marker (gtrid) VALUES (?)", gtrid);
        dead_commit = std::async(std::launch::async, [this] { dead.commit(); });
        wait_for_waiter(holder);
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
                            connection_resource::mode::one_phase_only);
                    return std::make_unique<fake_resource>(n, other);
                },
                {"lr", "other"});
        });
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(recovery_waits_for_a_marker_commit_still_running_then_commits,
                     *utf::precondition(needs{"XARM_TEST_PQ"})) {
    scenario s;
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

BOOST_AUTO_TEST_CASE(recovery_rolls_back_once_the_marker_commit_failed,
                     *utf::precondition(needs{"XARM_TEST_PQ"})) {
    scenario s;
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
