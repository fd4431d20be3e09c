// SQLite primitives. A branch is an ordinary SQLite transaction: it can commit in one
// phase or roll back, but it cannot be prepared, since nothing would keep it across a
// crash of this process. The core refuses prepare as declared.
#include <fmt/format.h>

#include "sqlite.hpp"
#include "xarm/xa.h"

namespace xarm::sqlite {

capability_set declared_capabilities() {
    capability_set c;
    c.no(capability::two_phase,
         "SQLite cannot keep a prepared transaction: a transaction that survives the crash of "
         "the process that prepared it does not exist in SQLite")
        .yes(capability::one_phase, "COMMIT of the branch's SQLite transaction")
        .yes(capability::recovery, "always empty: this driver never leaves a branch prepared")
        .no(capability::read_only_vote, "there is no prepare to vote at")
        .yes(capability::join, "TMJOIN of an ended branch on the same connection")
        .yes(capability::suspend_resume, "on the same thread, with no other branch in between")
        .no(capability::migrate, "an sqlite3 connection belongs to the thread that opened it")
        .no(capability::async, "SQLite calls are synchronous")
        .no(capability::interleave, "an SQLite connection holds one transaction at a time")
        .no(capability::timeout,
            "SQLite has no server that could end an inactive transaction, and an sqlite3 "
            "connection may be touched only by the thread using it: nothing but that thread "
            "could roll the branch back");
    return c;
}

session::session(const std::string& path, int flags, int busy_timeout_ms, bool foreign_keys) {
    int rc = sqlite3_open_v2(path.c_str(), &m_db, flags, nullptr);
    if (rc != SQLITE_OK) {
        std::string msg = m_db ? sqlite3_errmsg(m_db) : sqlite3_errstr(rc);
        sqlite3_close_v2(m_db);
        m_db = nullptr;
        raise(XAER_RMERR, sqlstate_of(rc), fmt::format("cannot open '{}': {}", path, msg), rc);
    }
    sqlite3_extended_result_codes(m_db, 1);
    sqlite3_busy_timeout(m_db, busy_timeout_ms);
    sqlite3_commit_hook(
        m_db,
        [](void* self) {
            ++static_cast<session*>(self)->m_commits;
            return 0;  // let it commit
        },
        this);
    if (foreign_keys) exec("PRAGMA foreign_keys = ON", XAER_RMERR);
}

session::~session() {
    // Closing rolls back whatever transaction is open, as the server-side databases do
    // when a connection closes.
    m_begin.reset();
    m_commit.reset();
    if (m_db != nullptr) sqlite3_close_v2(m_db);
}

capability_set session::capabilities() const {
    return declared_capabilities();
}

namespace {

// Runs st (BEGIN or COMMIT), compiling sql into it the first time; SQLite's code, msg
// its text when it failed.
int step_control(sqlite3* db, std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)>& st,
                 const char* sql, std::string& msg) {
    if (!st) {
        sqlite3_stmt* raw = nullptr;
        const int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
        if (rc != SQLITE_OK) {
            msg = sqlite3_errmsg(db);
            return rc;
        }
        st.reset(raw);
    }
    int rc = sqlite3_step(st.get());
    if (rc != SQLITE_DONE) msg = sqlite3_errmsg(db);
    sqlite3_reset(st.get());
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

}  // namespace

void session::begin() {
    std::string msg;
    if (const int rc = step_control(m_db, m_begin, "BEGIN", msg); rc != SQLITE_OK)
        raise(XAER_RMERR, sqlstate_of(rc), "BEGIN: " + msg, rc);
}

int session::commit_or_roll_back(std::string& msg) {
    const int rc = step_control(m_db, m_commit, "COMMIT", msg);
    if (rc != SQLITE_OK) sqlite3_exec(m_db, "ROLLBACK", nullptr, nullptr, nullptr);
    return rc;
}

void session::exec(const char* sql, int xa_code) {
    char* err = nullptr;
    int rc = sqlite3_exec(m_db, sql, nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errstr(rc);
        sqlite3_free(err);
        raise(xa_code, sqlstate_of(rc), fmt::format("{}: {}", sql, msg), rc);
    }
}

void session::start(const xid&, start_mode mode) {
    if (mode != start_mode::fresh) return;  // join/resume: the transaction is still open
    begin();
    m_branch = true;
    m_commits_at_start = m_commits;
}

bool session::ended_by_commit() const {
    return m_branch && sqlite3_get_autocommit(m_db) != 0 && m_commits != m_commits_at_start;
}

void session::committed_outside() {
    m_branch = false;
    raise(XA_HEURCOM, "2D000",
          "the branch's transaction was ended on the native sqlite3 handle and work was "
          "committed since (a COMMIT, or statements run after it): the branch's work is "
          "committed, at least in part, outside XA");
}

void session::end(const xid&, end_mode) {
    // A COMMIT the application sent itself: the work exists, committed; phase two says so
    // (XA_HEURCOM), since xa_end has no code for it and must not claim a rollback.
    if (ended_by_commit()) return;
    // SQLite rolls a transaction back by itself after some failures (I/O, full disk,
    // out of memory), or the application sent ROLLBACK: the branch's work is gone.
    if (m_branch && sqlite3_get_autocommit(m_db) != 0) {
        m_branch = false;
        raise(XA_RBROLLBACK, "40000",
              "the branch's transaction was rolled back (by SQLite after an error, or by a "
              "ROLLBACK on the native handle)");
    }
}

vote session::prepare(const xid&) {
    // Unreachable: the core refuses prepare because two_phase is declared missing.
    raise(XAER_RMERR, "0A000", "SQLite cannot prepare a transaction");
}

void session::commit(const xid& x, bool one_phase) {
    if (!one_phase || !m_branch)
        raise(XAER_NOTA, "XAE04", "no such branch on this SQLite connection: " + x.to_string());
    if (ended_by_commit()) committed_outside();
    m_branch = false;
    if (sqlite3_get_autocommit(m_db) != 0)
        raise(XA_RBROLLBACK, "40000",
              "the branch's transaction was rolled back (by SQLite after an error, or by a "
              "ROLLBACK on the native handle)");
    // A failed COMMIT is rolled back: the one-phase outcome is a clean rollback, never a
    // half-state.
    std::string msg;
    if (const int rc = commit_or_roll_back(msg); rc != SQLITE_OK)
        raise(rollback_code_of(rc), sqlstate_of(rc), "COMMIT failed and was rolled back: " + msg,
              rc);
}

void session::rollback(const xid& x, bool prepared) {
    if (prepared)
        raise(XAER_NOTA, "XAE04", "no such branch on this SQLite connection: " + x.to_string());
    // The core asks only for branches it knows: one rolled back already (XA_RB* at
    // xa_end) has nothing left to undo.
    if (!m_branch) return;
    if (ended_by_commit()) committed_outside();  // too late to roll back
    m_branch = false;
    if (sqlite3_get_autocommit(m_db) == 0) exec("ROLLBACK", XAER_RMERR);
}

std::vector<xid> session::recover() {
    return {};
}

void session::begin_local_if_needed() {
    // PEP 249: autocommit off; the first statement outside a branch begins a transaction.
    if (!m_branch && !m_local) {
        begin();
        m_local = true;
    }
}

result session::run(std::string_view sql, bool collect) {
    begin_local_if_needed();
    result out;
    const char* tail = sql.data();
    const char* end = sql.data() + sql.size();
    while (tail < end) {
        sqlite3_stmt* raw = nullptr;
        int rc = sqlite3_prepare_v2(m_db, tail, static_cast<int>(end - tail), &raw, &tail);
        stmt_ptr stmt(raw, &sqlite3_finalize);
        if (rc != SQLITE_OK) raise_sqlite(m_db, rc, XAER_RMERR, "SQL error");
        if (!stmt) continue;  // whitespace or comment
        // SQLite would run a placeholder as NULL: without arguments that is a mistake.
        if (sqlite3_bind_parameter_count(stmt.get()) > 0)
            raise(XAER_INVAL, "07001",
                  "the statement has placeholders but no arguments were given");
        auto r = run(stmt.get(), {}, collect);
        // Several statements: the last one that has columns gives the rows.
        const auto affected = r.affected;
        if (!r.columns().empty()) out = std::move(r);
        out.affected = affected;
    }
    return out;
}

std::int64_t session::execute(std::string_view sql) {
    return run(sql, false).affected;
}

result session::query(std::string_view sql) {
    return run(sql, true);
}

void session::commit_local() {
    if (!m_local) return;
    m_local = false;
    if (sqlite3_get_autocommit(m_db) != 0)
        raise(XAER_RMERR, "40000", "SQLite rolled the transaction back after an error");
    std::string msg;
    if (const int rc = commit_or_roll_back(msg); rc != SQLITE_OK)
        raise(XAER_RMERR, sqlstate_of(rc), "COMMIT failed and was rolled back: " + msg, rc);
}

void session::rollback_local() {
    if (!m_local) return;
    m_local = false;
    if (sqlite3_get_autocommit(m_db) == 0) exec("ROLLBACK", XAER_RMERR);
}

}  // namespace xarm::sqlite
