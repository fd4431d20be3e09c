// XARM_TRACE: one line per switch call with the code returned, never a password. CTest
// runs this program with XARM_TRACE naming a file (read back here).
#define BOOST_TEST_MODULE xarm_trace
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "test_driver.hpp"
#include "xarm/driver/trace.hpp"

BOOST_AUTO_TEST_CASE(every_call_is_traced_without_secrets) {
    const char* file = std::getenv("XARM_TRACE");
    BOOST_REQUIRE_MESSAGE(file != nullptr, "run through ctest, which sets XARM_TRACE");
    BOOST_TEST(xarm::trace_enabled());
    xarm::test::shared_fake() = std::make_shared<xarm::test::fake_driver>();
    xa_switch_t sw = xarm::test::fake_switch();
    char bad[] = "fail password=hunter2";
    char good[] = "host=x password=hunter2";
    XID x = xarm::test::make_c_xid(1, "g", "b");
    BOOST_TEST(sw.xa_open_entry(bad, 3, TMNOFLAGS) == XAER_RMERR);
    BOOST_TEST(sw.xa_open_entry(good, 3, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_start_entry(&x, 3, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_end_entry(&x, 3, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_commit_entry(&x, 3, TMONEPHASE) == XA_OK);
    BOOST_TEST(sw.xa_commit_entry(&x, 3, TMNOFLAGS) != XA_OK);
    BOOST_TEST(sw.xa_close_entry(good, 3, TMNOFLAGS) == XA_OK);

    std::ifstream in(file);
    std::stringstream all;
    all << in.rdbuf();
    const std::string t = all.str();
    BOOST_TEST(t.find("hunter2") == std::string::npos, t);
    BOOST_TEST(t.find("xa_open rmid=3 info='fail password=***' flags=0x0 -> XAER_RMERR") !=
                   std::string::npos,
               t);
    BOOST_TEST(t.find("xa_start rmid=3 xid=1:67:62 flags=0x0 -> XA_OK") != std::string::npos, t);
    BOOST_TEST(
        t.find("xa_commit rmid=3 xid=1:67:62 flags=0x40000000 -> XA_OK") != std::string::npos, t);
    BOOST_TEST(t.find("xa_commit rmid=3 xid=1:67:62 flags=0x0 -> XAER_NOTA") != std::string::npos,
               t);
    BOOST_TEST(t.find("xa_close rmid=3 flags=0x0 -> XA_OK") != std::string::npos, t);
}
