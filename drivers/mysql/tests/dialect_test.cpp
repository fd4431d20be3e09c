// The dialect library alone: statement texts, XA RECOVER parsing, detection, the table.
#include <boost/test/unit_test.hpp>

#include <chrono>

#include "dialect.hpp"
#include "xarm/xa.h"

using namespace xarm;
using namespace xarm::mysql;

BOOST_AUTO_TEST_SUITE(dialect_tests)

BOOST_AUTO_TEST_CASE(detects_mariadb_and_mysql) {
    BOOST_TEST((detect_dialect("10.11.6-MariaDB-0+deb12u1") == dialect::mariadb));
    BOOST_TEST((detect_dialect("5.5.5-10.11.6-mariadb") == dialect::mariadb));
    BOOST_TEST((detect_dialect("8.0.36") == dialect::mysql));
    BOOST_TEST((detect_dialect("8.4.0-commercial") == dialect::mysql));
}

BOOST_AUTO_TEST_CASE(statement_texts_write_hex_only) {
    const xid x(7, std::string("a'\\\0\xff", 5), "b");
    BOOST_TEST(xa_start_sql(x) == "XA START X'61275c00ff',X'62',7");
    BOOST_TEST(xa_end_prepare_sql(x) ==
               "XA END X'61275c00ff',X'62',7;XA PREPARE X'61275c00ff',X'62',7");
    BOOST_TEST(xa_commit_sql(x, true) == "XA COMMIT X'61275c00ff',X'62',7 ONE PHASE");
    BOOST_TEST(xa_commit_sql(x, false) == "XA COMMIT X'61275c00ff',X'62',7");
    BOOST_TEST(xa_rollback_sql(x) == "XA ROLLBACK X'61275c00ff',X'62',7");
    BOOST_TEST(xa_recover_sql(dialect::mariadb) == "XA RECOVER FORMAT='SQL'");
    BOOST_TEST(xa_recover_sql(dialect::mysql) == "XA RECOVER CONVERT XID");
}

BOOST_AUTO_TEST_CASE(parses_mariadb_sql_format) {
    // Forms seen from MariaDB 10.11: hex when a byte is unsafe, quoted otherwise, and
    // trailing defaults (empty bqual, format 1) left out.
    auto a = parse_recover_row(dialect::mariadb, 7, 5, 2, "X'41275c00ff',X'6271',7");
    BOOST_REQUIRE(a);
    BOOST_TEST((*a == xid(7, std::string("A'\\\0\xff", 5), "bq")));
    auto b = parse_recover_row(dialect::mariadb, 1, 2, 0, "'m1'");
    BOOST_REQUIRE(b);
    BOOST_TEST((*b == xid(1, "m1", "")));
    auto c = parse_recover_row(dialect::mariadb, 0, 3, 0, "'abc','',0");
    BOOST_REQUIRE(c);
    BOOST_TEST((*c == xid(0, "abc", "")));
    auto d = parse_recover_row(dialect::mariadb, 1, 3, 1, "'a''b','\\\\'");
    BOOST_REQUIRE(d);
    BOOST_TEST((*d == xid(1, "a'b", "\\")));
    // Lengths that disagree, junk, a different format id: not ours to guess.
    BOOST_TEST(!parse_recover_row(dialect::mariadb, 1, 3, 0, "'m1'"));
    BOOST_TEST(!parse_recover_row(dialect::mariadb, 2, 2, 0, "'m1','',3"));
    BOOST_TEST(!parse_recover_row(dialect::mariadb, 1, 2, 0, "X'6g6g'"));
    BOOST_TEST(!parse_recover_row(dialect::mariadb, 1, 2, 0, "'m1"));
    BOOST_TEST(!parse_recover_row(dialect::mariadb, 1, 2, 0, "'m1' junk"));
}

BOOST_AUTO_TEST_CASE(parses_mysql_convert_xid) {
    auto a = parse_recover_row(dialect::mysql, 7, 5, 2, "0x41275c00ff6271");
    BOOST_REQUIRE(a);
    BOOST_TEST((*a == xid(7, std::string("A'\\\0\xff", 5), "bq")));
    BOOST_TEST(!parse_recover_row(dialect::mysql, 7, 5, 3, "0x41275c00ff6271"));
    BOOST_TEST(!parse_recover_row(dialect::mysql, 7, 5, 2, "A'\\"));
}

BOOST_AUTO_TEST_CASE(error_table) {
    BOOST_TEST(xa_code_of(errnum::xaer_nota, 0) == XAER_NOTA);
    BOOST_TEST(xa_code_of(errnum::xaer_dupid, 0) == XAER_DUPID);
    BOOST_TEST(xa_code_of(errnum::xaer_outside, 0) == XAER_OUTSIDE);
    BOOST_TEST(xa_code_of(errnum::xaer_rmfail, 0) == XAER_PROTO);
    BOOST_TEST(xa_code_of(errnum::deadlock, 0) == XA_RBDEADLOCK);
    BOOST_TEST(xa_code_of(errnum::xa_rbdeadlock, 0) == XA_RBDEADLOCK);
    BOOST_TEST(xa_code_of(errnum::lock_wait_timeout, 0) == XA_RBTIMEOUT);
    BOOST_TEST(xa_code_of(2013, 0) == XAER_RMFAIL);
    BOOST_TEST(is_connection_lost(2006));
    BOOST_TEST(is_connection_lost(1927));
    BOOST_TEST(!is_connection_lost(1397));
    BOOST_TEST(xa_code_of(99999, XAER_RMERR) == XAER_RMERR);
    BOOST_TEST(std::string(lookup_server_error(errnum::xaer_nota)->sqlstate) == "XAE04");
}

// MySQL 8 is not packaged here: the version strings and error numbers below are the
// servers' own (MySQL 8.0/8.4 manuals, WL#7194; MariaDB 10.11 as seen here).
BOOST_AUTO_TEST_CASE(server_versions_and_their_xa_traits) {
    struct seen {
        const char* version;
        dialect family;
        int major, minor, patch;
        bool detach, recover_privilege, session_status;
    };
    const seen cases[] = {
        {"8.0.36-0ubuntu0.22.04.1", dialect::mysql, 8, 0, 36, true, true, false},
        {"8.0.30", dialect::mysql, 8, 0, 30, true, true, false},
        {"8.0.29-log", dialect::mysql, 8, 0, 29, false, true, false},
        {"8.4.0-commercial", dialect::mysql, 8, 4, 0, true, true, false},
        {"9.1.0", dialect::mysql, 9, 1, 0, true, true, false},
        {"5.7.44-log", dialect::mysql, 5, 7, 44, false, false, false},
        {"10.11.6-MariaDB-0+deb12u1", dialect::mariadb, 10, 11, 6, false, false, true},
        {"5.5.5-10.11.6-MariaDB", dialect::mariadb, 10, 11, 6, false, false, true},
        {"11.4.2-MariaDB-log", dialect::mariadb, 11, 4, 2, false, false, true},
        {"garbage", dialect::mysql, 0, 0, 0, false, false, false},
    };
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(c.version) {
            const auto v = parse_server_version(c.version);
            BOOST_TEST((v.family == c.family));
            BOOST_TEST(v.major == c.major);
            BOOST_TEST(v.minor == c.minor);
            BOOST_TEST(v.patch == c.patch);
            const auto t = traits_of(v);
            BOOST_TEST(t.has_detach_on_prepare == c.detach);
            BOOST_TEST(t.recover_needs_privilege == c.recover_privilege);
            BOOST_TEST(t.has_session_status == c.session_status);
        }
    }
    BOOST_TEST(parse_detach_on_prepare("1"));
    BOOST_TEST(parse_detach_on_prepare("ON"));
    BOOST_TEST(!parse_detach_on_prepare("0"));
    BOOST_TEST(!parse_detach_on_prepare("OFF"));
}

BOOST_AUTO_TEST_CASE(mysql8_errors_are_mapped_and_explained) {
    // ER_SPECIFIC_ACCESS_DENIED_ERROR: "Access denied; you need (at least one of) the
    // XA_RECOVER_ADMIN privilege(s) for this operation" at XA RECOVER.
    const auto* priv = lookup_server_error(errnum::specific_access_denied);
    BOOST_REQUIRE(priv != nullptr);
    BOOST_TEST(priv->xa_code == XAER_RMERR);
    BOOST_TEST(std::string(priv->explanation).find("XA_RECOVER_ADMIN") != std::string::npos);
    // ER_XA_TEMP_TABLE: a temporary table inside an XA transaction with
    // xa_detach_on_prepare=ON: not supported there, and said so.
    const auto* temp = lookup_server_error(errnum::xa_temp_table);
    BOOST_REQUIRE(temp != nullptr);
    BOOST_TEST(temp->xa_code == XAER_RMERR);
    BOOST_TEST(std::string(temp->sqlstate) == "0A000");
    BOOST_TEST(std::string(temp->explanation).find("xa_detach_on_prepare") != std::string::npos);
    BOOST_TEST(xa_code_of(4031, 0) == XAER_RMFAIL);  // ER_CLIENT_INTERACTION_TIMEOUT
    BOOST_TEST(lookup_server_error(errnum::xaer_nota)->explanation == nullptr);
}

// The shared loop that finishes a branch possibly still attached to a closing session.
BOOST_AUTO_TEST_CASE(finishing_a_detached_branch) {
    int attempts = 0, listings = 0;
    // Unknown XID twice while listed (the old session is being torn down), then done.
    auto out = finish_detached([&] { return ++attempts < 3 ? errnum::xaer_nota : 0u; },
                               [&] {
                                   ++listings;
                                   return true;
                               },
                               true);
    BOOST_TEST((out.what == detached_result::finished));
    BOOST_TEST(attempts == 3);
    BOOST_TEST(listings == 2);
    // Without wait: still attached at once.
    attempts = 0;
    out =
        finish_detached([&] { return ++attempts, errnum::xaer_nota; }, [] { return true; }, false);
    BOOST_TEST((out.what == detached_result::still_attached));
    BOOST_TEST(attempts == 1);
    // Not listed: no such branch; rolled back by the server; another error.
    BOOST_TEST(
        (finish_detached([] { return errnum::xaer_nota; }, [] { return false; }, true).what ==
         detached_result::not_prepared));
    BOOST_TEST(
        (finish_detached([] { return errnum::xa_rbrollback; }, [] { return true; }, true).what ==
         detached_result::rolled_back));
    const auto other = finish_detached([] { return 1045u; }, [] { return true; }, true);
    BOOST_TEST((other.what == detached_result::failed));
    BOOST_TEST(other.errnum == 1045u);
    // With wait, it gives up after the budget.
    const auto t0 = std::chrono::steady_clock::now();
    BOOST_TEST((finish_detached([] { return errnum::xaer_nota; }, [] { return true; }, true).what ==
                detached_result::still_attached));
    BOOST_TEST((std::chrono::steady_clock::now() - t0 >= detached_wait::budget));
}

BOOST_AUTO_TEST_SUITE_END()
