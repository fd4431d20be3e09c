// Cases on the C switch alone: the XA state tables, flags, XID validation, open/close,
// thread association. They need no SQL, so they run against any switch library.
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "cases.hpp"
#include "isolation.hpp"

namespace xarm::conformance {

namespace {

XID fresh(context& ctx, const std::string& bqual = "b") {
    return context::to_c(ctx.new_xid(bqual));
}

void calls_before_open(context& ctx) {
    rm r(ctx, false);
    XID x = fresh(ctx);
    expect_rc(r, r.start(&x), XAER_PROTO, "xa_start before xa_open");
    expect_rc(r, r.end(&x), XAER_PROTO, "xa_end before xa_open");
    expect_rc(r, r.prepare(&x), XAER_PROTO, "xa_prepare before xa_open");
    expect_rc(r, r.commit(&x), XAER_PROTO, "xa_commit before xa_open");
    expect_rc(r, r.rollback(&x), XAER_PROTO, "xa_rollback before xa_open");
    XID out[4];
    expect_rc(r, r.recover(out, 4, TMSTARTRSCAN | TMENDRSCAN), XAER_PROTO,
              "xa_recover before xa_open");
    expect_rc(r, r.forget(&x), XAER_PROTO, "xa_forget before xa_open");
}

void open_close_idempotent(context& ctx) {
    rm r(ctx);
    expect_rc(r, r.open(ctx.tgt().info.c_str()), XA_OK, "second xa_open of an open rmid");
    expect_rc(r, r.close(), XA_OK, "xa_close");
    expect_rc(r, r.close(), XA_OK, "xa_close of a closed rmid");
    expect_rc(r, r.open(ctx.tgt().info.c_str()), XA_OK, "xa_open after xa_close");
    XID x = fresh(ctx);
    expect_rc(r, r.start(&x), XA_OK, "xa_start after reopening");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
}

void start_twice(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx), y = fresh(ctx);
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    expect_rc(r, r.start(&x), XAER_PROTO, "xa_start of the associated branch again");
    expect_rc(r, r.start(&y), XAER_PROTO, "xa_start of another branch while associated");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
}

void duplicate_xid(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.start(&x), XAER_DUPID, "xa_start (no TMJOIN) of an existing branch");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
}

void end_unknown(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.end(&x), XAER_NOTA, "xa_end of an unknown xid");
}

void end_without_association(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.end(&x), XAER_PROTO, "xa_end of a branch no longer associated");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
}

void prepare_active(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    expect_rc(r, r.prepare(&x), XAER_PROTO, "xa_prepare of an active branch");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
}

void prepare_unknown(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.prepare(&x), XAER_NOTA, "xa_prepare of an unknown xid");
}

void rollback_active(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    expect_rc(r, r.rollback(&x), XAER_PROTO, "xa_rollback of an active branch");
    expect_rc(r, r.commit(&x, TMONEPHASE), XAER_PROTO, "xa_commit(TMONEPHASE) of an active branch");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
}

void commit_idle_unprepared(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.commit(&x, TMNOFLAGS), XAER_PROTO,
              "xa_commit without TMONEPHASE of an idle, unprepared branch");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback (the branch must still exist)");
}

void commit_onephase_unknown(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.commit(&x, TMONEPHASE), XAER_NOTA, "xa_commit(TMONEPHASE) of an unknown xid");
}

void commit_rollback_unknown(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.commit(&x, TMNOFLAGS), XAER_NOTA, "xa_commit of a never-prepared xid");
    expect_rc(r, r.rollback(&x, TMNOFLAGS), XAER_NOTA, "xa_rollback of a never-prepared xid");
}

void close_while_associated(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    expect_rc(r, r.close(), XAER_PROTO, "xa_close while associated");
    expect_rc(r, r.end(&x), XA_OK, "xa_end (the rm must still be open)");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
    expect_rc(r, r.close(), XA_OK, "xa_close");
}

void invalid_flags(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    const long bogus = 0x00100000L;  // no XA flag has this value
    expect_rc(r, r.start(&x, TMSUCCESS), XAER_INVAL, "xa_start(TMSUCCESS)");
    expect_rc(r, r.start(&x, bogus), XAER_INVAL, "xa_start(undefined flag)");
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    expect_rc(r, r.end(&x, TMJOIN), XAER_INVAL, "xa_end(TMJOIN)");
    expect_rc(r, r.end(&x, TMNOFLAGS), XAER_INVAL, "xa_end(TMNOFLAGS)");
    expect_rc(r, r.end(&x, TMSUCCESS | TMFAIL), XAER_INVAL, "xa_end(TMSUCCESS|TMFAIL)");
    expect_rc(r, r.end(&x, TMSUCCESS | TMMIGRATE), XAER_INVAL, "xa_end(TMSUCCESS|TMMIGRATE)");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.prepare(&x, TMONEPHASE), XAER_INVAL, "xa_prepare(TMONEPHASE)");
    expect_rc(r, r.commit(&x, TMJOIN), XAER_INVAL, "xa_commit(TMJOIN)");
    expect_rc(r, r.rollback(&x, TMONEPHASE), XAER_INVAL, "xa_rollback(TMONEPHASE)");
    expect_rc(r, r.forget(&x, TMONEPHASE), XAER_INVAL, "xa_forget(TMONEPHASE)");
    XID out[2];
    expect_rc(r, r.recover(out, 2, TMJOIN), XAER_INVAL, "xa_recover(TMJOIN)");
    int h = 0, v = 0;
    expect_rc(r, r.complete(&h, &v, TMJOIN), XAER_INVAL, "xa_complete(TMJOIN)");
    expect_rc(r, r.close(TMJOIN), XAER_INVAL, "xa_close(TMJOIN)");
    rm other(ctx, false);
    expect_rc(other, other.open(ctx.tgt().info.c_str(), TMJOIN), XAER_INVAL, "xa_open(TMJOIN)");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback (the branch must be intact)");
}

void join_resume_together(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.start(&x, TMJOIN | TMRESUME), XAER_INVAL, "xa_start(TMJOIN|TMRESUME)");
}

void tmfail_rollback_only(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    const int rc = r.end(&x, TMFAIL);
    check(rc >= XA_RBBASE && rc <= XA_RBEND,
          fmt::format("xa_end(TMFAIL) returned {}, expected an XA_RB* code", code_text(rc)));
    const int pc = r.prepare(&x);
    check(pc >= XA_RBBASE && pc <= XA_RBEND,
          fmt::format("xa_prepare of a rollback-only branch returned {}, expected XA_RB*",
                      code_text(pc)));
}

void tmfail_then_rollback(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    const int rc = r.end(&x, TMFAIL);
    check(rc >= XA_RBBASE && rc <= XA_RBEND,
          fmt::format("xa_end(TMFAIL) returned {}, expected an XA_RB* code", code_text(rc)));
    const int c1 = r.commit(&x, TMONEPHASE);
    check(c1 >= XA_RBBASE && c1 <= XA_RBEND,
          fmt::format("xa_commit(TMONEPHASE) of a rollback-only branch returned {}, expected "
                      "XA_RB*",
                      code_text(c1)));
    // The branch is gone: the same xid can begin again.
    expect_rc(r, r.start(&x), XA_OK, "xa_start of the rolled-back xid");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
}

void recover_without_start(context& ctx) {
    rm r(ctx);
    XID out[4];
    expect_rc(r, r.recover(out, 4, TMNOFLAGS), XAER_PROTO, "xa_recover without TMSTARTRSCAN");
    const int n = r.recover(out, 4, TMSTARTRSCAN);
    check(n >= 0, fmt::format("xa_recover(TMSTARTRSCAN) returned {}, expected a count{}",
                              code_text(n), r.with_diag(n)));
    const int last = r.recover(out, 4, TMENDRSCAN);
    check(last >= 0 && last <= 4,
          fmt::format("xa_recover(TMENDRSCAN, count 4) returned {}, expected 0 to 4 XIDs{}",
                      last < 0 ? code_text(last) : std::to_string(last), r.with_diag(last)));
    expect_rc(r, r.recover(out, -1, TMSTARTRSCAN | TMENDRSCAN), XAER_INVAL, "xa_recover(count -1)");
    expect_rc(r, r.recover(nullptr, 4, TMSTARTRSCAN | TMENDRSCAN), XAER_INVAL,
              "xa_recover(NULL, 4)");
}

void forget_non_heuristic(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.forget(&x), XAER_NOTA, "xa_forget of an unknown branch");
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc_in(r, r.forget(&x), {XAER_NOTA, XAER_PROTO}, "xa_forget of an idle branch");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
}

void complete_without_async(context& ctx) {
    rm r(ctx);
    int h = 1, v = 0;
    expect_rc(r, r.complete(&h, &v, TMNOFLAGS), XAER_PROTO, "xa_complete with nothing outstanding");
}

void xid_null_xid(context& ctx) {
    rm r(ctx);
    XID x{};
    x.formatID = -1;
    x.gtrid_length = 4;
    std::memcpy(x.data, "abcd", 4);
    expect_rc(r, r.start(&x), XAER_INVAL, "xa_start of the null XID (formatID -1)");
}

void xid_bad_lengths(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    XID bad = x;
    bad.gtrid_length = 0;
    expect_rc(r, r.start(&bad), XAER_INVAL, "xa_start(gtrid_length 0)");
    bad = x;
    bad.gtrid_length = 65;
    bad.bqual_length = 0;
    expect_rc(r, r.start(&bad), XAER_INVAL, "xa_start(gtrid_length 65)");
    bad = x;
    bad.gtrid_length = 1;
    bad.bqual_length = 65;
    expect_rc(r, r.start(&bad), XAER_INVAL, "xa_start(bqual_length 65)");
    bad = x;
    bad.bqual_length = -1;
    expect_rc(r, r.start(&bad), XAER_INVAL, "xa_start(bqual_length -1)");
    bad = x;
    bad.gtrid_length = -5;
    expect_rc(r, r.commit(&bad, TMONEPHASE), XAER_INVAL, "xa_commit(gtrid_length -5)");
    expect_rc(r, r.start(&x), XA_OK, "xa_start of a valid xid afterwards");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
}

void xid_null_pointer(context& ctx) {
    rm r(ctx);
    expect_rc(r, r.start(nullptr), XAER_INVAL, "xa_start(NULL)");
    expect_rc(r, r.end(nullptr), XAER_INVAL, "xa_end(NULL)");
    expect_rc(r, r.prepare(nullptr), XAER_INVAL, "xa_prepare(NULL)");
    expect_rc(r, r.commit(nullptr), XAER_INVAL, "xa_commit(NULL)");
    expect_rc(r, r.rollback(nullptr), XAER_INVAL, "xa_rollback(NULL)");
    expect_rc(r, r.forget(nullptr), XAER_INVAL, "xa_forget(NULL)");
    int v = 0;
    expect_rc(r, r.complete(nullptr, &v), XAER_INVAL, "xa_complete(NULL handle)");
}

void bqual_distinguishes(context& ctx) {
    // Same gtrid, different bquals: two branches, not a duplicate.
    rm r(ctx);
    xid a = ctx.new_xid("b1");
    xid b(a.format_id(), a.gtrid(), "b2");
    ctx.track(b);
    XID ca = context::to_c(a), cb = context::to_c(b);
    expect_rc(r, r.start(&ca), XA_OK, "xa_start(b1)");
    expect_rc(r, r.end(&ca), XA_OK, "xa_end(b1)");
    rm r2(ctx);
    expect_rc(r2, r2.start(&cb), XA_OK, "xa_start(b2) of the same gtrid on another rmid");
    expect_rc(r2, r2.end(&cb), XA_OK, "xa_end(b2)");
    expect_rc(r2, r2.rollback(&cb), XA_OK, "xa_rollback(b2)");
    expect_rc(r, r.rollback(&ca), XA_OK, "xa_rollback(b1)");
}

void join_c(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.start(&x, TMJOIN), XA_OK, "xa_start(TMJOIN) of the idle branch");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    XID y = fresh(ctx);
    expect_rc(r, r.start(&y, TMJOIN), XAER_NOTA, "xa_start(TMJOIN) of an unknown branch");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
}

void suspend_resume_c(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    expect_rc(r, r.end(&x, TMSUSPEND), XA_OK, "xa_end(TMSUSPEND)");
    expect_rc(r, r.end(&x, TMSUSPEND), XAER_PROTO, "xa_end(TMSUSPEND) of a suspended branch");
    expect_rc(r, r.rollback(&x), XAER_PROTO, "xa_rollback of a suspended branch");
    expect_rc(r, r.start(&x, TMRESUME), XA_OK, "xa_start(TMRESUME)");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.start(&x, TMRESUME), XAER_PROTO, "xa_start(TMRESUME) of an idle branch");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
}

void migrate_c(context& ctx) {
    XID x = fresh(ctx);
    auto r = std::make_unique<rm>(ctx);
    expect_rc(*r, r->start(&x), XA_OK, "xa_start");
    expect_rc(*r, r->end(&x, TMSUSPEND | TMMIGRATE), XA_OK, "xa_end(TMSUSPEND|TMMIGRATE)");
    std::string err;
    std::thread t([&] {
        try {
            rm r2(ctx);
            int rc = r2.start(&x, TMRESUME);
            if (rc != XA_OK)
                err = fmt::format(
                    "xa_start(TMRESUME) on another thread returned {}, expected XA_OK{}",
                    code_text(rc), r2.with_diag(rc));
            else if ((rc = r2.end(&x)) != XA_OK)
                err = fmt::format("xa_end of the migrated branch returned {}, expected XA_OK{}",
                                  code_text(rc), r2.with_diag(rc));
            else if ((rc = r2.rollback(&x)) != XA_OK)
                err = fmt::format(
                    "xa_rollback of the migrated branch returned {}, expected "
                    "XA_OK{}",
                    code_text(rc), r2.with_diag(rc));
        } catch (const std::exception& e) {
            err = e.what();
        }
    });
    t.join();
    check(err.empty(), err);
}

void interleave_c(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx), y = fresh(ctx);
    expect_rc(r, r.start(&x), XA_OK, "xa_start(x)");
    expect_rc(r, r.end(&x), XA_OK, "xa_end(x)");
    expect_rc(r, r.start(&y), XA_OK, "xa_start(y) while x is idle on the same rmid");
    expect_rc(r, r.end(&y), XA_OK, "xa_end(y)");
    expect_rc(r, r.rollback(&y), XA_OK, "xa_rollback(y)");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback(x)");
}

void async_c(context& ctx) {
    rm r(ctx);
    XID x = fresh(ctx);
    const int h = r.start(&x, TMASYNC);
    check(h > 0, fmt::format("xa_start(TMASYNC) returned {}, expected a handle > 0",
                             h == 0 ? std::string("XA_OK") : code_text(h)));
    int handle = h, ret = -99;
    expect_rc(r, r.complete(&handle, &ret, TMNOFLAGS), XA_OK, "xa_complete");
    check(ret == XA_OK,
          fmt::format("the asynchronous xa_start returned {}, expected XA_OK", code_text(ret)));
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
}

void threads_c(context& ctx) {
    constexpr int threads = 4, per = 10;
    std::vector<std::string> errs(threads);
    std::vector<std::thread> ts;
    ts.reserve(threads);
    for (int i = 0; i < threads; ++i)
        ts.emplace_back([&, i] {
            try {
                rm r(ctx);
                for (int k = 0; k < per; ++k) {
                    XID x = fresh(ctx);
                    int rc = r.start(&x);
                    if (rc == XA_OK) rc = r.end(&x);
                    if (rc == XA_OK) rc = r.rollback(&x);
                    if (rc != XA_OK) {
                        errs[static_cast<std::size_t>(i)] = fmt::format(
                            "thread {}: start/end/rollback returned {}, expected "
                            "XA_OK{}",
                            i, code_text(rc), r.with_diag(rc));
                        return;
                    }
                }
            } catch (const std::exception& e) {
                errs[static_cast<std::size_t>(i)] = e.what();
            }
        });
    for (auto& t : ts) t.join();
    for (const auto& e : errs) check(e.empty(), e);
}

void rmid_per_thread(context& ctx) {
    // The XA thread-of-control model: an rmid opened on one thread is not open on another.
    using isolation::call;
    using isolation::call_mark;
    rm r(ctx);
    XID x = fresh(ctx);
    int rc = 0;
    std::thread t([&] {
        call_mark m(call::xa_start, r.id());
        rc = ctx.tgt().sw->xa_start_entry(&x, r.id(), TMNOFLAGS);
    });
    t.join();
    if (rc == XA_OK) {
        std::thread u([&] {
            {
                call_mark m(call::xa_end, r.id());
                ctx.tgt().sw->xa_end_entry(&x, r.id(), TMSUCCESS);
            }
            call_mark m(call::xa_rollback, r.id());
            ctx.tgt().sw->xa_rollback_entry(&x, r.id(), TMNOFLAGS);
        });
        u.join();
    }
    expect_rc(r, rc, XAER_PROTO, "xa_start on a thread that did not xa_open the rmid");
}

void bad_open_string(context& ctx) {
    const std::string secret = "XarmS3cretPw";
    std::string bad;
    // The driver knows its info string's syntax; a third party's switch is given one in
    // the key=value form most switches take.
    const auto& t = ctx.tgt();
    bad = t.drv ? t.drv->unusable_info(t.info, secret)
                : t.info + " xarm_no_such_key=1 password=" + secret;
    {
        rm r(ctx, false);
        const int rc = r.open(bad.c_str());
        expect_rc_in(r, rc, {XAER_INVAL, XAER_RMERR}, "xa_open with a bad open string");
        if (auto dg = r.diag()) {
            check(std::strlen(dg->message) > 0, "xa_open failed without a message");
            check(std::string(dg->message).find(secret) == std::string::npos,
                  fmt::format("the password appears in xarm_last_error: {}", dg->message));
        }
        // The rmid is still openable with a good string.
        expect_rc(r, r.open(ctx.tgt().info.c_str()), XA_OK, "xa_open of the same rmid afterwards");
        XID x = fresh(ctx);
        expect_rc(r, r.start(&x), XA_OK, "xa_start after the failed open");
        expect_rc(r, r.end(&x), XA_OK, "xa_end");
        expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
    }
    rm n(ctx, false);
    expect_rc_in(n, n.open(nullptr), {XAER_INVAL, XAER_RMERR, XA_OK}, "xa_open(NULL)");
}

void last_error_reports(context& ctx) {
    if (ctx.tgt().last_error == nullptr)
        throw not_applicable("the library exports no xarm_last_error");
    rm r(ctx);
    XID x = fresh(ctx);
    expect_rc(r, r.end(&x), XAER_NOTA, "xa_end of an unknown xid");
    auto d = r.diag();
    check(d.has_value(), "xarm_last_error reports nothing after a failed call");
    check(
        d->xa_code == XAER_NOTA,
        fmt::format("xarm_last_error says {}, the call returned XAER_NOTA", code_text(d->xa_code)));
    check(std::strlen(d->sqlstate) == 5, "SQLSTATE is not five characters");
    expect_rc(r, r.start(&x), XA_OK, "xa_start");
    check(!r.diag().has_value(), "xarm_last_error still reports a failure after a successful call");
    expect_rc(r, r.end(&x), XA_OK, "xa_end");
    expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
}

}  // namespace

void add_state_cases(std::vector<case_def>& v) {
    using C = capability;
    auto add = [&](const char* id, const char* title, std::optional<C> c, void (*f)(context&)) {
        std::vector<C> needs;
        if (c) needs.push_back(*c);
        v.push_back({id, title, needs, layer::c_switch, f, {}});
    };
    add("state.calls_before_open", "every entry before xa_open -> XAER_PROTO", {},
        calls_before_open);
    add("state.open_close_idempotent", "xa_open/xa_close twice -> XA_OK; reopen works", {},
        open_close_idempotent);
    add("state.start_twice", "xa_start while associated -> XAER_PROTO", {}, start_twice);
    add("state.duplicate_xid", "xa_start of an existing xid -> XAER_DUPID", {}, duplicate_xid);
    add("state.end_unknown_xid", "xa_end of an unknown xid -> XAER_NOTA", {}, end_unknown);
    add("state.end_without_association", "xa_end without association -> XAER_PROTO", {},
        end_without_association);
    add("state.prepare_active", "xa_prepare of an active branch -> XAER_PROTO", {}, prepare_active);
    add("state.prepare_unknown", "xa_prepare of an unknown xid -> XAER_NOTA", {}, prepare_unknown);
    add("state.rollback_active", "xa_rollback/xa_commit of an active branch -> XAER_PROTO", {},
        rollback_active);
    add("state.commit_idle_unprepared",
        "xa_commit without TMONEPHASE of an unprepared branch -> XAER_PROTO", {},
        commit_idle_unprepared);
    add("state.commit_onephase_unknown", "xa_commit(TMONEPHASE) of an unknown xid -> XAER_NOTA",
        C::one_phase, commit_onephase_unknown);
    add("state.commit_rollback_unknown",
        "xa_commit/xa_rollback of a never-prepared xid -> XAER_NOTA", {}, commit_rollback_unknown);
    add("state.close_while_associated", "xa_close while associated -> XAER_PROTO", {},
        close_while_associated);
    add("state.invalid_flags", "invalid flags on every entry -> XAER_INVAL", {}, invalid_flags);
    add("state.join_resume_together", "xa_start(TMJOIN|TMRESUME) -> XAER_INVAL", {},
        join_resume_together);
    add("state.tmfail_rollback_only", "xa_end(TMFAIL) -> XA_RB*, then xa_prepare -> XA_RB*", {},
        tmfail_rollback_only);
    add("state.tmfail_onephase",
        "rollback-only branch: xa_commit(TMONEPHASE) -> XA_RB*, xid reusable", C::one_phase,
        tmfail_then_rollback);
    add("state.recover_without_startrscan",
        "xa_recover without TMSTARTRSCAN -> XAER_PROTO; bad args -> XAER_INVAL", C::recovery,
        recover_without_start);
    add("state.forget_non_heuristic", "xa_forget of a non-heuristic branch -> XAER_NOTA", {},
        forget_non_heuristic);
    add("state.complete_without_async", "xa_complete with nothing outstanding -> XAER_PROTO", {},
        complete_without_async);
    add("state.rmid_per_thread",
        "an rmid opened on one thread is not open on another -> XAER_PROTO", {}, rmid_per_thread);
    add("state.last_error", "xarm_last_error reports the failing call and clears on success", {},
        last_error_reports);
    add("xid.null_xid", "the null XID (formatID -1) -> XAER_INVAL", {}, xid_null_xid);
    add("xid.bad_lengths", "gtrid_length 0/65/-5, bqual_length 65/-1 -> XAER_INVAL", {},
        xid_bad_lengths);
    add("xid.null_pointer", "NULL XID pointer on every entry -> XAER_INVAL", {}, xid_null_pointer);
    add("xid.bqual_distinguishes", "same gtrid, two bquals: two branches", {}, bqual_distinguishes);
    add("join.c_switch", "xa_start(TMJOIN) of an idle branch; unknown -> XAER_NOTA", C::join,
        join_c);
    add("suspend.c_switch", "TMSUSPEND / TMRESUME state rules", C::suspend_resume,
        suspend_resume_c);
    add("suspend.migrate", "TMSUSPEND|TMMIGRATE, resumed on another thread", C::migrate, migrate_c);
    add("state.interleave", "a second branch while another is idle on the rmid", C::interleave,
        interleave_c);
    add("state.async", "TMASYNC and xa_complete", C::async, async_c);
    add("concurrency.threads_c_switch", "4 threads x 10 branches through the switch", {},
        threads_c);
    add("input.bad_open_string",
        "bad open string -> XAER_INVAL/RMERR, message, no password; rmid reusable", {},
        bad_open_string);
}

}  // namespace xarm::conformance
