// PEP 249's two-phase API as python-oracledb extends it, on the C++ connection: tpc_begin's
// flags (join, resume, promote) and timeout, tpc_end (normal, suspend), tpc_commit and
// tpc_rollback by xid of the connection's own branch, tpc_forget, and the misuse of each.
#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>

#include <fmt/format.h>

#include "cases.hpp"

namespace xarm::conformance {

namespace {

using C = capability;
using namespace std::chrono_literals;

/// Finishes the connection's branch: two-phase when claimed, else one-phase.
void finish(context& ctx, connection& c) {
    if (ctx.claims(C::two_phase)) {
        check(c.tpc_prepare() == vote::ok, "tpc_prepare of a branch that wrote voted read-only");
    }
    c.tpc_commit();
    check(c.current().is_null(), "the connection still reports a branch after tpc_commit()");
}

void tpc_end_normal(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto x = ctx.new_xid();
    c.tpc_begin(x);
    ctx.insert(c, t, 1);
    c.tpc_end();  // the current branch
    check(c.ended() && c.current() == x, "after tpc_end() the branch is not reported ended");
    expect_throw<programming_error>([&] { c.execute("SELECT 1"); }, "a statement after tpc_end()");
    expect_throw<programming_error>([&] { c.tpc_end(); }, "tpc_end() twice");
    expect_throw<programming_error>([&] { c.tpc_begin(ctx.new_xid()); },
                                    "tpc_begin of a new branch while one is ended");
    check(ctx.count(t) == 0, "an ended branch's row is visible");
    finish(ctx, c);  // tpc_prepare/tpc_commit take the ended branch as it is
    check(ctx.count(t) == 1, "the ended branch's row is not visible after the commit");
    // tpc_end with the xid named, then a rollback.
    auto y = ctx.new_xid("named");
    c.tpc_begin(y);
    ctx.insert(c, t, 2);
    c.tpc_end(y, tpc_end_flag::normal);
    c.tpc_rollback();
    check(ctx.count(t) == 1, "the row of a branch rolled back after tpc_end(xid) is visible");
}

void tpc_end_misuse(context& ctx) {
    auto c = ctx.connect();
    auto x = ctx.new_xid();
    expect_throw<programming_error>([&] { c.tpc_end(); }, "tpc_end() without a branch");
    expect_throw<programming_error>([&] { c.tpc_end(x); }, "tpc_end(xid) without a branch");
    c.tpc_begin(x);
    expect_throw<programming_error>([&] { c.tpc_end(ctx.new_xid("other")); },
                                    "tpc_end of an xid that is not the connection's branch");
    expect_throw<programming_error>([&] { c.tpc_end(x, static_cast<tpc_end_flag>(7)); },
                                    "tpc_end with a flag outside tpc_end_flag");
    check(!c.ended(), "a refused tpc_end ended the branch");
    c.tpc_end(x);
    if (ctx.claims(C::suspend_resume))
        expect_throw<programming_error>([&] { c.tpc_end(x, tpc_end_flag::suspend); },
                                        "tpc_end(suspend) of an ended branch");
    c.tpc_rollback();
    check(c.current().is_null(), "tpc_rollback left a branch in progress");
}

void tpc_begin_misuse(context& ctx) {
    auto c = ctx.connect();
    auto x = ctx.new_xid();
    expect_throw<programming_error>([&] { c.tpc_begin(x, static_cast<tpc_begin_flag>(9)); },
                                    "tpc_begin with a flag outside tpc_begin_flag");
    expect_throw<programming_error>([&] { c.tpc_begin(x, tpc_begin_flag::fresh, -1s); },
                                    "tpc_begin with a negative timeout");
    expect_throw<programming_error>([&] { c.tpc_begin(x, tpc_begin_flag::join, 5s); },
                                    "tpc_begin(join) with a timeout");
    expect_throw<programming_error>([&] { c.tpc_begin(x, tpc_begin_flag::resume, 5s); },
                                    "tpc_begin(resume) with a timeout");
    expect_throw<programming_error>([&] { c.tpc_begin(xid{}); }, "tpc_begin of a null xid");
    check(c.current().is_null(), "a refused tpc_begin left a branch in progress");
    c.tpc_begin(x);
    c.tpc_rollback();
}

void tpc_begin_join(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto x = ctx.new_xid();
    expect_throw<programming_error>([&] { c.tpc_begin(x, tpc_begin_flag::join); },
                                    "tpc_begin(join) without a branch ended here");
    c.tpc_begin(x);
    ctx.insert(c, t, 1);
    expect_throw<programming_error>([&] { c.tpc_begin(x, tpc_begin_flag::join); },
                                    "tpc_begin(join) of the active branch");
    c.tpc_end(x);
    expect_throw<programming_error>(
        [&] { c.tpc_begin(ctx.new_xid("other"), tpc_begin_flag::join); },
        "tpc_begin(join) of an xid other than the ended branch");
    if (ctx.claims(C::suspend_resume))
        expect_throw<programming_error>([&] { c.tpc_begin(x, tpc_begin_flag::resume); },
                                        "tpc_begin(resume) of a branch ended, not suspended");
    c.tpc_begin(x, tpc_begin_flag::join);
    check(!c.ended() && c.current() == x, "after tpc_begin(join) the branch is not active");
    ctx.insert(c, t, 2);
    check(ctx.count(t) == 0, "a joined branch's rows are visible before the commit");
    finish(ctx, c);
    check(ctx.count(t) == 2, "the work before and after tpc_begin(join) did not both commit");
}

void tpc_begin_resume(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto x = ctx.new_xid();
    expect_throw<programming_error>([&] { c.tpc_begin(x, tpc_begin_flag::resume); },
                                    "tpc_begin(resume) without a suspended branch");
    c.tpc_begin(x);
    ctx.insert(c, t, 1);
    c.tpc_end(x, tpc_end_flag::suspend);
    check(c.ended() && c.current() == x, "after tpc_end(suspend) the branch is not suspended");
    expect_throw<programming_error>([&] { c.execute("SELECT 1"); },
                                    "a statement while the branch is suspended");
    if (ctx.claims(C::join))
        expect_throw<programming_error>([&] { c.tpc_begin(x, tpc_begin_flag::join); },
                                        "tpc_begin(join) of a suspended branch");
    expect_throw<programming_error>(
        [&] { c.tpc_begin(ctx.new_xid("other"), tpc_begin_flag::resume); },
        "tpc_begin(resume) of an xid other than the suspended branch");
    c.tpc_begin(x, tpc_begin_flag::resume);
    ctx.insert(c, t, 2);
    check(ctx.count(t) == 0, "a resumed branch's rows are visible before the commit");
    finish(ctx, c);
    check(ctx.count(t) == 2, "the work before and after the suspension did not both commit");
    // A suspended branch is finished as it is: rolled back here.
    c.tpc_begin(ctx.new_xid("rb"));
    ctx.insert(c, t, 3);
    c.tpc_end({}, tpc_end_flag::suspend);
    c.tpc_rollback();
    check(ctx.count(t) == 2, "the row of a suspended branch rolled back is visible");
    // And prepared or committed as it is.
    c.tpc_begin(ctx.new_xid("commit"));
    ctx.insert(c, t, 4);
    c.tpc_end({}, tpc_end_flag::suspend);
    finish(ctx, c);
    check(ctx.count(t) == 3, "the row of a suspended branch committed as it is is not visible");
}

void tpc_begin_promote(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    expect_throw<not_supported_error>([&] { c.tpc_begin(ctx.new_xid(), tpc_begin_flag::promote); },
                                      "tpc_begin(promote) without local work");
    ctx.insert(c, t, 1);  // local work: the transaction promote would have taken over
    expect_throw<not_supported_error>([&] { c.tpc_begin(ctx.new_xid(), tpc_begin_flag::promote); },
                                      "tpc_begin(promote) with local work pending");
    check(c.current().is_null(), "a refused promote left a branch in progress");
    c.commit();
    check(ctx.count(t) == 1, "the local work did not commit after the refused promote");
}

/// A call the server's timeout must have ended: operational_error (the session is gone)
/// or rollback_error; anything else, or success, fails.
void expect_timed_out(const std::function<void()>& f, const char* what) {
    try {
        f();
    } catch (const operational_error&) {
        return;
    } catch (const rollback_error&) {
        return;
    } catch (const xarm::error& e) {
        fail(fmt::format("{}: expected operational_error or rollback_error, got {} ({}): {}", what,
                         code_text(e.xa_code()), e.sqlstate(), e.what()));
    }
    fail(fmt::format("{}: succeeded, but the branch's timeout had passed", what));
}

void tpc_begin_timeout(context& ctx) {
    if (ctx.via_switch())
        throw not_applicable("a switch's xa_start takes no timeout (tpc_begin's is the C++ API's)");
    auto t = ctx.new_table();
    // Busy: statements closer together than the timeout keep the branch.
    {
        auto c = ctx.connect();
        c.tpc_begin(ctx.new_xid("busy"), tpc_begin_flag::fresh, 1s);
        for (int i = 1; i <= 6; ++i) {
            ctx.insert(c, t, i);
            std::this_thread::sleep_for(300ms);
        }
        finish(ctx, c);
        check(ctx.count(t) == 6, "a branch busy for longer than its timeout did not commit");
    }
    // Prepared: a prepared branch is not timed.
    if (ctx.claims(C::two_phase)) {
        auto c = ctx.connect();
        c.tpc_begin(ctx.new_xid("prepared"), tpc_begin_flag::fresh, 1s);
        ctx.insert(c, t, 10);
        c.tpc_prepare();
        std::this_thread::sleep_for(2500ms);
        c.tpc_commit();
        check(ctx.count(t) == 7, "a branch prepared before its timeout did not commit");
    }
    // Idle: the server ends it.
    {
        auto c = ctx.connect();
        auto x = ctx.new_xid("idle");
        c.tpc_begin(x, tpc_begin_flag::fresh, 1s);
        ctx.insert(c, t, 20);
        std::this_thread::sleep_for(3s);
        expect_timed_out([&] { c.tpc_commit(); }, "tpc_commit() of a branch idle past its timeout");
        check(ctx.count(t) == (ctx.claims(C::two_phase) ? 7 : 6),
              "the row of a branch idle past its timeout is visible");
        // Its lock is gone: the same key can be written.
        auto d = ctx.connect();
        ctx.insert(d, t, 20);
        d.commit();
    }
    // Suspended counts as inactive.
    if (ctx.claims(C::suspend_resume)) {
        auto c = ctx.connect();
        auto x = ctx.new_xid("suspended");
        c.tpc_begin(x, tpc_begin_flag::fresh, 1s);
        ctx.insert(c, t, 30);
        c.tpc_end(x, tpc_end_flag::suspend);
        std::this_thread::sleep_for(3s);
        expect_timed_out(
            [&] {
                c.tpc_begin(x, tpc_begin_flag::resume);
                ctx.insert(c, t, 31);
                c.tpc_commit();
            },
            "resuming and committing a branch suspended past its timeout");
        const long want = ctx.claims(C::two_phase) ? 8 : 7;
        check(ctx.count(t) == want, "the rows of a branch suspended past its timeout are visible");
    }
}

void tpc_commit_by_xid(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto x = ctx.new_xid();
    auto other = ctx.new_xid("other");
    c.tpc_begin(x);
    ctx.insert(c, t, 1);
    expect_throw<programming_error>([&] { c.tpc_commit(x, true); },
                                    "tpc_commit(xid, one_phase) of the active branch (not ended)");
    c.tpc_end(x);
    expect_throw<programming_error>([&] { c.tpc_commit(other, true); },
                                    "tpc_commit(xid, one_phase) of a branch not ended here");
    expect_throw<programming_error>([&] { c.tpc_commit(x); },
                                    "tpc_commit(xid) of the ended, unprepared branch");
    expect_throw<programming_error>([&] { c.tpc_commit(other); },
                                    "tpc_commit(xid) of another branch inside one");
    check(ctx.count(t) == 0, "a refused commit by xid made the row visible");
    c.tpc_commit(x, true);
    check(ctx.count(t) == 1, "tpc_commit(xid, one_phase): the row is not visible");
    check(c.current().is_null(), "the connection still reports a branch after tpc_commit(xid)");
    // Outside a branch, one_phase names no branch ended here.
    expect_throw<programming_error>([&] { c.tpc_commit(x, true); },
                                    "tpc_commit(xid, one_phase) with no branch on the connection");
    if (!ctx.claims(C::two_phase)) return;
    // The connection's own prepared branch, by xid.
    auto y = ctx.new_xid("prepared");
    c.tpc_begin(y);
    ctx.insert(c, t, 2);
    c.tpc_prepare();
    expect_throw<programming_error>([&] { c.tpc_commit(y, true); },
                                    "tpc_commit(xid, one_phase) of a prepared branch");
    c.tpc_commit(y);
    check(ctx.count(t) == 2, "tpc_commit(xid) of the connection's prepared branch: not visible");
    check(c.current().is_null(), "the connection still reports a branch after tpc_commit(xid)");
}

void tpc_rollback_by_xid(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto x = ctx.new_xid();
    c.tpc_begin(x);
    ctx.insert(c, t, 1);
    expect_throw<programming_error>([&] { c.tpc_rollback(ctx.new_xid("other")); },
                                    "tpc_rollback(xid) of another branch inside one");
    c.tpc_rollback(x);  // active
    check(c.current().is_null(), "tpc_rollback(xid) of the active branch left it in progress");
    auto y = ctx.new_xid("ended");
    c.tpc_begin(y);
    ctx.insert(c, t, 2);
    c.tpc_end();
    c.tpc_rollback(y);  // ended
    check(c.current().is_null(), "tpc_rollback(xid) of the ended branch left it in progress");
    if (ctx.claims(C::two_phase)) {
        auto z = ctx.new_xid("prepared");
        c.tpc_begin(z);
        ctx.insert(c, t, 3);
        c.tpc_prepare();
        c.tpc_rollback(z);  // prepared, this connection's
        check(c.current().is_null(), "tpc_rollback(xid) of the prepared branch left it");
        if (ctx.claims(C::recovery)) {
            const auto listed = c.tpc_recover();
            check(std::count(listed.begin(), listed.end(), z) == 0,
                  "a branch rolled back by xid is still listed");
        }
    }
    check(ctx.count(t) == 0, "rows of branches rolled back by xid are visible");
    c.tpc_begin(ctx.new_xid("after"));
    ctx.insert(c, t, 4);
    c.tpc_commit();
    check(ctx.count(t) == 1, "the connection cannot commit a branch after rollbacks by xid");
}

void tpc_forget_calls(context& ctx) {
    auto t = ctx.new_table();
    auto c = ctx.connect();
    auto x = ctx.new_xid();
    expect_throw<programming_error>([&] { c.tpc_forget(x); },
                                    "tpc_forget of a branch not heuristically completed");
    c.tpc_begin(x);
    expect_throw<programming_error>([&] { c.tpc_forget(ctx.new_xid("other")); },
                                    "tpc_forget inside a branch");
    // A heuristic outcome: the application ends the branch's transaction itself with
    // COMMIT. A database that refuses that inside a branch leaves nothing to forget.
    ctx.insert(c, t, 1);
    try {
        c.execute("COMMIT");
    } catch (const failure&) {
        throw;
    } catch (const xarm::error& e) {
        c.tpc_rollback();
        ctx.note(fmt::format("COMMIT inside a branch is refused ({}): no heuristic outcome here",
                             e.sqlstate()));
        return;
    }
    try {
        c.tpc_commit();
        ctx.note("COMMIT inside a branch was taken as the branch's work; no heuristic outcome");
        return;
    } catch (const heuristic_error& e) {
        ctx.note(
            fmt::format("tpc_commit after the application's COMMIT: {}", code_text(e.xa_code())));
    } catch (const rollback_error& e) {
        ctx.note(fmt::format("tpc_commit after the application's COMMIT: {}; nothing to forget",
                             code_text(e.xa_code())));
        return;
    }
    check(c.current().is_null(), "a heuristic tpc_commit left the branch in progress");
    c.tpc_forget(x);
    expect_throw<programming_error>([&] { c.tpc_forget(x); }, "tpc_forget twice");
}

}  // namespace

void add_tpc_cases(std::vector<case_def>& v) {
    const auto S = layer::sql, P = layer::cpp;
    auto add = [&](const char* id, const char* title, std::vector<C> needs, layer l,
                   void (*f)(context&)) {
        v.push_back(case_def{id, title, std::move(needs), l, f, {}});
    };
    add("pep249.tpc_end",
        "tpc_end() ends the branch: no statements until joined; prepare/commit/rollback take it",
        {}, S, tpc_end_normal);
    add("pep249.tpc_end_misuse",
        "tpc_end without a branch, of another xid, twice, with a bad flag -> ProgrammingError", {},
        P, tpc_end_misuse);
    add("pep249.tpc_begin_misuse",
        "tpc_begin with a bad flag, a negative timeout, a timeout with join/resume, a null xid "
        "-> ProgrammingError",
        {}, P, tpc_begin_misuse);
    add("pep249.tpc_begin_join",
        "tpc_end + tpc_begin(xid, join): the work before and after commits together", {C::join}, S,
        tpc_begin_join);
    add("pep249.tpc_begin_resume",
        "tpc_end(suspend) + tpc_begin(xid, resume) commit together; a suspended branch "
        "finishes as it is",
        {C::suspend_resume}, S, tpc_begin_resume);
    add("pep249.tpc_begin_promote", "tpc_begin(xid, promote) -> NotSupportedError, local work kept",
        {}, S, tpc_begin_promote);
    add("pep249.tpc_begin_timeout",
        "tpc_begin(xid, timeout=1): a busy or prepared branch lives, an idle or suspended one is "
        "ended",
        {C::timeout}, S, tpc_begin_timeout);
    add("pep249.tpc_commit_xid",
        "tpc_commit(xid, one_phase) of the branch ended here; tpc_commit(xid) of its prepared "
        "branch; misuse -> ProgrammingError",
        {C::one_phase}, S, tpc_commit_by_xid);
    add("pep249.tpc_rollback_xid",
        "tpc_rollback(xid) of the connection's active, ended or prepared branch", {}, S,
        tpc_rollback_by_xid);
    add("pep249.tpc_forget",
        "tpc_forget: ProgrammingError unless heuristically completed here; forgets a heuristic "
        "outcome",
        {}, S, tpc_forget_calls);
}

}  // namespace xarm::conformance
