// Internal: running one case in a child process. A third-party switch may crash or hang
// on what a case sends it; the child dies instead of the suite, and the parent names the
// signal and the switch entry that was running.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "xarm/conformance.hpp"

namespace xarm::conformance::isolation {

/// What a child process was doing when it died, for the message.
enum class call : int {
    none = -1,
    xa_open,
    xa_close,
    xa_start,
    xa_end,
    xa_rollback,
    xa_prepare,
    xa_commit,
    xa_recover,
    xa_forget,
    xa_complete,
    native_conn,  ///< the library's native-connection function
    native_sql,   ///< SQL through the database client on the native connection
};
const char* to_string(call c) noexcept;

/// Marks a call into the switch (or the native client) as running, in memory the parent
/// reads after a crash. Cheap; also harmless in-process.
class call_mark {
  public:
    call_mark(call c, int rmid) noexcept;
    ~call_mark();
    call_mark(const call_mark&) = delete;
    call_mark& operator=(const call_mark&) = delete;

  private:
    int m_token;
};

/// In a child: tells the parent what the case created, so that what a crash leaves
/// behind can still be cleaned up. No-ops in-process.
void track_xid(const xid& x);
void track_table(const std::string& name);

/// How a child ended.
struct child_end {
    bool finished = false;  ///< the child reported a result
    case_result result;     ///< when finished
    std::string death;      ///< otherwise: "SIGSEGV", "exit status 1", "timeout", "interrupted"
    std::string in_call;    ///< the call running when it died ("xa_start (rmid 4101)"), or ""
    std::vector<xid> xids;  ///< what the case created (for cleanup)
    std::vector<std::string> tables;
};

/// Runs fn in a child process (its own process group, killed after timeout seconds or
/// when a stop is requested) and returns how it ended.
child_end run_in_child(const std::function<case_result()>& fn, double timeout_seconds);

}  // namespace xarm::conformance::isolation
