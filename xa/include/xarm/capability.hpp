// What a driver can do, as it declares it, and a branch's vote at prepare: the parts of
// the driver's declaration an application sees through xarm::connection.
#pragma once

#include <string>
#include <vector>

#include "xarm/export.h"

namespace xarm {

/// What a driver can do. The core refuses a missing capability the same way every time.
enum class capability {
    two_phase,       ///< prepare, then commit or roll back the prepared branch
    one_phase,       ///< commit without prepare (TMONEPHASE, tpc_commit() unprepared)
    recovery,        ///< list prepared branches and finish them from any connection
    read_only_vote,  ///< a branch that wrote nothing votes XA_RDONLY at prepare
    join,            ///< xa_start(TMJOIN) of an ended branch
    suspend_resume,  ///< xa_end(TMSUSPEND) then xa_start(TMRESUME) on the same thread
    migrate,         ///< resume a suspended branch on another thread (TMMIGRATE)
    async,           ///< TMASYNC and xa_complete
    interleave,      ///< start a branch while another unprepared one holds the connection
    timeout,         ///< tpc_begin's timeout: the server ends a branch inactive for that long
};
inline constexpr capability all_capabilities[] = {
    capability::two_phase,      capability::one_phase, capability::recovery,
    capability::read_only_vote, capability::join,      capability::suspend_resume,
    capability::migrate,        capability::async,     capability::interleave,
    capability::timeout};

XARM_API const char* to_string(capability c) noexcept;

/// One capability as a driver declares it: supported or not, and why.
struct capability_status {
    capability what;
    bool supported;
    std::string reason;  ///< why not; or, when supported, a note on how (may be empty)
};

/// A driver's declaration, complete (every capability named once).
class XARM_API capability_set {
  public:
    capability_set() = default;
    capability_set& yes(capability c, std::string note = {});
    capability_set& no(capability c, std::string reason);
    bool has(capability c) const;
    /// The declaration for c; a capability never declared counts as missing.
    capability_status get(capability c) const;
    std::vector<capability_status> list() const;

  private:
    std::vector<capability_status> m_items;
};

/// A branch's vote at prepare: ok (commit it later) or read_only (nothing to commit).
enum class vote { ok, read_only };

}  // namespace xarm
