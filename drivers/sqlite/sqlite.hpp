// The SQLite driver's internals: one sqlite3 connection per session.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <string>

#include "xarm/driver/driver.hpp"

namespace xarm::sqlite {

/// The native-error table: an SQLite result code as an xarm error (error.cpp).
/// xa_code: the XA code to report; the SQLSTATE comes from the table.
[[noreturn]] void raise_sqlite(sqlite3* db, int rc, int xa_code, const std::string& context);
/// The SQLSTATE the table gives an SQLite result code.
const char* sqlstate_of(int rc) noexcept;
/// The XA rollback code for a commit that failed with rc (after the work was rolled back).
int rollback_code_of(int rc) noexcept;

class session final : public native_session {
  public:
    session(const session&) = delete;
    session& operator=(const session&) = delete;
    session(const std::string& path, int flags, int busy_timeout_ms, bool foreign_keys);
    ~session() override;

    capability_set capabilities() const override;
    void start(const xid& x, start_mode mode) override;
    void end(const xid& x, end_mode mode) override;
    vote prepare(const xid& x) override;
    void commit(const xid& x, bool one_phase) override;
    void rollback(const xid& x, bool prepared) override;
    std::vector<xid> recover() override;
    /// Nothing is kept about a heuristic outcome: forgetting it is a no-op.
    void forget(const xid&) override {}
    std::int64_t execute(std::string_view sql) override;
    result query(std::string_view sql) override;
    sql_syntax syntax() const override { return sql_syntax::sqlite(); }
    result execute_params(std::string_view sql, std::span<const value> params, bool rows) override;
    std::unique_ptr<native_statement> prepare(std::string_view sql, std::size_t params) override;
    result execute_prepared(native_statement& st, std::span<const value> params,
                            bool rows) override;
    void commit_local() override;
    void rollback_local() override;
    /// Also sees a transaction the application began itself on the native handle.
    bool in_local_transaction() const override {
        return m_local || (!m_branch && sqlite3_get_autocommit(m_db) == 0);
    }
    void* native_handle() noexcept override { return m_db; }

  private:
    using stmt_ptr = std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)>;
    void exec(const char* sql, int xa_code);
    /// BEGIN, compiled once per connection (so a branch's start costs no parse).
    void begin();
    /// COMMIT, compiled once per connection; a failure (busy, a deferred constraint)
    /// leaves the transaction open, so it is rolled back: SQLite's code, msg its text.
    int commit_or_roll_back(std::string& msg);
    result run(std::string_view sql, bool collect);
    void begin_local_if_needed();
    /// Compiles the one statement of sql (programming_error when it holds more).
    stmt_ptr compile(std::string_view sql, unsigned flags);
    /// Binds params, runs st to completion and resets it, keeping the rows when asked.
    result run(sqlite3_stmt* st, std::span<const value> params, bool collect);

    /// Raises the heuristic outcome of a branch the application committed itself.
    [[noreturn]] void committed_outside();
    /// True when the branch's transaction is over and the application committed it
    /// (a COMMIT on the native handle): sqlite3_commit_hook counts every commit.
    bool ended_by_commit() const;

    sqlite3* m_db = nullptr;
    bool m_branch = false;                          // a branch's transaction is open
    bool m_local = false;                           // a local transaction is open
    unsigned long m_commits = 0;                    // commits on this handle (commit hook)
    unsigned long m_commits_at_start = 0;           // ... when the branch began
    stmt_ptr m_begin{nullptr, &sqlite3_finalize};   // begin()'s statement, once compiled
    stmt_ptr m_commit{nullptr, &sqlite3_finalize};  // commit_or_roll_back()'s
};

capability_set declared_capabilities();

}  // namespace xarm::sqlite
