// Loading a switch library: what a monitor does with xarm's drivers or anyone's
// xa_switch_t. Brings xa.h's names (it is about the C switch).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "xarm/export.h"
#include "xarm/xa.h"

namespace xarm {

/// Loads a switch library the way load_driver finds a driver (a driver name or any library path, a
/// third party's too) and returns its xa_switch_t: the named symbol when given, else the one
/// lixa_get_xa_switch() returns. The library is never unloaded.
XARM_API xa_switch_t* load_switch(std::string_view name_or_path, std::string_view symbol = {});
/// Why a monitor cannot drive this switch: a name not NUL-terminated, empty or not
/// printable, TMREGISTER (dynamic registration through ax_reg, which xarm does not
/// offer), flag bits XA does not define, a version other than 0, a NULL entry point.
/// Empty when it can. The conformance suite and the transaction manager both use it.
XARM_API std::vector<std::string> switch_problems(const xa_switch_t& sw);

}  // namespace xarm
