// An opt-in trace for operators, as a monitor's own trace would show it: every XA call
// through a switch and every transaction the manager ends, one line each. Off unless
// XARM_TRACE is set (to 1: standard error; to a path: appended to that file).
#pragma once

#include <string_view>

#include "xarm/export.h"

namespace xarm {

/// True when XARM_TRACE was set at the first call.
XARM_API bool trace_enabled() noexcept;
/// Writes one line (time, pid, thread added). Never throws; never pass a secret.
XARM_API void trace(std::string_view line) noexcept;

}  // namespace xarm
