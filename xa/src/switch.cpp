#include "xarm/driver/switch.hpp"

#include <chrono>
#include <cstring>
#include <new>
#include <unordered_map>

#include <fmt/format.h>

#include "xarm/driver/info.hpp"
#include "xarm/driver/protocol.hpp"
#include "xarm/driver/trace.hpp"

namespace xarm {

namespace {

// One session per (thread, rmid): the XA thread-of-control model. Destroyed (and the
// connections closed) when the thread exits.
struct thread_state {
    std::unordered_map<int, std::unique_ptr<rm_session>> sessions;
    std::unordered_map<int, diagnostic> failures;  // absent: the last call succeeded
};
thread_local thread_state tls;

void record(int rmid, diagnostic d) noexcept {
    try {
        tls.failures[rmid] = std::move(d);
    } catch (...) {
        // Out of memory while recording: the return code still tells the monitor.
    }
}

// The single exit point of every switch entry: exactly one XA code comes out.
template <class F>
int guarded(int rmid, F&& f) noexcept {
    try {
        int rc = f();
        // Every call passes here: no hash lookup while nothing failed.
        if (auto& failures = tls.failures; !failures.empty()) failures.erase(rmid);
        return rc;
    } catch (const error& e) {
        diagnostic d = e.diag();
        if (d.xa_code == XA_OK || d.xa_code == XA_RDONLY) d.xa_code = XAER_RMERR;
        const int rc = d.xa_code;
        record(rmid, std::move(d));
        return rc;
    } catch (const std::bad_alloc&) {
        record(rmid, {XAER_RMERR, "53200", 0, {}, "out of memory"});
    } catch (const std::exception& e) {
        record(rmid, {XAER_RMERR, "HY000", 0, {}, e.what()});
    } catch (...) {
        record(rmid, {XAER_RMERR, "HY000", 0, {}, "unknown failure"});
    }
    return XAER_RMERR;
}

/// guarded(), and with XARM_TRACE one line per call: what was asked (detail() is only
/// evaluated when tracing), the code returned, the diagnostic, the time taken.
template <class Detail, class F>
int entry(const char* verb, int rmid, Detail detail, F&& f) noexcept {
    if (!trace_enabled()) return guarded(rmid, std::forward<F>(f));
    const auto t0 = std::chrono::steady_clock::now();
    const int rc = guarded(rmid, std::forward<F>(f));
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    try {
        std::string line =
            fmt::format("{} rmid={} {} -> {} ({} us)", verb, rmid, detail(), xa_code_name(rc), us);
        if (auto it = tls.failures.find(rmid); it != tls.failures.end())
            line += fmt::format(": {} [SQLSTATE {}]", it->second.message, it->second.sqlstate);
        trace(line);
    } catch (...) {
    }
    return rc;
}

std::string describe(const XID* c, long flags) {
    std::string x;
    try {
        x = c == nullptr ? std::string("NULL") : xid::from_c(c).to_string();
    } catch (const std::exception&) {
        x = "(malformed)";
    }
    return fmt::format("xid={} flags={:#x}", x, static_cast<unsigned long>(flags));
}

[[noreturn]] void proto(std::string msg) {
    raise(XAER_PROTO, "XAE06", std::move(msg));
}

rm_session& session_for(driver_getter get, int rmid, const char* verb) {
    auto it = tls.sessions.find(rmid);
    if (it == tls.sessions.end())
        proto(
            fmt::format("{}: rmid {} is not open on this thread; call xa_open first", verb, rmid));
    if (&it->second->drv() != get().get())
        proto(fmt::format("{}: rmid {} was opened by the {} driver on this thread", verb, rmid,
                          it->second->drv().name()));
    return *it->second;
}

template <class Verb>
int branch_call(driver_getter get, const XID* c, int rmid, long flags, const char* verb,
                Verb&& v) noexcept {
    return entry(
        verb, rmid, [&] { return describe(c, flags); },
        [&] {
            rm_session& s = session_for(get, rmid, verb);
            return v(s, xid::from_c(c));
        });
}

}  // namespace

int switch_open(driver_getter get, const char* info, int rmid, long flags) noexcept {
    const auto detail = [&] {
        const std::string i = info == nullptr ? "" : info;
        return fmt::format("info='{}' flags={:#x}", scrub(i, secrets_in(i)),
                           static_cast<unsigned long>(flags));
    };
    return entry("xa_open", rmid, detail, [&] {
        if (flags & TMASYNC)
            raise(XAER_ASYNC, "0A000", "xa_open: asynchronous mode (TMASYNC) is not supported");
        if (flags != TMNOFLAGS) raise(XAER_INVAL, "XAE05", "xa_open: invalid flags");
        auto drv = get();
        auto it = tls.sessions.find(rmid);
        if (it != tls.sessions.end()) {
            if (&it->second->drv() != drv.get())
                raise(XAER_INVAL, "XAE05",
                      fmt::format("xa_open: rmid {} is already open with the {} driver", rmid,
                                  it->second->drv().name()));
            if (it->second->usable()) return XA_OK;  // R1 -> R1: already open
            tls.sessions.erase(it);                  // lost connection: open anew
        }
        try {
            tls.sessions.emplace(rmid, open_session(drv, info == nullptr ? "" : info));
        } catch (const error& e) {
            // xa_open may only answer XAER_RMERR or XAER_INVAL for a failed open.
            diagnostic d = e.diag();
            if (d.xa_code != XAER_INVAL) d.xa_code = XAER_RMERR;
            raise(std::move(d));
        }
        return XA_OK;
    });
}

int switch_close(driver_getter get, const char*, int rmid, long flags) noexcept {
    const auto detail = [&] {
        return fmt::format("flags={:#x}", static_cast<unsigned long>(flags));
    };
    return entry("xa_close", rmid, detail, [&] {
        if (flags & TMASYNC)
            raise(XAER_ASYNC, "0A000", "xa_close: asynchronous mode (TMASYNC) is not supported");
        if (flags != TMNOFLAGS) raise(XAER_INVAL, "XAE05", "xa_close: invalid flags");
        auto it = tls.sessions.find(rmid);
        if (it == tls.sessions.end()) return XA_OK;  // R0 -> R0
        if (&it->second->drv() != get().get())
            proto(fmt::format("xa_close: rmid {} belongs to the {} driver", rmid,
                              it->second->drv().name()));
        it->second->check_closable();
        tls.sessions.erase(it);
        return XA_OK;
    });
}

int switch_start(driver_getter get, const XID* x, int rmid, long flags) noexcept {
    return branch_call(get, x, rmid, flags, "xa_start",
                       [&](rm_session& s, const xid& id) { return s.start(id, flags); });
}
int switch_end(driver_getter get, const XID* x, int rmid, long flags) noexcept {
    return branch_call(get, x, rmid, flags, "xa_end",
                       [&](rm_session& s, const xid& id) { return s.end(id, flags); });
}
int switch_rollback(driver_getter get, const XID* x, int rmid, long flags) noexcept {
    return branch_call(get, x, rmid, flags, "xa_rollback",
                       [&](rm_session& s, const xid& id) { return s.rollback(id, flags); });
}
int switch_prepare(driver_getter get, const XID* x, int rmid, long flags) noexcept {
    return branch_call(get, x, rmid, flags, "xa_prepare",
                       [&](rm_session& s, const xid& id) { return s.prepare(id, flags); });
}
int switch_commit(driver_getter get, const XID* x, int rmid, long flags) noexcept {
    return branch_call(get, x, rmid, flags, "xa_commit",
                       [&](rm_session& s, const xid& id) { return s.commit(id, flags); });
}
int switch_forget(driver_getter get, const XID* x, int rmid, long flags) noexcept {
    return branch_call(get, x, rmid, flags, "xa_forget",
                       [&](rm_session& s, const xid& id) { return s.forget(id, flags); });
}

int switch_recover(driver_getter get, XID* xids, long count, int rmid, long flags) noexcept {
    const auto detail = [&] {
        return fmt::format("count={} flags={:#x}", count, static_cast<unsigned long>(flags));
    };
    return entry("xa_recover", rmid, detail,
                 [&] { return session_for(get, rmid, "xa_recover").recover(xids, count, flags); });
}

int switch_complete(driver_getter get, int* handle, int* retval, int rmid, long flags) noexcept {
    return guarded(rmid, [&]() -> int {
        if ((flags & ~(TMMULTIPLE | TMNOWAIT)) != 0)
            raise(XAER_INVAL, "XAE05", "xa_complete: invalid flags");
        if (handle == nullptr || retval == nullptr)
            raise(XAER_INVAL, "XAE05", "xa_complete: handle and retval must not be NULL");
        session_for(get, rmid, "xa_complete");
        proto(
            "xa_complete: no asynchronous operation is outstanding (this resource manager "
            "never accepts TMASYNC)");
    });
}

int last_error(int rmid, struct xarm_diag* out) noexcept {
    if (out == nullptr) return -1;
    std::memset(out, 0, sizeof *out);
    auto it = tls.failures.find(rmid);
    if (it == tls.failures.end()) {
        std::memcpy(out->sqlstate, "00000", 6);
        return 1;
    }
    const diagnostic& d = it->second;
    out->xa_code = d.xa_code;
    std::string state = d.sqlstate.size() == 5 ? d.sqlstate : std::string("HY000");
    std::memcpy(out->sqlstate, state.c_str(), 6);
    out->native_code = d.native_code;
    std::string msg = d.driver.empty() ? d.message : d.driver + ": " + d.message;
    std::size_t n = std::min(msg.size(), sizeof out->message - 1);
    std::memcpy(out->message, msg.data(), n);
    out->message[n] = '\0';
    return 0;
}

void* native_handle_for(driver_getter get, int rmid) noexcept {
    try {
        auto it = tls.sessions.find(rmid);
        if (it == tls.sessions.end() || &it->second->drv() != get().get()) return nullptr;
        if (!it->second->usable()) return nullptr;
        return it->second->native().native_handle();
    } catch (...) {
        return nullptr;
    }
}

}  // namespace xarm
