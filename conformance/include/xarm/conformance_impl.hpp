// Template definitions for conformance.hpp.
#pragma once

#include <string>

#include "xarm/error.hpp"

namespace xarm::conformance {

template <class E, class F>
int expect_throw(F&& f, const char* what) {
    try {
        f();
    } catch (const E& e) {
        return e.xa_code();
    } catch (const xarm::error& e) {
        fail(std::string(what) + ": expected a different exception class, got " +
             code_text(e.xa_code()) + " (" + e.sqlstate() + "): " + e.what());
    }
    fail(std::string(what) + ": succeeded, but must fail");
}

}  // namespace xarm::conformance
