// The suite against switch libraries on the development servers: the deliberately
// faulty switch around xarm's pq switch (a false prepare after a failed statement,
// recovery that cannot page) with and without SQL access through its native connection,
// a plain third-party switch on the MySQL C API, and xarm's own pq and mysql switches
// through --native-conn, which must give the same matrix as their drivers.
#define BOOST_TEST_MODULE xarm_conformance_switch_tests
#include <map>
#include <string>

#include "xarm/conformance.hpp"
#include "xarm_testing.hpp"

namespace cf = xarm::conformance;
namespace utf = boost::unit_test;
using xarm::testing::needs;
using xarm::testing::server;

namespace xarm::conformance {
inline std::ostream& operator<<(std::ostream& os, outcome o) {
    return os << to_string(o);
}
}  // namespace xarm::conformance

namespace {

constexpr const char* PQ = "XARM_TEST_PQ";
constexpr const char* MYSQL = "XARM_TEST_MYSQL";

const cf::case_result& result_of(const cf::run_result& r, const std::string& id) {
    for (const auto& c : r.cases)
        if (c.id == id) return c;
    BOOST_FAIL("case " + id + " did not run");
    throw std::logic_error("unreachable");
}

bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

cf::run_result run(cf::target t, std::vector<std::string> globs = {}) {
    cf::connect_check(t);
    BOOST_REQUIRE_MESSAGE(t.setup_error.empty(), t.setup_error);
    cf::run_options o;
    o.globs = std::move(globs);
    return cf::run(t, o);
}

// Nothing the suite prepared stays behind, whatever the switch did.
void nothing_left_prepared(const std::string& info) {
    auto c = xarm::connect("pq", info);
    for (const auto& x : c.tpc_recover())
        BOOST_TEST(x.gtrid().rfind("xc-", 0) != 0, "left prepared: " << x.to_string());
}

std::string lib(const std::string& file) {
    return std::string(XARM_BUILD_LIBDIR) + "/" + file;
}

}  // namespace

BOOST_AUTO_TEST_CASE(faulty_switch_with_sql_access, *utf::precondition(needs{PQ})) {
    auto t = cf::load_switch_target(XARM_FAULTY_PQ_LIB, "faulty_switch", server(PQ));
    cf::attach_native_connection(t, "faulty_conn", "pq");
    auto r = run(t, {"tx.failed_statement_prepare", "tx.failed_statement_whole", "recovery.paging",
                     "tx.two_phase_commit", "durability.disconnect", "isolation.locks_held",
                     "pep249.tpc_two_phase", "join.sql", "tx.read_only_vote", "xid.null_pointer"});
    // The false prepare: XA_OK for a branch PostgreSQL had already rolled back.
    const auto& fp = result_of(r, "tx.failed_statement_prepare");
    BOOST_TEST(fp.result == cf::outcome::fail, fp.message);
    BOOST_TEST(has(fp.message, "xa_prepare answered XA_OK"), fp.message);
    BOOST_TEST(has(fp.message, "a false XA_OK"), fp.message);
    BOOST_TEST(result_of(r, "tx.failed_statement_whole").result == cf::outcome::fail);
    // Recovery that fails past its first page.
    const auto& pg = result_of(r, "recovery.paging");
    BOOST_TEST(pg.result == cf::outcome::fail, pg.message);
    BOOST_TEST(has(pg.message, "xa_recover(TMNOFLAGS: page 2, count 3) returned XAER_INVAL"),
               pg.message);
    // What works, works through the switch.
    for (const char* id : {"tx.two_phase_commit", "durability.disconnect", "isolation.locks_held",
                           "pep249.tpc_two_phase"})
        BOOST_TEST(result_of(r, id).result == cf::outcome::pass,
                   id << ": " << result_of(r, id).message);
    // Undeclared optional features, refused: NOT SUPPORTED (undeclared).
    const auto& j = result_of(r, "join.sql");
    BOOST_TEST(j.result == cf::outcome::not_supported, j.message);
    BOOST_TEST(has(j.message, "(undeclared; refused with XAER_RMERR)"), j.message);
    const auto& ro = result_of(r, "tx.read_only_vote");
    BOOST_TEST(ro.result == cf::outcome::not_supported, ro.message);
    BOOST_TEST(has(ro.message, "undeclared"), ro.message);
    BOOST_TEST(result_of(r, "xid.null_pointer").result == cf::outcome::error);
    nothing_left_prepared(server(PQ));
}

BOOST_AUTO_TEST_CASE(faulty_switch_without_sql_pages_empty_branches,
                     *utf::precondition(needs{PQ})) {
    // No SQL access: the recovery cases prepare branches that did no work, which
    // PostgreSQL keeps; the paging fault shows all the same.
    auto t = cf::load_switch_target(XARM_FAULTY_PQ_LIB, "", server(PQ));
    auto r = run(t, {"recovery.*", "tx.two_phase_commit"});
    const auto& pg = result_of(r, "recovery.paging");
    BOOST_TEST(pg.result == cf::outcome::fail, pg.message);
    BOOST_TEST(has(pg.message, "TMNOFLAGS"), pg.message);
    const auto& many = result_of(r, "recovery.many_branches");
    BOOST_TEST(many.result == cf::outcome::fail, many.message);
    BOOST_TEST(has(many.message, "XAER_INVAL"), many.message);
    BOOST_TEST(result_of(r, "tx.two_phase_commit").result == cf::outcome::not_applicable);
    nothing_left_prepared(server(PQ));
}

BOOST_AUTO_TEST_CASE(plain_switch_on_the_mysql_c_api, *utf::precondition(needs{MYSQL})) {
    // SQL access through a MYSQL*, as LIXA's lixa_my_get_conn_by_rmid gives it.
    auto t = cf::load_switch_target(XARM_PLAIN_MYSQL_LIB, "plain_my_switch", server(MYSQL));
    cf::attach_native_connection(t, "plain_my_conn", "mysql");
    BOOST_TEST(t.native_kind == "mysql");
    auto r = run(t, {"tx.one_phase_commit", "tx.two_phase_commit", "tx.failed_statement_prepare",
                     "tx.failed_statement_whole", "input.sql_error_in_branch", "xid.byte_roundtrip",
                     "pep249.foreign_gid", "join.sql"});
    for (const char* id : {"tx.one_phase_commit", "tx.two_phase_commit",
                           "tx.failed_statement_prepare", "tx.failed_statement_whole",
                           "input.sql_error_in_branch", "xid.byte_roundtrip", "pep249.foreign_gid"})
        BOOST_TEST(result_of(r, id).result == cf::outcome::pass,
                   id << ": " << result_of(r, id).message);
    const auto& j = result_of(r, "join.sql");  // MariaDB: XA START ... JOIN is error 1398
    BOOST_TEST(j.result == cf::outcome::not_supported, j.message);
    BOOST_TEST(has(j.message, "undeclared; refused with XAER_INVAL"), j.message);
}

namespace {

// xarm's switch through --native-conn gives the driver's matrix: the same outcome for
// every case, no n/a but durability.restart (which needs --allow-restart) and the
// params.* group and tpc_begin's timeout (the C++ connection's API, which a switch target
// does not have).
void same_matrix(const char* var, const std::string& name) {
    const std::string info = server(var);
    auto by_driver = run(cf::load_driver_target(name, info));
    auto t = cf::load_switch_target(lib("libxarm_" + name + ".so"), "", info);
    cf::attach_native_connection(t, "xarm_" + name + "_conn", name);
    auto by_switch = run(t);
    BOOST_TEST(by_switch.cases.size() == by_driver.cases.size());
    for (const auto& c : by_switch.cases) {
        const auto& d = result_of(by_driver, c.id);
        if (c.id.starts_with("params.") ||
            (c.id == "pep249.tpc_begin_timeout" && d.result == cf::outcome::pass)) {
            BOOST_TEST(c.result == cf::outcome::not_applicable, c.id << ": " << c.message);
            BOOST_TEST(d.result == cf::outcome::pass, c.id << ": " << d.message);
            continue;
        }
        BOOST_TEST(c.result == d.result, c.id << ": switch " << to_string(c.result) << " ("
                                              << c.message << "), driver " << to_string(d.result)
                                              << " (" << d.message << ")");
        if (c.id != "durability.restart")
            BOOST_TEST(c.result != cf::outcome::not_applicable, c.id << ": " << c.message);
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(xarm_pq_switch_matches_the_driver, *utf::precondition(needs{PQ})) {
    same_matrix(PQ, "pq");
}

#ifdef XARM_SWITCH_TEST_MYSQL
BOOST_AUTO_TEST_CASE(xarm_mysql_switch_matches_the_driver, *utf::precondition(needs{MYSQL})) {
    same_matrix(MYSQL, "mysql");
}

// The mysql driver's read-only vote is an open-string option: through the switch the
// suite takes what a connection with that string declares, as for the driver.
BOOST_AUTO_TEST_CASE(xarm_mysql_switch_declares_the_read_only_vote_per_open_string,
                     *utf::precondition(needs{MYSQL})) {
    for (const bool on : {false, true}) {
        const std::string info = server(MYSQL) + (on ? " read_only_vote=on" : "");
        auto t = cf::load_switch_target(lib("libxarm_mysql.so"), "", info);
        cf::attach_native_connection(t, "xarm_mysql_conn", "mysql");
        BOOST_REQUIRE(t.caps);
        BOOST_TEST(t.caps->has(xarm::capability::read_only_vote) == on);
        const auto r = run(t, {"tx.read_only_vote"});
        const auto& ro = result_of(r, "tx.read_only_vote");
        BOOST_TEST(ro.result == (on ? cf::outcome::pass : cf::outcome::not_supported),
                   (on ? "on: " : "off: ") << ro.message);
    }
}
#endif
