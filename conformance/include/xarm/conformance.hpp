// The conformance suite: driver-agnostic cases, a runner and report writers. A target
// is an xarm driver (by name or path) or any xa_switch_t library given by path.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "xarm/connection.hpp"
#include "xarm/driver/driver.hpp"
#include "xarm/xa.h"
#include "xarm/xarm.h"

namespace xarm::conformance {

/// NOT_APPLICABLE is never a pass: it is counted apart (e.g. "no SQL access" for a
/// third-party switch, or a restart case run without --allow-restart).
enum class outcome { pass, fail, not_supported, error, not_applicable, not_configured };
const char* to_string(outcome o) noexcept;

/// What a case needs of the target beyond the C switch.
enum class layer { c_switch, cpp, sql };
const char* to_string(layer l) noexcept;

/// Where the declaration of one capability came from (the report says it).
enum class decl_source {
    xarm_driver,     ///< the library's own xarm declaration (xarm_driver_v1)
    switch_flags,    ///< the switch's flags: TMNOMIGRATE, TMUSEASYNC
    declare_option,  ///< --declare
    specification,   ///< undeclared, but required of every RM by the XA specification
    undeclared,      ///< optional and undeclared: tried; a refusal the specification allows is
                     ///< NOT SUPPORTED (undeclared), never FAIL
};
const char* to_string(decl_source s) noexcept;

/// What is tested, and how to reach it.
struct target {
    std::string label;        ///< column name: "pq", "odbc/mysql", a library's file name
    std::string driver_name;  ///< xarm driver name; empty for a third-party switch
    std::string library;      ///< the loaded library's path
    std::string symbol;       ///< the switch's symbol; empty: lixa_get_xa_switch()
    xa_switch_t* sw = nullptr;
    int (*last_error)(int, xarm_diag*) = nullptr;  ///< xarm_last_error when exported
    /// SQL access: an xarm driver, or (via_switch) the suite's adapter that drives the
    /// switch and runs SQL on the RM's native connection. Null: no SQL access.
    std::shared_ptr<const driver> drv;
    bool via_switch = false;
    std::string native_symbol;  ///< --native-conn: the RM's connection for (thread, rmid)
    std::string native_kind;    ///< "pq" (PGconn*), "mysql" (MYSQL*), "mysql-cppconn"
    std::string info;           ///< the xa_open string
    /// The effective declaration; nullopt: none at all (every capability counts as claimed).
    std::optional<capability_set> caps;
    std::map<capability, decl_source> sources;  ///< where each declaration came from
    std::string dbms;         ///< "pq", "mysql", "sqlite" or "" (per-database SQL)
    std::string restart_cmd;  ///< --allow-restart: a shell command restarting the server
    std::string setup_error;  ///< non-empty: the target could not be set up (ERROR column)
    bool configured = true;   ///< false: "not configured" column (no env var, not CI)

    /// The capability is optional, undeclared and to be tried (see decl_source::undeclared).
    bool undeclared(capability c) const;
    /// The declaration is xarm's own: a refusal must be exactly the documented one
    /// (the code and SQLSTATE 0A000), not merely one the specification allows.
    bool strict_refusals(capability c) const;
};

/// Why a switch cannot be used (a NULL entry point, an unterminated or empty name,
/// unknown flags, TMREGISTER, a version other than 0); empty when it can.
std::vector<std::string> switch_problems(const xa_switch_t& sw);

/// Loads a switch library (dlopen, RTLD_NODELETE); symbol empty: lixa_get_xa_switch.
/// Throws std::runtime_error with the reason, also for a switch switch_problems rejects.
/// A third-party switch gets the declarations its flags make and the XA specification's
/// required ones; the optional rest is undeclared.
target load_switch_target(const std::string& path, const std::string& symbol,
                          const std::string& info);
/// Gives a switch target SQL access through the RM's own connection: symbol is a
/// function `HANDLE f(int rmid)` in the library (LIXA: lixa_pq_get_conn_by_rmid,
/// lixa_my_get_conn_by_rmid; xarm: xarm_pq_conn, xarm_mysql_conn); dbms "pq" (PGconn*)
/// or "mysql" (MYSQL*; Connector/C++'s sql::Connection* for xarm_mysql_conn, or with
/// "mysql-cppconn"). Throws std::runtime_error when the symbol or the client library
/// is missing.
void attach_native_connection(target& t, const std::string& symbol, const std::string& dbms);
/// Applies an explicit declaration: a file, or inline "join=no:reason,async=yes,...",
/// one `capability=yes|no[:reason]` per line or comma. Throws std::runtime_error naming
/// the bad entry.
void apply_declarations(target& t, const std::string& file_or_inline);
/// With SQL access: opens one connection to take its (authoritative) capability list
/// and, when dbms is empty, probe the database; a switch without SQL access is opened
/// and closed once (in a child process). A failure becomes t.setup_error (every case
/// then reports ERROR with that reason, e.g. "server unreachable").
void connect_check(target& t);
/// Which database an xarm target talks to ("pq", "mysql", "sqlite", "" unknown), by probing.
std::string detect_dbms(const target& t);
/// An xarm driver by name ("pq", ...) or path: switch, driver object and declaration.
target load_driver_target(const std::string& name_or_path, const std::string& info);

class context;

/// One conformance case.
struct case_def {
    std::string id;  ///< "state.start_twice"
    std::string title;
    std::vector<capability> needs;  ///< one declared missing: its refusal is verified instead
    layer needs_layer = layer::c_switch;
    std::function<void(context&)> run;
    /// Custom refusal check; empty: the generic one for `needs`.
    std::function<void(context&)> refusal;
};

/// Every case, in report order.
const std::vector<case_def>& all_cases();

struct case_result {
    std::string id;
    outcome result = outcome::error;
    std::string message;  ///< why (empty for a plain pass)
    double seconds = 0;
    bool noteworthy = false;  ///< listed in the report's notes whatever the outcome
};

struct run_result {
    target tgt;
    std::vector<case_result> cases;
    /// Non-empty when the run stopped early (a signal): why, and what did not run.
    std::string interrupted;
    std::map<outcome, int> counts() const;
};

struct run_options {
    std::vector<std::string> globs;  ///< empty: every case
    /// Each case in a child process (fork): a crash or a hang is that case's ERROR and
    /// the run goes on. Off only for debugging the suite itself.
    bool isolate = true;
    double timeout_seconds = 300;  ///< per case, when isolated
    std::function<void(const std::string& label, const case_def&, std::size_t i, std::size_t n)>
        on_start;
    std::function<void(const std::string& label, const case_result&)> on_done;
};

/// Asks a running run() to stop: the case in progress is ended (its child killed) and
/// reported as interrupted, the rest is not run. Async-signal-safe: call it from a
/// SIGINT/SIGTERM handler.
void request_stop(int signo) noexcept;
/// The signal request_stop() was given, 0 when none.
int stop_requested() noexcept;

bool glob_match(const std::string& pattern, const std::string& text);
std::vector<const case_def*> select_cases(const std::vector<std::string>& globs);

run_result run(const target& t, const run_options& opts);

/// Report writers: one row per case, one column per target, a summary per target.
std::string report_text(const std::vector<run_result>& runs);
std::string report_markdown(const std::vector<run_result>& runs);
std::string report_json(const std::vector<run_result>& runs);
std::string report_junit(const std::vector<run_result>& runs);

/// Thrown by a case: the driver did not do what it must (FAIL).
struct failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// Thrown by a case: the case cannot run on this target (n/a), with the reason.
struct not_applicable : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// Thrown by a case: the run itself broke (ERROR), e.g. a connection cannot be opened.
struct setup_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A C switch resource manager instance opened on the calling thread (xa_open with the
/// target's info string and a fresh rmid); closed (ending and rolling back what it left)
/// on destruction.
class rm {
  public:
    rm(context& ctx, bool open = true);
    ~rm();
    rm(const rm&) = delete;
    rm& operator=(const rm&) = delete;

    int id() const noexcept { return m_rmid; }
    int open(const char* info, long flags = TMNOFLAGS);
    int close(long flags = TMNOFLAGS);
    int start(const XID* x, long flags = TMNOFLAGS);
    int end(const XID* x, long flags = TMSUCCESS);
    int prepare(const XID* x, long flags = TMNOFLAGS);
    int commit(const XID* x, long flags = TMNOFLAGS);
    int rollback(const XID* x, long flags = TMNOFLAGS);
    int forget(const XID* x, long flags = TMNOFLAGS);
    int recover(XID* xids, long count, long flags);
    int complete(int* handle, int* retval, long flags = TMNOFLAGS);
    /// Every XID xa_recover returns, paging with count per call.
    std::vector<xid> recover_all(long count = 16);
    /// The last failure as "CODE (SQLSTATE): message"; without xarm_last_error (a
    /// third-party switch) a sentence saying there is no diagnostic.
    std::string diag_text() const;
    /// " -- " and diag_text() for a failure code (rc < 0), else "".
    std::string with_diag(int rc) const;
    std::optional<xarm_diag> diag() const;
    context& ctx() noexcept { return m_ctx; }

  private:
    context& m_ctx;
    int m_rmid;
    bool m_open = false;
    std::optional<XID> m_active;  // started and not ended: ended on close
};

/// What a case receives: the target, rmids, connections, unique names, SQL helpers and
/// cleanup of what it leaves behind.
class context {
  public:
    explicit context(const target& t);
    ~context();
    context(const context&) = delete;
    context& operator=(const context&) = delete;

    const target& tgt() const noexcept { return m_t; }
    bool claims(capability c) const;
    bool has_sql() const noexcept { return m_t.drv != nullptr; }
    /// SQL runs through the switch on the RM's native connection (--native-conn).
    bool via_switch() const noexcept { return m_t.via_switch; }
    int new_rmid();

    /// A C++ connection (setup_error when it cannot be opened). Requires has_sql().
    connection connect();
    /// A unique xid (format 0x58415243 'XARC'), tracked: rolled back at cleanup when
    /// still prepared.
    xid new_xid(const std::string& bqual = "b", long format = 0x58415243L);
    void track(const xid& x);
    static XID to_c(const xid& x);

    /// A committed table "(id INTEGER PRIMARY KEY, v VARCHAR(64))", dropped at cleanup.
    std::string new_table();
    /// Rows in table, read from a separate observer connection (committed data only).
    long count(const std::string& table);
    void insert(connection& c, const std::string& table, int id);

    /// Takes over what another process (a case that crashed) left, for cleanup().
    void adopt(const std::vector<xid>& xids, const std::vector<std::string>& tables);
    /// Runs cleanup: rolls back tracked prepared branches, drops tables.
    void cleanup() noexcept;
    void note(const std::string& s) {
        std::lock_guard lock(m_mu);
        m_notes += (m_notes.empty() ? "" : "; ") + s;
    }
    const std::string& notes() const noexcept { return m_notes; }

    /// Refusal checks: strict (exactly the documented code, SQLSTATE 0A000) for xarm's
    /// own declarations; otherwise any refusal the XA specification allows.
    bool strict_refusals() const noexcept { return m_strict; }
    void set_strict_refusals(bool on) noexcept { m_strict = on; }
    /// How the last refusal check saw the feature refused ("refused with XAER_RMERR").
    void refused_with(std::string how) { m_refused = std::move(how); }
    const std::string& refused() const noexcept { return m_refused; }

  private:
    const target& m_t;
    std::mutex m_mu;  // cases run threads that make xids and tables concurrently
    std::vector<xid> m_xids;
    std::vector<std::string> m_tables;
    std::optional<connection> m_observer;
    std::thread::id m_observer_thread;  // a switch connection belongs to its thread
    std::string m_notes;
    bool m_strict = true;
    std::string m_refused;
};

// Assertions for cases.
[[noreturn]] void fail(const std::string& what);
inline void check(bool ok, const std::string& what) {
    if (!ok) fail(what);
}
/// An XA return code by name ("XAER_INVAL"), or the number saying it is none.
std::string code_text(int rc);
/// rc must equal expected; the message names the call, both codes and the diagnostic.
void expect_rc(rm& r, int rc, int expected, const char* call);
/// rc must be one of expected.
void expect_rc_in(rm& r, int rc, std::initializer_list<int> expected, const char* call);
/// The refusal of a capability declared missing. Strict (xarm's declaration): rc must be
/// code, with SQLSTATE 0A000 and a message. Otherwise code or one of also (the refusals
/// the XA specification allows for the feature). Records the code seen (refused_with).
void expect_refusal(rm& r, int rc, int code, const char* call,
                    std::initializer_list<int> also = {});

/// Runs f and requires it to throw E (FAIL otherwise); returns the caught error's XA code.
template <class E, class F>
int expect_throw(F&& f, const char* what);

/// The SQL snippets of a database (driver::profile of the driver named dbms), or null
/// when no driver of that name is found or it describes no database.
const dbms_profile* profile_for(const std::string& dbms);

}  // namespace xarm::conformance

#include "xarm/conformance_impl.hpp"
