// `xarm conformance`: runs the suite against one driver, one switch library, or every
// configured driver (--all), and writes the matrix.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "commands.hpp"
#include "xarm/conformance.hpp"
#include "xarm/driver/scope.hpp"

namespace xarm::cli {

namespace {

namespace cf = xarm::conformance;

struct options {
    std::string driver, lib, symbol, info, format = "text", output, restart;
    std::string declare, native_conn, dbms;
    std::vector<std::string> cases;
    double timeout = 300;
    bool all = false, list = false, in_process = false;
};

// A signal ends the case in progress and the run, and the report is still written; a
// second one, a second or more later, ends the program at once. One sooner is the same
// request delivered twice: timeout(1) signals its command and then its process group.
std::atomic<std::int64_t> g_first_signal_ms{0};  // lock-free: safe in a handler
static_assert(std::atomic<std::int64_t>::is_always_lock_free);

void on_signal(int sig) {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);  // async-signal-safe
    const std::int64_t ms = std::int64_t{now.tv_sec} * 1000 + now.tv_nsec / 1'000'000;
    if (cf::stop_requested() != 0) {
        if (ms - g_first_signal_ms.load() >= 1000) ::_exit(128 + sig);
        return;
    }
    g_first_signal_ms = ms;
    cf::request_stop(sig);
}

void install_signal_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    // One handler at a time: the first signal is the one the report and status name.
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&sa.sa_mask, sig);
    sa.sa_flags = 0;  // no SA_RESTART: a wait for a case returns at once
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

bool under_ci() {
    const char* ci = std::getenv("CI");
    return ci != nullptr && std::string(ci) == "true";
}

cf::target error_target(const std::string& label, const std::string& why) {
    cf::target t;
    t.label = label;
    t.setup_error = why;
    return t;
}

cf::target driver_target(const std::string& label, const std::string& driver,
                         const std::string& info, const std::string& dbms) {
    try {
        auto t = cf::load_driver_target(driver, info);
        if (!label.empty()) t.label = label;
        if (!dbms.empty()) t.dbms = dbms;
        cf::connect_check(t);
        return t;
    } catch (const std::exception& e) {
        return error_target(label, e.what());
    }
}

// Every driver found and every test server each names (driver::test_servers), from the
// development servers' environment; drivers native to a database first.
std::vector<cf::target> all_targets(const std::string& scratch_dir) {
    std::vector<std::pair<std::shared_ptr<const xarm::driver>, std::string>> drivers;
    for (const auto& name : xarm::available_drivers()) {
        try {
            drivers.emplace_back(xarm::load_driver(name), name);
        } catch (const std::exception& e) {
            drivers.emplace_back(nullptr, e.what());
        }
    }
    std::stable_partition(drivers.begin(), drivers.end(),
                          [](const auto& d) { return d.first && d.first->profile(); });
    std::vector<cf::target> out;
    for (const auto& [drv, name] : drivers) {
        if (!drv) {
            out.push_back(error_target("?", name));
            continue;
        }
        for (const auto& s : drv->test_servers()) {
            const char* info = s.variable.empty() ? nullptr : std::getenv(s.variable.c_str());
            if (info == nullptr && s.variable.empty()) {
                std::string fallback = s.fallback;
                if (auto at = fallback.find("{dir}"); at != std::string::npos)
                    fallback.replace(at, 5, scratch_dir);
                out.push_back(driver_target(s.label, std::string(drv->name()), fallback, s.dbms));
                continue;
            }
            if (info == nullptr) {
                auto t = error_target(s.label, fmt::format("{} is not set", s.variable));
                if (under_ci())
                    t.setup_error += " but CI=true: the server is missing";
                else
                    t.configured = false;
                out.push_back(t);
                continue;
            }
            out.push_back(driver_target(s.label, std::string(drv->name()), info, s.dbms));
        }
    }
    return out;
}

int list_cases(const options& o) {
    for (const auto* c : cf::select_cases(o.cases)) {
        std::string needs;
        for (auto n : c->needs)
            needs += (needs.empty() ? "" : ",") + std::string(xarm::to_string(n));
        std::printf("%-36s %-9s %-28s %s\n", c->id.c_str(), cf::to_string(c->needs_layer),
                    needs.empty() ? "-" : needs.c_str(), c->title.c_str());
    }
    return exit_ok;
}

void check_usage(const options& o) {
    const int modes = !o.driver.empty() + !o.lib.empty() + o.all;
    if (modes != 1) throw usage_error("give exactly one of --driver, --switch or --all");
    if (!o.all && o.info.empty())
        throw usage_error("--open INFO is required with --driver and --switch");
    if (!o.symbol.empty() && o.lib.empty()) throw usage_error("--symbol goes with --switch");
    if (!o.native_conn.empty() && o.lib.empty())
        throw usage_error("--native-conn goes with --switch");
    if (o.native_conn.empty() != o.dbms.empty())
        throw usage_error("--native-conn SYMBOL and --dbms pq|mysql go together");
    if (!o.declare.empty() && o.all) throw usage_error("--declare goes with --driver or --switch");
    if (o.timeout <= 0) throw usage_error("--timeout must be positive");
    if (cf::select_cases(o.cases).empty()) throw usage_error("no case matches --case");
}

// What the run is against: every driver found (--all, its SQLite files in scratch_dir),
// a driver, or a switch library (an unusable one is refused here, by name).
std::vector<cf::target> make_targets(const options& o, const std::string& scratch_dir) {
    std::vector<cf::target> targets;
    if (o.all) {
        targets = all_targets(scratch_dir);
    } else if (!o.driver.empty()) {
        targets.push_back(driver_target("", o.driver, o.info, ""));
        if (!targets.back().setup_error.empty() && !targets.back().drv)
            throw std::runtime_error(targets.back().setup_error);
    } else {
        targets.push_back(cf::load_switch_target(o.lib, o.symbol, o.info));
        auto& t = targets.back();
        if (!o.native_conn.empty()) cf::attach_native_connection(t, o.native_conn, o.dbms);
        cf::connect_check(t);
    }
    for (auto& t : targets) {
        t.restart_cmd = o.restart;
        if (!o.declare.empty()) cf::apply_declarations(t, o.declare);
    }
    return targets;
}

// The cases, target after target, with progress on a terminal; a signal stops the run
// (the report says what did not run).
std::vector<cf::run_result> run_targets(const options& o, const std::vector<cf::target>& targets) {
    const bool progress = ::isatty(STDERR_FILENO) != 0;
    cf::run_options ro;
    ro.globs = o.cases;
    ro.isolate = !o.in_process;
    ro.timeout_seconds = o.timeout;
    if (progress) {
        ro.on_start = [](const std::string& label, const cf::case_def& c, std::size_t i,
                         std::size_t n) {
            std::fprintf(stderr, "\r\033[K[%s %zu/%zu] %s", label.c_str(), i + 1, n, c.id.c_str());
            std::fflush(stderr);
        };
        ro.on_done = [](const std::string& label, const cf::case_result& r) {
            if (r.result == cf::outcome::fail || r.result == cf::outcome::error)
                std::fprintf(stderr, "\r\033[K%s %s: %s: %s\n", label.c_str(), r.id.c_str(),
                             cf::to_string(r.result), r.message.c_str());
        };
    }
    std::vector<cf::run_result> runs;
    for (const auto& t : targets) {
        runs.push_back(cf::run(t, ro));
        if (cf::stop_requested() != 0) break;
    }
    if (progress) std::fprintf(stderr, "\r\033[K");
    return runs;
}

void write_report(const options& o, const std::vector<cf::run_result>& runs) {
    std::string text;
    if (o.format == "text")
        text = cf::report_text(runs);
    else if (o.format == "markdown")
        text = cf::report_markdown(runs);
    else if (o.format == "json")
        text = cf::report_json(runs);
    else
        text = cf::report_junit(runs);
    if (o.output.empty() || o.output == "-") {
        std::fwrite(text.data(), 1, text.size(), stdout);
    } else {
        std::ofstream f(o.output, std::ios::binary | std::ios::trunc);
        f << text;
        if (!f) throw std::runtime_error("cannot write " + o.output);
    }
}

int run(const options& o) {
    if (o.list) return list_cases(o);
    check_usage(o);
    std::string scratch_dir;
    if (o.all) {
        scratch_dir = (std::filesystem::temp_directory_path() /
                       fmt::format("xarm-conformance-{}", ::getpid()))
                          .string();
        std::filesystem::create_directories(scratch_dir);
    }
    const scope_exit remove_scratch([&scratch_dir]() noexcept {
        std::error_code ec;
        if (!scratch_dir.empty()) std::filesystem::remove_all(scratch_dir, ec);
    });
    const auto targets = make_targets(o, scratch_dir);
    install_signal_handlers();
    const auto runs = run_targets(o, targets);
    write_report(o, runs);
    if (const int sig = cf::stop_requested(); sig != 0) return 128 + sig;
    for (const auto& r : runs)
        for (const auto& c : r.cases)
            if (c.result == cf::outcome::fail || c.result == cf::outcome::error) return exit_failed;
    return exit_ok;
}

}  // namespace

runner add_conformance(CLI::App& app) {
    auto o = std::make_shared<options>();
    app.add_option("--driver", o->driver,
                   "xarm driver name (pq, mysql, sqlite, odbc) or library path");
    app.add_option("--switch", o->lib, "any XA switch library (.so) given by path");
    app.add_option("--symbol", o->symbol,
                   "the xa_switch_t symbol in --switch (default: lixa_get_xa_switch())");
    app.add_option("--native-conn", o->native_conn,
                   "SQL access through the switch: the library's function returning the RM's "
                   "connection for (thread, rmid), e.g. lixa_pq_get_conn_by_rmid, "
                   "lixa_my_get_conn_by_rmid, xarm_pq_conn, xarm_mysql_conn");
    app.add_option("--dbms", o->dbms,
                   "what --native-conn returns: pq (PGconn*) or mysql (MYSQL*; Connector/C++'s "
                   "sql::Connection* for xarm_mysql_conn)")
        ->check(CLI::IsMember({"pq", "mysql", "mysql-cppconn"}));
    app.add_option("--declare", o->declare,
                   "declare capabilities the switch does not: a FILE, or inline "
                   "'join=no:reason,async=yes,...' (names: two_phase one_phase recovery "
                   "read_only_vote join suspend_resume migrate async interleave)");
    app.add_option("--timeout", o->timeout,
                   "seconds a case may take before its process is killed (ERROR); default 300");
    app.add_flag("--in-process", o->in_process,
                 "run the cases in this process instead of one child process each (for "
                 "debugging the suite: a crashing switch then ends the run)");
    app.add_option("--open", o->info, "the xa_open info string");
    app.add_flag("--all", o->all,
                 "every driver found (xarm's library directory, $XARM_DRIVER_PATH) against each "
                 "test server it names: sqlite (temporary file), XARM_TEST_PQ, XARM_TEST_MYSQL, "
                 "XARM_TEST_ODBC_PQ/_MYSQL/_SQLITE/_VIRTUOSO");
    app.add_option("--format", o->format, "report format")
        ->check(CLI::IsMember({"text", "markdown", "json", "junit"}));
    app.add_option("--output,-o", o->output, "write the report to FILE (default: standard output)");
    app.add_option("--case", o->cases,
                   "run only cases matching GLOB (repeatable), e.g. 'recovery.*'");
    app.add_flag("--list", o->list, "list the cases (id, layer, capabilities, title) and exit");
    app.add_option(
        "--allow-restart", o->restart,
        "shell command that restarts the server, for durability.restart "
        "(e.g. \"$XARM_DEVSERVERS restart pq\"); {dbms} is replaced by the target's database "
        "(pq, mysql), for --all");
    app.footer(
        "Exit status: 0 when no case FAILs or ERRORs, 1 otherwise, 2 for usage errors.\n"
        "Outcomes: PASS, FAIL, NOT SUPPORTED (declared missing and verified to fail the "
        "declared way, or an undeclared optional feature refused the way the XA "
        "specification allows), ERROR (the run broke, or a case's process crashed or hung), "
        "n/a (the case cannot run on this target: e.g. no SQL access through a third-party "
        "switch without --native-conn), not configured.\n"
        "Each case runs in a child process; SIGINT/SIGTERM end the run and the report is "
        "still written (exit status 128+signal); a second signal, a second or more after "
        "the first, ends the program at once.");
    return [o] { return run(*o); };
}

}  // namespace xarm::cli
