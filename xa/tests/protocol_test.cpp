// The chapter-6 state tables, driven through every (state, call) pair.
#include <boost/test/unit_test.hpp>

#include <fmt/format.h>

#include "test_driver.hpp"
#include "xarm/driver/protocol.hpp"

using namespace xarm;
using xarm::test::fake_driver;

namespace {

enum class st { s0, s1, s1_suspended, s2, s3, s4, s5 };
enum class verb {
    start,
    join,
    resume,
    end_success,
    end_fail,
    end_suspend,
    prepare,
    commit_1pc,
    commit_2pc,
    rollback,
    forget
};

const char* name(st s) {
    static const char* n[] = {"S0", "S1", "S1/T2 suspended", "S2", "S3", "S4", "S5"};
    return n[static_cast<int>(s)];
}
const char* name(verb v) {
    static const char* n[] = {
        "start",       "start(TMJOIN)",  "start(TMRESUME)", "end(TMSUCCESS)",
        "end(TMFAIL)", "end(TMSUSPEND)", "prepare",         "commit(TMONEPHASE)",
        "commit",      "rollback",       "forget"};
    return n[static_cast<int>(v)];
}

int run(rm_session& s, verb v, const xid& x) {
    try {
        switch (v) {
            case verb::start:
                return s.start(x, TMNOFLAGS);
            case verb::join:
                return s.start(x, TMJOIN);
            case verb::resume:
                return s.start(x, TMRESUME);
            case verb::end_success:
                return s.end(x, TMSUCCESS);
            case verb::end_fail:
                return s.end(x, TMFAIL);
            case verb::end_suspend:
                return s.end(x, TMSUSPEND);
            case verb::prepare:
                return s.prepare(x, TMNOFLAGS);
            case verb::commit_1pc:
                return s.commit(x, TMONEPHASE);
            case verb::commit_2pc:
                return s.commit(x, TMNOFLAGS);
            case verb::rollback:
                return s.rollback(x, TMNOFLAGS);
            case verb::forget:
                return s.forget(x, TMNOFLAGS);
        }
    } catch (const error& e) {
        return e.xa_code();
    }
    return 999;
}

// Brings branch x of session s into state t, checking each step succeeds.
void reach(rm_session& s, fake_driver& d, st t, const xid& x) {
    auto ok = [](int rc) { BOOST_REQUIRE(rc == XA_OK); };
    if (t == st::s0) return;
    ok(s.start(x, TMNOFLAGS));
    if (t == st::s1) return;
    if (t == st::s1_suspended) return ok(s.end(x, TMSUSPEND));
    if (t == st::s4) {
        BOOST_REQUIRE(run(s, verb::end_fail, x) == XA_RBROLLBACK);
        return;
    }
    ok(s.end(x, TMSUCCESS));
    if (t == st::s2) return;
    ok(s.prepare(x, TMNOFLAGS));
    if (t == st::s3) return;
    d.fault->heuristic_commit = true;
    BOOST_REQUIRE(run(s, verb::commit_2pc, x) == XA_HEURCOM);
    d.fault->heuristic_commit = false;
}

struct table_row {
    st state;
    verb call;
    int code;            // expected XA code
    branch_state after;  // expected state afterwards
};

constexpr int OK = XA_OK;
using bs = branch_state;

// The expected outcome of every call in every state, for the branch the call names
// (XA specification, tables 6-2 and 6-4; the codes of chapter 5 for illegal calls).
const table_row table[] = {
    // S0: the branch does not exist.
    {st::s0, verb::start, OK, bs::active},
    {st::s0, verb::join, XAER_NOTA, bs::nonexistent},
    {st::s0, verb::resume, XAER_NOTA, bs::nonexistent},
    {st::s0, verb::end_success, XAER_NOTA, bs::nonexistent},
    {st::s0, verb::end_fail, XAER_NOTA, bs::nonexistent},
    {st::s0, verb::end_suspend, XAER_NOTA, bs::nonexistent},
    {st::s0, verb::prepare, XAER_NOTA, bs::nonexistent},
    {st::s0, verb::commit_1pc, XAER_NOTA, bs::nonexistent},
    {st::s0, verb::commit_2pc, XAER_NOTA, bs::nonexistent},  // asked of the RM: unknown
    {st::s0, verb::rollback, XAER_NOTA, bs::nonexistent},
    {st::s0, verb::forget, XAER_NOTA, bs::nonexistent},
    // S1, associated with this thread (T1).
    {st::s1, verb::start, XAER_PROTO, bs::active},
    {st::s1, verb::join, XAER_PROTO, bs::active},
    {st::s1, verb::resume, XAER_PROTO, bs::active},
    {st::s1, verb::end_success, OK, bs::idle},
    {st::s1, verb::end_fail, XA_RBROLLBACK, bs::rollback_only},
    {st::s1, verb::end_suspend, OK, bs::active},
    {st::s1, verb::prepare, XAER_PROTO, bs::active},
    {st::s1, verb::commit_1pc, XAER_PROTO, bs::active},
    {st::s1, verb::commit_2pc, XAER_PROTO, bs::active},
    {st::s1, verb::rollback, XAER_PROTO, bs::active},
    {st::s1, verb::forget, XAER_NOTA, bs::active},
    // S1 with the association suspended (T2).
    {st::s1_suspended, verb::start, XAER_DUPID, bs::active},
    {st::s1_suspended, verb::join, XAER_PROTO, bs::active},
    {st::s1_suspended, verb::resume, OK, bs::active},
    {st::s1_suspended, verb::end_success, OK, bs::idle},
    {st::s1_suspended, verb::end_fail, XA_RBROLLBACK, bs::rollback_only},
    {st::s1_suspended, verb::end_suspend, XAER_PROTO, bs::active},
    {st::s1_suspended, verb::prepare, XAER_PROTO, bs::active},
    {st::s1_suspended, verb::commit_1pc, XAER_PROTO, bs::active},
    {st::s1_suspended, verb::commit_2pc, XAER_PROTO, bs::active},
    {st::s1_suspended, verb::rollback, XAER_PROTO, bs::active},
    {st::s1_suspended, verb::forget, XAER_NOTA, bs::active},
    // S2: idle (ended with TMSUCCESS).
    {st::s2, verb::start, XAER_DUPID, bs::idle},
    {st::s2, verb::join, OK, bs::active},
    {st::s2, verb::resume, XAER_PROTO, bs::idle},
    {st::s2, verb::end_success, XAER_PROTO, bs::idle},
    {st::s2, verb::end_fail, XAER_PROTO, bs::idle},
    {st::s2, verb::end_suspend, XAER_PROTO, bs::idle},
    {st::s2, verb::prepare, OK, bs::prepared},
    {st::s2, verb::commit_1pc, OK, bs::nonexistent},
    {st::s2, verb::commit_2pc, XAER_PROTO, bs::idle},
    {st::s2, verb::rollback, OK, bs::nonexistent},
    {st::s2, verb::forget, XAER_NOTA, bs::idle},
    // S3: prepared.
    {st::s3, verb::start, XAER_DUPID, bs::prepared},
    {st::s3, verb::join, XAER_PROTO, bs::prepared},
    {st::s3, verb::resume, XAER_PROTO, bs::prepared},
    {st::s3, verb::end_success, XAER_PROTO, bs::prepared},
    {st::s3, verb::end_fail, XAER_PROTO, bs::prepared},
    {st::s3, verb::end_suspend, XAER_PROTO, bs::prepared},
    {st::s3, verb::prepare, XAER_PROTO, bs::prepared},
    {st::s3, verb::commit_1pc, XAER_PROTO, bs::prepared},
    {st::s3, verb::commit_2pc, OK, bs::nonexistent},
    {st::s3, verb::rollback, OK, bs::nonexistent},
    {st::s3, verb::forget, XAER_NOTA, bs::prepared},
    // S4: rollback-only.
    {st::s4, verb::start, XAER_DUPID, bs::rollback_only},
    {st::s4, verb::join, XA_RBROLLBACK, bs::rollback_only},
    {st::s4, verb::resume, XAER_PROTO, bs::rollback_only},
    {st::s4, verb::end_success, XAER_PROTO, bs::rollback_only},
    {st::s4, verb::end_fail, XAER_PROTO, bs::rollback_only},
    {st::s4, verb::end_suspend, XAER_PROTO, bs::rollback_only},
    {st::s4, verb::prepare, XA_RBROLLBACK, bs::nonexistent},
    {st::s4, verb::commit_1pc, XA_RBROLLBACK, bs::nonexistent},
    {st::s4, verb::commit_2pc, XAER_PROTO, bs::rollback_only},
    {st::s4, verb::rollback, OK, bs::nonexistent},
    {st::s4, verb::forget, XAER_NOTA, bs::rollback_only},
    // S5: heuristically completed.
    {st::s5, verb::start, XAER_DUPID, bs::heuristic},
    {st::s5, verb::join, XAER_PROTO, bs::heuristic},
    {st::s5, verb::resume, XAER_PROTO, bs::heuristic},
    {st::s5, verb::end_success, XAER_PROTO, bs::heuristic},
    {st::s5, verb::end_fail, XAER_PROTO, bs::heuristic},
    {st::s5, verb::end_suspend, XAER_PROTO, bs::heuristic},
    {st::s5, verb::prepare, XAER_PROTO, bs::heuristic},
    {st::s5, verb::commit_1pc, XAER_PROTO, bs::heuristic},
    {st::s5, verb::commit_2pc, XAER_PROTO, bs::heuristic},
    {st::s5, verb::rollback, XAER_PROTO, bs::heuristic},
    {st::s5, verb::forget, OK, bs::nonexistent},
};

std::unique_ptr<rm_session> open(const std::shared_ptr<fake_driver>& d) {
    return open_session(d, "fake");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(protocol_tests)

BOOST_AUTO_TEST_CASE(state_table_every_state_and_call) {
    BOOST_TEST(std::size(table) == 7u * 11u);
    for (const table_row& r : table) {
        auto d = std::make_shared<fake_driver>();
        auto s = open(d);
        xid x(1, "branch", "q");
        reach(*s, *d, r.state, x);
        const std::string what = fmt::format("{} in {}", name(r.call), name(r.state));
        const int rc = run(*s, r.call, x);
        BOOST_TEST(rc == r.code,
                   what << ": got " << xa_code_name(rc) << ", want " << xa_code_name(r.code));
        BOOST_TEST((s->state_of(x) == r.after), what << ": left " << to_string(s->state_of(x))
                                                     << ", want " << to_string(r.after));
    }
}

BOOST_AUTO_TEST_CASE(association_is_per_thread_of_control) {
    auto d = std::make_shared<fake_driver>();
    auto s = open(d);
    xid a(1, "a", ""), b(1, "b", "");
    BOOST_TEST(s->start(a, TMNOFLAGS) == OK);
    BOOST_TEST(run(*s, verb::start, b) == XAER_PROTO);  // T1: one association at a time
    BOOST_TEST(s->end(a, TMSUSPEND) == OK);
    BOOST_TEST(s->start(b, TMNOFLAGS) == OK);  // T2 lets the thread work on another branch
    BOOST_TEST(run(*s, verb::resume, a) == XAER_PROTO);  // but not resume while associated
    BOOST_TEST(s->end(b, TMSUCCESS) == OK);
    BOOST_TEST(s->start(a, TMRESUME) == OK);
    BOOST_TEST(s->end(a, TMSUCCESS) == OK);
    BOOST_TEST(run(*s, verb::end_success, b) == XAER_PROTO);  // already ended
}

BOOST_AUTO_TEST_CASE(interleave_refused_when_declared_missing) {
    auto d = std::make_shared<fake_driver>();
    d->caps.no(capability::interleave, "one transaction per connection");
    auto s = open(d);
    xid a(1, "a", ""), b(1, "b", "");
    BOOST_TEST(s->start(a, TMNOFLAGS) == OK);
    BOOST_TEST(s->end(a, TMSUCCESS) == OK);
    try {
        s->start(b, TMNOFLAGS);
        BOOST_FAIL("interleaving accepted");
    } catch (const not_supported_error& e) {
        BOOST_TEST(e.xa_code() == XAER_RMERR);
        BOOST_TEST(e.sqlstate() == "0A000");
    }
    BOOST_TEST(s->prepare(a, TMNOFLAGS) == OK);  // a prepared branch frees the connection
    BOOST_TEST(s->start(b, TMNOFLAGS) == OK);
}

BOOST_AUTO_TEST_CASE(invalid_flags_on_every_verb) {
    auto d = std::make_shared<fake_driver>();
    auto s = open(d);
    xid x(1, "x", "");
    auto code = [&](auto f) {
        try {
            return f();
        } catch (const error& e) {
            return e.xa_code();
        }
    };
    BOOST_TEST(code([&] { return s->start(x, TMJOIN | TMRESUME); }) == XAER_INVAL);
    BOOST_TEST(code([&] { return s->start(x, TMSUCCESS); }) == XAER_INVAL);
    BOOST_TEST(code([&] { return s->start(x, TMONEPHASE); }) == XAER_INVAL);
    BOOST_TEST(s->start(x, TMNOFLAGS) == OK);
    BOOST_TEST(code([&] { return s->end(x, TMNOFLAGS); }) == XAER_INVAL);
    BOOST_TEST(code([&] { return s->end(x, TMSUCCESS | TMFAIL); }) == XAER_INVAL);
    BOOST_TEST(code([&] { return s->end(x, TMSUCCESS | TMMIGRATE); }) == XAER_INVAL);
    BOOST_TEST(code([&] { return s->end(x, TMSUCCESS | TMJOIN); }) == XAER_INVAL);
    BOOST_TEST(s->state_of(x) == bs::active);  // nothing changed
    BOOST_TEST(s->end(x, TMSUCCESS) == OK);
    BOOST_TEST(code([&] { return s->prepare(x, TMONEPHASE); }) == XAER_INVAL);
    BOOST_TEST(code([&] { return s->commit(x, TMSUCCESS); }) == XAER_INVAL);
    BOOST_TEST(code([&] { return s->rollback(x, TMONEPHASE); }) == XAER_INVAL);
    BOOST_TEST(code([&] { return s->forget(x, TMJOIN); }) == XAER_INVAL);
    BOOST_TEST(code([&] { return s->recover(nullptr, 0, TMJOIN); }) == XAER_INVAL);
    BOOST_TEST(s->state_of(x) == bs::idle);
    // TMASYNC is refused as not supported, with XAER_ASYNC, by every verb.
    try {
        s->prepare(x, TMASYNC);
        BOOST_FAIL("TMASYNC accepted");
    } catch (const not_supported_error& e) {
        BOOST_TEST(e.xa_code() == XAER_ASYNC);
    }
    BOOST_TEST(s->commit(x, TMONEPHASE) == OK);
}

BOOST_AUTO_TEST_CASE(missing_capabilities_fail_the_declared_way_every_time) {
    auto d = std::make_shared<fake_driver>();
    d->caps.no(capability::two_phase, "cannot")
        .no(capability::join, "cannot join")
        .no(capability::suspend_resume, "cannot suspend");
    auto s = open(d);
    xid x(1, "x", "");
    BOOST_TEST(s->start(x, TMNOFLAGS) == OK);
    for (int i = 0; i < 3; ++i) {
        try {
            s->end(x, TMSUSPEND);
            BOOST_FAIL("suspend accepted");
        } catch (const not_supported_error& e) {
            BOOST_TEST(e.xa_code() == XAER_RMERR);
            BOOST_TEST(std::string(e.what()).find("cannot suspend") != std::string::npos);
        }
    }
    BOOST_TEST(s->end(x, TMSUCCESS) == OK);
    for (int i = 0; i < 3; ++i) {
        try {
            s->prepare(x, TMNOFLAGS);
            BOOST_FAIL("prepare accepted");
        } catch (const not_supported_error& e) {
            BOOST_TEST(e.xa_code() == XAER_RMERR);
            BOOST_TEST(e.sqlstate() == "0A000");
        }
        BOOST_TEST(s->state_of(x) == bs::idle);  // still rollbackable
        BOOST_TEST(run(*s, verb::join, x) == XAER_RMERR);
    }
    BOOST_TEST(s->rollback(x, TMNOFLAGS) == OK);
    BOOST_TEST(s->state_of(x) == bs::nonexistent);
    // Without two-phase nothing can be prepared, so commit/rollback by xid find nothing.
    BOOST_TEST(run(*s, verb::commit_2pc, x) == XAER_NOTA);
    BOOST_TEST(run(*s, verb::rollback, x) == XAER_NOTA);
}

BOOST_AUTO_TEST_CASE(read_only_vote_forgets_the_branch) {
    auto d = std::make_shared<fake_driver>();
    d->fault->read_only = true;
    auto s = open(d);
    xid x(1, "ro", "");
    s->start(x, TMNOFLAGS);
    s->end(x, TMSUCCESS);
    BOOST_TEST(s->prepare(x, TMNOFLAGS) == XA_RDONLY);
    BOOST_TEST(s->state_of(x) == bs::nonexistent);
    BOOST_TEST(run(*s, verb::commit_2pc, x) == XAER_NOTA);
}

BOOST_AUTO_TEST_CASE(prepared_elsewhere_is_finished_through_the_rm) {
    auto d = std::make_shared<fake_driver>();
    auto a = open(d);
    auto b = open(d);
    xid x(9, "shared", "b1");
    a->start(x, TMNOFLAGS);
    a->end(x, TMSUCCESS);
    BOOST_TEST(a->prepare(x, TMNOFLAGS) == OK);
    BOOST_TEST(b->state_of(x) == bs::nonexistent);
    BOOST_TEST(run(*b, verb::prepare, x) == XAER_NOTA);  // phase one only where the work is
    BOOST_TEST(b->commit(x, TMNOFLAGS) == OK);
    BOOST_TEST(d->db->committed.back() == "shared");
    BOOST_TEST(run(*b, verb::commit_2pc, x) == XAER_NOTA);  // gone now
}

BOOST_AUTO_TEST_CASE(driver_failures_keep_their_meaning) {
    auto d = std::make_shared<fake_driver>();
    auto s = open(d);
    xid x(1, "f", "");
    // A rollback code from end: the branch becomes rollback-only (S4).
    s->start(x, TMNOFLAGS);
    d->fault->before = [](const std::string& p) {
        if (p == "end") raise(XA_RBDEADLOCK, "40P01", "deadlock detected");
    };
    BOOST_TEST(run(*s, verb::end_success, x) == XA_RBDEADLOCK);
    BOOST_TEST(s->state_of(x) == bs::rollback_only);
    BOOST_TEST(!s->associated().has_value());
    d->fault->before = nullptr;
    BOOST_TEST(run(*s, verb::prepare, x) == XA_RBDEADLOCK);  // the reason is kept
    BOOST_TEST(s->state_of(x) == bs::nonexistent);
    // A rollback code from prepare: the branch is gone.
    s->start(x, TMNOFLAGS);
    s->end(x, TMSUCCESS);
    d->fault->before = [](const std::string& p) {
        if (p == "prepare") raise(XA_RBINTEGRITY, "23505", "duplicate key");
    };
    BOOST_TEST(run(*s, verb::prepare, x) == XA_RBINTEGRITY);
    BOOST_TEST(s->state_of(x) == bs::nonexistent);
    // An RM error at prepare leaves the branch idle.
    s->start(x, TMNOFLAGS);
    s->end(x, TMSUCCESS);
    d->fault->before = [](const std::string& p) {
        if (p == "prepare") throw std::runtime_error("surprise");
    };
    BOOST_TEST(run(*s, verb::prepare, x) == XAER_RMERR);
    BOOST_TEST(s->state_of(x) == bs::idle);
    // A lost connection: the session is unusable, unprepared work is gone, and the
    // outcome of a commit is in doubt.
    d->fault->before = [](const std::string& p) {
        if (p == "commit") raise(XAER_RMFAIL, "08006", "server closed the connection");
    };
    try {
        s->commit(x, TMONEPHASE);
        BOOST_FAIL("commit succeeded");
    } catch (const operational_error& e) {
        BOOST_TEST(e.in_doubt());
        BOOST_TEST(e.driver() == "fake");
    }
    BOOST_TEST(!s->usable());
    BOOST_TEST(s->state_of(x) == bs::nonexistent);
    d->fault->before = nullptr;
    BOOST_TEST(run(*s, verb::start, xid(1, "g", "")) == XAER_RMFAIL);
}

BOOST_AUTO_TEST_CASE(local_transaction_blocks_start) {
    auto d = std::make_shared<fake_driver>();
    auto s = open(d);
    s->execute("insert");
    xid x(1, "o", "");
    BOOST_TEST(run(*s, verb::start, x) == XAER_OUTSIDE);
    BOOST_TEST(s->native().in_local_transaction());  // the local work is untouched
    s->commit_local();
    BOOST_TEST(s->start(x, TMNOFLAGS) == OK);
    try {
        s->commit_local();
        BOOST_FAIL("local commit inside a branch");
    } catch (const programming_error& e) {
        BOOST_TEST(e.xa_code() == XAER_PROTO);
    }
}

BOOST_AUTO_TEST_CASE(recover_pages_without_loss_or_repetition) {
    auto d = std::make_shared<fake_driver>();
    auto s = open(d);
    std::set<xid> want;
    for (int i = 0; i < 23; ++i) {
        xid x(5, fmt::format("g{:02}", i), "");
        want.insert(x);
        d->db->prepared.insert(x);
    }
    d->db->prepared.insert(xid::unparsed("foreign-1"));
    d->db->prepared.insert(xid::unparsed("foreign-2"));
    XID page[5];
    // Without a scan: XAER_PROTO.
    try {
        s->recover(page, 5, TMNOFLAGS);
        BOOST_FAIL("recover without TMSTARTRSCAN");
    } catch (const error& e) {
        BOOST_TEST(e.xa_code() == XAER_PROTO);
    }
    std::set<xid> got;
    int n = s->recover(page, 5, TMSTARTRSCAN);
    int calls = 1;
    // Bounded, and stopped at the first repeated XID: a scan that never advances must
    // fail here, not loop until ctest's timeout.
    for (bool repeated = false; calls <= 10 && !repeated; ++calls) {
        BOOST_TEST_REQUIRE(n >= 0);
        for (int i = 0; i < n && !repeated; ++i)
            repeated = !got.insert(xid::from_c(&page[i])).second;
        BOOST_TEST(!repeated, "page " << calls << " repeats an XID");
        if (n < 5 || repeated) break;
        n = s->recover(page, 5, TMNOFLAGS);
    }
    BOOST_TEST(calls == 5);  // 23 XIDs: four full pages and one of three
    BOOST_TEST((got == want));
    BOOST_TEST(s->recover(page, 5, TMENDRSCAN) == 0);
    // TMENDRSCAN closed the scan: continuing it is a protocol error.
    try {
        s->recover(page, 5, TMNOFLAGS);
        BOOST_FAIL("xa_recover(TMNOFLAGS) continued a scan that TMENDRSCAN closed");
    } catch (const error& e) {
        BOOST_TEST(e.xa_code() == XAER_PROTO);
    }
    // Start and end in one call; count 0 is legal. That scan is closed too.
    BOOST_TEST(s->recover(page, 0, TMSTARTRSCAN | TMENDRSCAN) == 0);
    BOOST_TEST(s->recover(page, 5, TMSTARTRSCAN | TMENDRSCAN) == 5);
    try {
        s->recover(page, 5, TMNOFLAGS);
        BOOST_FAIL("xa_recover(TMNOFLAGS) continued a scan that TMSTARTRSCAN|TMENDRSCAN closed");
    } catch (const error& e) {
        BOOST_TEST(e.xa_code() == XAER_PROTO);
    }
    // C++ recovery lists the foreign names too.
    BOOST_TEST(s->recover_all().size() == 25u);
    try {
        s->recover(nullptr, 3, TMSTARTRSCAN);
        BOOST_FAIL("NULL xids accepted");
    } catch (const error& e) {
        BOOST_TEST(e.xa_code() == XAER_INVAL);
    }
}

BOOST_AUTO_TEST_CASE(close_only_when_not_associated) {
    auto d = std::make_shared<fake_driver>();
    auto s = open(d);
    xid x(1, "c", "");
    s->start(x, TMNOFLAGS);
    BOOST_CHECK_THROW(s->check_closable(), programming_error);
    s->end(x, TMSUSPEND);
    BOOST_CHECK_THROW(s->check_closable(), programming_error);
    s->start(x, TMRESUME);
    s->end(x, TMSUCCESS);
    BOOST_CHECK_NO_THROW(s->check_closable());
}

BOOST_AUTO_TEST_SUITE_END()
