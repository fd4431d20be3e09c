// The XA protocol, once: flag validation, the chapter-6 state tables (thread
// association T0-T2, branch states S0-S5), capability enforcement, and the mapping of
// every failure to one XA code. Both the C switch and the C++ connection drive it.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "xarm/driver/driver.hpp"
#include "xarm/export.h"
#include "xarm/xa.h"
#include "xarm/xid.hpp"

namespace xarm {

/// Branch states of the XA specification (table 6-4), as this session knows them.
enum class branch_state {
    nonexistent,    ///< S0
    active,         ///< S1: associated with this thread (or suspended, see suspended)
    idle,           ///< S2: ended with TMSUCCESS
    prepared,       ///< S3
    rollback_only,  ///< S4
    heuristic,      ///< S5
};
XARM_API const char* to_string(branch_state s) noexcept;

/// One resource manager instance for one thread of control: a native session plus the
/// protocol state. Every verb validates its flags and state, then calls the driver's
/// primitive; it returns XA_OK or XA_RDONLY, or throws xarm::error with one XA code.
class XARM_API rm_session {
  public:
    /// secrets: values (passwords) scrubbed from every message this session reports.
    rm_session(std::shared_ptr<const driver> drv, std::unique_ptr<native_session> native,
               std::vector<std::string> secrets = {});
    ~rm_session();
    rm_session(const rm_session&) = delete;
    rm_session& operator=(const rm_session&) = delete;
    rm_session(rm_session&&) = delete;
    rm_session& operator=(rm_session&&) = delete;

    int start(const xid& x, long flags);
    /// A new branch (flags without TMJOIN and TMRESUME) that the server ends once it has
    /// been inactive for `timeout` (capability::timeout; 0: none, as start(x, flags)).
    int start(const xid& x, long flags, std::chrono::seconds timeout);
    int end(const xid& x, long flags);
    int prepare(const xid& x, long flags);
    int commit(const xid& x, long flags);
    int rollback(const xid& x, long flags);
    int forget(const xid& x, long flags);
    /// xa_recover's paging contract: TMSTARTRSCAN takes a snapshot, TMNOFLAGS continues
    /// it, TMENDRSCAN closes it. Foreign names are left out without shortening a page.
    int recover(XID* out, long count, long flags);
    /// Every prepared branch, foreign names included (C++ tpc_recover).
    std::vector<xid> recover_all();

    /// Statement execution and local transactions, with the same error handling.
    std::int64_t execute(std::string_view sql);
    result query(std::string_view sql);
    /// One statement with bound parameters; sql already has the placeholders syntax()
    /// asks for, as many as params.
    result execute(std::string_view sql, std::span<const value> params, bool rows);
    /// Prepared statements, kept here (and destroyed before the native session) under an
    /// id; release forgets one (an unknown id is ignored).
    std::uint64_t prepare(std::string_view sql, std::size_t params);
    result execute_prepared(std::uint64_t id, std::span<const value> params, bool rows);
    void release(std::uint64_t id) noexcept;
    const sql_syntax& syntax() const noexcept { return m_syntax; }
    void commit_local();
    void rollback_local();
    /// native_session::defer_statement for the branch associated with this thread (false
    /// when none is, or it is not active), and withdraw_deferred.
    bool defer(std::string_view sql, std::span<const value> params);
    bool withdraw_deferred();

    /// False once the connection was lost (XAER_RMFAIL): only close or reopen help.
    bool usable() const noexcept { return !m_failed; }
    /// Can the session be closed now (xa_close): not while a branch is associated.
    void check_closable() const;

    /// Refuses a capability the driver declares missing: code (XAER_RMERR for most),
    /// SQLSTATE 0A000, the declared reason (not_supported_error in C++).
    void require(capability c, int code, const char* what) const;

    branch_state state_of(const xid& x) const;
    std::optional<xid> associated() const { return m_current; }
    capability_set capabilities() const { return m_caps; }
    const driver& drv() const noexcept { return *m_driver; }
    std::shared_ptr<const driver> driver_ptr() const noexcept { return m_driver; }
    native_session& native() noexcept { return *m_native; }

  private:
    struct branch {
        branch_state state = branch_state::nonexistent;
        bool suspended = false;  // S1 whose association is suspended (T2)
        int rollback_code = 0;   // for S4: the XA_RB* code to report
    };
    void check_usable() const;
    /// Runs a driver primitive; on XAER_RMFAIL marks the session failed, and fills in
    /// the driver name. in_doubt: an RMFAIL here leaves the outcome unknown.
    template <class F>
    auto call(F&& f, bool in_doubt = false) -> decltype(f());
    branch* find(const xid& x);
    void check_no_branch_work(const char* verb) const;
    [[noreturn]] void state_error(int code, const xid& x, const char* verb, const char* why) const;

    std::shared_ptr<const driver> m_driver;
    std::unique_ptr<native_session> m_native;
    // After m_native: destroyed first, while the session they belong to still exists.
    std::map<std::uint64_t, std::unique_ptr<native_statement>> m_statements;
    std::uint64_t m_next_statement = 0;
    std::vector<std::string> m_secrets;
    capability_set m_caps;
    sql_syntax m_syntax;
    std::map<xid, branch> m_branches;
    std::optional<xid> m_current;  // T1: the branch this thread is associated with
    bool m_failed = false;
    // xa_recover scan
    bool m_scan_open = false;
    std::vector<xid> m_scan;
    std::size_t m_scan_pos = 0;
};

/// Opens a connection through drv and wraps it in a session. Errors carry the driver's
/// name and never a secret of info.
XARM_API std::unique_ptr<rm_session> open_session(std::shared_ptr<const driver> drv,
                                                  std::string_view info);

}  // namespace xarm
