// The relay driver (test-only): each session relays every primitive to a session of
// another driver, named by the first word of the info string ("inner=sqlite path=...";
// the rest is the inner driver's own info string). Nothing here names a database:
// which one it talks to, and its SQL snippets, come from the inner driver.
#include <memory>
#include <string>

#include "xarm/connection.hpp"
#include "xarm/driver/switch.hpp"
#include "xarm/xa.h"

namespace xarm::relay {

namespace {

class session final : public native_session {
  public:
    session(const session&) = delete;
    session& operator=(const session&) = delete;
    session(std::shared_ptr<const driver> d, std::unique_ptr<native_session> s)
        : m_driver(std::move(d)), m_inner(std::move(s)) {}
    ~session() override {
        m_inner.reset();  // before the driver whose code it runs
    }

    capability_set capabilities() const override { return m_inner->capabilities(); }
    void start(const xid& x, start_mode m) override { m_inner->start(x, m); }
    void start_with_timeout(const xid& x, std::chrono::seconds t) override {
        m_inner->start_with_timeout(x, t);
    }
    void end(const xid& x, end_mode m) override { m_inner->end(x, m); }
    vote prepare(const xid& x) override { return m_inner->prepare(x); }
    void commit(const xid& x, bool one_phase) override { m_inner->commit(x, one_phase); }
    void rollback(const xid& x, bool prepared) override { m_inner->rollback(x, prepared); }
    std::vector<xid> recover() override { return m_inner->recover(); }
    void forget(const xid& x) override { m_inner->forget(x); }
    std::int64_t execute(std::string_view sql) override { return m_inner->execute(sql); }
    result query(std::string_view sql) override { return m_inner->query(sql); }
    sql_syntax syntax() const override { return m_inner->syntax(); }
    result execute_params(std::string_view sql, std::span<const value> params, bool rows) override {
        return m_inner->execute_params(sql, params, rows);
    }
    std::unique_ptr<native_statement> prepare(std::string_view sql, std::size_t n) override {
        return m_inner->prepare(sql, n);
    }
    result execute_prepared(native_statement& st, std::span<const value> params,
                            bool rows) override {
        return m_inner->execute_prepared(st, params, rows);
    }
    void commit_local() override { m_inner->commit_local(); }
    void rollback_local() override { m_inner->rollback_local(); }
    bool in_local_transaction() const override { return m_inner->in_local_transaction(); }
    void* native_handle() noexcept override { return m_inner->native_handle(); }
    std::string dbms() const override {
        auto d = m_inner->dbms();
        return d.empty() ? std::string(m_driver->name()) : d;
    }

  private:
    std::shared_ptr<const driver> m_driver;
    std::unique_ptr<native_session> m_inner;
};

class relay_driver final : public driver {
  public:
    std::string_view name() const noexcept override { return "relay"; }
    capability_set capabilities() const override {
        // The most a connection can have; each connection has its inner driver's.
        capability_set c;
        for (auto cap : all_capabilities) c.yes(cap, "when the inner driver has it");
        return c;
    }
    std::string info_help() const override {
        return "inner=DRIVER followed by DRIVER's own info string (test-only driver)";
    }
    std::unique_ptr<native_session> open(std::string_view info) const override {
        const auto space = info.find(' ');
        const auto first = info.substr(0, space);
        if (!first.starts_with("inner="))
            raise(XAER_INVAL, "08001", "info string: must begin with inner=DRIVER");
        auto inner = load_driver(first.substr(6));
        const auto rest =
            space == std::string_view::npos ? std::string_view{} : info.substr(space + 1);
        auto s = inner->open(rest);
        return std::make_unique<session>(std::move(inner), std::move(s));
    }
};

std::shared_ptr<const driver> instance() {
    static const auto d = std::make_shared<const relay_driver>();
    return d;
}

}  // namespace
}  // namespace xarm::relay

XARM_DEFINE_DRIVER_EXPORTS(relay, ::xarm::relay::instance)
