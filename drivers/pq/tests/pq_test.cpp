// The PostgreSQL driver against a real server: two-phase, recovery, error mapping, the C
// switch and the C++ API. Every server case uses unique gtrids and tables, and rolls
// back only branches it created.
#define BOOST_TEST_MODULE xarm_pq
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <future>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "dialect.hpp"
#include "scratch_pg.hpp"
#include "xarm/connection.hpp"
#include "xarm/driver/codec.hpp"
#include "xarm/xa.h"
#include "xarm/xarm.h"
#include "xarm/xid.hpp"
#include "xarm_testing.hpp"

extern "C" {
extern struct xa_switch_t xarm_pq_switch;
struct xa_switch_t* lixa_get_xa_switch(void);
PGconn* xarm_pq_conn(int rmid);
}

namespace xarm {
inline std::ostream& operator<<(std::ostream& o, const xid& x) {
    return o << x.to_string();
}
}  // namespace xarm

namespace utf = boost::unit_test;
using xarm::testing::needs;
using xarm::testing::server;
using xarm::testing::unique;

namespace {

const xa_switch_t& sw = xarm_pq_switch;

struct conn_deleter {
    void operator()(PGconn* c) const noexcept { PQfinish(c); }
};
using raw_conn = std::unique_ptr<PGconn, conn_deleter>;
struct res_deleter {
    void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using raw_res = std::unique_ptr<PGresult, res_deleter>;

raw_conn raw(const std::string& info) {
    raw_conn c(PQconnectdb(info.c_str()));
    BOOST_REQUIRE_MESSAGE(PQstatus(c.get()) == CONNECTION_OK, PQerrorMessage(c.get()));
    return c;
}

raw_res run(PGconn* c, const std::string& sql) {
    raw_res r(PQexec(c, sql.c_str()));
    const auto st = PQresultStatus(r.get());
    BOOST_REQUIRE_MESSAGE(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK,
                          sql << ": " << PQerrorMessage(c));
    return r;
}

std::string scalar(PGconn* c, const std::string& sql) {
    auto r = run(c, sql);
    BOOST_REQUIRE_EQUAL(PQntuples(r.get()), 1);
    return PQgetisnull(r.get(), 0, 0) ? "NULL" : PQgetvalue(r.get(), 0, 0);
}

std::string sql_name(std::string s) {
    std::replace(s.begin(), s.end(), '-', '_');
    return s;
}

// Independent of xarm: standard padded base64, as pgjdbc and psycopg write it.
std::string b64(const std::string& in) {
    static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                     (static_cast<unsigned char>(in[i + 1]) << 8) |
                     static_cast<unsigned char>(in[i + 2]);
        out += t[v >> 18];
        out += t[(v >> 12) & 63];
        out += t[(v >> 6) & 63];
        out += t[v & 63];
    }
    if (i + 1 == in.size()) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16;
        out += t[v >> 18];
        out += t[(v >> 12) & 63];
        out += "==";
    } else if (i + 2 == in.size()) {
        unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                     (static_cast<unsigned char>(in[i + 1]) << 8);
        out += t[v >> 18];
        out += t[(v >> 12) & 63];
        out += t[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

XID to_c(const xarm::xid& x) {
    XID c{};
    x.to_c(c);
    return c;
}

xarm::diagnostic last(int rmid) {
    xarm_diag d{};
    xarm::diagnostic out;
    if (xarm_last_error(rmid, &d) == 0) {
        out.xa_code = d.xa_code;
        out.sqlstate = d.sqlstate;
        out.message = d.message;
    }
    return out;
}

std::atomic<int> next_rmid{100};

// The test server's port (from XARM_TEST_PQ), for connection strings with a wrong password.
std::string test_port() {
    const std::string info = server("XARM_TEST_PQ");
    const auto at = info.find("port=");
    if (at == std::string::npos) return "5432";
    return info.substr(at + 5, info.find_first_not_of("0123456789", at + 5) - (at + 5));
}

// A table of its own (id int primary key, v int) with rows (1,0) and (2,0), a gtrid
// prefix, and cleanup of every prepared branch this fixture created.
struct fx {
    std::string info = server("XARM_TEST_PQ");
    raw_conn admin = raw(info);
    std::string table = sql_name(unique("t_pq"));
    std::string prefix = unique("xarm-pq");
    std::vector<int> rmids;
    int counter = 0;

    fx() {
        run(admin.get(), "SET client_min_messages = warning");
        // Never wait long behind a branch a broken driver leaked (checks and cleanup).
        run(admin.get(), "SET lock_timeout = '5s'");
        run(admin.get(),
            fmt::format("CREATE TABLE {} (id int PRIMARY KEY, v int NOT NULL)", table));
        run(admin.get(), fmt::format("INSERT INTO {} VALUES (1, 0), (2, 0)", table));
    }
    ~fx() {
        for (int r : rmids) sw.xa_close_entry(const_cast<char*>(""), r, TMNOFLAGS);
        if (!admin) return;
        // Roll back what this case left prepared (as the owner), then drop the table
        // without ever waiting long for a lock.
        std::vector<PGconn*> owners{admin.get()};
        raw_conn other;
        if (const char* o = std::getenv("XARM_TEST_PQ_OTHER")) {
            other.reset(PQconnectdb(o));
            if (PQstatus(other.get()) == CONNECTION_OK) owners.push_back(other.get());
        }
        raw_res list(PQexec(admin.get(), "SELECT gid FROM pg_prepared_xacts"));
        for (int i = 0; PQresultStatus(list.get()) == PGRES_TUPLES_OK && i < PQntuples(list.get());
             ++i) {
            std::string g = PQgetvalue(list.get(), i, 0);
            auto x = xarm::decode_pg_gid(g);
            if (x.gtrid().find(prefix) == std::string::npos) continue;
            for (PGconn* c : owners) {
                raw_res r(PQexec(c, ("ROLLBACK PREPARED " + xarm::pq::quote_literal(g)).c_str()));
                if (PQresultStatus(r.get()) == PGRES_COMMAND_OK) break;
            }
        }
        raw_res r(PQexec(
            admin.get(),
            fmt::format("DROP TABLE IF EXISTS {}, {}_c, {}_p", table, table, table).c_str()));
    }
    xarm::xid make_xid(std::string bqual = "b") {
        return xarm::xid(4711, prefix + "-" + std::to_string(counter++), bqual);
    }
    std::vector<std::string> gids() {
        std::vector<std::string> out;
        auto r = run(admin.get(), "SELECT gid FROM pg_prepared_xacts");
        for (int i = 0; i < PQntuples(r.get()); ++i) out.emplace_back(PQgetvalue(r.get(), i, 0));
        return out;
    }
    bool is_prepared(const xarm::xid& x) {
        auto g = gids();
        return std::find(g.begin(), g.end(), xarm::encode_pg_gid(x)) != g.end();
    }
    int value(int id = 1) {
        return std::stoi(
            scalar(admin.get(), fmt::format("SELECT v FROM {} WHERE id = {}", table, id)));
    }
    std::string update(int id = 1, int v = 1) {
        return fmt::format("UPDATE {} SET v = {} WHERE id = {}", table, v, id);
    }
    int open_rm(const std::string& i = {}) {
        int rmid = next_rmid++;
        std::string s = i.empty() ? info : i;
        BOOST_REQUIRE_EQUAL(sw.xa_open_entry(s.data(), rmid, TMNOFLAGS), XA_OK);
        rmids.push_back(rmid);
        return rmid;
    }
};

template <class E, class F>
E expect_throw(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e;
    } catch (const std::exception& e) {
        BOOST_FAIL(std::string("unexpected exception: ") + e.what());
    }
    BOOST_FAIL("no exception thrown");
    throw;  // unreachable
}

}  // namespace

// ---------------------------------------------------------------- dialect (no server)

BOOST_AUTO_TEST_SUITE(dialect)

BOOST_AUTO_TEST_CASE(quoting) {
    using xarm::pq::quote_literal;
    BOOST_TEST(quote_literal("abc") == "E'abc'");
    BOOST_TEST(quote_literal("a'b\\c") == "E'a''b\\\\c'");
    BOOST_TEST(quote_literal("") == "E''");
    auto e =
        expect_throw<xarm::programming_error>([] { quote_literal(std::string_view("a\0b", 3)); });
    BOOST_TEST(e.xa_code() == XAER_INVAL);
    xarm::xid x(42, "gtrid", "bqual");
    BOOST_TEST(xarm::pq::prepare_sql(x) == "PREPARE TRANSACTION E'42_Z3RyaWQ=_YnF1YWw='");
    BOOST_TEST(xarm::pq::commit_prepared_sql(x) == "COMMIT PREPARED E'42_Z3RyaWQ=_YnF1YWw='");
    BOOST_TEST(xarm::pq::rollback_prepared_sql(xarm::xid::unparsed("it's")) ==
               "ROLLBACK PREPARED E'it''s'");
}

BOOST_AUTO_TEST_CASE(pgjdbc_psycopg_gid_format) {
    // The gid pgjdbc and psycopg write for Xid(42, "gtrid", "bqual").
    BOOST_TEST(xarm::pq::parse_recovered_gid("42_Z3RyaWQ=_YnF1YWw=") ==
               xarm::xid(42, "gtrid", "bqual"));
    BOOST_TEST(xarm::encode_pg_gid(xarm::xid(42, "gtrid", "bqual")) == "42_Z3RyaWQ=_YnF1YWw=");
    BOOST_TEST(xarm::pq::parse_recovered_gid("foreign-gid").is_unparsed());
    BOOST_TEST(xarm::pq::parse_recovered_gid("42_Z3RyaWQ_YnF1YWw=").is_unparsed());  // unpadded
    auto v = xarm::pq::parse_recovered({"1_YQ==_", "x"});
    BOOST_REQUIRE_EQUAL(v.size(), 2u);
    BOOST_TEST(v[0] == xarm::xid(1, "a", ""));
    BOOST_TEST(v[1].is_unparsed());
}

BOOST_AUTO_TEST_CASE(write_tags) {
    using xarm::pq::tag_proves_write;
    BOOST_TEST(tag_proves_write("UPDATE 1"));
    BOOST_TEST(tag_proves_write("INSERT 0 12"));
    BOOST_TEST(tag_proves_write("DELETE 3"));
    BOOST_TEST(!tag_proves_write("UPDATE 0"));
    BOOST_TEST(!tag_proves_write("INSERT 0 0"));
    BOOST_TEST(!tag_proves_write("SELECT 5"));
    BOOST_TEST(!tag_proves_write("CREATE TABLE"));
    BOOST_TEST(!tag_proves_write(""));
}

BOOST_AUTO_TEST_CASE(sqlstate_table) {
    using xarm::pq::op;
    using xarm::pq::xa_code_for;
    BOOST_TEST(xarm::pq::rollback_code_for("40P01") == XA_RBDEADLOCK);
    BOOST_TEST(xarm::pq::rollback_code_for("40001") == XA_RBTRANSIENT);
    BOOST_TEST(xarm::pq::rollback_code_for("23505") == XA_RBINTEGRITY);
    BOOST_TEST(xarm::pq::rollback_code_for("23503") == XA_RBINTEGRITY);
    BOOST_TEST(xarm::pq::rollback_code_for("57014") == XA_RBTIMEOUT);
    BOOST_TEST(xarm::pq::rollback_code_for("55P03") == XA_RBTIMEOUT);
    BOOST_TEST(xarm::pq::rollback_code_for("42P01") == XA_RBROLLBACK);
    BOOST_TEST(xarm::pq::rollback_code_for("") == XA_RBROLLBACK);
    BOOST_TEST(xa_code_for("57P01", op::finish) == XAER_RMFAIL);
    BOOST_TEST(xa_code_for("08006", op::statement) == XAER_RMFAIL);
    BOOST_TEST(xa_code_for("42704", op::finish) == XAER_NOTA);
    BOOST_TEST(xa_code_for("42501", op::finish) == XAER_RMERR);
    // "prepared transaction ... is busy": another backend is finishing it; commit may retry.
    BOOST_TEST(xa_code_for("55000", op::commit_prepared) == XA_RETRY);
    BOOST_TEST(xa_code_for("42704", op::commit_prepared) == XAER_NOTA);
    BOOST_TEST(xa_code_for("55000", op::finish) == XAER_RMERR);  // xa_rollback has no XA_RETRY
    BOOST_TEST(xa_code_for("23503", op::prepare) == XA_RBINTEGRITY);
    BOOST_TEST(xa_code_for("0A000", op::prepare) == XA_RBOTHER);
    BOOST_TEST(xa_code_for("42601", op::statement) == XAER_RMERR);
    BOOST_TEST(xa_code_for("40P01", op::statement) == XA_RBDEADLOCK);
    BOOST_TEST(xarm::pq::explain("0A000", op::prepare).find("temporary") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(capabilities_without_prepared_transactions) {
    auto c = xarm::pq::capabilities_for(0);
    BOOST_TEST(!c.has(xarm::capability::two_phase));
    BOOST_TEST(!c.has(xarm::capability::recovery));
    BOOST_TEST(c.get(xarm::capability::two_phase).reason.find("max_prepared_transactions") !=
               std::string::npos);
    BOOST_TEST(c.has(xarm::capability::one_phase));
    auto y = xarm::pq::capabilities_for(64);
    for (auto cap : {xarm::capability::two_phase, xarm::capability::one_phase,
                     xarm::capability::recovery, xarm::capability::read_only_vote,
                     xarm::capability::join, xarm::capability::suspend_resume})
        BOOST_TEST(y.has(cap), xarm::to_string(cap));
    for (auto cap :
         {xarm::capability::migrate, xarm::capability::async, xarm::capability::interleave}) {
        BOOST_TEST(!y.has(cap), xarm::to_string(cap));
        BOOST_TEST(!y.get(cap).reason.empty());
    }
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------- C++ API

BOOST_AUTO_TEST_SUITE(cpp, *utf::precondition(needs{"XARM_TEST_PQ"}))

BOOST_FIXTURE_TEST_CASE(two_phase_commit, fx) {
    auto c = xarm::connect("pq", info);
    auto x = make_xid();
    c.tpc_begin(x);
    BOOST_TEST(c.execute(update(1, 5)) == 1);
    c.tpc_prepare();
    BOOST_TEST(is_prepared(x));
    BOOST_TEST(value(1) == 0);  // not visible before commit
    c.tpc_commit();
    BOOST_TEST(!is_prepared(x));
    BOOST_TEST(value(1) == 5);
    // the connection is free for the next branch
    auto y = make_xid();
    c.tpc_begin(y);
    c.execute(update(2, 7));
    c.tpc_prepare();
    c.tpc_rollback();
    BOOST_TEST(!is_prepared(y));
    BOOST_TEST(value(2) == 0);
}

BOOST_FIXTURE_TEST_CASE(one_phase_and_rollback, fx) {
    auto c = xarm::connect("pq", info);
    auto x = make_xid();
    c.tpc_begin(x);
    c.execute(update(1, 3));
    c.tpc_commit();  // one phase
    BOOST_TEST(value(1) == 3);
    BOOST_TEST(!is_prepared(x));
    auto y = make_xid();
    c.tpc_begin(y);
    c.execute(update(1, 4));
    c.tpc_rollback();  // active branch
    BOOST_TEST(value(1) == 3);
    // a local transaction afterwards: autocommit off as PEP 249 wants
    c.execute(update(2, 9));
    BOOST_TEST(value(2) == 0);
    c.commit();
    BOOST_TEST(value(2) == 9);
}

// tpc_defer: a statement queued behind the branch's pending BEGIN goes with the branch's
// first statement (simple or bound), or alone before prepare or a one-phase commit; never
// dropped but by withdrawal or rollback.
BOOST_FIXTURE_TEST_CASE(deferred_statement_is_part_of_the_branch, fx) {
    run(admin.get(), fmt::format("CREATE TABLE {}_p (k text PRIMARY KEY)", table));
    auto c = xarm::connect("pq", info);
    const std::string ins = fmt::format("INSERT INTO {}_p (k) VALUES (?)", table);
    auto defer = [&](const std::string& k) {
        const xarm::value args[] = {xarm::value(k)};
        return c.tpc_defer(ins, std::span<const xarm::value>(args));
    };
    auto has = [&](const std::string& k) {
        raw_res r(PQexec(admin.get(), fmt::format("SELECT count(*) FROM {}_p WHERE k = {}", table,
                                                  xarm::pq::quote_literal(k))
                                          .c_str()));
        return std::string(PQgetvalue(r.get(), 0, 0)) == "1";
    };
    // With a simple statement; the value needs escaping ('\ and a quote).
    c.tpc_begin(make_xid());
    BOOST_TEST(defer("simple 'q' \\ x"));
    c.execute(update(1, 5));
    BOOST_TEST(!defer("too late"));  // the first round trip has gone
    BOOST_TEST(!c.tpc_withdraw_deferred());
    c.tpc_commit();
    BOOST_TEST(has("simple 'q' \\ x"));
    BOOST_TEST(!has("too late"));
    // With a bound statement, then two-phase.
    c.tpc_begin(make_xid());
    BOOST_TEST(defer("bound"));
    BOOST_TEST(c.execute(fmt::format("UPDATE {} SET v = ? WHERE id = 1", table), 6) == 1);
    BOOST_TEST((c.tpc_prepare() == xarm::vote::ok));
    c.tpc_commit();
    BOOST_TEST(has("bound"));
    BOOST_TEST(value(1) == 6);
    // No statement: sent before prepare (a write: no read-only vote) or a one-phase commit.
    c.tpc_begin(make_xid());
    BOOST_TEST(defer("alone, prepared"));
    BOOST_TEST((c.tpc_prepare() == xarm::vote::ok));
    c.tpc_commit();
    BOOST_TEST(has("alone, prepared"));
    c.tpc_begin(make_xid());
    BOOST_TEST(defer("alone, one phase"));
    c.tpc_commit();
    BOOST_TEST(has("alone, one phase"));
    // Withdrawn while unsent; dropped by a rollback, sent or not.
    c.tpc_begin(make_xid());
    BOOST_TEST(defer("withdrawn"));
    BOOST_TEST(c.tpc_withdraw_deferred());
    c.execute(update(2, 1));
    c.tpc_commit();
    BOOST_TEST(!has("withdrawn"));
    BOOST_TEST(value(2) == 1);
    c.tpc_begin(make_xid());
    BOOST_TEST(defer("rolled back unsent"));
    c.tpc_rollback();
    c.tpc_begin(make_xid());
    BOOST_TEST(defer("rolled back sent"));
    c.execute(update(2, 2));
    c.tpc_rollback();
    BOOST_TEST(!has("rolled back unsent"));
    BOOST_TEST(!has("rolled back sent"));
    BOOST_TEST(value(2) == 1);
    // Its failure is the branch's: the statement it went with fails, nothing commits.
    c.tpc_begin(make_xid());
    BOOST_TEST(defer("bound"));  // a duplicate key
    BOOST_CHECK_THROW(c.execute(update(2, 3)), xarm::error);
    BOOST_CHECK_THROW(c.tpc_commit(), xarm::error);
    BOOST_TEST(value(2) == 1);
    // The application deallocated every statement: parsed anew.
    c.execute("DEALLOCATE ALL");
    c.commit();
    c.tpc_begin(make_xid());
    BOOST_TEST(defer("after deallocate"));
    c.execute(update(2, 4));
    c.tpc_commit();
    BOOST_TEST(has("after deallocate"));
    BOOST_TEST(value(2) == 4);
}

BOOST_FIXTURE_TEST_CASE(local_transaction_blocks_tpc_begin, fx) {
    auto c = xarm::connect("pq", info);
    c.execute(update(1, 1));
    auto e = expect_throw<xarm::error>([&] { c.tpc_begin(make_xid()); });
    BOOST_TEST(e.xa_code() == XAER_OUTSIDE);
    c.rollback();
    BOOST_TEST(value(1) == 0);
    c.tpc_begin(make_xid());
    c.tpc_rollback();
}

BOOST_FIXTURE_TEST_CASE(commit_from_other_connection_and_thread, fx) {
    auto x = make_xid();
    {
        auto c = xarm::connect("pq", info);
        c.tpc_begin(x);
        c.execute(update(1, 11));
        c.tpc_prepare();
    }  // closed between prepare and commit
    BOOST_TEST(is_prepared(x));
    auto done = std::async(std::launch::async, [&] {
        auto d = xarm::connect("pq", info);
        auto rec = d.tpc_recover();
        bool found = std::find(rec.begin(), rec.end(), x) != rec.end();
        if (found) d.tpc_commit(x);
        return found;
    });
    BOOST_TEST(done.get());
    BOOST_TEST(!is_prepared(x));
    BOOST_TEST(value(1) == 11);
    // and the rollback of a recovered branch from yet another connection
    auto y = make_xid();
    {
        auto c = xarm::connect("pq", info);
        c.tpc_begin(y);
        c.execute(update(2, 12));
        c.tpc_prepare();
        auto d = xarm::connect("pq", info);
        d.tpc_rollback(y);
    }
    BOOST_TEST(!is_prepared(y));
    BOOST_TEST(value(2) == 0);
}

BOOST_FIXTURE_TEST_CASE(recover_does_not_begin_a_transaction, fx) {
    // psycopg: tpc_recover outside a transaction leaves the connection outside one.
    auto c = xarm::connect("pq", info);
    c.tpc_recover();
    auto* pg = static_cast<PGconn*>(c.native_handle());
    BOOST_TEST(PQtransactionStatus(pg) == PQTRANS_IDLE);
    c.tpc_begin(make_xid());  // no XAER_OUTSIDE
    c.tpc_rollback();
}

BOOST_FIXTURE_TEST_CASE(read_only_branch, fx) {
    auto c = xarm::connect("pq", info);
    // a SELECT only: votes read-only, nothing prepared
    auto x = make_xid();
    c.tpc_begin(x);
    auto r = c.query(fmt::format("SELECT v FROM {} WHERE id = 1", table));
    BOOST_REQUIRE_EQUAL(r.rows.size(), 1u);
    BOOST_TEST(*r.rows[0][0] == "0");
    c.tpc_prepare();
    BOOST_TEST(!is_prepared(x));
    c.tpc_commit();
    BOOST_TEST(!is_prepared(x));
    // no statement at all
    auto y = make_xid();
    c.tpc_begin(y);
    c.tpc_prepare();
    c.tpc_commit();
    BOOST_TEST(!is_prepared(y));
    // and the connection is clean and usable for a writing branch
    auto z = make_xid();
    c.tpc_begin(z);
    c.execute(update(1, 2));
    c.tpc_prepare();
    BOOST_TEST(is_prepared(z));
    c.tpc_commit();
    BOOST_TEST(value(1) == 2);
    BOOST_TEST(std::string(xarm::xa_code_name(XA_RDONLY)) == "XA_RDONLY");
}

// DEALLOCATE ALL through the API drops the read-only check statement too: the next
// check parses it anew instead of failing the branch.
BOOST_FIXTURE_TEST_CASE(deallocate_all_through_the_api, fx) {
    auto c = xarm::connect("pq", info);
    for (int i = 0; i < 3; ++i) {
        auto x = make_xid();
        c.tpc_begin(x);
        c.query(fmt::format("SELECT v FROM {}", table));
        if (i == 1) c.execute("DEALLOCATE ALL");
        BOOST_TEST((c.tpc_prepare() == xarm::vote::read_only));
        c.tpc_commit();
        BOOST_TEST(!is_prepared(x));
    }
}

BOOST_FIXTURE_TEST_CASE(failed_statement_then_prepare, fx) {
    auto c = xarm::connect("pq", info);
    auto x = make_xid();
    c.tpc_begin(x);
    c.execute(update(1, 6));
    auto e = expect_throw<xarm::database_error>(
        [&] { c.execute("SELECT * FROM no_such_table_xarm_pq"); });
    BOOST_TEST(e.sqlstate() == "42P01");
    auto rb = expect_throw<xarm::rollback_error>([&] { c.tpc_prepare(); });
    BOOST_TEST(rb.xa_code() == XA_RBROLLBACK);
    BOOST_TEST(rb.sqlstate() == "42P01");
    BOOST_TEST(!is_prepared(x));
    BOOST_TEST(value(1) == 0);
    // the first statement fails to parse, so its BEGIN never ran: still a rollback
    auto y = make_xid();
    c.tpc_begin(y);
    expect_throw<xarm::database_error>([&] { c.execute("SELEC 1"); });
    auto rb2 = expect_throw<xarm::rollback_error>([&] { c.tpc_prepare(); });
    BOOST_TEST(rb2.sqlstate() == "42601");
    BOOST_TEST(!is_prepared(y));
    // usable again
    auto z = make_xid();
    c.tpc_begin(z);
    c.execute(update(1, 8));
    c.tpc_prepare();
    c.tpc_commit();
    BOOST_TEST(value(1) == 8);
}

BOOST_FIXTURE_TEST_CASE(bound_parameters_in_branches, fx) {
    auto c = xarm::connect("pq", info);
    const auto upd = fmt::format("UPDATE {} SET v = ? WHERE id = ?", table);
    // The first statement of a branch takes its BEGIN along in one pipeline; when it
    // fails, that is the error that aborted the branch.
    auto x = make_xid();
    c.tpc_begin(x);
    auto e = expect_throw<xarm::data_error>(
        [&] { c.execute(fmt::format("UPDATE {} SET v = 1 / ? WHERE id = ?", table), 0, 1); });
    BOOST_TEST(e.sqlstate() == "22012");
    auto rb = expect_throw<xarm::rollback_error>([&] { c.tpc_prepare(); });
    BOOST_TEST(rb.sqlstate() == "22012");
    BOOST_TEST(!is_prepared(x));
    // A write seen in the command tag: plain PREPARE TRANSACTION.
    auto y = make_xid();
    c.tpc_begin(y);
    BOOST_TEST(c.execute(upd, 7, 1) == 1);
    BOOST_TEST((c.tpc_prepare() == xarm::vote::ok));
    BOOST_TEST(is_prepared(y));
    c.tpc_commit();
    BOOST_TEST(value(1) == 7);
    // Reads only: the read-only vote.
    c.tpc_begin(make_xid());
    BOOST_TEST(c.query(fmt::format("SELECT v FROM {} WHERE id = ?", table), 1).scalar<int>() == 7);
    BOOST_TEST((c.tpc_prepare() == xarm::vote::read_only));
    c.tpc_commit();
    // A local transaction begins with the first statement, BEGIN pipelined.
    BOOST_TEST(c.execute(upd, 9, 2) == 1);
    c.rollback();
    BOOST_TEST(value(2) == 0);
    // Text with a NUL byte is refused rather than cut short; nothing was sent.
    expect_throw<xarm::data_error>([&] { c.execute(upd, std::string("a\0b", 3), 1); });
    c.rollback();
    // Values never reach the text: a quote and a $1 stay data.
    auto r = c.query("SELECT ?::text AS a, ? AS b", "it's $1 -- ?", xarm::bytes{});
    c.rollback();
    BOOST_TEST(r[0].get<std::string>("a") == "it's $1 -- ?");
    BOOST_TEST(r[0].get<xarm::bytes>("b").empty());
    BOOST_TEST(!r[0]["b"].is_null());
}

BOOST_FIXTURE_TEST_CASE(results_decoded_by_type_oid, fx) {
    auto c = xarm::connect("pq", info);
    auto r = c.query(
        "SELECT 1::int2 AS a, 2::int8 AS b, true AS c, 1.5::float8 AS d, "
        "'-Infinity'::float8 AS e, '\\x00ff'::bytea AS f, "
        "TIMESTAMP '2024-01-02 03:04:05.123456' AS g, "
        "TIMESTAMPTZ '2024-01-02 03:04:05.5+02' AS h, 12.50::numeric AS i, "
        "'infinity'::timestamp AS j, NULL::int AS k, 'x'::varchar AS l");
    c.rollback();
    const auto& row = r[0];
    using vt = xarm::value_type;
    BOOST_TEST((row["a"].type() == vt::integer && row["b"].type() == vt::integer));
    BOOST_TEST(r.columns()[1].type_name == "int8");
    BOOST_TEST(r.columns()[1].type_id == 20);
    BOOST_TEST(row.get<bool>("c"));
    BOOST_TEST(row.get<double>("d") == 1.5);
    BOOST_TEST(std::isinf(row.get<double>("e")));
    BOOST_TEST((row.get<xarm::bytes>("f") == xarm::bytes{std::byte{0}, std::byte{0xff}}));
    BOOST_TEST(xarm::format_timestamp(row.get<xarm::timestamp>("g")) ==
               "2024-01-02 03:04:05.123456");
    BOOST_TEST(xarm::format_timestamp(row.get<xarm::timestamp>("h")) ==
               "2024-01-02 01:04:05.500000");
    BOOST_TEST((row["i"].type() == vt::text));
    BOOST_TEST(row.get<double>("i") == 12.5);
    BOOST_TEST(row.get<std::string>("j") == "infinity");
    BOOST_TEST(row["k"].is_null());
    BOOST_TEST(r.columns()[11].type_name == "varchar");
}

// Issue 21: an integer, real or boolean bound where nothing gives the parameter a type
// comes back as bound (it was text: PostgreSQL infers text for an untyped parameter),
// through execute and a prepared statement alike; where the context gives the type,
// values convert as before, and text still binds to any type.
BOOST_FIXTURE_TEST_CASE(bare_parameters_keep_their_type, fx) {
    auto c = xarm::connect("pq", info);
    auto r = c.query("SELECT ? AS a, ? AS b, ? AS c, ? AS d, ? AS e, ? AS f", 5,
                     std::int64_t{5000000000}, 1.5, true, "x", xarm::value{});
    c.rollback();
    std::vector<std::string> types;
    for (const auto& col : r.columns()) types.push_back(col.type_name);
    BOOST_TEST(
        types == (std::vector<std::string>{"int4", "int8", "float8", "bool", "text", "text"}),
        boost::test_tools::per_element());
    BOOST_TEST(r[0].get<std::int64_t>("a") == 5);
    BOOST_TEST(r[0].get<std::int64_t>("b") == 5000000000);
    BOOST_TEST(r[0].get<double>("c") == 1.5);
    BOOST_TEST(r[0].get<bool>("d"));
    BOOST_TEST(r[0]["f"].is_null());
    // A prepared statement: parsed once more per set of types it is executed with.
    auto st = c.prepare("SELECT ? AS a");
    BOOST_TEST(st.query(5).columns()[0].type_name == "int4");
    BOOST_TEST(st.query("x").scalar<std::string>() == "x");
    BOOST_TEST(st.query(7).scalar<int>() == 7);
    BOOST_TEST(st.query(false).columns()[0].type_name == "bool");
    c.rollback();
    // The context decides: an int4 widens to numeric or int8, fits a function taking
    // integer; text binds to jsonb and to an integer column.
    BOOST_TEST(c.query("SELECT ?::numeric / 4", 5).scalar<double>() == 1.25);
    BOOST_TEST(
        c.query("SELECT ? + ?", 2000000000, std::int64_t{5000000000}).scalar<std::int64_t>() ==
        7000000000);
    BOOST_TEST(c.query("SELECT substr('hello', ?)", 2).scalar<std::string>() == "ello");
    BOOST_TEST(c.query("SELECT ?::jsonb -> ?", R"({"k": 3})", "k").scalar<int>() == 3);
    c.rollback();
    BOOST_TEST(c.execute(fmt::format("UPDATE {} SET v = ? WHERE id = ?", table), "12", 1) == 1);
    BOOST_TEST(c.execute(fmt::format("UPDATE {} SET v = ? WHERE id = ?", table), 2.0, 2) == 1);
    c.commit();
    BOOST_TEST(value(1) == 12);
    BOOST_TEST(value(2) == 2);
}

BOOST_FIXTURE_TEST_CASE(prepared_statements_on_the_server, fx) {
    auto c = xarm::connect("pq", info);
    auto count = [&] {
        auto n = c.query("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'xarm_%'")
                     .scalar<int>();
        c.rollback();
        return n;
    };
    {
        auto st = c.prepare(fmt::format("UPDATE {} SET v = ? WHERE id = ?", table));
        BOOST_TEST(count() == 1);
        for (int v = 1; v <= 3; ++v) {
            auto x = make_xid();
            xarm::branch b(c, x);
            BOOST_TEST(st.execute(v, 1) == 1);
            b.prepare();
            b.commit();
        }
        BOOST_TEST(value(1) == 3);
    }
    // Parsed once at prepare (types left to the server), once for the types of (int, int)
    // bound three times; deallocated at the next prepare, not from the destructor.
    BOOST_TEST(count() == 2);
    auto st2 = c.prepare("SELECT ?::int + 1");
    BOOST_TEST(count() == 1);
    BOOST_TEST(st2.query(41).scalar<int>() == 42);
    c.rollback();
    expect_throw<xarm::database_error>([&] { c.prepare("SELEC ?"); });
}

BOOST_FIXTURE_TEST_CASE(deferred_constraint_at_prepare, fx) {
    const std::string parent = table + "_p", child = table + "_c";
    run(admin.get(), fmt::format("CREATE TABLE {} (id int PRIMARY KEY)", parent));
    run(admin.get(), fmt::format("CREATE TABLE {} (id int, p int REFERENCES {}(id) DEFERRABLE "
                                 "INITIALLY DEFERRED)",
                                 child, parent));
    auto c = xarm::connect("pq", info);
    auto x = make_xid();
    c.tpc_begin(x);
    c.execute(fmt::format("INSERT INTO {} VALUES (1, 999)", child));  // deferred: no error yet
    auto e = expect_throw<xarm::rollback_error>([&] { c.tpc_prepare(); });
    BOOST_TEST(e.xa_code() == XA_RBINTEGRITY);
    BOOST_TEST(e.sqlstate() == "23503");
    BOOST_TEST(!is_prepared(x));
    BOOST_TEST(scalar(admin.get(), "SELECT count(*) FROM " + child) == "0");
    // one-phase commit: the same violation at COMMIT
    auto y = make_xid();
    c.tpc_begin(y);
    c.execute(fmt::format("INSERT INTO {} VALUES (2, 998)", child));
    auto e2 = expect_throw<xarm::rollback_error>([&] { c.tpc_commit(); });
    BOOST_TEST(e2.xa_code() == XA_RBINTEGRITY);
    BOOST_TEST(scalar(admin.get(), "SELECT count(*) FROM " + child) == "0");
    // and the connection is usable
    c.tpc_begin(make_xid());
    c.execute(update(1, 1));
    c.tpc_commit();
    BOOST_TEST(value(1) == 1);
    run(admin.get(), fmt::format("DROP TABLE {}, {}", child, parent));
}

BOOST_FIXTURE_TEST_CASE(temp_table_in_branch, fx) {
    auto c = xarm::connect("pq", info);
    auto x = make_xid();
    c.tpc_begin(x);
    c.execute("CREATE TEMP TABLE xarm_tmp (a int)");
    c.execute(update(1, 4));
    auto e = expect_throw<xarm::rollback_error>([&] { c.tpc_prepare(); });
    BOOST_TEST(e.sqlstate() == "0A000");
    BOOST_TEST(e.xa_code() == XA_RBOTHER);
    BOOST_TEST(std::string(e.what()).find("temporary") != std::string::npos, e.what());
    BOOST_TEST(!is_prepared(x));
    BOOST_TEST(value(1) == 0);
}

BOOST_FIXTURE_TEST_CASE(deadlock_between_branches, fx) {
    auto a = xarm::connect("pq", info);
    auto b = xarm::connect("pq", info);
    auto xa = make_xid(), xb = make_xid();
    a.tpc_begin(xa);
    b.tpc_begin(xb);
    a.execute(update(1, 1));
    b.execute(update(2, 2));
    auto fa = std::async(std::launch::async, [&]() -> int {
        try {
            a.execute(update(2, 1));
            return 0;
        } catch (const xarm::error& e) {
            return e.xa_code();
        }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    int rb_code = 0;
    try {
        b.execute(update(1, 2));
    } catch (const xarm::error& e) {
        rb_code = e.xa_code();
    }
    const int ra = fa.get();
    BOOST_TEST((ra == XA_RBDEADLOCK) != (rb_code == XA_RBDEADLOCK));  // exactly one victim
    auto& victim = ra == XA_RBDEADLOCK ? a : b;
    auto& winner = ra == XA_RBDEADLOCK ? b : a;
    auto e = expect_throw<xarm::rollback_error>([&] { victim.tpc_prepare(); });
    BOOST_TEST(e.xa_code() == XA_RBDEADLOCK);
    BOOST_TEST(e.sqlstate() == "40P01");
    winner.tpc_prepare();
    winner.tpc_commit();
    BOOST_TEST(value(1) == (ra == XA_RBDEADLOCK ? 2 : 1));
    BOOST_TEST(value(2) == (ra == XA_RBDEADLOCK ? 2 : 1));
}

BOOST_FIXTURE_TEST_CASE(serialization_failure_and_timeout, fx) {
    auto c = xarm::connect("pq", info);
    auto x = make_xid();
    c.tpc_begin(x);
    c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
    BOOST_TEST(*c.query(fmt::format("SELECT v FROM {} WHERE id = 1", table)).rows.at(0).at(0) ==
               "0");
    run(admin.get(), update(1, 9));  // a concurrent committed update
    auto e = expect_throw<xarm::rollback_error>([&] { c.execute(update(1, 10)); });
    BOOST_TEST(e.xa_code() == XA_RBTRANSIENT);
    BOOST_TEST(e.sqlstate() == "40001");
    auto p = expect_throw<xarm::rollback_error>([&] { c.tpc_prepare(); });
    BOOST_TEST(p.xa_code() == XA_RBTRANSIENT);
    BOOST_TEST(!is_prepared(x));
    // a statement cancelled by statement_timeout: the branch rolls back as XA_RBTIMEOUT
    auto y = make_xid();
    c.tpc_begin(y);
    c.execute(update(2, 5));
    c.execute("SET LOCAL statement_timeout = 50");
    auto t = expect_throw<xarm::database_error>([&] { c.execute("SELECT pg_sleep(2)"); });
    BOOST_TEST(t.sqlstate() == "57014");
    auto pt = expect_throw<xarm::rollback_error>([&] { c.tpc_prepare(); });
    BOOST_TEST(pt.xa_code() == XA_RBTIMEOUT);
    BOOST_TEST(!is_prepared(y));
    BOOST_TEST(value(1) == 9);
    BOOST_TEST(value(2) == 0);
}

BOOST_FIXTURE_TEST_CASE(binary_xids_round_trip, fx) {
    const std::string g = prefix + std::string("'\\\0\xff", 4) + "\"";
    const std::string bq = std::string("\0'\\\xff", 4);
    xarm::xid x(0x7fffffff, g, bq);
    auto c = xarm::connect("pq", info);
    c.tpc_begin(x);
    c.execute(update(1, 21));
    c.tpc_prepare();
    BOOST_TEST(is_prepared(x));
    auto d = xarm::connect("pq", info);
    auto rec = d.tpc_recover();
    BOOST_TEST((std::find(rec.begin(), rec.end(), x) != rec.end()));
    // through the switch: the XID bytes come back intact
    int rmid = open_rm();
    std::vector<XID> page(64);
    std::set<std::string> seen;
    bool found = false;
    long flags = TMSTARTRSCAN;
    for (;;) {
        int n = sw.xa_recover_entry(page.data(), static_cast<long>(page.size()), rmid, flags);
        BOOST_REQUIRE_GE(n, 0);
        for (int i = 0; i < n; ++i)
            if (xarm::xid::from_c(&page[i]) == x) found = true;
        flags = TMNOFLAGS;
        if (n < static_cast<int>(page.size())) break;
    }
    sw.xa_recover_entry(page.data(), 0, rmid, TMENDRSCAN);
    BOOST_TEST(found);
    XID cx = to_c(x);
    BOOST_TEST(sw.xa_commit_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(!is_prepared(x));
    BOOST_TEST(value(1) == 21);
    // a foreign name with quotes and backslashes is committed by name, never unescaped
    const std::string foreign = "foreign-" + prefix + "-it's \\ \"odd\"";
    auto raw2 = raw(info);
    run(raw2.get(), "BEGIN");
    run(raw2.get(), update(2, 22));
    run(raw2.get(), "PREPARE TRANSACTION " + xarm::pq::quote_literal(foreign));
    auto all = d.tpc_recover();
    auto f = xarm::xid::unparsed(foreign);
    BOOST_REQUIRE((std::find(all.begin(), all.end(), f) != all.end()));
    d.tpc_commit(f);
    BOOST_TEST(value(2) == 22);
    auto g2 = gids();
    BOOST_TEST((std::find(g2.begin(), g2.end(), foreign) == g2.end()));
}

BOOST_FIXTURE_TEST_CASE(pgjdbc_psycopg_compatibility, fx) {
    // A branch prepared by a Java or Python application (gid written in their format by
    // hand here) is recovered as the same xid and finished by xarm.
    const std::string g = prefix + "-jdbc";
    const std::string gid = "42_" + b64(g) + "_" + b64("bqual");
    auto r = raw(info);
    run(r.get(), "BEGIN");
    run(r.get(), update(1, 31));
    run(r.get(), "PREPARE TRANSACTION '" + gid + "'");
    auto c = xarm::connect("pq", info);
    auto rec = c.tpc_recover();
    xarm::xid want(42, g, "bqual");
    BOOST_REQUIRE((std::find(rec.begin(), rec.end(), want) != rec.end()));
    c.tpc_commit(want);
    BOOST_TEST(value(1) == 31);
    // and ours is written the way they read it
    xarm::xid mine(42, prefix + "-mine", "bqual");
    c.tpc_begin(mine);
    c.execute(update(2, 32));
    c.tpc_prepare();
    auto gs = gids();
    BOOST_TEST(
        (std::find(gs.begin(), gs.end(), "42_" + b64(prefix + "-mine") + "_YnF1YWw=") != gs.end()));
    c.tpc_rollback();
    BOOST_TEST(value(2) == 0);
}

BOOST_FIXTURE_TEST_CASE(unknown_xid, fx) {
    auto c = xarm::connect("pq", info);
    auto x = make_xid();
    auto e = expect_throw<xarm::programming_error>([&] { c.tpc_commit(x); });
    BOOST_TEST(e.xa_code() == XAER_NOTA);
    BOOST_TEST(e.sqlstate() == "42704");
    auto e2 = expect_throw<xarm::programming_error>([&] { c.tpc_rollback(x); });
    BOOST_TEST(e2.xa_code() == XAER_NOTA);
    // pgjdbc testPreparingPreparedXid: preparing twice is a protocol error
    c.tpc_begin(x);
    c.execute(update(1, 1));
    c.tpc_prepare();
    auto e3 = expect_throw<xarm::programming_error>([&] { c.tpc_prepare(); });
    BOOST_TEST(e3.xa_code() == XAER_PROTO);
    c.tpc_rollback();
    // a second branch with the gid of a prepared one is refused at prepare, rolled back
    auto d = xarm::connect("pq", info);
    auto y = make_xid();
    c.tpc_begin(y);
    c.execute(update(1, 2));
    c.tpc_prepare();
    d.tpc_begin(y);
    d.execute(update(2, 2));
    auto e4 = expect_throw<xarm::rollback_error>([&] { d.tpc_prepare(); });
    BOOST_TEST(e4.sqlstate() == "42710");
    c.tpc_commit();
    BOOST_TEST(value(1) == 2);
    BOOST_TEST(value(2) == 0);
}

BOOST_FIXTURE_TEST_CASE(other_owner, fx) {
    const std::string other = server("XARM_TEST_PQ_OTHER");
    run(admin.get(), fmt::format("GRANT ALL ON {} TO PUBLIC", table));
    auto o = xarm::connect("pq", other);
    auto x = make_xid();
    o.tpc_begin(x);
    o.execute(update(1, 41));
    o.tpc_prepare();
    auto c = xarm::connect("pq", info);
    auto rec = c.tpc_recover();
    BOOST_TEST((std::find(rec.begin(), rec.end(), x) == rec.end()));  // not ours to finish
    auto e = expect_throw<xarm::database_error>([&] { c.tpc_commit(x); });
    BOOST_TEST(e.xa_code() == XAER_RMERR);
    BOOST_TEST(e.sqlstate() == "42501");
    BOOST_TEST(std::string(e.what()).find("another role") != std::string::npos, e.what());
    BOOST_TEST(is_prepared(x));
    auto orec = o.tpc_recover();
    BOOST_TEST((std::find(orec.begin(), orec.end(), x) != orec.end()));
    o.tpc_rollback();
    BOOST_TEST(!is_prepared(x));
    BOOST_TEST(value(1) == 0);
}

BOOST_FIXTURE_TEST_CASE(native_handle_direct_mode, fx) {
    auto c = xarm::connect("pq", info);
    auto* pg = c.native_handle<PGconn*>();
    BOOST_TEST(pg == c.native_handle());
    BOOST_CHECK_THROW(c.native_handle<sqlite3*>(), xarm::programming_error);
    auto x = make_xid();
    c.tpc_begin(x);  // direct mode: BEGIN is sent now
    BOOST_TEST(PQtransactionStatus(pg) == PQTRANS_INTRANS);
    run(pg, update(1, 51));
    c.tpc_prepare();
    BOOST_TEST(is_prepared(x));
    c.tpc_commit();
    BOOST_TEST(value(1) == 51);
}

BOOST_FIXTURE_TEST_CASE(terminate_backend_mid_branch, fx) {
    auto c = xarm::connect("pq", info);
    auto x = make_xid();
    c.tpc_begin(x);
    c.execute(update(1, 61));
    const int pid = PQbackendPID(static_cast<PGconn*>(c.native_handle()));
    BOOST_TEST(scalar(admin.get(), fmt::format("SELECT pg_terminate_backend({}, 5000)", pid)) ==
               "t");
    auto e = expect_throw<xarm::operational_error>([&] { c.execute(update(2, 61)); });
    BOOST_TEST(e.xa_code() == XAER_RMFAIL);
    BOOST_TEST((e.sqlstate() == "57P01" || e.sqlstate() == "08006"), e.sqlstate());
    BOOST_TEST(value(1) == 0);
    BOOST_TEST(!is_prepared(x));
}

BOOST_FIXTURE_TEST_CASE(capabilities_declared, fx) {
    auto c = xarm::connect("pq", info);
    auto caps = c.capabilities();
    BOOST_TEST(caps.has(xarm::capability::two_phase));
    BOOST_TEST(caps.has(xarm::capability::recovery));
    BOOST_TEST(caps.has(xarm::capability::read_only_vote));
    BOOST_TEST(!caps.has(xarm::capability::interleave));
    BOOST_TEST(!caps.has(xarm::capability::migrate));
    BOOST_TEST(!caps.has(xarm::capability::async));
    BOOST_TEST(caps.list().size() == std::size(xarm::all_capabilities));
}

BOOST_FIXTURE_TEST_CASE(bad_login_and_conninfo, fx) {
    const std::string secret = "wrong-Secret-9137";
    const std::string bad =
        "host=127.0.0.1 port=" + test_port() + " dbname=xarm user=xarm password=" + secret;
    auto e = expect_throw<xarm::error>([&] { xarm::connect("pq", bad); });
    BOOST_TEST(e.xa_code() == XAER_RMERR);
    BOOST_TEST(std::string(e.what()).find(secret) == std::string::npos, e.what());
    BOOST_TEST(std::string(e.what()).find("password authentication failed") != std::string::npos,
               e.what());
    auto u = expect_throw<xarm::error>([&] {
        xarm::connect("pq", "postgresql://xarm:" + secret + "@127.0.0.1:" + test_port() + "/xarm");
    });
    BOOST_TEST(std::string(u.what()).find(secret) == std::string::npos, u.what());
    auto i = expect_throw<xarm::error>([&] { xarm::connect("pq", "hostx=foo"); });
    BOOST_TEST(i.xa_code() == XAER_INVAL);
    BOOST_TEST(std::string(i.what()).find("hostx") != std::string::npos, i.what());
    auto j =
        expect_throw<xarm::error>([&] { xarm::connect("pq", "password='" + secret + " host"); });
    BOOST_TEST(j.xa_code() == XAER_INVAL);
    BOOST_TEST(std::string(j.what()).find(secret) == std::string::npos, j.what());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------- C switch

BOOST_AUTO_TEST_SUITE(c_switch, *utf::precondition(needs{"XARM_TEST_PQ"}))

BOOST_FIXTURE_TEST_CASE(exports, fx) {
    BOOST_TEST(lixa_get_xa_switch() == &xarm_pq_switch);
    BOOST_TEST(std::string(xarm_pq_switch.name) == "xarm_pq");
    BOOST_TEST(xarm_pq_conn(99999) == nullptr);
}

BOOST_FIXTURE_TEST_CASE(two_phase_and_one_phase, fx) {
    int rmid = open_rm();
    PGconn* pg = xarm_pq_conn(rmid);
    BOOST_REQUIRE(pg != nullptr);
    auto x = make_xid();
    XID cx = to_c(x);
    BOOST_TEST(sw.xa_start_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    run(pg, update(1, 71));
    BOOST_TEST(sw.xa_end_entry(&cx, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_prepare_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(is_prepared(x));
    BOOST_TEST(value(1) == 0);
    BOOST_TEST(sw.xa_commit_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(value(1) == 71);
    BOOST_TEST(!is_prepared(x));
    // one phase
    auto y = make_xid();
    XID cy = to_c(y);
    BOOST_TEST(sw.xa_start_entry(&cy, rmid, TMNOFLAGS) == XA_OK);
    run(pg, update(2, 72));
    BOOST_TEST(sw.xa_end_entry(&cy, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_commit_entry(&cy, rmid, TMONEPHASE) == XA_OK);
    BOOST_TEST(value(2) == 72);
    // rollback of a prepared and of an idle branch
    auto z = make_xid();
    XID cz = to_c(z);
    BOOST_TEST(sw.xa_start_entry(&cz, rmid, TMNOFLAGS) == XA_OK);
    run(pg, update(1, 73));
    BOOST_TEST(sw.xa_end_entry(&cz, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_prepare_entry(&cz, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_rollback_entry(&cz, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_start_entry(&cz, rmid, TMNOFLAGS) == XA_OK);
    run(pg, update(1, 74));
    BOOST_TEST(sw.xa_end_entry(&cz, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_rollback_entry(&cz, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(value(1) == 71);
    BOOST_TEST(PQtransactionStatus(pg) == PQTRANS_IDLE);
}

// The application ends the branch's block itself on the PGconn: no answer may claim a
// rollback (a monitor would roll the other branches back while this work may be
// committed); phase two says XA_HEURHAZ, whatever the application sent.
BOOST_FIXTURE_TEST_CASE(a_block_ended_on_the_pgconn_is_a_hazard_never_a_rollback, fx) {
    int rmid = open_rm();
    PGconn* pg = xarm_pq_conn(rmid);
    BOOST_REQUIRE(pg != nullptr);
    int written = 0;
    auto hazard = [&](const char* ender, bool prepare_first, bool one_phase) {
        auto x = make_xid();
        XID cx = to_c(x);
        BOOST_REQUIRE(sw.xa_start_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
        written = ++counter;
        run(pg, update(1, written));
        run(pg, ender);
        BOOST_TEST(sw.xa_end_entry(&cx, rmid, TMSUCCESS) == XA_OK, ender);
        if (prepare_first)
            BOOST_TEST(sw.xa_prepare_entry(&cx, rmid, TMNOFLAGS) == XAER_RMERR, ender);
        const int rc = one_phase ? sw.xa_commit_entry(&cx, rmid, TMONEPHASE)
                                 : sw.xa_rollback_entry(&cx, rmid, TMNOFLAGS);
        BOOST_TEST(rc == XA_HEURHAZ, ender);
        BOOST_TEST(sw.xa_forget_entry(&cx, rmid, TMNOFLAGS) == XA_OK, ender);
        // The connection goes on: the next branch is an ordinary one.
        auto y = make_xid();
        XID cy = to_c(y);
        BOOST_REQUIRE(sw.xa_start_entry(&cy, rmid, TMNOFLAGS) == XA_OK);
        const int next = ++counter;
        run(pg, update(2, next));
        BOOST_TEST(sw.xa_end_entry(&cy, rmid, TMSUCCESS) == XA_OK);
        BOOST_TEST(sw.xa_commit_entry(&cy, rmid, TMONEPHASE) == XA_OK);
        BOOST_TEST(value(2) == next);
    };
    hazard("COMMIT", false, true);
    BOOST_TEST(value(1) == written);  // committed on the PGconn, as the hazard allowed
    hazard("COMMIT", true, false);    // a monitor's prepare, then its rollback
    hazard("ROLLBACK", false, false);
}

BOOST_FIXTURE_TEST_CASE(read_only_vote, fx) {
    int rmid = open_rm();
    PGconn* pg = xarm_pq_conn(rmid);
    auto x = make_xid();
    XID cx = to_c(x);
    BOOST_TEST(sw.xa_start_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    run(pg, fmt::format("SELECT * FROM {}", table));
    BOOST_TEST(sw.xa_end_entry(&cx, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_prepare_entry(&cx, rmid, TMNOFLAGS) == XA_RDONLY);
    BOOST_TEST(!is_prepared(x));
    BOOST_TEST(PQtransactionStatus(pg) == PQTRANS_IDLE);
    // the branch is finished: committing it again is XAER_NOTA
    BOOST_TEST(sw.xa_commit_entry(&cx, rmid, TMNOFLAGS) == XAER_NOTA);
}

// The read-only check is a statement parsed once per connection (no parse or plan at
// each prepare), and only sent when no command tag of the application's statements on the
// PGconn proved a write. Dropped by DEALLOCATE ALL or DISCARD ALL, it is parsed anew;
// deallocated by name, it costs one (read-only) branch, then is parsed anew.
BOOST_FIXTURE_TEST_CASE(read_only_check_parsed_once, fx) {
    int rmid = open_rm();
    PGconn* pg = xarm_pq_conn(rmid);
    auto branch = [&](bool write) {
        auto x = make_xid();
        XID cx = to_c(x);
        BOOST_REQUIRE(sw.xa_start_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
        run(pg, write ? update(1, counter) : fmt::format("SELECT * FROM {}", table));
        BOOST_REQUIRE(sw.xa_end_entry(&cx, rmid, TMSUCCESS) == XA_OK);
        const int vote = sw.xa_prepare_entry(&cx, rmid, TMNOFLAGS);
        BOOST_TEST(vote == (write ? XA_OK : XA_RDONLY), last(rmid).message);
        if (vote == XA_OK) BOOST_TEST(sw.xa_commit_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
        BOOST_TEST(PQtransactionStatus(pg) == PQTRANS_IDLE);
    };
    auto checks = [&] {
        return scalar(pg,
                      "SELECT count(*) FROM pg_catalog.pg_prepared_statements "
                      "WHERE name LIKE 'xarm\\_ro\\_check\\_%'");
    };
    branch(true);  // "UPDATE 1" proved the write: PREPARE alone, no check
    BOOST_TEST(checks() == "0");
    branch(false);
    branch(true);
    BOOST_TEST(checks() == "1");
    // Dropped by the application on the connection (DEALLOCATE ALL inside the branch
    // here, DISCARD ALL between branches): its tag says so, the check is parsed anew and
    // no branch suffers, read-only or not.
    for (const char* drop : {"DEALLOCATE ALL", "DISCARD ALL"}) {
        for (const bool write : {false, true}) {
            auto y = make_xid();
            XID cy = to_c(y);
            if (std::string(drop) == "DISCARD ALL") run(pg, drop);
            BOOST_REQUIRE(sw.xa_start_entry(&cy, rmid, TMNOFLAGS) == XA_OK);
            run(pg, write ? update(2, ++counter) : fmt::format("SELECT * FROM {}", table));
            if (std::string(drop) == "DEALLOCATE ALL") run(pg, drop);
            BOOST_REQUIRE(sw.xa_end_entry(&cy, rmid, TMSUCCESS) == XA_OK);
            const int rc = sw.xa_prepare_entry(&cy, rmid, TMNOFLAGS);
            BOOST_TEST(rc == (write ? XA_OK : XA_RDONLY), drop << ": " << last(rmid).message);
            if (rc == XA_OK) BOOST_TEST(sw.xa_commit_entry(&cy, rmid, TMNOFLAGS) == XA_OK);
            if (write) BOOST_TEST(value(2) == counter);
        }
        branch(false);
        BOOST_TEST(checks() == "1");
    }
    // Deallocated by name: the tag does not say which statement, so the check fails, the
    // (read-only) branch is rolled back and says why; the check is parsed anew.
    auto y = make_xid();
    XID cy = to_c(y);
    BOOST_REQUIRE(sw.xa_start_entry(&cy, rmid, TMNOFLAGS) == XA_OK);
    run(pg, fmt::format("SELECT * FROM {}", table));
    const std::string name = scalar(pg,
                                    "SELECT name FROM pg_catalog.pg_prepared_statements "
                                    "WHERE name LIKE 'xarm\\_ro\\_check\\_%'");
    run(pg, "DEALLOCATE " + name);
    BOOST_REQUIRE(sw.xa_end_entry(&cy, rmid, TMSUCCESS) == XA_OK);
    const int rc = sw.xa_prepare_entry(&cy, rmid, TMNOFLAGS);
    BOOST_TEST((rc >= XA_RBBASE && rc <= XA_RBEND), rc);
    BOOST_TEST(last(rmid).message.find("deallocated") != std::string::npos, last(rmid).message);
    BOOST_TEST(!is_prepared(y));
    branch(false);
    branch(true);
    BOOST_TEST(checks() == "1");
}

// Through the switch the command tags of the application's own statements decide
// whether the read-only check is needed; a tag that may have undone the write (the
// block or a savepoint rolled back on the PGconn) leaves the vote to the check again.
BOOST_FIXTURE_TEST_CASE(write_proved_by_the_applications_tags, fx) {
    int rmid = open_rm();
    PGconn* pg = xarm_pq_conn(rmid);
    auto branch = [&](const std::vector<std::string>& sql, int vote) {
        auto x = make_xid();
        XID cx = to_c(x);
        BOOST_REQUIRE(sw.xa_start_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
        for (const auto& s : sql) run(pg, s);
        BOOST_REQUIRE(sw.xa_end_entry(&cx, rmid, TMSUCCESS) == XA_OK);
        const int rc = sw.xa_prepare_entry(&cx, rmid, TMNOFLAGS);
        BOOST_TEST(rc == vote, sql.back() << ": " << last(rmid).message);
        if (rc == XA_OK) BOOST_TEST(sw.xa_commit_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
        BOOST_TEST(PQtransactionStatus(pg) == PQTRANS_IDLE);
    };
    // ended and begun again on the PGconn: the new block wrote nothing
    branch({update(1, 81), "ROLLBACK", "BEGIN", "SELECT 1"}, XA_RDONLY);
    BOOST_TEST(value(1) == 0);
    // a savepoint's write undone: the transaction still has an id, so it is prepared
    branch({"SAVEPOINT s", update(1, 82), "ROLLBACK TO SAVEPOINT s"}, XA_OK);
    BOOST_TEST(value(1) == 0);
    // "UPDATE 0" proves nothing, nor does "SELECT 1" that wrote: the check decides
    branch({fmt::format("UPDATE {} SET v = 84 WHERE id = -1", table)}, XA_RDONLY);
    branch({fmt::format("WITH w AS (UPDATE {} SET v = 83 WHERE id = 1 RETURNING 1) "
                        "SELECT count(*) FROM w",
                        table)},
           XA_OK);
    BOOST_TEST(value(1) == 83);
}

BOOST_FIXTURE_TEST_CASE(join_and_suspend_resume, fx) {
    int rmid = open_rm();
    PGconn* pg = xarm_pq_conn(rmid);
    auto x = make_xid();
    XID cx = to_c(x);
    BOOST_TEST(sw.xa_start_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    run(pg, update(1, 81));
    BOOST_TEST(sw.xa_end_entry(&cx, rmid, TMSUSPEND) == XA_OK);
    BOOST_TEST(sw.xa_start_entry(&cx, rmid, TMRESUME) == XA_OK);
    run(pg, update(2, 82));
    BOOST_TEST(sw.xa_end_entry(&cx, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_start_entry(&cx, rmid, TMJOIN) == XA_OK);
    run(pg, fmt::format("UPDATE {} SET v = v + 1 WHERE id = 1", table));
    BOOST_TEST(sw.xa_end_entry(&cx, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_prepare_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_commit_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(value(1) == 82);
    BOOST_TEST(value(2) == 82);
    // migrate is refused as declared
    auto y = make_xid();
    XID cy = to_c(y);
    BOOST_TEST(sw.xa_start_entry(&cy, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_end_entry(&cy, rmid, TMSUSPEND | TMMIGRATE) == XAER_RMERR);
    BOOST_TEST(last(rmid).sqlstate == "0A000");
    BOOST_TEST(sw.xa_end_entry(&cy, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_rollback_entry(&cy, rmid, TMNOFLAGS) == XA_OK);
}

BOOST_FIXTURE_TEST_CASE(failed_statement_then_prepare, fx) {
    int rmid = open_rm();
    PGconn* pg = xarm_pq_conn(rmid);
    auto x = make_xid();
    XID cx = to_c(x);
    BOOST_TEST(sw.xa_start_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    run(pg, update(1, 91));
    raw_res r(PQexec(pg, "SELECT 1/0"));
    BOOST_TEST(PQresultStatus(r.get()) == PGRES_FATAL_ERROR);
    const int rc = sw.xa_end_entry(&cx, rmid, TMSUCCESS);
    BOOST_TEST((rc >= XA_RBBASE && rc <= XA_RBEND), rc);
    auto d = last(rmid);
    BOOST_TEST(d.xa_code == rc);
    BOOST_TEST(d.message.find("division by zero") != std::string::npos, d.message);
    BOOST_TEST(sw.xa_prepare_entry(&cx, rmid, TMNOFLAGS) == rc);  // rolled back, nothing prepared
    BOOST_TEST(!is_prepared(x));
    BOOST_TEST(PQtransactionStatus(pg) == PQTRANS_IDLE);
    BOOST_TEST(value(1) == 0);
}

BOOST_FIXTURE_TEST_CASE(unknown_xid_and_last_error, fx) {
    int rmid = open_rm();
    auto x = make_xid();
    XID cx = to_c(x);
    BOOST_TEST(sw.xa_commit_entry(&cx, rmid, TMNOFLAGS) == XAER_NOTA);
    auto d = last(rmid);
    BOOST_TEST(d.xa_code == XAER_NOTA);
    BOOST_TEST(d.sqlstate == "42704");
    BOOST_TEST(d.message.find("does not exist") != std::string::npos, d.message);
    BOOST_TEST(sw.xa_rollback_entry(&cx, rmid, TMNOFLAGS) == XAER_NOTA);
    xarm_diag ok{};
    BOOST_TEST(sw.xa_recover_entry(nullptr, 0, rmid, TMSTARTRSCAN | TMENDRSCAN) == 0);
    BOOST_TEST(xarm_last_error(rmid, &ok) == 1);
}

BOOST_FIXTURE_TEST_CASE(recovery_paging_with_foreign_gids, fx) {
    // 7 of ours and 2 foreign names, listed in pages of 3: each of ours exactly once,
    // no foreign one, full pages until the end.
    std::set<xarm::xid> ours;
    int rmid = open_rm();
    {
        // one session prepares them all: a prepared branch no longer holds it
        for (int i = 0; i < 7; ++i) {
            auto x = make_xid("p" + std::to_string(i));
            XID cx = to_c(x);
            BOOST_REQUIRE_EQUAL(sw.xa_start_entry(&cx, rmid, TMNOFLAGS), XA_OK);
            run(xarm_pq_conn(rmid), fmt::format("INSERT INTO {} VALUES ({}, 0)", table, 200 + i));
            BOOST_REQUIRE_EQUAL(sw.xa_end_entry(&cx, rmid, TMSUCCESS), XA_OK);
            BOOST_REQUIRE_EQUAL(sw.xa_prepare_entry(&cx, rmid, TMNOFLAGS), XA_OK);
            ours.insert(x);
            if (i == 3) {
                auto r = raw(info);
                run(r.get(), "BEGIN");
                run(r.get(), fmt::format("INSERT INTO {} VALUES (100, 0)", table));
                run(r.get(),
                    "PREPARE TRANSACTION " + xarm::pq::quote_literal("foreign-" + prefix + "-1"));
                run(r.get(), "BEGIN");
                run(r.get(), fmt::format("INSERT INTO {} VALUES (101, 0)", table));
                run(r.get(),
                    "PREPARE TRANSACTION " + xarm::pq::quote_literal("foreign-" + prefix + "-2"));
            }
        }
    }
    const long count = 3;
    std::vector<XID> page(count);
    std::multiset<xarm::xid> seen;
    std::vector<int> sizes;
    long flags = TMSTARTRSCAN;
    for (int guard = 0; guard < 1000; ++guard) {
        int n = sw.xa_recover_entry(page.data(), count, rmid, flags);
        BOOST_REQUIRE_GE(n, 0);
        sizes.push_back(n);
        for (int i = 0; i < n; ++i) seen.insert(xarm::xid::from_c(&page[i]));
        flags = TMNOFLAGS;
        if (n < count) break;
    }
    BOOST_TEST(sw.xa_recover_entry(page.data(), count, rmid, TMENDRSCAN) >= 0);
    for (std::size_t i = 0; i + 1 < sizes.size(); ++i) BOOST_TEST(sizes[i] == count);
    for (const auto& x : ours) BOOST_TEST(seen.count(x) == 1u, x.to_string());
    for (const auto& x : seen) BOOST_TEST(!x.is_unparsed());
    // a continuation without an open scan is a protocol error
    BOOST_TEST(sw.xa_recover_entry(page.data(), count, rmid, TMNOFLAGS) == XAER_PROTO);
    // the C++ API sees the foreign names, and finishes them by name
    auto c = xarm::connect("pq", info);
    auto all = c.tpc_recover();
    for (int k = 1; k <= 2; ++k) {
        auto f = xarm::xid::unparsed("foreign-" + prefix + "-" + std::to_string(k));
        BOOST_REQUIRE((std::find(all.begin(), all.end(), f) != all.end()));
        if (k == 1)
            c.tpc_commit(f);
        else
            c.tpc_rollback(f);
    }
    BOOST_TEST(scalar(admin.get(),
                      fmt::format("SELECT count(*) FROM {} WHERE id IN (100, 101)", table)) == "1");
    // finish ours through the switch, alternating commit and rollback
    int k = 0;
    for (const auto& x : ours) {
        XID cx = to_c(x);
        BOOST_TEST((k++ % 2 ? sw.xa_rollback_entry(&cx, rmid, TMNOFLAGS)
                            : sw.xa_commit_entry(&cx, rmid, TMNOFLAGS)) == XA_OK);
        BOOST_TEST(!is_prepared(x));
    }
    BOOST_TEST(scalar(admin.get(), fmt::format("SELECT count(*) FROM {} WHERE id >= 200", table)) ==
               "4");
}

BOOST_FIXTURE_TEST_CASE(threads_get_their_own_connection, fx) {
    int rmid = next_rmid++;
    auto worker = [&](int id) -> std::pair<int, bool> {
        std::string s = info;
        if (sw.xa_open_entry(s.data(), rmid, TMNOFLAGS) != XA_OK) return {0, false};
        PGconn* pg = xarm_pq_conn(rmid);
        int pid = PQbackendPID(pg);
        auto x = make_xid("t" + std::to_string(id));
        XID cx = to_c(x);
        bool ok = sw.xa_start_entry(&cx, rmid, TMNOFLAGS) == XA_OK;
        raw_res r(PQexec(pg, update(id, 100 + id).c_str()));
        ok = ok && PQresultStatus(r.get()) == PGRES_COMMAND_OK;
        ok = ok && sw.xa_end_entry(&cx, rmid, TMSUCCESS) == XA_OK;
        ok = ok && sw.xa_prepare_entry(&cx, rmid, TMNOFLAGS) == XA_OK;
        ok = ok && sw.xa_commit_entry(&cx, rmid, TMNOFLAGS) == XA_OK;
        ok = ok && sw.xa_close_entry(s.data(), rmid, TMNOFLAGS) == XA_OK;
        return {pid, ok};
    };
    auto f1 = std::async(std::launch::async, worker, 1);
    auto f2 = std::async(std::launch::async, worker, 2);
    auto [p1, ok1] = f1.get();
    auto [p2, ok2] = f2.get();
    BOOST_TEST(ok1);
    BOOST_TEST(ok2);
    BOOST_TEST(p1 != p2);
    BOOST_TEST(value(1) == 101);
    BOOST_TEST(value(2) == 102);
    BOOST_TEST(xarm_pq_conn(rmid) == nullptr);  // this thread never opened it
}

BOOST_FIXTURE_TEST_CASE(prepare_here_commit_on_another_thread, fx) {
    int rmid = open_rm();
    auto x = make_xid();
    XID cx = to_c(x);
    BOOST_TEST(sw.xa_start_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    run(xarm_pq_conn(rmid), update(1, 111));
    BOOST_TEST(sw.xa_end_entry(&cx, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_prepare_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    auto rc = std::async(std::launch::async, [&] {
                  std::string s = info;
                  sw.xa_open_entry(s.data(), rmid, TMNOFLAGS);
                  int r = sw.xa_commit_entry(&cx, rmid, TMNOFLAGS);
                  sw.xa_close_entry(s.data(), rmid, TMNOFLAGS);
                  return r;
              }).get();
    BOOST_TEST(rc == XA_OK);
    BOOST_TEST(value(1) == 111);
    BOOST_TEST(!is_prepared(x));
}

BOOST_FIXTURE_TEST_CASE(terminate_backend_then_reopen, fx) {
    int rmid = open_rm();
    PGconn* pg = xarm_pq_conn(rmid);
    auto x = make_xid();
    XID cx = to_c(x);
    BOOST_TEST(sw.xa_start_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    run(pg, update(1, 121));
    BOOST_TEST(scalar(admin.get(), fmt::format("SELECT pg_terminate_backend({}, 5000)",
                                               PQbackendPID(pg))) == "t");
    // the application's next statement fails; xa_end cannot know yet, prepare finds out
    raw_res r(PQexec(pg, update(2, 121).c_str()));
    BOOST_TEST(PQresultStatus(r.get()) != PGRES_COMMAND_OK);
    const int end_rc = sw.xa_end_entry(&cx, rmid, TMSUCCESS);
    BOOST_TEST((end_rc == XAER_RMFAIL || end_rc == XA_OK), end_rc);
    if (end_rc == XA_OK) BOOST_TEST(sw.xa_prepare_entry(&cx, rmid, TMNOFLAGS) == XAER_RMFAIL);
    auto d = last(rmid);
    BOOST_TEST(d.xa_code == XAER_RMFAIL);
    BOOST_TEST(!d.sqlstate.empty());
    BOOST_TEST(!d.message.empty());
    BOOST_TEST(!is_prepared(x));
    BOOST_TEST(value(1) == 0);
    // reopen the rmid and work again
    BOOST_TEST(sw.xa_close_entry(const_cast<char*>(""), rmid, TMNOFLAGS) == XA_OK);
    std::string s = info;
    BOOST_TEST(sw.xa_open_entry(s.data(), rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_start_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    run(xarm_pq_conn(rmid), update(1, 122));
    BOOST_TEST(sw.xa_end_entry(&cx, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_commit_entry(&cx, rmid, TMONEPHASE) == XA_OK);
    BOOST_TEST(value(1) == 122);
}

BOOST_FIXTURE_TEST_CASE(bad_login_keeps_rmid_openable, fx) {
    const std::string secret = "Wr0ng-pw-4242";
    int rmid = next_rmid++;
    rmids.push_back(rmid);
    std::string bad =
        "host=127.0.0.1 port=" + test_port() + " dbname=xarm user=xarm password=" + secret;
    BOOST_TEST(sw.xa_open_entry(bad.data(), rmid, TMNOFLAGS) == XAER_RMERR);
    auto d = last(rmid);
    BOOST_TEST(d.xa_code == XAER_RMERR);
    BOOST_TEST(d.message.find(secret) == std::string::npos, d.message);
    BOOST_TEST(d.message.find("password authentication failed") != std::string::npos, d.message);
    std::string junk = "nonsense_key=1 password=" + secret;
    BOOST_TEST(sw.xa_open_entry(junk.data(), rmid, TMNOFLAGS) == XAER_INVAL);
    d = last(rmid);
    BOOST_TEST(d.message.find("nonsense_key") != std::string::npos, d.message);
    BOOST_TEST(d.message.find(secret) == std::string::npos, d.message);
    std::string good = info;
    BOOST_TEST(sw.xa_open_entry(good.data(), rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(xarm_pq_conn(rmid) != nullptr);
}

BOOST_FIXTURE_TEST_CASE(server_restart_between_prepare_and_commit, fx) {
    const char* ds = std::getenv("XARM_DEVSERVERS");
    BOOST_REQUIRE_MESSAGE(ds != nullptr, "XARM_DEVSERVERS is not set");
    int rmid = open_rm();
    auto x = make_xid();
    XID cx = to_c(x);
    BOOST_TEST(sw.xa_start_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    run(xarm_pq_conn(rmid), update(1, 131));
    BOOST_TEST(sw.xa_end_entry(&cx, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_prepare_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    admin.reset();
    BOOST_REQUIRE_EQUAL(std::system((std::string(ds) + " restart pq >/dev/null 2>&1").c_str()), 0);
    // the old connection is gone: in doubt
    BOOST_TEST(sw.xa_commit_entry(&cx, rmid, TMNOFLAGS) == XAER_RMFAIL);
    BOOST_TEST(last(rmid).xa_code == XAER_RMFAIL);
    // a new connection finds the branch and commits it
    BOOST_TEST(sw.xa_close_entry(const_cast<char*>(""), rmid, TMNOFLAGS) == XA_OK);
    std::string s = info;
    BOOST_TEST(sw.xa_open_entry(s.data(), rmid, TMNOFLAGS) == XA_OK);
    std::vector<XID> page(64);
    bool found = false;
    long flags = TMSTARTRSCAN;
    for (;;) {
        int n = sw.xa_recover_entry(page.data(), 64, rmid, flags);
        BOOST_REQUIRE_GE(n, 0);
        for (int i = 0; i < n; ++i) found = found || xarm::xid::from_c(&page[i]) == x;
        flags = TMNOFLAGS;
        if (n < 64) break;
    }
    sw.xa_recover_entry(page.data(), 0, rmid, TMENDRSCAN);
    BOOST_TEST(found);
    BOOST_TEST(sw.xa_commit_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    admin = raw(info);
    run(admin.get(), "SET client_min_messages = warning");
    BOOST_TEST(value(1) == 131);
    BOOST_TEST(!is_prepared(x));
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------- max_prepared_transactions = 0
// The shared server must keep its setting, so this case starts a scratch PostgreSQL.

using xarm::testing::can_start_postgres;
using xarm::testing::scratch_pg;

BOOST_AUTO_TEST_CASE(max_prepared_transactions_zero, *utf::precondition(can_start_postgres{})) {
    scratch_pg pg("-c max_prepared_transactions=0");
    // C++: two-phase declared missing, naming the setting; one-phase still works
    auto c = xarm::connect("pq", pg.info());
    auto caps = c.capabilities();
    BOOST_TEST(!caps.has(xarm::capability::two_phase));
    BOOST_TEST(!caps.has(xarm::capability::recovery));
    BOOST_TEST(caps.get(xarm::capability::two_phase).reason.find("max_prepared_transactions") !=
               std::string::npos);
    c.execute("CREATE TABLE t (v int)");
    c.commit();
    xarm::xid x(1, "no2pc", "b");
    c.tpc_begin(x);
    c.execute("INSERT INTO t VALUES (1)");
    auto e = expect_throw<xarm::not_supported_error>([&] { c.tpc_prepare(); });
    BOOST_TEST(e.sqlstate() == "0A000");
    BOOST_TEST(std::string(e.what()).find("max_prepared_transactions") != std::string::npos,
               e.what());
    c.tpc_rollback();
    c.tpc_begin(x);
    c.execute("INSERT INTO t VALUES (2)");
    c.tpc_commit();  // one phase
    BOOST_TEST(c.query("SELECT sum(v) FROM t").rows.at(0).at(0).value() == "2");
    c.commit();
    expect_throw<xarm::not_supported_error>([&] { c.tpc_recover(); });
    // C switch: the same refusal, with SQLSTATE 0A000 and the setting named
    std::string info = pg.info();
    const int rmid = next_rmid++;
    BOOST_REQUIRE_EQUAL(sw.xa_open_entry(info.data(), rmid, TMNOFLAGS), XA_OK);
    XID cx = to_c(x);
    BOOST_TEST(sw.xa_start_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    run(xarm_pq_conn(rmid), "INSERT INTO t VALUES (3)");
    BOOST_TEST(sw.xa_end_entry(&cx, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_prepare_entry(&cx, rmid, TMNOFLAGS) == XAER_RMERR);
    auto d = last(rmid);
    BOOST_TEST(d.sqlstate == "0A000");
    BOOST_TEST(d.message.find("max_prepared_transactions") != std::string::npos, d.message);
    BOOST_TEST(sw.xa_rollback_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    std::vector<XID> page(4);
    BOOST_TEST(sw.xa_recover_entry(page.data(), 4, rmid, TMSTARTRSCAN) == XAER_RMERR);
    BOOST_TEST(sw.xa_close_entry(info.data(), rmid, TMNOFLAGS) == XA_OK);
}

// ---------------------------------------------------------------- a busy prepared transaction
// COMMIT PREPARED of a branch that another session is still finishing (there: its
// PREPARE waits for a synchronous standby that never comes, see scratch_pg.hpp) answers
// 55000 "prepared transaction ... is busy": transient, XA_RETRY, never XAER_RMERR; the
// same call commits once the other session is done. A scratch server: the shared one
// must never wait for a standby.

BOOST_AUTO_TEST_CASE(busy_prepared_transaction_is_xa_retry,
                     *utf::precondition(can_start_postgres{})) {
    scratch_pg pg(xarm::testing::never_synchronous);
    const std::string local = pg.info() + xarm::testing::local_commit;
    auto c = xarm::connect("pq", local);
    c.execute("CREATE TABLE t (v int)");
    c.commit();
    const xarm::xid x(4711, unique("busy"), "b");
    xarm::testing::busy_branch busy(pg.info(), x, "INSERT INTO t VALUES (1)");

    // C++: the commit by xid (a recovering monitor's) says "try again", naming why
    auto e = expect_throw<xarm::database_error>([&] { c.tpc_commit(x); });
    BOOST_TEST(e.xa_code() == XA_RETRY, xarm::xa_code_name(e.xa_code()));
    BOOST_TEST(e.sqlstate() == "55000");
    BOOST_TEST(std::string(e.what()).find("busy") != std::string::npos, e.what());
    // C switch: XA_RETRY, SQLSTATE 55000 in xarm_last_error
    std::string info = local;
    const int rmid = next_rmid++;
    BOOST_REQUIRE_EQUAL(sw.xa_open_entry(info.data(), rmid, TMNOFLAGS), XA_OK);
    XID cx = to_c(x);
    BOOST_TEST(sw.xa_commit_entry(&cx, rmid, TMNOFLAGS) == XA_RETRY);
    BOOST_TEST(last(rmid).sqlstate == "55000");
    BOOST_TEST(busy.waiting());  // it really was busy all along

    // the other session done: the same call commits, nothing stays prepared
    busy.release();
    BOOST_TEST(sw.xa_commit_entry(&cx, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(c.query("SELECT count(*) FROM t").rows.at(0).at(0).value() == "1");
    BOOST_TEST(c.query("SELECT count(*) FROM pg_prepared_xacts").rows.at(0).at(0).value() == "0");
    c.commit();
    BOOST_TEST(sw.xa_close_entry(info.data(), rmid, TMNOFLAGS) == XA_OK);
}

// ---------------------------------------------------------------- connection lost during COMMIT
// A COMMIT that takes time (a deferred constraint trigger that sleeps) and a session
// terminated meanwhile: the client cannot know whether the commit record was written, so
// a local or one-phase COMMIT whose connection is lost is in doubt, never "rolled back".

namespace {
struct slow_commit_table {
    std::string info = server("XARM_TEST_PQ");
    std::string table = sql_name(unique("t_slowc"));
    xarm::connection admin = xarm::connect("pq", info);
    slow_commit_table() {
        admin.execute(fmt::format("CREATE TABLE {} (v int)", table));
        admin.execute(
            fmt::format("CREATE FUNCTION {}_f() RETURNS trigger LANGUAGE plpgsql AS "
                        "$$BEGIN PERFORM pg_sleep(20); RETURN NULL; END$$",
                        table));
        admin.execute(fmt::format(
            "CREATE CONSTRAINT TRIGGER {0}_t AFTER INSERT ON {0} DEFERRABLE INITIALLY DEFERRED "
            "FOR EACH ROW EXECUTE FUNCTION {0}_f()",
            table));
        admin.commit();
    }
    ~slow_commit_table() {
        try {
            admin.rollback();
            admin.execute(fmt::format("DROP TABLE IF EXISTS {} CASCADE", table));
            admin.execute(fmt::format("DROP FUNCTION IF EXISTS {}_f()", table));
            admin.commit();
        } catch (...) {
        }
    }
};

std::string backend_pid(xarm::connection& c) {
    auto r = c.query("SELECT pg_backend_pid()::text");
    return r.rows.at(0).at(0).value();
}
}  // namespace

BOOST_AUTO_TEST_CASE(connection_lost_during_commit_is_in_doubt,
                     *utf::precondition(needs{"XARM_TEST_PQ"})) {
    slow_commit_table s;
    // a local transaction (PEP 249 commit)
    {
        auto c = xarm::connect("pq", s.info);
        const std::string pid = backend_pid(c);
        c.execute(fmt::format("INSERT INTO {} VALUES (1)", s.table));
        auto killer = xarm::testing::terminate_in_commit(s.info, pid, "PgSleep");
        auto e = expect_throw<xarm::operational_error>([&] { c.commit(); });
        killer.join();
        BOOST_TEST(e.in_doubt());
        BOOST_TEST(e.xa_code() == XAER_RMFAIL);
        const std::string m = e.what();
        BOOST_TEST(m.find("in doubt") != std::string::npos, m);
        BOOST_TEST(m.find("rolled back") == std::string::npos, m);
    }
    // a one-phase commit of a branch
    {
        auto c = xarm::connect("pq", s.info);
        const std::string pid = backend_pid(c);
        c.commit();
        c.tpc_begin(xarm::xid(4711, unique("slowc"), "b"));
        c.execute(fmt::format("INSERT INTO {} VALUES (2)", s.table));
        auto killer = xarm::testing::terminate_in_commit(s.info, pid, "PgSleep");
        auto e = expect_throw<xarm::operational_error>([&] { c.tpc_commit(); });
        killer.join();
        BOOST_TEST(e.in_doubt());
        const std::string m = e.what();
        BOOST_TEST(m.find("in doubt") != std::string::npos, m);
        BOOST_TEST(m.find("rolled back") == std::string::npos, m);
    }
    // (terminated inside the trigger, before the commit record: nothing committed)
    BOOST_TEST(s.admin.query("SELECT count(*) FROM " + s.table).rows.at(0).at(0).value() == "0");
    s.admin.commit();
}
