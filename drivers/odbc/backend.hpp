// A backend's rules: what the ODBC driver does differently for each DBMS behind the
// connection. ODBC gives every DBMS the same calls for statements and one-phase commit,
// but nothing for two-phase commit, and each DBMS has its own errors, SQL syntax and ODBC
// driver quirks. One object per session, made by make_rules once the DBMS is known:
//   postgresql.cpp  PostgreSQL: PREPARE TRANSACTION, the pq driver's dialect
//   mysql.cpp       MariaDB/MySQL: XA statements, the mysql driver's dialect, the prepared
//                   branch kept on its session
//   local.cpp       SQLite, unknown DBMSs, and the two above when their dialect is not
//                   built: local work and one-phase commit only
//   virtuoso.cpp    OpenLink Virtuoso: one-phase only, with the reason
// The first two are compiled only when their dialect library is, so the rest of the
// driver names no dialect.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "odbc.hpp"

namespace xarm::odbc {

class backend_rules : public error_table {
  public:
    explicit backend_rules(session& s, backend which) : m_s(s), m_which(which) {}

    /// The DBMS, as recognised (MariaDB and MySQL told apart where the rules can).
    backend which() const noexcept { return m_which; }
    /// The native driver that describes the DBMS (its snippets, its test servers), or "odbc".
    virtual std::string native_driver() const { return "odbc"; }
    virtual sql_syntax syntax() const { return sql_syntax::standard(); }
    virtual binding_quirks quirks() const { return {}; }
    /// The connection string to reconnect with before the session is used, when the
    /// ODBC driver must be told something (psqlODBC); nullopt to keep the connection.
    virtual std::optional<std::string> reconnect_with(const std::string&) const {
        return std::nullopt;
    }
    /// Declares two_phase, recovery and read_only_vote (and what else differs) into c,
    /// which holds the capabilities common to every backend. via: "through ODBC (...)".
    virtual void declare(capability_set& c, const std::string& via) = 0;

    /// Before anything else on the connection outside a branch: a prepared branch the
    /// connection still holds (MariaDB) must leave it first.
    virtual void release_held_branch() {}
    /// The statement that gives a branch a timeout; nullopt where none is declared.
    virtual std::optional<std::string> branch_timeout_sql(std::chrono::seconds) const {
        return std::nullopt;
    }
    /// A fresh branch begins (the session then counts it open).
    virtual void start(const xid&) {}
    /// Prepares the open branch (the session has counted it closed). The base refuses:
    /// the core never asks where two_phase is declared missing.
    virtual vote prepare(const xid& x);
    /// Commits the open branch in one phase (the session has counted it closed).
    virtual void commit_one_phase(const xid&) { m_s.commit_transaction(); }
    /// Rolls the open, unprepared branch back (the session has counted it closed).
    virtual void rollback_branch(const xid&);
    /// Phase two of a prepared branch (ours or recovered). The base answers XAER_NOTA:
    /// a backend without two-phase never holds one.
    virtual void finish_prepared(const xid& x, bool commit);
    /// The prepared branches on the server.
    virtual std::vector<xid> recover() { return {}; }
    /// The session closes (the connection is still there).
    virtual void close() noexcept {}

  protected:
    session& m_s;
    backend m_which;
};

/// The rules for b. read_only_vote: XARM_READ_ONLY_VOTE from the connection string.
std::unique_ptr<backend_rules> make_rules(session& s, backend b, bool read_only_vote);

// Each made only where its file is built (see the top of this file).
std::unique_ptr<backend_rules> make_postgresql_rules(session& s);
/// b: mariadb or mysql, as SQL_DBMS_NAME says (the rules tell a MariaDB called MySQL).
std::unique_ptr<backend_rules> make_mysql_rules(session& s, backend b, bool read_only_vote);
std::unique_ptr<backend_rules> make_virtuoso_rules(session& s);

}  // namespace xarm::odbc
