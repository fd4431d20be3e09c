// PostgreSQL behind ODBC (psqlODBC): two-phase through PREPARE TRANSACTION and the pq
// driver's dialect (its statements, its error table, its capabilities), so that a branch
// prepared here and one prepared by the pq driver are interchangeable. Compiled only
// when the pq dialect is built.
#include "../pq/dialect.hpp"
#include "backend.hpp"
#include "xarm/xa.h"

namespace xarm::odbc {

namespace {

/// in_failed_sql_transaction: a statement in a block the server had already aborted.
constexpr std::string_view in_failed_block_sqlstate = "25P02";

pq::op pq_op(op o) {
    switch (o) {
        case op::open:
            return pq::op::open;
        case op::statement:
        case op::start:
            return pq::op::statement;
        case op::end:
            return pq::op::end;
        case op::prepare:
            return pq::op::prepare;
        case op::commit_one:
            return pq::op::commit_one;
        case op::finish:
            return pq::op::finish;
        case op::commit_prepared:
            return pq::op::commit_prepared;
        case op::rollback:
            return pq::op::rollback;
        case op::recover:
            return pq::op::recover;
    }
    return pq::op::statement;
}

class postgresql_rules final : public backend_rules {
  public:
    explicit postgresql_rules(session& s) : backend_rules(s, backend::postgresql) {}

    int rollback_code(const diag_record& d) const noexcept override {
        return pq::rollback_code_for(d.sqlstate);
    }
    int xa_code(const diag_record& d, op o) const noexcept override {
        return pq::xa_code_for(d.sqlstate, pq_op(o));
    }
    bool lost_connection(const diag_record& d) const noexcept override {
        return pq::is_connection_loss(d.sqlstate);
    }
    std::string explain(const diag_record& d, op o) const override {
        return pq::explain(d.sqlstate, pq_op(o));
    }

    std::string native_driver() const override { return "pq"; }
    sql_syntax syntax() const override {
        sql_syntax s = sql_syntax::postgresql();
        s.placeholder = sql_syntax::marker::question;  // psqlODBC numbers them itself
        return s;
    }

    std::optional<std::string> reconnect_with(const std::string& conn) const override {
        // psqlODBC (13.02) rolls back only the failed statement by default (a savepoint
        // around each one), and with Protocol=7.4-1 rolls back the whole transaction and
        // carries on in a new one: either way a later PREPARE TRANSACTION would prepare
        // part of the work. Reconnect with Protocol=7.4-0 (no rollback by the driver), so
        // that the server's own rule holds (an error aborts the whole block), also for the
        // work applications do directly on xarm_odbc_hdbc. The later key wins in psqlODBC.
        if (m_s.odbc_driver().find("psqlodbc") == std::string::npos) return std::nullopt;
        return conn + (conn.ends_with(';') ? "" : ";") + "Protocol=7.4-0";
    }

    void declare(capability_set& c, const std::string& via) override {
        long max_prepared = 0;
        auto r = m_s.run_autocommit(pq::max_prepared_sql, true, op::open,
                                    "reading max_prepared_transactions");
        if (!r.rows.empty() && r.rows[0].size() == 1 && r.rows[0][0]) {
            try {
                max_prepared = std::stol(*r.rows[0][0]);
            } catch (const std::exception&) {
                max_prepared = 0;
            }
        }
        for (const auto& s : pq::capabilities_for(max_prepared).list()) {
            if (s.what != capability::two_phase && s.what != capability::recovery &&
                s.what != capability::read_only_vote)
                continue;
            if (s.supported)
                c.yes(s.what, s.reason + ", " + via);
            else
                c.no(s.what, s.reason);
        }
        c.yes(capability::timeout,
              "SET LOCAL idle_in_transaction_session_timeout as the branch's first "
              "statement " +
                  via +
                  ": PostgreSQL ends the session (rolling the branch back) once it has been "
                  "idle in the branch that long; a prepared branch is not timed");
    }

    std::optional<std::string> branch_timeout_sql(std::chrono::seconds t) const override {
        return pq::branch_timeout_sql(t);
    }

    vote prepare(const xid& x) override {
        // Every statement ran through xarm, none failed and one provably wrote: the block
        // is open and not read-only, so PREPARE TRANSACTION alone, as by hand.
        if (m_s.branch_wrote() && !m_s.handle_given() && !m_s.branch_failed()) {
            auto prep = m_s.run(pq::prepare_sql(x), false);
            if (!prep.failed) return vote::ok;
            m_s.rollback_quietly();
            raise_diag(prep.diag, *this, op::prepare, "PREPARE TRANSACTION");
        }
        // Otherwise the read-only check and PREPARE TRANSACTION in one round trip (psqlODBC sends
        // the text as one query): the check fails with read_only_sqlstate when the
        // branch wrote nothing, and with 25P02 when the server had aborted the block
        // after an error (PREPARE TRANSACTION would silently turn that into ROLLBACK);
        // either way PREPARE does not run.
        auto both = m_s.run(pq::check_and_prepare_sql(x), false);
        if (!both.failed) return vote::ok;
        m_s.rollback_quietly();
        if (both.diag.sqlstate == pq::read_only_sqlstate) return vote::read_only;
        if (both.diag.sqlstate == in_failed_block_sqlstate)
            raise_diag(both.diag, *this, op::end,
                       "the branch's work had failed before PREPARE TRANSACTION");
        raise_diag(both.diag, *this, op::prepare, "PREPARE TRANSACTION");
    }

    void commit_one_phase(const xid&) override {
        // COMMIT of a block the server aborted answers ROLLBACK, which ODBC reports as
        // success. A failure of a statement run through xarm is known here; one run on
        // xarm_odbc_hdbc is not, so once the application has the handle, look first (a
        // round trip).
        if (auto failed = m_s.take_branch_failure()) {
            m_s.rollback_quietly();
            raise_diag(*failed, *this, op::end, "a statement of the branch failed before COMMIT");
        }
        if (m_s.handle_given()) {
            auto check = m_s.run(pq::wrote_nothing_sql, false);
            if (check.failed) {
                m_s.rollback_quietly();
                raise_diag(check.diag, *this, op::end, "checking the branch before COMMIT");
            }
        }
        m_s.commit_transaction();
    }

    void finish_prepared(const xid& x, bool commit) override {
        if (commit)
            m_s.run_autocommit(pq::commit_prepared_sql(x), false, op::commit_prepared,
                               "COMMIT PREPARED");
        else
            m_s.run_autocommit(pq::rollback_prepared_sql(x), false, op::finish,
                               "ROLLBACK PREPARED");
    }

    std::vector<xid> recover() override {
        auto r =
            m_s.run_autocommit(pq::recover_sql, true, op::recover, "reading pg_prepared_xacts");
        std::vector<std::string> gids;
        for (const auto& row : r.rows)
            if (!row.empty() && row[0]) gids.push_back(*row[0]);
        return pq::parse_recovered(gids);
    }
};

}  // namespace

std::unique_ptr<backend_rules> make_postgresql_rules(session& s) {
    return std::make_unique<postgresql_rules>(s);
}

}  // namespace xarm::odbc
