// The backends with no two-phase commit through ODBC (SQLite, unknown DBMSs, and
// PostgreSQL or MariaDB/MySQL in a build without their dialect): local work and one-phase
// commit through SQLEndTran. Also the one place that chooses a backend's rules.
#include "backend.hpp"
#include "xarm/xa.h"

namespace xarm::odbc {

vote backend_rules::prepare(const xid&) {
    // Unreachable: the core refuses prepare where two_phase is declared missing.
    raise(XAER_RMERR, "0A000",
          "two-phase commit is not supported through ODBC to " + m_s.dbms_text());
}

void backend_rules::rollback_branch(const xid&) {
    m_s.end_tran(SQL_ROLLBACK, op::rollback, "ROLLBACK (SQLEndTran)");
}

void backend_rules::finish_prepared(const xid&, bool) {
    raise(XAER_NOTA, "XAE04",
          "no such prepared branch: two-phase commit is not supported through ODBC to " +
              m_s.dbms_text());
}

namespace {

/// A DBMS xarm does two-phase with through no SQL of its own.
class one_phase_rules : public backend_rules {
  public:
    /// why: why there is no two-phase commit; all: the reason for recovery and the
    /// read-only vote too (else their own).
    one_phase_rules(session& s, backend which, std::string why, bool all)
        : backend_rules(s, which), m_why(std::move(why)), m_all(all) {}

    void declare(capability_set& c, const std::string&) override {
        c.no(capability::two_phase, m_why)
            .no(capability::recovery,
                m_all ? m_why
                      : "there is no portable way to list a DBMS's prepared transactions "
                        "through ODBC, and an empty list could hide branches this DBMS "
                        "holds; this connection reaches " +
                            m_s.dbms_text())
            .no(capability::read_only_vote, m_all ? m_why : "there is no prepare to vote at");
    }

  private:
    std::string m_why;
    bool m_all;
};

class sqlite_rules final : public backend_rules {
  public:
    explicit sqlite_rules(session& s) : backend_rules(s, backend::sqlite) {}

    std::string native_driver() const override { return "sqlite"; }
    sql_syntax syntax() const override {
        sql_syntax s = sql_syntax::sqlite();
        s.drop_comments = true;  // sqliteodbc counts a ? in a comment as a placeholder
        return s;
    }
    binding_quirks quirks() const override { return {.times_as_text = true}; }
    void declare(capability_set& c, const std::string& via) override {
        c.no(capability::two_phase,
             "SQLite cannot keep a prepared transaction: a transaction that survives the "
             "crash of the process that prepared it does not exist in SQLite (" +
                 via + ")")
            .yes(capability::recovery,
                 "always empty: a SQLite backend never holds a prepared branch")
            .no(capability::read_only_vote, "there is no prepare to vote at");
    }
};

}  // namespace

std::unique_ptr<backend_rules> make_rules(session& s, backend b,
                                          [[maybe_unused]] bool read_only_vote) {
    switch (b) {
        case backend::postgresql:
#ifdef XARM_ODBC_WITH_PQ_DIALECT
            return make_postgresql_rules(s);
#else
            return std::make_unique<one_phase_rules>(
                s, b, "this build of xarm has no PostgreSQL dialect (drivers/pq)", true);
#endif
        case backend::mariadb:
        case backend::mysql:
#ifdef XARM_ODBC_WITH_MYSQL_DIALECT
            return make_mysql_rules(s, b, read_only_vote);
#else
            return std::make_unique<one_phase_rules>(
                s, b, "this build of xarm has no MySQL dialect (drivers/mysql)", true);
#endif
        case backend::sqlite:
            return std::make_unique<sqlite_rules>(s);
        case backend::virtuoso:
            return make_virtuoso_rules(s);
        case backend::unknown:
            break;
    }
    return std::make_unique<one_phase_rules>(
        s, b,
        "ODBC has no two-phase commit (its enlistment attributes need Microsoft's DTC), and "
        "xarm does two-phase through ODBC only with a backend whose own SQL it knows "
        "(PostgreSQL, MariaDB/MySQL); this connection reaches " +
            s.dbms_text(),
        false);
}

}  // namespace xarm::odbc
