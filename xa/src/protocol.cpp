#include "xarm/driver/protocol.hpp"

#include <algorithm>
#include <new>

#include <fmt/format.h>

#include "xarm/driver/info.hpp"
#include "xarm/xa.h"

namespace xarm {

namespace {

// SQLSTATEs for failures the protocol itself detects, in the "XAE0n" family MySQL uses
// for XAER codes (n = -code), and "XA1nn" for rollback codes.
std::string sqlstate_for(int code) {
    if (code < 0 && code >= -9) return fmt::format("XAE0{}", -code);
    if (is_rollback_code(code)) return fmt::format("XA{}", code);
    return "HY000";
}

[[noreturn]] void protocol_error(int code, std::string msg) {
    raise(code, sqlstate_for(code), std::move(msg));
}

void check_flags(long flags, long allowed, const char* verb) {
    if ((flags & ~allowed) != 0)
        protocol_error(XAER_INVAL, fmt::format("{}: invalid flags 0x{:08x} (allowed: 0x{:08x})",
                                               verb, static_cast<unsigned long>(flags),
                                               static_cast<unsigned long>(allowed)));
}

}  // namespace

const char* to_string(branch_state s) noexcept {
    switch (s) {
        case branch_state::nonexistent:
            return "non-existent (S0)";
        case branch_state::active:
            return "active (S1)";
        case branch_state::idle:
            return "idle (S2)";
        case branch_state::prepared:
            return "prepared (S3)";
        case branch_state::rollback_only:
            return "rollback-only (S4)";
        case branch_state::heuristic:
            return "heuristically completed (S5)";
    }
    return "unknown";
}

rm_session::rm_session(std::shared_ptr<const driver> drv, std::unique_ptr<native_session> native,
                       std::vector<std::string> secrets)
    : m_driver(std::move(drv)), m_native(std::move(native)), m_secrets(std::move(secrets)) {
    m_caps = m_native->capabilities();
    m_syntax = m_native->syntax();
}

rm_session::~rm_session() = default;

template <class F>
auto rm_session::call(F&& f, bool in_doubt) -> decltype(f()) {
    diagnostic d;
    bool doubt = false;
    try {
        return f();
    } catch (const operational_error& e) {
        d = e.diag();
        doubt = e.in_doubt();
    } catch (const error& e) {
        d = e.diag();
    } catch (const std::bad_alloc&) {
        d = {XAER_RMERR, "53200", 0, {}, "out of memory"};
    } catch (const std::exception& e) {
        d = {XAER_RMERR, "HY000", 0, {}, e.what()};
    }
    if (d.driver.empty()) d.driver = std::string(m_driver->name());
    d.message = scrub(std::move(d.message), m_secrets);
    if (d.xa_code == XA_OK || d.xa_code == XA_RDONLY) d.xa_code = XAER_RMERR;  // never "success"
    if (d.xa_code == XAER_RMFAIL) {
        // The connection is gone: the server rolled back every unprepared branch.
        m_failed = true;
        m_current.reset();
        std::erase_if(m_branches, [](const auto& kv) {
            return kv.second.state != branch_state::prepared &&
                   kv.second.state != branch_state::heuristic;
        });
        doubt = doubt || in_doubt;
    }
    raise(std::move(d), doubt);
}

rm_session::branch* rm_session::find(const xid& x) {
    auto it = m_branches.find(x);
    return it == m_branches.end() ? nullptr : &it->second;
}

branch_state rm_session::state_of(const xid& x) const {
    auto it = m_branches.find(x);
    return it == m_branches.end() ? branch_state::nonexistent : it->second.state;
}

void rm_session::state_error(int code, const xid& x, const char* verb, const char* why) const {
    protocol_error(code, fmt::format("{}({}): {}", verb, x.to_string(), why));
}

void rm_session::require(capability c, int code, const char* what) const {
    if (m_caps.has(c)) return;
    auto s = m_caps.get(c);
    raise(diagnostic{
        code, "0A000", 0, std::string(m_driver->name()),
        fmt::format("{} is not supported by the {} driver: {}", what, m_driver->name(), s.reason)});
}

void rm_session::check_usable() const {
    if (m_failed)
        raise(diagnostic{XAER_RMFAIL, "08003", 0, std::string(m_driver->name()),
                         "the connection was lost earlier; close and open the resource manager "
                         "again"});
}

void rm_session::check_closable() const {
    if (m_current)
        protocol_error(XAER_PROTO, fmt::format("xa_close: this thread is still associated with "
                                               "branch {}; call xa_end first",
                                               m_current->to_string()));
    for (const auto& [x, b] : m_branches)
        if (b.state == branch_state::active)
            protocol_error(XAER_PROTO, fmt::format("xa_close: branch {} is suspended on this "
                                                   "thread; end it first",
                                                   x.to_string()));
}

int rm_session::start(const xid& x, long flags) {
    return start(x, flags, std::chrono::seconds{0});
}

int rm_session::start(const xid& x, long flags, std::chrono::seconds timeout) {
    check_flags(flags, TMJOIN | TMRESUME | TMNOWAIT | TMASYNC, "xa_start");
    if (timeout.count() < 0)
        protocol_error(XAER_INVAL, "xa_start: a timeout is a number of seconds, 0 (none) or more");
    if (timeout.count() > 0 && (flags & (TMJOIN | TMRESUME)))
        protocol_error(XAER_INVAL,
                       "xa_start: a timeout is given to a new branch only (a joined or resumed "
                       "branch keeps its own)");
    if (timeout.count() > 0) require(capability::timeout, XAER_RMERR, "a branch timeout");
    if ((flags & TMJOIN) && (flags & TMRESUME))
        protocol_error(XAER_INVAL, "xa_start: TMJOIN and TMRESUME exclude each other");
    if (flags & TMASYNC) require(capability::async, XAER_ASYNC, "asynchronous xa_start (TMASYNC)");
    check_usable();
    if (m_current)
        state_error(XAER_PROTO, x, "xa_start",
                    "this thread is already associated with a branch; call xa_end first");
    branch* b = find(x);
    if (flags & TMRESUME) {
        require(capability::suspend_resume, XAER_RMERR, "resuming a branch (TMRESUME)");
        if (b == nullptr) state_error(XAER_NOTA, x, "xa_start", "no such branch to resume");
        if (!b->suspended) state_error(XAER_PROTO, x, "xa_start", "the branch is not suspended");
        call([&] { m_native->start(x, start_mode::resume); });
        b->suspended = false;
        m_current = x;
        return XA_OK;
    }
    if (flags & TMJOIN) {
        require(capability::join, XAER_RMERR, "joining a branch (TMJOIN)");
        if (b == nullptr) state_error(XAER_NOTA, x, "xa_start", "no such branch to join");
        switch (b->state) {
            case branch_state::idle:
                break;
            case branch_state::rollback_only:
                state_error(b->rollback_code, x, "xa_start", "the branch is rollback-only");
            case branch_state::active:
                state_error(XAER_PROTO, x, "xa_start",
                            "the branch is suspended; resume it with TMRESUME");
            default:
                state_error(XAER_PROTO, x, "xa_start",
                            "the branch is prepared or heuristically completed");
        }
        try {
            call([&] { m_native->start(x, start_mode::join); });
        } catch (const rollback_error& e) {
            if (b = find(x); b != nullptr) {
                b->state = branch_state::rollback_only;
                b->rollback_code = e.xa_code();
            }
            throw;
        }
        b->state = branch_state::active;
        m_current = x;
        return XA_OK;
    }
    if (b != nullptr) state_error(XAER_DUPID, x, "xa_start", "the branch already exists");
    for (const auto& [other, ob] : m_branches)
        if (ob.state != branch_state::prepared && ob.state != branch_state::heuristic &&
            !m_caps.has(capability::interleave))
            require(capability::interleave, XAER_RMERR,
                    fmt::format("starting a branch while branch {} still holds this connection "
                                "(prepare, commit or roll it back first)",
                                other.to_string())
                        .c_str());
    if (m_native->in_local_transaction())
        state_error(XAER_OUTSIDE, x, "xa_start",
                    "a local transaction is in progress on this connection; commit or roll it "
                    "back first");
    if (timeout.count() > 0) {
        call([&] { m_native->start_with_timeout(x, timeout); });
    } else {
        call([&] { m_native->start(x, start_mode::fresh); });
    }
    m_branches[x] = branch{branch_state::active, false, 0};
    m_current = x;
    return XA_OK;
}

int rm_session::end(const xid& x, long flags) {
    check_flags(flags, TMSUCCESS | TMFAIL | TMSUSPEND | TMMIGRATE | TMASYNC, "xa_end");
    const int kinds =
        ((flags & TMSUCCESS) != 0) + ((flags & TMFAIL) != 0) + ((flags & TMSUSPEND) != 0);
    if (kinds != 1)
        protocol_error(XAER_INVAL,
                       "xa_end: exactly one of TMSUCCESS, TMFAIL, TMSUSPEND is required");
    if ((flags & TMMIGRATE) && !(flags & TMSUSPEND))
        protocol_error(XAER_INVAL, "xa_end: TMMIGRATE goes only with TMSUSPEND");
    if (flags & TMASYNC) require(capability::async, XAER_ASYNC, "asynchronous xa_end (TMASYNC)");
    if (flags & TMMIGRATE)
        require(capability::migrate, XAER_RMERR, "migrating a branch (TMMIGRATE)");
    if (flags & TMSUSPEND)
        require(capability::suspend_resume, XAER_RMERR, "suspending a branch (TMSUSPEND)");
    check_usable();
    branch* b = find(x);
    if (b == nullptr) state_error(XAER_NOTA, x, "xa_end", "no such branch on this thread");
    const bool is_current = m_current && *m_current == x;
    const bool is_suspended = b->state == branch_state::active && b->suspended;
    if (!is_current && !is_suspended)
        state_error(XAER_PROTO, x, "xa_end", "this thread is not associated with the branch");
    if ((flags & TMSUSPEND) && !is_current)
        state_error(XAER_PROTO, x, "xa_end", "the association is already suspended");
    const end_mode mode = (flags & TMSUSPEND) ? end_mode::suspend
                          : (flags & TMFAIL)  ? end_mode::fail
                                              : end_mode::success;
    try {
        call([&] { m_native->end(x, mode); });
    } catch (const rollback_error& e) {
        // The work failed: the branch can only be rolled back now (S4).
        if (b = find(x); b != nullptr) {
            b->state = branch_state::rollback_only;
            b->suspended = false;
            b->rollback_code = e.xa_code();
        }
        m_current.reset();
        throw;
    }
    if (is_current) m_current.reset();
    if (mode == end_mode::suspend) {
        b->suspended = true;
        return XA_OK;
    }
    b->suspended = false;
    if (mode == end_mode::fail) {
        b->state = branch_state::rollback_only;
        b->rollback_code = XA_RBROLLBACK;
        state_error(XA_RBROLLBACK, x, "xa_end", "TMFAIL: the branch is marked rollback-only");
    }
    b->state = branch_state::idle;
    return XA_OK;
}

int rm_session::prepare(const xid& x, long flags) {
    check_flags(flags, TMASYNC, "xa_prepare");
    if (flags & TMASYNC)
        require(capability::async, XAER_ASYNC, "asynchronous xa_prepare (TMASYNC)");
    check_usable();
    branch* b = find(x);
    if (b == nullptr)
        state_error(XAER_NOTA, x, "xa_prepare",
                    "no such branch on this thread's connection (prepare on the connection that "
                    "did the work)");
    switch (b->state) {
        case branch_state::idle:
            break;
        case branch_state::rollback_only: {
            const int code = b->rollback_code;
            call([&] { m_native->rollback(x, false); });
            m_branches.erase(x);
            state_error(code, x, "xa_prepare", "the branch was rollback-only and is rolled back");
        }
        case branch_state::active:
            state_error(XAER_PROTO, x, "xa_prepare",
                        "the branch is still active; call xa_end first");
        case branch_state::prepared:
            state_error(XAER_PROTO, x, "xa_prepare", "the branch is already prepared");
        default:
            state_error(XAER_PROTO, x, "xa_prepare", "the branch was completed heuristically");
    }
    // Missing two-phase support leaves the branch idle: it can still be rolled back or
    // committed in one phase.
    require(capability::two_phase, XAER_RMERR, "two-phase commit (xa_prepare)");
    vote v{};
    try {
        v = call([&] { return m_native->prepare(x); }, true);
    } catch (const rollback_error&) {
        m_branches.erase(x);
        throw;
    }
    if (v == vote::read_only) {
        m_branches.erase(x);
        return XA_RDONLY;
    }
    b->state = branch_state::prepared;
    return XA_OK;
}

int rm_session::commit(const xid& x, long flags) {
    check_flags(flags, TMNOWAIT | TMONEPHASE | TMASYNC, "xa_commit");
    if (flags & TMASYNC) require(capability::async, XAER_ASYNC, "asynchronous xa_commit (TMASYNC)");
    check_usable();
    branch* b = find(x);
    const bool one_phase = (flags & TMONEPHASE) != 0;
    if (one_phase) {
        require(capability::one_phase, XAER_RMERR, "one-phase commit (TMONEPHASE)");
        if (b == nullptr)
            state_error(XAER_NOTA, x, "xa_commit",
                        "no such idle branch on this thread's connection");
        switch (b->state) {
            case branch_state::idle:
                break;
            case branch_state::rollback_only: {
                const int code = b->rollback_code;
                call([&] { m_native->rollback(x, false); });
                m_branches.erase(x);
                state_error(code, x, "xa_commit",
                            "the branch was rollback-only and is rolled back");
            }
            case branch_state::active:
                state_error(XAER_PROTO, x, "xa_commit",
                            "the branch is still active; call xa_end first");
            case branch_state::prepared:
                state_error(XAER_PROTO, x, "xa_commit",
                            "the branch is prepared; commit it without TMONEPHASE");
            default:
                state_error(XAER_PROTO, x, "xa_commit", "the branch was completed heuristically");
        }
    } else if (b != nullptr) {
        if (b->state != branch_state::prepared)
            state_error(XAER_PROTO, x, "xa_commit",
                        b->state == branch_state::heuristic
                            ? "the branch was completed heuristically; call xa_forget"
                            : "the branch is not prepared; prepare it or use TMONEPHASE");
    } else if (!m_caps.has(capability::two_phase)) {
        state_error(XAER_NOTA, x, "xa_commit",
                    "no such branch (this driver never leaves a branch prepared)");
    }
    try {
        call([&] { m_native->commit(x, one_phase); }, true);
    } catch (const rollback_error&) {
        m_branches.erase(x);
        throw;
    } catch (const heuristic_error&) {
        m_branches[x] = branch{branch_state::heuristic, false, 0};
        throw;
    } catch (const error& e) {
        if (e.xa_code() == XAER_NOTA) m_branches.erase(x);  // the server no longer has it
        throw;
    }
    m_branches.erase(x);
    return XA_OK;
}

int rm_session::rollback(const xid& x, long flags) {
    check_flags(flags, TMASYNC, "xa_rollback");
    if (flags & TMASYNC)
        require(capability::async, XAER_ASYNC, "asynchronous xa_rollback (TMASYNC)");
    check_usable();
    branch* b = find(x);
    bool prepared = true;
    if (b != nullptr) {
        switch (b->state) {
            case branch_state::idle:
            case branch_state::rollback_only:
                prepared = false;
                break;
            case branch_state::prepared:
                break;
            case branch_state::active:
                state_error(XAER_PROTO, x, "xa_rollback",
                            "the branch is still associated or suspended; call xa_end first");
            default:
                state_error(XAER_PROTO, x, "xa_rollback",
                            "the branch was completed heuristically; call xa_forget");
        }
    } else if (!m_caps.has(capability::two_phase)) {
        state_error(XAER_NOTA, x, "xa_rollback",
                    "no such branch (this driver never leaves a branch prepared)");
    }
    try {
        call([&] { m_native->rollback(x, prepared); });
    } catch (const rollback_error&) {
        m_branches.erase(x);  // rolled back all the same: the code says why
        throw;
    } catch (const heuristic_error&) {
        m_branches[x] = branch{branch_state::heuristic, false, 0};
        throw;
    }
    m_branches.erase(x);
    return XA_OK;
}

int rm_session::forget(const xid& x, long flags) {
    check_flags(flags, TMASYNC, "xa_forget");
    if (flags & TMASYNC) require(capability::async, XAER_ASYNC, "asynchronous xa_forget (TMASYNC)");
    check_usable();
    branch* b = find(x);
    if (b == nullptr || b->state != branch_state::heuristic)
        state_error(XAER_NOTA, x, "xa_forget", "the branch is not heuristically completed here");
    call([&] { m_native->forget(x); });
    m_branches.erase(x);
    return XA_OK;
}

int rm_session::recover(XID* out, long count, long flags) {
    check_flags(flags, TMSTARTRSCAN | TMENDRSCAN, "xa_recover");
    if (count < 0) protocol_error(XAER_INVAL, "xa_recover: count is negative");
    if (out == nullptr && count > 0) protocol_error(XAER_INVAL, "xa_recover: xids is NULL");
    check_usable();
    require(capability::recovery, XAER_RMERR, "recovery (xa_recover)");
    if (flags & TMSTARTRSCAN) {
        auto all = call([&] { return m_native->recover(); });
        // An XID cannot carry a foreign name: leave those out before paging, so that
        // a skipped one never shortens a page (a short page ends the monitor's scan).
        std::erase_if(all, [](const xid& x) { return x.is_unparsed() || x.is_null(); });
        m_scan = std::move(all);
        m_scan_pos = 0;
        m_scan_open = true;
    } else if (!m_scan_open) {
        protocol_error(XAER_PROTO, "xa_recover: no scan is open; start one with TMSTARTRSCAN");
    }
    const std::size_t n = std::min(static_cast<std::size_t>(count), m_scan.size() - m_scan_pos);
    for (std::size_t i = 0; i < n; ++i) m_scan[m_scan_pos + i].to_c(out[i]);
    m_scan_pos += n;
    if (flags & TMENDRSCAN) {
        m_scan_open = false;
        m_scan.clear();
        m_scan_pos = 0;
    }
    return static_cast<int>(n);
}

std::vector<xid> rm_session::recover_all() {
    check_usable();
    require(capability::recovery, XAER_RMERR, "recovery (tpc_recover)");
    return call([&] { return m_native->recover(); });
}

std::int64_t rm_session::execute(std::string_view sql) {
    check_usable();
    return call([&] { return m_native->execute(sql); });
}

result rm_session::query(std::string_view sql) {
    check_usable();
    return call([&] { return m_native->query(sql); });
}

result rm_session::execute(std::string_view sql, std::span<const value> params, bool rows) {
    check_usable();
    return call([&] { return m_native->execute_params(sql, params, rows); });
}

bool rm_session::defer(std::string_view sql, std::span<const value> params) {
    check_usable();
    if (!m_current) return false;
    const branch* b = find(*m_current);
    if (b == nullptr || b->state != branch_state::active || b->suspended) return false;
    return call([&] { return m_native->defer_statement(sql, params); });
}

bool rm_session::withdraw_deferred() {
    if (!usable()) return false;
    return call([&] { return m_native->withdraw_deferred(); });
}

std::uint64_t rm_session::prepare(std::string_view sql, std::size_t params) {
    check_usable();
    auto st = call([&] { return m_native->prepare(sql, params); });
    const auto id = ++m_next_statement;
    m_statements.emplace(id, std::move(st));
    return id;
}

result rm_session::execute_prepared(std::uint64_t id, std::span<const value> params, bool rows) {
    check_usable();
    auto it = m_statements.find(id);
    if (it == m_statements.end()) protocol_error(XAER_PROTO, "the prepared statement was released");
    return call([&] { return m_native->execute_prepared(*it->second, params, rows); });
}

void rm_session::release(std::uint64_t id) noexcept {
    m_statements.erase(id);
}

void rm_session::check_no_branch_work(const char* verb) const {
    // A prepared branch no longer occupies the connection; any other one does.
    for (const auto& [x, b] : m_branches)
        if (b.state != branch_state::prepared && b.state != branch_state::heuristic)
            protocol_error(XAER_PROTO, fmt::format("{}: branch {} is in progress on this "
                                                   "connection",
                                                   verb, x.to_string()));
}

void rm_session::commit_local() {
    check_usable();
    check_no_branch_work("commit");
    call([&] { m_native->commit_local(); }, true);
}

void rm_session::rollback_local() {
    check_usable();
    check_no_branch_work("rollback");
    call([&] { m_native->rollback_local(); });
}

std::unique_ptr<rm_session> open_session(std::shared_ptr<const driver> drv, std::string_view info) {
    auto secrets = secrets_in(info);
    diagnostic d;
    try {
        auto native = drv->open(info);
        if (!native) raise(XAER_RMERR, "HY000", "the driver returned no connection");
        return std::make_unique<rm_session>(std::move(drv), std::move(native), std::move(secrets));
    } catch (const error& e) {
        d = e.diag();
    } catch (const std::exception& e) {
        d = {XAER_RMERR, "HY000", 0, {}, e.what()};
    }
    d.driver = std::string(drv->name());
    d.message = scrub(std::move(d.message), secrets);
    raise(std::move(d));
}

}  // namespace xarm
