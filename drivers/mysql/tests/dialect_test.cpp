// The dialect library alone: statement texts, XA RECOVER parsing, detection, the table.
#include <boost/test/unit_test.hpp>

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

BOOST_AUTO_TEST_SUITE_END()
