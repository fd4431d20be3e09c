// Targets, C switch instances, the case context and the assertions cases use.
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "xarm/conformance.hpp"

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
    static const std::pair<const char*, const char*> probes[] = {
        {"pq", "SELECT current_setting('server_version_num')"},
        {"mysql", "SELECT @@version_comment"},
        {"sqlite", "SELECT sqlite_version()"},
    };
    for (const auto& [name, sql] : probes) {
        try {
            connection c(t.drv, t.info);
            c.query(sql);
            c.rollback();
            return name;
        } catch (const std::exception&) {
        }
    }
    return {};
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

target load_switch_target(const std::string& path, const std::string& symbol,
                          const std::string& info) {
    target t;
    t.library = path;
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
    t.last_error = reinterpret_cast<int (*)(int, xarm_diag*)>(dlsym(h, "xarm_last_error"));
    // An xarm driver given by path: its declaration and SQL access come with it.
    if (dlsym(h, "xarm_driver_v1") != nullptr) {
        try {
            t.drv = load_driver(path);
            t.driver_name = std::string(t.drv->name());
            t.caps = t.drv->capabilities();
        } catch (const std::exception&) {
            t.drv.reset();
        }
    }
    if (t.drv) {
        if (t.driver_name == "pq" || t.driver_name == "mysql" || t.driver_name == "sqlite")
            t.dbms = t.driver_name;
    }
    return t;
}

target load_driver_target(const std::string& name_or_path, const std::string& info) {
    auto drv = load_driver(name_or_path);
    const std::string name(drv->name());
    // The switch lives in the library the loader chose: search the same places in the
    // same order (XARM_DRIVER_PATH, beside libxarm, the system) for the one that holds it.
    std::string path;
    const bool is_path = name_or_path.find('/') != std::string::npos ||
                         name_or_path.find(".so") != std::string::npos;
    if (is_path) {
        path = name_or_path;
    } else {
        std::vector<std::string> dirs;
        if (const char* p = std::getenv("XARM_DRIVER_PATH")) {
            std::string all = p;
            for (std::size_t pos = 0; pos <= all.size();) {
                auto c = all.find(':', pos);
                auto d = all.substr(pos, c == std::string::npos ? std::string::npos : c - pos);
                if (!d.empty()) dirs.push_back(d);
                if (c == std::string::npos) break;
                pos = c + 1;
            }
        }
        Dl_info di{};
        if (dladdr(reinterpret_cast<void*>(&load_driver), &di) != 0 && di.dli_fname != nullptr)
            dirs.push_back(std::filesystem::path(di.dli_fname).parent_path().string());
        const std::string file = fmt::format("libxarm_{}.so", name_or_path);
        for (const auto& d : dirs) {
            auto candidate = d + "/" + file;
            void* h = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
            if (h == nullptr) continue;
            using entry_t = const driver* (*)();
            auto e = reinterpret_cast<entry_t>(dlsym(h, "xarm_driver_v1"));
            if (e != nullptr && e() == drv.get()) {
                path = candidate;
                break;
            }
        }
        if (path.empty()) path = file;  // the system's search path
    }
    target t = load_switch_target(path, fmt::format("xarm_{}_switch", name), info);
    t.label = name;
    t.driver_name = name;
    t.drv = drv;
    t.caps = drv->capabilities();
    if (name == "pq" || name == "mysql" || name == "sqlite") t.dbms = name;
    return t;
}

// ---------------------------------------------------------------------------------------
// rm

rm::rm(context& ctx, bool do_open) : m_ctx(ctx), m_rmid(ctx.new_rmid()) {
    if (do_open) {
        const int rc = open(ctx.tgt().info.c_str());
        if (rc != XA_OK)
            throw setup_error(fmt::format("xa_open(rmid {}) returned {}: {}", m_rmid,
                                          xa_code_name(rc), diag_text()));
    }
}

rm::~rm() {
    if (!m_open) return;
    // Leave nothing behind on this thread: end what is still associated, then close.
    if (m_active) {
        m_ctx.tgt().sw->xa_end_entry(&*m_active, m_rmid, TMSUCCESS);
        m_ctx.tgt().sw->xa_rollback_entry(&*m_active, m_rmid, TMNOFLAGS);
    }
    m_ctx.tgt().sw->xa_close_entry(const_cast<char*>(""), m_rmid, TMNOFLAGS);
}

int rm::open(const char* info, long flags) {
    const int rc = m_ctx.tgt().sw->xa_open_entry(const_cast<char*>(info), m_rmid, flags);
    if (rc == XA_OK) m_open = true;
    return rc;
}
int rm::close(long flags) {
    const int rc = m_ctx.tgt().sw->xa_close_entry(const_cast<char*>(""), m_rmid, flags);
    if (rc == XA_OK) m_open = false;
    return rc;
}
int rm::start(const XID* x, long flags) {
    const int rc = m_ctx.tgt().sw->xa_start_entry(const_cast<XID*>(x), m_rmid, flags);
    if (rc == XA_OK && x != nullptr) m_active = *x;
    return rc;
}
int rm::end(const XID* x, long flags) {
    const int rc = m_ctx.tgt().sw->xa_end_entry(const_cast<XID*>(x), m_rmid, flags);
    if (m_active && x != nullptr && std::memcmp(&*m_active, x, sizeof(XID)) == 0 &&
        rc != XAER_PROTO && rc != XAER_INVAL)
        m_active.reset();
    return rc;
}
int rm::prepare(const XID* x, long flags) {
    return m_ctx.tgt().sw->xa_prepare_entry(const_cast<XID*>(x), m_rmid, flags);
}
int rm::commit(const XID* x, long flags) {
    return m_ctx.tgt().sw->xa_commit_entry(const_cast<XID*>(x), m_rmid, flags);
}
int rm::rollback(const XID* x, long flags) {
    return m_ctx.tgt().sw->xa_rollback_entry(const_cast<XID*>(x), m_rmid, flags);
}
int rm::forget(const XID* x, long flags) {
    return m_ctx.tgt().sw->xa_forget_entry(const_cast<XID*>(x), m_rmid, flags);
}
int rm::recover(XID* xids, long count, long flags) {
    return m_ctx.tgt().sw->xa_recover_entry(xids, count, m_rmid, flags);
}
int rm::complete(int* handle, int* retval, long flags) {
    if (m_ctx.tgt().sw->xa_complete_entry == nullptr) fail("xa_complete_entry is NULL");
    return m_ctx.tgt().sw->xa_complete_entry(handle, retval, m_rmid, flags);
}

std::vector<xid> rm::recover_all(long count) {
    std::vector<xid> out;
    std::vector<XID> page(static_cast<std::size_t>(count));
    long flags = TMSTARTRSCAN;
    for (int guard = 0; guard < 100000; ++guard) {
        const int n = recover(page.data(), count, flags);
        if (n < 0) fail(fmt::format("xa_recover returned {}: {}", xa_code_name(n), diag_text()));
        if (n > count) fail(fmt::format("xa_recover returned {} for a page of {}", n, count));
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
    recover(nullptr, 0, TMENDRSCAN);
    return out;
}

std::optional<xarm_diag> rm::diag() const {
    if (m_ctx.tgt().last_error == nullptr) return std::nullopt;
    xarm_diag d{};
    if (m_ctx.tgt().last_error(m_rmid, &d) != 0) return std::nullopt;
    return d;
}

std::string rm::diag_text() const {
    auto d = diag();
    if (!d) return "";
    return fmt::format("{} ({}): {}", xa_code_name(d->xa_code), d->sqlstate, d->message);
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
        throw not_applicable("needs SQL access (a third-party switch has no C++ connection)");
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
    return name;
}

long context::count(const std::string& table) {
    std::lock_guard lock(m_mu);
    if (!m_observer) m_observer.emplace(connect());
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
    if (!m_xids.empty() && claims(capability::recovery) && claims(capability::two_phase)) {
        try {
            if (m_t.drv) {
                connection c(m_t.drv, m_t.info);
                for (const auto& x : c.tpc_recover())
                    if (std::find(m_xids.begin(), m_xids.end(), x) != m_xids.end()) {
                        try {
                            c.tpc_rollback(x);
                        } catch (const std::exception&) {
                        }
                    }
            } else {
                rm r(*this);
                for (const auto& x : r.recover_all())
                    if (std::find(m_xids.begin(), m_xids.end(), x) != m_xids.end()) {
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

void expect_rc(rm& r, int rc, int expected, const char* call) {
    if (rc != expected)
        fail(fmt::format("{} returned {}, expected {}{}{}", call, xa_code_name(rc),
                         xa_code_name(expected), rc < 0 ? " -- " : "",
                         rc < 0 ? r.diag_text() : ""));
}

void expect_rc_in(rm& r, int rc, std::initializer_list<int> expected, const char* call) {
    if (std::find(expected.begin(), expected.end(), rc) != expected.end()) return;
    std::string names;
    for (int e : expected) names += (names.empty() ? "" : " or ") + std::string(xa_code_name(e));
    fail(fmt::format("{} returned {}, expected {}{}{}", call, xa_code_name(rc), names,
                     rc < 0 ? " -- " : "", rc < 0 ? r.diag_text() : ""));
}

void expect_refusal(rm& r, int rc, int code, const char* call) {
    expect_rc(r, rc, code, call);
    auto d = r.diag();
    if (!d) return;  // a third-party switch has no xarm_last_error: the code is all there is
    check(std::string(d->sqlstate) == "0A000",
          fmt::format("{}: refused with {} but SQLSTATE {} (expected 0A000): {}", call,
                      xa_code_name(rc), d->sqlstate, d->message));
    check(std::strlen(d->message) > 0, fmt::format("{}: refusal without a message", call));
}

const dialect* dialect_for(const std::string& dbms) {
    static const dialect table[] = {
        {"pq", "SET lock_timeout = 1000",
         "INSERT INTO {table} (id, v) VALUES (900, 'foreign')\nPREPARE TRANSACTION '{gid}'"},
        {"mysql", "SET SESSION innodb_lock_wait_timeout = 1",
         "XA START '{gid}'\nINSERT INTO {table} (id, v) VALUES (900, 'foreign')\nXA END "
         "'{gid}'\nXA PREPARE '{gid}'"},
        {"sqlite", "PRAGMA busy_timeout = 500", nullptr},
    };
    for (const auto& d : table)
        if (dbms == d.dbms) return &d;
    return nullptr;
}

std::string detect_dbms(const target& t) {
    return t.drv ? probe_dbms(t) : std::string();
}

void connect_check(target& t) {
    if (!t.drv) return;
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
