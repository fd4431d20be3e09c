// The coordinator's configuration file: parsing, ${VAR} expansion, errors that name
// the file, line and key (never a secret), and a coordinator built from a file that
// commits across two PostgreSQL databases.
#define BOOST_TEST_MODULE xarm_tm_config
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tm_support.hpp"
#include "xarm/error.hpp"
#include "xarm/tm_config.hpp"
#include "xarm_testing.hpp"

namespace fs = std::filesystem;
using namespace xarm;
using xarm::testing::contains;
using xarm::testing::scratch;

namespace {

/// The message of the error parse_config throws (fails the test when it does not).
std::string error_of(const std::string& text) {
    try {
        (void)tm::parse_config(text, "cfg.toml");
    } catch (const xarm::error& e) {
        BOOST_TEST(e.sqlstate() == "F0000");
        return e.what();
    }
    BOOST_FAIL("no error for:\n" + text);
    return {};
}

const char* const example = R"(# an application's coordinator
[coordinator]
id = "orders"
log = "/var/lib/orders/orders.tmlog"

[resource.shop]
driver = "mysql"
open = "host=db2 user=app password=${XARM_CFG_TEST_PW} database=shop"

[resource.bank]
driver = "pq"
open = "host=db1 dbname=bank user=app password=${XARM_CFG_TEST_PW}"

[resource.cache]
driver = "sqlite"
open = "path='/var/lib/orders/cache $$1.db'"
one_phase_only = true
)";

struct env_var {
    std::string name;
    env_var(std::string n, const char* v) : name(std::move(n)) { ::setenv(name.c_str(), v, 1); }
    ~env_var() { ::unsetenv(name.c_str()); }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(parsing)

BOOST_AUTO_TEST_CASE(the_example_in_file_order_with_expansion) {
    env_var pw("XARM_CFG_TEST_PW", "s3cr$t");
    const auto c = tm::parse_config(example, "cfg.toml");
    BOOST_TEST(c.source == "cfg.toml");
    BOOST_TEST(c.coordinator_id == "orders");
    BOOST_TEST(c.log.file == fs::path("/var/lib/orders/orders.tmlog"));
    BOOST_TEST(c.log.table_in.empty());
    BOOST_TEST((tm::resource_names(c) == std::vector<std::string>{"shop", "bank", "cache"}));
    BOOST_TEST(c.resources[0].driver == "mysql");
    BOOST_TEST(c.resources[0].open == "host=db2 user=app password=s3cr$t database=shop");
    BOOST_TEST(c.resources[0].line == 6u);
    BOOST_TEST(c.resources[1].open == "host=db1 dbname=bank user=app password=s3cr$t");
    BOOST_TEST(!c.resources[1].one_phase_only);
    BOOST_TEST(c.resources[2].open == "path='/var/lib/orders/cache $1.db'");
    BOOST_TEST(c.resources[2].one_phase_only);
    BOOST_TEST(c.warnings.empty());
}

BOOST_AUTO_TEST_CASE(a_table_log_in_a_resources_database) {
    const auto c = tm::parse_config(R"(
[coordinator]
id = "o-1"
log = { table_in = "bank", wait_for_lock = true, lock_timeout_ms = 30000 }
[resource.bank]
driver = "pq"
open = ""
)",
                                    "cfg.toml");
    BOOST_TEST(c.log.file.empty());
    BOOST_TEST(c.log.table_in == "bank");
    BOOST_TEST(c.log.wait_for_lock);
    BOOST_TEST(c.log.lock_timeout.count() == 30000);
    const auto d = tm::parse_config(R"(
[coordinator]
id = "o"
[coordinator.log]
driver = "pq"
open = "dbname=tmlog"
[resource.a]
driver = "/opt/xarm/lib/libxarm_custom.so"
open = "x"
)",
                                    "cfg.toml");
    BOOST_TEST(d.log.driver == "pq");
    BOOST_TEST(d.log.open == "dbname=tmlog");
    BOOST_TEST(d.resources.at(0).driver == "/opt/xarm/lib/libxarm_custom.so");
}

BOOST_AUTO_TEST_CASE(a_password_written_in_the_file_is_a_warning_without_the_password) {
    env_var pw("XARM_CFG_TEST_PW", "from-env");
    const auto c = tm::parse_config(R"(
[coordinator]
id = "o"
log = "/l"
[resource.a]
driver = "pq"
open = "host=h password=hunter2"
[resource.b]
driver = "odbc"
open = "DSN=x;PWD=hunter3"
[resource.c]
driver = "pq"
open = "postgresql://app:hunter4@db/x"
[resource.d]
driver = "pq"
open = "host=h password=${XARM_CFG_TEST_PW} passwordless=1"
[resource.e]
driver = "pq"
open = "postgresql://app@db/x?password="
)",
                                    "cfg.toml");
    BOOST_TEST_REQUIRE(c.warnings.size() == 3u);
    BOOST_TEST(contains(c.warnings[0], "cfg.toml:7: resource.a.open: a password is written"));
    BOOST_TEST(contains(c.warnings[1], "resource.b.open"));
    BOOST_TEST(contains(c.warnings[2], "resource.c.open"));
    for (const auto& w : c.warnings) BOOST_TEST(!contains(w, "hunter"), w);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(errors)

BOOST_AUTO_TEST_CASE(an_unknown_key_is_named_with_its_line) {
    const auto e = error_of(R"([coordinator]
id = "o"
log = "/l"
[resource.shop]
driver = "mysql"
opne = "x"
)");
    BOOST_TEST(contains(e,
                        "cfg.toml:6: resource.shop.opne: unknown key (expected driver, switch, "
                        "symbol, open, one_phase_only)"),
               e);
    const auto top = error_of("[coordinator]\nid = \"o\"\nlog = \"/l\"\n[resources.a]\n");
    BOOST_TEST(contains(top, "cfg.toml:4: resources: unknown key"), top);
    const auto in_coord = error_of("[coordinator]\nid = \"o\"\nlog = \"/l\"\nlog_path = \"/x\"\n");
    BOOST_TEST(contains(in_coord, "cfg.toml:4: coordinator.log_path: unknown key"), in_coord);
}

BOOST_AUTO_TEST_CASE(missing_id_log_or_resources) {
    const auto no_id =
        error_of("[coordinator]\nlog = \"/l\"\n[resource.a]\ndriver = \"pq\"\nopen = \"\"\n");
    BOOST_TEST(contains(no_id, "cfg.toml:1: coordinator.id: missing"), no_id);
    const auto no_log =
        error_of("[coordinator]\nid = \"o\"\n[resource.a]\ndriver = \"pq\"\nopen = \"\"\n");
    BOOST_TEST(contains(no_log, "coordinator.log: missing"), no_log);
    const auto no_coord = error_of("[resource.a]\ndriver = \"pq\"\nopen = \"\"\n");
    BOOST_TEST(contains(no_coord, "cfg.toml: coordinator: missing"), no_coord);
    const auto no_res = error_of("[coordinator]\nid = \"o\"\nlog = \"/l\"\n");
    BOOST_TEST(contains(no_res, "resource: missing"), no_res);
    const auto no_open =
        error_of("[coordinator]\nid = \"o\"\nlog = \"/l\"\n[resource.a]\ndriver = \"pq\"\n");
    BOOST_TEST(contains(no_open, "cfg.toml:4: resource.a.open: missing"), no_open);
}

BOOST_AUTO_TEST_CASE(bad_values) {
    const std::string head = "[coordinator]\nid = \"o\"\nlog = \"/l\"\n";
    const auto drv = error_of(head + "[resource.a]\ndriver = \"oracle\"\nopen = \"\"\n");
    BOOST_TEST(contains(drv,
                        "cfg.toml:5: resource.a.driver: unknown driver 'oracle' (expected pq, "
                        "mysql, sqlite, odbc, or the path"),
               drv);
    const auto id = error_of("[coordinator]\nid = \"has space\"\nlog = \"/l\"\n");
    BOOST_TEST(contains(id, "cfg.toml:2: coordinator.id: 'has space' is not a coordinator id"), id);
    const auto rel = error_of("[coordinator]\nid = \"o\"\nlog = \"run/c.tmlog\"\n");
    BOOST_TEST(contains(rel, "cfg.toml:3: coordinator.log: 'run/c.tmlog' is a relative path"), rel);
    const auto type = error_of(head + "[resource.a]\ndriver = \"pq\"\nopen = 5\n");
    BOOST_TEST(contains(type, "cfg.toml:6: resource.a.open: must be a string"), type);
    const auto flag =
        error_of(head + "[resource.a]\ndriver = \"pq\"\nopen = \"\"\none_phase_only = \"yes\"\n");
    BOOST_TEST(contains(flag, "resource.a.one_phase_only: must be true or false"), flag);
    const auto name = error_of(head + "[resource.\"a b\"]\ndriver = \"pq\"\nopen = \"\"\n");
    BOOST_TEST(contains(name, "resource.a b: a resource name is 1-64 characters"), name);
    const auto rel_lr =
        error_of(head + "[resource.a]\ndriver = \"sqlite\"\nopen = \"path=lr.db\"\n");
    BOOST_TEST(contains(rel_lr, "cfg.toml:6: resource.a.open: path 'lr.db' is relative"), rel_lr);
    const auto two_lr =
        error_of(head +
                 "[resource.a]\ndriver = \"sqlite\"\nopen = \"path=/a\"\none_phase_only = true\n"
                 "[resource.b]\ndriver = \"sqlite\"\nopen = \"path=/b\"\none_phase_only = true\n");
    BOOST_TEST(contains(two_lr, "more than one resource is one_phase_only"), two_lr);
    const auto table_in = error_of(
        "[coordinator]\nid = \"o\"\nlog = { table_in = \"nope\" }\n"
        "[resource.a]\ndriver = \"pq\"\nopen = \"\"\n");
    BOOST_TEST(contains(table_in,
                        "cfg.toml:3: coordinator.log.table_in: 'nope' is not a configured "
                        "resource"),
               table_in);
    const auto both = error_of(
        "[coordinator]\nid = \"o\"\nlog = { table_in = \"a\", driver = \"pq\" }\n"
        "[resource.a]\ndriver = \"pq\"\nopen = \"\"\n");
    BOOST_TEST(contains(both, "give either table_in"), both);
}

BOOST_AUTO_TEST_CASE(the_last_agent_setting) {
    const std::string head = "[coordinator]\nid = \"o\"\nlog = \"/l\"\n";
    const std::string res =
        "[resource.a]\ndriver = \"pq\"\nopen = \"\"\n"
        "[resource.m]\ndriver = \"mysql\"\nopen = \"\"\n"
        "[resource.s]\ndriver = \"sqlite\"\nopen = \"path=/s\"\none_phase_only = true\n";
    BOOST_TEST(tm::parse_config(head + res, "cfg.toml").last_agent == "auto");
    BOOST_TEST(tm::coordinator::options{}.last_agent == "auto");
    for (const char* v : {"auto", "off", "a", "m"}) {
        const auto c = tm::parse_config(head + "last_agent = \"" + v + "\"\n" + res, "cfg.toml");
        BOOST_TEST(c.last_agent == v);
    }
    const auto unknown = error_of(head + "last_agent = \"nope\"\n" + res);
    BOOST_TEST(contains(unknown,
                        "cfg.toml:4: coordinator.last_agent: 'nope' is neither \"auto\", "
                        "\"off\" nor a configured resource"),
               unknown);
    const auto lr = error_of(head + "last_agent = \"s\"\n" + res);
    BOOST_TEST(contains(lr, "resource 's' cannot be a last agent"), lr);
    const auto type = error_of(head + "last_agent = false\n" + res);
    BOOST_TEST(contains(type, "coordinator.last_agent: must be a string"), type);
}

BOOST_AUTO_TEST_CASE(switch_resources_and_profiles) {
    const std::string head = "[coordinator]\nid = \"o\"\nlog = \"/l\"\n";
    const auto c = xarm::tm::parse_config(
        head +
            "[resource.a]\nswitch = \"/opt/x.so\"\nsymbol = \"x_switch\"\nopen = \"i\"\n"
            "[resource.b]\ndriver = \"pq\"\nopen = \"\"\n"
            "[profile.p]\nid = \"p1\"\nresources = [\"b\", \"a\"]\ntransaction_timeout_s = 7\n",
        "cfg.toml");
    BOOST_TEST(c.resources[0].switch_library == "/opt/x.so");
    BOOST_TEST(c.resources[0].symbol == "x_switch");
    BOOST_TEST(c.resources[0].driver.empty());
    const auto p = xarm::tm::select_profile(c, "p");
    BOOST_TEST(p.coordinator_id == "p1");
    BOOST_TEST(p.log.file == "/l");
    BOOST_TEST(p.transaction_timeout.count() == 7);
    BOOST_TEST(xarm::tm::resource_names(p) == (std::vector<std::string>{"b", "a"}));
    try {
        (void)xarm::tm::select_profile(c, "q");
        BOOST_FAIL("an unknown profile was accepted");
    } catch (const xarm::error& e) {
        BOOST_TEST(contains(e.what(), "no [profile.q] (profiles: p)"), e.what());
    }
    const auto both =
        error_of(head + "[resource.a]\nswitch = \"/x.so\"\ndriver = \"pq\"\nopen = \"\"\n");
    BOOST_TEST(contains(both, "give either driver"), both);
    const auto rel = error_of(head + "[resource.a]\nswitch = \"lib/x.so\"\nopen = \"\"\n");
    BOOST_TEST(contains(rel, "cfg.toml:5: resource.a.switch: must be the absolute path"), rel);
    const auto lr =
        error_of(head + "[resource.a]\nswitch = \"/x.so\"\nopen = \"\"\none_phase_only = true\n");
    BOOST_TEST(contains(lr, "cannot be the last resource"), lr);
    const auto sym =
        error_of(head + "[resource.a]\ndriver = \"pq\"\nsymbol = \"s\"\nopen = \"\"\n");
    BOOST_TEST(contains(sym, "resource.a.symbol: only with switch"), sym);
    const auto unknown = error_of(head +
                                  "[resource.a]\ndriver = \"pq\"\nopen = \"\"\n"
                                  "[profile.x]\nresources = [\"zz\"]\n");
    BOOST_TEST(contains(unknown, "profile.x.resources: 'zz' is not a configured resource"),
               unknown);
}

BOOST_AUTO_TEST_CASE(environment_variables) {
    const std::string head =
        "[coordinator]\nid = \"o\"\nlog = \"/l\"\n[resource.a]\ndriver = \"pq\"\n";
    ::unsetenv("XARM_CFG_TEST_UNSET");
    const auto unset = error_of(head + "open = \"password=${XARM_CFG_TEST_UNSET}\"\n");
    BOOST_TEST(contains(unset,
                        "cfg.toml:6: resource.a.open: environment variable "
                        "XARM_CFG_TEST_UNSET is not set"),
               unset);
    const auto lone = error_of(head + "open = \"password=a$b\"\n");
    BOOST_TEST(contains(lone, "a '$' that begins neither ${VAR} nor $$"), lone);
    BOOST_TEST(!contains(lone, "a$b"), lone);
    const auto open_brace = error_of(head + "open = \"password=${PW\"\n");
    BOOST_TEST(contains(open_brace, "'${' without a closing '}'"), open_brace);
    const auto bad_name = error_of(head + "open = \"${not a name}\"\n");
    BOOST_TEST(contains(bad_name, "must hold an environment variable name"), bad_name);
    BOOST_TEST(!contains(bad_name, "not a name"), bad_name);
    // Set but empty is a value (libpq then falls back to its own defaults).
    env_var empty("XARM_CFG_TEST_EMPTY", "");
    const auto c =
        tm::parse_config(head + "open = \"a=${XARM_CFG_TEST_EMPTY}b$${X}\"\n", "cfg.toml");
    BOOST_TEST(c.resources.at(0).open == "a=b${X}");
    // Expansion applies to every string value, the log path and the id included.
    env_var dir("XARM_CFG_TEST_DIR", "/srv/app");
    const auto d = tm::parse_config(
        "[coordinator]\nid = \"o\"\nlog = \"${XARM_CFG_TEST_DIR}/o.tmlog\"\n[resource.a]\n"
        "driver = \"pq\"\nopen = \"\"\n",
        "cfg.toml");
    BOOST_TEST(d.log.file == fs::path("/srv/app/o.tmlog"));
}

BOOST_AUTO_TEST_CASE(syntax_errors_never_show_an_unquoted_secret) {
    const auto e = error_of(
        "[coordinator]\nid = \"o\"\nlog = \"/l\"\n[resource.a]\ndriver = \"pq\"\n"
        "open = host=db password=hunter2xyz\n");
    BOOST_TEST(contains(e, "cfg.toml:6: not valid TOML"), e);
    BOOST_TEST(!contains(e, "hunter2"), e);
}

BOOST_AUTO_TEST_CASE(a_missing_file_is_named) {
    try {
        (void)tm::load_config("/nonexistent/xarm-tm.toml");
        BOOST_FAIL("no error");
    } catch (const xarm::error& e) {
        BOOST_TEST(contains(e.what(), "/nonexistent/xarm-tm.toml: cannot read the configuration"),
                   e.what());
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(coordinators)

BOOST_AUTO_TEST_CASE(the_factory_knows_only_configured_names) {
    scratch tmp;
    const auto c = tm::parse_config(
        "[coordinator]\nid = \"o\"\nlog = \"/l\"\n[resource.lr]\n"
        "driver = \"sqlite\"\nopen = \"path='" +
            (tmp.dir / "lr.db").string() + "'\"\n",
        "cfg.toml");
    auto make = tm::make_factory(c);
    BOOST_TEST(!make("other"));
    auto r = make("lr");
    BOOST_TEST_REQUIRE(r != nullptr);
    BOOST_TEST(r->name() == "lr");
    BOOST_TEST(!r->can_prepare());
}

BOOST_AUTO_TEST_CASE(recovery_never_creates_the_log_and_refuses_without_every_resource) {
    scratch tmp;
    const auto log = tmp.dir / "o.tmlog";
    const std::string text = "[coordinator]\nid = \"o\"\nlog = \"" + log.string() +
                             "\"\n[resource.lr]\ndriver = \"sqlite\"\nopen = \"path='" +
                             (tmp.dir / "lr.db").string() + "'\"\n";
    const auto c = tm::parse_config(text, "cfg.toml");
    try {
        tm::coordinator coord(tm::coordinator_options(c, false));
        BOOST_FAIL("a missing log was accepted");
    } catch (const xarm::error& e) {
        BOOST_TEST(contains(e.what(), "no decision log at " + log.string()), e.what());
    }
    BOOST_TEST(!fs::exists(log));
    {
        // A decision naming a resource this configuration lacks.
        tm::file_log::options o;
        o.create = true;
        tm::file_log l(log, "o", o);
        l.force(tm::log_record{
            tm::log_record::kind::commit, "o.00000000000000aa.1", {{"lr", "1"}, {"shop", "2"}}});
    }
    try {
        tm::coordinator coord(tm::coordinator_options(c, false));
        BOOST_FAIL("recovery ran without resource 'shop'");
    } catch (const xarm::error& e) {
        BOOST_TEST(contains(e.what(), "recovery refused"), e.what());
        BOOST_TEST(contains(e.what(), "'shop'"), e.what());
    }
}

BOOST_AUTO_TEST_CASE(built_from_a_file_it_commits_across_two_databases,
                     *boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"}) *
                         boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"})) {
    scratch tmp;
    const std::string table = "xtmcfg" + std::to_string(::getpid());
    const auto file = tmp.dir / "orders.toml";
    {
        std::ofstream f(file);
        f << "[coordinator]\nid = \"cfg" << ::getpid() % 100000 << "\"\nlog = \""
          << (tmp.dir / "orders.tmlog").string() << "\"\n"
          << "[resource.bank]\ndriver = \"pq\"\nopen = \"${XARM_TEST_PQ}\"\n"
          << "[resource.ledger]\ndriver = \"pq\"\nopen = \"${XARM_TEST_PQ_DB2}\"\n";
    }
    const auto c = tm::load_config(file);
    BOOST_TEST(c.source == file.string());
    auto make = tm::make_factory(c);
    for (const auto& n : tm::resource_names(c)) {
        auto r = make(n);
        auto& conn = dynamic_cast<tm::connection_resource&>(*r).conn();
        conn.execute("DROP TABLE IF EXISTS " + table);
        conn.execute("CREATE TABLE " + table + " (v TEXT)");
        conn.commit();
    }
    {
        tm::coordinator coord(tm::coordinator_options(c, true));
        BOOST_TEST_REQUIRE(coord.startup_recovery().has_value());
        BOOST_TEST(coord.startup_recovery()->complete());
        auto bank = make("bank"), ledger = make("ledger");
        auto& b = dynamic_cast<tm::connection_resource&>(*bank);
        auto& l = dynamic_cast<tm::connection_resource&>(*ledger);
        auto t = coord.begin();
        t.enlist(b);
        t.enlist(l);
        b.conn().execute("INSERT INTO " + table + " VALUES ('debit')");
        l.conn().execute("INSERT INTO " + table + " VALUES ('credit')");
        t.commit();
        BOOST_TEST((t.result() == tm::outcome::committed));
        // ledger, enlisted later, was the last agent: its marker decided, nothing forced.
        BOOST_TEST(coord.stats().last_agent == 1u);
        BOOST_TEST(coord.log().stats().forced_records == 0u);
    }
    // The log exists now; a second coordinator from the same file opens it without
    // create_log, and its recovery finds nothing to do.
    {
        tm::coordinator again(tm::coordinator_options(c, false));
        BOOST_TEST(again.startup_recovery()->committed.empty());
        BOOST_TEST(again.startup_recovery()->rolled_back.empty());
    }
    for (const auto& n : tm::resource_names(c)) {
        auto r = make(n);
        auto& conn = dynamic_cast<tm::connection_resource&>(*r).conn();
        auto rows = conn.query("SELECT COUNT(*) FROM " + table);
        BOOST_TEST(*rows.rows.at(0).at(0) == "1");
        conn.execute("DROP TABLE " + table);
        conn.commit();
    }
}

BOOST_AUTO_TEST_SUITE_END()
