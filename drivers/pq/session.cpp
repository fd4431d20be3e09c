// PostgreSQL primitives over libpq. A branch is a transaction block prepared with
// PREPARE TRANSACTION. Round trips: start() sends nothing; the BEGIN travels with the
// branch's first statement in one simple-protocol query ("BEGIN; <sql>"); prepare is one
// round trip (PREPARE alone when a statement's command tag proved a write, else the
// read-only check and PREPARE in one pipeline, the check a statement parsed once per
// connection, so that it costs no parse or plan); commit is one. A branch that ran no
// statement votes XA_RDONLY without any round trip; one that ran only reads votes
// XA_RDONLY after two (the failed check, then ROLLBACK).
//
// Direct mode: an application that takes the PGconn (native_handle(), as xarm_pq_conn
// does for the switch) sends its statements itself, so from then on start() sends BEGIN
// at once and a BEGIN still pending is sent when the handle is taken. Its statements'
// command tags still reach the session (a libpq event procedure sees every result), so a
// branch whose UPDATE said "UPDATE 1" is prepared without the check, as by hand. (A Describe of the
// read-only check statement behind that BEGIN, to find it deallocated by the
// application, cost more than the check's parse and plan: measured, not done.)
#include <charconv>

#include <fmt/format.h>

#include "pq.hpp"
#include "xarm/xa.h"

namespace xarm::pq {

session::session(const std::string& conninfo) {
    check_conninfo(conninfo);
    m_conn.reset(PQconnectdb(conninfo.c_str()));
    if (!m_conn || PQstatus(m_conn.get()) != CONNECTION_OK) raise_connect(m_conn.get());
    // libpq prints NOTICEs to stderr by default; a driver library stays quiet (an
    // application that wants them sets its own processor on xarm_pq_conn()).
    PQsetNoticeProcessor(
        m_conn.get(), [](void*, const char*) {}, nullptr);
    if (!PQregisterEventProc(m_conn.get(), &session::on_event, "xarm_pq", this))
        raise(XAER_RMERR, "58000", "cannot register the libpq event procedure");
    auto r = exec(max_prepared_sql, op::open, "reading max_prepared_transactions");
    long n = 0;
    if (PQntuples(r.get()) == 1) {
        const char* v = PQgetvalue(r.get(), 0, 0);
        std::from_chars(v, v + std::char_traits<char>::length(v), n);
    }
    m_caps = capabilities_for(n);
}

session::~session() = default;  // PQfinish: the server rolls back an unprepared block

int session::on_event(PGEventId id, void* info, void* self) {
    if (id == PGEVT_RESULTCREATE) {
        const auto* e = static_cast<PGEventResultCreate*>(info);
        static_cast<session*>(self)->saw_tag(PQcmdStatus(e->result));
    }
    return 1;  // 0 would turn the result into an error
}

void session::saw_tag(std::string_view tag) {
    // Statements the application sends on the PGconn itself (direct mode) are seen here
    // too: a DEALLOCATE ALL or DISCARD ALL dropped the check, parse it anew.
    if (tag == "DEALLOCATE ALL" || tag == "DISCARD ALL") {
        m_check.clear();
        m_defer_names.clear();
    }
    if (!m_branch) return;
    if (tag_proves_write(tag)) {
        m_wrote = true;
    } else if (tag == "COMMIT" || tag == "ROLLBACK" || tag == "PREPARE TRANSACTION") {
        // The block (or, for ROLLBACK TO SAVEPOINT, part of it) may have ended: what was
        // written may be gone, so prove nothing; the check decides.
        m_wrote = false;
    }
}

result_ptr session::try_exec(const std::string& sql, server_error& err) {
    const auto before = status();
    result_ptr r(PQexec(m_conn.get(), sql.c_str()));
    if (succeeded(r.get())) return r;
    err = read_error(m_conn.get(), r.get());
    // The first error of a block is the one that aborted it; later ones are 25P02.
    if (before != PQTRANS_INERROR) m_abort = err;
    return nullptr;
}

result_ptr session::exec(const std::string& sql, op o, std::string_view context) {
    server_error err;
    auto r = try_exec(sql, err);
    if (!r) raise_server(err, o, context);
    return r;
}

void session::rollback_block() noexcept {
    if (status() == PQTRANS_INTRANS || status() == PQTRANS_INERROR) {
        result_ptr r(PQexec(m_conn.get(), "ROLLBACK"));
    }
}

const char* const ended_outside_text =
    "the branch's transaction block was ended on the connection itself (COMMIT, ROLLBACK or "
    "PREPARE TRANSACTION sent directly on the PGconn), so its work may be committed, rolled "
    "back or prepared under another name, and xarm cannot tell which";

void session::ended_outside_hazard() {
    if (!m_ended_outside) return;
    m_ended_outside = false;
    raise(XA_HEURHAZ, "2D000", fmt::format("{}: outcome unknown", ended_outside_text));
}

void session::raise_aborted(std::string_view what) {
    std::string state = m_abort.sqlstate.empty() ? "40000" : m_abort.sqlstate;
    std::string cause = m_abort.message.empty()
                            ? std::string("a statement sent on the connection failed")
                            : m_abort.message;
    if (m_abort.message.empty() && m_direct) {
        // Statements sent directly on the PGconn: libpq still holds the last error text.
        std::string m = PQerrorMessage(m_conn.get());
        while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
        if (!m.empty()) cause = m;
    }
    raise(rollback_code_for(state), state, fmt::format("{}: {}", what, cause));
}

void session::start(const xid&, start_mode mode) {
    if (mode != start_mode::fresh) return;  // join/resume: the block is still open here
    m_abort = {};
    m_ended_outside = false;
    m_branch = true;
    m_wrote = false;
    m_deferred.reset();
    if (m_direct) {
        exec("BEGIN", op::statement, "BEGIN");
    } else {
        m_pending_begin = true;
    }
}

void session::start_with_timeout(const xid& x, std::chrono::seconds timeout) {
    const std::string limit = branch_timeout_sql(timeout);
    start(x, start_mode::fresh);
    const bool begin = m_pending_begin;
    m_pending_begin = false;
    try {
        exec(begin ? "BEGIN; " + limit : limit, op::statement, "BEGIN");
    } catch (const error&) {
        // No branch began (the core forgets it): leave no block behind either.
        m_branch = false;
        rollback_block();
        throw;
    }
}

void session::end(const xid&, end_mode) {
    if (m_pending_begin) return;  // no statement yet: nothing can have failed
    switch (status()) {
        case PQTRANS_INTRANS:
            return;
        case PQTRANS_INERROR:
            raise_aborted("the branch's work failed and PostgreSQL aborted its transaction");
        case PQTRANS_IDLE:
            if (!m_abort.sqlstate.empty())  // the first statement failed before BEGIN ran
                raise_aborted("the branch's first statement failed");
            // The application ended the block itself (COMMIT, ROLLBACK or PREPARE
            // TRANSACTION on the PGconn): its work may be committed, which no code of
            // xa_end can say and no rollback code may deny; phase two says XA_HEURHAZ.
            m_ended_outside = true;
            return;
        case PQTRANS_ACTIVE:
            raise(XAER_PROTO, "XAE06",
                  "a command is still in progress on the connection; collect its results "
                  "before xa_end");
        default:
            raise_server(read_error(m_conn.get(), nullptr), op::end, "xa_end");
    }
}

void session::check_alive(op o, std::string_view what) {
    if (PQstatus(m_conn.get()) == CONNECTION_BAD)
        raise_server(read_error(m_conn.get(), nullptr), o, what);
}

vote session::prepare(const xid& x) {
    flush_deferred();       // a deferred statement is part of the branch: it runs first
    if (m_pending_begin) {  // nothing ran: nothing to prepare, no round trip
        m_pending_begin = false;
        m_branch = false;
        return vote::read_only;
    }
    m_branch = false;
    if (m_ended_outside)
        raise(XAER_RMERR, "25000",
              fmt::format("nothing was prepared: {}; roll the branch back (it answers "
                          "XA_HEURHAZ)",
                          ended_outside_text));
    check_alive(op::prepare, "PREPARE TRANSACTION");
    if (status() == PQTRANS_INERROR) {
        rollback_block();
        raise_aborted(
            "the branch's work failed; nothing was prepared and the branch is rolled back");
    }
    if (status() != PQTRANS_INTRANS)
        raise(XA_RBPROTO, "25000",
              "the branch's transaction block is no longer open on the connection: nothing was "
              "prepared");
    // A write seen through execute() needs no check; otherwise the check travels with
    // PREPARE in the same round trip.
    server_error err;
    auto r = m_wrote ? try_exec(prepare_sql(x), err) : check_and_prepare(x, err);
    if (r) {
        const std::string tag = PQcmdStatus(r.get());
        if (tag == "PREPARE TRANSACTION") return vote::ok;
        // "ROLLBACK": the block had failed and PREPARE only ended it.
        raise_aborted(
            fmt::format("PREPARE TRANSACTION answered '{}': the branch's transaction "
                        "had failed, nothing was prepared and it is rolled back",
                        tag));
    }
    if (!err.lost && err.sqlstate == read_only_sqlstate && status() == PQTRANS_INERROR) {
        // The read-only check stopped the query before PREPARE: the branch wrote nothing.
        m_abort = {};
        server_error rb;
        if (!try_exec("ROLLBACK", rb) && rb.lost) raise_server(rb, op::rollback, "ROLLBACK");
        return vote::read_only;
    }
    rollback_block();  // a failed PREPARE already rolled back; a failed check did not
    raise_server(err, op::prepare, "PREPARE TRANSACTION failed");
}

void session::commit(const xid& x, bool one_phase) {
    if (!one_phase) {
        exec(commit_prepared_sql(x), op::commit_prepared, "COMMIT PREPARED");
        return;
    }
    m_branch = false;
    ended_outside_hazard();
    flush_deferred();
    if (m_pending_begin) {  // nothing ran: nothing to commit
        m_pending_begin = false;
        return;
    }
    check_alive(op::commit_one, "COMMIT");
    if (status() == PQTRANS_INERROR) {
        rollback_block();
        raise_aborted("the branch's work failed and is rolled back");
    }
    if (status() != PQTRANS_INTRANS)
        raise(XA_RBPROTO, "25000",
              "the branch's transaction block is no longer open on the connection");
    auto r = exec_commit("COMMIT failed and the branch was rolled back");
    if (std::string_view(PQcmdStatus(r.get())) != "COMMIT")
        raise_aborted("COMMIT rolled the branch back");
}

std::vector<result_ptr> session::pipeline(std::size_t queries, int syncs,
                                          const std::function<bool(PGconn*)>& queue) {
    PGconn* c = m_conn.get();
    std::vector<result_ptr> out(queries);
    if (!PQenterPipelineMode(c)) return out;
    if (queue(c)) {
        // Each query's results end with a null; each sync point gives a result of its own.
        std::size_t query = 0;
        int nulls = 0;
        for (int seen = 0; seen < syncs;) {
            PGresult* x = PQgetResult(c);
            if (x == nullptr) {
                if (++nulls > 2 || PQstatus(c) == CONNECTION_BAD) break;
                ++query;
                continue;
            }
            nulls = 0;
            result_ptr r(x);
            if (PQresultStatus(x) == PGRES_PIPELINE_SYNC) {
                ++seen;
                continue;
            }
            if (query >= queries) continue;
            auto& slot = out[query];
            if (!slot || succeeded(slot.get())) slot = std::move(r);  // the first error stays
        }
    }
    PQexitPipelineMode(c);
    return out;
}

result_ptr session::check_and_prepare(const xid& x, server_error& err) {
    const bool parse = m_check.empty();
    const std::string name = parse ? fmt::format("xarm_ro_check_{}", ++m_statements) : m_check;
    const std::string prep = prepare_sql(x);
    const auto before = status();
    auto rs = pipeline(parse ? 3 : 2, 1, [&](PGconn* c) {
        return (!parse || PQsendPrepare(c, name.c_str(), read_only_check_sql, 0, nullptr)) &&
               PQsendQueryPrepared(c, name.c_str(), 0, nullptr, nullptr, nullptr, 0) &&
               PQsendQueryParams(c, prep.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) &&
               PQpipelineSync(c);
    });
    // A prepared statement outlives the rollback of the block it was parsed in.
    if (parse && rs[0] && succeeded(rs[0].get())) m_check = name;
    for (auto& r : rs) {
        if (r && succeeded(r.get())) continue;
        err = read_error(m_conn.get(), r.get());
        // The first error of a block is the one that aborted it.
        if (before != PQTRANS_INERROR) m_abort = err;
        if (err.sqlstate == "26000") m_check.clear();  // deallocated by the application
        return nullptr;
    }
    return std::move(rs.back());
}

result_ptr session::exec_commit(std::string_view failed) {
    server_error err;
    if (auto r = try_exec("COMMIT", err)) return r;
    if (err.lost || is_connection_loss(err.sqlstate)) {
        // The server may have written the commit record before the connection went:
        // nobody can say from here whether the transaction committed.
        raise(diagnostic{XAER_RMFAIL,
                         err.sqlstate,
                         0,
                         {},
                         fmt::format("COMMIT: the connection to PostgreSQL was lost before it "
                                     "answered ({}): the transaction may or may not have "
                                     "committed (in doubt)",
                                     err.message)},
              true);
    }
    raise_server(err, op::commit_one, failed);
}

void session::rollback(const xid& x, bool prepared) {
    if (prepared) {
        exec(rollback_prepared_sql(x), op::finish, "ROLLBACK PREPARED");
        return;
    }
    m_branch = false;
    ended_outside_hazard();
    m_deferred.reset();  // never sent: nothing of it to roll back
    if (m_pending_begin) {
        m_pending_begin = false;
        return;
    }
    check_alive(op::rollback, "ROLLBACK");
    if (status() == PQTRANS_INTRANS || status() == PQTRANS_INERROR)
        exec("ROLLBACK", op::rollback, "ROLLBACK");
}

std::vector<xid> session::recover() {
    auto r = exec(recover_sql, op::recover, "listing pg_prepared_xacts");
    std::vector<xid> out;
    const int n = PQntuples(r.get());
    out.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
        out.push_back(parse_recovered_gid(std::string_view(
            PQgetvalue(r.get(), i, 0), static_cast<std::size_t>(PQgetlength(r.get(), i, 0)))));
    return out;
}

bool session::in_local_transaction() const {
    if (m_branch) return false;
    const auto s = status();
    return s == PQTRANS_INTRANS || s == PQTRANS_INERROR || s == PQTRANS_ACTIVE;
}

result session::run(std::string_view sql, bool collect) {
    std::string text;
    // PEP 249: autocommit off, the first statement begins a transaction; in a branch
    // the pending BEGIN goes in the same round trip.
    const bool begin = m_branch ? m_pending_begin : status() == PQTRANS_IDLE;
    if (begin) {
        if (!m_branch) m_abort = {};
        text = "BEGIN; ";
        // A deferred statement goes behind the BEGIN, its parameters as literals
        // escaped by libpq.
        if (m_branch && m_deferred) text += deferred_text();
    }
    text.append(sql);
    m_pending_begin = false;
    server_error err;
    auto r = try_exec(text, err);
    if (!r) {
        if (err.sqlstate == "26000") m_defer_names.clear();  // deallocated: parse anew
        raise_server(err, op::statement, "SQL error");
    }
    const std::string_view tag = PQcmdStatus(r.get());
    if (tag.starts_with("DEALLOCATE")) {  // perhaps ours: parse them anew
        m_check.clear();
        m_defer_names.clear();
    }
    return decode(r.get(), collect);
}

std::int64_t session::execute(std::string_view sql) {
    return run(sql, false).affected;
}

result session::query(std::string_view sql) {
    return run(sql, true);
}

void session::commit_local() {
    switch (status()) {
        case PQTRANS_IDLE:
            return;
        case PQTRANS_INERROR:
            rollback_block();
            raise_aborted("the transaction had failed and is rolled back");
        default:
            break;
    }
    auto r = exec_commit("COMMIT failed and the transaction was rolled back");
    if (std::string_view(PQcmdStatus(r.get())) != "COMMIT")
        raise_aborted("COMMIT rolled the transaction back");
}

void session::rollback_local() {
    if (status() != PQTRANS_IDLE) exec("ROLLBACK", op::rollback, "ROLLBACK");
}

void* session::native_handle() noexcept {
    m_direct = true;
    if (m_pending_begin && m_deferred) {
        try {
            flush_deferred();  // a failure is recorded: xa_end reports the branch rolled back
        } catch (...) {
        }
    }
    if (m_pending_begin) {
        m_pending_begin = false;
        try {
            server_error err;
            // On failure the error is recorded; xa_end then finds no open block and
            // reports the branch rolled back with that error.
            try_exec("BEGIN", err);
        } catch (...) {
        }
    }
    return m_conn.get();
}

}  // namespace xarm::pq
