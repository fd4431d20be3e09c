// tm::switch_resource: any xa_switch_t as a participant of the manager's transactions.
#include "xarm/tm_switch.hpp"

#include <dlfcn.h>

#include <cstring>
#include <map>
#include <utility>

#include <fmt/format.h>

#include "xarm/connection.hpp"
#include "xarm/driver/trace.hpp"
#include "xarm/error.hpp"
#include "xarm/xarm.h"

namespace xarm::tm {

namespace {

/// The rmids this thread has opened through switch resources, with how many objects
/// use each: one xa_open per (thread, rmid), closed by the last user.
struct open_rm {
    const xa_switch_t* sw = nullptr;
    int users = 0;
};
thread_local std::map<int, open_rm> t_open;

using last_error_fn = int (*)(int, xarm_diag*);

/// Whether the XA specification lets `verb` answer rc.
bool in_spec(std::string_view verb, int rc) {
    const bool rb = is_rollback_code(rc), heur = is_heuristic_code(rc);
    const bool common = rc == XA_OK || rc == XAER_ASYNC || rc == XAER_RMERR || rc == XAER_RMFAIL ||
                        rc == XAER_INVAL || rc == XAER_PROTO;
    if (verb == "xa_open" || verb == "xa_close")
        return rc == XA_OK || rc == XAER_RMERR || rc == XAER_INVAL || rc == XAER_PROTO ||
               rc == XAER_ASYNC;
    if (verb == "xa_start")
        return common || rb || rc == XA_RETRY || rc == XAER_DUPID || rc == XAER_OUTSIDE ||
               rc == XAER_NOTA;
    if (verb == "xa_end") return common || rb || rc == XA_NOMIGRATE || rc == XAER_NOTA;
    if (verb == "xa_prepare") return common || rb || rc == XA_RDONLY || rc == XAER_NOTA;
    // A two-phase commit answering XA_RB* is outside the specification, but its meaning
    // (the branch is rolled back) is plain: taken as such, it is reported, never hidden.
    if (verb == "xa_commit") return common || heur || rb || rc == XA_RETRY || rc == XAER_NOTA;
    if (verb == "xa_rollback") return common || heur || rb || rc == XAER_NOTA;
    if (verb == "xa_forget") return common || rc == XAER_NOTA;
    if (verb == "xa_recover")
        return rc >= 0 || rc == XAER_RMERR || rc == XAER_RMFAIL || rc == XAER_INVAL ||
               rc == XAER_PROTO;
    return false;
}

std::string code_text(int rc) {
    const std::string_view n = xa_code_name(rc);
    return n.empty() || n.starts_with("XA_UNKNOWN") ? std::to_string(rc)
                                                    : fmt::format("{} ({})", n, rc);
}

/// The switch library's own xarm_last_error (xarm's drivers export it), for the reason
/// behind an answer; null for a library that does not define it itself (a wrapper's
/// dependency would describe another switch's calls).
last_error_fn own_last_error(const xa_switch_t* sw) {
    Dl_info where{}, found{};
    if (dladdr(sw, &where) == 0 || where.dli_fname == nullptr) return nullptr;
    void* h = dlopen(where.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    if (h == nullptr) return nullptr;
    void* f = dlsym(h, "xarm_last_error");
    dlclose(h);  // still loaded: the switch came from it
    if (f == nullptr || dladdr(f, &found) == 0 || found.dli_fbase != where.dli_fbase)
        return nullptr;
    return reinterpret_cast<last_error_fn>(f);
}

}  // namespace

std::vector<std::string> switch_resource::switch_problems(const xa_switch_t& sw) {
    return xarm::switch_problems(sw);
}

switch_resource::switch_resource(options o)
    : m_opts(std::move(o)), m_home(std::this_thread::get_id()) {
    if (m_opts.recover_page < 1) m_opts.recover_page = 1;
    m_sw = load_switch(m_opts.library, m_opts.symbol);
    m_rm.assign(m_sw->name, strnlen(m_sw->name, RMNAMESZ));
    m_last_error = reinterpret_cast<void*>(own_last_error(m_sw));
    const auto problems = switch_problems(*m_sw);
    if (!problems.empty()) {
        std::string why;
        for (const auto& p : problems) why += (why.empty() ? "" : "; ") + p;
        raise(XAER_INVAL, "F0000",
              fmt::format("tm: resource '{}': the XA switch of '{}' cannot be used: {}",
                          m_opts.name, m_opts.library, why));
    }
    auto& slot = t_open[m_opts.rmid];
    if (slot.users > 0 && slot.sw != m_sw)
        raise(XAER_INVAL, "22023",
              fmt::format("tm: resource '{}': rmid {} is already open on this thread with "
                          "another switch",
                          m_opts.name, m_opts.rmid));
    if (slot.users == 0) {
        std::string info = m_opts.open;  // xa_open takes a char*
        const int rc = m_sw->xa_open_entry(info.data(), m_opts.rmid, TMNOFLAGS);
        if (rc != XA_OK) {
            t_open.erase(m_opts.rmid);
            fail("xa_open", rc, nullptr);
        }
        slot.sw = m_sw;
    }
    ++slot.users;
    m_opened = true;
}

switch_resource::~switch_resource() {
    if (!m_opened || std::this_thread::get_id() != m_home) return;  // cannot close elsewhere
    if (m_active) {
        try {
            fail_active();
        } catch (...) {
        }
    }
    auto it = t_open.find(m_opts.rmid);
    if (it == t_open.end() || --it->second.users > 0) return;
    t_open.erase(it);
    std::string info = m_opts.open;
    (void)m_sw->xa_close_entry(info.data(), m_opts.rmid, TMNOFLAGS);
}

void switch_resource::on_home_thread(const char* verb) const {
    if (std::this_thread::get_id() != m_home)
        raise(XAER_PROTO, "25000",
              fmt::format("tm: resource '{}': {} on a thread that did not open rmid {} (the XA "
                          "thread of control: a switch resource is used on the thread that "
                          "made it)",
                          m_opts.name, verb, m_opts.rmid));
}

void switch_resource::fail(const char* verb, int rc, const xid* x, bool one_phase) {
    diagnostic d;
    const std::string what = fmt::format(
        "tm: resource '{}' (switch {}, rmid {}): {}{} answered {}", m_opts.name, m_rm, m_opts.rmid,
        verb, x != nullptr ? " of " + x->to_string() : std::string(), code_text(rc));
    d.message = what;
    if (m_last_error != nullptr) {
        xarm_diag why{};
        if (reinterpret_cast<last_error_fn>(m_last_error)(m_opts.rmid, &why) == 0) {
            why.message[sizeof why.message - 1] = '\0';
            why.sqlstate[sizeof why.sqlstate - 1] = '\0';
            d.message += fmt::format(": {}", why.message);
            d.sqlstate = why.sqlstate;
            d.native_code = why.native_code;
        }
    }
    if (!in_spec(verb, rc)) {
        const bool commit = std::string_view(verb) == "xa_commit";
        // Never success. A commit whose answer means nothing may have committed or not.
        d.xa_code = commit && one_phase ? XA_HEURHAZ : XAER_RMERR;
        d.sqlstate = "XX000";
        d.message += commit ? ", a code the XA specification does not allow: the outcome of "
                              "the commit is unknown"
                            : ", a code the XA specification does not allow";
        raise(std::move(d));
    }
    d.xa_code = rc;
    if (d.sqlstate.empty()) {
        if (is_rollback_code(rc)) d.sqlstate = "40000";
        if (rc == XA_RETRY) d.sqlstate = "40001";
        if (rc == XAER_RMFAIL) d.sqlstate = "08006";
        if (rc == XAER_NOTA) d.sqlstate = "XAE04";
        if (rc == XAER_OUTSIDE) d.sqlstate = "25001";
    }
    if (is_heuristic_code(rc) && x != nullptr) {
        // The resource manager keeps a heuristic branch until told to forget it; the
        // outcome goes into the report instead.
        std::string forgot = "forgotten";
        XID c;
        x->to_c(c);
        const int frc = m_sw->xa_forget_entry(&c, m_opts.rmid, TMNOFLAGS);
        if (frc != XA_OK) forgot = "xa_forget answered " + code_text(frc);
        d.message += " (" + forgot + ")";
    }
    const bool in_doubt = rc == XAER_RMFAIL && (std::string_view(verb) == "xa_prepare" ||
                                                std::string_view(verb) == "xa_commit");
    if (trace_enabled()) trace(d.message);
    raise(std::move(d), in_doubt);
}

void switch_resource::begin(const xid& x) {
    on_home_thread("xa_start");
    if (m_active)
        raise(XAER_PROTO, "25000",
              fmt::format("tm: resource '{}': a branch is already active on this thread",
                          m_opts.name));
    XID c;
    x.to_c(c);
    const int rc = m_sw->xa_start_entry(&c, m_opts.rmid, TMNOFLAGS);
    if (rc != XA_OK) fail("xa_start", rc, &x);
    m_active = true;
    m_active_xid = x;
}

void switch_resource::end_active(long flags) {
    if (!m_active) return;
    m_active = false;
    XID c;
    m_active_xid.to_c(c);
    const int rc = m_sw->xa_end_entry(&c, m_opts.rmid, flags);
    if (rc == XA_OK) return;
    if (flags == TMFAIL && is_rollback_code(rc)) return;  // what TMFAIL asks for
    fail("xa_end", rc, &m_active_xid);
}

void switch_resource::fail_active() {
    on_home_thread("xa_end");
    end_active(TMFAIL);
}

vote switch_resource::prepare(const xid& x) {
    on_home_thread("xa_prepare");
    end_active(TMSUCCESS);
    XID c;
    x.to_c(c);
    const int rc = m_sw->xa_prepare_entry(&c, m_opts.rmid, TMNOFLAGS);
    if (rc == XA_OK) return vote::ok;
    if (rc == XA_RDONLY) return vote::read_only;
    fail("xa_prepare", rc, &x);
}

void switch_resource::commit_branch(const xid& x, long flags) {
    XID c;
    x.to_c(c);
    const int rc = m_sw->xa_commit_entry(&c, m_opts.rmid, flags);
    if (rc != XA_OK) fail("xa_commit", rc, &x, flags == TMONEPHASE);
}

void switch_resource::commit(const xid& x, bool one_phase) {
    on_home_thread("xa_commit");
    if (one_phase) end_active(TMSUCCESS);
    commit_branch(x, one_phase ? TMONEPHASE : TMNOFLAGS);
}

void switch_resource::rollback(const xid& x) {
    on_home_thread("xa_rollback");
    try {
        end_active(TMFAIL);
    } catch (const error&) {
        // the rollback below says what state the branch is in
    }
    XID c;
    x.to_c(c);
    const int rc = m_sw->xa_rollback_entry(&c, m_opts.rmid, TMNOFLAGS);
    // Rolled back, or unknown to the resource manager: nothing of it remains.
    if (rc == XA_OK || is_rollback_code(rc) || rc == XAER_NOTA) return;
    fail("xa_rollback", rc, &x);
}

std::vector<xid> switch_resource::recover() {
    on_home_thread("xa_recover");
    std::vector<xid> out;
    std::vector<XID> page(static_cast<std::size_t>(m_opts.recover_page));
    long flags = TMSTARTRSCAN;
    for (int n = 0;; ++n) {
        if (n >= m_opts.max_recover_pages) {
            std::vector<XID> end_page(1);
            (void)m_sw->xa_recover_entry(end_page.data(), 0, m_opts.rmid, TMENDRSCAN);
            raise(XAER_RMERR, "XX000",
                  fmt::format("tm: resource '{}' (switch {}): the xa_recover scan did not end "
                              "after {} pages of {}",
                              m_opts.name, m_rm, n, m_opts.recover_page));
        }
        const int rc = m_sw->xa_recover_entry(page.data(), m_opts.recover_page, m_opts.rmid, flags);
        if (rc < 0) fail("xa_recover", rc, nullptr);
        if (rc > m_opts.recover_page)
            raise(XAER_RMERR, "XX000",
                  fmt::format("tm: resource '{}' (switch {}): xa_recover returned {} branches "
                              "for a page of {}",
                              m_opts.name, m_rm, rc, m_opts.recover_page));
        for (int i = 0; i < rc; ++i) {
            try {
                out.push_back(xid::from_c(&page[static_cast<std::size_t>(i)]));
            } catch (const error&) {
                // not a valid XID: not one of this manager's, nothing to recover
            }
        }
        if (rc < m_opts.recover_page) break;  // a short page ends the scan
        flags = TMNOFLAGS;
    }
    // Close the scan (a short page already ended it for xarm's switches; others want
    // TMENDRSCAN). Whatever it still returns belongs to the list.
    const int rc =
        m_sw->xa_recover_entry(page.data(), m_opts.recover_page, m_opts.rmid, TMENDRSCAN);
    for (int i = 0; i < rc && i < m_opts.recover_page; ++i) {
        try {
            out.push_back(xid::from_c(&page[static_cast<std::size_t>(i)]));
        } catch (const error&) {
        }
    }
    return out;
}

void switch_resource::commit_recovered(const xid& x) {
    on_home_thread("xa_commit");
    commit_branch(x, TMNOFLAGS);
}

void switch_resource::rollback_recovered(const xid& x) {
    on_home_thread("xa_rollback");
    XID c;
    x.to_c(c);
    const int rc = m_sw->xa_rollback_entry(&c, m_opts.rmid, TMNOFLAGS);
    if (rc == XA_OK || is_rollback_code(rc)) return;
    fail("xa_rollback", rc, &x);
}

void switch_resource::forget(const xid& x) {
    on_home_thread("xa_forget");
    XID c;
    x.to_c(c);
    const int rc = m_sw->xa_forget_entry(&c, m_opts.rmid, TMNOFLAGS);
    if (rc != XA_OK) fail("xa_forget", rc, &x);
}

}  // namespace xarm::tm
