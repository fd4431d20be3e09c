// The runner: selects cases, runs each against a target with a fresh context, and
// turns what happened into exactly one outcome. A capability declared missing runs the
// refusal check instead, so NOT SUPPORTED is always verified.
#include <fnmatch.h>

#include <chrono>
#include <csignal>
#include <thread>

#include <fmt/format.h>

#include "cases.hpp"
#include "isolation.hpp"

namespace xarm::conformance {

namespace {

XID fresh(context& ctx) {
    return context::to_c(ctx.new_xid());
}

// The C side of a refusal: run the verb that needs c. Strict (xarm's declaration): the
// documented code with SQLSTATE 0A000; otherwise any refusal the XA specification
// allows for the feature. Either way the branch must survive the refusal.
void refusal_c(context& ctx, capability c) {
    rm r(ctx);
    XID x = fresh(ctx);
    switch (c) {
        case capability::two_phase:
        case capability::read_only_vote:
            expect_rc(r, r.start(&x), XA_OK, "xa_start");
            expect_rc(r, r.end(&x), XA_OK, "xa_end");
            expect_refusal(r, r.prepare(&x), XAER_RMERR, "xa_prepare (two_phase declared missing)",
                           {XAER_PROTO, XAER_INVAL});
            // The branch stays idle: it can still be rolled back.
            expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback after the refused prepare");
            break;
        case capability::one_phase:
            expect_rc(r, r.start(&x), XA_OK, "xa_start");
            expect_rc(r, r.end(&x), XA_OK, "xa_end");
            expect_refusal(r, r.commit(&x, TMONEPHASE), XAER_RMERR, "xa_commit(TMONEPHASE)",
                           {XAER_PROTO, XAER_INVAL});
            expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback after the refused commit");
            break;
        case capability::recovery: {
            XID out[4];
            expect_refusal(r, r.recover(out, 4, TMSTARTRSCAN | TMENDRSCAN), XAER_RMERR,
                           "xa_recover", {XAER_PROTO, XAER_INVAL});
            break;
        }
        case capability::join:
            expect_rc(r, r.start(&x), XA_OK, "xa_start");
            expect_rc(r, r.end(&x), XA_OK, "xa_end");
            expect_refusal(r, r.start(&x, TMJOIN), XAER_RMERR, "xa_start(TMJOIN)",
                           {XAER_INVAL, XAER_PROTO});
            expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback after the refused join");
            break;
        case capability::suspend_resume:
            expect_rc(r, r.start(&x), XA_OK, "xa_start");
            expect_refusal(r, r.end(&x, TMSUSPEND), XAER_RMERR, "xa_end(TMSUSPEND)",
                           {XAER_INVAL, XAER_PROTO});
            expect_rc(r, r.end(&x), XA_OK, "xa_end after the refused suspension");
            expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
            break;
        case capability::migrate: {
            expect_rc(r, r.start(&x), XA_OK, "xa_start");
            const int rc = r.end(&x, TMSUSPEND | TMMIGRATE);
            expect_refusal(r, rc, XAER_RMERR, "xa_end(TMSUSPEND|TMMIGRATE)",
                           {XA_NOMIGRATE, XAER_INVAL, XAER_PROTO});
            if (rc == XA_NOMIGRATE)  // suspended all the same, to be resumed here
                expect_rc(r, r.start(&x, TMRESUME), XA_OK,
                          "xa_start(TMRESUME) on the same thread after XA_NOMIGRATE");
            expect_rc(r, r.end(&x), XA_OK, "xa_end");
            expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
            break;
        }
        case capability::async:
            expect_refusal(r, r.start(&x, TMASYNC), XAER_ASYNC, "xa_start(TMASYNC)", {XAER_INVAL});
            break;
        case capability::timeout:
            break;  // no C verb: xa_start takes no timeout
        case capability::interleave: {
            XID y = fresh(ctx);
            expect_rc(r, r.start(&x), XA_OK, "xa_start(x)");
            expect_rc(r, r.end(&x), XA_OK, "xa_end(x)");
            expect_refusal(r, r.start(&y), XAER_RMERR, "xa_start(y) while x holds the connection",
                           {XAER_PROTO, XAER_OUTSIDE});
            expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback(x)");
            break;
        }
    }
}

// The C++ side: PEP 249's NotSupportedError. Through a third-party switch the C++ layer
// is the suite's own adapter, which refuses nothing: only the switch's answers count.
void refusal_cpp(context& ctx, capability c) {
    if (!ctx.has_sql() || ctx.via_switch()) return;
    auto conn = ctx.connect();
    switch (c) {
        case capability::two_phase: {
            conn.tpc_begin(ctx.new_xid());
            expect_throw<not_supported_error>([&] { conn.tpc_prepare(); }, "tpc_prepare");
            conn.tpc_rollback();
            break;
        }
        case capability::recovery:
            expect_throw<not_supported_error>([&] { conn.tpc_recover(); }, "tpc_recover");
            break;
        case capability::one_phase: {
            conn.tpc_begin(ctx.new_xid());
            expect_throw<not_supported_error>([&] { conn.tpc_commit(); },
                                              "tpc_commit() unprepared");
            conn.tpc_rollback();
            break;
        }
        case capability::join: {
            auto x = ctx.new_xid();
            conn.tpc_begin(x);
            conn.tpc_end(x);
            expect_throw<not_supported_error>([&] { conn.tpc_begin(x, tpc_begin_flag::join); },
                                              "tpc_begin(xid, join)");
            conn.tpc_rollback();  // the branch survives the refusal, ended
            break;
        }
        case capability::suspend_resume: {
            auto x = ctx.new_xid();
            conn.tpc_begin(x);
            expect_throw<not_supported_error>([&] { conn.tpc_end(x, tpc_end_flag::suspend); },
                                              "tpc_end(xid, suspend)");
            check(!conn.ended(), "the branch is not active after the refused suspension");
            conn.tpc_rollback();
            break;
        }
        case capability::timeout: {
            const auto x = ctx.new_xid();
            expect_throw<not_supported_error>(
                [&] { conn.tpc_begin(x, tpc_begin_flag::fresh, std::chrono::seconds(5)); },
                "tpc_begin(xid, fresh, timeout)");
            check(conn.current().is_null(), "a refused tpc_begin left a branch in progress");
            conn.tpc_begin(x);  // the connection can still begin it without one
            conn.tpc_rollback();
            break;
        }
        default:
            break;  // the other capabilities have no C++ verb of their own
    }
}

}  // namespace

void verify_refusal(context& ctx, capability c) {
    refusal_c(ctx, c);
    refusal_cpp(ctx, c);
}

const std::vector<case_def>& all_cases() {
    static const std::vector<case_def> cases = [] {
        std::vector<case_def> v;
        add_state_cases(v);
        add_tx_cases(v);
        add_tpc_cases(v);
        add_params_cases(v);
        return v;
    }();
    return cases;
}

bool glob_match(const std::string& pattern, const std::string& text) {
    return fnmatch(pattern.c_str(), text.c_str(), 0) == 0;
}

std::vector<const case_def*> select_cases(const std::vector<std::string>& globs) {
    std::vector<const case_def*> out;
    for (const auto& c : all_cases()) {
        bool take = globs.empty();
        for (const auto& g : globs) take = take || glob_match(g, c.id);
        if (take) out.push_back(&c);
    }
    return out;
}

std::map<outcome, int> run_result::counts() const {
    std::map<outcome, int> m;
    for (const auto& c : cases) ++m[c.result];
    return m;
}

namespace {

// The refusal check for c: the case's own, or the generic one.
void run_refusal(context& ctx, const case_def& c, capability cap) {
    ctx.set_strict_refusals(ctx.tgt().strict_refusals(cap));
    if (c.refusal)
        c.refusal(ctx);
    else
        verify_refusal(ctx, cap);
}

std::string refusal_suffix(const context& ctx) {
    return ctx.refused().empty() ? "" : " (" + ctx.refused() + ")";
}

// An optional feature nobody declared, and the case failed: the feature is NOT
// SUPPORTED when the switch refuses it in a way the specification allows (checked
// afresh), a FAIL when it accepts it or refuses it some other way.
void judge_undeclared(const target& t, const case_def& c, capability cap, case_result& r) {
    const std::string failed = r.message;
    try {
        context probe(t);
        run_refusal(probe, c, cap);
        r.result = outcome::not_supported;
        r.noteworthy = true;
        r.message = fmt::format("{} (undeclared; {})", to_string(cap),
                                probe.refused().empty() ? "refused" : probe.refused());
    } catch (const failure& f) {
        r.message = fmt::format(
            "{} (undeclared, and not refused the way the XA specification "
            "allows: {})",
            failed, f.what());
    } catch (const std::exception& e) {
        r.message =
            fmt::format("{} (undeclared; checking for a refusal broke: {})", failed, e.what());
    }
}

/// One case in this process: exactly one outcome.
case_result run_case(const target& t, const case_def& c) {
    case_result r{c.id, outcome::error, {}, 0, false};
    const auto t0 = std::chrono::steady_clock::now();
    if (!t.configured) {
        r.result = outcome::not_configured;
        r.message = t.setup_error;
        return r;
    }
    if (!t.setup_error.empty()) {
        r.message = t.setup_error;
        return r;
    }
    std::optional<capability> missing, undeclared;
    for (auto n : c.needs) {
        if (t.caps && !t.caps->has(n)) {
            missing = n;
            break;
        }
        if (!undeclared && t.undeclared(n)) undeclared = n;
    }
    try {
        context ctx(t);
        try {
            if (missing) {
                run_refusal(ctx, c, *missing);
                r.result = outcome::not_supported;
                const auto src = t.sources.find(*missing);
                const bool own = src == t.sources.end() || src->second == decl_source::xarm_driver;
                r.message =
                    fmt::format("{}: {}{}", to_string(*missing), t.caps->get(*missing).reason,
                                own ? "" : refusal_suffix(ctx));
                r.noteworthy = !own;
            } else if (c.needs_layer != layer::c_switch && !ctx.has_sql()) {
                r.result = outcome::not_applicable;
                r.message =
                    "needs SQL access: give the switch's native connection with --native-conn "
                    "SYMBOL --dbms pq|mysql";
            } else {
                c.run(ctx);
                r.result = outcome::pass;
                r.message = ctx.notes();
            }
        } catch (const failure& f) {
            r.result = outcome::fail;
            r.message = missing ? fmt::format(
                                      "declared missing ({}), but the refusal was not as "
                                      "declared: {}",
                                      to_string(*missing), f.what())
                                : f.what();
        } catch (const not_applicable& n) {
            r.result = outcome::not_applicable;
            r.message = n.what();
        } catch (const setup_error& e) {
            r.result = outcome::error;
            r.message = e.what();
        } catch (const operational_error& e) {
            r.result = outcome::error;
            r.message = std::string("connection lost: ") + e.what();
        } catch (const xarm::error& e) {
            // A driver error nobody expected: the driver did not do what the case needs.
            r.result = outcome::fail;
            r.message = fmt::format("unexpected {} ({}): {}", code_text(e.xa_code()), e.sqlstate(),
                                    e.what());
        }
    } catch (const std::exception& e) {
        r.result = outcome::error;
        r.message = std::string("the case broke: ") + e.what();
    }
    if (r.result == outcome::fail && undeclared && !missing) judge_undeclared(t, c, *undeclared, r);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

/// One case in a child process: a crash or a hang is this case's ERROR, named.
case_result run_isolated(const target& t, const case_def& c, double timeout) {
    const auto t0 = std::chrono::steady_clock::now();
    isolation::child_end end;
    try {
        end = isolation::run_in_child([&] { return run_case(t, c); }, timeout);
    } catch (const std::exception& e) {  // no process for the case (fork or pipe failed)
        return case_result{c.id, outcome::error, e.what(), 0, false};
    }
    case_result r;
    if (end.finished) {
        r = std::move(end.result);
    } else {
        r.id = c.id;
        r.result = outcome::error;
        const std::string where = end.in_call.empty() ? "" : " in " + end.in_call;
        if (end.death.rfind("interrupted", 0) == 0 || end.death.rfind("no result", 0) == 0)
            r.message = end.death + where;
        else if (!end.in_call.empty())
            r.message =
                fmt::format("the switch crashed: {}{}",
                            end.death.rfind("SIG", 0) == 0 ? end.death
                                                           : "the process ended with " + end.death +
                                                                 " (a sanitizer's "
                                                                 "report is on standard "
                                                                 "error)",
                            where);
        else
            r.message = fmt::format(
                "the case's process ended with {} outside any call into "
                "the switch",
                end.death);
        // What the dead case left behind (prepared branches, tables) is cleaned up from
        // another child, so that the next cases find the database as usual.
        if ((!end.xids.empty() || !end.tables.empty()) && stop_requested() == 0) {
            try {
                isolation::run_in_child(
                    [&] {
                        context ctx(t);
                        ctx.adopt(end.xids, end.tables);
                        ctx.cleanup();
                        return case_result{c.id, outcome::pass, {}, 0, false};
                    },
                    60);
            } catch (const std::exception&) {
            }
        }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

case_result run_one(const target& t, const case_def& c, const run_options& o) {
    // A column that cannot run needs no child process.
    if (!o.isolate || !t.configured || !t.setup_error.empty()) return run_case(t, c);
    return run_isolated(t, c, o.timeout_seconds);
}

}  // namespace

// The server went away under a case (shared development servers get restarted by other
// tests): wait for it to come back, up to 30 s. True when it did.
bool server_back(const target& t) {
    for (int i = 0; i < 60 && stop_requested() == 0; ++i) {
        try {
            connection c(t.drv, t.info);
            return true;
        } catch (const std::exception&) {
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
        }
    }
    return false;
}

bool lost_server(const case_result& r) {
    return r.result == outcome::error && (r.message.rfind("cannot open a connection", 0) == 0 ||
                                          r.message.rfind("connection lost", 0) == 0);
}

std::string signal_text(int sig) {
    return sig == SIGTERM  ? "SIGTERM"
           : sig == SIGINT ? "SIGINT"
           : sig == SIGHUP ? "SIGHUP"
                           : "a signal";
}

run_result run(const target& t, const run_options& opts) {
    run_result out{t, {}, {}};
    auto cases = select_cases(opts.globs);
    for (std::size_t i = 0; i < cases.size(); ++i) {
        if (const int sig = stop_requested(); sig != 0) {
            out.interrupted = fmt::format(
                "interrupted by {} after {} of {} cases; the rest did "
                "not run",
                signal_text(sig), i, cases.size());
            break;
        }
        if (opts.on_start) opts.on_start(t.label, *cases[i], i, cases.size());
        auto r = run_one(t, *cases[i], opts);
        // One retry, said in the result, when the server itself went away: an ERROR is
        // the run's failure, not the driver's, and a restart by someone else is not news.
        if (lost_server(r) && t.drv && t.setup_error.empty() && stop_requested() == 0 &&
            server_back(t)) {
            const std::string first = r.message;
            r = run_one(t, *cases[i], opts);
            r.message = "retried once after the server went away (" + first.substr(0, 120) + ")" +
                        (r.message.empty() ? "" : ": " + r.message);
        }
        out.cases.push_back(std::move(r));
        if (opts.on_done) opts.on_done(t.label, out.cases.back());
    }
    if (const int sig = stop_requested(); sig != 0 && out.interrupted.empty())
        out.interrupted = fmt::format("interrupted by {} during the last case", signal_text(sig));
    return out;
}

}  // namespace xarm::conformance
