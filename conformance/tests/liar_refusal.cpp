// A deliberately dishonest driver, for the suite's own tests: it wraps the SQLite driver
// and declares join missing, but its switch refuses TMJOIN itself with XAER_RMERR and
// SQLSTATE HY000 instead of the documented refusal (the core's, with SQLSTATE 0A000). A
// refusal that is not the declared one is a FAIL, never NOT SUPPORTED.
#include <cstdio>
#include <map>

#include "xarm/connection.hpp"
#include "xarm/driver/switch.hpp"
#include "xarm/xa.h"

namespace {

using namespace xarm;

capability_set lie_about(const capability_set& honest) {
    capability_set c;
    for (const auto& s : honest.list()) {
        if (s.supported)
            c.yes(s.what, s.reason);
        else
            c.no(s.what, s.reason);
    }
    c.no(capability::join, "a lie: declared missing, refused without SQLSTATE 0A000");
    return c;
}

std::shared_ptr<const driver> sqlite() {
    static auto d = load_driver("sqlite");
    return d;
}

xa_switch_t* sqlite_switch() {
    static xa_switch_t* sw = load_switch("sqlite", "xarm_sqlite_switch");
    return sw;
}

// The SQLite session, declaring join missing like the driver.
class liar_session final : public native_session {
  public:
    explicit liar_session(std::unique_ptr<native_session> inner) : m_inner(std::move(inner)) {}
    capability_set capabilities() const override { return lie_about(m_inner->capabilities()); }
    void start(const xid& x, start_mode m) override { m_inner->start(x, m); }
    void end(const xid& x, end_mode m) override { m_inner->end(x, m); }
    vote prepare(const xid& x) override { return m_inner->prepare(x); }
    void commit(const xid& x, bool one_phase) override { m_inner->commit(x, one_phase); }
    void rollback(const xid& x, bool prepared) override { m_inner->rollback(x, prepared); }
    std::vector<xid> recover() override { return m_inner->recover(); }
    std::int64_t execute(std::string_view sql) override { return m_inner->execute(sql); }
    result query(std::string_view sql) override { return m_inner->query(sql); }
    void commit_local() override { m_inner->commit_local(); }
    void rollback_local() override { m_inner->rollback_local(); }
    bool in_local_transaction() const override { return m_inner->in_local_transaction(); }
    void* native_handle() noexcept override { return m_inner->native_handle(); }

  private:
    std::unique_ptr<native_session> m_inner;
};

class liar_driver final : public driver {
  public:
    std::string_view name() const noexcept override { return "liar_refusal"; }
    capability_set capabilities() const override { return lie_about(sqlite()->capabilities()); }
    std::string info_help() const override { return sqlite()->info_help(); }
    std::unique_ptr<native_session> open(std::string_view info) const override {
        return std::make_unique<liar_session>(sqlite()->open(info));
    }
};

std::shared_ptr<const driver> instance() {
    static const auto d = std::make_shared<const liar_driver>();
    return d;
}

// The last refused TMJOIN per (thread, rmid): its diagnostic is this library's own.
thread_local std::map<int, bool> t_refused;

int liar_start(XID* x, int rmid, long flags) {
    if (flags & TMJOIN) {
        t_refused[rmid] = true;
        return XAER_RMERR;
    }
    t_refused.erase(rmid);
    return sqlite_switch()->xa_start_entry(x, rmid, flags);
}

#define FORWARD(entry, params, args)        \
    int liar_##entry params {               \
        t_refused.erase(rmid);              \
        return sqlite_switch()->entry args; \
    }
FORWARD(xa_open_entry, (char* i, int rmid, long f), (i, rmid, f))
FORWARD(xa_close_entry, (char* i, int rmid, long f), (i, rmid, f))
FORWARD(xa_end_entry, (XID * x, int rmid, long f), (x, rmid, f))
FORWARD(xa_rollback_entry, (XID * x, int rmid, long f), (x, rmid, f))
FORWARD(xa_prepare_entry, (XID * x, int rmid, long f), (x, rmid, f))
FORWARD(xa_commit_entry, (XID * x, int rmid, long f), (x, rmid, f))
FORWARD(xa_recover_entry, (XID * x, long n, int rmid, long f), (x, n, rmid, f))
FORWARD(xa_forget_entry, (XID * x, int rmid, long f), (x, rmid, f))
FORWARD(xa_complete_entry, (int* h, int* v, int rmid, long f), (h, v, rmid, f))
#undef FORWARD

}  // namespace

extern "C" {
XARM_API struct xa_switch_t xarm_liar_refusal_switch = {
    "xarm_liar_refusal",
    TMNOMIGRATE,
    0,
    liar_xa_open_entry,
    liar_xa_close_entry,
    liar_start,
    liar_xa_end_entry,
    liar_xa_rollback_entry,
    liar_xa_prepare_entry,
    liar_xa_commit_entry,
    liar_xa_recover_entry,
    liar_xa_forget_entry,
    liar_xa_complete_entry,
};
XARM_API struct xa_switch_t* lixa_get_xa_switch(void) {
    return &xarm_liar_refusal_switch;
}
XARM_API int xarm_last_error(int rmid, struct xarm_diag* out) {
    if (out == nullptr) return -1;
    if (auto it = t_refused.find(rmid); it != t_refused.end() && it->second) {
        *out = xarm_diag{};
        out->xa_code = XAER_RMERR;
        std::snprintf(out->sqlstate, sizeof out->sqlstate, "%s", "HY000");
        std::snprintf(out->message, sizeof out->message, "%s", "joining failed");
        return 0;
    }
    return ::xarm::last_error(rmid, out);
}
XARM_API const ::xarm::driver* xarm_driver_v1(void) {
    return instance().get();
}
}
