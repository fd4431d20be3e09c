// Support for xarm's Boost.Test programs: servers from the environment, unique ids.
#pragma once

#include <boost/test/unit_test.hpp>

#include <unistd.h>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>

namespace xarm::testing {

inline bool under_ci() {
    const char* ci = std::getenv("CI");
    return ci != nullptr && std::string(ci) == "true";
}

/// Precondition decorator: a test that needs the server named by an environment
/// variable is skipped locally when it is unset, and fails under CI=true.
struct needs {
    const char* var;
    boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
        if (std::getenv(var) != nullptr || under_ci()) return true;
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
