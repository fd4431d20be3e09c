// A deliberately dishonest driver, for the suite's own tests: it wraps the SQLite driver
// and claims two-phase commit and recovery. XARM_LIAR_PREPARE: prepare does nothing (the
// work is still uncommitted on the connection, and lost when it closes).
// XARM_LIAR_RECOVER: prepare commits at once, and recovery lists every branch twice. The suite must
// report FAIL for the cases that catch these lies.
#include <algorithm>
#include <mutex>

#include "xarm/connection.hpp"
#include "xarm/driver/switch.hpp"
#include "xarm/xa.h"

namespace {

using namespace xarm;

std::mutex g_mu;
std::vector<xid> g_prepared;  // what this process "prepared"

class liar_session final : public native_session {
  public:
    explicit liar_session(std::unique_ptr<native_session> inner) : m_inner(std::move(inner)) {}

    capability_set capabilities() const override { return lie_about(m_inner->capabilities()); }
    static capability_set lie_about(const capability_set& honest) {
        capability_set c;
        for (const auto& s : honest.list())
            if (s.what != capability::two_phase && s.what != capability::recovery) {
                if (s.supported)
                    c.yes(s.what, s.reason);
                else
                    c.no(s.what, s.reason);
            }
        c.yes(capability::two_phase, "a lie: prepare does nothing");
        c.yes(capability::recovery, "a lie");
        return c;
    }
    void start(const xid& x, start_mode mode) override {
        m_inner->start(x, mode);
        m_x = x;
        m_open = true;
    }
    void end(const xid& x, end_mode mode) override { m_inner->end(x, mode); }
    vote prepare(const xid& x) override {
#ifdef XARM_LIAR_RECOVER
        // "Prepares" by committing at once, so branches can be listed across connections.
        m_inner->commit(x, true);
        m_open = false;
#endif
        std::lock_guard lock(g_mu);
        g_prepared.push_back(x);
        return vote::ok;
    }
    void commit(const xid& x, bool one_phase) override {
        if (one_phase || (m_open && m_x == x)) {
            m_inner->commit(x, true);
            m_open = false;
        }
        if (!one_phase && !forget_prepared(x) && !(m_x == x))
            raise(XAER_NOTA, "XAE04", "no such branch");
    }
    void rollback(const xid& x, bool prepared) override {
        if (!prepared || (m_open && m_x == x)) {
            m_inner->rollback(x, false);
            m_open = false;
        }
        if (prepared && !forget_prepared(x) && !(m_x == x))
            raise(XAER_NOTA, "XAE04", "no such branch");
    }
    std::vector<xid> recover() override {
        std::lock_guard lock(g_mu);
        std::vector<xid> out;
        for (const auto& x : g_prepared) {
            out.push_back(x);
#ifdef XARM_LIAR_RECOVER
            out.push_back(x);
#endif
        }
        return out;
    }
    std::int64_t execute(std::string_view sql) override {
        return m_inner->execute(sql);
    }
    result query(std::string_view sql) override {
        return m_inner->query(sql);
    }
    void commit_local() override {
        m_inner->commit_local();
    }
    void rollback_local() override {
        m_inner->rollback_local();
    }
    bool in_local_transaction() const override {
        return m_inner->in_local_transaction();
    }
    void* native_handle() noexcept override {
        return m_inner->native_handle();
    }

  private:
    static bool forget_prepared(const xid& x) {
        std::lock_guard lock(g_mu);
        auto it = std::find(g_prepared.begin(), g_prepared.end(), x);
        if (it == g_prepared.end()) return false;
        g_prepared.erase(it);
        return true;
    }
    std::unique_ptr<native_session> m_inner;
    xid m_x;
    bool m_open = false;
};

class liar_driver final : public driver {
  public:
    std::string_view name() const noexcept override { return "liar"; }
    capability_set capabilities() const override {
        return liar_session::lie_about(inner()->capabilities());
    }
    std::string info_help() const override { return inner()->info_help(); }
    std::unique_ptr<native_session> open(std::string_view info) const override {
        return std::make_unique<liar_session>(inner()->open(info));
    }

  private:
    static std::shared_ptr<const driver> inner() {
        static auto d = load_driver("sqlite");
        return d;
    }
};

std::shared_ptr<const driver> instance() {
    static const auto d = std::make_shared<const liar_driver>();
    return d;
}

}  // namespace

XARM_DEFINE_DRIVER_EXPORTS(liar, instance)
