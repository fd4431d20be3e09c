// The MySQL/MariaDB driver against a real server: two-phase through the C switch and
// the C++ API, byte-exact recovery, the connection-affinity bridge, error mapping,
// and what MariaDB really does with join, suspend and read-only branches.
#define BOOST_TEST_MODULE xarm_mysql_tests
#include <boost/test/unit_test.hpp>

#include <cppconn/connection.h>
#include <cppconn/exception.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <fmt/format.h>
#include <mysql_driver.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "xarm/connection.hpp"
#include "xarm/driver/codec.hpp"
#include "xarm/driver/info.hpp"
#include "xarm/driver/protocol.hpp"
#include "xarm/xa.h"
#include "xarm/xarm.h"
#include "xarm_testing.hpp"

extern "C" struct xa_switch_t xarm_mysql_switch;
extern "C" sql::Connection* xarm_mysql_conn(int rmid);
extern "C" void xarm_mysql_counts(long* parked, long* registry);

namespace t = xarm::testing;
using xarm::xid;

namespace {

const auto needs_mysql = boost::unit_test::precondition(t::needs{"XARM_TEST_MYSQL"});

std::string info() {
    return t::server("XARM_TEST_MYSQL");
}

std::string ident(const std::string& prefix) {
    std::string s = t::unique(prefix);
    std::replace(s.begin(), s.end(), '-', '_');
    return s;
}

// A plain Connector/C++ connection from an info string: the "other client".
std::unique_ptr<sql::Connection> raw(const std::string& inf) {
    auto kv = xarm::parse_info(inf, {"host", "port", "socket", "user", "password", "database"});
    sql::ConnectOptionsMap m;
    m["hostName"] = sql::SQLString(kv.count("host") ? kv["host"] : "127.0.0.1");
    m["port"] = kv.count("port") ? std::stoi(kv["port"]) : 3306;
    if (kv.count("socket")) m["socket"] = sql::SQLString(kv["socket"]);
    m["userName"] = sql::SQLString(kv["user"]);
    m["password"] = sql::SQLString(kv["password"]);
    if (kv.count("database")) m["schema"] = sql::SQLString(kv["database"]);
    return std::unique_ptr<sql::Connection>(sql::mysql::get_mysql_driver_instance()->connect(m));
}

void exec(sql::Connection& c, const std::string& q) {
    std::unique_ptr<sql::Statement> s(c.createStatement());
    if (s->execute(q)) std::unique_ptr<sql::ResultSet> rs(s->getResultSet());
}

std::string scalar(sql::Connection& c, const std::string& q) {
    std::unique_ptr<sql::Statement> s(c.createStatement());
    std::unique_ptr<sql::ResultSet> rs(s->executeQuery(q));
    BOOST_REQUIRE(rs->next());
    return rs->getString(1).asStdString();
}

// A cleanup connection that never waits long for a lock, even behind a branch a
// broken driver leaked.
std::unique_ptr<sql::Connection> cleaner() {
    auto c = raw(info());
    exec(*c, "SET SESSION lock_wait_timeout = 5, innodb_lock_wait_timeout = 5");
    return c;
}

// Rolls back the prepared branches this process left (their gtrids carry its pid), by
// plain SQL, so that a driver whose recovery is broken cannot make the cleanup hang.
void roll_back_leftovers(sql::Connection& c) {
    const std::string mine = "-" + std::to_string(::getpid()) + "-";
    std::vector<std::string> names;
    {
        std::unique_ptr<sql::Statement> s(c.createStatement());
        std::unique_ptr<sql::ResultSet> rs(s->executeQuery("XA RECOVER"));
        while (rs->next()) {
            const auto fmt_id = rs->getInt64(1);
            const auto glen = static_cast<std::size_t>(rs->getInt64(2));
            const std::string data = rs->getString(4).asStdString();
            if (data.size() < glen || data.substr(0, glen).find(mine) == std::string::npos)
                continue;
            names.push_back(fmt::format("X'{}',X'{}',{}", xarm::hex_encode(data.substr(0, glen)),
                                        xarm::hex_encode(data.substr(glen)), fmt_id));
        }
    }
    for (const auto& n : names) {
        try {
            exec(c, "XA ROLLBACK " + n);
        } catch (const sql::SQLException&) {
            // Still attached to a live connection, or finished meanwhile.
        }
    }
}

// A unique InnoDB table, dropped at the end.
struct table {
    std::string name = ident("xm");
    table() {
        auto c = raw(info());
        exec(*c, "CREATE TABLE " + name + " (id INT PRIMARY KEY, v INT) ENGINE=InnoDB");
    }
    ~table() {
        try {
            auto c = cleaner();
            roll_back_leftovers(*c);
            exec(*c, "DROP TABLE IF EXISTS " + name);
        } catch (...) {
        }
    }
    long count() const {
        auto c = raw(info());
        return std::stol(scalar(*c, "SELECT COUNT(*) FROM " + name));
    }
    std::string insert(int id) const {
        return fmt::format("INSERT INTO {} VALUES ({}, 0)", name, id);
    }
};

xid new_xid(const std::string& bqual = "b", long fmt_id = 1) {
    return xid(fmt_id, t::unique("xm-g"), bqual);
}

XID to_c(const xid& x) {
    XID c{};
    x.to_c(c);
    return c;
}

xa_switch_t& sw() {
    return xarm_mysql_switch;
}

xarm_diag diag(int rmid) {
    xarm_diag d{};
    BOOST_TEST(xarm_last_error(rmid, &d) == 0);
    return d;
}

// One rmid opened through the C switch on the calling thread.
struct rm {
    int id;
    explicit rm(int rmid, std::string inf = info()) : id(rmid) {
        BOOST_REQUIRE_EQUAL(sw().xa_open_entry(inf.data(), id, TMNOFLAGS), XA_OK);
    }
    ~rm() { sw().xa_close_entry(const_cast<char*>(""), id, TMNOFLAGS); }
    int start(const xid& x, long f = TMNOFLAGS) {
        XID c = to_c(x);
        return sw().xa_start_entry(&c, id, f);
    }
    int end(const xid& x, long f = TMSUCCESS) {
        XID c = to_c(x);
        return sw().xa_end_entry(&c, id, f);
    }
    int prepare(const xid& x) {
        XID c = to_c(x);
        return sw().xa_prepare_entry(&c, id, TMNOFLAGS);
    }
    int commit(const xid& x, long f = TMNOFLAGS) {
        XID c = to_c(x);
        return sw().xa_commit_entry(&c, id, f);
    }
    int rollback(const xid& x) {
        XID c = to_c(x);
        return sw().xa_rollback_entry(&c, id, TMNOFLAGS);
    }
    int forget(const xid& x) {
        XID c = to_c(x);
        return sw().xa_forget_entry(&c, id, TMNOFLAGS);
    }
    sql::Connection& conn() {
        sql::Connection* c = xarm_mysql_conn(id);
        BOOST_REQUIRE(c != nullptr);
        return *c;
    }
    // Every prepared branch, read page by page through xa_recover.
    std::vector<xid> recover(long page, std::vector<int>* sizes = nullptr) {
        std::vector<xid> all;
        std::vector<XID> buf(static_cast<std::size_t>(page));
        long flags = TMSTARTRSCAN;
        while (true) {
            const int n = sw().xa_recover_entry(buf.data(), page, id, flags);
            BOOST_REQUIRE(n >= 0);
            if (sizes) sizes->push_back(n);
            for (int i = 0; i < n; ++i)
                all.push_back(xid::from_c(&buf[static_cast<std::size_t>(i)]));
            flags = TMNOFLAGS;
            if (n < page) break;
        }
        BOOST_TEST(sw().xa_recover_entry(buf.data(), 0, id, TMENDRSCAN) == 0);
        return all;
    }
};

bool listed(const std::vector<xid>& v, const xid& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
}

long connection_id(sql::Connection& c) {
    return std::stol(scalar(c, "SELECT CONNECTION_ID()"));
}

// Rolls back, at the end of the run, any branch this process left prepared after a
// failure (never another process's: the gtrid carries our pid).
struct cleanup {
    ~cleanup() {
        if (std::getenv("XARM_TEST_MYSQL") == nullptr) return;
        try {
            auto c = xarm::connect("mysql", std::getenv("XARM_TEST_MYSQL"));
            const std::string mark = fmt::format("-{}-", ::getpid());
            for (const auto& x : c.tpc_recover())
                if (!x.is_unparsed() && x.gtrid().rfind("xm-g" + mark, 0) == 0) c.tpc_rollback(x);
        } catch (...) {
        }
    }
};
BOOST_GLOBAL_FIXTURE(cleanup);

}  // namespace

BOOST_AUTO_TEST_SUITE(mysql_driver)

BOOST_AUTO_TEST_CASE(c_switch_two_phase_commit, *needs_mysql) {
    table tb;
    rm r(1);
    const xid x = new_xid();
    BOOST_TEST(r.start(x) == XA_OK);
    exec(r.conn(), tb.insert(1));
    BOOST_TEST(r.end(x) == XA_OK);
    BOOST_TEST(r.prepare(x) == XA_OK);
    BOOST_TEST(tb.count() == 0);
    {
        auto other = xarm::connect("mysql", info());
        BOOST_TEST(listed(other.tpc_recover(), x));
    }
    BOOST_TEST(r.commit(x) == XA_OK);
    BOOST_TEST(tb.count() == 1);
    auto other = xarm::connect("mysql", info());
    BOOST_TEST(!listed(other.tpc_recover(), x));
}

BOOST_AUTO_TEST_CASE(c_switch_prepared_rollback_and_one_phase, *needs_mysql) {
    table tb;
    rm r(1);
    const xid x = new_xid();
    BOOST_TEST(r.start(x) == XA_OK);
    exec(r.conn(), tb.insert(1));
    BOOST_TEST(r.end(x) == XA_OK);
    BOOST_TEST(r.prepare(x) == XA_OK);
    BOOST_TEST(r.rollback(x) == XA_OK);
    BOOST_TEST(tb.count() == 0);
    const xid y = new_xid();
    BOOST_TEST(r.start(y) == XA_OK);
    exec(r.conn(), tb.insert(2));
    BOOST_TEST(r.end(y) == XA_OK);
    BOOST_TEST(r.commit(y, TMONEPHASE) == XA_OK);
    BOOST_TEST(tb.count() == 1);
    const xid z = new_xid();
    BOOST_TEST(r.start(z) == XA_OK);
    exec(r.conn(), tb.insert(3));
    BOOST_TEST(r.end(z) == XA_OK);
    BOOST_TEST(r.rollback(z) == XA_OK);
    BOOST_TEST(tb.count() == 1);
}

BOOST_AUTO_TEST_CASE(cpp_api_two_phase_one_phase_rollback, *needs_mysql) {
    table tb;
    auto c = xarm::connect("mysql", info());
    auto x = c.xid(42, t::unique("xm-g"), "bq");
    c.tpc_begin(x);
    BOOST_TEST(c.execute(tb.insert(1)) == 1);
    c.tpc_prepare();
    BOOST_TEST(tb.count() == 0);
    c.tpc_commit();
    BOOST_TEST(tb.count() == 1);
    c.tpc_begin(c.xid(42, t::unique("xm-g"), ""));
    c.execute(tb.insert(2));
    c.tpc_commit();  // one phase
    BOOST_TEST(tb.count() == 2);
    c.tpc_begin(c.xid(42, t::unique("xm-g"), ""));
    c.execute(tb.insert(3));
    c.tpc_rollback();
    BOOST_TEST(tb.count() == 2);
    auto r = c.query("SELECT id, v, NULL AS n FROM " + tb.name + " ORDER BY id");
    BOOST_TEST(r.columns().size() == 3u);
    BOOST_TEST(r.rows.size() == 2u);
    BOOST_TEST(*r.rows[1][0] == "2");
    BOOST_TEST(!r.rows[1][2].has_value());
    c.rollback();
}

BOOST_AUTO_TEST_CASE(bound_parameters_and_typed_results, *needs_mysql) {
    table tb;
    auto c = xarm::connect("mysql", info());
    const auto ins = fmt::format("INSERT INTO {} VALUES (?, ?)", tb.name);
    c.tpc_begin(c.xid(42, t::unique("xm-g"), ""));
    BOOST_TEST(c.execute(ins, 1, 10) == 1);
    BOOST_TEST(c.execute(ins, 2, std::nullopt) == 1);
    BOOST_TEST((c.tpc_prepare() == xarm::vote::ok));
    c.tpc_commit();
    auto r = c.query(fmt::format("SELECT id, v, CAST(? AS DATETIME(6)) AS at, ? AS b, 2.5e0 AS d "
                                 "FROM {} ORDER BY id",
                                 tb.name),
                     "2024-01-02 03:04:05.123456", xarm::bytes{std::byte{0}, std::byte{0xff}});
    c.rollback();
    BOOST_TEST(r.size() == 2u);
    BOOST_TEST(r.columns()[0].type_name == "INT");
    BOOST_TEST(r[0].get<int>("v") == 10);
    BOOST_TEST(!r[1].get<std::optional<int>>("v"));
    BOOST_TEST((r[0]["at"].type() == xarm::value_type::time));
    BOOST_TEST(xarm::format_timestamp(r[0].get<xarm::timestamp>("at")) ==
               "2024-01-02 03:04:05.123456");
    BOOST_TEST((r[0].get<xarm::bytes>("b") == xarm::bytes{std::byte{0}, std::byte{0xff}}));
    BOOST_TEST(r[0].get<double>("d") == 2.5);
    // An update that matches nothing reports 0 rows.
    BOOST_TEST(c.execute(fmt::format("UPDATE {} SET v = ? WHERE id = ?", tb.name), 1, 99) == 0);
    c.rollback();
}

BOOST_AUTO_TEST_CASE(prepared_statement_follows_the_session_to_another_connection, *needs_mysql) {
    table tb;
    auto c = xarm::connect("mysql", info());
    auto st = c.prepare(fmt::format("INSERT INTO {} VALUES (?, ?)", tb.name));
    auto* first = c.native_handle<sql::Connection*>();
    // A branch prepared through the protocol verbs keeps its connection; the session
    // sets it aside and goes on on another, where the statement is prepared again.
    auto& s = c.session();
    auto x = new_xid();
    BOOST_REQUIRE_EQUAL(s.start(x, TMNOFLAGS), XA_OK);
    st.execute(1, 1);
    BOOST_REQUIRE_EQUAL(s.end(x, TMSUCCESS), XA_OK);
    BOOST_REQUIRE_EQUAL(s.prepare(x, TMNOFLAGS), XA_OK);
    BOOST_TEST(st.execute(2, 2) == 1);
    BOOST_TEST(c.native_handle<sql::Connection*>() != first);
    c.commit();
    c.tpc_commit(x);
    BOOST_TEST(tb.count() == 2);
    BOOST_CHECK_THROW(c.native_handle<PGconn*>(), xarm::programming_error);
}

BOOST_AUTO_TEST_CASE(binary_xids_round_trip_byte_exact, *needs_mysql) {
    table tb;
    // Quote, backslash, NUL and 0xff in both parts, the largest format id.
    const std::string g = "xm-g-" + std::to_string(::getpid()) + "-" +
                          std::string("q'uote\\back\0nul\xff", 16) + t::unique("-");
    // Two branches: one recovered while its connection lives (bridged in-process), one
    // after its connection closed (detached on the server).
    const xid a(0x7fffffff, g, std::string("\0'\\\xff", 4));
    const xid b(0, g + "2", std::string("\xff\0", 2));
    auto c1 = xarm::connect("mysql", info());
    c1.tpc_begin(a);
    c1.execute(tb.insert(1));
    c1.tpc_prepare();
    {
        auto c2 = xarm::connect("mysql", info());
        c2.tpc_begin(b);
        c2.execute(tb.insert(2));
        c2.tpc_prepare();
        c2.close();
    }
    rm r(2);
    auto found = r.recover(3);
    BOOST_TEST(listed(found, a));
    BOOST_TEST(listed(found, b));
    for (const auto& x : found)
        if (x.gtrid() == a.gtrid()) {
            BOOST_TEST(x.bqual() == a.bqual());
            BOOST_TEST(x.format_id() == 0x7fffffff);
        }
    BOOST_TEST(r.commit(a) == XA_OK);  // on c1's connection, through the registry
    BOOST_TEST(r.commit(b) == XA_OK);  // detached
    BOOST_TEST(tb.count() == 2);
    auto after = r.recover(10);
    BOOST_TEST(!listed(after, a));
    BOOST_TEST(!listed(after, b));
}

BOOST_AUTO_TEST_CASE(branch_prepared_by_raw_sql_is_recovered_exactly, *needs_mysql) {
    table tb;
    const std::string g = "xm-g-" + std::to_string(::getpid()) + "-" + ident("raw");
    const xid x(7, g, "b");
    auto other = raw(info());
    exec(*other, fmt::format("XA START '{}','b',7", g));
    exec(*other, tb.insert(1));
    exec(*other, fmt::format("XA END '{}','b',7", g));
    exec(*other, fmt::format("XA PREPARE '{}','b',7", g));
    rm r(1);
    BOOST_TEST(listed(r.recover(50), x));
    // Still attached to the other client's live connection, which this process cannot
    // reach: XA_RETRY, with the reason.
    BOOST_TEST(r.commit(x) == XA_RETRY);
    auto d = diag(1);
    BOOST_TEST(std::string(d.message).find("still attached") != std::string::npos);
    BOOST_TEST(r.rollback(x) == XAER_RMERR);
    other.reset();  // disconnect: the server detaches the branch
    int rc = XA_RETRY;
    for (int i = 0; i < 100 && rc == XA_RETRY; ++i) {
        rc = r.commit(x);
        if (rc == XA_RETRY) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    // Committed, or (seen when the commit races the server detaching the branch) found
    // rolled back and reported as such: the answer must match the data, never claim a
    // commit that did not happen.
    BOOST_TEST((rc == XA_OK || rc == XA_HEURRB), "rc " << rc);
    BOOST_TEST(tb.count() == (rc == XA_OK ? 1 : 0));
    if (rc == XA_HEURRB) BOOST_TEST(r.forget(x) == XA_OK);
}

BOOST_AUTO_TEST_CASE(recovery_pages_with_count_smaller_than_branches, *needs_mysql) {
    table tb;
    rm r(1);
    std::vector<xid> mine;
    // One thread prepares five branches in a row: each start after a prepare needs the
    // driver to set the connection holding the prepared branch aside.
    for (int i = 0; i < 5; ++i) {
        const xid x = new_xid("b" + std::to_string(i));
        BOOST_TEST_REQUIRE(r.start(x) == XA_OK);
        exec(r.conn(), tb.insert(i));
        BOOST_TEST_REQUIRE(r.end(x) == XA_OK);
        BOOST_TEST_REQUIRE(r.prepare(x) == XA_OK);
        mine.push_back(x);
    }
    rm r2(2);
    std::vector<int> sizes;
    auto found = r2.recover(2, &sizes);
    for (const auto& x : mine) BOOST_TEST(std::count(found.begin(), found.end(), x) == 1);
    for (std::size_t i = 0; i + 1 < sizes.size(); ++i) BOOST_TEST(sizes[i] == 2);
    BOOST_TEST(sizes.back() < 2);
    // Without TMSTARTRSCAN there is no scan to continue.
    XID buf[2];
    BOOST_TEST(sw().xa_recover_entry(buf, 2, 2, TMNOFLAGS) == XAER_PROTO);
    for (std::size_t i = 0; i < mine.size(); ++i)
        BOOST_TEST(((i % 2 == 0) ? r2.commit(mine[i]) : r.commit(mine[i])) == XA_OK);
    BOOST_TEST(tb.count() == 5);
    for (const auto& x : r2.recover(100)) BOOST_TEST(!listed(mine, x));
}

BOOST_AUTO_TEST_CASE(prepare_then_commit_on_one_thread_keeps_the_connection, *needs_mysql) {
    table tb;
    rm r(1);
    sql::Connection* handle = &r.conn();
    const long id = connection_id(*handle);
    for (int i = 0; i < 3; ++i) {
        const xid x = new_xid();
        BOOST_TEST(r.start(x) == XA_OK);
        exec(r.conn(), tb.insert(i));
        BOOST_TEST(r.end(x) == XA_OK);
        BOOST_TEST(r.prepare(x) == XA_OK);
        BOOST_TEST(r.commit(x) == XA_OK);
    }
    BOOST_TEST(&r.conn() == handle);
    BOOST_TEST(connection_id(r.conn()) == id);
    BOOST_TEST(tb.count() == 3);
}

BOOST_AUTO_TEST_CASE(phase_two_from_another_thread, *needs_mysql) {
    table tb;
    for (const bool commit : {true, false}) {
        const xid x = new_xid();
        std::promise<void> prepared, finished;
        long id_before = 0, id_after = 0;
        int next_start = -1;
        std::thread a([&] {
            rm r(1);
            id_before = connection_id(r.conn());
            BOOST_TEST(r.start(x) == XA_OK);
            exec(r.conn(), tb.insert(commit ? 1 : 2));
            BOOST_TEST(r.end(x) == XA_OK);
            BOOST_TEST(r.prepare(x) == XA_OK);
            prepared.set_value();
            finished.get_future().wait();
            // The branch was finished elsewhere: this connection is free again.
            const xid y = new_xid();
            next_start = r.start(y);
            id_after = connection_id(r.conn());
            r.end(y);
            r.rollback(y);
        });
        prepared.get_future().wait();
        int rc = -1;
        std::thread b([&] {
            rm r(1);
            rc = commit ? r.commit(x) : r.rollback(x);
        });
        b.join();
        finished.set_value();
        a.join();
        BOOST_TEST(rc == XA_OK);
        BOOST_TEST(next_start == XA_OK);
        BOOST_TEST(id_after == id_before);
    }
    BOOST_TEST(tb.count() == 1);
}

BOOST_AUTO_TEST_CASE(alternating_prepare_and_remote_commit_reuses_connections, *needs_mysql) {
    table tb;
    rm r(1);
    std::set<long> ids;
    std::vector<std::thread> committers;
    std::vector<int> codes(6, -1);
    for (int i = 0; i < 6; ++i) {
        const xid x = new_xid();
        BOOST_TEST_REQUIRE(r.start(x) == XA_OK);
        ids.insert(connection_id(r.conn()));
        exec(r.conn(), tb.insert(i));
        BOOST_TEST_REQUIRE(r.end(x) == XA_OK);
        BOOST_TEST_REQUIRE(r.prepare(x) == XA_OK);
        std::thread b([&codes, i, x] {
            rm other(1);
            codes[static_cast<std::size_t>(i)] = other.commit(x);
        });
        b.join();
    }
    for (int c : codes) BOOST_TEST(c == XA_OK);
    BOOST_TEST(ids.size() == 1u);  // every branch was finished before the next start
    BOOST_TEST(tb.count() == 6);
}

BOOST_AUTO_TEST_CASE(concurrent_phase_two_of_branches_prepared_by_one_thread, *needs_mysql) {
    table tb;
    // max_parked=3: of 8 prepared branches, the older ones are detached by closing
    // their connections; the rest are finished on the connections that hold them.
    rm r(1, info() + " max_parked=3");
    std::vector<xid> xs;
    for (int i = 0; i < 8; ++i) {
        const xid x = new_xid();
        BOOST_TEST_REQUIRE(r.start(x) == XA_OK);
        exec(r.conn(), tb.insert(i));
        BOOST_TEST_REQUIRE(r.end(x) == XA_OK);
        BOOST_TEST_REQUIRE(r.prepare(x) == XA_OK);
        xs.push_back(x);
    }
    std::vector<int> codes(xs.size(), -1);
    std::vector<std::thread> workers;
    for (std::size_t w = 0; w < 4; ++w)
        workers.emplace_back([&, w] {
            rm other(1);
            for (std::size_t i = w; i < xs.size(); i += 4)
                codes[i] = (i % 3 == 0) ? other.rollback(xs[i]) : other.commit(xs[i]);
        });
    for (auto& t : workers) t.join();
    for (int c : codes) BOOST_TEST(c == XA_OK);
    BOOST_TEST(tb.count() == 5);  // 0, 3 and 6 rolled back
    for (const auto& x : r.recover(100)) BOOST_TEST(!listed(xs, x));
    // The preparing thread carries on on a connection of its own.
    const xid y = new_xid();
    BOOST_TEST(r.start(y) == XA_OK);
    BOOST_TEST(r.end(y) == XA_OK);
    BOOST_TEST(r.commit(y, TMONEPHASE) == XA_OK);
}

BOOST_AUTO_TEST_CASE(recovered_branch_committed_by_a_thread_holding_its_own_prepared_one,
                     *needs_mysql) {
    table tb;
    const xid other = new_xid();
    {
        auto c = xarm::connect("mysql", info());
        c.tpc_begin(other);
        c.execute(tb.insert(1));
        c.tpc_prepare();
    }  // closed: detached on the server
    rm r(1);
    const xid mine = new_xid();
    BOOST_TEST(r.start(mine) == XA_OK);
    exec(r.conn(), tb.insert(2));
    BOOST_TEST(r.end(mine) == XA_OK);
    BOOST_TEST(r.prepare(mine) == XA_OK);
    // This connection holds `mine`, so the server would refuse anything else on it.
    BOOST_TEST(r.commit(other) == XA_OK);
    BOOST_TEST(r.commit(mine) == XA_OK);
    BOOST_TEST(tb.count() == 2);
}

BOOST_AUTO_TEST_CASE(server_restart_between_prepare_and_commit,
                     *needs_mysql* boost::unit_test::precondition(t::needs{"XARM_DEVSERVERS"})) {
    table tb;
    const std::string tool = t::server("XARM_DEVSERVERS");
    const xid x = new_xid();
    {
        rm r(1);
        BOOST_TEST_REQUIRE(r.start(x) == XA_OK);
        exec(r.conn(), tb.insert(1));
        BOOST_TEST_REQUIRE(r.end(x) == XA_OK);
        BOOST_TEST_REQUIRE(r.prepare(x) == XA_OK);
        BOOST_TEST_REQUIRE(std::system((tool + " restart mysql >/dev/null 2>&1").c_str()) == 0);
        // The connection that held the branch is gone: the outcome is unknown to it.
        BOOST_TEST(r.commit(x) == XAER_RMFAIL);
        BOOST_TEST(std::string(diag(1).sqlstate).substr(0, 2) == "08");
        BOOST_TEST(r.commit(x) == XAER_RMFAIL);  // until closed and opened again
    }
    rm r(1);
    BOOST_TEST(listed(r.recover(20), x));
    BOOST_TEST(r.commit(x) == XA_OK);
    BOOST_TEST(tb.count() == 1);
}

BOOST_AUTO_TEST_CASE(deadlock_gives_rbdeadlock, *needs_mysql) {
    table tb;
    {
        auto c = raw(info());
        exec(*c, fmt::format("INSERT INTO {} VALUES (1, 0), (2, 0)", tb.name));
    }
    auto c1 = xarm::connect("mysql", info());
    auto c2 = xarm::connect("mysql", info());
    const xid x1 = new_xid(), x2 = new_xid();
    c1.session().start(x1, TMNOFLAGS);
    c2.session().start(x2, TMNOFLAGS);
    c1.execute("UPDATE " + tb.name + " SET v = 1 WHERE id = 1");
    c2.execute("UPDATE " + tb.name + " SET v = 2 WHERE id = 2");
    auto f = std::async(std::launch::async, [&] {
        try {
            c1.execute("UPDATE " + tb.name + " SET v = 1 WHERE id = 2");
            return 0;
        } catch (const xarm::error& e) {
            return e.xa_code();
        }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    int code2 = 0;
    try {
        c2.execute("UPDATE " + tb.name + " SET v = 2 WHERE id = 1");
    } catch (const xarm::error& e) {
        code2 = e.xa_code();
    }
    const int code1 = f.get();
    BOOST_TEST(((code1 == XA_RBDEADLOCK) != (code2 == XA_RBDEADLOCK)));
    auto& victim = code1 == XA_RBDEADLOCK ? c1 : c2;
    auto& survivor = code1 == XA_RBDEADLOCK ? c2 : c1;
    const xid& vx = code1 == XA_RBDEADLOCK ? x1 : x2;
    const xid& sx = code1 == XA_RBDEADLOCK ? x2 : x1;
    int end_code = 0;
    try {
        victim.session().end(vx, TMSUCCESS);
    } catch (const xarm::rollback_error& e) {
        end_code = e.xa_code();
    }
    BOOST_TEST(end_code == XA_RBDEADLOCK);
    BOOST_TEST(victim.session().rollback(vx, TMNOFLAGS) == XA_OK);
    BOOST_TEST(survivor.session().end(sx, TMSUCCESS) == XA_OK);
    BOOST_TEST(survivor.session().commit(sx, TMONEPHASE) == XA_OK);
    // The survivor's two updates are in, the victim's none.
    auto c = raw(info());
    const std::string want = code1 == XA_RBDEADLOCK ? "2" : "1";
    BOOST_TEST(scalar(*c, "SELECT GROUP_CONCAT(v ORDER BY id) FROM " + tb.name) ==
               want + "," + want);
}

BOOST_AUTO_TEST_CASE(lock_wait_timeout_gives_rbtimeout, *needs_mysql) {
    table tb;
    {
        auto c = raw(info());
        exec(*c, fmt::format("INSERT INTO {} VALUES (1, 0)", tb.name));
    }
    auto holder = xarm::connect("mysql", info());
    auto waiter = xarm::connect("mysql", info());
    waiter.execute("SET SESSION innodb_lock_wait_timeout = 1");
    waiter.commit();
    const xid h = new_xid(), w = new_xid();
    holder.tpc_begin(h);
    holder.execute("UPDATE " + tb.name + " SET v = 1 WHERE id = 1");
    waiter.session().start(w, TMNOFLAGS);
    waiter.execute(tb.insert(5));  // work that must not survive
    int code = 0;
    try {
        waiter.execute("UPDATE " + tb.name + " SET v = 2 WHERE id = 1");
    } catch (const xarm::error& e) {
        code = e.xa_code();
    }
    BOOST_TEST(code == XA_RBTIMEOUT);
    int end_code = 0;
    try {
        waiter.session().end(w, TMSUCCESS);
    } catch (const xarm::rollback_error& e) {
        end_code = e.xa_code();
    }
    BOOST_TEST(end_code == XA_RBTIMEOUT);
    // xa_prepare of a rollback-only branch rolls it back and says why.
    int prep = 0;
    try {
        waiter.session().prepare(w, TMNOFLAGS);
    } catch (const xarm::rollback_error& e) {
        prep = e.xa_code();
    }
    BOOST_TEST(prep == XA_RBTIMEOUT);
    holder.tpc_prepare();
    holder.tpc_commit();
    BOOST_TEST(tb.count() == 1);  // row 5 never committed
    auto c = raw(info());
    BOOST_TEST(scalar(*c, "SELECT v FROM " + tb.name + " WHERE id = 1") == "1");
}

BOOST_AUTO_TEST_CASE(local_transaction_open_gives_outside, *needs_mysql) {
    table tb;
    // C++ API: tracked by the driver.
    auto c = xarm::connect("mysql", info());
    c.execute(tb.insert(1));
    try {
        c.tpc_begin(new_xid());
        BOOST_FAIL("tpc_begin with a local transaction open must fail");
    } catch (const xarm::error& e) {
        BOOST_TEST(e.xa_code() == XAER_OUTSIDE);
    }
    c.commit();  // the local work is still there
    BOOST_TEST(tb.count() == 1);
    // C switch, work done directly on the native connection: the server says so.
    rm r(1);
    exec(r.conn(), tb.insert(2));
    const xid x = new_xid();
    BOOST_TEST(r.start(x) == XAER_OUTSIDE);
    BOOST_TEST(std::string(diag(1).sqlstate) == "XAE09");
    r.conn().commit();
    BOOST_TEST(tb.count() == 2);
    BOOST_TEST(r.start(x) == XA_OK);  // after the local commit
    BOOST_TEST(r.end(x) == XA_OK);
    BOOST_TEST(r.rollback(x) == XA_OK);
}

BOOST_AUTO_TEST_CASE(duplicate_xid_gives_dupid, *needs_mysql) {
    table tb;
    rm r(1);
    const xid x = new_xid();
    BOOST_TEST(r.start(x) == XA_OK);
    int other_code = -1, other_prepared = -1;
    xarm_diag d{};
    std::thread b([&] {
        rm r2(1);
        other_code = r2.start(x);
        xarm_last_error(1, &d);
    });
    b.join();
    BOOST_TEST(other_code == XAER_DUPID);
    BOOST_TEST(std::string(d.sqlstate) == "XAE08");
    BOOST_TEST(d.native_code == 1440);
    exec(*xarm_mysql_conn(1), tb.insert(1));  // a write, so that the branch stays prepared
    BOOST_TEST(r.end(x) == XA_OK);
    BOOST_TEST(r.prepare(x) == XA_OK);
    std::thread c([&] {
        rm r2(1);
        other_prepared = r2.start(x);
    });
    c.join();
    BOOST_TEST(other_prepared == XAER_DUPID);
    BOOST_TEST(r.rollback(x) == XA_OK);
}

BOOST_AUTO_TEST_CASE(unknown_xid_gives_nota, *needs_mysql) {
    rm r(1);
    const xid x = new_xid();
    BOOST_TEST(r.commit(x) == XAER_NOTA);
    auto d = diag(1);
    BOOST_TEST(std::string(d.sqlstate) == "XAE04");
    BOOST_TEST(d.native_code == 1397);
    BOOST_TEST(r.rollback(x) == XAER_NOTA);
    auto c = xarm::connect("mysql", info());
    try {
        c.tpc_commit(x);
        BOOST_FAIL("commit of an unknown xid must fail");
    } catch (const xarm::programming_error& e) {
        BOOST_TEST(e.xa_code() == XAER_NOTA);
    }
}

BOOST_AUTO_TEST_CASE(killed_connection_gives_rmfail, *needs_mysql) {
    table tb;
    rm r(1);
    const long id = connection_id(r.conn());
    const xid x = new_xid();
    BOOST_TEST(r.start(x) == XA_OK);
    exec(r.conn(), tb.insert(1));
    {
        auto killer = raw(info());
        exec(*killer, fmt::format("KILL {}", id));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    BOOST_TEST(r.end(x) == XA_OK);  // deferred: travels with the next verb
    BOOST_TEST(r.prepare(x) == XAER_RMFAIL);
    const auto d = diag(1);
    BOOST_TEST(std::string(d.sqlstate).substr(0, 2) == "08");
    BOOST_TEST(r.start(new_xid()) == XAER_RMFAIL);  // until closed and opened again
    BOOST_TEST(tb.count() == 0);
    // C++: statements on a killed connection.
    auto c = xarm::connect("mysql", info());
    const long cid = std::stol(*c.query("SELECT CONNECTION_ID()").rows[0][0]);
    c.rollback();
    {
        auto killer = raw(info());
        exec(*killer, fmt::format("KILL {}", cid));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    try {
        c.tpc_begin(new_xid());
        BOOST_FAIL("tpc_begin on a killed connection must fail");
    } catch (const xarm::operational_error& e) {
        BOOST_TEST(e.xa_code() == XAER_RMFAIL);
    }
}

BOOST_AUTO_TEST_CASE(wrong_password_is_a_clear_error_without_it, *needs_mysql) {
    auto kv = xarm::parse_info(info(), {"host", "port", "socket", "user", "password", "database"});
    const std::string secret = "Wr0ng-s3cret-pw";
    const std::string bad = fmt::format("host={} port={} user={} password={} database={}",
                                        kv["host"], kv["port"], kv["user"], secret, kv["database"]);
    std::string b = bad;
    BOOST_TEST(sw().xa_open_entry(b.data(), 5, TMNOFLAGS) == XAER_RMERR);
    auto d = diag(5);
    const std::string msg = d.message;
    BOOST_TEST(msg.find("Access denied") != std::string::npos, msg);
    BOOST_TEST(msg.find(secret) == std::string::npos, msg);
    BOOST_TEST(std::string(d.sqlstate) == "28000");
    try {
        xarm::connect("mysql", bad);
        BOOST_FAIL("connecting with a wrong password must fail");
    } catch (const xarm::error& e) {
        BOOST_TEST(e.xa_code() == XAER_RMERR);
        BOOST_TEST(std::string(e.what()).find(secret) == std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(info_string_errors, *needs_mysql) {
    std::string unknown = info() + " colour=blue";
    BOOST_TEST(sw().xa_open_entry(unknown.data(), 6, TMNOFLAGS) == XAER_INVAL);
    BOOST_TEST(std::string(diag(6).message).find("colour") != std::string::npos);
    std::string nouser = "host=127.0.0.1 port=1";
    BOOST_TEST(sw().xa_open_entry(nouser.data(), 6, TMNOFLAGS) == XAER_INVAL);
    std::string badport = info() + " connect_timeout=x";
    BOOST_TEST(sw().xa_open_entry(badport.data(), 6, TMNOFLAGS) == XAER_INVAL);
    std::string unreachable = "host=127.0.0.1 port=1 user=u password=pw connect_timeout=2";
    BOOST_TEST(sw().xa_open_entry(unreachable.data(), 6, TMNOFLAGS) == XAER_RMERR);
}

BOOST_AUTO_TEST_CASE(join_and_suspend_through_the_deferred_xa_end, *needs_mysql) {
    // What MariaDB does with the syntax: refused, so the driver never sends it.
    auto c = raw(info());
    const std::string g = "xm-g-" + std::to_string(::getpid()) + "-" + ident("js");
    exec(*c, fmt::format("XA START '{}'", g));
    exec(*c, fmt::format("XA END '{}'", g));
    auto refused = [&](const std::string& q) {
        try {
            exec(*c, q);
            return 0;
        } catch (const sql::SQLException& e) {
            return e.getErrorCode();
        }
    };
    BOOST_TEST(refused(fmt::format("XA START '{}' JOIN", g)) == 1398);
    exec(*c, fmt::format("XA ROLLBACK '{}'", g));
    exec(*c, fmt::format("XA START '{}'", g));
    BOOST_TEST(refused(fmt::format("XA END '{}' SUSPEND", g)) == 1398);
    BOOST_TEST(refused(fmt::format("XA END '{}' SUSPEND FOR MIGRATE", g)) == 1398);
    exec(*c, fmt::format("XA END '{}'", g));
    exec(*c, fmt::format("XA ROLLBACK '{}'", g));

    auto caps = xarm::connect("mysql", info()).capabilities();
    for (auto k :
         {xarm::capability::two_phase, xarm::capability::one_phase, xarm::capability::recovery,
          xarm::capability::join, xarm::capability::suspend_resume})
        BOOST_TEST(caps.has(k));
    for (auto k :
         {xarm::capability::migrate, xarm::capability::async, xarm::capability::interleave}) {
        BOOST_TEST(!caps.has(k));
        BOOST_TEST(!caps.get(k).reason.empty());
    }
    // Join and suspend/resume on one connection: XA END is deferred, so the branch is
    // still active on the server when it goes on.
    table tb;
    rm r(1);
    const xid x = new_xid();
    BOOST_TEST(r.start(x) == XA_OK);
    exec(r.conn(), tb.insert(1));
    BOOST_TEST(r.end(x, TMSUSPEND) == XA_OK);
    BOOST_TEST(r.start(x, TMRESUME) == XA_OK);
    exec(r.conn(), tb.insert(2));
    BOOST_TEST(r.end(x) == XA_OK);
    BOOST_TEST(r.start(x, TMJOIN) == XA_OK);
    exec(r.conn(), tb.insert(3));
    BOOST_TEST(r.end(x) == XA_OK);
    BOOST_TEST(r.prepare(x) == XA_OK);
    BOOST_TEST(r.commit(x) == XA_OK);
    BOOST_TEST(tb.count() == 3);
    // Joined twice, then committed in one phase.
    const xid w = new_xid();
    BOOST_TEST(r.start(w) == XA_OK);
    for (int id : {4, 5, 6}) {
        exec(r.conn(), tb.insert(id));
        BOOST_TEST(r.end(w) == XA_OK);
        if (id != 6) BOOST_TEST(r.start(w, TMJOIN) == XA_OK);
    }
    BOOST_TEST(r.commit(w, TMONEPHASE) == XA_OK);
    BOOST_TEST(tb.count() == 6);
    // Migrate is still refused as declared.
    const xid v = new_xid();
    BOOST_TEST(r.start(v) == XA_OK);
    BOOST_TEST(r.end(v, TMSUSPEND | TMMIGRATE) == XAER_RMERR);
    BOOST_TEST(std::string(diag(1).sqlstate) == "0A000");
    BOOST_TEST(r.end(v) == XA_OK);
    BOOST_TEST(r.rollback(v) == XA_OK);
    // Interleaving: a second branch while the first holds the connection.
    const xid y = new_xid(), z = new_xid();
    BOOST_TEST(r.start(y) == XA_OK);
    BOOST_TEST(r.end(y) == XA_OK);
    BOOST_TEST(r.start(z) == XAER_RMERR);
    BOOST_TEST(std::string(diag(1).sqlstate) == "0A000");
    BOOST_TEST(r.rollback(y) == XA_OK);
}

// With multi_statements=off XA END is sent at xa_end: join and suspend are declared
// missing on that connection, and refused.
BOOST_AUTO_TEST_CASE(join_declared_missing_without_multi_statements, *needs_mysql) {
    auto c = xarm::connect("mysql", info() + " multi_statements=off");
    BOOST_TEST(!c.capabilities().has(xarm::capability::join));
    BOOST_TEST(!c.capabilities().has(xarm::capability::suspend_resume));
    rm r(1, info() + " multi_statements=off");
    const xid x = new_xid();
    BOOST_TEST(r.start(x) == XA_OK);
    BOOST_TEST(r.end(x) == XA_OK);
    BOOST_TEST(r.start(x, TMJOIN) == XAER_RMERR);
    BOOST_TEST(std::string(diag(1).sqlstate) == "0A000");
    BOOST_TEST(r.rollback(x) == XA_OK);
}

// Tables of every engine a branch may write on MariaDB, a trigger and routines, for
// the read-only vote: whatever writes must vote XA_OK.
struct write_targets {
    std::string t = ident("xw_inno"), m = ident("xw_myisam"), a = ident("xw_aria"),
                mem = ident("xw_mem"), log = ident("xw_log"), trg = ident("xw_trg"),
                p_ins = ident("xw_pins"), p_del = ident("xw_pdel"), f_ins = ident("xw_fins");
    std::unique_ptr<sql::Connection> c = cleaner();
    write_targets() {
        exec(*c, "CREATE TABLE " + t + " (id INT PRIMARY KEY, v INT) ENGINE=InnoDB");
        exec(*c, "CREATE TABLE " + m + " (id INT PRIMARY KEY, v INT) ENGINE=MyISAM");
        exec(*c, "CREATE TABLE " + a + " (id INT PRIMARY KEY, v INT) ENGINE=Aria TRANSACTIONAL=1");
        exec(*c, "CREATE TABLE " + mem + " (id INT PRIMARY KEY, v INT) ENGINE=MEMORY");
        exec(*c, "CREATE TABLE " + log + " (id INT AUTO_INCREMENT PRIMARY KEY, v INT)");
        exec(*c, "CREATE TABLE " + trg + " (id INT) ENGINE=MyISAM");
        exec(*c, fmt::format("CREATE TRIGGER {0}_t AFTER INSERT ON {0} FOR EACH ROW "
                             "INSERT INTO {1} (v) VALUES (NEW.id)",
                             trg, log));
        exec(*c, fmt::format("CREATE PROCEDURE {}() INSERT INTO {} (v) VALUES (1)", p_ins, log));
        exec(*c, fmt::format("CREATE PROCEDURE {}() DELETE FROM {}", p_del, a));
        exec(*c, fmt::format("CREATE FUNCTION {}() RETURNS INT MODIFIES SQL DATA BEGIN "
                             "INSERT INTO {} (v) VALUES (1); RETURN 1; END",
                             f_ins, log));
    }
    ~write_targets() {
        try {
            roll_back_leftovers(*c);
            for (const auto& r : {p_ins, p_del}) exec(*c, "DROP PROCEDURE IF EXISTS " + r);
            exec(*c, "DROP FUNCTION IF EXISTS " + f_ins);
            for (const auto& n : {t, m, a, mem, log, trg}) exec(*c, "DROP TABLE IF EXISTS " + n);
        } catch (...) {
        }
    }
    void reset() {
        for (const auto& n : {t, m, a, mem}) {
            exec(*c, "DELETE FROM " + n);
            exec(*c, "INSERT INTO " + n + " VALUES (1, 1), (2, 2)");
        }
        exec(*c, "DELETE FROM " + log);
    }
    std::string value(const std::string& q) { return scalar(*c, q); }
};

struct write_kind {
    std::vector<std::string> sql;
    std::string check;     ///< a query on the committed state, or empty
    std::string expected;  ///< its value
};

std::vector<write_kind> write_kinds(const write_targets& w) {
    const std::string cnt = "SELECT COUNT(*) FROM ";
    return {
        {{"INSERT INTO " + w.t + " VALUES (3, 3)"}, cnt + w.t, "3"},
        {{"UPDATE " + w.t + " SET v = v + 10 WHERE id = 1"},
         "SELECT v FROM " + w.t + " WHERE id = 1",
         "11"},
        {{"DELETE FROM " + w.t + " WHERE id = 1"}, cnt + w.t, "1"},
        {{"DELETE FROM " + w.t}, cnt + w.t, "0"},
        {{"REPLACE INTO " + w.t + " VALUES (2, 20)"},
         "SELECT v FROM " + w.t + " WHERE id = 2",
         "20"},
        {{"INSERT INTO " + w.t + " VALUES (1, 0) ON DUPLICATE KEY UPDATE v = v + 5"},
         "SELECT v FROM " + w.t + " WHERE id = 1",
         "6"},
        {{"INSERT INTO " + w.t + " SELECT id + 10, v FROM " + w.t}, cnt + w.t, "4"},
        {{fmt::format("UPDATE {0} JOIN {1} ON {0}.id = {1}.id SET {0}.v = {0}.v + {1}.v", w.t,
                      w.m)},
         "SELECT SUM(v) FROM " + w.t,
         "6"},
        {{fmt::format("DELETE {0} FROM {0} JOIN {1} ON {0}.id = {1}.id WHERE {1}.id = 2", w.t,
                      w.m)},
         cnt + w.t,
         "1"},
        {{"CALL " + w.p_ins + "()"}, cnt + w.log, "1"},
        {{"INSERT INTO " + w.trg + " VALUES (7)"}, cnt + w.log, "1"},
        {{"SELECT " + w.f_ins + "()"}, cnt + w.log, "1"},
        {{"INSERT INTO " + w.a + " VALUES (3, 3)"}, cnt + w.a, "3"},
        // No row call: only the DELETE statement counter moves (Aria keeps the branch).
        {{"DELETE FROM " + w.a}, cnt + w.a, "0"},
        {{"CALL " + w.p_del + "()"}, cnt + w.a, "0"},
        {{"PREPARE xw_s FROM 'DELETE FROM " + w.a + "'", "EXECUTE xw_s", "DEALLOCATE PREPARE xw_s"},
         cnt + w.a,
         "0"},
        // Non-transactional tables and session-local writes: nothing to commit, but a
        // read-only vote is claimed only when nothing at all was written.
        {{"INSERT INTO " + w.m + " VALUES (3, 3)"}, cnt + w.m, "3"},
        {{"DELETE FROM " + w.m}, cnt + w.m, "0"},
        {{"INSERT INTO " + w.mem + " VALUES (3, 3)"}, cnt + w.mem, "3"},
        {{"DELETE FROM " + w.mem}, cnt + w.mem, "0"},
        {{"CREATE TEMPORARY TABLE IF NOT EXISTS xw_tmp (a INT)", "INSERT INTO xw_tmp VALUES (1)"},
         "",
         ""},
    };
}

// Statements that read (or lock) only: the branch votes XA_RDONLY.
std::vector<std::vector<std::string>> read_kinds(const write_targets& w) {
    return {
        {"SELECT COUNT(*) FROM " + w.t},
        {"SELECT * FROM " + w.t + " FOR UPDATE"},
        {"SELECT * FROM " + w.t + " LOCK IN SHARE MODE"},
        {"SELECT * FROM " + w.a, "SELECT * FROM " + w.m, "SELECT * FROM " + w.mem},
        {"SET @xw = 1", "DO 1"},
        {},
    };
}

void run_all(sql::Connection& c, const std::vector<std::string>& sql) {
    for (const auto& q : sql) exec(c, q);
}

// Starts x on r, runs sql inside it on the driver's connection, and ends it.
void run_in_branch(rm& r, const xid& x, const std::vector<std::string>& sql) {
    BOOST_REQUIRE(r.start(x) == XA_OK);
    run_all(*xarm_mysql_conn(r.id), sql);
    BOOST_REQUIRE(r.end(x) == XA_OK);
}

BOOST_AUTO_TEST_CASE(read_only_vote_on_every_kind_of_write_votes_ok_and_commits, *needs_mysql) {
    write_targets w;
    for (const char* extra : {"", " multi_statements=off"}) {
        rm r(1, info() + " read_only_vote=on" + extra);
        for (const auto& k : write_kinds(w)) {
            BOOST_TEST_CONTEXT(k.sql.front() << extra) {
                w.reset();
                const xid x = new_xid();
                BOOST_REQUIRE(r.start(x) == XA_OK);
                run_all(*xarm_mysql_conn(1), k.sql);
                BOOST_REQUIRE(r.end(x) == XA_OK);
                // A false XA_RDONLY here would lose the write.
                BOOST_TEST(r.prepare(x) == XA_OK);
                BOOST_TEST(r.commit(x) == XA_OK);
                if (!k.check.empty()) BOOST_TEST(w.value(k.check) == k.expected);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(read_only_vote_on_votes_rdonly_and_never_heuristic, *needs_mysql) {
    write_targets w;
    w.reset();
    for (const char* extra : {"", " multi_statements=off"}) {
        rm r(1, info() + " read_only_vote=on" + extra);
        for (const auto& k : read_kinds(w)) {
            BOOST_TEST_CONTEXT((k.empty() ? "(nothing)" : k.front()) << extra) {
                const xid x = new_xid();
                run_in_branch(r, x, k);
                BOOST_TEST(r.prepare(x) == XA_RDONLY);
                BOOST_TEST(!listed(r.recover(50), x));
                BOOST_TEST(r.commit(x) == XAER_NOTA);  // gone with its vote
            }
        }
        // The read-only vote released the row locks: another client updates at once.
        const xid x = new_xid();
        BOOST_REQUIRE(r.start(x) == XA_OK);
        exec(*xarm_mysql_conn(1), "SELECT * FROM " + w.t + " FOR UPDATE");
        BOOST_REQUIRE(r.end(x) == XA_OK);
        BOOST_REQUIRE(r.prepare(x) == XA_RDONLY);
        exec(*w.c, "UPDATE " + w.t + " SET v = v + 1 WHERE id = 1");
    }
    // Through the C++ API, with the preparing connections gone before phase two (which
    // used to find the branch discarded by MariaDB and answer XA_HEURRB).
    const xid y = new_xid(), z = new_xid();
    auto c = xarm::connect("mysql", info());
    {
        auto c2 = xarm::connect("mysql", info() + " read_only_vote=on");
        c2.tpc_begin(y);
        c2.query("SELECT COUNT(*) FROM " + w.t);
        c2.tpc_prepare();
        c2.tpc_commit();
        c2.tpc_begin(z);
        c2.tpc_prepare();
    }
    BOOST_TEST(!listed(c.tpc_recover(), y));
    BOOST_TEST(!listed(c.tpc_recover(), z));
    // Another client's prepared branch that wrote nothing, discarded by MariaDB when that
    // client disconnected: a commit must not claim success (XA_HEURRB, then xa_forget).
    const std::string g = "xm-ro-" + std::to_string(::getpid()) + "-" + ident("h");
    const xid h(7, g, "b");
    {
        auto other = raw(info());
        exec(*other, fmt::format("XA START '{}','b',7", g));
        exec(*other, fmt::format("XA END '{}','b',7", g));
        exec(*other, fmt::format("XA PREPARE '{}','b',7", g));
    }
    rm r(1);
    int rc = XA_RETRY;
    for (int i = 0; i < 100 && rc == XA_RETRY; ++i) {
        rc = r.commit(h);
        if (rc == XA_RETRY) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    BOOST_TEST(rc == XA_HEURRB);
    BOOST_TEST(diag(1).native_code == 1402);
    BOOST_TEST(r.forget(h) == XA_OK);
}

// The session's Com_select on the driver's own connection: how many SELECTs (such as the
// write-counter reading) the server ran for it.
long selects(sql::Connection& c) {
    std::unique_ptr<sql::Statement> s(c.createStatement());
    std::unique_ptr<sql::ResultSet> rs(s->executeQuery("SHOW SESSION STATUS LIKE 'Com_select'"));
    BOOST_REQUIRE(rs->next());
    return std::stol(rs->getString(2).asStdString());
}

BOOST_AUTO_TEST_CASE(read_only_vote_is_an_option_declared_per_connection, *needs_mysql) {
    const auto off = xarm::connect("mysql", info()).capabilities();
    BOOST_TEST(!off.has(xarm::capability::read_only_vote));
    const std::string why = off.get(xarm::capability::read_only_vote).reason;
    BOOST_TEST(why.find("read_only_vote=on") != std::string::npos, why);
    BOOST_TEST(why.find("XA_HEURRB") != std::string::npos, why);
    BOOST_TEST(why.find("1 ms") != std::string::npos, why);
    BOOST_TEST(!xarm::connect("mysql", info() + " read_only_vote=off")
                    .capabilities()
                    .has(xarm::capability::read_only_vote));
    BOOST_TEST(xarm::connect("mysql", info() + " read_only_vote=on")
                   .capabilities()
                   .has(xarm::capability::read_only_vote));
    for (const char* bad : {" read_only_vote=yes", " read_only_vote=", " read_only_vote=ON"}) {
        std::string inf = info() + bad;
        BOOST_TEST(sw().xa_open_entry(inf.data(), 6, TMNOFLAGS) == XAER_INVAL, bad);
        const std::string msg = diag(6).message;
        BOOST_TEST(msg.find("read_only_vote must be on or off") != std::string::npos, msg);
        BOOST_CHECK_THROW(xarm::connect("mysql", info() + bad), xarm::error);
    }
}

BOOST_AUTO_TEST_CASE(read_only_vote_off_read_only_branch_votes_ok_and_commits, *needs_mysql) {
    write_targets w;
    w.reset();
    for (const char* extra : {"", " multi_statements=off"}) {
        rm r(1, info() + extra);
        for (const auto& k : read_kinds(w)) {
            BOOST_TEST_CONTEXT((k.empty() ? "(nothing)" : k.front()) << extra) {
                const xid x = new_xid();
                run_in_branch(r, x, k);
                BOOST_TEST(r.prepare(x) == XA_OK);
                BOOST_TEST(r.commit(x) == XA_OK);  // on the connection that prepared it
                BOOST_TEST(!listed(r.recover(50), x));
            }
        }
        // A read-only branch prepared, then the session goes on (its connection is parked
        // with the branch): phase two later on the same session still commits it.
        const xid x = new_xid(), y = new_xid();
        BOOST_REQUIRE(r.start(x) == XA_OK);
        exec(*xarm_mysql_conn(1), "SELECT COUNT(*) FROM " + w.t);
        BOOST_REQUIRE(r.end(x) == XA_OK);
        BOOST_REQUIRE(r.prepare(x) == XA_OK);
        BOOST_REQUIRE(r.start(y) == XA_OK);
        BOOST_REQUIRE(r.end(y) == XA_OK);
        BOOST_TEST(r.prepare(y) == XA_OK);
        BOOST_TEST(r.commit(x) == XA_OK);
        BOOST_TEST(r.rollback(y) == XA_OK);
    }
    // The C++ API: no heuristic_error at commit.
    auto c = xarm::connect("mysql", info());
    c.tpc_begin(new_xid());
    c.query("SELECT COUNT(*) FROM " + w.t);
    c.tpc_prepare();
    BOOST_CHECK_NO_THROW(c.tpc_commit());
}

BOOST_AUTO_TEST_CASE(read_only_vote_off_phase_two_of_a_read_only_branch_on_another_thread,
                     *needs_mysql) {
    write_targets w;
    w.reset();
    for (const bool commit : {true, false}) {
        std::vector<xid> xs = {new_xid(), new_xid()};
        std::promise<void> prepared, finished;
        std::thread a([&] {
            rm r(1);
            // Two read-only branches: the second start parks the connection holding the
            // first, so phase two meets one parked and one current connection.
            for (const auto& x : xs) {
                BOOST_TEST(r.start(x) == XA_OK);
                exec(r.conn(), "SELECT * FROM " + w.t);
                BOOST_TEST(r.end(x) == XA_OK);
                BOOST_TEST(r.prepare(x) == XA_OK);
            }
            prepared.set_value();
            finished.get_future().wait();  // the connections stay open meanwhile
        });
        prepared.get_future().wait();
        std::vector<int> rc;
        std::thread b([&] {
            rm r(1);
            for (const auto& x : xs) rc.push_back(commit ? r.commit(x) : r.rollback(x));
        });
        b.join();
        finished.set_value();
        a.join();
        BOOST_TEST_CONTEXT((commit ? "commit" : "rollback")) {
            BOOST_TEST(rc == std::vector<int>({XA_OK, XA_OK}), "codes " << rc[0] << " " << rc[1]);
        }
    }
}

BOOST_AUTO_TEST_CASE(write_counter_readings_only_with_read_only_vote_on, *needs_mysql) {
    table tb;
    // What the server ran for one branch on the driver's connection: with the vote off
    // no counter reading at all; on, one with XA START and one at prepare.
    for (const char* extra : {"", " multi_statements=off"}) {
        for (const bool on : {false, true}) {
            BOOST_TEST_CONTEXT((on ? "on" : "off") << extra) {
                rm r(1, info() + (on ? " read_only_vote=on" : "") + extra);
                const long before = selects(r.conn());
                const xid x = new_xid();
                BOOST_REQUIRE(r.start(x) == XA_OK);
                BOOST_REQUIRE(r.end(x) == XA_OK);
                BOOST_TEST(r.prepare(x) == (on ? XA_RDONLY : XA_OK));
                if (!on) BOOST_TEST(r.commit(x) == XA_OK);
                BOOST_TEST(selects(r.conn()) - before == (on ? 2 : 0));
            }
        }
    }
    // On, a branch whose statement through xarm reported a changed row is known to have
    // written: no reading at prepare.
    auto c = xarm::connect("mysql", info() + " read_only_vote=on");
    auto* native = c.native_handle<sql::Connection*>();
    BOOST_REQUIRE(native != nullptr);
    const long before = selects(*native);
    c.tpc_begin(new_xid());
    BOOST_TEST(c.execute(tb.insert(1)) == 1);
    c.tpc_prepare();
    c.tpc_commit();
    BOOST_TEST(selects(*native) - before == 1);
    BOOST_TEST(tb.count() == 1);
}

BOOST_AUTO_TEST_CASE(without_multi_statements, *needs_mysql) {
    table tb;
    rm r(1, info() + " multi_statements=off max_parked=0");
    std::vector<xid> xs;
    for (int i = 0; i < 3; ++i) {
        const xid x = new_xid();
        BOOST_TEST_REQUIRE(r.start(x) == XA_OK);
        exec(r.conn(), tb.insert(i));
        BOOST_TEST(r.end(x) == XA_OK);
        BOOST_TEST(r.prepare(x) == XA_OK);
        xs.push_back(x);
    }
    // max_parked=0: every start after a prepare closed the connection holding the branch.
    for (const auto& x : xs) BOOST_TEST(r.commit(x) == XA_OK);
    BOOST_TEST(tb.count() == 3);
}

// Re-expression of MySQL Connector/J's XATest: coordination of two resource managers
// (testCoordination), rollback from another connection (testRollback), recovery
// listing exactly the prepared branches (testRecover), and local transactions between
// global ones on the same connection (testLocalTransaction).
BOOST_AUTO_TEST_CASE(connector_j_coordination_of_two_resources, *needs_mysql) {
    table tb;
    const std::string g = t::unique("xm-g");
    for (const bool commit : {true, false}) {
        auto c1 = xarm::connect("mysql", info());
        auto c2 = xarm::connect("mysql", info());
        const xid x1(1, g + (commit ? "c" : "r"), "1"), x2(1, g + (commit ? "c" : "r"), "2");
        c1.tpc_begin(x1);
        c1.execute(tb.insert(commit ? 1 : 3));
        c2.tpc_begin(x2);
        c2.execute(tb.insert(commit ? 2 : 4));
        c1.tpc_prepare();
        c2.tpc_prepare();
        auto c3 = xarm::connect("mysql", info());
        auto rec = c3.tpc_recover();
        BOOST_TEST(listed(rec, x1));
        BOOST_TEST(listed(rec, x2));
        if (commit) {
            c1.tpc_commit();
            c3.tpc_commit(x2);  // from a connection that did not prepare it
        } else {
            c1.tpc_rollback();
            c3.tpc_rollback(x2);
        }
        rec = c3.tpc_recover();
        BOOST_TEST(!listed(rec, x1));
        BOOST_TEST(!listed(rec, x2));
    }
    BOOST_TEST(tb.count() == 2);
}

BOOST_AUTO_TEST_CASE(connector_j_local_transactions_between_global_ones, *needs_mysql) {
    table tb;
    auto c = xarm::connect("mysql", info());
    c.execute(tb.insert(1));
    c.rollback();
    BOOST_TEST(tb.count() == 0);
    c.tpc_begin(new_xid());
    c.execute(tb.insert(2));
    try {
        c.commit();  // local commit inside a branch: refused (PEP 249)
        BOOST_FAIL("commit inside a branch must fail");
    } catch (const xarm::programming_error&) {
    }
    c.tpc_prepare();
    c.tpc_commit();
    c.execute(tb.insert(3));
    c.commit();
    BOOST_TEST(tb.count() == 2);
    // Local work after a prepare on the same connection: the driver moves to another
    // connection, since the server refuses every statement on the one holding it.
    const xid x = new_xid();
    c.tpc_begin(x);
    c.execute(tb.insert(4));
    c.tpc_prepare();
    auto d = xarm::connect("mysql", info());
    BOOST_TEST(listed(d.tpc_recover(), x));
    d.tpc_commit(x);
    BOOST_TEST(tb.count() == 3);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- under load: the parked connections' bound and the registry ---------------------

BOOST_AUTO_TEST_SUITE(mysql_load)

namespace {

long parked_now() {
    long p = 0;
    xarm_mysql_counts(&p, nullptr);
    return p;
}

// An rmid opened on a worker thread without Boost.Test assertions (its state is not
// thread-safe): failures are counted by the caller instead.
struct quiet_rm {
    int id;
    int opened;
    explicit quiet_rm(int rmid, std::string inf) : id(rmid) {
        opened = sw().xa_open_entry(inf.data(), id, TMNOFLAGS);
    }
    ~quiet_rm() { sw().xa_close_entry(const_cast<char*>(""), id, TMNOFLAGS); }
    int call(int (*entry)(XID*, int, long), const xid& x, long f) {
        XID c = to_c(x);
        return entry(&c, id, f);
    }
    int start(const xid& x) { return call(sw().xa_start_entry, x, TMNOFLAGS); }
    int end(const xid& x) { return call(sw().xa_end_entry, x, TMSUCCESS); }
    int prepare(const xid& x) { return call(sw().xa_prepare_entry, x, TMNOFLAGS); }
    int commit(const xid& x) { return call(sw().xa_commit_entry, x, TMNOFLAGS); }
    sql::Connection* conn() { return xarm_mysql_conn(id); }
    std::string message() {
        xarm_diag d{};
        return xarm_last_error(id, &d) == 0 ? std::string(d.message) : std::string();
    }
};

long registry_now() {
    long r = 0;
    xarm_mysql_counts(nullptr, &r);
    return r;
}

// This user's connections on the server (this test's, then: server tests never overlap).
long connections(sql::Connection& c) {
    return std::stol(scalar(c,
                            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                            "WHERE USER = SUBSTRING_INDEX(USER(), '@', 1)"));
}

// The server closes a disconnected session a moment later: wait (bounded) for it.
long connections_settled(sql::Connection& c, long want) {
    long n = connections(c);
    for (int i = 0; i < 200 && n > want; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        n = connections(c);
    }
    return n;
}

}  // namespace

// 64 threads prepare branches faster than 4 threads commit them: each preparing thread
// must park its connection and continue on another. The process keeps at most
// max_parked of them (16 here, while 64 threads x 8 branches would want up to hundreds,
// past the server's max_connections = 200), waits when the bound is reached, and ends
// with every branch committed, nothing parked and no connection left on the server.
BOOST_AUTO_TEST_CASE(sixty_four_threads_park_within_the_process_bound, *needs_mysql) {
    table tb;
    auto admin = raw(info());
    const long before = connections(*admin);
    const std::string inf = info() + " max_parked=16 park_wait_ms=30000";
    constexpr int producers = 64, per_producer = 8, committers = 4;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<xid> prepared;
    int producers_left = producers;
    std::atomic<int> failures{0}, committed{0};
    std::atomic<long> peak{0};
    std::vector<std::string> why;
    std::map<std::string, int> ids;  // branch -> its row
    std::set<std::string> ok;        // branches whose xa_commit said XA_OK
    auto failed = [&](const std::string& what, int rc, quiet_rm& r) {
        ++failures;
        std::lock_guard g(mu);
        if (why.size() < 5) why.push_back(fmt::format("{} -> {}: {}", what, rc, r.message()));
    };
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p)
        threads.emplace_back([&, p] {
            {
                quiet_rm r(1, inf);
                if (r.opened != XA_OK) failed("xa_open", r.opened, r);
                for (int k = 0; k < per_producer && r.opened == XA_OK; ++k) {
                    const xid x = new_xid();
                    int rc = r.start(x);
                    if (rc != XA_OK) {
                        failed("xa_start", rc, r);
                        break;
                    }
                    try {
                        exec(*r.conn(), tb.insert(p * per_producer + k));
                    } catch (const sql::SQLException& e) {
                        failed(std::string("INSERT: ") + e.what(), 0, r);
                        break;
                    }
                    if ((rc = r.end(x)) != XA_OK || (rc = r.prepare(x)) != XA_OK) {
                        failed("xa_end/xa_prepare", rc, r);
                        break;
                    }
                    long now = parked_now(), seen = peak.load();
                    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
                    }
                    std::lock_guard g(mu);
                    ids[x.to_string()] = p * per_producer + k;
                    prepared.push_back(x);
                    cv.notify_one();
                }
            }
            std::lock_guard g(mu);
            --producers_left;
            cv.notify_all();
        });
    for (int c = 0; c < committers; ++c)
        threads.emplace_back([&] {
            quiet_rm r(1, inf);
            if (r.opened != XA_OK) failed("xa_open", r.opened, r);
            for (;;) {
                std::unique_lock lk(mu);
                cv.wait(lk, [&] { return !prepared.empty() || producers_left == 0; });
                if (prepared.empty()) return;
                const xid x = prepared.front();
                prepared.pop_front();
                lk.unlock();
                const int rc = r.commit(x);
                if (rc == XA_OK) {
                    ++committed;
                    std::lock_guard g2(mu);
                    ok.insert(x.to_string());
                } else
                    failed("xa_commit", rc, r);
            }
        });
    for (auto& th : threads) th.join();
    for (const auto& w : why) BOOST_TEST_MESSAGE(w);
    BOOST_TEST(failures.load() == 0);
    BOOST_TEST(committed.load() == producers * per_producer);
    BOOST_TEST(tb.count() == producers * per_producer);
    // Each committed branch's row is there (MariaDB 10.11 can answer XA COMMIT of a
    // branch whose session it is tearing down with success and commit nothing: the
    // driver must not send it then). Names the branches whose row is missing.
    {
        auto c = raw(info());
        std::unique_ptr<sql::Statement> st(c->createStatement());
        std::unique_ptr<sql::ResultSet> rs(st->executeQuery("SELECT id FROM " + tb.name));
        std::set<int> have;
        while (rs->next()) have.insert(rs->getInt(1));
        int lost = 0;
        for (const auto& [name, id] : ids)
            if (ok.count(name) && !have.count(id)) {
                ++lost;
                BOOST_TEST_MESSAGE("committed, yet its row " << id << " is missing: " << name);
            }
        BOOST_TEST(lost == 0);
    }
    // No branch of this process left prepared on the server.
    const std::string mine = "-" + std::to_string(::getpid()) + "-";
    long left = 0;
    {
        std::unique_ptr<sql::Statement> st(admin->createStatement());
        std::unique_ptr<sql::ResultSet> rs(st->executeQuery("XA RECOVER"));
        while (rs->next())
            if (rs->getString(4).asStdString().find(mine) != std::string::npos) ++left;
    }
    BOOST_TEST(left == 0);
    BOOST_TEST(peak.load() <= 16);
    BOOST_TEST(peak.load() > 0);  // the case did make threads park
    BOOST_TEST(parked_now() == 0);
    BOOST_TEST(registry_now() == 0);
    // (Not more than before: a connection closed just before the start may still have
    // been counted then.)
    BOOST_TEST(connections_settled(*admin, before) <= before);
}

// A branch detached by closing its connection (max_parked=0: each start after a
// prepare closes the connection holding the branch) and committed at once by another
// thread. MariaDB 10.11 makes the branch visible to other sessions before it detaches
// the branch's InnoDB transaction from the closing session; an XA COMMIT in between
// answers success and commits nothing (the row is missing, the transaction stays
// prepared out of XA RECOVER's sight). It happened in CI; the driver now waits until
// the server has torn the old session down (wait_session_gone).
BOOST_AUTO_TEST_CASE(branch_committed_while_its_closed_session_is_torn_down, *needs_mysql) {
    table tb;
    constexpr int producers = 4, per_producer = 50;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::pair<xid, int>> ready;
    int producers_left = producers;
    std::atomic<int> failures{0};
    std::vector<int> committed;
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p)
        threads.emplace_back([&, p] {
            {
                quiet_rm r(1, info() + " max_parked=0");
                std::optional<std::pair<xid, int>> last;
                for (int k = 0; k <= per_producer && r.opened == XA_OK; ++k) {
                    const xid x = new_xid();
                    // This start closes the connection holding `last`: hand it over now.
                    if (r.start(x) != XA_OK) {
                        ++failures;
                        break;
                    }
                    if (last) {
                        std::lock_guard g(mu);
                        ready.push_back(*last);
                        cv.notify_one();
                    }
                    if (k == per_producer) break;  // the last start only detached `last`
                    const int id = p * per_producer + k;
                    exec(*r.conn(), tb.insert(id));
                    if (r.end(x) != XA_OK || r.prepare(x) != XA_OK) {
                        ++failures;
                        break;
                    }
                    last.emplace(x, id);
                }
            }
            std::lock_guard g(mu);
            --producers_left;
            cv.notify_all();
        });
    for (int c = 0; c < 2; ++c)
        threads.emplace_back([&] {
            quiet_rm r(1, info());
            for (;;) {
                std::unique_lock lk(mu);
                cv.wait(lk, [&] { return !ready.empty() || producers_left == 0; });
                if (ready.empty()) return;
                const auto [x, id] = ready.front();
                ready.pop_front();
                lk.unlock();
                if (r.commit(x) == XA_OK) {
                    std::lock_guard g(mu);
                    committed.push_back(id);
                } else {
                    ++failures;
                }
            }
        });
    for (auto& th : threads) th.join();
    BOOST_TEST(failures.load() == 0);
    BOOST_TEST(committed.size() == static_cast<std::size_t>(producers * per_producer));
    BOOST_TEST(tb.count() == static_cast<long>(committed.size()));
}

// At the bound, a session with nothing parked of its own waits park_wait_ms, then
// xa_start fails saying which limit was reached and how to raise it.
BOOST_AUTO_TEST_CASE(parked_bound_reached_says_which_limit, *needs_mysql) {
    const std::string inf = info() + " max_parked=1 park_wait_ms=200";
    rm a(1, inf);
    const xid x1 = new_xid(), x2 = new_xid();
    BOOST_TEST_REQUIRE(a.start(x1) == XA_OK);
    BOOST_TEST_REQUIRE(a.end(x1) == XA_OK);
    BOOST_TEST_REQUIRE(a.prepare(x1) == XA_OK);
    BOOST_TEST_REQUIRE(a.start(x2) == XA_OK);  // x1's connection parked: the bound's one place
    BOOST_TEST(parked_now() == 1);
    std::thread([&] {
        rm b(1, inf);
        const xid y1 = new_xid(), y2 = new_xid();
        BOOST_TEST_REQUIRE(b.start(y1) == XA_OK);
        BOOST_TEST_REQUIRE(b.end(y1) == XA_OK);
        BOOST_TEST_REQUIRE(b.prepare(y1) == XA_OK);
        const auto t0 = std::chrono::steady_clock::now();
        BOOST_TEST(b.start(y2) == XAER_RMERR);
        const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - t0)
                                .count();
        BOOST_TEST(waited >= 200);
        const std::string m = diag(1).message;
        BOOST_TEST(m.find("max_parked=1") != std::string::npos, m);
        BOOST_TEST(m.find("park_wait_ms=200") != std::string::npos, m);
        BOOST_TEST(b.commit(y1) == XA_OK);  // still on its own connection
    }).join();
    BOOST_TEST(a.end(x2) == XA_OK);
    BOOST_TEST(a.commit(x2, TMONEPHASE) == XA_OK);
    BOOST_TEST(a.commit(x1) == XA_OK);
    const xid x3 = new_xid();
    BOOST_TEST(a.start(x3) == XA_OK);
    BOOST_TEST(a.end(x3) == XA_OK);
    BOOST_TEST(a.rollback(x3) == XA_OK);
}

// 10,000 branches whose phase two the registry sees end in every way: committed here,
// committed behind xarm's back on the holding connection (xa_commit then answers
// XAER_NOTA), and detached then finished by another client (found absent from XA
// RECOVER). The registry ends as it began.
BOOST_AUTO_TEST_CASE(registry_does_not_grow_over_ten_thousand_transactions, *needs_mysql) {
    const long base = registry_now();
    constexpr int threads = 8, per_thread = 1250;
    std::atomic<int> bad{0}, done{0};
    std::vector<std::thread> ts;
    for (int w = 0; w < threads; ++w)
        ts.emplace_back([&, w] {
            quiet_rm r(1, info());
            if (r.opened != XA_OK) ++bad;
            for (int i = 0; i < per_thread && r.opened == XA_OK; ++i) {
                const xid x = new_xid();
                if (r.start(x) != XA_OK || r.end(x) != XA_OK || r.prepare(x) != XA_OK) {
                    ++bad;
                    return;
                }
                if ((i + w) % 2 == 0) {
                    if (r.commit(x) != XA_OK) ++bad;
                } else {
                    // Finished on the holding connection behind xarm's back. With
                    // autocommit on MariaDB then answers "unknown XID", with it off (the
                    // driver's setting) XAER_OUTSIDE: both must free the entry.
                    const bool autocommit = (i / 2) % 2 == 0;
                    int rc = XA_OK;
                    try {
                        exec(*r.conn(), "XA COMMIT " + xarm::encode_mysql_xid(x));
                        if (autocommit) exec(*r.conn(), "SET autocommit=1");
                        rc = r.commit(x);
                        if (autocommit) exec(*r.conn(), "SET autocommit=0");
                    } catch (const sql::SQLException&) {
                        ++bad;
                        return;
                    }
                    if (rc != (autocommit ? XAER_NOTA : XAER_OUTSIDE)) ++bad;
                }
                ++done;
            }
        });
    for (auto& t : ts) t.join();
    BOOST_TEST(bad.load() == 0);
    BOOST_TEST(done.load() == threads * per_thread);
    BOOST_TEST(registry_now() == base);
    // Detached by closing, then finished by another client: gone at the next recovery.
    // (Each writes a row: MariaDB discards a detached branch that wrote nothing.)
    table tb;
    auto other = raw(info());
    for (int i = 0; i < 3; ++i) {
        const xid x = new_xid();
        std::thread([&] {
            rm r(1);
            BOOST_TEST_REQUIRE(r.start(x) == XA_OK);
            exec(r.conn(), tb.insert(i));
            BOOST_TEST_REQUIRE(r.end(x) == XA_OK);
            BOOST_TEST_REQUIRE(r.prepare(x) == XA_OK);
        }).join();
        BOOST_TEST(registry_now() == base + i + 1);
        for (int tries = 0;; ++tries) {  // until the server has detached it
            try {
                exec(*other, "XA ROLLBACK " + xarm::encode_mysql_xid(x));
                break;
            } catch (const sql::SQLException&) {
                BOOST_TEST_REQUIRE(tries < 200);
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
        }
    }
    rm r(1);
    r.recover(100);
    BOOST_TEST(registry_now() == base);
}

BOOST_AUTO_TEST_SUITE_END()
