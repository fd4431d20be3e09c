// The transaction manager's protocol, log and recovery, with fake resources (no server).
#define BOOST_TEST_MODULE xarm_tm
#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "fake_resource.hpp"
#include "sync_probe.hpp"
#include "xarm/driver/codec.hpp"
#include "xarm/tm.hpp"
#include "xarm_testing.hpp"

namespace fs = std::filesystem;
using namespace xarm;
using namespace xarm::tm;
using namespace xarm::tm::testing;

namespace {

struct temp_dir {
    fs::path path;
    temp_dir() : path(fs::temp_directory_path() / xarm::testing::unique("xarm-tm")) {
        fs::create_directories(path);
    }
    ~temp_dir() { fs::remove_all(path); }
};

struct env {
    std::shared_ptr<memory_log> log = std::make_shared<memory_log>("t1");
    coordinator coord{coordinator::options{"t1", log, {}, {}, {}, {}}};
};

std::vector<std::string> calls_of(fake_store& s) {
    std::lock_guard lk(s.mutex);
    return s.calls;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(protocol)

BOOST_AUTO_TEST_CASE(one_resource_commits_in_one_phase_without_log) {
    env e;
    auto s = std::make_shared<fake_store>();
    fake_resource r("a", s);
    auto t = e.coord.begin();
    const xid x = t.enlist(r);
    BOOST_TEST(x.format_id() == format_id);
    BOOST_TEST(e.coord.owns(x));
    t.commit();
    BOOST_TEST((calls_of(*s) == std::vector<std::string>{"begin 1", "commit1"}));
    BOOST_TEST(e.log->forced.empty());
    BOOST_TEST(s->has_committed(t.gtrid()));
    BOOST_TEST(e.coord.stats().one_phase == 1u);
    BOOST_TEST((t.result() == outcome::committed));
}

BOOST_AUTO_TEST_CASE(two_resources_log_decision_before_phase_two_then_end) {
    env e;
    auto s1 = std::make_shared<fake_store>(), s2 = std::make_shared<fake_store>();
    fake_resource a("a", s1), b("b", s2);
    auto t = e.coord.begin();
    const xid xa = t.enlist(a), xb = t.enlist(b);
    BOOST_TEST(xa.gtrid() == xb.gtrid());
    BOOST_TEST(xa.bqual() != xb.bqual());
    t.commit();
    BOOST_TEST((calls_of(*s1) == std::vector<std::string>{"begin 1", "prepare", "commit2"}));
    BOOST_TEST((calls_of(*s2) == std::vector<std::string>{"begin 2", "prepare", "commit2"}));
    BOOST_REQUIRE(e.log->forced.size() == 1u);
    BOOST_TEST(e.log->forced[0].gtrid == t.gtrid());
    BOOST_TEST(e.log->forced[0].branches.size() == 2u);
    BOOST_REQUIRE(e.log->appended.size() == 1u);
    BOOST_TEST((e.log->appended[0].type == log_record::kind::end));
    BOOST_TEST(e.log->live().empty());
    BOOST_TEST(s1->has_committed(t.gtrid()));
    BOOST_TEST(s2->has_committed(t.gtrid()));
}

BOOST_AUTO_TEST_CASE(read_only_votes_drop_out_of_phase_two) {
    env e;
    auto s1 = std::make_shared<fake_store>(), s2 = std::make_shared<fake_store>(),
         s3 = std::make_shared<fake_store>();
    fake_resource a("a", s1), b("b", s2, {.read_only = true}), c("c", s3);
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);
    t.enlist(c);
    t.commit();
    BOOST_TEST((calls_of(*s2) == std::vector<std::string>{"begin 2", "prepare"}));
    BOOST_REQUIRE(e.log->forced.size() == 1u);
    BOOST_TEST(e.log->forced[0].branches.size() == 2u);  // b is not in the record
    for (auto& br : e.log->forced[0].branches) BOOST_TEST(br.first != "b");
}

BOOST_AUTO_TEST_CASE(all_read_only_but_one_needs_no_log) {
    env e;
    auto s1 = std::make_shared<fake_store>(), s2 = std::make_shared<fake_store>();
    fake_resource a("a", s1), b("b", s2, {.read_only = true});
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);
    t.commit();
    BOOST_TEST(e.log->forced.empty());
    BOOST_TEST(s1->has_committed(t.gtrid()));
}

BOOST_AUTO_TEST_CASE(presumed_abort_writes_no_record) {
    env e;
    auto s1 = std::make_shared<fake_store>(), s2 = std::make_shared<fake_store>();
    fake_resource a("a", s1), b("b", s2, {.fail_prepare = true});
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);
    BOOST_CHECK_THROW(t.commit(), rollback_error);
    BOOST_TEST((t.result() == outcome::rolled_back));
    BOOST_TEST(e.log->forced.empty());
    BOOST_TEST(e.log->appended.empty());
    BOOST_TEST(contains(calls_of(*s1), "rollback"));
    BOOST_TEST(s1->prepared.empty());
    BOOST_TEST(!s1->has_committed(t.gtrid()));

    auto t2 = e.coord.begin();
    t2.enlist(a);
    b.opts().fail_prepare = false;
    t2.enlist(b);
    t2.rollback();
    BOOST_TEST(e.log->forced.empty());
    BOOST_TEST(!s1->has_committed(t2.gtrid()));
}

BOOST_AUTO_TEST_CASE(destroying_an_unfinished_transaction_rolls_it_back) {
    env e;
    auto s = std::make_shared<fake_store>();
    fake_resource a("a", s);
    std::string g;
    {
        auto t = e.coord.begin();
        g = t.gtrid();
        t.enlist(a);
    }
    BOOST_TEST(contains(calls_of(*s), "rollback"));
    BOOST_TEST(s->rolled_back.count(g) == 1u);
}

BOOST_AUTO_TEST_CASE(prepares_and_commits_run_in_parallel) {
    env e;
    constexpr int k = 4;
    in_flight prepares, commits;
    std::vector<std::unique_ptr<fake_resource>> rs;
    for (int i = 0; i < k; ++i)
        rs.push_back(std::make_unique<fake_resource>(
            "r" + std::to_string(i), std::make_shared<fake_store>(),
            fake_options{.prepare_sleep = std::chrono::milliseconds(100),
                         .commit_sleep = std::chrono::milliseconds(100),
                         .prepares = &prepares,
                         .commits = &commits}));
    auto t = e.coord.begin();
    for (auto& r : rs) t.enlist(*r);
    t.commit();
    // Deterministic: all K prepares were running at the same time, and all K commits.
    BOOST_TEST(prepares.max.load() == k);
    BOOST_TEST(commits.max.load() == k);
}

BOOST_AUTO_TEST_CASE(duplicate_enlist_is_refused) {
    env e;
    fake_resource a("a", std::make_shared<fake_store>());
    auto t = e.coord.begin();
    t.enlist(a);
    BOOST_CHECK_THROW(t.enlist(a), programming_error);
}

BOOST_AUTO_TEST_CASE(gtrids_are_unique_and_carry_the_identity) {
    env e;
    auto t1 = e.coord.begin(), t2 = e.coord.begin();
    BOOST_TEST(t1.gtrid() != t2.gtrid());
    BOOST_TEST(t1.gtrid().starts_with("t1."));
    BOOST_TEST(t1.gtrid().size() <= 64u);
    BOOST_CHECK_THROW(coordinator(coordinator::options{
                          "bad id!", std::make_shared<memory_log>("bad id!"), {}, {}, {}, {}}),
                      programming_error);
    coordinator other(
        coordinator::options{"t10", std::make_shared<memory_log>("t10"), {}, {}, {}, {}});
    fake_resource r("x", std::make_shared<fake_store>());
    auto t3 = other.begin();
    const xid theirs = t3.enlist(r);
    BOOST_TEST(!e.coord.owns(theirs));  // "t10." is not "t1."
    BOOST_TEST(other.owns(theirs));
}

BOOST_AUTO_TEST_CASE(decision_log_failure_leaves_the_transaction_in_doubt_not_half_done) {
    env e;
    e.log->fail = true;
    auto s1 = std::make_shared<fake_store>(), s2 = std::make_shared<fake_store>();
    fake_resource a("a", s1), b("b", s2);
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);
    try {
        t.commit();
        BOOST_FAIL("commit must fail");
    } catch (const operational_error& err) {
        BOOST_TEST(err.in_doubt());
    }
    BOOST_TEST((t.result() == outcome::in_doubt));
    BOOST_TEST(s1->prepared.size() == 1u);  // nothing committed, nothing rolled back
    BOOST_TEST(s2->prepared.size() == 1u);
    // Recovery: no record -> presumed abort, everything rolled back.
    e.log->fail = false;
    auto rep = e.coord.recover(
        [&](const std::string& n) {
            return std::make_unique<fake_resource>(n, n == "a" ? s1 : s2);
        },
        {"a", "b"});
    BOOST_TEST(rep.rolled_back.size() == 2u);
    BOOST_TEST(rep.complete());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(hooks)

BOOST_AUTO_TEST_CASE(before_commit_veto_rolls_back_and_after_commit_is_told) {
    env e;
    auto s1 = std::make_shared<fake_store>(), s2 = std::make_shared<fake_store>();
    fake_resource a("a", s1), b("b", s2);
    std::vector<std::string> seen;
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);
    t.before_commit([&] { seen.push_back("before1"); });
    t.before_commit([&] { throw std::runtime_error("no, thanks"); });
    t.after_commit([&](outcome o) { seen.push_back(std::string("after ") + to_string(o)); });
    try {
        t.commit();
        BOOST_FAIL("vetoed commit must throw");
    } catch (const rollback_error& err) {
        BOOST_TEST(std::string(err.what()).find("no, thanks") != std::string::npos);
    }
    BOOST_TEST((seen == std::vector<std::string>{"before1", "after rolled back"}));
    BOOST_TEST(!contains(calls_of(*s1), "prepare"));
    BOOST_TEST(contains(calls_of(*s1), "rollback"));
    BOOST_TEST(e.log->forced.empty());
}

BOOST_AUTO_TEST_CASE(after_commit_hooks_are_told_committed_in_order) {
    env e;
    fake_resource a("a", std::make_shared<fake_store>()), b("b", std::make_shared<fake_store>());
    std::vector<std::string> seen;
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);
    t.before_commit([&] { seen.push_back("before"); });
    t.after_commit([&](outcome o) { seen.push_back(std::string("after1 ") + to_string(o)); });
    t.after_commit([&](outcome) { throw std::runtime_error("ignored"); });
    t.after_commit([&](outcome o) { seen.push_back(std::string("after3 ") + to_string(o)); });
    t.commit();
    BOOST_TEST(
        (seen == std::vector<std::string>{"before", "after1 committed", "after3 committed"}));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(last_resource)

BOOST_AUTO_TEST_CASE(commits_after_all_prepared_with_a_marker_then_the_others) {
    env e;
    std::vector<std::string> order;
    std::mutex om;
    auto s1 = std::make_shared<fake_store>(), s2 = std::make_shared<fake_store>(),
         sl = std::make_shared<fake_store>();
    fake_resource a("a", s1, {.order = &order, .order_mutex = &om});
    fake_resource b("b", s2, {.order = &order, .order_mutex = &om});
    fake_resource l("lr", sl, {.can_prepare = false, .order = &order, .order_mutex = &om});
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(l);  // enlisted in the middle: still committed last
    t.enlist(b);
    t.commit();
    auto pos = [&](const std::string& s) {
        return std::find(order.begin(), order.end(), s) - order.begin();
    };
    BOOST_TEST(pos("lr:commit_with_marker") > pos("a:prepare"));
    BOOST_TEST(pos("lr:commit_with_marker") > pos("b:prepare"));
    BOOST_TEST(pos("lr:commit_with_marker") < pos("a:commit2"));
    BOOST_TEST(pos("lr:commit_with_marker") < pos("b:commit2"));
    BOOST_TEST(!contains(order, "lr:prepare"));
    BOOST_TEST(sl->markers.count(t.gtrid()) == 1u);
    BOOST_TEST(e.log->forced.empty());  // the marker is the decision: nothing forced
    BOOST_TEST(e.coord.stats().last_resource == 1u);

    // Later marker commits delete the finished markers in passing, once a batch waits:
    // the (batch + 1)th transaction's commit deletes the first batch.
    std::vector<std::string> gtrids{t.gtrid()};
    for (std::size_t i = 0; i < coordinator::marker_batch; ++i) {
        auto t2 = e.coord.begin();
        t2.enlist(a);
        t2.enlist(l);
        t2.commit();
        gtrids.push_back(t2.gtrid());
    }
    BOOST_TEST(sl->markers.size() == 1u);
    BOOST_TEST(sl->markers.count(gtrids.back()) == 1u);
    BOOST_TEST(e.log->forced.empty());
}

BOOST_AUTO_TEST_CASE(a_second_one_phase_resource_is_refused_at_enlist) {
    env e;
    fake_resource l1("l1", std::make_shared<fake_store>(), {.can_prepare = false});
    fake_resource l2("l2", std::make_shared<fake_store>(), {.can_prepare = false});
    auto t = e.coord.begin();
    t.enlist(l1);
    try {
        t.enlist(l2);
        BOOST_FAIL("second last resource must be refused");
    } catch (const programming_error& err) {
        BOOST_TEST(std::string(err.what()).find("at most one") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(last_resource_refusal_rolls_the_others_back) {
    env e;
    auto s1 = std::make_shared<fake_store>(), sl = std::make_shared<fake_store>();
    fake_resource a("a", s1), l("lr", sl, {.can_prepare = false, .fail_prepare = true});
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(l);
    BOOST_CHECK_THROW(t.commit(), rollback_error);
    BOOST_TEST(s1->prepared.empty());
    BOOST_TEST(s1->rolled_back.count(t.gtrid()) == 1u);
    BOOST_TEST(e.log->forced.empty());
}

BOOST_AUTO_TEST_CASE(blind_spot_closed_by_the_marker) {
    // The last resource commits and then the connection drops before the answer: the
    // coordinator cannot know; recovery finds the marker and commits the others.
    env e;
    auto s1 = std::make_shared<fake_store>(), sl = std::make_shared<fake_store>();
    fake_resource a("a", s1),
        l("lr", sl,
          {.can_prepare = false, .lose_connection_at_commit = true, .commit_before_losing = true});
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(l);
    try {
        t.commit();
        BOOST_FAIL("must report in doubt");
    } catch (const operational_error& err) {
        BOOST_TEST(err.in_doubt());
    }
    BOOST_TEST(s1->prepared.size() == 1u);
    auto make = [&](const std::string& n) {
        return std::make_unique<fake_resource>(n, n == "a" ? s1 : sl,
                                               fake_options{.can_prepare = n == "a"});
    };
    auto rep = e.coord.recover(make, {"a", "lr"});
    BOOST_TEST(rep.committed.size() == 1u);
    BOOST_TEST(s1->has_committed(t.gtrid()));
    BOOST_TEST(rep.markers_deleted == 1u);
    BOOST_TEST(sl->markers.empty());

    // Same failure before the commit happened: no marker, recovery rolls back.
    auto t2 = e.coord.begin();
    l.opts().commit_before_losing = false;
    t2.enlist(a);
    t2.enlist(l);
    BOOST_CHECK_THROW(t2.commit(), operational_error);
    auto rep2 = e.coord.recover(make, {"a", "lr"});
    BOOST_TEST(rep2.rolled_back.size() == 1u);
    BOOST_TEST(!s1->has_committed(t2.gtrid()));
    BOOST_TEST(s1->prepared.empty());
}

BOOST_AUTO_TEST_CASE(last_resource_with_only_read_only_others_needs_no_marker) {
    env e;
    auto sl = std::make_shared<fake_store>();
    fake_resource a("a", std::make_shared<fake_store>(), {.read_only = true}),
        l("lr", sl, {.can_prepare = false});
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(l);
    t.commit();
    BOOST_TEST(sl->markers.empty());
    BOOST_TEST(contains(calls_of(*sl), "commit1"));
    BOOST_TEST(e.log->forced.empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(last_agent)

namespace {
struct agents {
    std::vector<std::string> order;
    std::mutex om;
    std::shared_ptr<fake_store> s1 = std::make_shared<fake_store>(),
                                s2 = std::make_shared<fake_store>(),
                                s3 = std::make_shared<fake_store>();
    fake_options opts(int rank) {
        return fake_options{.agent_rank = rank, .order = &order, .order_mutex = &om};
    }
    std::ptrdiff_t pos(const std::string& s) {
        std::lock_guard lk(om);
        return std::find(order.begin(), order.end(), s) - order.begin();
    }
    bool saw(const std::string& s) {
        std::lock_guard lk(om);
        return contains(order, s);
    }
    std::unique_ptr<fake_resource> make(const std::string& n, fake_options o = {}) {
        return std::make_unique<fake_resource>(n, n == "a" ? s1 : n == "b" ? s2 : s3, o);
    }
};
}  // namespace

BOOST_AUTO_TEST_CASE(the_last_agent_is_not_prepared_and_nothing_is_forced) {
    env e;
    agents g;
    fake_resource a("a", g.s1, g.opts(0)), b("b", g.s2, g.opts(1)), c("c", g.s3, g.opts(0));
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);  // the only one that can be the last agent
    t.enlist(c);
    t.commit();
    BOOST_TEST((t.result() == outcome::committed));
    BOOST_TEST(!g.saw("b:prepare"));
    // The marker is written while the others prepare, committed with b's one-phase
    // commit after every vote, and the others are committed after it.
    BOOST_TEST(g.saw("b:write_marker"));
    BOOST_TEST(g.pos("b:commit1") > g.pos("a:prepare"));
    BOOST_TEST(g.pos("b:commit1") > g.pos("c:prepare"));
    BOOST_TEST(g.pos("b:commit1") > g.pos("b:write_marker"));
    BOOST_TEST(g.pos("b:commit1") < g.pos("a:commit2"));
    BOOST_TEST(g.pos("b:commit1") < g.pos("c:commit2"));
    BOOST_TEST(e.log->forced.empty());
    BOOST_TEST(e.log->appended.empty());
    BOOST_TEST(g.s2->markers.count(t.gtrid()) == 1u);
    BOOST_TEST(g.s1->has_committed(t.gtrid()));
    BOOST_TEST(g.s3->has_committed(t.gtrid()));
    BOOST_TEST(e.coord.stats().last_agent == 1u);
    BOOST_TEST(e.coord.stats().two_phase == 0u);
}

BOOST_AUTO_TEST_CASE(the_highest_rank_wins_and_the_later_enlisted_on_a_tie) {
    env e;
    agents g;
    fake_resource a("a", g.s1, g.opts(2)), b("b", g.s2, g.opts(1)), c("c", g.s3, g.opts(2));
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);
    t.enlist(c);
    t.commit();
    BOOST_TEST(g.saw("a:prepare"));
    BOOST_TEST(g.saw("b:prepare"));
    BOOST_TEST(!g.saw("c:prepare"));
    BOOST_TEST(g.s3->markers.count(t.gtrid()) == 1u);
}

BOOST_AUTO_TEST_CASE(off_forces_the_log_and_a_name_picks_that_resource_only) {
    agents g;
    {
        auto log = std::make_shared<memory_log>("lo");
        coordinator::options o{"lo", log, {}, {}, {}, {}};
        o.last_agent = "off";
        coordinator c(std::move(o));
        fake_resource a("a", g.s1, g.opts(1)), b("b", g.s2, g.opts(1));
        auto t = c.begin();
        t.enlist(a);
        t.enlist(b);
        t.commit();
        BOOST_TEST(log->forced.size() == 1u);
        BOOST_TEST(g.s1->markers.empty());
        BOOST_TEST(g.s2->markers.empty());
        BOOST_TEST(c.stats().two_phase == 1u);
        BOOST_TEST(c.stats().last_agent == 0u);
    }
    {
        auto log = std::make_shared<memory_log>("ln");
        coordinator::options o{"ln", log, {}, {}, {}, {}};
        o.last_agent = "a";  // not the better-ranked b
        coordinator c(std::move(o));
        fake_resource a("a", g.s1, g.opts(1)), b("b", g.s2, g.opts(2));
        auto t = c.begin();
        t.enlist(a);
        t.enlist(b);
        t.commit();
        BOOST_TEST(log->forced.empty());
        BOOST_TEST(g.s1->markers.count(t.gtrid()) == 1u);
        // Named but not enlisted: the forced log.
        fake_resource d("d", std::make_shared<fake_store>(), g.opts(2));
        auto t2 = c.begin();
        t2.enlist(b);
        t2.enlist(d);
        t2.commit();
        BOOST_TEST(log->forced.size() == 1u);
    }
}

BOOST_AUTO_TEST_CASE(a_marker_that_cannot_be_written_rolls_everything_back) {
    env e;
    agents g;
    fake_resource a("a", g.s1, g.opts(0)), b("b", g.s2, g.opts(1));
    b.opts().fail_marker = true;
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);
    try {
        t.commit();
        BOOST_FAIL("must roll back");
    } catch (const rollback_error& err) {
        BOOST_TEST(std::string(err.what()).find("last agent 'b'") != std::string::npos, err.what());
    }
    BOOST_TEST((t.result() == outcome::rolled_back));
    BOOST_TEST(g.s1->prepared.empty());
    BOOST_TEST(g.s1->rolled_back.count(t.gtrid()) == 1u);
    BOOST_TEST(g.s2->rolled_back.count(t.gtrid()) == 1u);
    BOOST_TEST(!g.s2->has_committed(t.gtrid()));
    BOOST_TEST(e.log->forced.empty());
}

BOOST_AUTO_TEST_CASE(a_refused_agent_commit_rolls_the_others_back) {
    env e;
    agents g;
    fake_resource a("a", g.s1, g.opts(0)), b("b", g.s2, g.opts(1));
    b.opts().on_commit = [] { raise(XA_RBDEADLOCK, "40P01", "fake: deadlock at commit"); };
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);
    BOOST_CHECK_THROW(t.commit(), rollback_error);
    BOOST_TEST(g.s1->prepared.empty());
    BOOST_TEST(g.s1->rolled_back.count(t.gtrid()) == 1u);
    BOOST_TEST(g.s2->markers.empty());
}

BOOST_AUTO_TEST_CASE(an_unknown_agent_outcome_is_in_doubt_and_recovery_decides_from_the_marker) {
    env e;
    agents g;
    fake_resource a("a", g.s1, g.opts(0)), b("b", g.s2, g.opts(1));
    b.opts().lose_connection_at_commit = true;
    b.opts().commit_before_losing = true;  // committed, then the answer was lost
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);
    try {
        t.commit();
        BOOST_FAIL("must report in doubt");
    } catch (const operational_error& err) {
        BOOST_TEST(err.in_doubt());
        BOOST_TEST(std::string(err.what()).find("in doubt") != std::string::npos, err.what());
    }
    BOOST_TEST((t.result() == outcome::in_doubt));
    BOOST_TEST(g.s1->prepared.size() == 1u);  // left prepared, never guessed
    auto make = [&](const std::string& n) { return g.make(n, fake_options{.agent_rank = 1}); };
    auto rep = e.coord.recover(make, {"a", "b"});
    BOOST_TEST(rep.committed.size() == 1u);
    BOOST_TEST(g.s1->has_committed(t.gtrid()));
    BOOST_TEST(rep.markers_deleted == 1u);
    BOOST_TEST(g.s2->markers.empty());
    BOOST_TEST(rep.complete());

    // Lost before the commit happened: no marker, recovery rolls the others back.
    b.opts().commit_before_losing = false;
    auto t2 = e.coord.begin();
    t2.enlist(a);
    t2.enlist(b);
    BOOST_CHECK_THROW(t2.commit(), operational_error);
    BOOST_TEST(g.s1->prepared.size() == 1u);
    auto rep2 = e.coord.recover(make, {"a", "b"});
    BOOST_TEST(rep2.rolled_back.size() == 1u);
    BOOST_TEST(!g.s1->has_committed(t2.gtrid()));
    BOOST_TEST(g.s1->prepared.empty());
}

BOOST_AUTO_TEST_CASE(recovery_that_cannot_read_an_agents_markers_decides_only_the_logged) {
    auto log = std::make_shared<memory_log>("rm");
    auto s = std::make_shared<fake_store>();
    coordinator c(coordinator::options{"rm", log, {}, {}, {}, {}});
    const xid logged(format_id, "rm.0000000000000001.1", "1");
    const xid unlogged(format_id, "rm.0000000000000001.2", "1");
    s->prepared = {logged, unlogged};
    log->force(log_record{log_record::kind::commit, logged.gtrid(), {{"db", "1"}}});
    // "agent" keeps markers but cannot be read now.
    class unreadable final : public resource {
      public:
        std::string name() const override { return "agent"; }
        bool can_prepare() const override { return true; }
        void begin(const xid&) override {}
        vote prepare(const xid&) override { return vote::ok; }
        void commit(const xid&, bool) override {}
        void rollback(const xid&) override {}
        std::vector<xid> recover() override { return {}; }
        void commit_recovered(const xid&) override {}
        void rollback_recovered(const xid&) override {}
        std::vector<std::string> markers(const std::string&) override {
            raise(XAER_RMERR, "42501", "permission denied for table xarm_tm_marker");
        }
    };
    auto rep = c.recover(
        [&](const std::string& n) -> std::unique_ptr<resource> {
            if (n == "agent") return std::make_unique<unreadable>();
            return std::make_unique<fake_resource>(n, s);
        },
        {"db", "agent"});
    BOOST_TEST((rep.committed == std::vector<xid>{logged}));
    BOOST_TEST(rep.rolled_back.empty());  // could have a marker there: not guessed
    BOOST_TEST(s->prepared.count(unlogged) == 1u);
    BOOST_TEST(!rep.complete());
    BOOST_TEST(rep.errors.size() == 1u);
}

BOOST_AUTO_TEST_CASE(read_only_others_leave_the_agent_alone_to_decide) {
    env e;
    agents g;
    fake_resource a("a", g.s1, {.read_only = true}), b("b", g.s2, g.opts(1));
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);
    t.commit();
    BOOST_TEST((t.result() == outcome::committed));
    BOOST_TEST(g.s2->has_committed(t.gtrid()));
    BOOST_TEST(e.log->forced.empty());
    BOOST_TEST(e.coord.stats().last_agent == 1u);
}

BOOST_AUTO_TEST_CASE(a_marker_stays_while_a_branch_it_decided_is_unfinished) {
    env e;
    agents g;
    fake_resource a("a", g.s1, {.lose_connection_at_commit = true}), b("b", g.s2, g.opts(1));
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);
    t.commit();  // decided by b's marker; a lost its connection in phase two
    BOOST_TEST(t.unfinished().size() == 1u);
    BOOST_TEST(g.s2->markers.count(t.gtrid()) == 1u);
    // More than a batch of transactions through b: their finished markers are deleted
    // in passing, never t's, which recovery still needs.
    a.opts().lose_connection_at_commit = false;
    const std::size_t more = coordinator::marker_batch + 4;
    for (std::size_t i = 0; i < more; ++i) {
        auto t2 = e.coord.begin();
        t2.enlist(a);
        t2.enlist(b);
        t2.commit();
    }
    BOOST_TEST(g.s2->markers.count(t.gtrid()) == 1u);
    BOOST_TEST(g.s2->markers.size() < more + 1);
    auto rep = e.coord.recover([&](const std::string& n) { return g.make(n); }, {"a", "b"});
    BOOST_TEST(rep.committed.size() == 1u);
    BOOST_TEST(g.s1->has_committed(t.gtrid()));
    BOOST_TEST(g.s2->markers.empty());  // every marker of finished work is gone
    BOOST_TEST(rep.complete());
}

// Resource a, and b that defers its marker (as pq): b is the last agent.
struct deferring_agent {
    env e;
    agents g;
    fake_options ob = [this] {
        auto o = g.opts(1);
        o.can_defer = true;
        return o;
    }();
    fake_resource a{"a", g.s1, g.opts(0)};
    fake_resource b{"b", g.s2, ob};
};

// A resource that can queue its marker with its branch's work (pq): no marker step
// while the others prepare, and the branch is never prepared.
BOOST_FIXTURE_TEST_CASE(a_deferred_marker_needs_no_step_of_its_own, deferring_agent) {
    auto t = e.coord.begin();
    t.enlist(a);
    t.enlist(b);
    BOOST_TEST(g.saw("b:defer_marker"));  // at enlistment, before any work
    t.commit();
    BOOST_TEST((t.result() == outcome::committed));
    BOOST_TEST(!g.saw("b:write_marker"));
    BOOST_TEST(!g.saw("b:prepare"));
    BOOST_TEST(g.pos("b:commit1") > g.pos("a:prepare"));
    BOOST_TEST(g.pos("b:commit1") < g.pos("a:commit2"));
    BOOST_TEST(g.s2->markers.count(t.gtrid()) == 1u);
    BOOST_TEST(e.log->forced.empty());
    BOOST_TEST(e.coord.stats().last_agent == 1u);
    // One resource alone commits in one phase: no marker queued at all.
    auto t1 = e.coord.begin();
    t1.enlist(b);
    t1.commit();
    BOOST_TEST(g.s2->markers.count(t1.gtrid()) == 0u);
}

BOOST_AUTO_TEST_CASE(a_deferred_marker_moves_to_a_better_agent_only_while_unsent) {
    env e;
    agents g;
    auto o1 = g.opts(1);
    o1.can_defer = true;
    auto o2 = g.opts(2);
    o2.can_defer = true;
    {
        // Ties: the later enlisted, the earlier's queued marker withdrawn.
        fake_resource a("a", g.s1, o1), b("b", g.s2, o1), c("c", g.s3, o2);
        auto t = e.coord.begin();
        t.enlist(a);
        t.enlist(b);
        BOOST_TEST(g.saw("b:defer_marker"));
        t.enlist(c);  // a better rank: b's marker moves to c
        BOOST_TEST(g.saw("b:withdraw_marker"));
        BOOST_TEST(g.saw("c:defer_marker"));
        t.commit();
        BOOST_TEST(!g.saw("c:prepare"));
        BOOST_TEST(g.saw("a:prepare"));
        BOOST_TEST(g.saw("b:prepare"));
        BOOST_TEST(!g.saw("a:prepare holding a marker"));
        BOOST_TEST(!g.saw("b:prepare holding a marker"));
        BOOST_TEST(g.s3->markers.count(t.gtrid()) == 1u);
        BOOST_TEST(g.s2->markers.empty());
        BOOST_TEST(g.s1->has_committed(t.gtrid()));
        BOOST_TEST(g.s2->has_committed(t.gtrid()));
    }
    {
        // b's marker went out with its work: b stays the agent, c (better) is prepared.
        g.order.clear();
        auto sent = o1;
        sent.marker_sent = true;
        fake_resource a("a", g.s1, o1), b("b", g.s2, sent), c("c", g.s3, o2);
        auto t = e.coord.begin();
        t.enlist(a);
        t.enlist(b);
        t.enlist(c);
        BOOST_TEST(!g.saw("c:defer_marker"));
        t.commit();
        BOOST_TEST((t.result() == outcome::committed));
        BOOST_TEST(!g.saw("b:prepare"));
        BOOST_TEST(g.saw("c:prepare"));
        BOOST_TEST(!g.saw("c:prepare holding a marker"));
        BOOST_TEST(g.s2->markers.count(t.gtrid()) == 1u);
        BOOST_TEST(g.s3->has_committed(t.gtrid()));
    }
}

BOOST_AUTO_TEST_CASE(a_one_phase_only_resource_after_a_sent_marker_is_refused) {
    env e;
    agents g;
    auto ob = g.opts(1);
    ob.can_defer = true;
    {
        // Withdrawn while unsent: the one-phase-only resource is the last resource.
        fake_resource a("a", g.s1, g.opts(1)), b("b", g.s2, ob),
            c("c", g.s3, {.can_prepare = false});
        auto t = e.coord.begin();
        t.enlist(a);
        t.enlist(b);
        t.enlist(c);
        BOOST_TEST(g.saw("b:withdraw_marker"));
        t.commit();
        BOOST_TEST(!g.saw("b:prepare holding a marker"));
        BOOST_TEST(g.s3->markers.count(t.gtrid()) == 1u);
        BOOST_TEST(e.coord.stats().last_resource == 1u);
    }
    {
        g.order.clear();
        ob.marker_sent = true;
        fake_resource a("a", g.s1, g.opts(1)), b("b", g.s2, ob),
            c("c", g.s3, {.can_prepare = false});
        auto t = e.coord.begin();
        t.enlist(a);
        t.enlist(b);
        BOOST_CHECK_THROW(t.enlist(c), xarm::programming_error);
        t.commit();  // still a transaction of a and b, b the last agent
        BOOST_TEST((t.result() == outcome::committed));
        BOOST_TEST(!g.saw("b:prepare"));
        BOOST_TEST(g.s2->markers.count(t.gtrid()) == 1u);
    }
}

// Finished markers are deleted in the deferred agent's branch, with its deferred marker
// (no step of their own at commit).
BOOST_FIXTURE_TEST_CASE(a_deferred_agent_deletes_finished_markers_in_its_branch, deferring_agent) {
    const int n = static_cast<int>(coordinator::marker_batch) * 5 / 2;
    for (int i = 0; i < n; ++i) {
        auto t = e.coord.begin();
        t.enlist(a);
        t.enlist(b);
        t.commit();
    }
    BOOST_TEST(g.saw("b:defer_marker+delete"));
    BOOST_TEST(!g.saw("b:write_marker"));
    BOOST_TEST(g.s2->markers.size() < static_cast<std::size_t>(n));
    BOOST_TEST(g.s2->markers.size() >= 1u);
}

// The finished markers whose deletion went with a deferred marker are not lost when that
// transaction rolls back: the next deferred marker deletes them.
BOOST_FIXTURE_TEST_CASE(finished_markers_of_a_rolled_back_deferred_agent_are_deleted_later,
                        deferring_agent) {
    auto run = [&](bool commit) {
        auto t = e.coord.begin();
        t.enlist(a);
        t.enlist(b);
        if (commit)
            t.commit();
        else
            t.rollback();
    };
    const std::size_t batch = coordinator::marker_batch;
    for (std::size_t i = 0; i < batch; ++i) run(true);  // a batch of finished markers
    BOOST_TEST(g.s2->markers.size() == batch);
    BOOST_TEST(!g.saw("b:defer_marker+delete"));
    run(false);  // takes the batch into its deferred statement, then rolls back
    BOOST_TEST(g.saw("b:defer_marker+delete"));
    BOOST_TEST(g.s2->markers.size() == batch);
    run(true);  // gets the batch back and deletes it with its own marker
    BOOST_TEST(g.s2->markers.size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(recovery)

BOOST_AUTO_TEST_CASE(commits_logged_rolls_back_unlogged_and_leaves_others_alone) {
    auto log = std::make_shared<memory_log>("rc");
    auto s = std::make_shared<fake_store>();
    coordinator c(coordinator::options{"rc", log, {}, {}, {}, {}});
    // A decided transaction (commit record) and an undecided one, both prepared.
    const xid decided(format_id, "rc.0000000000000001.1", "1");
    const xid undecided(format_id, "rc.0000000000000001.2", "1");
    const xid other_coord(format_id, "rc2.0000000000000001.1", "1");
    const xid other_format(4242, "rc.0000000000000001.3", "1");
    s->prepared = {decided, undecided, other_coord, other_format, xid::unparsed("hand-made")};
    log->force(log_record{log_record::kind::commit, decided.gtrid(), {{"db", "1"}}});
    auto rep = c.recover(
        [&](const std::string& n) { return std::make_unique<fake_resource>(n, s); }, {"db"});
    BOOST_TEST((rep.committed == std::vector<xid>{decided}));
    BOOST_TEST((rep.rolled_back == std::vector<xid>{undecided}));
    BOOST_TEST(rep.foreign_left_alone == 3u);
    BOOST_TEST(s->prepared.count(other_coord) == 1u);
    BOOST_TEST(s->prepared.count(other_format) == 1u);
    BOOST_TEST(s->prepared.size() == 3u);
    BOOST_TEST(rep.log_records_finished == 1u);
    BOOST_TEST(log->live().empty());
    BOOST_TEST(rep.complete());
}

BOOST_AUTO_TEST_CASE(heuristic_outcomes_are_reported) {
    auto log = std::make_shared<memory_log>("rh");
    auto s = std::make_shared<fake_store>();
    coordinator c(coordinator::options{"rh", log, {}, {}, {}, {}});
    const xid x(format_id, "rh.0000000000000001.1", "1");
    s->prepared = {x};
    log->force(log_record{log_record::kind::commit, x.gtrid(), {{"db", "1"}}});
    auto rep = c.recover(
        [&](const std::string& n) {
            return std::make_unique<fake_resource>(n, s, fake_options{.heuristic_at_commit = true});
        },
        {"db"});
    BOOST_TEST(rep.heuristic.size() == 1u);
    BOOST_TEST(!rep.complete());
    BOOST_TEST(log->live().size() == 1u);  // not closed: someone must look
}

BOOST_AUTO_TEST_CASE(unreachable_resource_is_retried_with_backoff_then_reported) {
    auto log = std::make_shared<memory_log>("ru");
    auto s = std::make_shared<fake_store>();
    coordinator c(coordinator::options{"ru", log, {}, {}, {}, {}});
    const xid x(format_id, "ru.0000000000000001.1", "1");
    s->prepared = {x};
    int calls = 0;
    auto flaky = [&](const std::string& n) -> std::unique_ptr<resource> {
        if (++calls < 3) raise(XAER_RMERR, "08001", "cannot connect");
        return std::make_unique<fake_resource>(n, s);
    };
    const recovery_options fast{5, std::chrono::milliseconds(5), std::chrono::milliseconds(20)};
    auto t0 = std::chrono::steady_clock::now();
    auto rep = c.recover(flaky, {"db"}, fast);
    BOOST_TEST(calls == 3);
    BOOST_TEST((std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(15)));  // 5 + 10
    BOOST_TEST(rep.rolled_back.size() == 1u);
    BOOST_TEST(rep.complete());

    s->prepared = {x};
    calls = -100;
    auto rep2 = c.recover(flaky, {"db"}, fast);
    BOOST_TEST(calls == -95);  // bounded: 5 attempts
    BOOST_TEST(rep2.errors.size() == 1u);
    BOOST_TEST(!rep2.complete());
    BOOST_TEST(s->prepared.size() == 1u);
}

BOOST_AUTO_TEST_CASE(startup_recovery_runs_from_the_options) {
    temp_dir d;
    auto s1 = std::make_shared<fake_store>(), s2 = std::make_shared<fake_store>();
    std::string g;
    {
        coordinator c(coordinator::options{"rs", {}, d.path / "tm.log", {}, {}, {}, true});
        auto t = c.begin();
        g = t.gtrid();
        fake_resource a("a", s1), b("b", s2, {.lose_connection_at_commit = true});
        t.enlist(a);
        t.enlist(b);
        t.commit();  // decided; b lost its connection in phase two
        BOOST_TEST((t.unfinished().size() == 1u));
        BOOST_TEST(s1->has_committed(g));
        BOOST_TEST(!s2->has_committed(g));
    }
    auto make = [&](const std::string& n) {
        return std::make_unique<fake_resource>(n, n == "a" ? s1 : s2);
    };
    coordinator c2(coordinator::options{"rs", {}, d.path / "tm.log", make, {"a", "b"}, {}});
    BOOST_REQUIRE(c2.startup_recovery().has_value());
    BOOST_TEST(c2.startup_recovery()->committed.size() == 1u);
    BOOST_TEST(s2->has_committed(g));
    BOOST_TEST(c2.log().live().empty());
}

BOOST_AUTO_TEST_CASE(branches_of_running_transactions_are_left_to_them) {
    auto log = std::make_shared<memory_log>("ri");
    auto s = std::make_shared<fake_store>();
    coordinator c(coordinator::options{"ri", log, {}, {}, {}, {}});
    auto t = c.begin();
    const xid x(format_id, t.gtrid(), "1");
    s->prepared = {x};
    auto rep = c.recover(
        [&](const std::string& n) { return std::make_unique<fake_resource>(n, s); }, {"db"});
    BOOST_TEST(rep.rolled_back.empty());
    BOOST_TEST(s->prepared.size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(decision_log)

const file_log::options created = [] {
    file_log::options o;
    o.create = true;
    return o;
}();

BOOST_AUTO_TEST_CASE(records_survive_reopen_and_end_records_close_them) {
    temp_dir d;
    const auto p = d.path / "tm.log";
    {
        file_log l(p, "c1", created);
        l.force(log_record{log_record::kind::commit, "g1", {{"a", "1"}, {"b", "2"}}});
        l.force(log_record{log_record::kind::commit, "g2", {{"a", "1"}}});
        l.append(log_record{log_record::kind::end, "g1", {}});
    }
    file_log l(p, "c1");
    auto live = l.live();
    BOOST_REQUIRE(live.size() == 1u);
    BOOST_TEST(live[0].gtrid == "g2");
    BOOST_TEST(live[0].branches.size() == 1u);
    BOOST_TEST(l.warnings().empty());
}

BOOST_AUTO_TEST_CASE(a_torn_last_record_is_cut_off_with_a_warning) {
    temp_dir d;
    const auto p = d.path / "tm.log";
    {
        file_log l(p, "c1", created);
        l.force(log_record{log_record::kind::commit, "g1", {{"a", "1"}}});
    }
    const auto good = fs::file_size(p);
    const std::string torn =
        encode_record(log_record{log_record::kind::commit, "g2", {{"a", "1"}}});
    {
        std::ofstream f(p, std::ios::app | std::ios::binary);
        f.write(torn.data(), static_cast<std::streamsize>(torn.size() - 3));
    }
    file_log l(p, "c1");
    BOOST_TEST(l.live().size() == 1u);
    BOOST_REQUIRE(l.warnings().size() == 1u);
    BOOST_TEST(l.warnings()[0].find("incomplete last record") != std::string::npos);
    BOOST_TEST(fs::file_size(p) == good);  // cut off, so new records follow good ones
}

BOOST_AUTO_TEST_CASE(a_corrupt_record_in_the_middle_is_an_error) {
    temp_dir d;
    const auto p = d.path / "tm.log";
    std::uintmax_t first = 0;
    {
        file_log l(p, "c1", created);
        l.force(log_record{log_record::kind::commit, "g1", {{"a", "1"}}});
        first = fs::file_size(p);
        l.force(log_record{log_record::kind::commit, "g2", {{"a", "1"}}});
        l.force(log_record{log_record::kind::commit, "g3", {{"a", "1"}}});
    }
    {
        // Flip one payload byte of the second record.
        std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(first + 14));
        f.put('X');
    }
    try {
        file_log l(p, "c1");
        BOOST_FAIL("a corrupt record must not be skipped");
    } catch (const xarm::error& e) {
        BOOST_TEST(std::string(e.what()).find("damaged at byte " + std::to_string(first)) !=
                   std::string::npos);
        BOOST_TEST(e.sqlstate() == "XX001");
    }
    // A corrupt length (bit flip) that makes the record look longer than the file.
    {
        std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(first + 14));
        f.put('\0');  // restore g2
        f.seekp(static_cast<std::streamoff>(first + 6));
        f.put('\x7f');
    }
    BOOST_CHECK_THROW(file_log(p, "c1"), xarm::error);
}

BOOST_AUTO_TEST_CASE(trimming_rewrites_only_live_records) {
    temp_dir d;
    const auto p = d.path / "tm.log";
    file_log::options o;
    o.trim_bytes = 4096;
    o.create = true;
    {
        file_log l(p, "c1", o);
        for (int i = 0; i < 500; ++i) {
            const std::string g = "gtrid-" + std::to_string(i);
            l.force(log_record{log_record::kind::commit, g, {{"a", "1"}, {"b", "2"}}});
            if (i != 7) l.append(log_record{log_record::kind::end, g, {}});
        }
        BOOST_TEST(l.stats().trims >= 1u);
        BOOST_TEST(l.live().size() == 1u);
    }
    BOOST_TEST(fs::file_size(p) < 8192u);
    file_log l(p, "c1", o);
    BOOST_REQUIRE(l.live().size() == 1u);
    BOOST_TEST(l.live()[0].gtrid == "gtrid-7");
    l.trim();
    BOOST_TEST(fs::file_size(p) == std::string("xarm tm log v1 coordinator=c1\n").size() +
                                       encode_record(l.live()[0]).size());
}

BOOST_AUTO_TEST_CASE(group_commit_shares_flushes_between_threads) {
    temp_dir d;
    file_log::options o;
    o.extra_sync_delay = std::chrono::milliseconds(2);  // a slow disk makes batches form
    o.create = true;
    auto log = std::make_shared<file_log>(d.path / "tm.log", "gc", o);
    coordinator c(coordinator::options{"gc", log, {}, {}, {}, {}});
    constexpr int threads = 16, per = 10;
    std::vector<std::thread> ts;
    for (int i = 0; i < threads; ++i)
        ts.emplace_back([&] {
            fake_resource a("a", std::make_shared<fake_store>()),
                b("b", std::make_shared<fake_store>());
            for (int k = 0; k < per; ++k) {
                auto t = c.begin();
                t.enlist(a);
                t.enlist(b);
                t.commit();
            }
        });
    for (auto& t : ts) t.join();
    const auto st = log->stats();
    BOOST_TEST(st.forced_records == static_cast<std::uint64_t>(threads * per));
    BOOST_TEST(st.syncs < st.forced_records);
    BOOST_TEST_MESSAGE("group commit: " << st.forced_records << " decisions in " << st.syncs
                                        << " flushes");
    BOOST_TEST(c.stats().two_phase == static_cast<std::uint64_t>(threads * per));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(resources)

BOOST_AUTO_TEST_CASE(file_resource_is_atomic_and_recoverable) {
    temp_dir d;
    auto log = std::make_shared<memory_log>("fr");
    coordinator c(coordinator::options{"fr", log, {}, {}, {}, {}});
    auto other = std::make_shared<fake_store>();
    file_resource f("files", d.path / "files");
    fake_resource a("a", other);
    {
        auto t = c.begin();
        t.enlist(f);
        t.enlist(a);
        f.write("out.txt", "hello");
        t.commit();
    }
    std::ifstream in(d.path / "files" / "out.txt");
    std::string content((std::istreambuf_iterator<char>(in)), {});
    BOOST_TEST(content == "hello");
    BOOST_TEST(f.recover().empty());
    {
        auto t = c.begin();
        t.enlist(f);
        f.write("out.txt", "discarded");
        t.rollback();
    }
    std::ifstream in2(d.path / "files" / "out.txt");
    std::string c2((std::istreambuf_iterator<char>(in2)), {});
    BOOST_TEST(c2 == "hello");
    // Prepared by hand, as a crashed coordinator leaves it: recovery with a record commits.
    const xid x(format_id, "fr.0000000000000009.1", "1");
    f.begin(x);
    f.write("later.txt", "from recovery");
    BOOST_TEST((f.prepare(x) == vote::ok));
    BOOST_TEST((f.recover() == std::vector<xid>{x}));
    BOOST_TEST(!fs::exists(d.path / "files" / "later.txt"));
    log->force(log_record{log_record::kind::commit, x.gtrid(), {{"files", "1"}}});
    auto rep = c.recover(
        [&](const std::string&) {
            return std::make_unique<file_resource>("files", d.path / "files");
        },
        {"files"});
    BOOST_TEST(rep.committed.size() == 1u);
    BOOST_TEST(fs::exists(d.path / "files" / "later.txt"));
    BOOST_TEST(f.recover().empty());
}

BOOST_AUTO_TEST_CASE(sqlite_as_the_last_resource_keeps_its_marker) {
    temp_dir d;
    auto log = std::make_shared<memory_log>("sq");
    coordinator c(coordinator::options{"sq", log, {}, {}, {}, {}});
    const std::string info = "path=" + (d.path / "lr.db").string();
    std::unique_ptr<connection_resource> lr;
    try {
        lr = std::make_unique<connection_resource>("lite", xarm::connect("sqlite", info));
    } catch (const xarm::error& e) {
        BOOST_FAIL(std::string("sqlite driver not available: ") + e.what());
    }
    BOOST_TEST(!lr->can_prepare());
    lr->conn().execute("CREATE TABLE t (v INTEGER)");
    lr->conn().commit();
    file_resource f("files", d.path / "files");
    auto t = c.begin();
    t.enlist(f);
    t.enlist(*lr);
    f.write("a.txt", "A");
    lr->conn().execute("INSERT INTO t VALUES (1)");
    t.commit();
    auto r = lr->conn().query("SELECT count(*) FROM t");
    BOOST_TEST(r.rows.at(0).at(0).value() == "1");
    lr->conn().commit();
    BOOST_TEST((lr->markers("sq.") == std::vector<std::string>{t.gtrid()}));
    BOOST_TEST(fs::exists(d.path / "files" / "a.txt"));
    // Two last resources are refused.
    connection_resource lr2("lite2",
                            xarm::connect("sqlite", "path=" + (d.path / "lr2.db").string()));
    auto t2 = c.begin();
    t2.enlist(*lr);
    BOOST_CHECK_THROW(t2.enlist(lr2), programming_error);
    t2.rollback();
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(crash_points_list)

BOOST_AUTO_TEST_CASE(every_point_is_listed_with_a_description) {
    auto pts = crash_points();
    BOOST_TEST(pts.size() >= 10u);
    for (const char* n :
         {"before_prepare", "after_prepare:1", "after_decision_logged", "between_commits",
          "before_last_resource_commit", "after_last_resource_commit", "during_recovery"}) {
        BOOST_TEST(std::any_of(pts.begin(), pts.end(),
                               [&](auto& p) { return p.first == n && !p.second.empty(); }),
                   n);
    }
    set_crash_point("");  // disarmed: passing a point does nothing
    crash_point("before_prepare");
}

BOOST_AUTO_TEST_SUITE_END()

// Each case reproduces a way the manager once lost atomicity without saying so.
BOOST_AUTO_TEST_SUITE(atomicity_is_never_lost_silently)

const file_log::options create_it = [] {
    file_log::options o;
    o.create = true;
    return o;
}();

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

BOOST_AUTO_TEST_CASE(a_missing_log_is_an_error_never_an_empty_log) {
    temp_dir d;
    const auto p = d.path / "run" / "c.tmlog";
    fs::create_directories(p.parent_path());
    try {
        coordinator c(coordinator::options{"m1", {}, p, {}, {}, {}});
        BOOST_FAIL("a coordinator opened a log that does not exist");
    } catch (const xarm::error& e) {
        BOOST_TEST(std::string(e.what()).find("no decision log at " + p.string()) !=
                   std::string::npos);
    }
    BOOST_TEST(!fs::exists(p));  // nothing was created by the failed open
    BOOST_TEST(!fs::exists(p.string() + ".lock"));
    // A relative path is resolved once and named absolutely.
    const auto cwd = fs::current_path();
    fs::current_path(d.path);
    try {
        file_log l("elsewhere.tmlog", "m1");
        fs::current_path(cwd);
        BOOST_FAIL("a relative path to nothing opened");
    } catch (const xarm::error& e) {
        fs::current_path(cwd);
        BOOST_TEST(std::string(e.what()).find((d.path / "elsewhere.tmlog").string()) !=
                   std::string::npos);
    }
    coordinator c(coordinator::options{"m1", {}, p, {}, {}, {}, true});  // first start
    BOOST_TEST(fs::exists(p));
}

BOOST_AUTO_TEST_CASE(a_log_of_another_coordinator_or_not_a_log_is_refused) {
    temp_dir d;
    const auto p = d.path / "c.tmlog";
    { file_log l(p, "owner", create_it); }
    BOOST_CHECK_EXCEPTION(file_log(p, "intruder"), xarm::error, [](const xarm::error& e) {
        return std::string(e.what()).find("belongs to coordinator 'owner'") != std::string::npos;
    });
    const auto q = d.path / "notes.txt";
    std::ofstream(q) << "shopping list\n";
    BOOST_CHECK_EXCEPTION(file_log(q, "owner"), xarm::error, [](const xarm::error& e) {
        return std::string(e.what()).find("not an xarm decision log") != std::string::npos;
    });
    BOOST_TEST(slurp(q) == "shopping list\n");
}

BOOST_AUTO_TEST_CASE(a_flipped_byte_in_the_last_complete_record_stops_recovery) {
    temp_dir d;
    const auto p = d.path / "c.tmlog";
    {
        file_log l(p, "c1", create_it);
        l.force(log_record{log_record::kind::commit, "g1", {{"a", "1"}, {"b", "2"}}});
        l.force(log_record{log_record::kind::commit, "g2", {{"a", "1"}, {"b", "2"}}});
    }
    std::string bytes = slurp(p);
    bytes[bytes.size() - 2] ^= 0x20;  // inside the last record's payload: its CRC fails
    std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
    try {
        file_log l(p, "c1");
        BOOST_FAIL("a record with a bad CRC was taken for a torn write");
    } catch (const xarm::error& e) {
        BOOST_TEST(std::string(e.what()).find("CRC does not match") != std::string::npos);
        BOOST_TEST(e.sqlstate() == "XX001");
    }
    BOOST_TEST(slurp(p) == bytes);  // evidence untouched
    // The coordinator refuses to start on it rather than presume abort.
    BOOST_CHECK_THROW(coordinator(coordinator::options{"c1", {}, p, {}, {}, {}}), xarm::error);
}

BOOST_AUTO_TEST_CASE(only_one_process_owns_a_log) {
    temp_dir d;
    const auto p = d.path / "c.tmlog";
    file_log owner(p, "c1", create_it);
    // Another open of the same log, here or in another process, fails at once.
    try {
        file_log second(p, "c1");
        BOOST_FAIL("two owners of one log");
    } catch (const xarm::error& e) {
        BOOST_TEST(std::string(e.what()).find("in use by pid " + std::to_string(::getpid())) !=
                   std::string::npos);
        BOOST_TEST(e.sqlstate() == "55006");
    }
    const pid_t child = ::fork();
    if (child == 0) {
        try {
            file_log other(p, "c1");
            ::_exit(0);
        } catch (const xarm::error&) {
            ::_exit(3);
        }
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 3));
}

BOOST_AUTO_TEST_CASE(the_lock_goes_with_the_owner) {
    temp_dir d;
    const auto p = d.path / "c.tmlog";
    { file_log first(p, "c1", create_it); }
    file_log again(p, "c1");  // released at close (and by the kernel at a crash)
    BOOST_TEST(again.live().empty());
}

BOOST_AUTO_TEST_CASE(a_branch_gone_in_phase_two_is_a_heuristic_outcome) {
    auto log = std::make_shared<memory_log>("v1");
    coordinator c(coordinator::options{"v1", log, {}, {}, {}, {}});
    auto s1 = std::make_shared<fake_store>(), s2 = std::make_shared<fake_store>();
    fake_resource a("a", s1), b("b", s2, {.vanish_before_commit = true});
    auto t = c.begin();
    t.enlist(a);
    t.enlist(b);
    std::optional<outcome> told;
    t.after_commit([&](outcome o) { told = o; });
    try {
        t.commit();
        BOOST_FAIL("a commit whose branch vanished returned normally");
    } catch (const heuristic_error& e) {
        BOOST_TEST(std::string(e.what()).find("'b'") != std::string::npos);
        BOOST_TEST(std::string(e.what()).find("gone") != std::string::npos);
    }
    BOOST_TEST((told == outcome::heuristic));
    BOOST_TEST((t.result() == outcome::heuristic));
}

BOOST_AUTO_TEST_CASE(recovery_reports_a_decided_branch_that_vanished) {
    auto log = std::make_shared<memory_log>("v2");
    coordinator c(coordinator::options{"v2", log, {}, {}, {}, {}});
    auto s = std::make_shared<fake_store>();
    const std::string g = "v2.0000000000000001.1";
    const xid x(format_id, g, "1");
    s->prepared = {x};
    log->force(log_record{log_record::kind::commit, g, {{"db", "1"}}});
    auto rep = c.recover(
        [&](const std::string& n) {
            return std::make_unique<fake_resource>(n, s,
                                                   fake_options{.vanish_before_commit = true});
        },
        {"db"});
    BOOST_TEST(rep.committed.empty());
    BOOST_TEST(rep.heuristic.size() == 1u);
    BOOST_TEST(!rep.complete());
}

BOOST_AUTO_TEST_CASE(a_busy_branch_is_retried_not_reported) {
    auto log = std::make_shared<memory_log>("r1");
    coordinator c(coordinator::options{"r1", log, {}, {}, {}, {}});
    auto s1 = std::make_shared<fake_store>(), s2 = std::make_shared<fake_store>();
    fake_resource a("a", s1), b("b", s2, {.retry_at_commit = 2});
    auto t = c.begin();
    t.enlist(a);
    t.enlist(b);
    t.commit();
    BOOST_TEST((t.result() == outcome::committed));
    BOOST_TEST(t.unfinished().empty());
    BOOST_TEST(s2->has_committed(t.gtrid()));
}

BOOST_AUTO_TEST_CASE(recovery_refuses_without_every_resource_the_log_names) {
    auto log = std::make_shared<memory_log>("mr");
    coordinator c(coordinator::options{"mr", log, {}, {}, {}, {}});
    log->force(log_record{log_record::kind::commit, "mr.1.1", {{"a", "1"}, {"b", "2"}}});
    auto s = std::make_shared<fake_store>();
    BOOST_CHECK_EXCEPTION(
        c.recover([&](const std::string& n) { return std::make_unique<fake_resource>(n, s); },
                  {"a"}),
        xarm::error, [](const xarm::error& e) {
            return std::string(e.what()).find("'b'") != std::string::npos;
        });
    BOOST_TEST(log->live().size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_symlinked_log_stays_a_symlink_after_trims) {
    temp_dir d;
    fs::create_directories(d.path / "disk");
    const auto target = d.path / "disk" / "c.tmlog", link = d.path / "c.tmlog";
    { file_log l(target, "c1", create_it); }
    fs::create_symlink(target, link);
    file_log::options o;
    o.trim_bytes = 2048;
    {
        file_log l(link, "c1", o);
        BOOST_TEST(l.path() == fs::canonical(target));
        for (int i = 0; i < 200; ++i) {
            const std::string g = "g" + std::to_string(i);
            l.force(log_record{log_record::kind::commit, g, {{"a", "1"}}});
            if (i != 3) l.append(log_record{log_record::kind::end, g, {}});
        }
        BOOST_TEST(l.stats().trims >= 1u);
    }
    BOOST_TEST(fs::is_symlink(link));
    file_log again(link, "c1");
    BOOST_REQUIRE(again.live().size() == 1u);
    BOOST_TEST(again.live()[0].gtrid == "g3");
}

BOOST_AUTO_TEST_CASE(the_decision_reaches_the_disk_before_phase_two) {
    temp_dir d;
    const auto p = d.path / "c.tmlog";
    coordinator c(coordinator::options{"sy", {}, p, {}, {}, {}, true});
    const auto log_file = fs::canonical(p);
    for (int k = 1; k <= 5; ++k) {
        int flushed_at_commit = -1;
        bool on_disk_at_commit = false;
        std::string g;
        fake_options watch;
        std::mutex seen;  // both branches commit at once, on two threads
        watch.on_commit = [&] {
            std::lock_guard lk(seen);
            if (flushed_at_commit >= 0) return;
            flushed_at_commit = sync_probe::count(log_file);
            on_disk_at_commit = slurp(log_file).find(g) != std::string::npos;
        };
        auto s1 = std::make_shared<fake_store>(), s2 = std::make_shared<fake_store>();
        fake_resource a("a", s1, watch), b("b", s2, watch);
        auto t = c.begin();
        g = t.gtrid();
        t.enlist(a);
        t.enlist(b);
        t.commit();
        // One real flush of the log per forced decision, before any branch commits.
        BOOST_TEST(flushed_at_commit == k);
        BOOST_TEST(on_disk_at_commit);
    }
    BOOST_TEST(c.log().stats().syncs == 5u);
}

BOOST_AUTO_TEST_CASE(the_file_resource_syncs_its_files_and_directory) {
    temp_dir d;
    file_resource f("files", d.path / "files");
    const auto dir = fs::canonical(d.path / "files");
    const xid x(format_id, "fs.1.1", "1");
    const int dir_before = sync_probe::count(dir);
    f.begin(x);
    f.write("report.txt", "total 42\n");
    BOOST_TEST((f.prepare(x) == vote::ok));
    const std::string prepared_name =
        fmt::format("report.txt.xarm.{:x}.{}.{}.prepared", x.format_id(), hex_encode(x.gtrid()),
                    hex_encode(x.bqual()));
    BOOST_TEST(sync_probe::count(dir / prepared_name) == 1);  // its content
    BOOST_TEST(sync_probe::count(dir) == dir_before + 1);     // its name
    f.commit(x, false);
    BOOST_TEST(sync_probe::count(dir) == dir_before + 2);  // the rename over report.txt
    BOOST_TEST(slurp(dir / "report.txt") == "total 42\n");
}

BOOST_AUTO_TEST_SUITE_END()
