// Tests of the conformance suite itself: the runner against SQLite (only PASS and
// verified NOT SUPPORTED), against lying drivers (it must FAIL them), through a switch
// library given by path, against a deliberately faulty third-party switch (crashes,
// hangs, undeclared features, unusable switches), declarations, and its report formats.
#define BOOST_TEST_MODULE xarm_conformance_tests
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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
inline std::ostream& operator<<(std::ostream& os, decl_source s) {
    return os << to_string(s);
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

// ---- a third-party switch: isolation, declarations, reports ------------------------------

namespace {

bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// Every note names what was expected and what came back: no bare "-- ", no raw code.
void check_messages_are_named(const cf::run_result& r) {
    for (const auto& c : r.cases) BOOST_TEST_CONTEXT(c.id << ": " << c.message) {
            BOOST_TEST(!has(c.message + "\n", "-- \n"));
            BOOST_TEST(!has(c.message, "-- ;"));
            BOOST_TEST(!has(c.message, "returned -"));
            BOOST_TEST(!has(c.message, "XA_UNKNOWN"));
        }
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;  // a sanitizer reports the crash and exits instead
#else
constexpr bool sanitized = false;
#endif

}  // namespace

BOOST_AUTO_TEST_CASE(faulty_switch_run_completes_with_crashes_as_errors) {
    temp_db db;
    auto t = cf::load_switch_target(XARM_FAULTY_SQLITE_LIB, "faulty_switch", db.info());
    BOOST_TEST(t.last_error == nullptr);  // a third party: nothing of xarm's shows through
    BOOST_TEST(!t.drv);
    // SQLite cannot keep a prepared branch: declared by hand, as a user would.
    cf::apply_declarations(t, "two_phase=no:SQLite cannot keep a prepared transaction");
    cf::connect_check(t);
    BOOST_REQUIRE_MESSAGE(t.setup_error.empty(), t.setup_error);
    cf::run_options o;
    auto r = cf::run(t, o);
    // The run completes: every case has an outcome although the switch crashes twice.
    BOOST_TEST(r.cases.size() == cf::all_cases().size());
    BOOST_TEST(r.interrupted.empty());
    for (const char* id : {"xid.null_pointer", "input.bad_open_string"})
        BOOST_TEST_CONTEXT(id << ": " << message_of(r, id)) {
            BOOST_TEST(outcome_of(r, id) == cf::outcome::error);
            BOOST_TEST(has(message_of(r, id), "the switch crashed"));
            if (!sanitized) BOOST_TEST(has(message_of(r, id), "SIGSEGV"));
        }
    BOOST_TEST(has(message_of(r, "xid.null_pointer"), "in xa_start"));
    BOOST_TEST(has(message_of(r, "input.bad_open_string"), "in xa_open"));
    // Undeclared optional features refused as the specification allows: NOT SUPPORTED.
    for (const char* id : {"join.c_switch", "suspend.c_switch", "state.interleave"})
        BOOST_TEST_CONTEXT(id << ": " << message_of(r, id)) {
            BOOST_TEST(outcome_of(r, id) == cf::outcome::not_supported);
            BOOST_TEST(has(message_of(r, id), "(undeclared; refused with XAER_RMERR)"));
        }
    // What the switch's flags declare.
    BOOST_TEST(outcome_of(r, "suspend.migrate") == cf::outcome::not_supported);
    BOOST_TEST(has(message_of(r, "suspend.migrate"), "TMNOMIGRATE"));
    BOOST_TEST(outcome_of(r, "state.async") == cf::outcome::not_supported);
    BOOST_TEST(has(message_of(r, "state.async"), "TMUSEASYNC"));
    // What --declare declares, verified: the switch refuses to prepare.
    BOOST_TEST(outcome_of(r, "recovery.paging") == cf::outcome::not_supported);
    BOOST_TEST(has(message_of(r, "recovery.paging"), "SQLite cannot keep"));
    // What the specification requires stays a FAIL, by name, saying there is no diagnostic.
    BOOST_TEST(outcome_of(r, "state.recover_without_startrscan") == cf::outcome::fail);
    BOOST_TEST(has(message_of(r, "state.recover_without_startrscan"),
                   "returned XAER_INVAL, expected XAER_PROTO -- no diagnostic"));
    BOOST_TEST(outcome_of(r, "state.start_twice") == cf::outcome::pass);
    BOOST_TEST(outcome_of(r, "tx.one_phase_commit") == cf::outcome::not_applicable);
    check_messages_are_named(r);

    const auto text = cf::report_text({r});
    BOOST_TEST(has(text, "declarations:"));
    BOOST_TEST(has(text, "the switch's flags: migrate=no (TMNOMIGRATE), async=no"));
    BOOST_TEST(has(text, "--declare: two_phase=no (SQLite cannot keep"));
    BOOST_TEST(has(text, "undeclared (optional: tried): read_only_vote, join"));
    auto j = nlohmann::json::parse(cf::report_json({r}));
    BOOST_TEST(j["targets"][0]["capabilities"]["join"]["source"] == "undeclared (optional: tried)");
    BOOST_TEST(j["targets"][0]["capabilities"]["two_phase"]["source"] == "--declare");
}

BOOST_AUTO_TEST_CASE(unusable_switches_are_refused_by_name) {
    temp_db db;
    try {
        cf::load_switch_target(XARM_FAULTY_SQLITE_LIB, "faulty_null_switch", db.info());
        BOOST_FAIL("a switch without entry points was accepted");
    } catch (const std::runtime_error& e) {
        BOOST_TEST(has(e.what(), "unusable"));
        BOOST_TEST(has(e.what(), "xa_open_entry is NULL"));
        BOOST_TEST(has(e.what(), "xa_complete_entry is NULL"));
    }
    try {
        cf::load_switch_target(XARM_FAULTY_SQLITE_LIB, "faulty_dynamic_switch", db.info());
        BOOST_FAIL("a switch with TMREGISTER and an unterminated name was accepted");
    } catch (const std::runtime_error& e) {
        BOOST_TEST(has(e.what(), "TMREGISTER"));
        BOOST_TEST(has(e.what(), "NUL-terminated"));
    }
    auto t = cf::load_switch_target(lib("libxarm_sqlite.so"), "xarm_sqlite_switch", db.info());
    BOOST_TEST(cf::switch_problems(*t.sw).empty());
}

BOOST_AUTO_TEST_CASE(a_hanging_case_is_killed_and_the_run_goes_on) {
    temp_db db;
    auto t = cf::load_switch_target(XARM_FAULTY_SQLITE_LIB, "faulty_switch", db.info());
    ::setenv("FAULTY_SWITCH_HANG", "xa_forget", 1);  // the case's child inherits it
    cf::run_options o;
    o.globs = {"state.forget_non_heuristic", "state.start_twice"};
    o.timeout_seconds = 1.5;
    auto r = cf::run(t, o);
    ::unsetenv("FAULTY_SWITCH_HANG");
    BOOST_TEST(outcome_of(r, "state.forget_non_heuristic") == cf::outcome::error);
    BOOST_TEST(has(message_of(r, "state.forget_non_heuristic"), "no result after 1.5 s"));
    BOOST_TEST(has(message_of(r, "state.forget_non_heuristic"), "in xa_forget"));
    BOOST_TEST(outcome_of(r, "state.start_twice") == cf::outcome::pass);
}

BOOST_AUTO_TEST_CASE(a_refusal_without_sqlstate_0a000_is_fail) {
    // The driver declares join missing, but its switch refuses TMJOIN with HY000: not
    // the declared way (the code and SQLSTATE 0A000), so FAIL, never NOT SUPPORTED.
    temp_db db;
    auto r = run_target(cf::load_driver_target(XARM_LIAR_REFUSAL_LIB, db.info()),
                        {"join.c_switch", "join.sql", "suspend.c_switch"});
    for (const char* id : {"join.c_switch", "join.sql"})
        BOOST_TEST_CONTEXT(id << ": " << message_of(r, id)) {
            BOOST_TEST(outcome_of(r, id) == cf::outcome::fail);
            BOOST_TEST(has(message_of(r, id), "SQLSTATE HY000, expected SQLSTATE 0A000"));
        }
    BOOST_TEST(outcome_of(r, "suspend.c_switch") == cf::outcome::pass);
}

BOOST_AUTO_TEST_CASE(declarations_from_a_file_or_inline) {
    temp_db db;
    auto t = cf::load_switch_target(XARM_FAULTY_SQLITE_LIB, "faulty_switch", db.info());
    BOOST_TEST(t.undeclared(xarm::capability::join));
    BOOST_TEST(!t.caps->has(xarm::capability::async));
    BOOST_TEST(t.sources.at(xarm::capability::two_phase) == cf::decl_source::specification);
    const std::string file = db.path + ".declare";
    {
        std::ofstream f(file);
        f << "# what the vendor documents\njoin = no: the server refuses XA START ... JOIN, "
             "always\nasync=yes\n";
    }
    cf::apply_declarations(t, file);
    std::filesystem::remove(file);
    BOOST_TEST(!t.caps->has(xarm::capability::join));
    BOOST_TEST(t.caps->get(xarm::capability::join).reason ==
               "the server refuses XA START ... JOIN, always");
    BOOST_TEST(t.caps->has(xarm::capability::async));
    BOOST_TEST(!t.undeclared(xarm::capability::join));
    BOOST_TEST(t.sources.at(xarm::capability::join) == cf::decl_source::declare_option);
    BOOST_CHECK_THROW(cf::apply_declarations(t, "joins=no"), std::runtime_error);
    BOOST_CHECK_THROW(cf::apply_declarations(t, "join=maybe"), std::runtime_error);
    BOOST_CHECK_THROW(cf::apply_declarations(t, "/no/such/file"), std::runtime_error);
    cf::apply_declarations(t, "join=yes,interleave=no:one connection, one branch");
    BOOST_TEST(t.caps->has(xarm::capability::join));
    BOOST_TEST(t.caps->get(xarm::capability::interleave).reason == "one connection, one branch");
}
