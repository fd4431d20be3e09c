// Support for xarm's Boost.Test programs: servers from the environment, unique ids.
#pragma once

#include <boost/test/results_collector.hpp>
#include <boost/test/unit_test.hpp>

#include <unistd.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>

namespace xarm::testing {

inline bool under_ci() {
    const char* ci = std::getenv("CI");
    return ci != nullptr && std::string(ci) == "true";
}

namespace detail {
inline std::set<std::string>& missing_servers() {
    static std::set<std::string> s;
    return s;
}
/// At exit: a program that skipped tests for a missing server and failed none exits 77,
/// which CTest (SKIP_RETURN_CODE) reports as skipped rather than passed.
inline void exit_skipped_if_servers_missing() {
    namespace ut = boost::unit_test;
    if (missing_servers().empty()) return;
    if (!ut::results_collector.results(ut::framework::master_test_suite().p_id).passed()) return;
    std::string vars;
    for (const auto& v : missing_servers()) vars += (vars.empty() ? "" : ", ") + v;
    std::fprintf(stderr, "skipped: tests needing %s did not run (not set)\n", vars.c_str());
    std::fflush(nullptr);
    std::_Exit(77);
}
/// Records a missing server (or tool) for the exit status 77. The set is made before
/// the exit handler is registered, so that it is destroyed after the handler ran.
inline void note_missing(const std::string& what) {
    static std::once_flag once;
    std::call_once(once, [] {
        (void)missing_servers();
        std::atexit(exit_skipped_if_servers_missing);
    });
    missing_servers().insert(what);
}
}  // namespace detail

/// Precondition decorator: a test that needs the server named by an environment
/// variable is skipped locally when it is unset (the program then exits 77: skipped),
/// and fails under CI=true.
struct needs {
    const char* var;
    boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
        if (std::getenv(var) != nullptr || under_ci()) return true;
        detail::note_missing(var);
        boost::test_tools::assertion_result r(false);
        r.message() << var << " is not set (start servers with tools/devservers)";
        return r;
    }
};

/// The info string in var; fails the test when missing (under CI=true the precondition
/// lets the test run so that it fails here).
inline std::string server(const char* var) {
    const char* v = std::getenv(var);
    if (v == nullptr) BOOST_FAIL(std::string(var) + " is not set but CI=true: server missing");
    return v;
}

/// A string unique across processes and runs, for gtrids and table names.
inline std::string unique(const std::string& prefix) {
    static std::atomic<unsigned> counter{0};
    auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    return prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(now % 1000000007) +
           "-" + std::to_string(counter++);
}

}  // namespace xarm::testing
