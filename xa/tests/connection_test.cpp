// PEP 249's two-phase semantics on xarm::connection, over the test driver.
#include <boost/test/unit_test.hpp>

#include "test_driver.hpp"
#include "xarm/connection.hpp"

using namespace xarm;

namespace {
struct conn_fixture {
    std::shared_ptr<xarm::test::fake_driver> d = std::make_shared<xarm::test::fake_driver>();
    connection c{d, "fake"};
};
}  // namespace

BOOST_FIXTURE_TEST_SUITE(connection_tests, conn_fixture)

BOOST_AUTO_TEST_CASE(two_phase_round_trip) {
    auto x = connection::xid(42, "gtrid", "bqual");
    c.tpc_begin(x);
    BOOST_TEST((c.current() == x));
    c.execute("update");
    c.tpc_prepare();
    BOOST_TEST(c.prepared());
    BOOST_CHECK_THROW(c.execute("more"), programming_error);
    c.tpc_commit();
    BOOST_TEST(!c.prepared());
    BOOST_TEST(c.current().is_null());
    BOOST_TEST(d->db->committed.back() == "gtrid");
    BOOST_TEST(d->db->log.back() == "commit gtrid");
}

BOOST_AUTO_TEST_CASE(end_join_suspend_resume_map_to_the_xa_verbs) {
    auto x = connection::xid(7, "jr", "");
    c.tpc_begin(x);
    c.tpc_end();
    BOOST_TEST(c.ended());
    BOOST_CHECK_THROW(c.execute("more"), programming_error);
    c.tpc_begin(x, tpc_begin_flag::join);
    BOOST_TEST(d->db->log.back() == "start jr join");
    c.tpc_end(x, tpc_end_flag::suspend);
    BOOST_CHECK_THROW(c.tpc_begin(x, tpc_begin_flag::join), programming_error);
    c.tpc_begin(x, tpc_begin_flag::resume);
    BOOST_TEST(d->db->log.back() == "start jr resume");
    c.tpc_end();
    c.tpc_commit(x, true);
    BOOST_TEST(d->db->log.back() == "commit jr 1pc");
    BOOST_TEST(c.current().is_null());
}

BOOST_AUTO_TEST_CASE(missing_capabilities_refuse_the_flags) {
    d->caps.no(capability::join, "no join here").no(capability::suspend_resume, "no suspend");
    connection n(d, "fake");
    auto x = connection::xid(7, "nj", "");
    BOOST_CHECK_THROW(n.tpc_begin(x, tpc_begin_flag::fresh, std::chrono::seconds(3)),
                      not_supported_error);  // the test driver declares no timeout
    n.tpc_begin(x);
    BOOST_CHECK_THROW(n.tpc_end(x, tpc_end_flag::suspend), not_supported_error);
    n.tpc_end();
    BOOST_CHECK_THROW(n.tpc_begin(x, tpc_begin_flag::join), not_supported_error);
    BOOST_CHECK_THROW(n.tpc_begin(x, tpc_begin_flag::promote), not_supported_error);
    n.tpc_rollback(x);
    BOOST_TEST(n.current().is_null());
}

BOOST_AUTO_TEST_CASE(commit_without_prepare_is_one_phase) {
    c.tpc_begin(connection::xid(1, "one", ""));
    c.execute("update");
    c.tpc_commit();
    BOOST_TEST(d->db->log.back() == "commit one 1pc");
    BOOST_TEST(d->db->prepared.empty());
}

BOOST_AUTO_TEST_CASE(misuse_is_programming_error) {
    BOOST_CHECK_THROW(c.tpc_prepare(), programming_error);
    BOOST_CHECK_THROW(c.tpc_commit(), programming_error);
    BOOST_CHECK_THROW(c.tpc_rollback(), programming_error);
    auto x = connection::xid(1, "m", "");
    c.tpc_begin(x);
    BOOST_CHECK_THROW(c.tpc_begin(connection::xid(1, "other", "")), programming_error);
    BOOST_CHECK_THROW(c.commit(), programming_error);
    BOOST_CHECK_THROW(c.rollback(), programming_error);
    BOOST_CHECK_THROW(c.tpc_commit(x), programming_error);  // its own, but not prepared
    BOOST_CHECK_THROW(c.tpc_commit(connection::xid(1, "other", "")), programming_error);
    BOOST_CHECK_THROW(c.tpc_rollback(connection::xid(1, "other", "")), programming_error);
    c.tpc_prepare();
    BOOST_CHECK_THROW(c.tpc_prepare(), programming_error);
    c.tpc_rollback();
    BOOST_TEST(d->db->prepared.empty());
    // tpc_begin with local work pending (PEP 249: outside a transaction only).
    c.execute("local");
    try {
        c.tpc_begin(connection::xid(1, "late", ""));
        BOOST_FAIL("tpc_begin accepted with a local transaction open");
    } catch (const programming_error& e) {
        BOOST_TEST(e.xa_code() == XAER_OUTSIDE);
    }
    c.rollback();
    BOOST_CHECK_NO_THROW(c.tpc_begin(connection::xid(1, "late", "")));
}

BOOST_AUTO_TEST_CASE(recover_and_finish_from_another_connection) {
    auto x = connection::xid(7, "rec", "b");
    c.tpc_begin(x);
    c.tpc_prepare();
    connection other(d, "fake");
    auto list = other.tpc_recover();
    BOOST_TEST(list.size() == 1u);
    BOOST_TEST((list.at(0) == x));
    other.tpc_rollback(list.at(0));
    BOOST_TEST(other.tpc_recover().empty());
    BOOST_CHECK_THROW(other.tpc_commit(x), programming_error);  // XAER_NOTA now
    // The first connection's branch is gone too.
    BOOST_CHECK_THROW(c.tpc_commit(), programming_error);
}

BOOST_AUTO_TEST_CASE(read_only_branch_needs_no_phase_two) {
    d->fault->read_only = true;
    c.tpc_begin(connection::xid(1, "ro", ""));
    c.tpc_prepare();
    const auto calls = d->db->log.size();
    c.tpc_commit();
    BOOST_TEST(d->db->log.size() == calls);  // nothing sent
}

BOOST_AUTO_TEST_CASE(failed_work_rolls_back_and_frees_the_connection) {
    c.tpc_begin(connection::xid(1, "bad", ""));
    d->fault->before = [](const std::string& p) {
        if (p == "end") raise(XA_RBDEADLOCK, "40P01", "deadlock detected");
    };
    BOOST_CHECK_THROW(c.tpc_prepare(), rollback_error);
    d->fault->before = nullptr;
    BOOST_TEST(c.current().is_null());
    BOOST_CHECK_NO_THROW(c.tpc_begin(connection::xid(1, "next", "")));
    c.tpc_rollback();
}

BOOST_AUTO_TEST_CASE(closed_connection_says_so) {
    c.close();
    BOOST_CHECK_THROW(c.execute("x"), programming_error);
    BOOST_TEST(c.native_handle() == nullptr);
}

BOOST_AUTO_TEST_CASE(parameters_are_bound_never_pasted) {
    auto r = c.query("SELECT '?' || ? FROM t WHERE a = ? -- ?", 5, std::string("it's"));
    // The driver received the text with PostgreSQL placeholders and the values apart.
    BOOST_TEST(r[0].get<std::string>("sql") == "SELECT '?' || $1 FROM t WHERE a = $2 -- ?");
    BOOST_TEST(r[0].get<int>("p1") == 5);
    BOOST_TEST(r[0].get<std::string>("p2") == "it's");
    BOOST_TEST(c.execute("UPDATE t SET a = ?", std::optional<int>{}) == 1);
    std::vector<value> params{value(1), value(nullptr)};
    BOOST_TEST(c.query("SELECT ?, ?", params)[0][2].is_null());
    c.rollback();
}

BOOST_AUTO_TEST_CASE(wrong_argument_count_is_refused_before_sending) {
    const auto calls = d->db->log.size();
    try {
        c.execute("UPDATE t SET a = ? WHERE b = ?", 1);
        BOOST_FAIL("a missing argument was accepted");
    } catch (const programming_error& e) {
        BOOST_TEST(e.sqlstate() == "07001");
        BOOST_TEST(std::string(e.what()).find("2 placeholders and 1 argument") != std::string::npos,
                   e.what());
    }
    BOOST_CHECK_THROW(c.query("SELECT 1", 1), programming_error);
    auto st = c.prepare("SELECT ?");
    BOOST_CHECK_THROW(st.execute(), programming_error);
    BOOST_CHECK_THROW(st.execute(1, 2), programming_error);
    BOOST_TEST(d->db->log.size() == calls);  // nothing reached the driver
}

BOOST_AUTO_TEST_CASE(prepared_statements_follow_their_connection) {
    auto st = c.prepare("SELECT ? FROM t");
    BOOST_TEST(st.parameters() == 1u);
    BOOST_TEST(st.query(7)[0].get<int>("p1") == 7);
    c.rollback();
    for (int i = 0; i < 2; ++i) {
        c.tpc_begin(connection::xid(1, "st" + std::to_string(i), ""));
        BOOST_TEST(st.execute(i) == 1);
        c.tpc_prepare();
        BOOST_CHECK_THROW(st.execute(i), programming_error);  // not between the phases
        c.tpc_commit();
    }
    connection moved = std::move(c);
    BOOST_TEST(st.query(8)[0].get<int>("p1") == 8);
    // What is left of a moved-from connection is closed, with no branch.
    BOOST_TEST(c.current().is_null());
    BOOST_TEST(!c.prepared());
    BOOST_TEST(!c.ended());
    BOOST_TEST(c.native_handle() == nullptr);
    BOOST_CHECK_THROW(c.execute("SELECT 1"), programming_error);
    BOOST_CHECK_THROW(c.tpc_begin(connection::xid(1, "after-move", "")), programming_error);
    c.close();         // nothing to close: no error
    moved.rollback();  // the query above began a local transaction
    moved.tpc_begin(connection::xid(1, "moved", ""));
    BOOST_TEST((moved.current() == connection::xid(1, "moved", "")));
    moved.tpc_rollback();
    moved.close();
    BOOST_CHECK_THROW(st.execute(1), programming_error);
    {
        auto other = std::make_unique<connection>(d, "fake");
        auto st2 = other->prepare("SELECT ?");
        other.reset();
        BOOST_CHECK_THROW(st2.execute(1), programming_error);
    }  // st2 outlives its connection and goes quietly
}

BOOST_AUTO_TEST_CASE(branch_guard) {
    {
        branch b(c, connection::xid(1, "guard-commit", ""));
        c.execute("UPDATE t SET a = ?", 1);
        BOOST_TEST((b.prepare() == vote::ok));
        b.commit();
    }
    BOOST_TEST(d->db->committed.back() == "guard-commit");
    {
        branch b(c, connection::xid(1, "guard-leave", ""));
        c.execute("UPDATE t SET a = ?", 1);
    }
    BOOST_TEST(d->db->log.back() == "rollback guard-leave");
    BOOST_TEST(c.current().is_null());
    {
        branch b(c, connection::xid(1, "guard-prepared", ""));
        b.prepare();
    }
    BOOST_TEST(d->db->log.back() == "rollback guard-prepared prepared");
    BOOST_TEST(d->db->prepared.empty());
    // A failure while leaving the scope is swallowed: the destructor never throws.
    try {
        branch b(c, connection::xid(1, "guard-throw", ""));
        d->fault->before = [](const std::string& p) {
            if (p == "end" || p == "rollback") raise(XAER_RMFAIL, "08006", "gone");
        };
        throw std::runtime_error("application failure");
    } catch (const std::runtime_error& e) {
        BOOST_TEST(std::string(e.what()) == "application failure");
    }
    d->fault->before = nullptr;
}

BOOST_AUTO_TEST_CASE(prepare_returns_the_vote) {
    c.tpc_begin(connection::xid(1, "vote", ""));
    BOOST_TEST((c.tpc_prepare() == vote::ok));
    c.tpc_rollback();
    d->fault->read_only = true;
    c.tpc_begin(connection::xid(1, "vote-ro", ""));
    BOOST_TEST((c.tpc_prepare() == vote::read_only));
    c.tpc_commit();
}

BOOST_AUTO_TEST_CASE(typed_native_handle) {
    BOOST_CHECK_THROW(c.native_handle<PGconn*>(), programming_error);
    BOOST_CHECK_THROW(c.native_handle<sqlite3*>(), programming_error);
    BOOST_TEST(c.native_handle() != nullptr);
}

BOOST_AUTO_TEST_CASE(loader_names_every_place_it_tried) {
    try {
        load_driver("nosuchdriver");
        BOOST_FAIL("loaded a driver that does not exist");
    } catch (const error& e) {
        std::string w = e.what();
        BOOST_TEST(w.find("libxarm_nosuchdriver.so") != std::string::npos);
        BOOST_TEST(w.find("tried") != std::string::npos);
    }
    BOOST_CHECK_THROW(load_driver("../etc"), error);
    BOOST_CHECK_THROW(load_driver("Bad Name"), programming_error);
}

BOOST_AUTO_TEST_SUITE_END()
