// Internal: the case tables and the generic refusal checks.
#pragma once

#include <vector>

#include "xarm/conformance.hpp"

namespace xarm::conformance {

void add_state_cases(std::vector<case_def>& v);
void add_tx_cases(std::vector<case_def>& v);
void add_tpc_cases(std::vector<case_def>& v);
void add_params_cases(std::vector<case_def>& v);

/// Verifies that the declared-missing capability c fails the declared way, through the
/// C switch and (with SQL access) the C++ API. Throws failure when it does not.
void verify_refusal(context& ctx, capability c);

}  // namespace xarm::conformance
