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
    BOOST_CHECK_THROW(c.tpc_commit(x), programming_error);
    BOOST_CHECK_THROW(c.tpc_rollback(x), programming_error);
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
