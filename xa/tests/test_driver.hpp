// A test driver for the core's protocol logic: an in-memory "database" of prepared
// branches shared by all its sessions, configurable capabilities, and failure injection.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <ostream>
#include "xarm/driver/driver.hpp"
#include "xarm/driver/protocol.hpp"
#include "xarm/driver/switch.hpp"
#include "xarm/xa.h"

namespace xarm {
// Printable in test assertions.
inline std::ostream& operator<<(std::ostream& o, branch_state s) {
    return o << to_string(s);
}
}  // namespace xarm

namespace xarm::test {

/// What the fake server holds: prepared branches, committed work, a call log.
struct fake_db {
    std::mutex mutex;
    std::set<xid> prepared;
    std::vector<std::string> committed;  // the work of committed branches
    std::vector<std::string> log;        // every primitive called, in order
    void note(std::string s) {
        std::lock_guard lock(mutex);
        log.push_back(std::move(s));
    }
};

/// Hooks to make a primitive fail: return nullptr to let it run normally.
struct faults {
    std::function<void(const std::string& primitive)> before;  // may throw anything
    bool read_only = false;                                    // prepare votes read-only
    bool heuristic_commit = false;                             // commit reports XA_HEURCOM
    sql_syntax syntax = sql_syntax::postgresql();              // placeholders as $n
};

class fake_session final : public native_session {
  public:
    fake_session(std::shared_ptr<fake_db> db, capability_set caps, std::shared_ptr<faults> f)
        : m_db(std::move(db)), m_caps(std::move(caps)), m_faults(std::move(f)) {}

    capability_set capabilities() const override { return m_caps; }
    void start(const xid& x, start_mode m) override {
        hook("start");
        m_db->note("start " + x.gtrid() +
                   (m == start_mode::join     ? " join"
                    : m == start_mode::resume ? " resume"
                                              : ""));
        m_work[x];
    }
    void end(const xid& x, end_mode) override {
        hook("end");
        m_db->note("end " + x.gtrid());
    }
    vote prepare(const xid& x) override {
        hook("prepare");
        m_db->note("prepare " + x.gtrid());
        if (m_faults->read_only) {
            m_work.erase(x);
            return vote::read_only;
        }
        std::lock_guard lock(m_db->mutex);
        m_db->prepared.insert(x);
        m_prepared_work[x] = m_work[x];
        m_work.erase(x);
        return vote::ok;
    }
    void commit(const xid& x, bool one_phase) override {
        hook("commit");
        m_db->note(std::string("commit ") + x.gtrid() + (one_phase ? " 1pc" : ""));
        if (m_faults->heuristic_commit) raise(XA_HEURCOM, "HY000", "heuristically committed");
        std::lock_guard lock(m_db->mutex);
        if (!one_phase) {
            if (m_db->prepared.erase(x) == 0)
                raise(XAER_NOTA, "XAE04", "unknown xid " + x.to_string());
            m_db->committed.push_back(x.gtrid());
            return;
        }
        m_db->committed.push_back(x.gtrid());
        m_work.erase(x);
    }
    void rollback(const xid& x, bool prepared) override {
        hook("rollback");
        m_db->note(std::string("rollback ") + x.gtrid() + (prepared ? " prepared" : ""));
        std::lock_guard lock(m_db->mutex);
        if (prepared && m_db->prepared.erase(x) == 0)
            raise(XAER_NOTA, "XAE04", "unknown xid " + x.to_string());
        m_work.erase(x);
    }
    std::vector<xid> recover() override {
        hook("recover");
        std::lock_guard lock(m_db->mutex);
        return {m_db->prepared.begin(), m_db->prepared.end()};
    }
    void forget(const xid& x) override {
        hook("forget");
        m_db->note("forget " + x.gtrid());
    }
    std::int64_t execute(std::string_view sql) override {
        hook("execute");
        if (m_in_branch_none()) m_local = true;
        return static_cast<std::int64_t>(sql.size());
    }
    result query(std::string_view sql) override {
        hook("query");
        result_builder b({{"sql", "text", 0}});
        b.next_row();
        b.add(std::string(sql));
        return b.finish();
    }
    sql_syntax syntax() const override { return m_faults->syntax; }
    /// Echoes the statement: one row, the text as received, then each parameter.
    result execute_params(std::string_view sql, std::span<const value> params, bool) override {
        hook("execute_params");
        if (m_in_branch_none()) m_local = true;
        m_db->note("params " + std::string(sql));
        std::vector<column> cols{{"sql", "text", 0}};
        for (std::size_t i = 0; i < params.size(); ++i)
            cols.push_back({"p" + std::to_string(i + 1), "any", 0});
        result_builder b(std::move(cols));
        b.next_row();
        b.add(std::string(sql));
        for (const auto& v : params) b.add(v);
        return b.finish(1);
    }
    void commit_local() override {
        hook("commit_local");
        m_local = false;
    }
    void rollback_local() override {
        hook("rollback_local");
        m_local = false;
    }
    bool in_local_transaction() const override { return m_local; }
    void* native_handle() noexcept override { return this; }

  private:
    bool m_in_branch_none() const { return m_work.empty(); }
    void hook(const std::string& p) {
        if (m_faults->before) m_faults->before(p);
    }
    std::shared_ptr<fake_db> m_db;
    capability_set m_caps;
    std::shared_ptr<faults> m_faults;
    std::map<xid, int> m_work;
    std::map<xid, int> m_prepared_work;
    bool m_local = false;
};

inline capability_set everything() {
    capability_set c;
    for (capability k : all_capabilities) c.yes(k);
    c.no(capability::async, "test driver: synchronous");
    c.no(capability::migrate, "test driver: no migration");
    return c;
}

class fake_driver final : public driver {
  public:
    std::shared_ptr<fake_db> db = std::make_shared<fake_db>();
    std::shared_ptr<faults> fault = std::make_shared<faults>();
    capability_set caps = everything();

    std::string_view name() const noexcept override { return "fake"; }
    capability_set capabilities() const override { return caps; }
    std::string info_help() const override { return "anything; 'fail' makes open fail"; }
    std::unique_ptr<native_session> open(std::string_view info) const override {
        if (info.find("fail") != std::string_view::npos)
            raise(XAER_RMERR, "08001", "cannot connect with " + std::string(info));
        return std::make_unique<fake_session>(db, caps, fault);
    }
};

/// The one fake driver the test switch below uses; tests reset it between cases.
inline std::shared_ptr<fake_driver>& shared_fake() {
    static auto d = std::make_shared<fake_driver>();
    return d;
}
inline std::shared_ptr<const driver> fake_getter() {
    return shared_fake();
}

/// An xa_switch_t over the fake driver, as a driver library would export it.
inline xa_switch_t fake_switch() {
    using e = switch_entries<&fake_getter>;
    return xa_switch_t{"xarm_fake", TMNOMIGRATE,  0,           &e::open,   &e::close,   &e::start,
                       &e::end,     &e::rollback, &e::prepare, &e::commit, &e::recover, &e::forget,
                       &e::complete};
}

inline XID make_c_xid(long fmt, const std::string& g, const std::string& b) {
    XID x{};
    x.formatID = fmt;
    x.gtrid_length = static_cast<long>(g.size());
    x.bqual_length = static_cast<long>(b.size());
    std::copy(g.begin(), g.end(), x.data);
    std::copy(b.begin(), b.end(), x.data + g.size());
    return x;
}

}  // namespace xarm::test
