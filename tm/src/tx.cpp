// The X/Open TX interface over xarm::tm: each thread's resources are switch resources
// opened from the configuration file (XARM_TX_CONFIG, XARM_TX_PROFILE); the process
// shares one coordinator (one id, one log), made at the first tx_open, which recovers
// what a previous process left in doubt. Every entry point returns exactly one TX code;
// exceptions never cross it.
#include "xarm/tx.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "xarm/driver/trace.hpp"
#include "xarm/error.hpp"
#include "xarm/tm.hpp"
#include "xarm/tm_config.hpp"
#include "xarm/tm_switch.hpp"

namespace xarm::tm {
namespace {

/// The process's configuration and coordinator (made once, by the first tx_open).
struct process_state {
    std::mutex mutex;
    std::optional<config> cfg;
    std::unique_ptr<coordinator> coord;
};
process_state& process() {
    static process_state p;
    return p;
}

/// The states of the TX specification's state table: S0 (not open), S1/S2 (open,
/// unchained/chained, no transaction), S3/S4 (in a transaction).
struct thread_state {
    bool open = false;
    std::vector<std::unique_ptr<switch_resource>> resources;
    std::optional<transaction> tx;
    TRANSACTION_CONTROL control = TX_UNCHAINED;
    TRANSACTION_TIMEOUT timeout = 0;  // for the next transaction begun
    std::string message;
    thread_state() = default;
    thread_state(const thread_state&) = delete;
    thread_state& operator=(const thread_state&) = delete;
    ~thread_state() {
        // A thread that ends without tx_close: its connections end with it or with the
        // process. Closing here could run after the switch's own per-thread state is
        // gone, so nothing is called (tx_close is the way to close).
        // Deliberately leaked: its destructor would roll back through the switch.
        if (tx) (void)std::make_unique<std::optional<transaction>>(std::move(tx)).release();
        for (auto& r : resources) (void)r.release();
    }
};
thread_local thread_state t_state;

config load_tx_config() {
    const char* file = std::getenv("XARM_TX_CONFIG");
    if (file == nullptr || *file == '\0')
        raise(XAER_INVAL, "F0000",
              "tx_open: XARM_TX_CONFIG is not set: it names the configuration file of the "
              "thread's resources");
    auto c = load_config(file);
    if (const char* prof = std::getenv("XARM_TX_PROFILE"); prof != nullptr && *prof != '\0')
        c = select_profile(c, prof);
    return c;
}

/// The resources of the calling thread, rmid = position + 1.
std::unique_ptr<switch_resource> open_resource(const config& c, const std::string& name) {
    for (std::size_t i = 0; i < c.resources.size(); ++i) {
        const auto& r = c.resources[i];
        if (r.name != name) continue;
        return std::make_unique<switch_resource>(switch_resource::options{
            .name = r.name,
            .library = r.switch_library.empty() ? r.driver : r.switch_library,
            .symbol = r.symbol,
            .open = r.open,
            .rmid = static_cast<int>(i + 1)});
    }
    return nullptr;
}

bool timed_out(const thread_state& s) {
    return s.tx && s.tx->expired();
}

int fail_code(int rc, const std::exception& e) {
    t_state.message = e.what();
    if (trace_enabled()) trace(fmt::format("tx: {} ({})", e.what(), rc));
    return rc;
}

/// Runs one entry point: exactly one TX code, whatever happens inside.
template <class F>
int entry(F&& f) noexcept {
    try {
        t_state.message.clear();
        return f();
    } catch (const std::exception& e) {
        return fail_code(TX_FAIL, e);
    } catch (...) {
        t_state.message = "unknown exception";
        return TX_FAIL;
    }
}

/// Every branch of the thread dissociated: whatever happened, the thread can go on.
void dissociate_all(thread_state& s) {
    for (auto& r : s.resources)
        if (r->active()) {
            try {
                r->fail_active();
            } catch (const std::exception&) {
            }
        }
}

int begin_transaction(thread_state& s) {
    auto& p = process();
    s.tx.emplace(p.coord->begin());
    try {
        for (auto& r : s.resources) s.tx->enlist(*r);
    } catch (const error& e) {
        dissociate_all(s);
        try {
            s.tx->rollback();
        } catch (const std::exception&) {
        }
        s.tx.reset();
        return fail_code(e.xa_code() == XAER_OUTSIDE ? TX_OUTSIDE : TX_ERROR, e);
    }
    s.tx->set_timeout(std::chrono::seconds(s.timeout));
    return TX_OK;
}

/// A finished transaction's TX code, from its outcome (and the heuristic's kind).
int code_of(const transaction& tx, int heuristic_xa_code) {
    switch (tx.result().value_or(outcome::in_doubt)) {
        case outcome::committed:
            return TX_OK;
        case outcome::rolled_back:
            return TX_ROLLBACK;
        case outcome::in_doubt:
            return TX_HAZARD;
        case outcome::heuristic:
            return heuristic_xa_code == XA_HEURMIX || heuristic_xa_code == XA_HEURRB ? TX_MIXED
                                                                                     : TX_HAZARD;
    }
    return TX_HAZARD;
}

/// After tx_commit / tx_rollback: chained mode begins the next transaction.
int then_chain(thread_state& s, int rc) {
    s.tx.reset();
    dissociate_all(s);
    if (s.control != TX_CHAINED || rc == TX_FAIL) return rc;
    const int b = begin_transaction(s);
    return b == TX_OK ? rc : rc + TX_NO_BEGIN;
}

int do_rollback(thread_state& s) {
    int rc = TX_OK;
    try {
        s.tx->rollback();
    } catch (const heuristic_error& e) {
        rc = fail_code(e.xa_code() == XA_HEURCOM   ? TX_COMMITTED
                       : e.xa_code() == XA_HEURMIX ? TX_MIXED
                                                   : TX_HAZARD,
                       e);
    } catch (const operational_error& e) {
        // The connection is gone, and an unprepared branch with it.
        t_state.message = e.what();
    } catch (const error& e) {
        rc = fail_code(TX_HAZARD, e);
    }
    return rc;
}

}  // namespace
}  // namespace xarm::tm

using namespace xarm::tm;

extern "C" {

int tx_open(void) {
    return entry([] {
        auto& s = t_state;
        if (s.open) return TX_OK;
        auto& p = process();
        std::lock_guard lk(p.mutex);
        if (!p.cfg) p.cfg = load_tx_config();
        const config& c = *p.cfg;
        std::vector<std::unique_ptr<switch_resource>> opened;
        try {
            for (const auto& r : c.resources) opened.push_back(open_resource(c, r.name));
        } catch (const xarm::error& e) {
            return fail_code(e.sqlstate() == "F0000" ? TX_FAIL : TX_ERROR, e);
        }
        if (!p.coord) {
            coordinator::options o;
            o.id = c.coordinator_id;
            const char* create = std::getenv("XARM_TX_CREATE_LOG");
            try {
                o.log = open_log(c, create != nullptr && std::string(create) == "1");
            } catch (const xarm::error& e) {
                return fail_code(TX_ERROR, e);
            }
            o.factory = [cfg = c](const std::string& name) -> std::unique_ptr<resource> {
                return open_resource(cfg, name);
            };
            o.resources = resource_names(c);
            o.workers = 0;  // every call stays on the application's thread
            p.coord = std::make_unique<coordinator>(std::move(o));
            const auto& rep = p.coord->startup_recovery();
            if (rep && !rep->complete()) {
                // Not a reason to refuse work, but an operator must see it.
                for (const auto& h : rep->heuristic)
                    std::fprintf(stderr, "xarm tx_open: recovery: HEURISTIC: %s\n", h.c_str());
                for (const auto& e : rep->errors)
                    std::fprintf(stderr, "xarm tx_open: recovery: %s\n", e.c_str());
            }
        }
        s.resources = std::move(opened);
        s.timeout = static_cast<TRANSACTION_TIMEOUT>(c.transaction_timeout.count());
        s.control = TX_UNCHAINED;
        s.open = true;
        return TX_OK;
    });
}

int tx_close(void) {
    return entry([] {
        auto& s = t_state;
        if (!s.open) return TX_OK;
        if (s.tx) {
            s.message = "tx_close inside a transaction: commit or roll it back first";
            return TX_PROTOCOL_ERROR;
        }
        s.resources.clear();  // xa_close of each rmid on this thread
        s.open = false;
        return TX_OK;
    });
}

int tx_begin(void) {
    return entry([] {
        auto& s = t_state;
        if (!s.open || s.tx) {
            s.message = s.open ? "tx_begin inside a transaction" : "tx_begin before tx_open";
            return TX_PROTOCOL_ERROR;
        }
        return begin_transaction(s);
    });
}

int tx_commit(void) {
    return entry([] {
        auto& s = t_state;
        if (!s.open || !s.tx) {
            s.message = "tx_commit outside a transaction";
            return TX_PROTOCOL_ERROR;
        }
        // An expired transaction is rolled back by commit() (TX_ROLLBACK).
        int heuristic = 0;
        try {
            s.tx->commit();
        } catch (const xarm::error& e) {
            heuristic = e.xa_code();
            s.message = e.what();
        }
        int rc = TX_FAIL;
        if (s.tx->finished()) {
            rc = code_of(*s.tx, heuristic);
        } else {
            // Not decided (an error before any vote): nothing may stay behind.
            dissociate_all(s);
            (void)do_rollback(s);
            rc = TX_ROLLBACK;
        }
        return then_chain(s, rc);
    });
}

int tx_rollback(void) {
    return entry([] {
        auto& s = t_state;
        if (!s.open || !s.tx) {
            s.message = "tx_rollback outside a transaction";
            return TX_PROTOCOL_ERROR;
        }
        dissociate_all(s);
        return then_chain(s, do_rollback(s));
    });
}

int tx_info(TXINFO* info) {
    return entry([info] {
        auto& s = t_state;
        if (!s.open) {
            s.message = "tx_info before tx_open";
            return TX_PROTOCOL_ERROR;
        }
        if (info != nullptr) {
            std::memset(info, 0, sizeof *info);
            info->xid.formatID = -1;
            if (s.tx) xarm::xid(format_id, s.tx->gtrid(), "").to_c(info->xid);
            info->when_return = TX_COMMIT_COMPLETED;
            info->transaction_control = s.control;
            info->transaction_timeout =
                s.tx ? static_cast<TRANSACTION_TIMEOUT>(s.tx->timeout().count() / 1000) : s.timeout;
            info->transaction_state = timed_out(s) ? TX_TIMEOUT_ROLLBACK_ONLY : TX_ACTIVE;
        }
        return s.tx ? 1 : 0;
    });
}

int tx_set_commit_return(COMMIT_RETURN when_return) {
    return entry([when_return] {
        auto& s = t_state;
        if (!s.open) return TX_PROTOCOL_ERROR;
        if (when_return == TX_COMMIT_COMPLETED) return TX_OK;
        if (when_return == TX_COMMIT_DECISION_LOGGED) {
            s.message =
                "TX_COMMIT_DECISION_LOGGED is not supported: tx_commit returns once every "
                "branch is committed";
            return TX_NOT_SUPPORTED;
        }
        return TX_EINVAL;
    });
}

int tx_set_transaction_control(TRANSACTION_CONTROL control) {
    return entry([control] {
        auto& s = t_state;
        if (!s.open) return TX_PROTOCOL_ERROR;
        if (control != TX_CHAINED && control != TX_UNCHAINED) return TX_EINVAL;
        s.control = control;
        return TX_OK;
    });
}

int tx_set_transaction_timeout(TRANSACTION_TIMEOUT timeout) {
    return entry([timeout] {
        auto& s = t_state;
        if (!s.open) return TX_PROTOCOL_ERROR;
        if (timeout < 0) return TX_EINVAL;
        s.timeout = timeout;  // from the next transaction begun
        return TX_OK;
    });
}

const char* xarm_tx_message(void) {
    return t_state.message.c_str();
}

}  // extern "C"
