// The runner: selects cases, runs each against a target with a fresh context, and
// turns what happened into exactly one outcome. A capability declared missing runs the
// refusal check instead, so NOT SUPPORTED is always verified.
#include <fnmatch.h>
#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "cases.hpp"

namespace xarm::conformance {

namespace {

XID fresh(context& ctx) {
    return context::to_c(ctx.new_xid());
}

// The C side of a refusal: run the verb that needs c and check code + SQLSTATE 0A000.
void refusal_c(context& ctx, capability c) {
    rm r(ctx);
    XID x = fresh(ctx);
    switch (c) {
        case capability::two_phase:
        case capability::read_only_vote:
            expect_rc(r, r.start(&x), XA_OK, "xa_start");
            expect_rc(r, r.end(&x), XA_OK, "xa_end");
            expect_refusal(r, r.prepare(&x), XAER_RMERR, "xa_prepare (two_phase declared missing)");
            // The branch stays idle: it can still be rolled back.
            expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback after the refused prepare");
            break;
        case capability::one_phase:
            expect_rc(r, r.start(&x), XA_OK, "xa_start");
            expect_rc(r, r.end(&x), XA_OK, "xa_end");
            expect_refusal(r, r.commit(&x, TMONEPHASE), XAER_RMERR, "xa_commit(TMONEPHASE)");
            expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback after the refused commit");
            break;
        case capability::recovery: {
            XID out[4];
            expect_refusal(r, r.recover(out, 4, TMSTARTRSCAN | TMENDRSCAN), XAER_RMERR,
                           "xa_recover");
            break;
        }
        case capability::join:
            expect_rc(r, r.start(&x), XA_OK, "xa_start");
            expect_rc(r, r.end(&x), XA_OK, "xa_end");
            expect_refusal(r, r.start(&x, TMJOIN), XAER_RMERR, "xa_start(TMJOIN)");
            expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
            break;
        case capability::suspend_resume:
            expect_rc(r, r.start(&x), XA_OK, "xa_start");
            expect_refusal(r, r.end(&x, TMSUSPEND), XAER_RMERR, "xa_end(TMSUSPEND)");
            expect_rc(r, r.end(&x), XA_OK, "xa_end");
            expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
            break;
        case capability::migrate:
            expect_rc(r, r.start(&x), XA_OK, "xa_start");
            expect_refusal(r, r.end(&x, TMSUSPEND | TMMIGRATE), XAER_RMERR,
                           "xa_end(TMSUSPEND|TMMIGRATE)");
            expect_rc(r, r.end(&x), XA_OK, "xa_end");
            expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback");
            break;
        case capability::async:
            expect_refusal(r, r.start(&x, TMASYNC), XAER_ASYNC, "xa_start(TMASYNC)");
            break;
        case capability::interleave: {
            XID y = fresh(ctx);
            expect_rc(r, r.start(&x), XA_OK, "xa_start(x)");
            expect_rc(r, r.end(&x), XA_OK, "xa_end(x)");
            expect_refusal(r, r.start(&y), XAER_RMERR, "xa_start(y) while x holds the connection");
            expect_rc(r, r.rollback(&x), XA_OK, "xa_rollback(x)");
            break;
        }
    }
}

// The C++ side: PEP 249's NotSupportedError.
void refusal_cpp(context& ctx, capability c) {
    if (!ctx.has_sql()) return;
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

case_result run_one(const target& t, const case_def& c) {
    case_result r{c.id, outcome::error, {}, 0};
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
    std::optional<capability> missing;
    for (auto n : c.needs)
        if (t.caps && !t.caps->has(n)) {
            missing = n;
            break;
        }
    try {
        context ctx(t);
        try {
            if (missing) {
                if (c.refusal)
                    c.refusal(ctx);
                else
                    verify_refusal(ctx, *missing);
                r.result = outcome::not_supported;
                r.message =
                    fmt::format("{}: {}", to_string(*missing), t.caps->get(*missing).reason);
            } else if (c.needs_layer != layer::c_switch && !ctx.has_sql()) {
                r.result = outcome::not_applicable;
                r.message = "needs SQL access: no C++ connection for a third-party switch";
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
            r.message = fmt::format("unexpected {} ({}): {}", xa_code_name(e.xa_code()),
                                    e.sqlstate(), e.what());
        }
    } catch (const std::exception& e) {
        r.result = outcome::error;
        r.message = std::string("the case broke: ") + e.what();
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace

// The server went away under a case (shared development servers get restarted by other
// tests): wait for it to come back, up to 30 s. True when it did.
bool server_back(const target& t) {
    for (int i = 0; i < 60; ++i) {
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

run_result run(const target& t, const run_options& opts) {
    run_result out{t, {}};
    auto cases = select_cases(opts.globs);
    for (std::size_t i = 0; i < cases.size(); ++i) {
        if (opts.on_start) opts.on_start(t.label, *cases[i], i, cases.size());
        auto r = run_one(t, *cases[i]);
        // One retry, said in the result, when the server itself went away: an ERROR is
        // the run's failure, not the driver's, and a restart by someone else is not news.
        if (lost_server(r) && t.drv && t.setup_error.empty() && server_back(t)) {
            const std::string first = r.message;
            r = run_one(t, *cases[i]);
            r.message = "retried once after the server went away (" + first.substr(0, 120) + ")" +
                        (r.message.empty() ? "" : ": " + r.message);
        }
        out.cases.push_back(std::move(r));
        if (opts.on_done) opts.on_done(t.label, out.cases.back());
    }
    return out;
}

}  // namespace xarm::conformance
