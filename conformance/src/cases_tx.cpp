// Cases that do SQL work in branches: commit and rollback with the data checked from
// another connection, votes, recovery from other connections/threads/processes, paging,
// durability, isolation, join/suspend with work, concurrency, and PEP 249's two-phase
// semantics as psycopg's tests/test_tpc.py and pgjdbc's XADataSourceTest express them.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "cases.hpp"
#include "xarm/driver/protocol.hpp"

namespace xarm::conformance {

namespace {

using C = capability;

/// Runs a protocol verb of the C++ session, returning its XA code (errors included).
template <class F>
int code(F&& f, std::string* msg = nullptr) {
    try {
        return f();
    } catch (const xarm::error& e) {
        if (msg) *msg = e.what();
        return e.xa_code();
    }
}

void expect(int rc, int want, const std::string& call, const std::string& msg = {}) {
    if (rc != want)
        fail(fmt::format("{} returned {}, expected {}{}{}", call, code_text(rc), code_text(want),
                         msg.empty() ? "" : ": ", msg));
}

bool is_rb(int rc) {
    return rc >= XA_RBBASE && rc <= XA_RBEND;
}

/// Commits x on its idle branch: two-phase when claimed (vote must be XA_OK), else one-phase.
void finish_commit(context& ctx, rm_session& s, const xid& x) {
    std::string m;
    if (ctx.claims(C::two_phase)) {
        expect(code([&] { return s.prepare(x, TMNOFLAGS); }, &m), XA_OK,
               "xa_prepare of a branch that wrote", m);
        expect(code([&] { return s.commit(x, TMNOFLAGS); }, &m), XA_OK, "xa_commit", m);
    } else {
        expect(code([&] { return s.commit(x, TMONEPHASE); }, &m), XA_OK, "xa_commit(TMONEPHASE)",
               m);
    }
}

int count_in(const std::vector<xid>& v, const xid& x) {
    return static_cast<int>(std::count(v.begin(), v.end(), x));
}

/// Prepares a branch with one row on c through the protocol verbs, leaving c free for
/// the next branch (PEP 249's tpc_prepare keeps the connection in the transaction).
void prepare_on(context& ctx, connection& c, const xid& x, const std::string& table, int id) {
    auto& s = c.session();
    std::string m;
    expect(code([&] { return s.start(x, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    ctx.insert(c, table, id);
    expect(code([&] { return s.end(x, TMSUCCESS); }, &m), XA_OK, "xa_end", m);
    expect(code([&] { return s.prepare(x, TMNOFLAGS); }, &m), XA_OK, "xa_prepare", m);
}

/// Prepares a branch that inserted row id into table, on a connection then closed.
void prepare_left_behind(context& ctx, const xid& x, const std::string& table, int id) {
    auto c = ctx.connect();
    c.tpc_begin(x);
    ctx.insert(c, table, id);
    c.tpc_prepare();
    c.close();
}

// -- commit and rollback ---------------------------------------------------------------

void one_phase_commit(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto& s = c.session();
    auto x = ctx.new_xid();
    std::string m;
    expect(code([&] { return s.start(x, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    ctx.insert(c, t, 1);
    expect(code([&] { return s.end(x, TMSUCCESS); }, &m), XA_OK, "xa_end", m);
    check(ctx.count(t) == 0, "an uncommitted branch's row is visible to another connection");
    expect(code([&] { return s.commit(x, TMONEPHASE); }, &m), XA_OK, "xa_commit(TMONEPHASE)", m);
    check(ctx.count(t) == 1, "the row is not visible after a one-phase commit");
}

void one_phase_rollback(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto& s = c.session();
    auto x = ctx.new_xid();
    std::string m;
    expect(code([&] { return s.start(x, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    ctx.insert(c, t, 1);
    expect(code([&] { return s.end(x, TMSUCCESS); }, &m), XA_OK, "xa_end", m);
    expect(code([&] { return s.rollback(x, TMNOFLAGS); }, &m), XA_OK, "xa_rollback", m);
    check(ctx.count(t) == 0, "the row is visible after xa_rollback");
}

void two_phase_commit(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto& s = c.session();
    auto x = ctx.new_xid();
    std::string m;
    expect(code([&] { return s.start(x, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    ctx.insert(c, t, 1);
    ctx.insert(c, t, 2);
    expect(code([&] { return s.end(x, TMSUCCESS); }, &m), XA_OK, "xa_end", m);
    expect(code([&] { return s.prepare(x, TMNOFLAGS); }, &m), XA_OK,
           "xa_prepare of a branch that wrote (must vote XA_OK, not XA_RDONLY)", m);
    check(ctx.count(t) == 0, "a prepared branch's rows are visible before commit");
    expect(code([&] { return s.commit(x, TMNOFLAGS); }, &m), XA_OK, "xa_commit", m);
    check(ctx.count(t) == 2, "the rows are not visible after the two-phase commit");
}

void two_phase_rollback(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto& s = c.session();
    auto x = ctx.new_xid();
    std::string m;
    expect(code([&] { return s.start(x, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    ctx.insert(c, t, 1);
    expect(code([&] { return s.end(x, TMSUCCESS); }, &m), XA_OK, "xa_end", m);
    expect(code([&] { return s.prepare(x, TMNOFLAGS); }, &m), XA_OK, "xa_prepare", m);
    expect(code([&] { return s.rollback(x, TMNOFLAGS); }, &m), XA_OK,
           "xa_rollback of the prepared branch", m);
    check(ctx.count(t) == 0, "the row is visible after rolling back the prepared branch");
    expect(code([&] { return s.commit(x, TMNOFLAGS); }, &m), XAER_NOTA,
           "xa_commit after the rollback", m);
}

void read_only_vote(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto& s = c.session();
    auto x = ctx.new_xid();
    std::string m;
    expect(code([&] { return s.start(x, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    c.query(fmt::format("SELECT COUNT(*) FROM {}", t));
    expect(code([&] { return s.end(x, TMSUCCESS); }, &m), XA_OK, "xa_end", m);
    expect(code([&] { return s.prepare(x, TMNOFLAGS); }, &m), XA_RDONLY,
           "xa_prepare of a read-only branch", m);
    if (ctx.claims(C::recovery))
        check(count_in(c.tpc_recover(), x) == 0, "a read-only branch is listed as in doubt");
    expect(code([&] { return s.commit(x, TMNOFLAGS); }, &m), XAER_NOTA,
           "xa_commit after an XA_RDONLY vote", m);
}

void read_only_refusal(context& ctx) {
    if (!ctx.claims(C::two_phase)) return verify_refusal(ctx, C::two_phase);
    // Declared missing: a read-only branch votes XA_OK and must then be committed.
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto& s = c.session();
    auto x = ctx.new_xid();
    std::string m;
    expect(code([&] { return s.start(x, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    c.query(fmt::format("SELECT COUNT(*) FROM {}", t));
    expect(code([&] { return s.end(x, TMSUCCESS); }, &m), XA_OK, "xa_end", m);
    expect(code([&] { return s.prepare(x, TMNOFLAGS); }, &m), XA_OK,
           "xa_prepare of a read-only branch (read_only_vote declared missing)", m);
    const int rc = code([&] { return s.commit(x, TMNOFLAGS); }, &m);
    if (rc == XA_HEURRB) {
        // An RM that cannot tell the branch wrote nothing may find it discarded (MariaDB
        // drops such a prepared branch once its connection ends) and must say so rather
        // than claim a commit; for a branch without writes that outcome is the commit's.
        // The heuristic outcome must then be forgettable.
        expect(code([&] { return s.forget(x, TMNOFLAGS); }, &m), XA_OK, "xa_forget after XA_HEURRB",
               m);
        ctx.refused_with("voted XA_OK for a branch that only read; its commit said XA_HEURRB");
        return;
    }
    expect(rc, XA_OK, "xa_commit", m);
    ctx.refused_with("voted XA_OK for a branch that only read, and committed it");
}

void failed_work(context& ctx) {
    // A failed statement: either the whole branch rolls back (XA_RB*) or the statement
    // alone failed and the rest commits. Never a half state.
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto& s = c.session();
    auto x = ctx.new_xid();
    std::string m;
    expect(code([&] { return s.start(x, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    ctx.insert(c, t, 1);
    try {
        ctx.insert(c, t, 1);
        fail("a duplicate primary key was accepted");
    } catch (const xarm::error& e) {
        check(e.sqlstate().size() == 5 && e.sqlstate() != "00000",
              fmt::format("the failed statement has no SQLSTATE: {}", e.what()));
    }
    int rc = code([&] { return s.end(x, TMSUCCESS); }, &m);
    if (rc == XA_OK) {
        if (ctx.claims(C::two_phase)) {
            rc = code([&] { return s.prepare(x, TMNOFLAGS); }, &m);
            if (rc == XA_OK) rc = code([&] { return s.commit(x, TMNOFLAGS); }, &m);
        } else {
            rc = code([&] { return s.commit(x, TMONEPHASE); }, &m);
        }
    } else if (is_rb(rc)) {
        expect(code([&] { return s.rollback(x, TMNOFLAGS); }, &m), XA_OK,
               "xa_rollback after XA_RB at xa_end", m);
    }
    if (rc == XA_OK) {
        check(ctx.count(t) == 1, "committed, but the successful row is missing");
        ctx.note("statement-level failure; the rest committed");
    } else if (is_rb(rc)) {
        check(ctx.count(t) == 0, "rolled back (XA_RB*), but rows are visible");
        ctx.note(std::string("branch rolled back: ") + code_text(rc));
    } else {
        fail(fmt::format("finishing the branch returned {}, expected XA_OK or XA_RB*{}",
                         code_text(rc), m.empty() ? "" : " -- " + m));
    }
}

void tmfail_sql(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto& s = c.session();
    auto x = ctx.new_xid();
    std::string m;
    expect(code([&] { return s.start(x, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    ctx.insert(c, t, 1);
    const int rc = code([&] { return s.end(x, TMFAIL); }, &m);
    check(is_rb(rc), fmt::format("xa_end(TMFAIL) returned {}, expected XA_RB*", code_text(rc)));
    const int rb = code([&] { return s.rollback(x, TMNOFLAGS); }, &m);
    check(rb == XA_OK || is_rb(rb),
          fmt::format("xa_rollback of a rollback-only branch returned {}, expected XA_OK or "
                      "XA_RB*{}",
                      code_text(rb), m.empty() ? "" : " -- " + m));
    check(ctx.count(t) == 0, "a TMFAIL branch's row is visible");
}

void commit_other_connection(context& ctx) {
    auto t = ctx.new_table();
    auto x = ctx.new_xid();
    auto a = ctx.connect();
    a.tpc_begin(x);
    ctx.insert(a, t, 1);
    a.tpc_prepare();
    auto b = ctx.connect();
    b.tpc_commit(x);
    check(ctx.count(t) == 1, "tpc_commit(xid) from another connection: the row is not visible");
    if (ctx.claims(C::recovery))
        check(count_in(b.tpc_recover(), x) == 0, "committed, still listed");
}

void rollback_other_connection(context& ctx) {
    auto t = ctx.new_table();
    auto x = ctx.new_xid();
    auto a = ctx.connect();
    a.tpc_begin(x);
    ctx.insert(a, t, 1);
    a.tpc_prepare();
    auto b = ctx.connect();
    b.tpc_rollback(x);
    check(ctx.count(t) == 0, "tpc_rollback(xid) from another connection: the row is visible");
    if (ctx.claims(C::recovery))
        check(count_in(b.tpc_recover(), x) == 0, "rolled back, still listed");
}

void durability_disconnect(context& ctx) {
    auto t = ctx.new_table();
    auto x = ctx.new_xid();
    prepare_left_behind(ctx, x, t, 1);
    auto b = ctx.connect();
    if (ctx.claims(C::recovery))
        check(count_in(b.tpc_recover(), x) == 1,
              "a prepared branch is not listed once after its connection closed");
    check(ctx.count(t) == 0, "a prepared branch's row is visible after disconnect");
    b.tpc_commit(x);
    check(ctx.count(t) == 1, "committing the branch after disconnect: the row is not visible");
}

void durability_restart(context& ctx) {
    std::string cmd = ctx.tgt().restart_cmd;
    if (cmd.empty())
        throw not_applicable("not run: give --allow-restart CMD to restart the server");
    // "{dbms}" names the database of this target (pq, mysql), for --all runs.
    for (auto p = cmd.find("{dbms}"); p != std::string::npos; p = cmd.find("{dbms}"))
        cmd.replace(p, 6, ctx.tgt().dbms);
    auto t = ctx.new_table();
    auto x = ctx.new_xid();
    prepare_left_behind(ctx, x, t, 1);
    const int rc = std::system(cmd.c_str());
    if (rc != 0) throw setup_error(fmt::format("restart command failed ({}): {}", rc, cmd));
    std::optional<connection> b;
    for (int i = 0; i < 60 && !b; ++i) {
        try {
            b.emplace(ctx.connect());
        } catch (const setup_error&) {
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
        }
    }
    if (!b) throw setup_error("the server did not come back within 30 s");
    if (ctx.claims(C::recovery))
        check(count_in(b->tpc_recover(), x) == 1,
              "the prepared branch is not listed after the restart");
    b->tpc_commit(x);
    check(ctx.count(t) == 1,
          "the branch prepared before the restart: the row is not visible after commit");
}

void isolation_locks(context& ctx) {
    const dbms_profile* d = profile_for(ctx.tgt().dbms);
    if (d == nullptr || d->lock_timeout.empty())
        throw not_applicable("no lock-timeout SQL for this database");
    auto t = ctx.new_table();
    {
        auto c = ctx.connect();
        ctx.insert(c, t, 1);
        c.commit();
    }
    auto a = ctx.connect();
    auto x = ctx.new_xid();
    a.tpc_begin(x);
    a.execute(fmt::format("UPDATE {} SET v = 'branch' WHERE id = 1", t));
    a.tpc_prepare();
    auto b = ctx.connect();
    b.execute(d->lock_timeout);
    b.commit();
    bool blocked = false;
    try {
        b.execute(fmt::format("UPDATE {} SET v = 'other' WHERE id = 1", t));
    } catch (const xarm::error&) {
        blocked = true;
    }
    try {
        b.rollback();
    } catch (const xarm::error&) {
    }
    check(blocked, "another connection updated a row locked by a prepared branch");
    a.tpc_commit();
    auto n = b.execute(fmt::format("UPDATE {} SET v = 'other' WHERE id = 1", t));
    b.commit();
    check(n == 1, "after the commit, the row could not be updated");
    auto r = b.query(fmt::format("SELECT v FROM {} WHERE id = 1", t));
    b.rollback();
    check(r.rows.size() == 1 && r.rows[0].get<std::optional<std::string>>(0) == "other",
          "unexpected row value");
}

// -- recovery ---------------------------------------------------------------------------

void recovery_c_switch(context& ctx) {
    auto t = ctx.new_table();
    auto x = ctx.new_xid("one"), y = ctx.new_xid("two");
    prepare_left_behind(ctx, x, t, 1);
    prepare_left_behind(ctx, y, t, 2);
    rm r(ctx);
    auto found = r.recover_all(4);
    check(count_in(found, x) == 1 && count_in(found, y) == 1,
          "xa_recover does not list each branch prepared by other connections exactly once");
    XID cx = context::to_c(x), cy = context::to_c(y);
    expect_rc(r, r.commit(&cx), XA_OK, "xa_commit of a recovered branch");
    expect_rc(r, r.rollback(&cy), XA_OK, "xa_rollback of a recovered branch");
    check(ctx.count(t) == 1, "after commit of one and rollback of the other, not exactly one row");
    expect_rc(r, r.commit(&cx), XAER_NOTA, "xa_commit of the finished branch again");
    auto again = r.recover_all(4);
    check(count_in(again, x) == 0 && count_in(again, y) == 0, "finished branches still listed");
}

void recovery_other_thread(context& ctx) {
    auto t = ctx.new_table();
    auto x = ctx.new_xid();
    std::string err;
    std::thread th([&] {
        try {
            prepare_left_behind(ctx, x, t, 1);
        } catch (const std::exception& e) {
            err = e.what();
        }
    });
    th.join();
    if (!err.empty()) fail("preparing on another thread: " + err);
    auto c = ctx.connect();
    check(count_in(c.tpc_recover(), x) == 1, "a branch prepared on another thread is not listed");
    c.tpc_commit(x);
    check(ctx.count(t) == 1, "the recovered branch's row is not visible after commit");
}

void recovery_other_process(context& ctx) {
    auto t = ctx.new_table();
    auto x = ctx.new_xid();
    // The child prepares through its own switch instance and exits without finishing
    // (fork without exec: the runner is single-threaded here and the child touches
    // nothing of the parent's connections, then leaves with _exit).
    const pid_t pid = ::fork();
    if (pid < 0) throw setup_error("fork failed");
    if (pid == 0) {
        int status = 1;
        try {
            prepare_left_behind(ctx, x, t, 1);
            status = 0;
        } catch (...) {
        }
        ::_exit(status);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        throw setup_error("the child process failed to prepare");
    rm r(ctx);
    auto found = r.recover_all();
    check(count_in(found, x) == 1,
          "a branch prepared by an exited process is not listed by xa_recover");
    XID cx = context::to_c(x);
    expect_rc(r, r.commit(&cx), XA_OK, "xa_commit of the other process's branch");
    check(ctx.count(t) == 1, "the other process's row is not visible after commit");
}

/// Prepares n branches for the recovery cases. With SQL access each inserts row i;
/// without, they do no work, which a DBMS such as PostgreSQL keeps as a prepared
/// transaction all the same: then the case needs nothing but the switch.
std::vector<xid> prepare_branches(context& ctx, int n, const std::string& table,
                                  const std::string& tag) {
    std::vector<xid> mine;
    if (ctx.has_sql()) {
        auto c = ctx.connect();
        for (int i = 0; i < n; ++i) {
            auto x = ctx.new_xid(fmt::format("{}{}", tag, i));
            prepare_on(ctx, c, x, table, i);
            mine.push_back(x);
        }
        return mine;
    }
    rm r(ctx);
    for (int i = 0; i < n; ++i) {
        auto x = ctx.new_xid(fmt::format("{}{}", tag, i));
        XID cx = context::to_c(x);
        expect_rc(r, r.start(&cx), XA_OK, "xa_start");
        expect_rc(r, r.end(&cx), XA_OK, "xa_end");
        const int rc = r.prepare(&cx);
        if (rc == XA_RDONLY)
            throw not_applicable(
                "the switch votes XA_RDONLY for a branch without work, so nothing stays "
                "prepared: give SQL access (--native-conn) to prepare branches that write");
        expect_rc(r, rc, XA_OK, "xa_prepare of a branch without work");
        mine.push_back(x);
    }
    return mine;
}

void recovery_paging(context& ctx) {
    const auto t = ctx.has_sql() ? ctx.new_table() : std::string();
    auto mine = prepare_branches(ctx, 7, t, "p");
    rm r(ctx);
    std::vector<xid> all;
    XID page[3];
    long flags = TMSTARTRSCAN;
    for (int guard = 0; guard < 100000; ++guard) {
        const int n = r.recover(page, 3, flags);
        if (n < 0 || n > 3)
            fail(fmt::format("xa_recover({}, count 3) returned {}, expected 0 to 3 XIDs{}",
                             flags == TMSTARTRSCAN ? "TMSTARTRSCAN"
                                                   : fmt::format("TMNOFLAGS: page {}", guard + 1),
                             n < 0 ? code_text(n) : std::to_string(n), r.with_diag(n)));
        for (int i = 0; i < n; ++i) all.push_back(xid::from_c(&page[i]));
        if (n < 3) break;
        flags = TMNOFLAGS;
    }
    expect_rc(r, r.recover(page, 0, TMENDRSCAN), 0, "xa_recover(TMENDRSCAN, count 0)");
    std::set<xid> seen;
    for (const auto& x : all)
        check(seen.insert(x).second,
              "xa_recover returned " + x.to_string() + " twice across pages");
    for (const auto& x : mine) check(seen.count(x) == 1, "paging lost " + x.to_string());
    for (const auto& x : mine) {
        XID cx = context::to_c(x);
        expect_rc(r, r.rollback(&cx), XA_OK, "xa_rollback of a paged branch");
    }
    if (!t.empty()) check(ctx.count(t) == 0, "rolled-back branches' rows are visible");
}

void recovery_many(context& ctx) {
    constexpr int n = 40;
    const auto t = ctx.has_sql() ? ctx.new_table() : std::string();
    auto mine = prepare_branches(ctx, n, t, "m");
    if (!ctx.has_sql()) {
        // Through the switch alone, as a monitor scans: pages of 16.
        rm r(ctx);
        auto listed = r.recover_all(16);
        for (const auto& x : mine)
            check(count_in(listed, x) == 1,
                  "xa_recover does not list " + x.to_string() + " exactly once");
        for (int i = 0; i < n; ++i) {
            XID cx = context::to_c(mine[static_cast<std::size_t>(i)]);
            if (i % 2 == 0)
                expect_rc(r, r.commit(&cx), XA_OK, "xa_commit of a recovered branch");
            else
                expect_rc(r, r.rollback(&cx), XA_OK, "xa_rollback of a recovered branch");
        }
        auto after = r.recover_all(16);
        for (const auto& x : mine)
            check(count_in(after, x) == 0, "finished branch still listed: " + x.to_string());
        return;
    }
    auto c = ctx.connect();
    auto listed = c.tpc_recover();
    for (const auto& x : mine)
        check(count_in(listed, x) == 1,
              "tpc_recover does not list " + x.to_string() + " exactly once");
    for (int i = 0; i < n; ++i) {
        if (i % 2 == 0)
            c.tpc_commit(mine[static_cast<std::size_t>(i)]);
        else
            c.tpc_rollback(mine[static_cast<std::size_t>(i)]);
    }
    check(ctx.count(t) == n / 2,
          fmt::format("after committing {} of {} branches, {} rows", n / 2, n, ctx.count(t)));
    auto after = c.tpc_recover();
    for (const auto& x : mine)
        check(count_in(after, x) == 0, "finished branch still listed: " + x.to_string());
}

void byte_roundtrip(context& ctx) {
    // Every byte value 0..255 appears in some gtrid or bqual; each gtrid ends with a
    // unique token so that runs (and other users of the server) never collide.
    auto t = ctx.new_table();
    std::vector<xid> mine;
    const long formats[] = {0, 1, 0x7fffffffL, 12345, 42, 7};
    int next = 0;
    for (int k = 0; next < 256 + 64; ++k) {
        const std::string token = ctx.new_xid().gtrid();
        std::string g, b;
        while (g.size() + token.size() < 64) g.push_back(static_cast<char>(next++ % 256));
        g += token;
        while (b.size() < 64) b.push_back(static_cast<char>(next++ % 256));
        xid x(formats[k % 6], g, b);
        ctx.track(x);
        prepare_left_behind(ctx, x, t, k);
        mine.push_back(x);
    }
    rm r(ctx);
    auto found = r.recover_all();
    auto listed = ctx.connect().tpc_recover();
    for (const auto& x : mine) {
        check(count_in(found, x) == 1, "xa_recover did not return byte-exact " + x.to_string());
        check(count_in(listed, x) == 1, "tpc_recover did not return byte-exact " + x.to_string());
    }
    for (const auto& x : mine) {
        XID cx = context::to_c(x);
        expect_rc(r, r.commit(&cx), XA_OK, "xa_commit of a byte-exact branch");
    }
    check(ctx.count(t) == static_cast<long>(mine.size()), "not every byte-exact branch committed");
}

void xid_edges(context& ctx) {
    auto t = ctx.new_table();
    auto tok = ctx.new_xid().gtrid();
    std::vector<xid> mine = {
        xid(7, tok + std::string(64 - tok.size(), 'g'), std::string(64, 'q')),
        xid(7, "g-empty-bqual-" + ctx.new_xid().gtrid(), ""),
        xid(0, std::string(1, 'z') + ctx.new_xid().gtrid(), std::string(1, '\0'))};
    int id = 0;
    for (const auto& x : mine) {
        ctx.track(x);
        prepare_left_behind(ctx, x, t, id++);
    }
    auto c = ctx.connect();
    auto listed = c.tpc_recover();
    for (const auto& x : mine)
        check(count_in(listed, x) == 1, "not listed exactly: " + x.to_string());
    for (const auto& x : mine) c.tpc_rollback(x);
    check(ctx.count(t) == 0, "rolled back edge xids' rows are visible");
}

// -- join, suspend, concurrency, input -----------------------------------------------

void join_sql(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto& s = c.session();
    auto x = ctx.new_xid();
    std::string m;
    expect(code([&] { return s.start(x, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    ctx.insert(c, t, 1);
    expect(code([&] { return s.end(x, TMSUCCESS); }, &m), XA_OK, "xa_end", m);
    expect(code([&] { return s.start(x, TMJOIN); }, &m), XA_OK, "xa_start(TMJOIN)", m);
    ctx.insert(c, t, 2);
    expect(code([&] { return s.end(x, TMSUCCESS); }, &m), XA_OK, "xa_end", m);
    finish_commit(ctx, s, x);
    check(ctx.count(t) == 2, "the work before and after TMJOIN did not both commit");
}

void suspend_sql(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto& s = c.session();
    auto x = ctx.new_xid();
    std::string m;
    expect(code([&] { return s.start(x, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    ctx.insert(c, t, 1);
    expect(code([&] { return s.end(x, TMSUSPEND); }, &m), XA_OK, "xa_end(TMSUSPEND)", m);
    expect(code([&] { return s.start(x, TMRESUME); }, &m), XA_OK, "xa_start(TMRESUME)", m);
    ctx.insert(c, t, 2);
    expect(code([&] { return s.end(x, TMSUCCESS); }, &m), XA_OK, "xa_end", m);
    finish_commit(ctx, s, x);
    check(ctx.count(t) == 2, "the work before and after the suspension did not both commit");
}

void threads_sql(context& ctx) {
    constexpr int threads = 4, per = 5;
    auto t = ctx.new_table();
    std::vector<std::string> errs(threads);
    std::vector<std::thread> ts;
    ts.reserve(threads);
    for (int i = 0; i < threads; ++i)
        ts.emplace_back([&, i] {
            try {
                auto c = ctx.connect();
                for (int k = 0; k < per; ++k) {
                    c.tpc_begin(ctx.new_xid(fmt::format("t{}", i)));
                    ctx.insert(c, t, i * 100 + k);
                    if (ctx.claims(C::two_phase)) c.tpc_prepare();
                    c.tpc_commit();
                }
            } catch (const std::exception& e) {
                errs[static_cast<std::size_t>(i)] = fmt::format("thread {}: {}", i, e.what());
            }
        });
    for (auto& th : ts) th.join();
    for (const auto& e : errs) check(e.empty(), e);
    check(ctx.count(t) == long{threads} * per,
          fmt::format("{} threads x {} commits: {} rows", threads, per, ctx.count(t)));
}

void sql_error_in_branch(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    c.tpc_begin(ctx.new_xid());
    try {
        c.execute("SELECT * FROM xarm_conformance_no_such_table");
        fail("a query of a missing table succeeded");
    } catch (const failure&) {
        throw;
    } catch (const xarm::error& e) {
        check(e.sqlstate().size() == 5 && e.sqlstate() != "00000",
              fmt::format("no SQLSTATE: {}", e.what()));
        check(std::string(e.what()).size() > 0, "no message");
    }
    c.tpc_rollback();
    c.tpc_begin(ctx.new_xid());
    ctx.insert(c, t, 1);
    c.tpc_commit();
    check(ctx.count(t) == 1, "the connection is not usable for a new branch after an SQL error");
}

// -- PEP 249 two-phase (psycopg tests/test_tpc.py, pgjdbc XADataSourceTest) -------------

void pep_begin_twice(context& ctx) {
    auto c = ctx.connect();
    c.tpc_begin(ctx.new_xid());
    expect_throw<programming_error>([&] { c.tpc_begin(ctx.new_xid()); },
                                    "tpc_begin inside a two-phase transaction");
    c.tpc_rollback();
}

void pep_commit_inside(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    c.tpc_begin(ctx.new_xid());
    ctx.insert(c, t, 1);
    expect_throw<programming_error>([&] { c.commit(); }, "commit() inside a two-phase transaction");
    expect_throw<programming_error>([&] { c.rollback(); },
                                    "rollback() inside a two-phase transaction");
    check(ctx.count(t) == 0, "commit() inside tpc made the row visible");
    c.tpc_commit();
    check(ctx.count(t) == 1, "the branch did not commit after the refused commit()");
}

void pep_calls_outside(context& ctx) {
    auto c = ctx.connect();
    expect_throw<programming_error>([&] { c.tpc_prepare(); }, "tpc_prepare without tpc_begin");
    expect_throw<programming_error>([&] { c.tpc_commit(); }, "tpc_commit without tpc_begin");
    expect_throw<programming_error>([&] { c.tpc_rollback(); }, "tpc_rollback without tpc_begin");
}

void pep_one_phase(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto x = ctx.new_xid();
    c.tpc_begin(x);
    ctx.insert(c, t, 1);
    c.tpc_commit();  // not prepared: one phase
    check(ctx.count(t) == 1, "tpc_commit() without tpc_prepare(): the row is not visible");
    check(c.current().is_null(), "the connection still reports a branch after tpc_commit()");
    if (ctx.claims(C::recovery))
        check(count_in(c.tpc_recover(), x) == 0, "a one-phase-committed xid is listed in doubt");
}

void pep_two_phase(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    c.tpc_begin(ctx.new_xid());
    ctx.insert(c, t, 1);
    c.tpc_prepare();
    check(c.prepared(), "prepared() is false after tpc_prepare()");
    expect_throw<programming_error>([&] { c.execute("SELECT 1"); },
                                    "execute() after tpc_prepare()");
    expect_throw<programming_error>([&] { c.tpc_prepare(); }, "tpc_prepare() twice");
    expect_throw<programming_error>([&] { c.tpc_commit(ctx.new_xid()); },
                                    "tpc_commit(xid) inside a transaction");
    check(ctx.count(t) == 0, "prepared row visible");
    c.tpc_commit();
    check(ctx.count(t) == 1, "tpc_prepare + tpc_commit: the row is not visible");
}

void pep_rollback_prepared(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto x = ctx.new_xid();
    c.tpc_begin(x);
    ctx.insert(c, t, 1);
    c.tpc_prepare();
    c.tpc_rollback();
    check(ctx.count(t) == 0, "tpc_prepare + tpc_rollback: the row is visible");
    if (ctx.claims(C::recovery))
        check(count_in(c.tpc_recover(), x) == 0, "rolled back, still listed");
}

void pep_recover_after_reconnect(context& ctx) {
    auto t = ctx.new_table();
    xid x(42, ctx.new_xid().gtrid(), "qualifier");
    ctx.track(x);
    prepare_left_behind(ctx, x, t, 1);
    auto c = ctx.connect();
    auto listed = c.tpc_recover();
    auto it = std::find(listed.begin(), listed.end(), x);
    check(it != listed.end(), "tpc_recover after reconnecting does not list the xid");
    check(it->format_id() == 42 && it->bqual() == "qualifier" && !it->is_unparsed(),
          "the recovered xid differs in format id or bqual");
    c.tpc_rollback(*it);
    check(count_in(c.tpc_recover(), x) == 0, "rolled back, still listed");
    check(ctx.count(t) == 0, "rolled back, row visible");
}

void pep_unusual_xid(context& ctx) {
    auto t = ctx.new_table();
    xid x(0x7fffffffL, "g'\"\\;--%_ " + ctx.new_xid().gtrid(), "q ' \" \\ \x01\xff");
    ctx.track(x);
    prepare_left_behind(ctx, x, t, 1);
    auto c = ctx.connect();
    check(count_in(c.tpc_recover(), x) == 1,
          "an xid with quotes, backslashes and high bytes is not listed exactly");
    c.tpc_commit(x);
    check(ctx.count(t) == 1, "committing the unusual xid by name: the row is not visible");
}

void pep_foreign_gid(context& ctx) {
    const dbms_profile* d = profile_for(ctx.tgt().dbms);
    if (d == nullptr || d->foreign_prepare.empty())
        throw not_applicable("no SQL to prepare a foreign transaction on this database");
    auto t = ctx.new_table();
    const std::string gid = "xarm-foreign-" + ctx.new_xid().gtrid();
    {
        auto c = ctx.connect();
        std::string sql = fmt::format(fmt::runtime(d->foreign_prepare), fmt::arg("table", t),
                                      fmt::arg("gid", gid));
        std::size_t pos = 0;
        while (pos <= sql.size()) {
            auto nl = sql.find('\n', pos);
            c.execute(sql.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
            if (nl == std::string::npos) break;
            pos = nl + 1;
        }
        c.close();
    }
    auto c = ctx.connect();
    auto listed = c.tpc_recover();
    auto it =
        std::find_if(listed.begin(), listed.end(), [&](const xid& x) { return x.gtrid() == gid; });
    if (it == listed.end() && ctx.via_switch() && !d->foreign_commit.empty()) {
        // Through a switch a name that is not an XID cannot be listed (an XID cannot carry
        // it): it must not disturb the scan either. Our own branch is still listed, and
        // the foreign one is committed by name in SQL.
        auto x = ctx.new_xid();
        prepare_on(ctx, c, x, t, 1);
        check(count_in(c.tpc_recover(), x) == 1,
              "with a foreign prepared transaction present, xa_recover does not list the "
              "suite's own branch");
        c.tpc_rollback(x);
        c.execute(fmt::format(fmt::runtime(d->foreign_commit), fmt::arg("gid", gid)));
        c.commit();
        check(ctx.count(t) == 1,
              "committing the foreign transaction by name: the row is not visible");
        ctx.note("the foreign name is not an XID: xa_recover leaves it out");
        return;
    }
    check(it != listed.end(), "a transaction prepared with plain SQL is not listed by tpc_recover");
    c.tpc_commit(*it);
    check(ctx.count(t) == 1, "committing the foreign transaction by name: the row is not visible");
}

void pep_begin_after_local(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    ctx.insert(c, t, 1);  // begins a local transaction (autocommit off)
    try {
        c.tpc_begin(ctx.new_xid());
        c.tpc_rollback();
        fail("tpc_begin with a local transaction in progress succeeded");
    } catch (const failure&) {
        throw;
    } catch (const xarm::error& e) {
        check(e.xa_code() == XAER_OUTSIDE || e.xa_code() == XAER_PROTO,
              fmt::format("tpc_begin with local work: {} ({})", code_text(e.xa_code()), e.what()));
    }
    c.rollback();
    c.tpc_begin(ctx.new_xid());
    ctx.insert(c, t, 2);
    c.tpc_commit();
    check(ctx.count(t) == 1, "expected only the branch's row");
}

void pep_local_after_tpc(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    c.tpc_begin(ctx.new_xid());
    ctx.insert(c, t, 1);
    c.tpc_rollback();
    ctx.insert(c, t, 2);
    check(ctx.count(t) == 0, "local work visible before commit()");
    c.commit();
    check(ctx.count(t) == 1, "local commit() after a two-phase transaction did not commit");
}

void pep_close_rolls_back(context& ctx) {
    auto t = ctx.new_table();
    auto x = ctx.new_xid();
    {
        auto c = ctx.connect();
        c.tpc_begin(x);
        ctx.insert(c, t, 1);
        c.close();
    }
    check(ctx.count(t) == 0, "closing with an unprepared branch left its row visible");
    if (ctx.claims(C::recovery) && ctx.claims(C::two_phase))
        check(count_in(ctx.connect().tpc_recover(), x) == 0,
              "an unprepared branch is listed after close");
}

void pep_xid_validation(context& ctx) {
    (void)ctx;
    expect_throw<programming_error>([] { connection::xid(-1, "g", "b"); }, "xid(-1, ...)");
    expect_throw<programming_error>([] { connection::xid(1, "", "b"); }, "xid with an empty gtrid");
    expect_throw<programming_error>([] { connection::xid(1, std::string(65, 'g'), ""); },
                                    "xid with a 65-byte gtrid");
    expect_throw<programming_error>([] { connection::xid(1, "g", std::string(65, 'b')); },
                                    "xid with a 65-byte bqual");
    auto x = connection::xid(0x7fffffffL, std::string(64, 'a'), std::string(64, 'b'));
    check(x.format_id() == 0x7fffffffL && x.gtrid().size() == 64 && x.bqual().size() == 64,
          "xid fields");
}

// -- failed statements and discarded branches (the faults drivers had) ------------------

/// Runs a statement that fails in every database; returns its SQLSTATE.
std::string failing_statement(connection& c) {
    try {
        c.execute("INSERT INTO xarm_conformance_no_such_table (id) VALUES (1)");
    } catch (const xarm::error& e) {
        return e.sqlstate();
    }
    fail("an INSERT into a missing table succeeded");
}

/// Inserts row id; false when the statement failed (e.g. the transaction is aborted).
bool try_insert(context& ctx, connection& c, const std::string& t, int id) {
    try {
        ctx.insert(c, t, id);
        return true;
    } catch (const failure&) {
        throw;
    } catch (const xarm::error&) {
        return false;
    }
}

std::string row_list(const std::vector<int>& ids) {
    std::string s;
    for (int i : ids) s += (s.empty() ? "" : ", ") + std::to_string(i);
    return "{" + s + "}";
}

/// The ids of the rows table holds, read by the observer.
std::vector<int> rows_of(context& ctx, const std::string& t) {
    std::vector<int> ids;
    auto c = ctx.connect();
    auto r = c.query(fmt::format("SELECT id FROM {} ORDER BY id", t));
    c.rollback();
    for (const auto& row : r.rows)
        if (!row.empty() && row[0]) ids.push_back(std::stoi(*row[0]));
    return ids;
}

void failed_statement_prepare(context& ctx) {
    // PostgreSQL answers PREPARE TRANSACTION in an aborted block with a ROLLBACK tag and
    // no error, and COMMIT likewise: a switch that only checks for an error votes XA_OK
    // for a branch that no longer exists. The vote must be XA_RB*, or an XA_OK that is
    // true: the branch is listed and commits the work that succeeded.
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto& s = c.session();
    std::string m;
    auto x = ctx.new_xid();
    expect(code([&] { return s.start(x, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    ctx.insert(c, t, 1);
    const std::string state = failing_statement(c);
    const bool second = try_insert(ctx, c, t, 2);
    std::vector<int> done{1};
    if (second) done.push_back(2);
    int rc = code([&] { return s.end(x, TMSUCCESS); }, &m);
    if (is_rb(rc)) {
        code([&] { return s.rollback(x, TMNOFLAGS); }, &m);
        check(ctx.count(t) == 0, "xa_end answered XA_RB*, but rows are visible");
        ctx.note(fmt::format("xa_end rolled back: {}", code_text(rc)));
    } else {
        expect(rc, XA_OK, "xa_end after a failed statement", m);
        rc = code([&] { return s.prepare(x, TMNOFLAGS); }, &m);
        const std::string what = fmt::format(
            "after a failed statement (SQLSTATE {}; the next INSERT {}), xa_prepare answered {}",
            state, second ? "succeeded" : "failed too", code_text(rc));
        if (is_rb(rc)) {
            check(ctx.count(t) == 0, what + ", but rows are visible");
            if (ctx.claims(C::recovery))
                check(count_in(c.tpc_recover(), x) == 0, what + ", but the branch is listed");
            ctx.note(fmt::format("prepare rolled back: {}", code_text(rc)));
        } else if (rc == XA_OK) {
            if (ctx.claims(C::recovery))
                check(count_in(c.tpc_recover(), x) == 1,
                      what +
                          ", but no such branch is prepared: a false XA_OK (the failed "
                          "statement had ended the transaction)");
            const int cc = code([&] { return s.commit(x, TMNOFLAGS); }, &m);
            check(cc == XA_OK, fmt::format("{}, but xa_commit then returned {}: a false XA_OK{}",
                                           what, code_text(cc), m.empty() ? "" : " -- " + m));
            const auto rows = rows_of(ctx, t);
            check(rows == done,
                  fmt::format("{} and xa_commit XA_OK, but the rows are {} instead of the work "
                              "that succeeded, {}",
                              what, row_list(rows), row_list(done)));
            ctx.note("statement-level failure: the rest was prepared and committed");
        } else {
            fail(what + ", expected XA_RB* (or a true XA_OK)" + (m.empty() ? "" : " -- " + m));
        }
    }
    if (!ctx.claims(C::one_phase)) return;
    // The same for a one-phase commit: COMMIT of an aborted block is a quiet rollback.
    auto y = ctx.new_xid("1pc");
    expect(code([&] { return s.start(y, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    ctx.insert(c, t, 3);
    failing_statement(c);
    rc = code([&] { return s.end(y, TMSUCCESS); }, &m);
    if (rc == XA_OK) rc = code([&] { return s.commit(y, TMONEPHASE); }, &m);
    const auto rows = rows_of(ctx, t);
    const bool has3 = std::find(rows.begin(), rows.end(), 3) != rows.end();
    if (rc == XA_OK)
        check(has3,
              "after a failed statement, xa_commit(TMONEPHASE) answered XA_OK, but the "
              "branch's row is not visible: a false commit");
    else if (is_rb(rc))
        check(!has3, fmt::format("xa_commit(TMONEPHASE) answered {}, but the row is visible",
                                 code_text(rc)));
    else
        fail(
            fmt::format("after a failed statement, the one-phase commit returned {}, expected "
                        "XA_RB* or XA_OK{}",
                        code_text(rc), m.empty() ? "" : " -- " + m));
}

void failed_statement_whole(context& ctx) {
    // A client that rolls back the whole transaction on an error and carries on in a new
    // one (psqlODBC without Protocol=7.4-0) prepares only the work after the failure.
    // Whatever the database's rule, the branch commits whole or not at all.
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto& s = c.session();
    std::string m;
    auto x = ctx.new_xid();
    expect(code([&] { return s.start(x, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
    ctx.insert(c, t, 1);
    failing_statement(c);
    std::vector<int> done{1};
    for (int id : {2, 3})
        if (try_insert(ctx, c, t, id)) done.push_back(id);
    int rc = code([&] { return s.end(x, TMSUCCESS); }, &m);
    if (rc == XA_OK) {
        if (ctx.claims(C::two_phase)) {
            rc = code([&] { return s.prepare(x, TMNOFLAGS); }, &m);
            if (rc == XA_OK) rc = code([&] { return s.commit(x, TMNOFLAGS); }, &m);
        } else {
            rc = code([&] { return s.commit(x, TMONEPHASE); }, &m);
        }
    } else if (is_rb(rc)) {
        code([&] { return s.rollback(x, TMNOFLAGS); }, &m);
    }
    const auto rows = rows_of(ctx, t);
    if (rc == XA_OK) {
        check(rows == done,
              fmt::format("the branch committed (XA_OK) with rows {}, but the statements that "
                          "succeeded wrote {}{}",
                          row_list(rows), row_list(done),
                          std::find(rows.begin(), rows.end(), 1) == rows.end() && !rows.empty()
                              ? ": half a branch, the work before the failed statement was lost "
                                "and the work after it committed"
                              : ""));
    } else if (is_rb(rc)) {
        check(rows.empty(), fmt::format("the branch rolled back ({}), but rows {} are visible",
                                        code_text(rc), row_list(rows)));
    } else {
        fail(fmt::format("finishing the branch returned {}, expected XA_OK or XA_RB*{}",
                         code_text(rc), m.empty() ? "" : " -- " + m));
    }
}

void commit_found_rolled_back(context& ctx) {
    // MariaDB discards a prepared branch that wrote nothing once its connection ends,
    // then answers XA COMMIT with "rolled back": an RM must say so (XA_HEURRB or XA_RB*),
    // never XA_OK, since it cannot know the branch had nothing to commit. A branch with
    // work beside it must commit as usual.
    auto t = ctx.new_table();
    auto ro = ctx.new_xid("ro"), rw = ctx.new_xid("rw");
    bool ro_prepared = false;
    {
        auto a = ctx.connect();
        auto& s = a.session();
        std::string m;
        expect(code([&] { return s.start(ro, TMNOFLAGS); }, &m), XA_OK, "xa_start", m);
        a.query(fmt::format("SELECT COUNT(*) FROM {}", t));
        expect(code([&] { return s.end(ro, TMSUCCESS); }, &m), XA_OK, "xa_end", m);
        const int v = code([&] { return s.prepare(ro, TMNOFLAGS); }, &m);
        check(v == XA_OK || v == XA_RDONLY,
              fmt::format("xa_prepare of a branch that only read returned {}, expected XA_OK "
                          "or XA_RDONLY{}",
                          code_text(v), m.empty() ? "" : " -- " + m));
        ro_prepared = v == XA_OK;
        prepare_on(ctx, a, rw, t, 1);
        a.close();  // the session ends: MariaDB drops the branch that wrote nothing
    }
    rm r(ctx);
    auto listed = r.recover_all(16);
    // XA_RETRY: the server has not let go of the closed connection's branch yet.
    auto commit = [&r](XID* x) {
        int rc = XA_RETRY;
        for (int i = 0; i < 250 && rc == XA_RETRY; ++i) {
            rc = r.commit(x);
            if (rc == XA_RETRY) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return rc;
    };
    XID crw = context::to_c(rw);
    const int wc = commit(&crw);
    expect_rc(r, wc, XA_OK, "xa_commit of a prepared branch with work whose connection ended");
    check(ctx.count(t) == 1, "xa_commit answered XA_OK, but the branch's row is not visible");
    if (!ro_prepared) {
        ctx.note("the branch that only read voted XA_RDONLY: nothing left to discard");
        return;
    }
    const bool was_listed = count_in(listed, ro) == 1;
    XID cro = context::to_c(ro);
    const int rc = commit(&cro);
    if (rc == XA_OK) {
        check(was_listed,
              "xa_commit answered XA_OK for a prepared branch that recovery no longer listed: "
              "the server had discarded (rolled back) it, and the commit claimed success");
        ctx.note("the branch that only read was kept prepared and committed");
    } else if (rc == XA_HEURRB || rc == XA_HEURMIX || rc == XA_HEURHAZ) {
        expect_rc(r, r.forget(&cro), XA_OK, "xa_forget after a heuristic outcome");
        ctx.note(fmt::format("found rolled back: {}", code_text(rc)));
    } else if (is_rb(rc) || rc == XAER_NOTA) {
        ctx.note(fmt::format("found rolled back: {}", code_text(rc)));
    } else {
        fail(fmt::format(
            "xa_commit of a prepared branch the server may have discarded returned "
            "{}, expected XA_OK (when still prepared), XA_HEURRB, XA_RB* or XAER_NOTA{}",
            code_text(rc), r.with_diag(rc)));
    }
}

void caps_declared(context& ctx) {
    const auto& src = ctx.tgt().sources;
    const bool own = !src.empty() && std::all_of(src.begin(), src.end(), [](const auto& kv) {
        return kv.second != decl_source::switch_flags && kv.second != decl_source::undeclared &&
               kv.second != decl_source::specification;
    });
    if (!ctx.tgt().caps || !own)
        throw not_applicable("the library has no declaration of its own (no xarm_driver_v1)");
    if (ctx.via_switch()) {
        // The connection is the suite's adapter: the declaration is the library's.
        for (const auto& s : ctx.tgt().caps->list())
            if (!s.supported)
                check(!s.reason.empty(),
                      fmt::format("{} missing without a reason", to_string(s.what)));
        return;
    }
    auto c = ctx.connect();
    auto conn_caps = c.capabilities();
    for (auto cap : all_capabilities) {
        int n = 0;
        for (const auto& s : ctx.tgt().caps->list()) n += s.what == cap;
        check(n == 1, fmt::format("capability {} declared {} times", to_string(cap), n));
        auto s = conn_caps.get(cap);
        if (!s.supported)
            check(!s.reason.empty(), fmt::format("{} missing without a reason", to_string(cap)));
        // The driver's own declaration (before any connection) promises at least as
        // much as a connection has.
        if (s.supported && ctx.tgt().drv)
            check(ctx.tgt().drv->capabilities().has(cap),
                  fmt::format("a connection has {} that the driver does not declare",
                              to_string(cap)));
    }
}

}  // namespace

void add_tx_cases(std::vector<case_def>& v) {
    auto add = [&](const char* id, const char* title, std::vector<C> needs, layer l,
                   void (*f)(context&), void (*refusal)(context&) = nullptr) {
        case_def c{id, title, std::move(needs), l, f, {}};
        if (refusal) c.refusal = refusal;
        v.push_back(std::move(c));
    };
    const auto S = layer::sql, P = layer::cpp;
    add("tx.one_phase_commit", "one-phase commit: invisible before, visible after", {C::one_phase},
        S, one_phase_commit);
    add("tx.one_phase_rollback", "rollback of an idle branch: nothing visible", {}, S,
        one_phase_rollback);
    add("tx.two_phase_commit",
        "prepare votes XA_OK, invisible while prepared, visible after commit", {C::two_phase}, S,
        two_phase_commit);
    add("tx.two_phase_rollback",
        "rollback of a prepared branch: nothing visible; commit then XAER_NOTA", {C::two_phase}, S,
        two_phase_rollback);
    add("tx.read_only_vote", "a branch that only read votes XA_RDONLY and is gone",
        {C::read_only_vote}, S, read_only_vote, read_only_refusal);
    add("tx.failed_work",
        "a failed statement: all rolled back (XA_RB*) or statement-level, never half", {}, S,
        failed_work);
    add("tx.tmfail_sql", "TMFAIL with work: XA_RB*, rollback, nothing visible", {}, S, tmfail_sql);
    add("tx.failed_statement_prepare",
        "a failed statement: xa_prepare (and a one-phase commit) votes XA_RB*, never a false "
        "XA_OK",
        {C::two_phase}, S, failed_statement_prepare);
    add("tx.failed_statement_whole",
        "after a failed statement the branch commits whole or not at all, never only the work "
        "after it",
        {}, S, failed_statement_whole);
    add("tx.commit_found_rolled_back",
        "a prepared branch the server discarded: xa_commit says XA_HEURRB/XA_RB*, never XA_OK",
        {C::two_phase, C::recovery}, S, commit_found_rolled_back);
    add("tx.commit_other_connection", "prepare on A, tpc_commit(xid) on B", {C::two_phase}, S,
        commit_other_connection);
    add("tx.rollback_other_connection", "prepare on A, tpc_rollback(xid) on B", {C::two_phase}, S,
        rollback_other_connection);
    add("durability.disconnect", "a prepared branch survives its connection's close",
        {C::two_phase}, S, durability_disconnect);
    add("durability.restart", "a prepared branch survives a server restart (--allow-restart)",
        {C::two_phase, C::recovery}, S, durability_restart);
    add("isolation.locks_held", "a prepared branch keeps its row locks until commit",
        {C::two_phase}, S, isolation_locks);
    add("recovery.c_switch",
        "xa_recover lists branches prepared elsewhere; xa_commit/xa_rollback them",
        {C::two_phase, C::recovery}, S, recovery_c_switch);
    add("recovery.other_thread", "recover a branch prepared on another thread",
        {C::two_phase, C::recovery}, S, recovery_other_thread);
    add("recovery.other_process", "recover a branch prepared by a process that exited",
        {C::two_phase, C::recovery}, S, recovery_other_process);
    add("recovery.paging",
        "xa_recover pages of 3 over 7+ branches: no loss, no repetition (SQL optional)",
        {C::two_phase, C::recovery}, layer::c_switch, recovery_paging);
    add("recovery.many_branches",
        "40 prepared branches listed once each and finished (SQL optional)",
        {C::two_phase, C::recovery}, layer::c_switch, recovery_many);
    add("xid.byte_roundtrip", "every byte 0..255 in gtrid/bqual through prepare and xa_recover",
        {C::two_phase, C::recovery}, S, byte_roundtrip);
    add("xid.edges", "64-byte gtrid/bqual, empty bqual, NUL bqual round trip",
        {C::two_phase, C::recovery}, S, xid_edges);
    add("join.sql", "work before and after TMJOIN commits together", {C::join}, S, join_sql);
    add("suspend.sql", "work before and after TMSUSPEND/TMRESUME commits together",
        {C::suspend_resume}, S, suspend_sql);
    add("concurrency.threads_sql", "4 threads x 5 branches with work, each its own connection", {},
        S, threads_sql);
    add("input.sql_error_in_branch",
        "an SQL error in a branch: SQLSTATE, rollback, connection reusable", {}, S,
        sql_error_in_branch);
    add("pep249.tpc_begin_twice", "tpc_begin twice -> ProgrammingError", {}, P, pep_begin_twice);
    add("pep249.commit_inside_tpc", "commit()/rollback() inside tpc -> ProgrammingError", {}, S,
        pep_commit_inside);
    add("pep249.calls_outside_tpc",
        "tpc_prepare/commit/rollback without tpc_begin -> ProgrammingError", {}, P,
        pep_calls_outside);
    add("pep249.tpc_commit_one_phase", "tpc_commit() without tpc_prepare() is a one-phase commit",
        {C::one_phase}, S, pep_one_phase);
    add("pep249.tpc_two_phase", "tpc_prepare + tpc_commit; no statements after prepare",
        {C::two_phase}, S, pep_two_phase);
    add("pep249.tpc_rollback_prepared", "tpc_prepare + tpc_rollback", {C::two_phase}, S,
        pep_rollback_prepared);
    add("pep249.recover_after_reconnect", "tpc_recover lists a prepared xid after reconnecting",
        {C::two_phase, C::recovery}, S, pep_recover_after_reconnect);
    add("pep249.unusual_xid", "format id 2^31-1, quotes/backslashes/high bytes in gtrid and bqual",
        {C::two_phase, C::recovery}, S, pep_unusual_xid);
    add("pep249.foreign_gid", "a transaction prepared with plain SQL is listed and committable",
        {C::two_phase, C::recovery}, S, pep_foreign_gid);
    add("pep249.begin_after_local_work", "tpc_begin with a local transaction pending is refused",
        {}, S, pep_begin_after_local);
    add("pep249.local_after_tpc", "local commit() works after a two-phase transaction", {}, S,
        pep_local_after_tpc);
    add("pep249.close_rolls_back", "closing with an unprepared branch rolls it back", {}, S,
        pep_close_rolls_back);
    add("pep249.xid_validation", "xid(): format id and lengths validated", {}, P,
        pep_xid_validation);
    add("caps.declaration", "every capability declared once, each missing one with a reason", {}, P,
        caps_declared);
}

}  // namespace xarm::conformance
