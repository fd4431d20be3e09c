// Targets, C switch instances, the case context and the assertions cases use.
#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "isolation.hpp"
#include "xarm/conformance.hpp"
#include "xarm/switch_loader.hpp"

namespace xarm::conformance {

namespace {

std::atomic<int> g_rmid{4100};
std::atomic<unsigned> g_counter{0};

std::string unique_token() {
    auto now = std::chrono::system_clock::now().time_since_epoch().count();
    return fmt::format("{}_{}_{}", ::getpid(), static_cast<unsigned long long>(now) % 1000000007ULL,
                       g_counter++);
}

// Which database an xarm connection talks to, for the per-database SQL snippets.
std::string probe_dbms(const target& t) {
    try {
        connection c(t.drv, t.info);
        return c.dbms();
    } catch (const std::exception&) {
        return {};
    }
}

}  // namespace

const char* to_string(outcome o) noexcept {
    switch (o) {
        case outcome::pass:
            return "PASS";
        case outcome::fail:
            return "FAIL";
        case outcome::not_supported:
            return "NOT SUPPORTED";
        case outcome::error:
            return "ERROR";
        case outcome::not_applicable:
            return "n/a";
        case outcome::not_configured:
            return "not configured";
    }
    return "?";
}

const char* to_string(layer l) noexcept {
    switch (l) {
        case layer::c_switch:
            return "C switch";
        case layer::cpp:
            return "C++ API";
        case layer::sql:
            return "SQL";
    }
    return "?";
}

const char* to_string(decl_source s) noexcept {
    switch (s) {
        case decl_source::xarm_driver:
            return "the library's xarm declaration";
        case decl_source::switch_flags:
            return "the switch's flags";
        case decl_source::declare_option:
            return "--declare";
        case decl_source::specification:
            return "required by the XA specification";
        case decl_source::undeclared:
            return "undeclared (optional: tried)";
    }
    return "?";
}

bool target::undeclared(capability c) const {
    auto it = sources.find(c);
    return it != sources.end() && it->second == decl_source::undeclared;
}

bool target::strict_refusals(capability c) const {
    // xarm's declarations promise the refusal's exact form; a third party's (or one
    // given with --declare) only that the feature is refused as the specification allows.
    auto it = sources.find(c);
    return last_error != nullptr && (it == sources.end() || it->second == decl_source::xarm_driver);
}

std::vector<std::string> switch_problems(const xa_switch_t& sw) {
    return xarm::switch_problems(sw);
}

namespace {

void* own_symbol(void* handle, const char* name) {
    // dlsym also searches the library's dependencies: a wrapper around an xarm driver
    // must not pass for one. Only a symbol the library itself defines counts.
    void* sym = dlsym(handle, name);
    if (sym == nullptr) return nullptr;
    link_map* lm = nullptr;
    Dl_info di{};
    if (dlinfo(handle, RTLD_DI_LINKMAP, &lm) != 0 || lm == nullptr || dladdr(sym, &di) == 0 ||
        di.dli_fname == nullptr || lm->l_name == nullptr)
        return sym;
    std::error_code ec;
    return std::filesystem::equivalent(di.dli_fname, lm->l_name, ec) ? sym : nullptr;
}

void declare_from_flags(target& t) {
    capability_set c;
    using C = capability;
    for (C r : {C::two_phase, C::one_phase, C::recovery}) {
        c.yes(r, "undeclared; the XA specification requires it of every resource manager");
        t.sources[r] = decl_source::specification;
    }
    if (t.sw->flags & TMNOMIGRATE) {
        c.no(C::migrate, "the switch's flags have TMNOMIGRATE");
        t.sources[C::migrate] = decl_source::switch_flags;
    } else {
        c.yes(C::migrate, "undeclared (no TMNOMIGRATE)");
        t.sources[C::migrate] = decl_source::undeclared;
    }
    if (t.sw->flags & TMUSEASYNC) {
        c.yes(C::async, "the switch's flags have TMUSEASYNC");
    } else {
        c.no(C::async, "the switch's flags do not have TMUSEASYNC");
    }
    t.sources[C::async] = decl_source::switch_flags;
    for (C o : {C::read_only_vote, C::join, C::suspend_resume, C::interleave}) {
        c.yes(o, "undeclared");
        t.sources[o] = decl_source::undeclared;
    }
    // A C++ feature: xa_start takes no timeout, so a switch cannot offer one.
    c.no(C::timeout, "a switch's xa_start takes no timeout (tpc_begin's timeout is xarm's own)");
    t.caps = c;
}

}  // namespace

target load_switch_target(const std::string& path, const std::string& symbol,
                          const std::string& info) {
    target t;
    t.library = path;
    t.symbol = symbol;
    t.label = std::filesystem::path(path).filename().string();
    t.info = info;
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (h == nullptr) {
        const char* why = dlerror();
        throw std::runtime_error(
            fmt::format("cannot load {}: {}", path, why ? why : "dlopen failed"));
    }
    if (!symbol.empty()) {
        t.sw = static_cast<xa_switch_t*>(dlsym(h, symbol.c_str()));
        if (t.sw == nullptr)
            throw std::runtime_error(fmt::format("{}: no symbol {}", path, symbol));
    } else {
        using getter = xa_switch_t* (*)();
        auto g = reinterpret_cast<getter>(dlsym(h, "lixa_get_xa_switch"));
        if (g == nullptr)
            throw std::runtime_error(fmt::format(
                "{}: no lixa_get_xa_switch; name the switch symbol with --symbol", path));
        t.sw = g();
        if (t.sw == nullptr) throw std::runtime_error(path + ": lixa_get_xa_switch returned NULL");
    }
    if (auto problems = switch_problems(*t.sw); !problems.empty()) {
        std::string all;
        for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
        throw std::runtime_error(fmt::format("{} ({}): the switch is unusable: {}", path,
                                             symbol.empty() ? "lixa_get_xa_switch()" : symbol,
                                             all));
    }
    t.last_error = reinterpret_cast<int (*)(int, xarm_diag*)>(own_symbol(h, "xarm_last_error"));
    // An xarm driver given by path: its declaration and SQL access come with it.
    if (own_symbol(h, "xarm_driver_v1") != nullptr) {
        try {
            t.drv = load_driver(path);
            t.driver_name = std::string(t.drv->name());
            t.caps = t.drv->capabilities();
            for (auto c : all_capabilities) t.sources[c] = decl_source::xarm_driver;
        } catch (const std::exception&) {
            t.drv.reset();
        }
    }
    if (t.drv) {
        if (t.drv->profile()) t.dbms = t.driver_name;
    } else {
        declare_from_flags(t);
    }
    return t;
}

target load_driver_target(const std::string& name_or_path, const std::string& info) {
    auto drv = load_driver(name_or_path);
    const std::string name(drv->name());
    // The switch lives in the library the loader chose.
    const std::string path = driver_library(name_or_path);
    target t = load_switch_target(path, fmt::format("xarm_{}_switch", name), info);
    t.label = name;
    t.driver_name = name;
    t.drv = drv;
    t.caps = drv->capabilities();
    for (auto c : all_capabilities) t.sources[c] = decl_source::xarm_driver;
    if (drv->profile()) t.dbms = name;
    return t;
}

// ---------------------------------------------------------------------------------------
// rm

using isolation::call;
using isolation::call_mark;

rm::rm(context& ctx, bool do_open) : m_ctx(ctx), m_rmid(ctx.new_rmid()) {
    if (do_open) {
        const int rc = open(ctx.tgt().info.c_str());
        if (rc != XA_OK)
            throw setup_error(fmt::format("xa_open(rmid {}) returned {}: {}", m_rmid, code_text(rc),
                                          diag_text()));
    }
}

rm::~rm() {
    if (!m_open) return;
    // Leave nothing behind on this thread: end what is still associated, then close.
    const xa_switch_t* sw = m_ctx.tgt().sw;
    if (m_active) {
        {
            call_mark m(call::xa_end, m_rmid);
            sw->xa_end_entry(&*m_active, m_rmid, TMSUCCESS);
        }
        call_mark m(call::xa_rollback, m_rmid);
        sw->xa_rollback_entry(&*m_active, m_rmid, TMNOFLAGS);
    }
    call_mark m(call::xa_close, m_rmid);
    sw->xa_close_entry(const_cast<char*>(""), m_rmid, TMNOFLAGS);
}

int rm::open(const char* info, long flags) {
    call_mark m(call::xa_open, m_rmid);
    const int rc = m_ctx.tgt().sw->xa_open_entry(const_cast<char*>(info), m_rmid, flags);
    if (rc == XA_OK) m_open = true;
    return rc;
}
int rm::close(long flags) {
    call_mark m(call::xa_close, m_rmid);
    const int rc = m_ctx.tgt().sw->xa_close_entry(const_cast<char*>(""), m_rmid, flags);
    if (rc == XA_OK) m_open = false;
    return rc;
}
int rm::start(const XID* x, long flags) {
    call_mark m(call::xa_start, m_rmid);
    const int rc = m_ctx.tgt().sw->xa_start_entry(const_cast<XID*>(x), m_rmid, flags);
    if (rc == XA_OK && x != nullptr) m_active = *x;
    return rc;
}
int rm::end(const XID* x, long flags) {
    call_mark m(call::xa_end, m_rmid);
    const int rc = m_ctx.tgt().sw->xa_end_entry(const_cast<XID*>(x), m_rmid, flags);
    if (m_active && x != nullptr && std::memcmp(&*m_active, x, sizeof(XID)) == 0 &&
        rc != XAER_PROTO && rc != XAER_INVAL)
        m_active.reset();
    return rc;
}
int rm::prepare(const XID* x, long flags) {
    call_mark m(call::xa_prepare, m_rmid);
    return m_ctx.tgt().sw->xa_prepare_entry(const_cast<XID*>(x), m_rmid, flags);
}
int rm::commit(const XID* x, long flags) {
    call_mark m(call::xa_commit, m_rmid);
    return m_ctx.tgt().sw->xa_commit_entry(const_cast<XID*>(x), m_rmid, flags);
}
int rm::rollback(const XID* x, long flags) {
    call_mark m(call::xa_rollback, m_rmid);
    return m_ctx.tgt().sw->xa_rollback_entry(const_cast<XID*>(x), m_rmid, flags);
}
int rm::forget(const XID* x, long flags) {
    call_mark m(call::xa_forget, m_rmid);
    return m_ctx.tgt().sw->xa_forget_entry(const_cast<XID*>(x), m_rmid, flags);
}
int rm::recover(XID* xids, long count, long flags) {
    call_mark m(call::xa_recover, m_rmid);
    return m_ctx.tgt().sw->xa_recover_entry(xids, count, m_rmid, flags);
}
int rm::complete(int* handle, int* retval, long flags) {
    call_mark m(call::xa_complete, m_rmid);
    return m_ctx.tgt().sw->xa_complete_entry(handle, retval, m_rmid, flags);
}

std::vector<xid> rm::recover_all(long count) {
    std::vector<xid> out;
    std::vector<XID> page(static_cast<std::size_t>(count));
    long flags = TMSTARTRSCAN;
    for (int guard = 0; guard < 100000; ++guard) {
        const int n = recover(page.data(), count, flags);
        if (n < 0)
            fail(fmt::format("xa_recover({}, count {}) returned {}, expected the number of XIDs{}",
                             flags == TMSTARTRSCAN ? "TMSTARTRSCAN" : "TMNOFLAGS: the next page",
                             count, code_text(n), with_diag(n)));
        if (n > count) fail(fmt::format("xa_recover returned {} XIDs for a page of {}", n, count));
        for (int i = 0; i < n; ++i) {
            try {
                out.push_back(xid::from_c(&page[static_cast<std::size_t>(i)]));
            } catch (const xarm::error& e) {
                fail(std::string("xa_recover returned an invalid XID: ") + e.what());
            }
        }
        if (n < count) break;
        flags = TMNOFLAGS;
    }
    recover(page.data(), 0, TMENDRSCAN);
    return out;
}

std::optional<xarm_diag> rm::diag() const {
    if (m_ctx.tgt().last_error == nullptr) return std::nullopt;
    xarm_diag d{};
    if (m_ctx.tgt().last_error(m_rmid, &d) != 0) return std::nullopt;
    return d;
}

std::string rm::diag_text() const {
    if (m_ctx.tgt().last_error == nullptr)
        return "no diagnostic (the library exports no xarm_last_error)";
    auto d = diag();
    if (!d) return "xarm_last_error reports no failure";
    return fmt::format("{} ({}): {}", code_text(d->xa_code), d->sqlstate, d->message);
}

std::string rm::with_diag(int rc) const {
    return rc < 0 ? " -- " + diag_text() : std::string();
}

// ---------------------------------------------------------------------------------------
// context

context::context(const target& t) : m_t(t) {}
context::~context() {
    cleanup();
}

bool context::claims(capability c) const {
    return !m_t.caps || m_t.caps->has(c);
}

int context::new_rmid() {
    return g_rmid++;
}

connection context::connect() {
    if (!m_t.drv)
        throw not_applicable(
            "needs SQL access: give the switch's native connection with --native-conn SYMBOL "
            "--dbms pq|mysql");
    try {
        return connection(m_t.drv, m_t.info);
    } catch (const xarm::error& e) {
        throw setup_error(std::string("cannot open a connection: ") + e.what());
    }
}

xid context::new_xid(const std::string& bqual, long format) {
    xid x(format, "xc-" + unique_token(), bqual);
    track(x);
    return x;
}

void context::track(const xid& x) {
    std::lock_guard lock(m_mu);
    m_xids.push_back(x);
    isolation::track_xid(x);
}

void context::adopt(const std::vector<xid>& xids, const std::vector<std::string>& tables) {
    std::lock_guard lock(m_mu);
    m_xids.insert(m_xids.end(), xids.begin(), xids.end());
    m_tables.insert(m_tables.end(), tables.begin(), tables.end());
}

XID context::to_c(const xid& x) {
    XID c{};
    x.to_c(c);
    return c;
}

std::string context::new_table() {
    auto c = connect();
    std::string name = "xarm_conf_" + unique_token();
    try {
        c.execute(fmt::format("CREATE TABLE {} (id INTEGER PRIMARY KEY, v VARCHAR(64))", name));
        c.commit();
    } catch (const xarm::error& e) {
        throw setup_error(fmt::format("cannot create table {}: {}", name, e.what()));
    }
    std::lock_guard lock(m_mu);
    m_tables.push_back(name);
    isolation::track_table(name);
    return name;
}

long context::count(const std::string& table) {
    std::lock_guard lock(m_mu);
    // Through a switch a connection is an rmid opened on one thread: one per thread.
    if (m_observer && m_observer_thread != std::this_thread::get_id()) m_observer.reset();
    if (!m_observer) {
        m_observer.emplace(connect());
        m_observer_thread = std::this_thread::get_id();
    }
    auto r = m_observer->query(fmt::format("SELECT COUNT(*) FROM {}", table));
    m_observer->rollback();  // no snapshot kept between reads
    if (r.rows.size() != 1 || r.rows[0].empty() || !r.rows[0][0])
        fail("SELECT COUNT(*) returned no value");
    return std::stol(*r.rows[0][0]);
}

void context::insert(connection& c, const std::string& table, int id) {
    const auto n =
        c.execute(fmt::format("INSERT INTO {} (id, v) VALUES ({}, 'row {}')", table, id, id));
    check(n == 1, fmt::format("INSERT reported {} rows affected, expected 1", n));
}

void context::cleanup() noexcept {
    m_observer.reset();
    if (!m_xids.empty() && claims(capability::two_phase)) {
        // What recovery lists is rolled back; when it cannot list (a switch whose
        // recovery is broken), every tracked xid is rolled back by name.
        try {
            std::optional<std::vector<xid>> listed;
            if (m_t.drv && claims(capability::recovery)) {
                try {
                    connection c(m_t.drv, m_t.info);
                    listed = c.tpc_recover();
                    for (const auto& x : *listed)
                        if (std::find(m_xids.begin(), m_xids.end(), x) != m_xids.end()) {
                            try {
                                c.tpc_rollback(x);
                            } catch (const std::exception&) {
                            }
                        }
                } catch (const std::exception&) {
                    listed.reset();
                }
            }
            if (!listed) {
                rm r(*this);
                std::vector<xid> found;
                bool scanned = false;
                if (claims(capability::recovery)) {
                    try {
                        found = r.recover_all(64);
                        scanned = true;
                    } catch (const std::exception&) {
                    }
                }
                for (const auto& x : m_xids)
                    if (!scanned || std::find(found.begin(), found.end(), x) != found.end()) {
                        XID cx = to_c(x);
                        r.rollback(&cx);
                    }
            }
        } catch (const std::exception&) {
        }
    }
    m_xids.clear();
    if (!m_tables.empty() && m_t.drv) {
        try {
            connection c(m_t.drv, m_t.info);
            // A branch left prepared would make DROP TABLE wait forever.
            if (const dbms_profile* d = profile_for(m_t.dbms);
                d != nullptr && !d->lock_timeout.empty()) {
                try {
                    c.execute(d->lock_timeout);
                    c.commit();
                } catch (const std::exception&) {
                    try {
                        c.rollback();
                    } catch (const std::exception&) {
                    }
                }
            }
            for (const auto& t : m_tables) {
                try {
                    c.execute("DROP TABLE " + t);
                    c.commit();
                } catch (const std::exception&) {
                    try {
                        c.rollback();
                    } catch (const std::exception&) {
                    }
                }
            }
        } catch (const std::exception&) {
        }
    }
    m_tables.clear();
}

// ---------------------------------------------------------------------------------------
// assertions

void fail(const std::string& what) {
    throw failure(what);
}

std::string code_text(int rc) {
    std::string name = xa_code_name(rc);
    if (name != "XA_UNKNOWN") return name;
    return fmt::format("{} (not an XA return code)", rc);
}

void expect_rc(rm& r, int rc, int expected, const char* call) {
    if (rc != expected)
        fail(fmt::format("{} returned {}, expected {}{}", call, code_text(rc), code_text(expected),
                         r.with_diag(rc)));
}

void expect_rc_in(rm& r, int rc, std::initializer_list<int> expected, const char* call) {
    if (std::find(expected.begin(), expected.end(), rc) != expected.end()) return;
    std::string names;
    for (int e : expected) names += (names.empty() ? "" : " or ") + code_text(e);
    fail(fmt::format("{} returned {}, expected {}{}", call, code_text(rc), names, r.with_diag(rc)));
}

void expect_refusal(rm& r, int rc, int code, const char* call, std::initializer_list<int> also) {
    context& ctx = r.ctx();
    if (!ctx.strict_refusals()) {
        // A third party's refusal: any code the specification allows for the feature.
        std::vector<int> allowed{code};
        allowed.insert(allowed.end(), also.begin(), also.end());
        if (std::find(allowed.begin(), allowed.end(), rc) == allowed.end()) {
            std::string names;
            for (int e : allowed) names += (names.empty() ? "" : " or ") + code_text(e);
            fail(fmt::format("{} returned {}; a refusal the XA specification allows is {}{}", call,
                             code_text(rc), names, r.with_diag(rc)));
        }
        ctx.refused_with("refused with " + code_text(rc));
        return;
    }
    expect_rc(r, rc, code, call);
    auto d = r.diag();
    check(d.has_value(),
          fmt::format("{}: refused with {} but xarm_last_error reports nothing (expected "
                      "SQLSTATE 0A000 and a reason)",
                      call, code_text(rc)));
    check(std::string(d->sqlstate) == "0A000",
          fmt::format("{}: refused with {} and SQLSTATE {}, expected SQLSTATE 0A000 (not "
                      "supported): {}",
                      call, code_text(rc), d->sqlstate, d->message));
    check(std::strlen(d->message) > 0, fmt::format("{}: refusal without a message", call));
    ctx.refused_with("refused with " + code_text(rc) + " (0A000)");
}

const dbms_profile* profile_for(const std::string& dbms) {
    // Loaded once per name: profiles are constant, and the cases ask often.
    static std::mutex mutex;
    static std::map<std::string, std::optional<dbms_profile>> cache;
    if (dbms.empty()) return nullptr;
    std::lock_guard lock(mutex);
    auto it = cache.find(dbms);
    if (it == cache.end()) {
        // No such driver here: the cases needing its SQL are not applicable.
        auto d = describing_driver(dbms);
        it = cache.emplace(dbms, d ? d->profile() : std::nullopt).first;
    }
    return it->second ? &*it->second : nullptr;
}

std::string detect_dbms(const target& t) {
    return t.drv ? probe_dbms(t) : std::string();
}

void connect_check(target& t) {
    if (!t.drv || t.via_switch) {
        // A switch: open and close an rmid once, in a child process, since a third
        // party's xa_open may crash; with SQL access also take one connection.
        const bool probe = t.via_switch && t.dbms.empty();
        auto end = isolation::run_in_child(
            [&t, probe] {
                case_result r;
                try {
                    context ctx(t);
                    if (t.via_switch) {
                        auto c = ctx.connect();
                        c.query("SELECT 1");
                        c.rollback();
                    } else {
                        rm opened(ctx);
                    }
                    r.result = outcome::pass;
                    if (probe) r.message = probe_dbms(t);
                } catch (const std::exception& e) {
                    r.result = outcome::error;
                    r.message = e.what();
                }
                return r;
            },
            120);
        if (!end.finished)
            t.setup_error = fmt::format("opening the switch ended the process: {}{}", end.death,
                                        end.in_call.empty() ? "" : " in " + end.in_call);
        else if (end.result.result != outcome::pass)
            t.setup_error = end.result.message;
        else if (probe)
            t.dbms = end.result.message;
        return;
    }
    // A few tries: shared development servers are restarted by other tests now and then.
    for (int attempt = 0;; ++attempt) {
        try {
            connection c(t.drv, t.info);
            t.caps = c.capabilities();
            t.setup_error.clear();
            break;
        } catch (const std::exception& e) {
            t.setup_error = std::string("cannot connect: ") + e.what();
            if (attempt >= 10) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
        }
    }
    if (t.dbms.empty()) t.dbms = probe_dbms(t);
}

}  // namespace xarm::conformance
