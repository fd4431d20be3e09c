// Turns a driver into an xa_switch_t. Each entry has one exit point: whatever happens
// inside, the monitor gets exactly one XA code, and xarm_last_error() the diagnostic.
#pragma once

#include <memory>

#include "xarm/driver/driver.hpp"
#include "xarm/export.h"
#include "xarm/xa.h"
#include "xarm/xarm.h"

namespace xarm {

using driver_getter = std::shared_ptr<const driver> (*)();

/// The switch entries, parameterised by the driver; sessions are kept one per
/// (thread, rmid), as the XA thread-of-control model requires.
XARM_API int switch_open(driver_getter, const char* info, int rmid, long flags) noexcept;
XARM_API int switch_close(driver_getter, const char* info, int rmid, long flags) noexcept;
XARM_API int switch_start(driver_getter, const XID* x, int rmid, long flags) noexcept;
XARM_API int switch_end(driver_getter, const XID* x, int rmid, long flags) noexcept;
XARM_API int switch_rollback(driver_getter, const XID* x, int rmid, long flags) noexcept;
XARM_API int switch_prepare(driver_getter, const XID* x, int rmid, long flags) noexcept;
XARM_API int switch_commit(driver_getter, const XID* x, int rmid, long flags) noexcept;
XARM_API int switch_recover(driver_getter, XID* xids, long count, int rmid, long flags) noexcept;
XARM_API int switch_forget(driver_getter, const XID* x, int rmid, long flags) noexcept;
XARM_API int switch_complete(driver_getter, int* handle, int* retval, int rmid,
                             long flags) noexcept;

/// The calling thread's last failure on rmid (see xarm_last_error in xarm.h).
XARM_API int last_error(int rmid, struct xarm_diag* out) noexcept;
/// The native handle of the calling thread's session for rmid, when opened by this driver.
XARM_API void* native_handle_for(driver_getter, int rmid) noexcept;

template <driver_getter Get>
struct switch_entries {
    static int open(char* i, int r, long f) { return switch_open(Get, i, r, f); }
    static int close(char* i, int r, long f) { return switch_close(Get, i, r, f); }
    static int start(XID* x, int r, long f) { return switch_start(Get, x, r, f); }
    static int end(XID* x, int r, long f) { return switch_end(Get, x, r, f); }
    static int rollback(XID* x, int r, long f) { return switch_rollback(Get, x, r, f); }
    static int prepare(XID* x, int r, long f) { return switch_prepare(Get, x, r, f); }
    static int commit(XID* x, int r, long f) { return switch_commit(Get, x, r, f); }
    static int recover(XID* x, long c, int r, long f) { return switch_recover(Get, x, c, r, f); }
    static int forget(XID* x, int r, long f) { return switch_forget(Get, x, r, f); }
    static int complete(int* h, int* v, int r, long f) { return switch_complete(Get, h, v, r, f); }
};

}  // namespace xarm

/// Defines a driver library's exported C symbols (docs/DESIGN.md §3): the switch
/// `xarm_<NAME>_switch`, `lixa_get_xa_switch`, `xarm_last_error`, and the C++ entry
/// `xarm_driver_v1` the loader uses. GETTER returns the driver's shared instance.
#define XARM_DEFINE_DRIVER_EXPORTS(NAME, GETTER)                    \
    extern "C" {                                                    \
    XARM_API struct xa_switch_t xarm_##NAME##_switch = {            \
        "xarm_" #NAME,                                              \
        TMNOMIGRATE,                                                \
        0,                                                          \
        &::xarm::switch_entries<GETTER>::open,                      \
        &::xarm::switch_entries<GETTER>::close,                     \
        &::xarm::switch_entries<GETTER>::start,                     \
        &::xarm::switch_entries<GETTER>::end,                       \
        &::xarm::switch_entries<GETTER>::rollback,                  \
        &::xarm::switch_entries<GETTER>::prepare,                   \
        &::xarm::switch_entries<GETTER>::commit,                    \
        &::xarm::switch_entries<GETTER>::recover,                   \
        &::xarm::switch_entries<GETTER>::forget,                    \
        &::xarm::switch_entries<GETTER>::complete,                  \
    };                                                              \
    XARM_API struct xa_switch_t* lixa_get_xa_switch(void) {         \
        return &xarm_##NAME##_switch;                               \
    }                                                               \
    XARM_API int xarm_last_error(int rmid, struct xarm_diag* out) { \
        return ::xarm::last_error(rmid, out);                       \
    }                                                               \
    XARM_API const ::xarm::driver* xarm_driver_v1(void) {           \
        return GETTER().get();                                      \
    }                                                               \
    }
