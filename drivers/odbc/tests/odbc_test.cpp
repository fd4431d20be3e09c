// The ODBC driver against real ODBC drivers (psqlODBC, MariaDB Connector/ODBC, SQLite
// ODBC) configured by tools/devservers: the generic not-supported path (SQLite), full
// two-phase to PostgreSQL and MariaDB through their own SQL, recovery, error mapping,
// and cross-driver recovery with the native pq and mysql drivers.
#define BOOST_TEST_MODULE xarm_odbc
#include <sql.h>
#include <sqlext.h>

#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "scratch_pg.hpp"
#include "xarm/connection.hpp"
#include "xarm/error.hpp"
#include "xarm/xa.h"
#include "xarm/xarm.h"
#include "xarm_testing.hpp"

extern "C" struct xa_switch_t xarm_odbc_switch;
extern "C" SQLHDBC xarm_odbc_hdbc(int rmid);

namespace utf = boost::unit_test;
using xarm::testing::needs;
using xarm::testing::server;
using xarm::testing::unique;

namespace {

const char* const PQ = "XARM_TEST_ODBC_PQ";
const char* const MY = "XARM_TEST_ODBC_MYSQL";
const char* const LITE = "XARM_TEST_ODBC_SQLITE";

/// A table name from unique(): letters, digits and underscores only.
std::string table_name(const std::string& prefix) {
    std::string t = unique(prefix);
    std::replace(t.begin(), t.end(), '-', '_');
    return t;
}

xarm::xid make_xid(const std::string& tag, std::string bqual = "b1") {
    return xarm::xid(4242, unique("xodbc-" + tag), std::move(bqual));
}

XID to_c(const xarm::xid& x) {
    XID c{};
    x.to_c(c);
    return c;
}

xarm_diag last(int rmid) {
    xarm_diag d{};
    BOOST_TEST(xarm_last_error(rmid, &d) == 0);
    return d;
}

/// Runs sql on an application's ODBC connection; returns the SQLSTATE ("00000" on success).
std::string exec_raw(SQLHDBC dbc, const std::string& sql) {
    SQLHSTMT st = SQL_NULL_HSTMT;
    BOOST_REQUIRE(SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_STMT, dbc, &st)));
    SQLRETURN rc =
        SQLExecDirect(st, reinterpret_cast<SQLCHAR*>(const_cast<char*>(sql.c_str())), SQL_NTS);
    std::string state = "00000";
    if (!SQL_SUCCEEDED(rc) && rc != SQL_NO_DATA) {
        SQLCHAR s[6] = {};
        SQLINTEGER native = 0;
        SQLCHAR msg[256];
        SQLSMALLINT len = 0;
        SQLGetDiagRec(SQL_HANDLE_STMT, st, 1, s, &native, msg, sizeof msg, &len);
        state = reinterpret_cast<const char*>(s);
    }
    SQLFreeHandle(SQL_HANDLE_STMT, st);
    return state;
}

long count_rows(xarm::connection& c, const std::string& table) {
    auto r = c.query("SELECT COUNT(*) FROM " + table);
    c.rollback();
    BOOST_REQUIRE(r.rows.size() == 1);
    return std::stol(*r.rows[0][0]);
}

bool listed(const std::vector<xarm::xid>& v, const xarm::xid& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
}

/// The XIDs xa_recover returns on rmid (one scan).
std::vector<xarm::xid> c_recover(int rmid) {
    std::vector<XID> buf(1000);
    int n = xarm_odbc_switch.xa_recover_entry(buf.data(), static_cast<long>(buf.size()), rmid,
                                              TMSTARTRSCAN | TMENDRSCAN);
    BOOST_REQUIRE(n >= 0);
    std::vector<xarm::xid> out;
    for (int i = 0; i < n; ++i) out.push_back(xarm::xid::from_c(&buf[static_cast<std::size_t>(i)]));
    return out;
}

/// A connection for cleaning up: the prepared branches this process left (their gtrids
/// carry its pid) are rolled back, and no lock is waited for long, even behind a branch
/// a broken driver leaked.
xarm::connection cleaner(const std::string& info) {
    auto c = xarm::connect("odbc", info);
    const std::string mine = "-" + std::to_string(::getpid()) + "-";
    try {
        for (const auto& x : c.tpc_recover())
            if (x.gtrid().find("xodbc") == 0 && x.gtrid().find(mine) != std::string::npos) try {
                    c.tpc_rollback(x);
                } catch (const xarm::error&) {
                    // Finished meanwhile, or still attached elsewhere.
                }
    } catch (const xarm::error&) {
        // No recovery through this backend (SQLite).
    }
    for (const char* q : {"SET lock_timeout = '5s'",  // PostgreSQL
                          "SET SESSION lock_wait_timeout = 5, innodb_lock_wait_timeout = 5"}) {
        try {
            c.execute(q);
            c.commit();
        } catch (const xarm::error&) {
            c.rollback();  // the other backend's statement
        }
    }
    return c;
}

/// A scratch table created and dropped through ODBC (autocommit off: committed locally).
struct table_guard {
    std::string info, name;
    table_guard(std::string i, const std::string& prefix, const std::string& columns = "a INT")
        : info(std::move(i)), name(table_name(prefix)) {
        auto c = xarm::connect("odbc", info);
        c.execute("CREATE TABLE " + name + " (" + columns + ")");
        c.commit();
    }
    ~table_guard() {
        try {
            auto c = cleaner(info);
            c.execute("DROP TABLE " + name);
            c.commit();
        } catch (...) {
        }
    }
};

/// The native driver when it is part of the build; under CI=true it must be.
std::optional<xarm::connection> native(const char* driver, const char* var) {
    try {
        xarm::load_driver(driver);
    } catch (const xarm::error& e) {
        if (xarm::testing::under_ci())
            BOOST_FAIL(std::string("native driver missing: ") + e.what());
        BOOST_TEST_MESSAGE("native " << driver << " driver not built: cross-driver case skipped");
        return std::nullopt;
    }
    return xarm::connect(driver, server(var));
}

/// The connection string with MariaDB's read-only vote on (xarm's own key).
std::string read_only_voting(const std::string& info) {
    return info + ";XARM_READ_ONLY_VOTE=on";
}

/// The server session id of an ODBC connection (CONNECTION_ID(), MariaDB).
long connection_id(SQLHDBC dbc) {
    SQLHSTMT st = SQL_NULL_HSTMT;
    BOOST_REQUIRE(SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_STMT, dbc, &st)));
    BOOST_REQUIRE(SQL_SUCCEEDED(SQLExecDirect(st, (SQLCHAR*)"SELECT CONNECTION_ID()", SQL_NTS)));
    BOOST_REQUIRE(SQL_SUCCEEDED(SQLFetch(st)));
    SQLINTEGER id = 0;
    SQLLEN ind = 0;
    BOOST_REQUIRE(SQL_SUCCEEDED(SQLGetData(st, 1, SQL_C_SLONG, &id, 0, &ind)));
    SQLFreeHandle(SQL_HANDLE_STMT, st);
    return id;
}

/// Starts branch a on rmid, inserts v into table on the application's handle, ends and
/// prepares the branch; returns the server session id seen inside it.
long prepare_an_insert(int rmid, XID& a, const std::string& table, int v) {
    BOOST_REQUIRE(xarm_odbc_switch.xa_start_entry(&a, rmid, TMNOFLAGS) == XA_OK);
    const long id = connection_id(xarm_odbc_hdbc(rmid));
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(rmid),
                        "INSERT INTO " + table + " VALUES (" + std::to_string(v) + ")") == "00000");
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&a, rmid, TMNOFLAGS) == XA_OK);
    return id;
}

/// An open rmid, closed at the end of the test.
struct rm {
    int id;
    rm(const std::string& info, int rmid) : id(rmid) {
        BOOST_REQUIRE_EQUAL(
            xarm_odbc_switch.xa_open_entry(const_cast<char*>(info.c_str()), id, TMNOFLAGS), XA_OK);
    }
    ~rm() { xarm_odbc_switch.xa_close_entry(const_cast<char*>(""), id, TMNOFLAGS); }
};

}  // namespace

// ---- connection strings and secrets ------------------------------------------------

BOOST_AUTO_TEST_SUITE(open)

BOOST_AUTO_TEST_CASE(unknown_dsn_is_xaer_inval_without_password) {
    std::string info = "DSN=xarm_no_such_dsn;UID=someone;PWD=Sup3rSecretValue";
    BOOST_TEST(xarm_odbc_switch.xa_open_entry(info.data(), 71, TMNOFLAGS) == XAER_INVAL);
    auto d = last(71);
    BOOST_TEST(d.xa_code == XAER_INVAL);
    BOOST_TEST(std::string(d.sqlstate) == "IM002");
    BOOST_TEST(std::string(d.message).find("Sup3rSecretValue") == std::string::npos);
    BOOST_TEST(std::string(d.message).find("SQLDriverConnect") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(empty_string_is_xaer_inval) {
    std::string info = "  ";
    BOOST_TEST(xarm_odbc_switch.xa_open_entry(info.data(), 72, TMNOFLAGS) == XAER_INVAL);
    BOOST_CHECK_THROW(xarm::connect("odbc", ""), xarm::programming_error);
}

BOOST_AUTO_TEST_CASE(wrong_password_is_rmerr_without_password, *utf::precondition(needs{PQ})) {
    server(PQ);
    std::string info = "DSN=xarm_pq;UID=xarm;PWD=Wr0ngPassw0rdXyz";
    BOOST_TEST(xarm_odbc_switch.xa_open_entry(info.data(), 73, TMNOFLAGS) == XAER_RMERR);
    auto d = last(73);
    BOOST_TEST(std::string(d.message).find("Wr0ngPassw0rdXyz") == std::string::npos);
    BOOST_TEST(std::string(d.sqlstate).substr(0, 2) != "00");
    try {
        xarm::connect("odbc", info);
        BOOST_FAIL("connected with a wrong password");
    } catch (const xarm::error& e) {
        BOOST_TEST(std::string(e.what()).find("Wr0ngPassw0rdXyz") == std::string::npos);
        BOOST_TEST(e.xa_code() == XAER_RMERR);
    }
}

BOOST_AUTO_TEST_CASE(hdbc_is_null_before_open_and_after_close, *utf::precondition(needs{LITE})) {
    BOOST_TEST(xarm_odbc_hdbc(74) == nullptr);
    {
        rm r(server(LITE), 74);
        BOOST_TEST(xarm_odbc_hdbc(74) != nullptr);
    }
    BOOST_TEST(xarm_odbc_hdbc(74) == nullptr);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- the generic path: SQLite through ODBC -----------------------------------------

BOOST_AUTO_TEST_SUITE(sqlite_generic, *utf::precondition(needs{LITE}))

BOOST_AUTO_TEST_CASE(capabilities_are_honest) {
    auto c = xarm::connect("odbc", server(LITE));
    auto caps = c.capabilities();
    BOOST_TEST(!caps.has(xarm::capability::two_phase));
    BOOST_TEST(caps.get(xarm::capability::two_phase).reason.find("SQLite") != std::string::npos);
    BOOST_TEST(caps.has(xarm::capability::one_phase));
    BOOST_TEST(caps.has(xarm::capability::recovery));
    BOOST_TEST(!caps.has(xarm::capability::interleave));
}

BOOST_AUTO_TEST_CASE(one_phase_commit_and_rollback_through_the_switch) {
    const std::string info = server(LITE);
    table_guard t(info, "odbc_lite");
    rm r(info, 80);
    SQLHDBC h = xarm_odbc_hdbc(80);
    BOOST_REQUIRE(h != nullptr);
    auto other = xarm::connect("odbc", info);

    XID a = to_c(make_xid("lite-commit"));
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, 80, TMNOFLAGS) == XA_OK);
    BOOST_TEST(exec_raw(h, "INSERT INTO " + t.name + " VALUES (1)") == "00000");
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, 80, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&a, 80, TMONEPHASE) == XA_OK);
    BOOST_TEST(count_rows(other, t.name) == 1);

    XID b = to_c(make_xid("lite-rollback"));
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&b, 80, TMNOFLAGS) == XA_OK);
    BOOST_TEST(exec_raw(h, "INSERT INTO " + t.name + " VALUES (2)") == "00000");
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&b, 80, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_rollback_entry(&b, 80, TMNOFLAGS) == XA_OK);
    BOOST_TEST(count_rows(other, t.name) == 1);
}

BOOST_AUTO_TEST_CASE(prepare_refused_every_time_and_branch_still_rollbackable) {
    const std::string info = server(LITE);
    table_guard t(info, "odbc_lite");
    rm r(info, 81);
    XID a = to_c(make_xid("lite-prep"));
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, 81, TMNOFLAGS) == XA_OK);
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(81), "INSERT INTO " + t.name + " VALUES (1)") == "00000");
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, 81, TMSUCCESS) == XA_OK);
    for (int i = 0; i < 3; ++i) {
        BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&a, 81, TMNOFLAGS) == XAER_RMERR);
        auto d = last(81);
        BOOST_TEST(std::string(d.sqlstate) == "0A000");
        BOOST_TEST(std::string(d.message).find("SQLite") != std::string::npos);
    }
    BOOST_TEST(xarm_odbc_switch.xa_rollback_entry(&a, 81, TMNOFLAGS) == XA_OK);
    auto other = xarm::connect("odbc", info);
    BOOST_TEST(count_rows(other, t.name) == 0);
    BOOST_TEST(c_recover(81).empty());

    // C++: not_supported_error every time; the branch can still be rolled back.
    auto c = xarm::connect("odbc", info);
    c.tpc_begin(make_xid("lite-prep-cpp"));
    c.execute("INSERT INTO " + t.name + " VALUES (5)");
    BOOST_CHECK_THROW(c.tpc_prepare(), xarm::not_supported_error);
    BOOST_CHECK_THROW(c.tpc_prepare(), xarm::not_supported_error);
    c.tpc_rollback();
    BOOST_TEST(count_rows(other, t.name) == 0);
    BOOST_TEST(c.tpc_recover().empty());
}

BOOST_AUTO_TEST_CASE(cpp_one_phase_and_local_transactions) {
    const std::string info = server(LITE);
    table_guard t(info, "odbc_lite");
    auto c = xarm::connect("odbc", info);
    auto other = xarm::connect("odbc", info);
    c.tpc_begin(make_xid("lite-cpp"));
    BOOST_TEST(c.execute("INSERT INTO " + t.name + " VALUES (1)") == 1);
    c.tpc_commit();  // one phase
    BOOST_TEST(count_rows(other, t.name) == 1);
    c.execute("INSERT INTO " + t.name + " VALUES (2)");
    c.rollback();
    BOOST_TEST(count_rows(other, t.name) == 1);
    c.execute("INSERT INTO " + t.name + " VALUES (3)");
    c.commit();
    BOOST_TEST(count_rows(other, t.name) == 2);
    // A branch cannot start over a local transaction (XAER_OUTSIDE).
    c.execute("INSERT INTO " + t.name + " VALUES (4)");
    try {
        c.tpc_begin(make_xid("lite-outside"));
        BOOST_FAIL("tpc_begin over local work");
    } catch (const xarm::error& e) {
        BOOST_TEST(e.xa_code() == XAER_OUTSIDE);
    }
    c.rollback();
    // C switch: commit without TMONEPHASE of an unknown branch is XAER_NOTA.
    rm r(info, 82);
    XID x = to_c(make_xid("lite-nota"));
    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&x, 82, TMNOFLAGS) == XAER_NOTA);
    BOOST_TEST(xarm_odbc_switch.xa_rollback_entry(&x, 82, TMNOFLAGS) == XAER_NOTA);
}

BOOST_AUTO_TEST_CASE(sql_errors_map_and_make_the_branch_rollback_only) {
    const std::string info = server(LITE);
    auto c = xarm::connect("odbc", info);
    try {
        c.execute("SELECT * FROM xarm_no_such_table_odbc");
        BOOST_FAIL("no error");
    } catch (const xarm::database_error& e) {
        BOOST_TEST(e.xa_code() == XAER_RMERR);
        BOOST_TEST(e.driver() == "odbc");
        BOOST_TEST(e.sqlstate().size() == 5u);
    }
    c.rollback();
    c.tpc_begin(make_xid("lite-fail"));
    BOOST_CHECK_THROW(c.execute("SELECT * FROM xarm_no_such_table_odbc"), xarm::database_error);
    try {
        c.tpc_commit();  // one phase: the failed statement makes it a rollback
        BOOST_FAIL("committed a branch with a failed statement");
    } catch (const xarm::rollback_error& e) {
        BOOST_TEST(xarm::is_rollback_code(e.xa_code()));
    }
}

BOOST_AUTO_TEST_SUITE_END()

// ---- shared two-phase cases for the backends with two-phase -------------------------

namespace {

void two_phase_through_switch(const char* var, int rmid) {
    const std::string info = server(var);
    table_guard t(info, "odbc_2pc");
    rm r(info, rmid);
    auto c = xarm::connect("odbc", info);
    BOOST_REQUIRE(c.capabilities().has(xarm::capability::two_phase));

    auto xa = make_xid("sw-commit");
    XID a = to_c(xa);
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(rmid), "INSERT INTO " + t.name + " VALUES (1)") == "00000");
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&a, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(listed(c_recover(rmid), xa));
    BOOST_TEST(listed(c.tpc_recover(), xa));
    BOOST_TEST(count_rows(c, t.name) == 0);  // prepared, not committed

    // A prepared branch does not hold the connection: another branch can start.
    auto xb = make_xid("sw-rollback");
    XID b = to_c(xb);
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&b, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(rmid), "INSERT INTO " + t.name + " VALUES (2)") == "00000");
    // Recovery works while a branch is active on the same connection.
    BOOST_TEST(listed(c_recover(rmid), xa));
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&b, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&b, rmid, TMNOFLAGS) == XA_OK);

    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&a, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_rollback_entry(&b, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(count_rows(c, t.name) == 1);
    auto after = c_recover(rmid);
    BOOST_TEST(!listed(after, xa));
    BOOST_TEST(!listed(after, xb));

    // Finishing it again: the branch is gone.
    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&a, rmid, TMNOFLAGS) == XAER_NOTA);

    // One-phase commit through the switch.
    auto xc = make_xid("sw-1pc");
    XID cc = to_c(xc);
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&cc, rmid, TMNOFLAGS) == XA_OK);
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(rmid), "INSERT INTO " + t.name + " VALUES (3)") == "00000");
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&cc, rmid, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&cc, rmid, TMONEPHASE) == XA_OK);
    BOOST_TEST(count_rows(c, t.name) == 2);
}

void two_phase_cpp_and_recovery_from_another_connection(const char* var) {
    const std::string info = server(var);
    table_guard t(info, "odbc_2pc");
    auto other = xarm::connect("odbc", info);
    // Binary gtrid and bqual: NUL, 0xff, quotes, backslash, commas.
    const std::string g = std::string("bin\0\xff'\\,\"", 9) + unique("g");
    const std::string bq = std::string("\x00\x01'q,", 5);
    auto x = xarm::xid(0x7fffffffL, g, bq);
    {
        auto c = xarm::connect("odbc", info);
        c.tpc_begin(x);
        c.execute("INSERT INTO " + t.name + " VALUES (7)");
        c.tpc_prepare();
        c.close();  // the prepared branch outlives its connection
    }
    auto rec = other.tpc_recover();
    auto it = std::find(rec.begin(), rec.end(), x);
    BOOST_REQUIRE(it != rec.end());
    BOOST_TEST(it->gtrid() == g);
    BOOST_TEST(it->bqual() == bq);
    BOOST_TEST(it->format_id() == 0x7fffffffL);
    BOOST_TEST(count_rows(other, t.name) == 0);
    other.tpc_commit(*it);
    BOOST_TEST(count_rows(other, t.name) == 1);
    BOOST_TEST(!listed(other.tpc_recover(), x));

    // The same the other way: rollback by xid from another connection.
    auto y = make_xid("cpp-rb", std::string("\xfe\x00", 2));
    {
        auto c = xarm::connect("odbc", info);
        c.tpc_begin(y);
        c.execute("INSERT INTO " + t.name + " VALUES (8)");
        c.tpc_prepare();
    }
    BOOST_TEST(listed(other.tpc_recover(), y));
    other.tpc_rollback(y);
    BOOST_TEST(count_rows(other, t.name) == 1);
    BOOST_TEST(!listed(other.tpc_recover(), y));
}

/// A failed statement in a branch: prepare must roll back, never prepare half the work.
void failed_statement_rolls_back_at_prepare(const char* var, int rmid) {
    const std::string info = server(var);
    table_guard t(info, "odbc_fail");
    auto other = xarm::connect("odbc", info);
    // Through the C++ API.
    auto x = make_xid("fail-cpp");
    auto c = xarm::connect("odbc", info);
    c.tpc_begin(x);
    c.execute("INSERT INTO " + t.name + " VALUES (1)");
    BOOST_CHECK_THROW(c.execute("INSERT INTO xarm_no_such_table_odbc VALUES (1)"), xarm::error);
    try {
        c.execute("INSERT INTO " + t.name + " VALUES (2)");  // MariaDB accepts it
    } catch (const xarm::error&) {
        // PostgreSQL: the block is aborted (25P02)
    }
    try {
        c.tpc_prepare();
        BOOST_FAIL("prepared a branch whose statement failed");
    } catch (const xarm::rollback_error& e) {
        BOOST_TEST(xarm::is_rollback_code(e.xa_code()));
    }
    BOOST_TEST(!listed(other.tpc_recover(), x));
    BOOST_TEST(count_rows(other, t.name) == 0);
    // The connection is usable again.
    c.tpc_begin(make_xid("fail-cpp-after"));
    c.execute("INSERT INTO " + t.name + " VALUES (3)");
    c.tpc_prepare();
    c.tpc_commit();
    BOOST_TEST(count_rows(other, t.name) == 1);

    // Through the switch, the failure on the application's own handle. PostgreSQL: the
    // server aborted the block (psqlODBC is told not to hide it); MariaDB rolls back only
    // the statement, which the switch cannot see: documented in the report.
    if (std::string(var) == PQ) {
        rm r(info, rmid);
        auto y = make_xid("fail-sw");
        XID a = to_c(y);
        BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, rmid, TMNOFLAGS) == XA_OK);
        BOOST_TEST(exec_raw(xarm_odbc_hdbc(rmid), "INSERT INTO " + t.name + " VALUES (4)") ==
                   "00000");
        BOOST_TEST(exec_raw(xarm_odbc_hdbc(rmid), "SELECT 1/0") == "22012");
        BOOST_TEST(exec_raw(xarm_odbc_hdbc(rmid), "INSERT INTO " + t.name + " VALUES (5)") ==
                   "25P02");
        BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, rmid, TMSUCCESS) == XA_OK);
        const int rc = xarm_odbc_switch.xa_prepare_entry(&a, rmid, TMNOFLAGS);
        BOOST_TEST((rc >= XA_RBBASE && rc <= XA_RBEND));
        BOOST_TEST(!listed(other.tpc_recover(), y));
        BOOST_TEST(count_rows(other, t.name) == 1);
        // One-phase: COMMIT of the aborted block would quietly roll back; the switch
        // says so with an XA_RB* code instead of XA_OK.
        XID b = to_c(make_xid("fail-sw-1pc"));
        BOOST_TEST(xarm_odbc_switch.xa_start_entry(&b, rmid, TMNOFLAGS) == XA_OK);
        BOOST_TEST(exec_raw(xarm_odbc_hdbc(rmid), "INSERT INTO " + t.name + " VALUES (6)") ==
                   "00000");
        BOOST_TEST(exec_raw(xarm_odbc_hdbc(rmid), "SELECT 1/0") == "22012");
        BOOST_TEST(xarm_odbc_switch.xa_end_entry(&b, rmid, TMSUCCESS) == XA_OK);
        const int rc1 = xarm_odbc_switch.xa_commit_entry(&b, rmid, TMONEPHASE);
        BOOST_TEST((rc1 >= XA_RBBASE && rc1 <= XA_RBEND));
        BOOST_TEST(count_rows(other, t.name) == 1);
    }
}

/// Prepare through ODBC, finish through the native driver, and back.
void cross_driver(const char* odbc_var, const char* native_name, const char* native_var) {
    const std::string info = server(odbc_var);
    auto nat = native(native_name, native_var);
    if (!nat) return;
    table_guard t(info, "odbc_cross");
    auto o = xarm::connect("odbc", info);
    // ODBC -> native
    auto x = xarm::xid(1, unique("cross\x01\x00x"), std::string("\x00\xff", 2));
    {
        auto c = xarm::connect("odbc", info);
        c.tpc_begin(x);
        c.execute("INSERT INTO " + t.name + " VALUES (1)");
        c.tpc_prepare();
    }
    auto rec = nat->tpc_recover();
    BOOST_REQUIRE(listed(rec, x));
    nat->tpc_commit(x);
    BOOST_TEST(count_rows(o, t.name) == 1);
    BOOST_TEST(!listed(o.tpc_recover(), x));
    // native -> ODBC (a fresh native connection per branch: a C++ connection stays in
    // its prepared branch until it finishes it itself)
    auto y = xarm::xid(99, unique("cross-back"), "bq\xff");
    {
        auto n = native(native_name, native_var);
        n->tpc_begin(y);
        n->execute("INSERT INTO " + t.name + " VALUES (2)");
        n->tpc_prepare();
    }
    BOOST_REQUIRE(listed(o.tpc_recover(), y));
    o.tpc_rollback(y);
    BOOST_TEST(!listed(nat->tpc_recover(), y));
    auto z = xarm::xid(100, unique("cross-back-c"), "");
    {
        auto n = native(native_name, native_var);
        n->tpc_begin(z);
        n->execute("INSERT INTO " + t.name + " VALUES (3)");
        n->tpc_prepare();
    }
    BOOST_REQUIRE(listed(o.tpc_recover(), z));
    o.tpc_commit(z);
    BOOST_TEST(!listed(nat->tpc_recover(), z));
    BOOST_TEST(count_rows(o, t.name) == 2);
}

}  // namespace

// ---- PostgreSQL through psqlODBC ----------------------------------------------------

BOOST_AUTO_TEST_SUITE(postgresql, *utf::precondition(needs{PQ}))

BOOST_AUTO_TEST_CASE(capabilities_per_connection) {
    auto c = xarm::connect("odbc", server(PQ));
    auto caps = c.capabilities();
    BOOST_TEST(caps.has(xarm::capability::two_phase));
    BOOST_TEST(caps.has(xarm::capability::recovery));
    BOOST_TEST(caps.has(xarm::capability::read_only_vote));
    BOOST_TEST(caps.get(xarm::capability::two_phase).reason.find("PostgreSQL") !=
               std::string::npos);
    BOOST_TEST(!caps.has(xarm::capability::interleave));
}

BOOST_AUTO_TEST_CASE(two_phase_through_the_switch) {
    two_phase_through_switch(PQ, 90);
}

BOOST_AUTO_TEST_CASE(two_phase_cpp_binary_xids_and_recovery) {
    two_phase_cpp_and_recovery_from_another_connection(PQ);
}

BOOST_AUTO_TEST_CASE(failed_statement_means_rollback_at_prepare) {
    failed_statement_rolls_back_at_prepare(PQ, 91);
}

BOOST_AUTO_TEST_CASE(read_only_branch_votes_rdonly) {
    const std::string info = server(PQ);
    rm r(info, 92);
    auto x = make_xid("ro");
    XID a = to_c(x);
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, 92, TMNOFLAGS) == XA_OK);
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(92), "SELECT 1") == "00000");
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, 92, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&a, 92, TMNOFLAGS) == XA_RDONLY);
    BOOST_TEST(!listed(c_recover(92), x));
    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&a, 92, TMNOFLAGS) == XAER_NOTA);
}

// A branch whose statements all ran through xarm and one of which changed rows is
// prepared with PREPARE TRANSACTION alone, as by hand; otherwise the read-only check
// travels with it. The server's pg_stat_activity shows the backend's last query.
BOOST_AUTO_TEST_CASE(a_branch_that_wrote_through_xarm_is_prepared_without_the_check) {
    const std::string info = server(PQ);
    table_guard t(info, "odbc_proof");
    auto c = xarm::connect("odbc", info);
    auto other = xarm::connect("odbc", info);
    const std::string pid = *c.query("SELECT pg_backend_pid()").rows[0][0];
    c.rollback();
    auto last_query = [&] {
        auto r = other.query("SELECT query FROM pg_stat_activity WHERE pid = " + pid);
        other.rollback();
        BOOST_REQUIRE(r.rows.size() == 1);
        return std::string(*r.rows[0][0]);
    };
    c.tpc_begin(make_xid("proof-wrote"));
    c.execute("INSERT INTO " + t.name + " VALUES (1)");
    BOOST_TEST((c.tpc_prepare() == xarm::vote::ok));
    BOOST_TEST(last_query().starts_with("PREPARE TRANSACTION"), last_query());
    c.tpc_commit();
    BOOST_TEST(count_rows(other, t.name) == 1);

    // Nothing changed (an UPDATE that matched no row): the check decides, read-only
    // (PREPARE TRANSACTION alone would have voted XA_OK).
    c.tpc_begin(make_xid("proof-none"));
    c.execute("UPDATE " + t.name + " SET a = 2 WHERE a = 99");
    BOOST_TEST((c.tpc_prepare() == xarm::vote::read_only));
    c.tpc_commit();  // nothing left on the server: PEP 249 still ends the branch so

    // A row changed by a statement that returns rows proves nothing here: the check runs
    // (and finds the write).
    c.tpc_begin(make_xid("proof-returning"));
    c.query("INSERT INTO " + t.name + " VALUES (3) RETURNING a");
    BOOST_TEST((c.tpc_prepare() == xarm::vote::ok));
    BOOST_TEST(last_query().find("pg_current_xact_id_if_assigned") != std::string::npos,
               last_query());
    c.tpc_commit();
    BOOST_TEST(count_rows(other, t.name) == 2);
}

// One-phase COMMIT of a block PostgreSQL aborted would answer ROLLBACK, which ODBC
// reports as success: a failure seen through xarm, or one on xarm_odbc_hdbc (then
// xarm looks before COMMIT), must come back as a rollback, the row not committed.
BOOST_AUTO_TEST_CASE(one_phase_commit_after_a_failed_statement_is_a_rollback) {
    const std::string info = server(PQ);
    table_guard t(info, "odbc_1pc_fail");
    auto c = xarm::connect("odbc", info);
    c.tpc_begin(make_xid("1pc-fail"));
    c.execute("INSERT INTO " + t.name + " VALUES (1)");
    BOOST_CHECK_THROW(c.execute("SELECT * FROM xarm_no_such_table_odbc"), xarm::database_error);
    BOOST_CHECK_THROW(c.tpc_commit(), xarm::rollback_error);
    rm r(info, 93);
    auto x = make_xid("1pc-fail-sw");
    XID a = to_c(x);
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, 93, TMNOFLAGS) == XA_OK);
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(93), "INSERT INTO " + t.name + " VALUES (2)") == "00000");
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(93), "SELECT * FROM xarm_no_such_table_odbc") != "00000");
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, 93, TMSUCCESS) == XA_OK);
    const int rc = xarm_odbc_switch.xa_commit_entry(&a, 93, TMONEPHASE);
    BOOST_TEST((rc >= XA_RBBASE && rc <= XA_RBEND), rc);
    BOOST_TEST(count_rows(c, t.name) == 0);
    // and the connection is usable again
    auto y = make_xid("1pc-ok-sw");
    XID b = to_c(y);
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&b, 93, TMNOFLAGS) == XA_OK);
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(93), "INSERT INTO " + t.name + " VALUES (3)") == "00000");
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&b, 93, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&b, 93, TMONEPHASE) == XA_OK);
    BOOST_TEST(count_rows(c, t.name) == 1);
}

BOOST_AUTO_TEST_CASE(deferred_constraint_at_prepare_is_rbintegrity) {
    const std::string info = server(PQ);
    table_guard t(info, "odbc_defer", "a INT UNIQUE DEFERRABLE INITIALLY DEFERRED");
    auto c = xarm::connect("odbc", info);
    auto x = make_xid("defer");
    c.tpc_begin(x);
    c.execute("INSERT INTO " + t.name + " VALUES (1)");
    c.execute("INSERT INTO " + t.name + " VALUES (1)");
    try {
        c.tpc_prepare();
        BOOST_FAIL("prepared a constraint violation");
    } catch (const xarm::rollback_error& e) {
        BOOST_TEST(e.xa_code() == XA_RBINTEGRITY);
        BOOST_TEST(e.sqlstate() == "23505");
    }
    BOOST_TEST(!listed(c.tpc_recover(), x));
    BOOST_TEST(count_rows(c, t.name) == 0);
}

BOOST_AUTO_TEST_CASE(finishing_an_unknown_branch_is_nota) {
    auto c = xarm::connect("odbc", server(PQ));
    try {
        c.tpc_commit(make_xid("never-prepared"));
        BOOST_FAIL("committed an unknown branch");
    } catch (const xarm::error& e) {
        BOOST_TEST(e.xa_code() == XAER_NOTA);
        BOOST_TEST(e.sqlstate() == "42704");
    }
    rm r(server(PQ), 93);
    XID a = to_c(make_xid("never-prepared-c"));
    BOOST_TEST(xarm_odbc_switch.xa_rollback_entry(&a, 93, TMNOFLAGS) == XAER_NOTA);
    BOOST_TEST(std::string(last(93).sqlstate) == "42704");
}

BOOST_AUTO_TEST_CASE(lost_connection_is_rmfail) {
    const std::string info = server(PQ);
    rm r(info, 94);
    auto killer = xarm::connect("odbc", info);
    XID a = to_c(make_xid("lost"));
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, 94, TMNOFLAGS) == XA_OK);
    // Our own backend's pid, through a statement of the branch.
    SQLHSTMT st = SQL_NULL_HSTMT;
    BOOST_REQUIRE(SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_STMT, xarm_odbc_hdbc(94), &st)));
    BOOST_REQUIRE(SQL_SUCCEEDED(SQLExecDirect(st, (SQLCHAR*)"SELECT pg_backend_pid()", SQL_NTS)));
    BOOST_REQUIRE(SQL_SUCCEEDED(SQLFetch(st)));
    SQLINTEGER pid = 0;
    SQLLEN ind = 0;
    BOOST_REQUIRE(SQL_SUCCEEDED(SQLGetData(st, 1, SQL_C_SLONG, &pid, 0, &ind)));
    SQLFreeHandle(SQL_HANDLE_STMT, st);
    killer.query("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
    killer.rollback();
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, 94, TMSUCCESS) == XA_OK);
    // Prepare finds the connection gone: XAER_RMFAIL, and the session stays failed.
    BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&a, 94, TMNOFLAGS) == XAER_RMFAIL);
    BOOST_TEST(last(94).xa_code == XAER_RMFAIL);
    XID b = to_c(make_xid("lost-after"));
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&b, 94, TMNOFLAGS) == XAER_RMFAIL);
}

BOOST_AUTO_TEST_CASE(statement_level_rollback_cannot_be_turned_back_on) {
    // psqlODBC's Protocol=7.4-2 (statement-level rollback) in the caller's string would
    // hide a failed statement: the driver's own setting wins.
    const std::string info = server(PQ) + ";Protocol=7.4-2";
    table_guard t(server(PQ), "odbc_proto");
    rm r(info, 95);
    XID a = to_c(make_xid("proto"));
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, 95, TMNOFLAGS) == XA_OK);
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(95), "INSERT INTO " + t.name + " VALUES (1)") == "00000");
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(95), "SELECT 1/0") == "22012");
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(95), "INSERT INTO " + t.name + " VALUES (2)") == "25P02");
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, 95, TMSUCCESS) == XA_OK);
    const int rc = xarm_odbc_switch.xa_prepare_entry(&a, 95, TMNOFLAGS);
    BOOST_TEST((rc >= XA_RBBASE && rc <= XA_RBEND));
}

BOOST_AUTO_TEST_CASE(serialization_failure_is_rbtransient) {
    const std::string info = server(PQ);
    table_guard t(info, "odbc_ser");
    auto setup = xarm::connect("odbc", info);
    setup.execute("INSERT INTO " + t.name + " VALUES (1)");
    setup.commit();
    auto c = xarm::connect("odbc", info);
    c.tpc_begin(make_xid("ser"));
    c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
    c.query("SELECT a FROM " + t.name);  // takes the snapshot
    setup.execute("UPDATE " + t.name + " SET a = 2");
    setup.commit();
    try {
        c.execute("UPDATE " + t.name + " SET a = 3");
        BOOST_FAIL("no serialization failure");
    } catch (const xarm::rollback_error& e) {
        BOOST_TEST(e.sqlstate() == "40001");
        BOOST_TEST(e.xa_code() == XA_RBTRANSIENT);
    }
    try {
        c.tpc_prepare();
        BOOST_FAIL("prepared after a serialization failure");
    } catch (const xarm::rollback_error& e) {
        BOOST_TEST(e.xa_code() == XA_RBTRANSIENT);
    }
    auto r = setup.query("SELECT a FROM " + t.name);
    setup.rollback();
    BOOST_TEST(*r.rows.at(0).at(0) == "2");
}

// COMMIT PREPARED of a branch another session is still finishing: psqlODBC passes
// PostgreSQL's 55000 "is busy" through, and it is XA_RETRY as with the pq driver (a
// scratch server whose PREPARE waits for a synchronous standby; see scratch_pg.hpp).
BOOST_AUTO_TEST_CASE(busy_prepared_transaction_is_xa_retry,
                     *utf::precondition(xarm::testing::can_start_postgres{})) {
    xarm::testing::scratch_pg pg(xarm::testing::never_synchronous);
    const std::string local = pg.info() + xarm::testing::local_commit;
    auto native = xarm::connect("pq", local);
    native.execute("CREATE TABLE t (v int)");
    native.commit();
    const xarm::xid x = make_xid("busy");
    xarm::testing::busy_branch busy(pg.info(), x, "INSERT INTO t VALUES (1)");
    const std::string info =
        "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=" + std::to_string(pg.port()) +
        ";Database=postgres;UID=xarm";
    auto c = xarm::connect("odbc", info);
    try {
        c.tpc_commit(x);
        BOOST_FAIL("committed a busy branch");
    } catch (const xarm::error& e) {
        BOOST_TEST(e.xa_code() == XA_RETRY, xarm::xa_code_name(e.xa_code()) << ": " << e.what());
        BOOST_TEST(e.sqlstate() == "55000");
    }
    rm r(info, 97);
    XID cx = to_c(x);
    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&cx, 97, TMNOFLAGS) == XA_RETRY);
    BOOST_TEST(std::string(last(97).sqlstate) == "55000");
    BOOST_TEST(busy.waiting());
    busy.release();
    native.tpc_commit(x);  // (an ODBC COMMIT PREPARED would wait for the standby itself)
    BOOST_TEST(native.query("SELECT count(*) FROM t").rows.at(0).at(0).value() == "1");
    native.commit();
}

BOOST_AUTO_TEST_CASE(cross_driver_with_native_pq) {
    cross_driver(PQ, "pq", "XARM_TEST_PQ");
}

BOOST_AUTO_TEST_SUITE_END()

// ---- MariaDB through Connector/ODBC -------------------------------------------------

BOOST_AUTO_TEST_SUITE(mariadb, *utf::precondition(needs{MY}))

BOOST_AUTO_TEST_CASE(capabilities_per_connection) {
    auto c = xarm::connect("odbc", server(MY));
    auto caps = c.capabilities();
    BOOST_TEST(caps.has(xarm::capability::two_phase));
    BOOST_TEST(caps.has(xarm::capability::recovery));
    BOOST_TEST(caps.get(xarm::capability::two_phase).reason.find("MariaDB") != std::string::npos);
    // The write-counter reading is opt-in, as in the native driver.
    BOOST_TEST(!caps.has(xarm::capability::read_only_vote));
    BOOST_TEST(caps.get(xarm::capability::read_only_vote).reason.find("XARM_READ_ONLY_VOTE=on") !=
               std::string::npos);
    auto v = xarm::connect("odbc", read_only_voting(server(MY)));
    BOOST_TEST(v.capabilities().has(xarm::capability::read_only_vote));
    // The key is xarm's: a wrong value is refused, never passed to the ODBC driver.
    try {
        xarm::connect("odbc", server(MY) + ";xarm_read_only_vote=maybe");
        BOOST_FAIL("accepted XARM_READ_ONLY_VOTE=maybe");
    } catch (const xarm::error& e) {
        BOOST_TEST(e.xa_code() == XAER_INVAL);
    }
}

BOOST_AUTO_TEST_CASE(two_phase_through_the_switch) {
    two_phase_through_switch(MY, 100);
}

BOOST_AUTO_TEST_CASE(two_phase_cpp_binary_xids_and_recovery) {
    two_phase_cpp_and_recovery_from_another_connection(MY);
}

BOOST_AUTO_TEST_CASE(failed_statement_means_rollback_at_prepare) {
    failed_statement_rolls_back_at_prepare(MY, 101);
}

BOOST_AUTO_TEST_CASE(hdbc_stays_the_same_handle_across_prepare) {
    const std::string info = server(MY);
    table_guard t(info, "odbc_hdbc");
    rm r(info, 102);
    SQLHDBC before = xarm_odbc_hdbc(102);
    auto x = make_xid("hdbc");
    XID a = to_c(x);
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, 102, TMNOFLAGS) == XA_OK);
    BOOST_TEST(exec_raw(before, "INSERT INTO " + t.name + " VALUES (1)") == "00000");
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, 102, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&a, 102, TMNOFLAGS) == XA_OK);
    BOOST_TEST(xarm_odbc_hdbc(102) == before);
    // The handle works for local work while the branch stays prepared.
    BOOST_TEST(exec_raw(before, "SELECT 1") == "00000");
    BOOST_TEST(listed(c_recover(102), x));
    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&a, 102, TMNOFLAGS) == XA_OK);
    auto c = xarm::connect("odbc", info);
    BOOST_TEST(count_rows(c, t.name) == 1);
}

// The server keeps a prepared branch attached to the session that prepared it: the
// driver keeps the connection (no reconnect after XA PREPARE), and phase two on the same
// session runs there.
BOOST_AUTO_TEST_CASE(phase_two_on_the_preparing_session_keeps_its_connection) {
    const std::string info = server(MY);
    table_guard t(info, "odbc_keep");
    rm r(info, 108);
    SQLHDBC h = xarm_odbc_hdbc(108);
    auto x = make_xid("keep");
    XID a = to_c(x);
    const long id = prepare_an_insert(108, a, t.name, 1);
    BOOST_TEST(connection_id(h) == id);  // a query is allowed in the PREPARED state
    BOOST_TEST(listed(c_recover(108), x));
    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&a, 108, TMNOFLAGS) == XA_OK);
    // A branch that wrote nothing (no read-only vote by default) votes XA_OK and commits
    // on the same session, still without a reconnect.
    XID b = to_c(make_xid("keep-empty"));
    BOOST_REQUIRE(xarm_odbc_switch.xa_start_entry(&b, 108, TMNOFLAGS) == XA_OK);
    BOOST_TEST(connection_id(h) == id);
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&b, 108, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&b, 108, TMNOFLAGS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&b, 108, TMNOFLAGS) == XA_OK);
    auto c = xarm::connect("odbc", info);
    BOOST_TEST(count_rows(c, t.name) == 1);
    BOOST_TEST(!listed(c.tpc_recover(), x));
}

// Phase two from a session of another thread reaches the connection that holds the
// branch (the process-wide registry); the holding session then goes on without a
// reconnect.
BOOST_AUTO_TEST_CASE(phase_two_from_another_thread_runs_on_the_holding_connection) {
    const std::string info = server(MY);
    table_guard t(info, "odbc_other_thread");
    rm r(info, 109);
    SQLHDBC h = xarm_odbc_hdbc(109);
    for (const bool commit : {true, false}) {
        auto x = make_xid(commit ? "thread-commit" : "thread-rollback");
        XID a = to_c(x);
        const long id = prepare_an_insert(109, a, t.name, 1);
        std::string failure;
        std::thread other([&] {
            try {
                auto o = xarm::connect("odbc", info);
                if (commit)
                    o.tpc_commit(x);
                else
                    o.tpc_rollback(x);
            } catch (const std::exception& e) {
                failure = e.what();
            }
        });
        other.join();
        BOOST_TEST(failure == "");
        XID b = to_c(make_xid("thread-next"));
        BOOST_REQUIRE(xarm_odbc_switch.xa_start_entry(&b, 109, TMNOFLAGS) == XA_OK);
        BOOST_TEST(connection_id(h) == id);
        BOOST_TEST(xarm_odbc_switch.xa_end_entry(&b, 109, TMSUCCESS) == XA_OK);
        BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&b, 109, TMONEPHASE) == XA_OK);
        // Finished: the holder no longer has it.
        BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&a, 109, TMNOFLAGS) == XAER_NOTA);
    }
    auto c = xarm::connect("odbc", info);
    BOOST_TEST(count_rows(c, t.name) == 1);
}

// Anything else the session does first (here: the next branch) detaches the prepared
// branch by reopening the connection; any connection can finish it then.
BOOST_AUTO_TEST_CASE(the_next_branch_detaches_a_prepared_one) {
    const std::string info = server(MY);
    table_guard t(info, "odbc_detach");
    rm r(info, 110);
    SQLHDBC h = xarm_odbc_hdbc(110);
    auto x = make_xid("detach");
    XID a = to_c(x);
    const long id = prepare_an_insert(110, a, t.name, 1);
    XID b = to_c(make_xid("detach-next"));
    BOOST_REQUIRE(xarm_odbc_switch.xa_start_entry(&b, 110, TMNOFLAGS) == XA_OK);
    BOOST_TEST(xarm_odbc_hdbc(110) == h);
    BOOST_TEST(connection_id(h) != id);
    BOOST_TEST(exec_raw(h, "INSERT INTO " + t.name + " VALUES (2)") == "00000");
    auto o = xarm::connect("odbc", info);
    BOOST_TEST(listed(o.tpc_recover(), x));
    o.tpc_commit(x);
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&b, 110, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&b, 110, TMNOFLAGS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&b, 110, TMNOFLAGS) == XA_OK);
    BOOST_TEST(count_rows(o, t.name) == 2);
}

// The process that prepared dies (kill -9) between the phases: its session ends, the
// server keeps the branches, and recovery from another process finishes them.
BOOST_AUTO_TEST_CASE(killed_between_prepare_and_commit_then_recovered) {
    const std::string info = server(MY);
    table_guard t(info, "odbc_kill");
    auto x = make_xid("kill-commit");
    auto y = make_xid("kill-rollback");
    const pid_t pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
        // The child makes no Boost assertions: its exit tells what failed.
        try {
            auto c1 = xarm::connect("odbc", info);
            auto c2 = xarm::connect("odbc", info);
            c1.tpc_begin(x);
            c1.execute("INSERT INTO " + t.name + " VALUES (1)");
            c2.tpc_begin(y);
            c2.execute("INSERT INTO " + t.name + " VALUES (2)");
            c1.tpc_prepare();
            c2.tpc_prepare();
        } catch (...) {
            ::_exit(3);
        }
        ::kill(::getpid(), SIGKILL);
        ::_exit(4);
    }
    int status = 0;
    BOOST_REQUIRE(::waitpid(pid, &status, 0) == pid);
    BOOST_REQUIRE(WIFSIGNALED(status));
    BOOST_REQUIRE(WTERMSIG(status) == SIGKILL);
    // Recovery in this process through the switch. Until the server has torn down the
    // dead process's sessions, phase two answers XA_RETRY (commit) or XAER_RMERR.
    rm r(info, 111);
    BOOST_TEST(listed(c_recover(111), x));
    BOOST_TEST(listed(c_recover(111), y));
    XID a = to_c(x), b = to_c(y);
    auto finish = [](XID* id, bool commit) {
        int rc = XAER_RMERR;
        for (int i = 0; i < 100; ++i) {
            rc = commit ? xarm_odbc_switch.xa_commit_entry(id, 111, TMNOFLAGS)
                        : xarm_odbc_switch.xa_rollback_entry(id, 111, TMNOFLAGS);
            if (rc != XA_RETRY && rc != XAER_RMERR) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return rc;
    };
    BOOST_TEST(finish(&a, true) == XA_OK);
    BOOST_TEST(finish(&b, false) == XA_OK);
    BOOST_TEST(!listed(c_recover(111), x));
    BOOST_TEST(!listed(c_recover(111), y));
    auto c = xarm::connect("odbc", info);
    auto rows = c.query("SELECT a FROM " + t.name);
    c.rollback();
    BOOST_REQUIRE(rows.rows.size() == 1u);
    BOOST_TEST(*rows.rows[0][0] == "1");
}

BOOST_AUTO_TEST_CASE(join_and_suspend_resume_on_one_connection) {
    const std::string info = server(MY);
    table_guard t(info, "odbc_join");
    rm r(info, 103);
    XID a = to_c(make_xid("join"));
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, 103, TMNOFLAGS) == XA_OK);
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(103), "INSERT INTO " + t.name + " VALUES (1)") == "00000");
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, 103, TMSUSPEND) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, 103, TMRESUME) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, 103, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, 103, TMJOIN) == XA_OK);
    BOOST_TEST(exec_raw(xarm_odbc_hdbc(103), "INSERT INTO " + t.name + " VALUES (2)") == "00000");
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, 103, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&a, 103, TMNOFLAGS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&a, 103, TMNOFLAGS) == XA_OK);
    auto c = xarm::connect("odbc", info);
    BOOST_TEST(count_rows(c, t.name) == 2);
}

BOOST_AUTO_TEST_CASE(finishing_an_unknown_branch_is_nota) {
    auto c = xarm::connect("odbc", server(MY));
    try {
        c.tpc_rollback(make_xid("never-prepared"));
        BOOST_FAIL("rolled back an unknown branch");
    } catch (const xarm::error& e) {
        BOOST_TEST(e.xa_code() == XAER_NOTA);
        BOOST_TEST(e.native_code() == 1397);
    }
}

BOOST_AUTO_TEST_CASE(empty_branch_votes_rdonly) {
    const std::string info = read_only_voting(server(MY));
    rm r(info, 104);
    auto other = xarm::connect("odbc", info);
    auto x = make_xid("empty");
    XID a = to_c(x);
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, 104, TMNOFLAGS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, 104, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&a, 104, TMNOFLAGS) == XA_RDONLY);
    BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&a, 104, TMNOFLAGS) == XAER_NOTA);
    BOOST_TEST(!listed(other.tpc_recover(), x));
}

// Tables of every engine a branch may write on MariaDB, a trigger, routines and a
// sequence: whatever writes must vote XA_OK (a false XA_RDONLY loses the write).
struct mariadb_targets {
    std::string t = table_name("xw_inno"), m = table_name("xw_myisam"), a = table_name("xw_aria"),
                log = table_name("xw_log"), trg = table_name("xw_trg"),
                p_del = table_name("xw_pdel"), f_ins = table_name("xw_fins");
    std::string info;
    xarm::connection c;
    explicit mariadb_targets(std::string i) : info(std::move(i)), c(cleaner(info)) {
        for (const auto& q :
             {"CREATE TABLE " + t + " (id INT PRIMARY KEY, v INT) ENGINE=InnoDB",
              "CREATE TABLE " + m + " (id INT PRIMARY KEY, v INT) ENGINE=MyISAM",
              "CREATE TABLE " + a + " (id INT PRIMARY KEY, v INT) ENGINE=Aria TRANSACTIONAL=1",
              "CREATE TABLE " + log + " (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
              "CREATE TABLE " + trg + " (id INT) ENGINE=MyISAM",
              "CREATE TRIGGER " + trg + "_t AFTER INSERT ON " + trg + " FOR EACH ROW INSERT INTO " +
                  log + " (v) VALUES (NEW.id)",
              "CREATE PROCEDURE " + p_del + "() DELETE FROM " + a,
              "CREATE FUNCTION " + f_ins + "() RETURNS INT MODIFIES SQL DATA BEGIN INSERT INTO " +
                  log + " (v) VALUES (1); RETURN 1; END"})
            c.execute(q);
        c.commit();
    }
    ~mariadb_targets() {
        try {
            auto d = cleaner(info);
            d.execute("DROP PROCEDURE IF EXISTS " + p_del);
            d.execute("DROP FUNCTION IF EXISTS " + f_ins);
            for (const auto& n : {t, m, a, log, trg}) d.execute("DROP TABLE IF EXISTS " + n);
            d.commit();
        } catch (...) {
        }
    }
    void reset() {
        for (const auto& n : {t, m, a}) {
            c.execute("DELETE FROM " + n);
            c.execute("INSERT INTO " + n + " VALUES (1, 1), (2, 2)");
        }
        c.execute("DELETE FROM " + log);
        c.commit();
    }
    std::string value(const std::string& q) {
        auto r = c.query(q);
        c.rollback();
        return r.rows.at(0).at(0).value_or("NULL");
    }
};

BOOST_AUTO_TEST_CASE(every_kind_of_write_votes_ok_and_commits) {
    const std::string info = read_only_voting(server(MY));
    mariadb_targets w(info);
    const std::string cnt = "SELECT COUNT(*) FROM ";
    struct kind {
        std::string sql, check, expected;
        bool transactional = true;  // false: nothing to commit (MyISAM)
    };
    const std::vector<kind> kinds = {
        {"INSERT INTO " + w.t + " VALUES (3, 3)", cnt + w.t, "3"},
        {"UPDATE " + w.t + " SET v = v + 10 WHERE id = 1", "SELECT v FROM " + w.t + " WHERE id = 1",
         "11"},
        {"DELETE FROM " + w.t, cnt + w.t, "0"},
        {"REPLACE INTO " + w.t + " VALUES (2, 20)", "SELECT v FROM " + w.t + " WHERE id = 2", "20"},
        {"INSERT INTO " + w.t + " SELECT id + 10, v FROM " + w.t, cnt + w.t, "4"},
        {"UPDATE " + w.t + " JOIN " + w.m + " ON " + w.t + ".id = " + w.m + ".id SET " + w.t +
             ".v = " + w.t + ".v + 1",
         "SELECT SUM(v) FROM " + w.t, "5"},
        {"INSERT INTO " + w.trg + " VALUES (7)", cnt + w.log, "1"},
        {"SELECT " + w.f_ins + "()", cnt + w.log, "1"},
        {"INSERT INTO " + w.a + " VALUES (3, 3)", cnt + w.a, "3"},
        // No row call: only the DELETE statement counter moves (Aria keeps the branch).
        {"DELETE FROM " + w.a, cnt + w.a, "0"},
        {"CALL " + w.p_del + "()", cnt + w.a, "0"},
        // MyISAM writes are done at once and MariaDB keeps nothing of them to commit: the
        // branch still votes XA_OK (unknown counts as written), and the detached branch
        // may then be found discarded (XA_HEURRB); the rows are there either way.
        {"INSERT INTO " + w.m + " VALUES (3, 3)", cnt + w.m, "3", false},
        {"DELETE FROM " + w.m, cnt + w.m, "0", false},
    };
    rm r(info, 106);
    for (const auto& k : kinds) {
        BOOST_TEST_CONTEXT(k.sql) {
            w.reset();
            auto x = make_xid("write");
            XID a = to_c(x);
            BOOST_REQUIRE(xarm_odbc_switch.xa_start_entry(&a, 106, TMNOFLAGS) == XA_OK);
            BOOST_REQUIRE(exec_raw(xarm_odbc_hdbc(106), k.sql) == "00000");
            BOOST_REQUIRE(xarm_odbc_switch.xa_end_entry(&a, 106, TMSUCCESS) == XA_OK);
            BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&a, 106, TMNOFLAGS) == XA_OK);
            const int rc = xarm_odbc_switch.xa_commit_entry(&a, 106, TMNOFLAGS);
            if (k.transactional)
                BOOST_TEST(rc == XA_OK);
            else if (rc == XA_HEURRB)
                BOOST_TEST(xarm_odbc_switch.xa_forget_entry(&a, 106, TMNOFLAGS) == XA_OK);
            else
                BOOST_TEST(rc == XA_OK);
            BOOST_TEST(w.value(k.check) == k.expected);
        }
    }
}

BOOST_AUTO_TEST_CASE(read_only_branch_votes_rdonly_and_never_heuristic) {
    const std::string info = read_only_voting(server(MY));
    mariadb_targets w(info);
    w.reset();
    rm r(info, 107);
    for (const std::string& q :
         std::vector<std::string>{"SELECT 1", "SELECT * FROM " + w.t + " FOR UPDATE",
                                  "SELECT * FROM " + w.a, "SELECT * FROM " + w.m}) {
        BOOST_TEST_CONTEXT(q) {
            auto x = make_xid("ro");
            XID a = to_c(x);
            BOOST_REQUIRE(xarm_odbc_switch.xa_start_entry(&a, 107, TMNOFLAGS) == XA_OK);
            BOOST_REQUIRE(exec_raw(xarm_odbc_hdbc(107), q) == "00000");
            BOOST_REQUIRE(xarm_odbc_switch.xa_end_entry(&a, 107, TMSUCCESS) == XA_OK);
            BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&a, 107, TMNOFLAGS) == XA_RDONLY);
            BOOST_TEST(!listed(c_recover(107), x));
            BOOST_TEST(xarm_odbc_switch.xa_commit_entry(&a, 107, TMNOFLAGS) == XAER_NOTA);
        }
    }
    // The C++ API: phase two after an XA_RDONLY vote is a no-op that succeeds.
    auto c = xarm::connect("odbc", info);
    auto y = make_xid("ro-cpp");
    c.tpc_begin(y);
    c.query("SELECT COUNT(*) FROM " + w.t);
    c.tpc_prepare();
    c.tpc_commit();
    BOOST_TEST(!listed(c.tpc_recover(), y));
}

BOOST_AUTO_TEST_CASE(lost_connection_is_rmfail) {
    const std::string info = server(MY);
    rm r(info, 105);
    auto killer = xarm::connect("odbc", info);
    XID a = to_c(make_xid("lost"));
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&a, 105, TMNOFLAGS) == XA_OK);
    SQLHSTMT st = SQL_NULL_HSTMT;
    BOOST_REQUIRE(SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_STMT, xarm_odbc_hdbc(105), &st)));
    BOOST_REQUIRE(SQL_SUCCEEDED(SQLExecDirect(st, (SQLCHAR*)"SELECT CONNECTION_ID()", SQL_NTS)));
    BOOST_REQUIRE(SQL_SUCCEEDED(SQLFetch(st)));
    SQLINTEGER id = 0;
    SQLLEN ind = 0;
    BOOST_REQUIRE(SQL_SUCCEEDED(SQLGetData(st, 1, SQL_C_SLONG, &id, 0, &ind)));
    SQLFreeHandle(SQL_HANDLE_STMT, st);
    killer.execute("KILL CONNECTION " + std::to_string(id));
    BOOST_TEST(xarm_odbc_switch.xa_end_entry(&a, 105, TMSUCCESS) == XA_OK);
    BOOST_TEST(xarm_odbc_switch.xa_prepare_entry(&a, 105, TMNOFLAGS) == XAER_RMFAIL);
    BOOST_TEST(last(105).xa_code == XAER_RMFAIL);
    XID b = to_c(make_xid("lost-after"));
    BOOST_TEST(xarm_odbc_switch.xa_start_entry(&b, 105, TMNOFLAGS) == XAER_RMFAIL);
}

BOOST_AUTO_TEST_CASE(lock_wait_timeout_is_rbtimeout) {
    const std::string info = server(MY);
    table_guard t(info, "odbc_lock", "a INT PRIMARY KEY, v INT");
    auto setup = xarm::connect("odbc", info);
    setup.execute("INSERT INTO " + t.name + " VALUES (1, 0)");
    setup.commit();
    auto holder = xarm::connect("odbc", info);
    holder.tpc_begin(make_xid("lock-holder"));
    holder.execute("UPDATE " + t.name + " SET v = 1 WHERE a = 1");
    auto c = xarm::connect("odbc", info);
    c.execute("SET SESSION innodb_lock_wait_timeout = 1");
    c.commit();
    c.tpc_begin(make_xid("lock-waiter"));
    try {
        c.execute("UPDATE " + t.name + " SET v = 2 WHERE a = 1");
        BOOST_FAIL("no lock wait timeout");
    } catch (const xarm::error& e) {
        BOOST_TEST(e.native_code() == 1205);
        BOOST_TEST(e.xa_code() == XA_RBTIMEOUT);
    }
    try {
        c.tpc_prepare();
        BOOST_FAIL("prepared after a lock wait timeout");
    } catch (const xarm::rollback_error& e) {
        BOOST_TEST(e.xa_code() == XA_RBTIMEOUT);
    }
    holder.tpc_rollback();
    // Both connections are usable again.
    c.tpc_begin(make_xid("lock-after"));
    c.execute("UPDATE " + t.name + " SET v = 3 WHERE a = 1");
    c.tpc_commit();
    auto r = setup.query("SELECT v FROM " + t.name);
    setup.rollback();
    BOOST_TEST(*r.rows.at(0).at(0) == "3");
}

BOOST_AUTO_TEST_CASE(cross_driver_with_native_mysql) {
    cross_driver(MY, "mysql", "XARM_TEST_MYSQL");
}

BOOST_AUTO_TEST_SUITE_END()
