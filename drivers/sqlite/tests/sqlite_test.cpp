// The SQLite driver through the C switch and the C++ API, on real database files.
#define BOOST_TEST_MODULE xarm_sqlite
#include <boost/test/unit_test.hpp>

#include <sqlite3.h>

#include <filesystem>
#include <string>

#include "xarm/connection.hpp"
#include "xarm/switch_loader.hpp"
#include "xarm/xarm.h"
#include "xarm_testing.hpp"

extern "C" struct xa_switch_t xarm_sqlite_switch;
extern "C" sqlite3* xarm_sqlite_db(int rmid);

namespace fs = std::filesystem;

namespace {

struct db_file {
    fs::path path = fs::temp_directory_path() / (xarm::testing::unique("xarm-sqlite") + ".db");
    std::string info = "path='" + path.string() + "'";
    xa_switch_t& sw = xarm_sqlite_switch;
    db_file() {
        auto c = xarm::connect("sqlite", info);
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
        c.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)");
        c.execute(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id) "
            "DEFERRABLE INITIALLY DEFERRED)");
        c.commit();
    }
    ~db_file() {
        for (int rmid = 1; rmid < 4; ++rmid)
            sw.xa_close_entry(const_cast<char*>(""), rmid, TMNOFLAGS);
        std::error_code ec;
        fs::remove(path, ec);
    }
    // Rows in t, seen from a separate connection.
    long rows() {
        auto c = xarm::connect("sqlite", info);
        auto r = c.query("SELECT count(*) FROM t");
        c.rollback();
        return std::stol(*r.rows.at(0).at(0));
    }
    int open(int rmid) {
        std::string s = info;
        return sw.xa_open_entry(s.data(), rmid, TMNOFLAGS);
    }
    void sql(int rmid, const char* q) {
        BOOST_REQUIRE(sqlite3_exec(xarm_sqlite_db(rmid), q, nullptr, nullptr, nullptr) ==
                      SQLITE_OK);
    }
    static XID cxid(const std::string& g) {
        XID x{};
        x.formatID = 1;
        x.gtrid_length = static_cast<long>(g.size());
        x.bqual_length = 1;
        std::copy(g.begin(), g.end(), x.data);
        x.data[g.size()] = 'b';
        return x;
    }
    static xarm_diag diag(int rmid) {
        xarm_diag d{};
        BOOST_TEST(xarm_last_error(rmid, &d) == 0);
        return d;
    }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(sqlite_cpp_api, db_file)

BOOST_AUTO_TEST_CASE(one_phase_commit_and_rollback_are_visible_as_such) {
    auto c = xarm::connect("sqlite", info);
    c.tpc_begin(c.xid(1, "commit-me", ""));
    BOOST_TEST(c.execute("INSERT INTO t(v) VALUES ('a'), ('b')") == 2);
    BOOST_TEST(rows() == 0);  // not yet committed
    c.tpc_commit();           // unprepared: one phase
    BOOST_TEST(rows() == 2);
    c.tpc_begin(c.xid(1, "roll-me", ""));
    c.execute("INSERT INTO t(v) VALUES ('c')");
    c.tpc_rollback();
    BOOST_TEST(rows() == 2);
}

BOOST_AUTO_TEST_CASE(prepare_is_refused_every_time_and_the_branch_survives) {
    auto c = xarm::connect("sqlite", info);
    BOOST_TEST(!c.capabilities().has(xarm::capability::two_phase));
    BOOST_TEST(c.capabilities().get(xarm::capability::two_phase).reason.find("crash") !=
               std::string::npos);
    for (int i = 0; i < 3; ++i) {
        c.tpc_begin(c.xid(1, "p" + std::to_string(i), ""));
        c.execute("INSERT INTO t(v) VALUES ('x')");
        try {
            c.tpc_prepare();
            BOOST_FAIL("SQLite prepared a transaction");
        } catch (const xarm::not_supported_error& e) {
            BOOST_TEST(e.xa_code() == XAER_RMERR);
            BOOST_TEST(e.sqlstate() == "0A000");
            BOOST_TEST(e.driver() == "sqlite");
        }
        if (i == 0) {
            c.tpc_rollback();  // still rollbackable
            BOOST_TEST(rows() == 0);
        } else {
            c.tpc_commit();  // or committed in one phase
            BOOST_TEST(rows() == i);
        }
    }
    BOOST_TEST(c.tpc_recover().empty());  // consistent: nothing is ever prepared
    BOOST_CHECK_THROW(c.tpc_commit(c.xid(1, "p1", "")), xarm::programming_error);
}

BOOST_AUTO_TEST_CASE(local_transactions_follow_pep249) {
    auto c = xarm::connect("sqlite", info);
    c.execute("INSERT INTO t(v) VALUES ('local')");
    BOOST_TEST(rows() == 0);  // autocommit is off
    BOOST_CHECK_THROW(c.tpc_begin(c.xid(1, "x", "")), xarm::programming_error);
    c.commit();
    BOOST_TEST(rows() == 1);
    c.execute("DELETE FROM t");
    c.rollback();
    BOOST_TEST(rows() == 1);
}

BOOST_AUTO_TEST_CASE(deferred_constraint_at_commit_is_rbintegrity_and_rolled_back) {
    auto c = xarm::connect("sqlite", info);
    c.tpc_begin(c.xid(1, "fk", ""));
    c.execute("INSERT INTO t(v) VALUES ('with bad child')");
    c.execute("INSERT INTO child(id, p) VALUES (1, 999)");  // deferred: fails at COMMIT
    try {
        c.tpc_commit();
        BOOST_FAIL("commit with a dangling reference succeeded");
    } catch (const xarm::rollback_error& e) {
        BOOST_TEST(e.xa_code() == XA_RBINTEGRITY);
        BOOST_TEST(e.sqlstate() == "23000");
    }
    BOOST_TEST(rows() == 0);
    c.tpc_begin(c.xid(1, "after", ""));  // the connection is usable
    c.tpc_rollback();
}

BOOST_AUTO_TEST_CASE(sql_errors_are_database_errors_and_keep_the_branch) {
    auto c = xarm::connect("sqlite", info);
    c.tpc_begin(c.xid(1, "err", ""));
    c.execute("INSERT INTO t(v) VALUES ('kept')");
    try {
        c.execute("INSERT INTO nosuchtable VALUES (1)");
        BOOST_FAIL("bad SQL accepted");
    } catch (const xarm::database_error& e) {
        BOOST_TEST(e.sqlstate() == "42000");
        BOOST_TEST(std::string(e.what()).find("nosuchtable") != std::string::npos);
    }
    c.tpc_commit();
    BOOST_TEST(rows() == 1);
}

BOOST_AUTO_TEST_CASE(bad_info_strings) {
    for (const char* bad : {"", "path=", "nosuch=1 path=/tmp/x.db", "path=/tmp/x.db mode=weird",
                            "path=/tmp/x.db busy_timeout=soon", "path='unterminated"}) {
        try {
            xarm::connect("sqlite", bad);
            BOOST_FAIL(std::string("accepted: ") + bad);
        } catch (const xarm::error& e) {
            BOOST_TEST(e.xa_code() == XAER_INVAL, bad);
        }
    }
    try {
        xarm::connect("sqlite", "path=/nonexistent-dir/x/y.db");
        BOOST_FAIL("opened a file in a missing directory");
    } catch (const xarm::error& e) {
        BOOST_TEST(e.xa_code() == XAER_RMERR);
        BOOST_TEST(e.sqlstate() == "08001");
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_FIXTURE_TEST_SUITE(sqlite_c_switch, db_file)

BOOST_AUTO_TEST_CASE(load_switch_by_name_symbol_or_path) {
    xa_switch_t* a = xarm::load_switch("sqlite");
    BOOST_TEST(std::string(a->name) == "xarm_sqlite");
    // Same switch (addresses may differ: this program links the variable directly).
    BOOST_TEST(xarm::load_switch("sqlite", "xarm_sqlite_switch")->xa_open_entry ==
               a->xa_open_entry);
    try {
        xarm::load_switch("sqlite", "no_such_symbol");
        BOOST_FAIL("found a symbol that does not exist");
    } catch (const xarm::error& e) {
        BOOST_TEST(std::string(e.what()).find("no_such_symbol") != std::string::npos);
    }
    try {
        xarm::load_switch("/nonexistent/libswitch.so");
        BOOST_FAIL("loaded a missing file");
    } catch (const xarm::error& e) {
        BOOST_TEST(std::string(e.what()).find("/nonexistent/libswitch.so") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(exports_and_switch_layout) {
    BOOST_TEST(std::string(xarm_sqlite_switch.name) == "xarm_sqlite");
    BOOST_TEST(xarm_sqlite_switch.version == 0);
    BOOST_TEST((xarm_sqlite_switch.flags & TMNOMIGRATE) != 0);
    BOOST_TEST(xarm_sqlite_db(1) == nullptr);  // not opened on this thread
}

BOOST_AUTO_TEST_CASE(branch_work_on_the_native_handle) {
    BOOST_REQUIRE(open(1) == XA_OK);
    BOOST_REQUIRE(xarm_sqlite_db(1) != nullptr);
    XID x = cxid("sw-commit");
    BOOST_TEST(sw.xa_start_entry(&x, 1, TMNOFLAGS) == XA_OK);
    sql(1, "INSERT INTO t(v) VALUES ('1')");
    BOOST_TEST(sw.xa_end_entry(&x, 1, TMSUCCESS) == XA_OK);
    // Two-phase refused, declared way: XAER_RMERR + 0A000, branch still idle.
    BOOST_TEST(sw.xa_prepare_entry(&x, 1, TMNOFLAGS) == XAER_RMERR);
    auto d = diag(1);
    BOOST_TEST(std::string(d.sqlstate) == "0A000");
    BOOST_TEST(std::string(d.message).find("not supported") != std::string::npos);
    BOOST_TEST(sw.xa_commit_entry(&x, 1, TMNOFLAGS) == XAER_PROTO);  // not prepared
    BOOST_TEST(sw.xa_commit_entry(&x, 1, TMONEPHASE) == XA_OK);
    BOOST_TEST(rows() == 1);
    XID y = cxid("sw-rollback");
    BOOST_TEST(sw.xa_start_entry(&y, 1, TMNOFLAGS) == XA_OK);
    sql(1, "INSERT INTO t(v) VALUES ('2')");
    BOOST_TEST(sw.xa_end_entry(&y, 1, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_rollback_entry(&y, 1, TMNOFLAGS) == XA_OK);
    BOOST_TEST(rows() == 1);
    XID page[4];
    BOOST_TEST(sw.xa_recover_entry(page, 4, 1, TMSTARTRSCAN | TMENDRSCAN) == 0);
    BOOST_TEST(sw.xa_commit_entry(&y, 1, TMNOFLAGS) == XAER_NOTA);
    BOOST_TEST(sw.xa_close_entry(const_cast<char*>(""), 1, TMNOFLAGS) == XA_OK);
    BOOST_TEST(xarm_sqlite_db(1) == nullptr);
}

BOOST_AUTO_TEST_CASE(a_branch_committed_on_the_native_handle_is_heuristic_never_rolled_back) {
    // The application sends COMMIT itself inside the branch: the row is committed, and no
    // answer may claim a rollback (a monitor would roll the other branches back).
    BOOST_REQUIRE(open(1) == XA_OK);
    XID x = cxid("sw-outside");
    BOOST_TEST(sw.xa_start_entry(&x, 1, TMNOFLAGS) == XA_OK);
    sql(1, "INSERT INTO t(v) VALUES ('outside')");
    sql(1, "COMMIT");
    BOOST_TEST(sw.xa_end_entry(&x, 1, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_commit_entry(&x, 1, TMONEPHASE) == XA_HEURCOM);
    auto d = diag(1);
    BOOST_TEST(std::string(d.message).find("committed") != std::string::npos, d.message);
    BOOST_TEST(sw.xa_forget_entry(&x, 1, TMNOFLAGS) == XA_OK);
    BOOST_TEST(rows() == 1);
    // Rolled back instead: still committed, said the same way.
    XID y = cxid("sw-outside-rb");
    BOOST_TEST(sw.xa_start_entry(&y, 1, TMNOFLAGS) == XA_OK);
    sql(1, "INSERT INTO t(v) VALUES ('outside 2')");
    sql(1, "COMMIT");
    BOOST_TEST(sw.xa_end_entry(&y, 1, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_rollback_entry(&y, 1, TMNOFLAGS) == XA_HEURCOM);
    BOOST_TEST(sw.xa_forget_entry(&y, 1, TMNOFLAGS) == XA_OK);
    BOOST_TEST(rows() == 2);
    // A ROLLBACK sent on the handle is a rollback, and says so.
    XID z = cxid("sw-outside-rollback");
    BOOST_TEST(sw.xa_start_entry(&z, 1, TMNOFLAGS) == XA_OK);
    sql(1, "INSERT INTO t(v) VALUES ('gone')");
    sql(1, "ROLLBACK");
    BOOST_TEST(sw.xa_end_entry(&z, 1, TMSUCCESS) == XA_RBROLLBACK);
    BOOST_TEST(sw.xa_rollback_entry(&z, 1, TMNOFLAGS) == XA_OK);
    BOOST_TEST(rows() == 2);
    // Through the C++ API: heuristic_error, and the connection goes on.
    auto c = xarm::connect("sqlite", info);
    c.tpc_begin(c.xid(1, "cpp-outside", "b"));
    c.execute("INSERT INTO t(v) VALUES ('cpp')");
    BOOST_REQUIRE(sqlite3_exec(c.native_handle<sqlite3*>(), "COMMIT", nullptr, nullptr, nullptr) ==
                  SQLITE_OK);
    BOOST_CHECK_THROW(c.tpc_commit(), xarm::heuristic_error);
    BOOST_TEST(rows() == 3);
    c.tpc_begin(c.xid(1, "cpp-after", "b"));
    c.execute("INSERT INTO t(v) VALUES ('after')");
    c.tpc_commit();
    BOOST_TEST(rows() == 4);
}

BOOST_AUTO_TEST_CASE(join_and_suspend_resume_on_one_connection) {
    BOOST_REQUIRE(open(1) == XA_OK);
    XID x = cxid("join");
    BOOST_TEST(sw.xa_start_entry(&x, 1, TMNOFLAGS) == XA_OK);
    sql(1, "INSERT INTO t(v) VALUES ('first')");
    BOOST_TEST(sw.xa_end_entry(&x, 1, TMSUSPEND) == XA_OK);
    BOOST_TEST(sw.xa_start_entry(&x, 1, TMRESUME) == XA_OK);
    sql(1, "INSERT INTO t(v) VALUES ('second')");
    BOOST_TEST(sw.xa_end_entry(&x, 1, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_start_entry(&x, 1, TMJOIN) == XA_OK);
    sql(1, "INSERT INTO t(v) VALUES ('third')");
    BOOST_TEST(sw.xa_end_entry(&x, 1, TMSUCCESS) == XA_OK);
    // A second branch cannot share the connection while the first holds it.
    XID y = cxid("second-branch");
    BOOST_TEST(sw.xa_start_entry(&y, 1, TMNOFLAGS) == XAER_RMERR);
    BOOST_TEST(std::string(diag(1).sqlstate) == "0A000");
    BOOST_TEST(sw.xa_commit_entry(&x, 1, TMONEPHASE) == XA_OK);
    BOOST_TEST(rows() == 3);
}

BOOST_AUTO_TEST_CASE(tmfail_makes_the_branch_rollback_only) {
    BOOST_REQUIRE(open(1) == XA_OK);
    XID x = cxid("fail");
    BOOST_TEST(sw.xa_start_entry(&x, 1, TMNOFLAGS) == XA_OK);
    sql(1, "INSERT INTO t(v) VALUES ('doomed')");
    BOOST_TEST(sw.xa_end_entry(&x, 1, TMFAIL) == XA_RBROLLBACK);
    BOOST_TEST(sw.xa_commit_entry(&x, 1, TMONEPHASE) == XA_RBROLLBACK);
    BOOST_TEST(rows() == 0);
    BOOST_TEST(sw.xa_rollback_entry(&x, 1, TMNOFLAGS) == XAER_NOTA);  // already gone
}

BOOST_AUTO_TEST_CASE(local_work_first_is_outside) {
    BOOST_REQUIRE(open(2) == XA_OK);
    // The application began a local transaction on the native handle.
    sql(2, "BEGIN; INSERT INTO t(v) VALUES ('local')");
    XID x = cxid("outside");
    BOOST_TEST(sw.xa_start_entry(&x, 2, TMNOFLAGS) == XAER_OUTSIDE);
    BOOST_TEST(std::string(diag(2).message).find("local transaction") != std::string::npos);
    sql(2, "COMMIT");  // nothing was lost
    BOOST_TEST(rows() == 1);
    BOOST_TEST(sw.xa_start_entry(&x, 2, TMNOFLAGS) == XA_OK);
    BOOST_TEST(sw.xa_start_entry(&x, 2, TMNOFLAGS) == XAER_PROTO);  // associated already
    BOOST_TEST(sw.xa_end_entry(&x, 2, TMSUCCESS) == XA_OK);
    BOOST_TEST(sw.xa_rollback_entry(&x, 2, TMNOFLAGS) == XA_OK);
}

BOOST_AUTO_TEST_CASE(bad_open_strings_then_a_good_one) {
    char bad1[] = "path=/tmp/x.db nosuch=hunter2";
    BOOST_TEST(sw.xa_open_entry(bad1, 3, TMNOFLAGS) == XAER_INVAL);
    auto d = diag(3);
    BOOST_TEST(std::string(d.message).find("nosuch") != std::string::npos);
    BOOST_TEST(std::string(d.message).find("hunter2") == std::string::npos);
    char bad2[] = "path=/nonexistent-dir/y.db";
    BOOST_TEST(sw.xa_open_entry(bad2, 3, TMNOFLAGS) == XAER_RMERR);
    BOOST_TEST(sw.xa_open_entry(nullptr, 3, TMNOFLAGS) == XAER_INVAL);
    BOOST_TEST(open(3) == XA_OK);
}

BOOST_AUTO_TEST_SUITE_END()
