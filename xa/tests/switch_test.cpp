// The switch adapter: one XA code per entry, diagnostics per (thread, rmid).
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <thread>

#include "test_driver.hpp"
#include "xarm/xarm.h"

using namespace xarm;
using xarm::test::make_c_xid;
using xarm::test::shared_fake;

namespace {
struct fresh_fake {
    xa_switch_t sw = xarm::test::fake_switch();
    fresh_fake() { xarm::test::shared_fake() = std::make_shared<xarm::test::fake_driver>(); }
    ~fresh_fake() {
        for (int rmid = 0; rmid < 8; ++rmid)
            sw.xa_close_entry(const_cast<char*>(""), rmid, TMNOFLAGS);
    }
    xarm_diag diag(int rmid) {
        xarm_diag d{};
        BOOST_TEST(last_error(rmid, &d) == 0);
        return d;
    }
};
char info[] = "fake";
}  // namespace

BOOST_FIXTURE_TEST_SUITE(switch_tests, fresh_fake)

BOOST_AUTO_TEST_CASE(every_entry_before_open_is_proto) {
    XID x = make_c_xid(1, "g", "b");
    XID page[2];
    int h = 0, r = 0;
    BOOST_TEST(sw.xa_start_entry(&x, 1, TMNOFLAGS) == XAER_PROTO);
    BOOST_TEST(sw.xa_end_entry(&x, 1, TMSUCCESS) == XAER_PROTO);
    BOOST_TEST(sw.xa_prepare_entry(&x, 1, TMNOFLAGS) == XAER_PROTO);
    BOOST_TEST(sw.xa_commit_entry(&x, 1, TMNOFLAGS) == XAER_PROTO);
    BOOST_TEST(sw.xa_rollback_entry(&x, 1, TMNOFLAGS) == XAER_PROTO);
    BOOST_TEST(sw.xa_forget_entry(&x, 1, TMNOFLAGS) == XAER_PROTO);
    BOOST_TEST(sw.xa_recover_entry(page, 2, 1, TMSTARTRSCAN) == XAER_PROTO);
    BOOST_TEST(sw.xa_complete_entry(&h, &r, 1, TMNOFLAGS) == XAER_PROTO);
    auto d = diag(1);
    BOOST_TEST(d.xa_code == XAER_PROTO);
    BOOST_TEST(std::string(d.message).find("xa_open") != std::string::npos);
    // R0 -> R0: closing what is not open is fine.
    BOOST_TEST(sw.xa_close_entry(info, 1, TMNOFLAGS) == XA_OK);
}

BOOST_AUTO_TEST_CASE(open_is_idempotent_and_flags_are_checked) {
    BOOST_TEST(sw.xa_open_entry(info, 1, TMASYNC) == XAER_ASYNC);
    BOOST_TEST(sw.xa_open_entry(info, 1, TMJOIN) == XAER_INVAL);
    BOOST_TEST(sw.xa_open_entry(info, 1, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_open_entry(info, 1, TMNOFLAGS) == XA_OK);
    xarm_diag d{};
    BOOST_TEST(last_error(1, &d) == 1);  // the last call succeeded
    BOOST_TEST(std::string(d.sqlstate) == "00000");
    BOOST_TEST(last_error(1, nullptr) == -1);
    BOOST_TEST(sw.xa_close_entry(info, 1, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_close_entry(info, 1, TMNOFLAGS) == XA_OK);
}

BOOST_AUTO_TEST_CASE(full_two_phase_through_the_switch) {
    BOOST_TEST(sw.xa_open_entry(info, 2, TMNOFLAGS) == XA_OK);
    XID x = make_c_xid(77, std::string("g\0'\xff", 4), "b");
    BOOST_TEST(sw.xa_start_entry(&x, 2, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_close_entry(info, 2, TMNOFLAGS) == XAER_PROTO);  // still associated
    BOOST_TEST(sw.xa_end_entry(&x, 2, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_prepare_entry(&x, 2, TMNOFLAGS) == XA_OK);
    XID page[4];
    BOOST_TEST(sw.xa_recover_entry(page, 4, 2, TMSTARTRSCAN | TMENDRSCAN) == 1);
    BOOST_TEST(std::memcmp(&page[0], &x, sizeof(long) * 3 + 5) == 0);
    BOOST_TEST(sw.xa_commit_entry(&x, 2, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_recover_entry(page, 4, 2, TMSTARTRSCAN | TMENDRSCAN) == 0);
    BOOST_TEST(sw.xa_complete_entry(nullptr, nullptr, 2, TMNOFLAGS) == XAER_INVAL);
}

BOOST_AUTO_TEST_CASE(bad_xids_are_inval_and_harmless) {
    BOOST_TEST(sw.xa_open_entry(info, 3, TMNOFLAGS) == XA_OK);
    XID bad = make_c_xid(1, "g", "");
    bad.gtrid_length = 65;
    BOOST_TEST(sw.xa_start_entry(&bad, 3, TMNOFLAGS) == XAER_INVAL);
    BOOST_TEST(sw.xa_start_entry(nullptr, 3, TMNOFLAGS) == XAER_INVAL);
    XID null_xid{};
    null_xid.formatID = -1;
    BOOST_TEST(sw.xa_start_entry(&null_xid, 3, TMNOFLAGS) == XAER_INVAL);
    auto d = diag(3);
    BOOST_TEST(d.xa_code == XAER_INVAL);
    BOOST_TEST(std::string(d.sqlstate) == "22023");
    // The connection is still usable.
    XID x = make_c_xid(1, "ok", "");
    BOOST_TEST(sw.xa_start_entry(&x, 3, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_end_entry(&x, 3, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_commit_entry(&x, 3, TMONEPHASE) == XA_OK);
}

BOOST_AUTO_TEST_CASE(a_throwing_driver_gives_one_code_and_a_diagnostic) {
    BOOST_TEST(sw.xa_open_entry(info, 4, TMNOFLAGS) == XA_OK);
    XID x = make_c_xid(1, "t", "");
    shared_fake()->fault->before = [](const std::string& p) {
        if (p == "start") throw std::runtime_error("driver bug: index out of range");
        if (p == "end") throw 42;  // not even an exception class
    };
    BOOST_TEST(sw.xa_start_entry(&x, 4, TMNOFLAGS) == XAER_RMERR);
    auto d = diag(4);
    BOOST_TEST(d.xa_code == XAER_RMERR);
    BOOST_TEST(std::string(d.message).find("index out of range") != std::string::npos);
    shared_fake()->fault->before = [](const std::string& p) {
        if (p == "end") throw 42;
    };
    BOOST_TEST(sw.xa_start_entry(&x, 4, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_end_entry(&x, 4, TMSUCCESS) == XAER_RMERR);
    BOOST_TEST(diag(4).xa_code == XAER_RMERR);
    shared_fake()->fault->before = nullptr;
}

BOOST_AUTO_TEST_CASE(failed_open_hides_the_password_and_leaves_rmid_openable) {
    char bad[] = "fail host=x password=hunter2";
    BOOST_TEST(sw.xa_open_entry(bad, 5, TMNOFLAGS) == XAER_RMERR);
    auto d = diag(5);
    std::string msg = d.message;
    BOOST_TEST(msg.find("hunter2") == std::string::npos);
    BOOST_TEST(msg.find("***") != std::string::npos);
    BOOST_TEST(std::string(d.sqlstate) == "08001");
    BOOST_TEST(sw.xa_open_entry(info, 5, TMNOFLAGS) == XA_OK);
}

BOOST_AUTO_TEST_CASE(sessions_and_diagnostics_are_per_thread) {
    BOOST_TEST(sw.xa_open_entry(info, 6, TMNOFLAGS) == XA_OK);
    XID x = make_c_xid(1, "main", "");
    BOOST_TEST(sw.xa_start_entry(&x, 6, TMNOFLAGS) == XA_OK);
    int other_start = 0, other_open = 0, other_diag = 0;
    std::thread t([&] {
        XID y = make_c_xid(1, "thread", "");
        other_start = sw.xa_start_entry(&y, 6, TMNOFLAGS);  // not opened on this thread
        xarm_diag d{};
        other_diag = last_error(6, &d);
        other_open = sw.xa_open_entry(info, 6, TMNOFLAGS);
        if (other_open == XA_OK) {
            sw.xa_start_entry(&y, 6, TMNOFLAGS);
            sw.xa_end_entry(&y, 6, TMSUCCESS);
            sw.xa_rollback_entry(&y, 6, TMNOFLAGS);
        }
        // The thread's sessions close when it exits.
    });
    t.join();
    BOOST_TEST(other_start == XAER_PROTO);
    BOOST_TEST(other_diag == 0);
    BOOST_TEST(other_open == XA_OK);
    xarm_diag d{};
    BOOST_TEST(last_error(6, &d) == 1);  // this thread's last call succeeded
    BOOST_TEST(sw.xa_end_entry(&x, 6, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_rollback_entry(&x, 6, TMNOFLAGS) == XA_OK);
}

BOOST_AUTO_TEST_CASE(native_handle_only_for_the_opening_driver) {
    BOOST_TEST(native_handle_for(&xarm::test::fake_getter, 7) == nullptr);
    BOOST_TEST(sw.xa_open_entry(info, 7, TMNOFLAGS) == XA_OK);
    BOOST_TEST(native_handle_for(&xarm::test::fake_getter, 7) != nullptr);
}

BOOST_AUTO_TEST_SUITE_END()
