#include <boost/test/unit_test.hpp>

#include "xa.h"
#include "xarm/error.hpp"
#include "xarm/info.hpp"

BOOST_AUTO_TEST_SUITE(info_tests)

const std::vector<std::string> keys = {"host", "port", "password", "path"};

BOOST_AUTO_TEST_CASE(parses_quoted_and_escaped_values) {
    auto kv =
        xarm::parse_info(R"( host=db  port = 3306 path='/tmp/a b' password='it\'s\\' )", keys);
    BOOST_TEST(kv.at("host") == "db");
    BOOST_TEST(kv.at("port") == "3306");
    BOOST_TEST(kv.at("path") == "/tmp/a b");
    BOOST_TEST(kv.at("password") == "it's\\");
    BOOST_TEST(xarm::parse_info("", keys).empty());
}

BOOST_AUTO_TEST_CASE(rejects_bad_input_naming_the_key_not_the_value) {
    for (const char* bad : {"nosuch=1", "host", "host=a host=b", "path='open", "=x"}) {
        try {
            xarm::parse_info(bad, keys);
            BOOST_FAIL(std::string("accepted: ") + bad);
        } catch (const xarm::error& e) {
            BOOST_TEST(e.xa_code() == XAER_INVAL);
        }
    }
    try {
        xarm::parse_info("password=hunter2 bogus=1", keys);
        BOOST_FAIL("unknown key accepted");
    } catch (const xarm::error& e) {
        std::string w = e.what();
        BOOST_TEST(w.find("bogus") != std::string::npos);
        BOOST_TEST(w.find("hunter2") == std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(finds_secrets_in_every_form) {
    auto s = xarm::secrets_in("host=x password=s3cret user=u");
    BOOST_TEST((s == std::vector<std::string>{"s3cret"}));
    s = xarm::secrets_in("DSN=pg;UID=u;PWD=odbcpw;");
    BOOST_TEST((s == std::vector<std::string>{"odbcpw"}));
    s = xarm::secrets_in("Driver={X};Pwd={br;aced}");
    BOOST_TEST((s == std::vector<std::string>{"br;aced"}));
    s = xarm::secrets_in("postgresql://user:uripw@host/db");
    BOOST_TEST((s == std::vector<std::string>{"uripw"}));
    s = xarm::secrets_in("password='with space'");
    BOOST_TEST((s == std::vector<std::string>{"with space"}));
    BOOST_TEST(xarm::secrets_in("host=x passwordfile=/a").empty());
    BOOST_TEST(xarm::scrub("login failed for pw s3cret", {"s3cret"}) == "login failed for pw ***");
}

BOOST_AUTO_TEST_SUITE_END()
