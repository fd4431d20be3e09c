// Any XA resource manager as a participant: a tm::resource driven purely through the
// xa_switch_t of a library (xarm's own driver libraries, LIXA's switches, a vendor's),
// loaded with xarm::load_switch. This is what makes the manager a monitor.
#pragma once

#include <string>
#include <thread>
#include <vector>

#include "xarm/export.h"
#include "xarm/tm.hpp"
#include "xarm/xa.h"

namespace xarm::tm {

/// A resource manager reached only through its xa_switch_t.
///
/// Thread of control (XA): the rmid is opened (xa_open) on the thread that constructs
/// the object, and every call is made on that thread; the destructor closes it there
/// (xa_close). Several objects for the same (thread, rmid) share one xa_open. The
/// manager keeps phase one on the application thread because resource managers differ
/// on whether another thread may prepare a branch (xarm's pq switch, like PostgreSQL,
/// prepares only on the session that did the work), so thread_bound() is true: the
/// coordinator never hands this resource to its worker threads. A call from another
/// thread is a programming_error.
///
/// Answers are mapped once, in one place: XA_RB* = rolled back (rollback_error),
/// XA_RDONLY = a read-only vote, XA_RETRY = try again later (error with XA_RETRY,
/// which the coordinator retries and then leaves to recovery), XA_HEUR* = heuristic
/// (heuristic_error, after xa_forget of the branch), XAER_RMFAIL = in doubt
/// (operational_error). A code the XA specification does not allow for the verb is
/// never taken for success: for a commit it is a heuristic hazard, elsewhere an error.
class XARM_API switch_resource final : public resource {
  public:
    struct options {
        std::string name;     ///< the name the log records branches under
        std::string library;  ///< a path, or an xarm driver name (pq, mysql, ...)
        std::string symbol;   ///< the switch's symbol; empty: lixa_get_xa_switch()
        std::string open;     ///< xa_open's info string (may hold a password: never shown)
        int rmid = 1;         ///< the rmid this thread opens it under
        /// Branches asked per xa_recover call (a bounded page).
        long recover_page = 64;
        /// A scan that has not ended after this many pages is an error (a switch that
        /// answers full pages for ever).
        int max_recover_pages = 10000;
    };
    /// Loads the switch, checks that the manager can drive it (see switch_problems) and
    /// opens the rmid on this thread. Errors name the library and the reason.
    explicit switch_resource(options o);
    ~switch_resource() override;
    switch_resource(const switch_resource&) = delete;
    switch_resource& operator=(const switch_resource&) = delete;

    /// Why the manager cannot drive sw (empty when it can): a NULL entry point, flags
    /// with TMREGISTER (dynamic registration through ax_reg: the manager registers every
    /// resource statically) or bits no XA flag defines, a version other than 0.
    /// TMNOMIGRATE is fine (the manager never migrates a branch); TMUSEASYNC too (the
    /// manager calls synchronously, which every resource manager supports).
    static std::vector<std::string> switch_problems(const xa_switch_t& sw);

    int rmid() const noexcept { return m_opts.rmid; }
    const xa_switch_t& xa_switch() const noexcept { return *m_sw; }
    /// True while a branch is associated with the thread (between begin and end).
    bool active() const noexcept { return m_active; }
    /// Ends the associated branch with TMFAIL (marks it rollback-only), e.g. on a timeout.
    void fail_active();
    /// xa_forget of a heuristically completed branch.
    void forget(const xid& x);

    std::string name() const override { return m_opts.name; }
    bool can_prepare() const override { return true; }
    bool thread_bound() const noexcept override { return true; }
    void begin(const xid& x) override;
    vote prepare(const xid& x) override;
    void commit(const xid& x, bool one_phase) override;
    void rollback(const xid& x) override;
    std::vector<xid> recover() override;
    void commit_recovered(const xid& x) override;
    void rollback_recovered(const xid& x) override;

  private:
    void on_home_thread(const char* verb) const;
    void end_active(long flags);
    /// Maps a non-XA_OK answer of `verb` to the exception it means (never returns).
    [[noreturn]] void fail(const char* verb, int rc, const xid* x, bool one_phase = false);
    void commit_branch(const xid& x, long flags);

    options m_opts;
    xa_switch_t* m_sw = nullptr;
    std::string m_rm;              // the switch's name, for messages
    void* m_last_error = nullptr;  // the library's own xarm_last_error, if any
    std::thread::id m_home;
    bool m_opened = false;
    bool m_active = false;
    xid m_active_xid;
};

}  // namespace xarm::tm
