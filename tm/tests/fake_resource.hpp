// Fake resources for the transaction manager's protocol tests: an in-memory "server"
// (prepared branches, committed gtrids, markers, a call log) and fault switches.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "xarm/tm.hpp"
#include "xarm/xa.h"

namespace xarm::tm::testing {

/// Counts how many calls are running at once and the most seen.
struct in_flight {
    std::atomic<int> now{0}, max{0};
    struct guard {
        in_flight& f;
        explicit guard(in_flight& x) : f(x) {
            const int n = ++f.now;
            int m = f.max.load();
            while (n > m && !f.max.compare_exchange_weak(m, n)) {
            }
        }
        ~guard() { --f.now; }
    };
};

/// What one fake server holds; shared by every fake_resource instance of one name, so
/// that a "new process" (a new instance) sees what the crashed one left.
struct fake_store {
    std::mutex mutex;
    std::set<xid> prepared;
    std::set<std::string> committed;  // gtrids
    std::set<std::string> rolled_back;
    std::set<std::string> markers;
    std::vector<std::string>
        calls;  // "<name>:<verb>" in order, across all fakes given the same log
    void note(const std::string& s) {
        std::lock_guard lk(mutex);
        calls.push_back(s);
    }
    bool has_committed(const std::string& g) {
        std::lock_guard lk(mutex);
        return committed.count(g) != 0;
    }
};

struct fake_options {
    bool can_prepare = true;
    bool read_only = false;
    bool fail_prepare = false;               // rollback_error at prepare
    bool lose_connection_at_commit = false;  // operational_error at commit...
    bool commit_before_losing = false;       // ...after really committing (the blind spot)
    bool heuristic_at_commit = false;
    bool vanish_before_commit = false;  // an administrator rolled the prepared branch back
    int retry_at_commit = 0;            // answer XA_RETRY this many times first
    std::function<void()> on_commit{};  // runs at the start of every phase-two commit
    int agent_rank = 0;                 // > 0: can be the last agent (keeps markers)
    bool fail_marker = false;           // write_marker fails (rollback_error)
    bool can_defer = false;             // defer_marker queues the marker
    bool marker_sent = false;           // ...and it is sent at once: withdraw_marker fails
    std::chrono::milliseconds prepare_sleep{0};
    std::chrono::milliseconds commit_sleep{0};
    in_flight* prepares = nullptr;
    in_flight* commits = nullptr;
    std::vector<std::string>* order = nullptr;  // shared call order across resources
    std::mutex* order_mutex = nullptr;
};

class fake_resource final : public resource {
  public:
    fake_resource(std::string name, std::shared_ptr<fake_store> store, fake_options o = {})
        : m_name(std::move(name)), m_store(std::move(store)), m_o(o) {}

    fake_options& opts() { return m_o; }
    std::string name() const override { return m_name; }
    bool can_prepare() const override { return m_o.can_prepare; }
    void begin(const xid& x) override { note("begin " + x.bqual()); }
    vote prepare(const xid& x) override {
        std::optional<in_flight::guard> g;
        if (m_o.prepares) g.emplace(*m_o.prepares);
        if (m_o.prepare_sleep.count()) std::this_thread::sleep_for(m_o.prepare_sleep);
        note("prepare");
        // A branch holding a marker must never be prepared (its key would block the fence).
        if (m_pending_marker) note("prepare holding a marker");
        if (m_o.fail_prepare) raise(XA_RBROLLBACK, "40001", "fake: prepare refused");
        if (m_o.read_only) return vote::read_only;
        std::lock_guard lk(m_store->mutex);
        m_store->prepared.insert(x);
        return vote::ok;
    }
    void commit(const xid& x, bool one_phase) override {
        std::optional<in_flight::guard> g;
        if (m_o.commits) g.emplace(*m_o.commits);
        if (m_o.commit_sleep.count()) std::this_thread::sleep_for(m_o.commit_sleep);
        note(one_phase ? "commit1" : "commit2");
        if (m_o.on_commit) m_o.on_commit();
        if (m_o.retry_at_commit > 0) {
            --m_o.retry_at_commit;
            raise(XA_RETRY, "55000", "fake: prepared transaction is busy");
        }
        if (m_o.vanish_before_commit) {
            std::lock_guard lk(m_store->mutex);
            m_store->prepared.erase(x);
            m_store->rolled_back.insert(x.gtrid());
        }
        if (m_o.heuristic_at_commit) raise(XA_HEURRB, "40000", "fake: heuristically rolled back");
        if (m_o.lose_connection_at_commit && !m_o.commit_before_losing)
            raise(diagnostic{XAER_RMFAIL, "08006", 0, "fake", "fake: connection lost"}, true);
        {
            std::lock_guard lk(m_store->mutex);
            if (!one_phase && m_store->prepared.erase(x) == 0)
                raise(XAER_NOTA, "XAE04", "fake: unknown xid");
            m_store->committed.insert(x.gtrid());
            if (one_phase && m_pending_marker) {  // the marker commits with the work
                for (auto& f : m_pending_forget) m_store->markers.erase(f);
                m_store->markers.insert(*m_pending_marker);
            }
            m_pending_marker.reset();
        }
        if (m_o.lose_connection_at_commit)
            raise(diagnostic{XAER_RMFAIL, "08006", 0, "fake", "fake: connection lost"}, true);
    }
    void rollback(const xid& x) override {
        note("rollback");
        m_pending_marker.reset();
        std::lock_guard lk(m_store->mutex);
        m_store->prepared.erase(x);
        m_store->rolled_back.insert(x.gtrid());
    }
    std::vector<xid> recover() override {
        std::lock_guard lk(m_store->mutex);
        return {m_store->prepared.begin(), m_store->prepared.end()};
    }
    void commit_recovered(const xid& x) override {
        note("commit_recovered");
        if (m_o.vanish_before_commit) {
            std::lock_guard lk(m_store->mutex);
            m_store->prepared.erase(x);
        }
        if (m_o.heuristic_at_commit) raise(XA_HEURRB, "40000", "fake: heuristically rolled back");
        std::lock_guard lk(m_store->mutex);
        if (m_store->prepared.erase(x) == 0) raise(XAER_NOTA, "XAE04", "fake: unknown xid");
        m_store->committed.insert(x.gtrid());
    }
    void rollback_recovered(const xid& x) override {
        note("rollback_recovered");
        std::lock_guard lk(m_store->mutex);
        if (m_store->prepared.erase(x) == 0) raise(XAER_NOTA, "XAE04", "fake: unknown xid");
        m_store->rolled_back.insert(x.gtrid());
    }
    void commit_with_marker(const xid& x, const std::string& marker,
                            const std::vector<std::string>& forget) override {
        if (m_o.can_prepare) return resource::commit_with_marker(x, marker, forget);
        note("commit_with_marker");
        if (m_o.lose_connection_at_commit && !m_o.commit_before_losing)
            raise(diagnostic{XAER_RMFAIL, "08006", 0, "fake", "fake: connection lost"}, true);
        if (m_o.fail_prepare) raise(XA_RBROLLBACK, "40001", "fake: commit refused");
        {
            std::lock_guard lk(m_store->mutex);
            for (auto& f : forget) m_store->markers.erase(f);
            m_store->markers.insert(marker);
            m_store->committed.insert(x.gtrid());
        }
        if (m_o.lose_connection_at_commit)
            raise(diagnostic{XAER_RMFAIL, "08006", 0, "fake", "fake: connection lost"}, true);
    }
    int last_agent_rank() override { return m_o.agent_rank; }
    void write_marker(const xid& x, const std::string& marker,
                      const std::vector<std::string>& forget) override {
        if (m_o.agent_rank == 0) return resource::write_marker(x, marker, forget);
        note("write_marker");
        if (m_o.fail_marker) raise(XA_RBINTEGRITY, "23505", "fake: marker refused");
        m_pending_marker = marker;
        m_pending_forget = forget;
    }
    bool defer_marker(const xid&, const std::string& marker,
                      const std::vector<std::string>& forget) override {
        if (!m_o.can_defer) return false;
        note(forget.empty() ? "defer_marker" : "defer_marker+delete");
        m_pending_marker = marker;
        m_pending_forget = forget;
        return true;
    }
    bool withdraw_marker(const xid&) override {
        if (!m_pending_marker || m_o.marker_sent) return false;
        note("withdraw_marker");
        m_pending_marker.reset();
        return true;
    }
    std::vector<std::string> markers(const std::string& prefix) override {
        std::lock_guard lk(m_store->mutex);
        std::vector<std::string> out;
        for (auto& m : m_store->markers)
            if (m.starts_with(prefix)) out.push_back(m);
        return out;
    }
    void delete_markers(const std::vector<std::string>& names) override {
        std::lock_guard lk(m_store->mutex);
        for (auto& n : names) m_store->markers.erase(n);
    }

  private:
    void note(const std::string& verb) {
        m_store->note(verb);
        if (m_o.order) {
            std::lock_guard lk(*m_o.order_mutex);
            m_o.order->push_back(m_name + ":" + verb);
        }
    }
    std::string m_name;
    std::shared_ptr<fake_store> m_store;
    fake_options m_o;
    std::optional<std::string> m_pending_marker;  // written in the branch, not committed
    std::vector<std::string> m_pending_forget;
};

/// A log_store in memory that counts what it is asked to do.
class memory_log final : public log_store {
  public:
    explicit memory_log(std::string id) : m_id(std::move(id)) {}
    const std::string& coordinator_id() const noexcept override { return m_id; }
    std::string describe() const override { return "memory log of " + m_id; }
    void force(const log_record& r) override {
        std::lock_guard lk(m_mutex);
        if (fail) raise(XAER_RMERR, "58030", "memory log: disk full");
        forced.push_back(r);
        note(r);
        ++m_stats.forced_records;
        ++m_stats.syncs;
    }
    void append(const log_record& r) override {
        std::lock_guard lk(m_mutex);
        appended.push_back(r);
        note(r);
    }
    std::vector<log_record> live() const override {
        std::lock_guard lk(m_mutex);
        std::vector<log_record> out;
        for (auto& [g, r] : m_live) out.push_back(r);
        return out;
    }
    std::vector<std::string> warnings() const override { return {}; }
    statistics stats() const override {
        std::lock_guard lk(m_mutex);
        return m_stats;
    }
    std::vector<log_record> forced, appended;
    bool fail = false;

  private:
    void note(const log_record& r) {
        if (r.type == log_record::kind::commit)
            m_live[r.gtrid] = r;
        else
            m_live.erase(r.gtrid);
    }
    std::string m_id;
    mutable std::mutex m_mutex;
    std::map<std::string, log_record> m_live;
    statistics m_stats;
};

}  // namespace xarm::tm::testing
