#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <random>

#include "xarm/driver/info.hpp"
#include "xarm/error.hpp"
#include "xarm/xa.h"

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
    BOOST_TEST((std::find(s.begin(), s.end(), "with space") != s.end()));
    BOOST_TEST(xarm::secrets_in("host=x passwordfile=/a").empty());
    BOOST_TEST(xarm::scrub("login failed for pw s3cret", {"s3cret"}) == "login failed for pw ***");
}

bool has(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

BOOST_AUTO_TEST_CASE(secrets_are_read_as_the_parsers_read_them) {
    // Each once disagreed with parse_info, so the real password went unscrubbed.
    auto kv = xarm::parse_info(R"(password=a\ b)", keys);
    BOOST_TEST(has(xarm::secrets_in(R"(password=a\ b)"), kv.at("password")));
    kv = xarm::parse_info("password={x;y}", keys);
    BOOST_TEST(has(xarm::secrets_in("password={x;y}"), kv.at("password")));
    kv = xarm::parse_info("password=a;b host=h", keys);
    BOOST_TEST(has(xarm::secrets_in("password=a;b host=h"), kv.at("password")));
    BOOST_TEST(has(xarm::secrets_in("Driver={X};PWD={a}}b;c}"), "a}b;c"));
    BOOST_TEST(has(xarm::secrets_in("postgresql://u:p%40ss@h/db"), "p@ss"));
    // Malformed before the password: the parser stops there, the secrets' reading goes on.
    BOOST_TEST(has(xarm::secrets_in("oops password=hunter2"), "hunter2"));
    BOOST_TEST(has(xarm::secrets_in("password='unterminated"), "unterminated"));
}

BOOST_AUTO_TEST_CASE(secrets_and_the_parser_agree_on_random_strings) {
    // Random passwords over the characters the grammars treat specially, written the
    // ways a user may write them: whatever the parser (or ODBC) reads as the password,
    // secrets_in must name, and a message holding it must come out scrubbed.
    std::mt19937 rng(20261130);
    const std::string alphabet = "ab Z9 '\\{};=%@:\"$";
    auto random_value = [&] {
        std::string v;
        const int len = 1 + static_cast<int>(rng() % 12);
        for (int i = 0; i < len; ++i) v += alphabet[rng() % alphabet.size()];
        return v;
    };
    for (int round = 0; round < 20000; ++round) {
        const std::string pw = random_value();
        std::string quoted = "'";
        for (char c : pw) {
            if (c == '\'' || c == '\\') quoted += '\\';
            quoted += c;
        }
        quoted += "'";
        std::string bare;
        for (char c : pw) {
            if (c == ' ' || c == '\\' || c == '\'') bare += '\\';
            bare += c;
        }
        std::string braced = "{";
        for (char c : pw) braced += c == '}' ? std::string("}}") : std::string(1, c);
        braced += "}";
        const std::string kv_forms[] = {"host=h password=" + quoted + " port=1", "password=" + bare,
                                        "path=x  password = " + quoted};
        for (const auto& info : kv_forms) {
            const auto parsed = xarm::parse_info(info, keys).at("password");
            BOOST_REQUIRE_MESSAGE(parsed == pw, info);
            const auto secrets = xarm::secrets_in(info);
            BOOST_REQUIRE_MESSAGE(has(secrets, pw), info);
            BOOST_REQUIRE_MESSAGE(
                xarm::scrub("auth failed: " + pw + ".", secrets).find(pw) == std::string::npos,
                info);
        }
        const std::string odbc = "DSN=d;UID=u;PWD=" + braced + ";Port=1";
        BOOST_REQUIRE_MESSAGE(has(xarm::secrets_in(odbc), pw), odbc);
    }
}

BOOST_AUTO_TEST_SUITE_END()
