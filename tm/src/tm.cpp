// The transaction manager: transactions, the commit protocol, recovery, crash points.
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <random>
#include <thread>
#include <utility>

#include "workers.hpp"
#include "xarm/driver/trace.hpp"
#include "xarm/tm.hpp"
#include "xarm/xa.h"

namespace xarm::tm {

// ---------------------------------------------------------------------------------------
// Crash points

namespace {
struct crash_state {
    std::mutex mutex;
    std::atomic<bool> loaded{false};
    std::string name;
    long target = 1;
    std::atomic<long> hits{0};
    std::atomic<bool> armed{false};
};
crash_state& crash() {
    static crash_state s;
    return s;
}
void arm_locked(crash_state& s, std::string_view spec) {
    s.armed = false;
    s.hits = 0;
    s.target = 1;
    s.name.assign(spec);
    if (auto at = s.name.rfind('@'); at != std::string::npos) {
        s.target = std::max(1L, std::strtol(s.name.c_str() + at + 1, nullptr, 10));
        s.name.resize(at);
    }
    s.armed = !s.name.empty();
    s.loaded = true;
}
/// The armed point's name, loading XARM_CRASH_AT on first use.
bool armed_for(std::string_view name) {
#ifndef XARM_FAULT_INJECTION
    (void)name;
    return false;
#endif
    auto& s = crash();
    if (!s.loaded) {
        std::lock_guard lk(s.mutex);
        if (!s.loaded) {
            const char* env = std::getenv("XARM_CRASH_AT");
            arm_locked(s, env ? env : "");
        }
    }
    return s.armed && s.name == name;
}
}  // namespace

#ifdef XARM_FAULT_INJECTION
void crash_point(std::string_view name) {
    if (!armed_for(name)) return;
    if (crash().hits.fetch_add(1) + 1 >= crash().target) ::_exit(99);
}

void set_crash_point(std::string_view spec) {
    std::lock_guard lk(crash().mutex);
    arm_locked(crash(), spec);
}

bool fault_injection_enabled() noexcept {
    return true;
}
#else
// A production build has no way to crash on purpose: XARM_CRASH_AT is never read.
void crash_point(std::string_view) {}

void set_crash_point(std::string_view spec) {
    if (!spec.empty())
        raise(XAER_INVAL, "0A000",
              "tm: crash points exist only in builds configured with -DXARM_FAULT_INJECTION=ON");
}

bool fault_injection_enabled() noexcept {
    return false;
}
#endif

std::vector<std::pair<std::string, std::string>> crash_points() {
    return {
        {"before_prepare", "the transaction is committing; no resource prepared yet"},
        {"after_prepare:1",
         "the 1st two-phase resource (enlistment order; the last resource or agent is not "
         "counted) has prepared"},
        {"after_prepare:2", "the 2nd resource has prepared"},
        {"after_prepare:3", "the 3rd resource has prepared"},
        {"before_decision", "every resource prepared; the commit decision not yet logged"},
        {"after_decision_logged", "the commit record is durable; no branch committed yet"},
        {"between_commits", "the first branch committed, the others not yet"},
        {"after_commits", "every branch committed; the end record not yet written"},
        {"before_last_resource_commit",
         "others prepared; the last resource (or last agent) not committed"},
        {"after_last_resource_commit",
         "the last resource (or last agent) committed with its marker; nothing logged, others "
         "prepared"},
        {"during_recovery", "recovery resolved its first branch and stops"},
    };
}

const char* to_string(outcome o) noexcept {
    switch (o) {
        case outcome::committed:
            return "committed";
        case outcome::rolled_back:
            return "rolled back";
        case outcome::in_doubt:
            return "in doubt";
        case outcome::heuristic:
            return "heuristic";
    }
    return "?";
}

namespace {
[[noreturn]] void misuse(std::string msg) {
    raise(XAER_PROTO, "25000", "tm: " + std::move(msg));
}

/// Runs f, again with back-off while the resource answers XA_RETRY ("try later": e.g.
/// PostgreSQL's "prepared transaction is busy" while a dead coordinator's last COMMIT
/// PREPARED is still finishing). The last XA_RETRY is thrown.
template <class F>
void retrying(F f) {
    auto backoff = std::chrono::milliseconds(10);
    for (int attempt = 1;; ++attempt) {
        try {
            f();
            return;
        } catch (const error& e) {
            if (e.xa_code() != XA_RETRY || attempt >= 8) throw;
        }
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    }
}

bool valid_id(const std::string& id) {
    if (id.empty() || id.size() > 16) return false;
    for (char c : id)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
    return true;
}
}  // namespace

// ---------------------------------------------------------------------------------------
// transaction

transaction::transaction(coordinator& c, std::string gtrid)
    : m_coord(&c), m_gtrid(std::move(gtrid)) {}

transaction::transaction(transaction&& o) noexcept
    : m_coord(o.m_coord),
      m_gtrid(std::move(o.m_gtrid)),
      m_members(std::move(o.m_members)),
      m_before(std::move(o.m_before)),
      m_after(std::move(o.m_after)),
      m_unfinished(std::move(o.m_unfinished)),
      m_deferred_forget(std::move(o.m_deferred_forget)),
      m_outcome(o.m_outcome),
      m_done(o.m_done),
      m_began(o.m_began),
      m_timeout(o.m_timeout) {
    o.m_done = true;
}

transaction::~transaction() {
    if (m_done) return;
    rollback_members(true);
    finish(outcome::rolled_back);
}

xid transaction::enlist(resource& r) {
    if (m_done) misuse("enlist: the transaction is finished");
    for (const auto& m : m_members) {
        if (m.res == &r) misuse(fmt::format("enlist: resource '{}' is already enlisted", r.name()));
        if (!r.can_prepare() && !m.res->can_prepare())
            misuse(
                fmt::format("enlist: '{}' cannot prepare and '{}', which cannot either, is already "
                            "the last resource: a transaction may have at most one one-phase-only "
                            "resource",
                            r.name(), m.res->name()));
    }
    // The member whose branch carries the deferred marker (an index: m_members grows).
    constexpr std::size_t none = std::size_t(-1);
    std::size_t holder = none;
    for (std::size_t i = 0; i < m_members.size(); ++i)
        if (m_members[i].marker) holder = i;
    auto withdraw = [&] {
        auto& h = m_members[holder];
        if (!h.res->withdraw_marker(h.x)) return false;
        h.marker = false;
        holder = none;
        m_coord->give_back_markers(h.res->name(), m_deferred_forget);
        return true;
    };
    if (!r.can_prepare() && holder != none && !withdraw())
        // The one-phase-only resource is the last resource, so the holder would be
        // prepared with its marker, whose key would block recovery's fence until resolved.
        misuse(fmt::format(
            "enlist: '{}' cannot prepare, but '{}' already sent this transaction's commit "
            "marker as its last agent: enlist a one-phase-only resource before the work on "
            "the others, or set last_agent = \"off\"",
            r.name(), m_members[holder].res->name()));
    xid x(format_id, m_gtrid, std::to_string(m_members.size() + 1));
    // Before begin(): the resource may have to look for its marker table (once).
    const int rank = r.can_prepare() && m_coord->may_be_last_agent(r) ? r.last_agent_rank() : 0;
    r.begin(x);
    m_members.push_back(member{&r, x});
    m_members.back().agent_rank = rank;
    // With two members or more, the last agent's marker travels with its branch's first
    // round trip where the resource can queue it (a transaction of one resource commits
    // in one phase and needs none). The agent is chosen as at commit (the best rank; ties:
    // the later), but a marker already sent stays where it is (that branch must never be
    // prepared now), and with a one-phase-only resource (the last resource) there is none.
    if (m_members.size() >= 2 &&
        std::all_of(m_members.begin(), m_members.end(),
                    [](const member& m) { return m.res->can_prepare(); })) {
        std::size_t best = none;
        for (std::size_t i = 0; i < m_members.size(); ++i)
            if (m_members[i].agent_rank > 0 &&
                (best == none || m_members[i].agent_rank >= m_members[best].agent_rank))
                best = i;
        if (best != none && best != holder && (holder == none || withdraw())) {
            auto& b = m_members[best];
            // Finished markers are deleted in the same statement: no step of their own
            // at commit (it cost a round trip and a worker hand-off every 16 commits).
            auto forget = m_coord->take_markers(b.res->name());
            b.marker = b.res->defer_marker(b.x, m_gtrid, forget);
            if (b.marker)
                m_deferred_forget = std::move(forget);
            else
                m_coord->give_back_markers(b.res->name(), forget);
        }
    }
    return x;
}

void transaction::before_commit(std::function<void()> hook) {
    m_before.push_back(std::move(hook));
}
void transaction::after_commit(std::function<void(outcome)> hook) {
    m_after.push_back(std::move(hook));
}

void transaction::finish(outcome o) {
    m_done = true;
    m_outcome = o;
    // Their deletion rode with a marker that did not commit (or may not have): delete
    // them with a later one (deleting twice is harmless).
    if (o != outcome::committed && !m_deferred_forget.empty()) {
        std::string holder;
        for (const auto& m : m_members)
            if (m.marker) holder = m.res->name();
        m_coord->give_back_markers(holder, m_deferred_forget);
    }
    if (trace_enabled())
        trace(fmt::format("tm transaction {} {} ({} resources, {} left for recovery)", m_gtrid,
                          to_string(o), m_members.size(), m_unfinished.size()));
    m_coord->forget_inflight(m_gtrid);
    for (auto& h : m_after) {
        try {
            h(o);
        } catch (...) {
            // after-commit hooks cannot change the outcome
        }
    }
}

void transaction::rollback_members(bool swallow) {
    std::vector<std::exception_ptr> errs(m_members.size());
    m_coord->m_workers->parallel_for(
        m_members.size(),
        [&](std::size_t i) {
            auto& m = m_members[i];
            if (m.read_only) return;
            try {
                m.res->rollback(m.x);
            } catch (const rollback_error&) {
                // rolled back, which is what we asked
            } catch (...) {
                errs[i] = std::current_exception();
            }
        },
        [&](std::size_t i) { return m_members[i].res->thread_bound(); });
    {
        std::lock_guard lk(m_coord->m_mutex);
        ++m_coord->m_stats.rolled_back;
    }
    if (swallow) return;
    for (auto& e : errs)
        if (e) std::rethrow_exception(e);
}

void transaction::rollback() {
    if (m_done) misuse("rollback: the transaction is finished");
    std::exception_ptr err;
    try {
        rollback_members(false);
    } catch (...) {
        err = std::current_exception();
    }
    finish(outcome::rolled_back);
    // A lost connection rolled its branch back with it; a prepared branch cannot exist
    // here (prepares happen inside commit()), so any error is only reported.
    if (err) std::rethrow_exception(err);
}

bool transaction::expired() const noexcept {
    return !m_done && m_timeout.count() > 0 &&
           std::chrono::steady_clock::now() - m_began > m_timeout;
}

// One two-phase commit, in its steps: choose the member whose one-phase commit decides
// (if any), prepare the others, decide, commit the others, conclude. Each failing step
// finishes the transaction and raises.
class two_phase_commit {
  public:
    explicit two_phase_commit(transaction& tx) : m_tx(tx), m_co(*tx.m_coord) {}
    void run() {
        choose_decider();
        prepare_all();
        for (auto* m : m_tpc)
            if (!m->read_only) m_writers.push_back(m);
        if (!decide()) return;
        commit_writers();
        conclude();
    }

  private:
    using member = transaction::member;

    // The marker-committer: a one-phase-only resource (the last resource), or else,
    // when allowed, the best-ranked two-phase resource (the last agent), which is not
    // prepared. Its one-phase commit, carrying the marker, is the decision.
    void choose_decider() {
        for (auto& m : m_tx.m_members)
            if (!m.res->can_prepare()) m_last = &m;
        // A deferred marker fixes the last agent (enlist() chose it by the same rule).
        if (m_last == nullptr)
            for (auto& m : m_tx.m_members)
                if (m.marker) {
                    m_last = &m;
                    m_agent = true;
                }
        if (m_last == nullptr)
            for (auto& m : m_tx.m_members)
                if (m.agent_rank > 0 && (m_last == nullptr || m.agent_rank >= m_last->agent_rank)) {
                    m_last = &m;
                    m_agent = true;
                }
        // Its marker is already part of its work: only finished markers may be left to
        // delete.
        m_deferred = m_agent && m_last->marker;
        for (auto& m : m_tx.m_members)
            if (&m != m_last) m_tpc.push_back(&m);
        if (m_last != nullptr) m_lr_name = m_last->res->name();
    }

    void give_back() { m_co.give_back_markers(m_lr_name, m_forget); }

    // A last agent's marker is written while the others prepare (unless it went with
    // the branch's work already): it commits only with the agent's own one-phase commit,
    // after every vote (a crash before that leaves it uncommitted, rolled back by the
    // server with the branch). Finished markers are deleted in the same step (with a
    // deferred marker they went with it already).
    void prepare_all() {
        crash_point("before_prepare");
        if (m_deferred)
            m_forget = std::exchange(m_tx.m_deferred_forget, {});  // already in the branch's work
        else if (m_agent)
            m_forget = m_co.take_markers(m_lr_name);
        const bool agent_item = m_agent && !m_deferred;
        const std::size_t items = m_tpc.size() + (agent_item ? 1 : 0);
        std::vector<std::exception_ptr> errs(items);
        m_co.m_workers->parallel_for(
            items,
            [&](std::size_t i) {
                if (i == m_tpc.size()) {
                    try {
                        m_last->res->write_marker(m_last->x, m_tx.m_gtrid, m_forget);
                    } catch (...) {
                        errs[i] = std::current_exception();
                    }
                    return;
                }
                try {
                    const vote v = m_tpc[i]->res->prepare(m_tpc[i]->x);
                    m_tpc[i]->prepared = true;
                    m_tpc[i]->read_only = v == vote::read_only;
                } catch (...) {
                    errs[i] = std::current_exception();
                    return;
                }
                if (fault_injection_enabled() && crash().armed)
                    crash_point(fmt::format("after_prepare:{}", i + 1));
            },
            [&](std::size_t i) {
                return i == m_tpc.size() ? m_last->res->thread_bound()
                                         : m_tpc[i]->res->thread_bound();
            });
        for (std::size_t i = 0; i < items; ++i)
            if (errs[i]) refused(i, errs[i]);
    }

    // A refused or failed vote, or a marker not written: presumed abort, nothing to log.
    [[noreturn]] void refused(std::size_t i, const std::exception_ptr& err) {
        give_back();
        m_tx.rollback_members(true);
        m_tx.finish(outcome::rolled_back);
        diagnostic d;
        try {
            std::rethrow_exception(err);
        } catch (const error& e) {
            d = e.diag();
        } catch (const std::exception& e) {
            d.message = e.what();
        }
        if (!is_rollback_code(d.xa_code)) {
            d.xa_code = XA_RBROLLBACK;
            d.sqlstate = "40000";
        }
        d.message =
            i == m_tpc.size()
                ? fmt::format(
                      "tm: transaction {} rolled back: the last agent '{}' could not "
                      "write its commit marker: {}",
                      m_tx.m_gtrid, m_lr_name, d.message)
                : fmt::format("tm: transaction {} rolled back: resource '{}' could not prepare: {}",
                              m_tx.m_gtrid, m_tpc[i]->res->name(), d.message);
        raise(std::move(d));
    }

    // The decision: the last resource's or agent's one-phase commit, or the forced log
    // record, or (one writer, the others read-only) that writer's commit in phase two,
    // whose crash before it is a presumed abort, correct for an unacknowledged commit.
    // False when the transaction is finished already (nobody left to commit).
    bool decide() {
        if (m_last != nullptr) {
            commit_decider();
            if (m_writers.empty()) {
                if (m_agent) m_co.finished_marker(m_lr_name, m_tx.m_gtrid);
                m_tx.finish(outcome::committed);
                std::lock_guard lk(m_co.m_mutex);
                ++(m_agent ? m_co.m_stats.last_agent : m_co.m_stats.last_resource);
                return false;
            }
            crash_point("after_last_resource_commit");
            // The marker is the decision: nothing is logged. It stays until every other
            // branch is committed, then goes with a later marker commit or recovery.
        } else if (m_writers.empty()) {
            m_tx.finish(outcome::committed);
            std::lock_guard lk(m_co.m_mutex);
            ++m_co.m_stats.read_only_only;
            return false;
        } else if (m_writers.size() > 1) {
            crash_point("before_decision");
            log_decision();
            crash_point("after_decision_logged");
        }
        return true;
    }

    void commit_decider() {
        const char* role = m_agent ? "last agent" : "last resource";
        if (!m_writers.empty()) crash_point("before_last_resource_commit");
        // With writers, the marker makes this commit the decision; without (everybody
        // else voted read-only) it alone decides (a last agent's marker, already
        // written, is then merely finished at once).
        if (!m_agent && !m_writers.empty()) m_forget = m_co.take_markers(m_lr_name);
        try {
            if (m_agent || m_writers.empty())
                m_last->res->commit(m_last->x, true);
            else
                m_last->res->commit_with_marker(m_last->x, m_tx.m_gtrid, m_forget);
        } catch (const std::exception& e) {
            give_back();
            if (dynamic_cast<const operational_error*>(&e) != nullptr ||
                dynamic_cast<const heuristic_error*>(&e) != nullptr) {
                // Outcome unknown: leave the others prepared; recovery reads the marker.
                m_tx.finish(outcome::in_doubt);
                diagnostic d = static_cast<const error&>(e).diag();
                d.message = fmt::format(
                    "tm: transaction {} in doubt: the {} '{}' failed during its commit ({}); "
                    "{}",
                    m_tx.m_gtrid, role, m_lr_name, d.message,
                    m_writers.empty()
                        ? "it was the only writer, its outcome is its own"
                        : "the others stay prepared until recovery, which decides from its "
                          "commit marker");
                raise(std::move(d), true);
            }
            // Any other answer to a one-phase commit: the work is rolled back (a refused
            // COMMIT, a failed marker, XAER_RMERR for XA's TMONEPHASE).
            diagnostic d;
            if (const auto* xe = dynamic_cast<const error*>(&e)) d = xe->diag();
            if (!is_rollback_code(d.xa_code)) {
                d.xa_code = XA_RBROLLBACK;
                d.sqlstate = "40000";
            }
            d.message =
                fmt::format("tm: transaction {} rolled back: the {} '{}' did not commit: {}",
                            m_tx.m_gtrid, role, m_lr_name, e.what());
            try {
                m_last->res->rollback(m_last->x);  // out of its branch, if still in it
            } catch (...) {
            }
            m_last->read_only = true;  // gone: not rolled back again
            m_tx.rollback_members(true);
            m_tx.finish(outcome::rolled_back);
            raise(std::move(d));
        }
        m_last->read_only = true;  // finished: never rolled back from here on
    }

    void log_decision() {
        try {
            log_record rec{log_record::kind::commit, m_tx.m_gtrid, {}};
            for (auto* m : m_writers) rec.branches.emplace_back(m->res->name(), m->x.bqual());
            m_co.m_log->force(rec);
            m_logged = true;
        } catch (const error& e) {
            // Maybe on disk, maybe not: leave the branches prepared and let recovery
            // decide from what the log holds, which is consistent either way.
            m_tx.finish(outcome::in_doubt);
            diagnostic d = e.diag();
            d.xa_code = XAER_RMFAIL;
            d.message =
                fmt::format("tm: transaction {} in doubt: the decision could not be logged: {}",
                            m_tx.m_gtrid, d.message);
            raise(std::move(d), true);
        }
    }

    // Phase two. A decided branch must answer "committed" (or "try later", retried
    // here, then left to recovery); anything else is reported, never taken for done.
    void commit_writers() {
        auto one = [this](std::size_t i) { commit_writer(*m_writers[i]); };
        if (armed_for("between_commits") && !m_writers.empty()) {
            one(0);
            crash_point("between_commits");
            for (std::size_t i = 1; i < m_writers.size(); ++i) one(i);
        } else {
            m_co.m_workers->parallel_for(m_writers.size(), one, [&](std::size_t i) {
                return m_writers[i]->res->thread_bound();
            });
        }
        crash_point("after_commits");
    }

    void commit_writer(member& m) {
        auto report = [&](int code, std::string what, bool keep_for_recovery) {
            std::lock_guard lk(m_hmutex);
            m_heuristics.push_back(
                fmt::format("'{}' {}: {}", m.res->name(), m.x.to_string(), std::move(what)));
            if (code == XA_HEURHAZ) m_heuristic_code = XA_HEURHAZ;
            if (keep_for_recovery) m_tx.m_unfinished.push_back(m.x);
        };
        auto leave_for_recovery = [&] {
            std::lock_guard lk(m_hmutex);
            m_tx.m_unfinished.push_back(m.x);
        };
        try {
            retrying([&] { m.res->commit(m.x, false); });
        } catch (const heuristic_error& e) {
            report(XA_HEURMIX, e.what(), false);
        } catch (const rollback_error& e) {
            report(XA_HEURMIX, fmt::format("rolled back a branch decided committed ({})", e.what()),
                   false);
        } catch (const operational_error&) {
            leave_for_recovery();  // connection lost: recovery commits it
        } catch (const error& e) {
            if (e.xa_code() == XA_RETRY) {
                leave_for_recovery();  // still busy: recovery commits it
            } else if (e.xa_code() == XAER_NOTA) {
                report(XA_HEURMIX,
                       fmt::format("the prepared branch was gone when phase two came to commit "
                                   "it (rolled back by someone else?): {}",
                                   e.what()),
                       false);
            } else {
                // The branch may still be prepared: keep the decision for recovery.
                report(XA_HEURHAZ,
                       fmt::format("did not confirm the commit of a decided branch (recovery "
                                   "retries it): {}",
                                   e.what()),
                       true);
            }
        } catch (...) {
            leave_for_recovery();
        }
    }

    void conclude() {
        if (m_logged && m_tx.m_unfinished.empty())
            m_co.m_log->append(log_record{log_record::kind::end, m_tx.m_gtrid, {}});
        // A marker is needed while a branch it decided may still be prepared.
        if (m_last != nullptr && m_tx.m_unfinished.empty())
            m_co.finished_marker(m_lr_name, m_tx.m_gtrid);
        {
            std::lock_guard lk(m_co.m_mutex);
            ++(m_last == nullptr ? m_co.m_stats.two_phase
               : m_agent         ? m_co.m_stats.last_agent
                                 : m_co.m_stats.last_resource);
        }
        if (!m_logged && !m_tx.m_unfinished.empty() && m_last == nullptr) {
            // The single writer's commit was the decision and it did not answer: unknown
            // (recovery finds no record and rolls the branch back if it is still prepared).
            m_tx.finish(outcome::in_doubt);
            raise(XAER_RMFAIL, "08007",
                  fmt::format("tm: transaction {} in doubt: '{}' did not confirm its commit{}",
                              m_tx.m_gtrid, m_writers[0]->res->name(),
                              m_heuristics.empty() ? "" : " (" + m_heuristics.front() + ")"),
                  0);
        }
        if (!m_heuristics.empty()) {
            m_tx.finish(outcome::heuristic);
            std::string msg;
            for (auto& h : m_heuristics) msg += (msg.empty() ? "" : "; ") + h;
            raise(m_heuristic_code, "40000",
                  fmt::format("tm: transaction {} was decided committed but is not atomic: {}",
                              m_tx.m_gtrid, msg));
        }
        m_tx.finish(outcome::committed);
    }

    transaction& m_tx;
    coordinator& m_co;
    member* m_last = nullptr;  // the decider, if any
    bool m_agent = false;      // last is a last agent (two-phase, not prepared)
    bool m_deferred = false;   // its marker went with its work
    bool m_logged = false;     // the decision is in the forced log
    std::vector<member*> m_tpc, m_writers;
    std::string m_lr_name;
    std::vector<std::string> m_forget;  // finished markers deleted with this one
    std::vector<std::string> m_heuristics;
    int m_heuristic_code = XA_HEURMIX;
    std::mutex m_hmutex;
};

void transaction::commit() {
    if (m_done) misuse("commit: the transaction is finished");
    if (expired()) {
        rollback_members(true);  // an active switch branch ends with TMFAIL
        finish(outcome::rolled_back);
        raise(XA_RBTIMEOUT, "40000",
              fmt::format("tm: transaction {} exceeded its timeout of {:g} s and was rolled back",
                          m_gtrid, static_cast<double>(m_timeout.count()) / 1000.0));
    }
    for (auto& h : m_before) {
        try {
            h();
        } catch (const std::exception& e) {
            rollback_members(true);
            finish(outcome::rolled_back);
            raise(XA_RBROLLBACK, "40000",
                  fmt::format("tm: transaction {} vetoed by a before-commit hook "
                              "and rolled back: {}",
                              m_gtrid, e.what()));
        }
    }
    if (m_members.empty()) {
        finish(outcome::committed);
        return;
    }
    if (m_members.size() == 1) {
        auto& m = m_members[0];
        try {
            m.res->commit(m.x, true);
        } catch (const rollback_error&) {
            finish(outcome::rolled_back);
            throw;
        } catch (const operational_error&) {
            finish(outcome::in_doubt);
            throw;
        } catch (const heuristic_error&) {
            finish(outcome::heuristic);
            throw;
        } catch (...) {
            try {
                m.res->rollback(m.x);
            } catch (...) {
            }
            finish(outcome::rolled_back);
            throw;
        }
        {
            std::lock_guard lk(m_coord->m_mutex);
            ++m_coord->m_stats.one_phase;
        }
        finish(outcome::committed);
        return;
    }
    two_phase_commit(*this).run();
}

// ---------------------------------------------------------------------------------------
// coordinator

coordinator::coordinator(options o) : m_id(std::move(o.id)) {
    m_workers = std::make_unique<worker_pool>(o.workers);
    m_timeout = o.transaction_timeout;
    m_last_agent = o.last_agent.empty() ? "auto" : std::move(o.last_agent);
    if (!valid_id(m_id))
        raise(XAER_INVAL, "22023",
              "tm: the coordinator id must be 1-16 characters of [A-Za-z0-9_-]");
    std::random_device rd;
    const std::uint64_t nonce =
        (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    m_prefix = fmt::format("{}.{:016x}.", m_id, nonce);
    m_log = o.log;
    if (!m_log) {
        if (o.log_path.empty()) raise(XAER_INVAL, "22023", "tm: a log or a log path is required");
        file_log::options lo;
        lo.create = o.create_log;
        m_log = std::make_shared<file_log>(o.log_path, m_id, lo);
    }
    if (m_log->coordinator_id() != m_id)
        raise(XAER_INVAL, "22023",
              fmt::format("tm: the decision log ({}) belongs to coordinator '{}', not '{}'",
                          m_log->describe(), m_log->coordinator_id(), m_id));
    if (o.factory) m_startup = recover(o.factory, o.resources, o.recovery);
}

coordinator::~coordinator() = default;

transaction coordinator::begin() {
    // A log that can no longer record decisions (another process owns the coordinator
    // now, or a write failed) would leave every new transaction in doubt.
    if (const std::string why = m_log->fail_stop(); !why.empty())
        raise(XAER_RMERR, "55006",
              fmt::format("tm: coordinator '{}' cannot begin a transaction: its decision log "
                          "({}) can no longer record decisions: {}",
                          m_id, m_log->describe(), why));
    std::lock_guard lk(m_mutex);
    std::string g = fmt::format("{}{:x}", m_prefix, ++m_seq);
    m_inflight.insert(g);
    transaction t(*this, std::move(g));
    t.set_timeout(m_timeout);
    return t;
}

void coordinator::forget_inflight(const std::string& gtrid) {
    std::lock_guard lk(m_mutex);
    m_inflight.erase(gtrid);
}

void coordinator::finished_marker(const std::string& name, const std::string& gtrid) {
    std::lock_guard lk(m_mutex);
    m_finished_markers[name].push_back(gtrid);
}

bool coordinator::may_be_last_agent(const resource& r) const {
    return m_last_agent == "auto" || (m_last_agent != "off" && m_last_agent == r.name());
}

void coordinator::give_back_markers(const std::string& name, std::vector<std::string>& names) {
    if (names.empty()) return;
    std::lock_guard lk(m_mutex);
    auto& v = m_finished_markers[name];
    v.insert(v.end(), std::make_move_iterator(names.begin()), std::make_move_iterator(names.end()));
    names.clear();
}

std::vector<std::string> coordinator::take_markers(const std::string& name) {
    std::lock_guard lk(m_mutex);
    auto it = m_finished_markers.find(name);
    if (it == m_finished_markers.end() || it->second.size() < marker_batch) return {};
    std::vector<std::string> out;
    auto& v = it->second;
    const std::size_t n = marker_batch;
    out.assign(v.end() - static_cast<std::ptrdiff_t>(n), v.end());
    v.resize(v.size() - n);
    return out;
}

bool coordinator::owns(const xid& x) const {
    return !x.is_unparsed() && x.format_id() == format_id && x.gtrid().size() > m_id.size() &&
           x.gtrid().compare(0, m_id.size(), m_id) == 0 && x.gtrid()[m_id.size()] == '.';
}

coordinator::statistics coordinator::stats() const {
    std::lock_guard lk(m_mutex);
    return m_stats;
}

// One recovery pass, in its steps: check that the log's resources are given, scan
// every resource for this coordinator's prepared branches, read (and fence) the commit
// markers, finish each branch as decided, then close what is finished.
class recovery_pass {
  public:
    recovery_pass(coordinator& co, const resource_factory& make, std::vector<std::string> names,
                  const recovery_options& o)
        : m_co(co), m_make(make), m_names(std::move(names)), m_opts(o) {}

    recovery_report run() {
        m_rep.warnings = m_co.m_log->warnings();
        for (auto& r : m_co.m_log->live()) m_live.emplace(r.gtrid, r);
        require_logged_resources();
        scan();
        read_markers();
        // Without every marker a missing one does not mean "not committed": then decide
        // only what the log decides, and leave the rest in doubt.
        m_markers_complete = m_rep.errors.empty();
        if (m_markers_complete) fence_undecided();
        finish_branches();
        close_finished();
        if (trace_enabled())
            trace(fmt::format(
                "tm recovery of '{}': {} committed, {} rolled back, {} heuristic, {} errors",
                m_co.m_id, m_rep.committed.size(), m_rep.rolled_back.size(), m_rep.heuristic.size(),
                m_rep.errors.size()));
        if (m_rep.complete()) {
            try {
                m_co.m_log->compact();
            } catch (const error& e) {
                m_rep.warnings.push_back(std::string("log not compacted: ") + e.what());
            }
        }
        return std::move(m_rep);
    }

  private:
    struct scanned {
        std::unique_ptr<resource> res;
        std::vector<xid> own;
    };

    bool inflight(const std::string& gtrid) const {
        std::lock_guard lk(m_co.m_mutex);
        return m_co.m_inflight.count(gtrid) != 0;
    }

    // Every resource the log names must be given: recovering without one would leave
    // its decided branches prepared while reporting success for the others.
    void require_logged_resources() const {
        std::set<std::string> missing;
        for (const auto& [g, r] : m_live)
            for (const auto& b : r.branches)
                if (std::find(m_names.begin(), m_names.end(), b.first) == m_names.end())
                    missing.insert(b.first);
        if (missing.empty()) return;
        std::string list;
        for (const auto& n : missing) list += (list.empty() ? "'" : ", '") + n + "'";
        raise(XAER_INVAL, "22023",
              fmt::format("tm: recovery refused: the decision log ({}) names resources that "
                          "were not given: {}. Configure every resource the coordinator uses",
                          m_co.m_log->describe(), list));
    }

    // Each resource's prepared branches of this coordinator, retried with back-off while
    // it cannot be reached.
    void scan() {
        for (const auto& name : m_names) {
            if (m_reachable.count(name)) continue;
            auto backoff = m_opts.first_backoff;
            for (int attempt = 1;; ++attempt) {
                try {
                    scanned s;
                    s.res = m_make(name);
                    if (!s.res) {
                        // Not a connection problem: retrying cannot help.
                        m_rep.errors.push_back(fmt::format(
                            "resource '{}': the resource factory does not know it", name));
                        break;
                    }
                    for (auto& x : s.res->recover()) {
                        if (m_co.owns(x))
                            s.own.push_back(x);
                        else
                            ++m_rep.foreign_left_alone;
                    }
                    m_reachable.emplace(name, std::move(s));
                    break;
                } catch (const std::exception& e) {
                    if (attempt >= m_opts.attempts) {
                        m_rep.errors.push_back(
                            fmt::format("resource '{}' unreachable after {} attempts: {}", name,
                                        attempt, e.what()));
                        break;
                    }
                    std::this_thread::sleep_for(backoff);
                    backoff = std::min(backoff * 2, m_opts.max_backoff);
                }
            }
        }
    }

    // Decisions recorded by last resources and last agents (markers), by gtrid. Any
    // resource may have been a last agent (the setting may have changed since): every
    // one is asked; those that keep no markers answer none.
    void read_markers() {
        for (auto& [name, s] : m_reachable) {
            try {
                for (auto& m : s.res->markers(m_co.m_id + ".")) m_markers.emplace(m, name);
            } catch (const std::exception& e) {
                m_rep.errors.push_back(fmt::format(
                    "resource '{}': cannot read its commit markers: {}", name, e.what()));
            }
        }
    }

    // A gtrid with prepared branches, no commit record and no visible marker may still
    // have its marker's COMMIT running on the server for the dead coordinator: make each
    // such absence final before presuming abort (docs/DESIGN.md section 7, Recovery).
    void fence_undecided() {
        std::set<std::string> undecided;
        for (const auto& [name, s] : m_reachable)
            for (const auto& x : s.own)
                if (!m_live.count(x.gtrid()) && !m_markers.count(x.gtrid()))
                    undecided.insert(x.gtrid());
        for (auto& [name, s] : m_reachable) {
            for (const auto& g : undecided) {
                if (m_markers.count(g) || inflight(g)) continue;
                try {
                    if (s.res->marker_committed(g)) m_markers.emplace(g, name);
                } catch (const std::exception& e) {
                    m_markers_complete = false;
                    m_rep.errors.push_back(fmt::format(
                        "resource '{}': cannot make sure that marker {} is not being committed: {}",
                        name, g, e.what()));
                }
            }
        }
    }

    void finish_branches() {
        bool first = true;
        for (auto& [name, s] : m_reachable) {
            for (const auto& x : s.own) {
                if (inflight(x.gtrid())) continue;  // a running transaction's own
                if (m_finished_here.count(x)) continue;
                const bool commit = m_live.count(x.gtrid()) || m_markers.count(x.gtrid());
                if (!commit && !m_markers_complete) {
                    m_unresolved.insert(x.gtrid());
                    continue;
                }
                finish_branch(name, *s.res, x, commit);
                if (first) {
                    first = false;
                    crash_point("during_recovery");
                }
            }
        }
    }

    void finish_branch(const std::string& name, resource& res, const xid& x, bool commit) {
        const char* decided = commit ? "decided commit" : "decided rollback";
        try {
            if (commit) {
                retrying([&] { res.commit_recovered(x); });
                m_rep.committed.push_back(x);
            } else {
                retrying([&] { res.rollback_recovered(x); });
                m_rep.rolled_back.push_back(x);
            }
            m_finished_here.insert(x);
        } catch (const heuristic_error& e) {
            m_unresolved.insert(x.gtrid());  // keep the record: someone must look
            m_rep.heuristic.push_back(
                fmt::format("'{}' {} ({}): {}", name, x.to_string(), decided, e.what()));
        } catch (const rollback_error& e) {
            if (commit)
                m_rep.heuristic.push_back(fmt::format("'{}' {} (decided commit) rolled back: {}",
                                                      name, x.to_string(), e.what()));
            else
                m_rep.rolled_back.push_back(x);
        } catch (const error& e) {
            if (e.xa_code() == XAER_NOTA && !commit) return;  // gone: rolled back anyway
            if (e.xa_code() == XAER_NOTA) {
                // Listed as prepared a moment ago, gone now: committed by the previous
                // process's last command, or rolled back by someone else. Which one cannot
                // be told from here: an operator must check.
                m_rep.heuristic.push_back(
                    fmt::format("'{}' {} (decided commit): the branch vanished before "
                                "recovery could commit it; check whether its work is there: {}",
                                name, x.to_string(), e.what()));
                return;
            }
            m_unresolved.insert(x.gtrid());
            m_rep.errors.push_back(fmt::format("'{}' {}: {}", name, x.to_string(), e.what()));
        }
    }

    // Close what is finished: end records, markers.
    void close_finished() {
        for (const auto& [g, r] : m_live) {
            if (inflight(g)) continue;
            bool done = !m_unresolved.count(g);
            for (const auto& b : r.branches) done = done && m_reachable.count(b.first);
            if (done) {
                m_co.m_log->append(log_record{log_record::kind::end, g, {}});
                ++m_rep.log_records_finished;
            }
        }
        if (!m_markers_complete) return;
        std::map<std::string, std::vector<std::string>> drop;
        for (const auto& [g, name] : m_markers) {
            if (inflight(g) || m_unresolved.count(g)) continue;
            drop[name].push_back(g);
        }
        for (auto& [name, gs] : drop) {
            try {
                m_reachable.at(name).res->delete_markers(gs);
                m_rep.markers_deleted += gs.size();
            } catch (const std::exception& e) {
                m_rep.warnings.push_back(
                    fmt::format("resource '{}': markers not deleted: {}", name, e.what()));
            }
        }
    }

    coordinator& m_co;
    const resource_factory& m_make;
    std::vector<std::string> m_names;
    const recovery_options& m_opts;
    recovery_report m_rep;
    std::map<std::string, log_record> m_live;  // the log's undone decisions, by gtrid
    std::map<std::string, scanned> m_reachable;
    std::map<std::string, std::string> m_markers;  // gtrid -> resource name holding it
    bool m_markers_complete = false;
    std::set<std::string> m_unresolved;
    // Two resources on one database both list its branches: a branch finished through
    // one is not "vanished" when the other comes to it.
    std::set<xid> m_finished_here;
};

recovery_report coordinator::recover(const resource_factory& make, std::vector<std::string> names,
                                     const recovery_options& o) {
    return recovery_pass(*this, make, std::move(names), o).run();
}

}  // namespace xarm::tm
