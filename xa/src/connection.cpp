#include "xarm/connection.hpp"
#include "xarm/driver/protocol.hpp"
#include "xarm/driver/sql.hpp"

#include <utility>

#include <fmt/format.h>

#include "xarm/xa.h"

namespace xarm {

namespace {
[[noreturn]] void misuse(std::string msg) {
    raise(XAER_PROTO, "XAE06", std::move(msg));
}
}  // namespace

namespace {
enum class phase { none, active, ended, suspended, prepared };
}  // namespace

struct connection::state {
    std::unique_ptr<rm_session> session;  // null once closed
    xarm::xid xid;                        // the current branch
    phase stage = phase::none;            // of the current branch
    bool read_only = false;               // the current branch voted read-only
};

connection::connection(std::shared_ptr<const driver> drv, std::string_view info)
    : m_state(std::make_unique<state>()) {
    m_state->session = open_session(std::move(drv), info);
}

connection::~connection() = default;
connection::connection(connection&&) noexcept = default;
connection& connection::operator=(connection&&) noexcept = default;

xarm::xid connection::xid(long format_id, std::string_view gtrid, std::string_view bqual) {
    return xarm::xid(format_id, gtrid, bqual);
}

void connection::check_open() const {
    if (!m_state || !m_state->session) raise(XAER_PROTO, "08003", "the connection is closed");
}

bool connection::prepared() const noexcept {
    return m_state && m_state->stage == phase::prepared;
}

bool connection::ended() const noexcept {
    return m_state && (m_state->stage == phase::ended || m_state->stage == phase::suspended);
}

rm_session& connection::session() {
    check_open();
    return *m_state->session;
}

void connection::leave_branch() noexcept {
    if (!m_state) return;
    m_state->stage = phase::none;
    m_state->xid = {};
    m_state->read_only = false;
}

const char* connection::phase_text() const noexcept {
    switch (m_state->stage) {
        case phase::none:
            return "none";
        case phase::active:
            return "active";
        case phase::ended:
            return "ended";
        case phase::suspended:
            return "suspended";
        case phase::prepared:
            return "prepared";
    }
    return "?";
}

void connection::tpc_begin(const xarm::xid& x, tpc_begin_flag flags, std::chrono::seconds timeout) {
    check_open();
    if (x.is_null() || x.is_unparsed())
        raise(XAER_INVAL, "XAE05",
              "tpc_begin: the xid must be made with xid(format, gtrid, bqual)");
    if (timeout.count() < 0)
        raise(XAER_INVAL, "22023",
              "tpc_begin: the timeout is a number of seconds, 0 (none) or more");
    if (timeout.count() > 0 && flags != tpc_begin_flag::fresh)
        raise(XAER_INVAL, "22023",
              "tpc_begin: a timeout is given to a new branch only (a joined or resumed branch "
              "keeps its own)");
    // Joining or resuming this connection's own branch: which one, and in what state.
    auto go_on = [&](phase from, capability c, long xa_flag, const char* what) {
        m_state->session->require(c, XAER_RMERR, what);
        if (m_state->stage != from || m_state->xid != x)
            misuse(fmt::format(
                "tpc_begin({}): {} is not the branch {} on this connection{}", what, x.to_string(),
                from == phase::ended ? "ended by tpc_end()" : "suspended by tpc_end(xid, suspend)",
                m_state->stage == phase::none
                    ? ""
                    : fmt::format(" ({} is {})", m_state->xid.to_string(), phase_text())));
        m_state->session->start(x, xa_flag);
        m_state->stage = phase::active;
    };
    switch (flags) {
        case tpc_begin_flag::fresh:
            if (m_state->stage != phase::none)
                misuse(
                    fmt::format("tpc_begin: two-phase transaction {} is already in progress "
                                "({})",
                                m_state->xid.to_string(), phase_text()));
            m_state->session->start(x, TMNOFLAGS, timeout);
            m_state->xid = x;
            m_state->stage = phase::active;
            return;
        case tpc_begin_flag::join:
            return go_on(phase::ended, capability::join, TMJOIN, "joining a branch (join)");
        case tpc_begin_flag::resume:
            return go_on(phase::suspended, capability::suspend_resume, TMRESUME,
                         "resuming a branch (resume)");
        case tpc_begin_flag::promote:
            raise(diagnostic{XAER_RMERR, "0A000", 0, std::string(m_state->session->drv().name()),
                             "tpc_begin(promote) is not supported: XA has no promotion of a local "
                             "transaction into a branch (xa_start with local work pending is "
                             "XAER_OUTSIDE), and MariaDB/MySQL refuse XA START inside one; commit "
                             "or roll back the local work, then begin a new branch"});
    }
    raise(XAER_INVAL, "22023",
          fmt::format("tpc_begin: {} is not a tpc_begin_flag", static_cast<int>(flags)));
}

void connection::end_branch(long flags) {
    try {
        m_state->session->end(m_state->xid, flags);
    } catch (const rollback_error&) {
        // The work failed: finish the rollback so the connection is usable again.
        try {
            m_state->session->rollback(m_state->xid, TMNOFLAGS);
        } catch (const error&) {
        }
        leave_branch();
        throw;
    } catch (const operational_error&) {
        leave_branch();  // the server rolled the work back with the connection
        throw;
    }
    m_state->stage = (flags & TMSUSPEND) ? phase::suspended : phase::ended;
}

void connection::tpc_end(const xarm::xid& x, tpc_end_flag flags) {
    check_open();
    if (flags != tpc_end_flag::normal && flags != tpc_end_flag::suspend)
        raise(XAER_INVAL, "22023",
              fmt::format("tpc_end: {} is not a tpc_end_flag", static_cast<int>(flags)));
    if (flags == tpc_end_flag::suspend)
        m_state->session->require(capability::suspend_resume, XAER_RMERR,
                                  "suspending a branch (suspend)");
    if (m_state->stage == phase::none) misuse("tpc_end: no two-phase transaction in progress");
    if (!x.is_null() && x != m_state->xid)
        misuse(fmt::format("tpc_end: {} is not this connection's branch ({} is)", x.to_string(),
                           m_state->xid.to_string()));
    if (m_state->stage != phase::active)
        misuse(fmt::format("tpc_end: the branch {} is {}, not active", m_state->xid.to_string(),
                           phase_text()));
    end_branch(flags == tpc_end_flag::suspend ? TMSUSPEND : TMSUCCESS);
}

vote connection::tpc_prepare() {
    check_open();
    if (m_state->stage == phase::none) misuse("tpc_prepare: no two-phase transaction in progress");
    if (m_state->stage == phase::prepared)
        misuse("tpc_prepare: the transaction is already prepared");
    if (m_state->stage == phase::active || m_state->stage == phase::suspended)
        end_branch(TMSUCCESS);
    try {
        m_state->read_only = m_state->session->prepare(m_state->xid, TMNOFLAGS) == XA_RDONLY;
    } catch (const rollback_error&) {
        leave_branch();
        throw;
    } catch (const operational_error&) {
        leave_branch();
        throw;
    }
    m_state->stage = phase::prepared;
    return m_state->read_only ? vote::read_only : vote::ok;
}

void connection::tpc_commit() {
    check_open();
    switch (m_state->stage) {
        case phase::none:
            misuse("tpc_commit: no two-phase transaction in progress");
        case phase::prepared:
            if (!m_state->read_only) {
                try {
                    m_state->session->commit(m_state->xid, TMNOFLAGS);
                } catch (const error&) {
                    // Whatever phase two answered (in doubt, gone, heuristic, refused),
                    // the connection is free again: tpc_recover() shows a branch still
                    // prepared, tpc_forget() clears a heuristic one.
                    leave_branch();
                    throw;
                }
            }
            leave_branch();
            return;
        case phase::active:
        case phase::suspended:
            end_branch(TMSUCCESS);
            [[fallthrough]];
        case phase::ended:
            try {
                m_state->session->commit(m_state->xid, TMONEPHASE);
            } catch (const rollback_error&) {
                leave_branch();
                throw;
            } catch (const error&) {
                // Not committed, not known to be rolled back: roll back what may be
                // left so that the connection can begin again.
                abandon_branch();
                throw;
            }
            leave_branch();
            return;
    }
}

bool connection::tpc_defer(std::string_view sql, std::span<const value> params) {
    check_open();
    if (m_state->stage != phase::active) misuse("tpc_defer: no active two-phase transaction");
    auto parsed = parse_placeholders(sql, m_state->session->syntax());
    if (parsed.placeholders != params.size())
        raise(XAER_INVAL, "07001",
              fmt::format("tpc_defer: the statement has {} placeholders and {} arguments were "
                          "given",
                          parsed.placeholders, params.size()));
    return m_state->session->defer(parsed.text, params);
}

bool connection::tpc_withdraw_deferred() {
    check_open();
    return m_state->stage == phase::active && m_state->session->withdraw_deferred();
}

void connection::tpc_commit(const xarm::xid& x, bool one_phase) {
    check_open();
    if (m_state->stage != phase::none && x == m_state->xid) {
        if (one_phase && m_state->stage != phase::ended)
            misuse(
                fmt::format("tpc_commit({}, one_phase): the branch is {}; a one-phase commit "
                            "by xid needs it ended by tpc_end()",
                            x.to_string(), phase_text()));
        if (!one_phase && m_state->stage != phase::prepared)
            misuse(
                fmt::format("tpc_commit({}): the branch is {}, not prepared; call tpc_prepare() "
                            "first, or commit it in one phase (one_phase=true) once ended",
                            x.to_string(), phase_text()));
        return tpc_commit();
    }
    if (one_phase)
        misuse(fmt::format(
            "tpc_commit({}, one_phase): not a branch ended on this connection{}", x.to_string(),
            m_state->stage == phase::none ? ""
                                          : fmt::format(" ({} is)", m_state->xid.to_string())));
    if (m_state->stage != phase::none)
        misuse(
            "tpc_commit(xid) of another branch is for recovery: not allowed inside a two-phase "
            "transaction");
    m_state->session->commit(x, TMNOFLAGS);
}

void connection::tpc_rollback() {
    check_open();
    switch (m_state->stage) {
        case phase::none:
            misuse("tpc_rollback: no two-phase transaction in progress");
        case phase::active:
        case phase::suspended:
            try {
                m_state->session->end(m_state->xid, TMSUCCESS);
            } catch (const rollback_error&) {
                // already rollback-only: the rollback below finishes it
            } catch (const operational_error&) {
                leave_branch();  // the server rolled the work back with the connection
                throw;
            }
            [[fallthrough]];
        case phase::ended:
        case phase::prepared:
            if (!(m_state->stage == phase::prepared && m_state->read_only)) {
                try {
                    m_state->session->rollback(m_state->xid, TMNOFLAGS);
                } catch (const rollback_error&) {
                    // rolled back, which is what was asked
                } catch (const error&) {
                    leave_branch();
                    throw;
                }
            }
            leave_branch();
            return;
    }
}

void connection::tpc_rollback(const xarm::xid& x) {
    check_open();
    if (m_state->stage != phase::none && x == m_state->xid) return tpc_rollback();
    if (m_state->stage != phase::none)
        misuse(
            "tpc_rollback(xid) of another branch is for recovery: not allowed inside a "
            "two-phase transaction");
    m_state->session->rollback(x, TMNOFLAGS);
}

void connection::tpc_forget(const xarm::xid& x) {
    check_open();
    if (m_state->stage != phase::none)
        misuse("tpc_forget(xid) is for recovery: not allowed inside a two-phase transaction");
    m_state->session->forget(x, TMNOFLAGS);
}

void connection::abandon_branch() noexcept {
    try {
        m_state->session->rollback(m_state->xid, TMNOFLAGS);
    } catch (const std::exception&) {
        // gone already, or the connection is lost: nothing of the branch is left here
    }
    leave_branch();
}

std::vector<xarm::xid> connection::tpc_recover() {
    check_open();
    return m_state->session->recover_all();
}

void connection::check_statement(const char* what) const {
    check_open();
    if (m_state->stage == phase::prepared)
        misuse(fmt::format(
            "{}: no statements between tpc_prepare() and tpc_commit()/tpc_rollback()", what));
    if (m_state->stage == phase::ended || m_state->stage == phase::suspended)
        misuse(fmt::format("{}: the branch {} is {}: no statements until tpc_begin() {} it", what,
                           m_state->xid.to_string(), phase_text(),
                           m_state->stage == phase::ended ? "joins" : "resumes"));
}

std::int64_t connection::execute(std::string_view sql) {
    check_statement("execute");
    return m_state->session->execute(sql);
}

result connection::query(std::string_view sql) {
    check_statement("query");
    return m_state->session->query(sql);
}

namespace {
[[noreturn]] void wrong_count(std::size_t placeholders, std::size_t given) {
    raise(XAER_INVAL, "07001",
          fmt::format("the statement has {} placeholder{} and {} argument{} {} given", placeholders,
                      placeholders == 1 ? "" : "s", given, given == 1 ? "" : "s",
                      given == 1 ? "was" : "were"));
}
}  // namespace

result connection::run(std::string_view sql, std::span<const value> params, bool rows) {
    check_statement(rows ? "query" : "execute");
    auto parsed = parse_placeholders(sql, m_state->session->syntax());
    if (parsed.placeholders != params.size()) wrong_count(parsed.placeholders, params.size());
    return m_state->session->execute(parsed.text, params, rows);
}

std::int64_t connection::execute(std::string_view sql, std::span<const value> params) {
    return run(sql, params, false).affected;
}

result connection::query(std::string_view sql, std::span<const value> params) {
    return run(sql, params, true);
}

statement connection::prepare(std::string_view sql) {
    check_statement("prepare");
    auto parsed = parse_placeholders(sql, m_state->session->syntax());
    const auto id = m_state->session->prepare(parsed.text, parsed.placeholders);
    return statement(self(), id, parsed.placeholders, std::string(sql));
}

result connection::run_prepared(std::uint64_t id, std::size_t expected,
                                std::span<const value> params, bool rows) {
    check_statement(rows ? "statement::query" : "statement::execute");
    if (params.size() != expected) wrong_count(expected, params.size());
    return m_state->session->execute_prepared(id, params, rows);
}

void connection::commit() {
    check_open();
    if (m_state->stage != phase::none)
        misuse("commit: not allowed inside a two-phase transaction; use tpc_commit()");
    m_state->session->commit_local();
}

void connection::rollback() {
    check_open();
    if (m_state->stage != phase::none)
        misuse("rollback: not allowed inside a two-phase transaction; use tpc_rollback()");
    m_state->session->rollback_local();
}

capability_set connection::capabilities() const {
    check_open();
    return m_state->session->capabilities();
}

const driver& connection::drv() const {
    check_open();
    return m_state->session->drv();
}

std::string connection::dbms() const {
    check_open();
    auto name = m_state->session->native().dbms();
    return name.empty() ? std::string(m_state->session->drv().name()) : name;
}

xarm::xid connection::current() const {
    return m_state ? m_state->xid : xarm::xid{};
}

void* connection::native_handle() noexcept {
    return m_state && m_state->session ? m_state->session->native().native_handle() : nullptr;
}

void* connection::checked_native_handle(const char* driver) {
    check_open();
    if (m_state->session->drv().name() != driver)
        raise(XAER_INVAL, "HY024",
              fmt::format("native_handle: this connection's driver is {}, which does not hand "
                          "out the handle of the {} driver",
                          m_state->session->drv().name(), driver));
    return m_state->session->native().native_handle();
}

void connection::close() {
    if (!m_state) return;
    m_state->session.reset();
    leave_branch();
}

connection connect(std::string_view driver_name_or_path, std::string_view info) {
    return connection(load_driver(driver_name_or_path), info);
}

// ---- statement ------------------------------------------------------------------------

namespace {
connection& reach(const std::weak_ptr<connection*>& w, const char* what) {
    auto p = w.lock();
    if (!p || *p == nullptr)
        raise(XAER_PROTO, "08003",
              fmt::format("{}: the connection is gone (destroyed, or moved into one since "
                          "destroyed)",
                          what));
    return **p;
}
}  // namespace

statement::~statement() {
    release();
}

statement::statement(statement&& o) noexcept
    : m_conn(std::move(o.m_conn)),
      m_id(std::exchange(o.m_id, 0)),
      m_params(o.m_params),
      m_sql(std::move(o.m_sql)) {}

statement& statement::operator=(statement&& o) noexcept {
    if (this != &o) {
        release();
        m_conn = std::move(o.m_conn);
        m_id = std::exchange(o.m_id, 0);
        m_params = o.m_params;
        m_sql = std::move(o.m_sql);
    }
    return *this;
}

void statement::release() noexcept {
    if (m_id == 0) return;
    if (auto p = m_conn.lock(); p && *p != nullptr && (*p)->m_state && (*p)->m_state->session)
        (*p)->m_state->session->release(m_id);
    m_id = 0;
}

std::int64_t statement::execute(std::span<const value> params) {
    if (m_id == 0) raise(XAER_PROTO, "XAE06", "statement::execute: not a prepared statement");
    return reach(m_conn, "statement::execute").run_prepared(m_id, m_params, params, false).affected;
}

result statement::query(std::span<const value> params) {
    if (m_id == 0) raise(XAER_PROTO, "XAE06", "statement::query: not a prepared statement");
    return reach(m_conn, "statement::query").run_prepared(m_id, m_params, params, true);
}

// ---- branch -----------------------------------------------------------------------------

branch::branch(connection& c, const xarm::xid& x) : m_conn(c.self()), m_xid(x) {
    c.tpc_begin(x);
}

branch::~branch() {
    if (m_done) return;
    try {
        auto p = m_conn.lock();
        if (p && *p != nullptr && (*p)->current() == m_xid) (*p)->tpc_rollback();
    } catch (...) {
        // Rolled back by the server when the connection ends, or left prepared for
        // tpc_recover(): nothing a destructor could do better.
    }
}

connection& branch::conn() const {
    return reach(m_conn, "branch");
}

vote branch::prepare() {
    return conn().tpc_prepare();
}

void branch::commit() {
    auto& c = conn();
    m_done = true;
    c.tpc_commit();
}

void branch::rollback() {
    auto& c = conn();
    m_done = true;
    c.tpc_rollback();
}

}  // namespace xarm
