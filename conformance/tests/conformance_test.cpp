// Tests of the conformance suite itself: the runner against SQLite (only PASS and
// verified NOT SUPPORTED), against lying drivers (it must FAIL them), through a switch
// library given by path, and its report formats.
#define BOOST_TEST_MODULE xarm_conformance_tests
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>

#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>
#include <nlohmann/json.hpp>

#include "xarm/conformance.hpp"
#include "xarm_testing.hpp"

namespace cf = xarm::conformance;

namespace xarm::conformance {
inline std::ostream& operator<<(std::ostream& os, outcome o) {
    return os << to_string(o);
}
}  // namespace xarm::conformance

namespace {

struct temp_db {
    std::string path = (std::filesystem::temp_directory_path() /
                        (xarm::testing::unique("xarm-conf-test") + ".sqlite"))
                           .string();
    ~temp_db() {
        std::error_code ec;
        std::filesystem::remove(path, ec);
        std::filesystem::remove(path + "-journal", ec);
    }
    std::string info() const { return "path=" + path; }
};

std::string lib(const std::string& file) {
    return std::string(XARM_BUILD_LIBDIR) + "/" + file;
}

cf::outcome outcome_of(const cf::run_result& r, const std::string& id) {
    for (const auto& c : r.cases)
        if (c.id == id) return c.result;
    BOOST_FAIL("case " + id + " did not run");
    return cf::outcome::error;
}

std::string message_of(const cf::run_result& r, const std::string& id) {
    for (const auto& c : r.cases)
        if (c.id == id) return c.message;
    return {};
}

cf::run_result run_target(cf::target t, std::vector<std::string> globs = {}) {
    cf::connect_check(t);
    BOOST_REQUIRE_MESSAGE(t.setup_error.empty(), t.setup_error);
    cf::run_options o;
    o.globs = std::move(globs);
    return cf::run(t, o);
}

}  // namespace

BOOST_AUTO_TEST_CASE(case_table_is_well_formed) {
    const auto& cases = cf::all_cases();
    BOOST_TEST(cases.size() >= 60u);
    std::set<std::string> ids;
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(c.id) {
            BOOST_TEST(ids.insert(c.id).second);
            BOOST_TEST(!c.title.empty());
            BOOST_TEST(static_cast<bool>(c.run));
        }
    }
    BOOST_TEST(cf::select_cases({"recovery.*"}).size() >= 5u);
    BOOST_TEST(cf::select_cases({"no.such.*"}).empty());
    BOOST_TEST(cf::glob_match("state.*", "state.start_twice"));
    BOOST_TEST(!cf::glob_match("state.*", "tx.one_phase_commit"));
}

BOOST_AUTO_TEST_CASE(sqlite_matrix_is_pass_or_verified_not_supported) {
    temp_db db;
    auto r = run_target(cf::load_driver_target("sqlite", db.info()));
    auto n = r.counts();
    for (const auto& c : r.cases) BOOST_TEST_CONTEXT(c.id << ": " << c.message) {
            BOOST_TEST((c.result == cf::outcome::pass || c.result == cf::outcome::not_supported));
        }
    BOOST_TEST(n[cf::outcome::pass] >= 40);
    // SQLite declares two-phase missing: the two-phase cases are verified refusals.
    BOOST_TEST(outcome_of(r, "tx.two_phase_commit") == cf::outcome::not_supported);
    BOOST_TEST(message_of(r, "tx.two_phase_commit").find("two_phase") != std::string::npos);
    BOOST_TEST(outcome_of(r, "recovery.other_process") == cf::outcome::not_supported);
    BOOST_TEST(outcome_of(r, "state.async") == cf::outcome::not_supported);
    BOOST_TEST(outcome_of(r, "tx.one_phase_commit") == cf::outcome::pass);
    BOOST_TEST(outcome_of(r, "state.start_twice") == cf::outcome::pass);
}

BOOST_AUTO_TEST_CASE(declared_missing_but_working_is_fail) {
    // A target whose declaration says "no one-phase commit" while SQLite commits fine:
    // the refusal check finds it working, which is a FAIL, never NOT SUPPORTED.
    temp_db db;
    auto t = cf::load_driver_target("sqlite", db.info());
    cf::connect_check(t);
    xarm::capability_set caps;
    for (const auto& s : t.caps->list())
        if (s.what == xarm::capability::one_phase)
            caps.no(s.what, "pretend");
        else if (s.supported)
            caps.yes(s.what, s.reason);
        else
            caps.no(s.what, s.reason);
    t.caps = caps;
    cf::run_options o;
    o.globs = {"tx.one_phase_commit"};
    auto r = cf::run(t, o);
    BOOST_TEST(outcome_of(r, "tx.one_phase_commit") == cf::outcome::fail);
}

BOOST_AUTO_TEST_CASE(lying_prepare_is_caught) {
    temp_db db;
    auto r = run_target(cf::load_driver_target(XARM_LIAR_PREPARE_LIB, db.info()),
                        {"durability.disconnect", "tx.commit_other_connection",
                         "recovery.other_process", "xid.byte_roundtrip"});
    BOOST_TEST(outcome_of(r, "durability.disconnect") == cf::outcome::fail);
    BOOST_TEST(outcome_of(r, "tx.commit_other_connection") == cf::outcome::fail);
    BOOST_TEST(outcome_of(r, "xid.byte_roundtrip") == cf::outcome::fail);
    BOOST_TEST(outcome_of(r, "recovery.other_process") != cf::outcome::pass);
}

BOOST_AUTO_TEST_CASE(lying_recovery_is_caught) {
    temp_db db;
    auto r =
        run_target(cf::load_driver_target(XARM_LIAR_RECOVER_LIB, db.info()),
                   {"recovery.paging", "recovery.many_branches", "pep249.recover_after_reconnect"});
    BOOST_TEST(outcome_of(r, "recovery.paging") == cf::outcome::fail);
    BOOST_TEST(message_of(r, "recovery.paging").find("twice") != std::string::npos);
    BOOST_TEST(outcome_of(r, "recovery.many_branches") == cf::outcome::fail);
}

BOOST_AUTO_TEST_CASE(switch_by_path_and_symbol) {
    temp_db db;
    for (std::string sym : {"", "xarm_sqlite_switch"}) {
        BOOST_TEST_CONTEXT("symbol '" << sym << "'") {
            auto t = cf::load_switch_target(lib("libxarm_sqlite.so"), sym, db.info());
            BOOST_TEST(t.sw != nullptr);
            BOOST_TEST(t.last_error != nullptr);
            BOOST_TEST(t.driver_name == "sqlite");  // an xarm driver: its declaration comes along
            auto r = run_target(t);
            for (const auto& c : r.cases) BOOST_TEST_CONTEXT(c.id << ": " << c.message) {
                    BOOST_TEST(
                        (c.result == cf::outcome::pass || c.result == cf::outcome::not_supported));
                }
        }
    }
    BOOST_CHECK_THROW(cf::load_switch_target(lib("libxarm_sqlite.so"), "no_such_symbol", db.info()),
                      std::runtime_error);
    BOOST_CHECK_THROW(cf::load_switch_target("/nonexistent/lib.so", "", db.info()),
                      std::runtime_error);
}

BOOST_AUTO_TEST_CASE(third_party_view_without_sql_or_declaration) {
    // What a third-party switch looks like to the suite: no xarm_driver_v1 (no SQL
    // access, no declaration): SQL cases are n/a, never PASS; capabilities count as
    // claimed, so a missing one is a FAIL.
    temp_db db;
    auto t = cf::load_switch_target(lib("libxarm_sqlite.so"), "xarm_sqlite_switch", db.info());
    t.drv.reset();
    t.caps.reset();
    t.dbms.clear();
    cf::run_options o;
    auto r = cf::run(t, o);
    BOOST_TEST(outcome_of(r, "tx.one_phase_commit") == cf::outcome::not_applicable);
    BOOST_TEST(message_of(r, "tx.one_phase_commit").find("SQL") != std::string::npos);
    BOOST_TEST(outcome_of(r, "state.start_twice") == cf::outcome::pass);
    BOOST_TEST(outcome_of(r, "xid.null_pointer") == cf::outcome::pass);
    BOOST_TEST(outcome_of(r, "state.async") == cf::outcome::fail);  // claimed by default, absent
    for (const auto& c : r.cases)
        BOOST_TEST(c.result != cf::outcome::error, c.id << ": " << c.message);
}

BOOST_AUTO_TEST_CASE(report_formats) {
    temp_db db;
    auto r =
        run_target(cf::load_driver_target("sqlite", db.info()), {"state.*", "tx.two_phase_commit"});
    cf::target missing;
    missing.label = "pq";
    missing.configured = false;
    missing.setup_error = "XARM_TEST_PQ is not set";
    cf::run_options o;
    o.globs = {"state.*", "tx.two_phase_commit"};
    std::vector<cf::run_result> runs{r, cf::run(missing, o)};

    auto j = nlohmann::json::parse(cf::report_json(runs));
    BOOST_TEST(j["targets"].size() == 2u);
    BOOST_TEST(j["targets"][0]["label"] == "sqlite");
    BOOST_TEST(j["targets"][0]["results"].size() == r.cases.size());
    BOOST_TEST(j["targets"][0]["summary"]["FAIL"] == 0);
    BOOST_TEST(j["targets"][0]["capabilities"]["two_phase"]["supported"] == false);
    BOOST_TEST(j["targets"][1]["results"][0]["outcome"] == "not configured");

    std::istringstream xml(cf::report_junit(runs));
    boost::property_tree::ptree pt;
    BOOST_REQUIRE_NO_THROW(boost::property_tree::read_xml(xml, pt));
    int testcases = 0, skipped = 0;
    for (const auto& suite : pt.get_child("testsuites"))
        if (suite.first == "testsuite")
            for (const auto& tc : suite.second)
                if (tc.first == "testcase") {
                    ++testcases;
                    if (tc.second.get_child_optional("skipped")) ++skipped;
                }
    BOOST_TEST(testcases == static_cast<int>(2 * r.cases.size()));
    BOOST_TEST(skipped >= static_cast<int>(r.cases.size()) + 1);

    auto text = cf::report_text(runs);
    BOOST_TEST(text.find("state.start_twice") != std::string::npos);
    BOOST_TEST(text.find("not configured") != std::string::npos);
    BOOST_TEST(text.find("NOT SUPPORTED") != std::string::npos);
    auto md = cf::report_markdown(runs);
    BOOST_TEST(md.find("| case | sqlite | pq |") == 0u);
}
