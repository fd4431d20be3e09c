// The manager as a monitor, against the development servers: XA switches as resources
// (tm::switch_resource: thread of control, flags, recovery paging, a lying switch) and
// the X/Open TX interface through the C example tx_transfer (PostgreSQL + MariaDB, the
// resources given as xarm drivers and as switch libraries by path): commit, a failed
// statement, rollback, chained mode, a timeout, protocol misuse, kill -9 at crash points
// and at random moments, then recovery by the next tx_open or `xarm recover --config`.
#define BOOST_TEST_MODULE xarm_tx
#include <boost/test/unit_test.hpp>

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "xarm/connection.hpp"
#include "xarm/error.hpp"
#include "xarm/tm.hpp"
#include "xarm/tm_config.hpp"
#include "xarm/tm_switch.hpp"
#include "xarm/tx.h"
#include "xarm/xa.h"
#include "xarm/xid.hpp"
#include "xarm_testing.hpp"

namespace fs = std::filesystem;
using namespace xarm;
using namespace std::chrono_literals;
using xarm::testing::needs;

namespace {

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    return {std::istreambuf_iterator<char>(in), {}};
}

/// The balance of account 1 in PostgreSQL and in MariaDB.
struct balances {
    long pq = 0, my = 0;
    bool operator==(const balances&) const = default;
};
std::ostream& operator<<(std::ostream& o, const balances& b) {
    return o << "pq " << b.pq << ", mariadb " << b.my;
}

balances read_balances() {
    balances b;
    for (auto [drv, var, out] :
         {std::tuple{"pq", "XARM_TEST_PQ", &b.pq}, std::tuple{"mysql", "XARM_TEST_MYSQL", &b.my}}) {
        auto c = connect(drv, testing::server(var));
        auto r = c.query("SELECT balance FROM tx_account WHERE id = 1");
        c.rollback();
        *out = std::stol(r.rows.at(0).at(0).value_or("-1"));
    }
    return b;
}

/// Both tables with account 1 at 1000, and no prepared branch of `id` left.
void reset_accounts() {
    for (auto [drv, var] :
         {std::pair{"pq", "XARM_TEST_PQ"}, std::pair{"mysql", "XARM_TEST_MYSQL"}}) {
        auto c = connect(drv, testing::server(var));
        // A branch left prepared by an earlier failure holds the row: fail, do not hang.
        c.execute(std::string(drv) == "pq" ? "SET lock_timeout = '20s'"
                                           : "SET SESSION innodb_lock_wait_timeout = 20");
        c.execute("CREATE TABLE IF NOT EXISTS tx_account (id INT PRIMARY KEY, balance BIGINT)");
        c.execute("DELETE FROM tx_account");
        c.execute("INSERT INTO tx_account VALUES (1, 1000)");
        c.commit();
    }
}

std::size_t prepared_of(const std::string& id) {
    std::size_t n = 0;
    {
        auto c = connect("pq", testing::server("XARM_TEST_PQ"));
        for (const auto& x : c.tpc_recover())
            if (!x.is_unparsed() && x.gtrid().starts_with(id + ".")) ++n;
    }
    {
        auto c = connect("mysql", testing::server("XARM_TEST_MYSQL"));
        for (const auto& x : c.tpc_recover())
            if (!x.is_unparsed() && x.gtrid().starts_with(id + ".")) ++n;
    }
    return n;
}

/// A configuration file for coordinator `id` in a fresh directory, PostgreSQL as rmid 1
/// and MariaDB as rmid 2, as xarm drivers or as switch libraries by path, in profile
/// "transfer" (the [coordinator] itself names another id: the profile must win).
struct tx_setup {
    fs::path dir;
    fs::path config;
    std::string id;
    /// pg_lib, pg_symbol: the PostgreSQL switch when as_switches (e.g. the lying one).
    tx_setup(const std::string& name, bool as_switches, const std::string& extra = "",
             const char* pg_lib = XARM_PQ_LIB, const char* pg_symbol = "xarm_pq_switch") {
        id = name;
        dir = fs::temp_directory_path() / testing::unique("xarm-tx");
        fs::create_directories(dir);
        config = dir / "tx.toml";
        std::ofstream f(config);
        f << "[coordinator]\nid = \"unused\"\nlog = \"" << (dir / "unused.tmlog").string()
          << "\"\n\n";
        if (as_switches)
            f << "[resource.pg]\nswitch = \"" << pg_lib << "\"\nsymbol = \"" << pg_symbol
              << "\"\nopen = \"${XARM_TEST_PQ}\"\n\n"
              << "[resource.maria]\nswitch = \""
              << (fs::path(XARM_PQ_LIB).parent_path() / "libxarm_mysql.so").string()
              << "\"\nopen = \"${XARM_TEST_MYSQL}\"\n\n";
        else
            f << "[resource.pg]\ndriver = \"pq\"\nopen = \"${XARM_TEST_PQ}\"\n\n"
              << "[resource.maria]\ndriver = \"mysql\"\nopen = \"${XARM_TEST_MYSQL}\"\n\n";
        f << "[profile.transfer]\nid = \"" << id << "\"\nlog = \"" << (dir / "tx.tmlog").string()
          << "\"\nresources = [\"pg\", \"maria\"]\n"
          << extra;
    }
    ~tx_setup() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

struct run_result {
    int code;
    std::string output;
};

/// Runs `program args...` with the TX environment of s (and `env` pairs); kills it after
/// `kill_after` when given. Exit code, or 128 + signal.
run_result run(const tx_setup& s, const std::string& program, std::vector<std::string> args,
               std::vector<std::pair<std::string, std::string>> env = {},
               std::optional<std::chrono::milliseconds> kill_after = {}) {
    const fs::path out = s.dir / "out.txt";
    fs::remove(out);
    const pid_t pid = ::fork();
    if (pid == 0) {
        const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::setenv("XARM_TX_CONFIG", s.config.c_str(), 1);
        ::setenv("XARM_TX_PROFILE", "transfer", 1);
        ::setenv("XARM_TX_CREATE_LOG", "1", 1);
        ::unsetenv("XARM_CRASH_AT");
        for (auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
        std::vector<char*> argv{const_cast<char*>(program.c_str())};
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execv(program.c_str(), argv.data());
        ::_exit(127);
    }
    if (kill_after) {
        std::this_thread::sleep_for(*kill_after);
        ::kill(pid, SIGKILL);
    }
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return {WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), slurp(out)};
}

run_result transfer(const tx_setup& s, std::vector<std::string> args,
                    std::vector<std::pair<std::string, std::string>> env = {},
                    std::optional<std::chrono::milliseconds> kill_after = {}) {
    return run(s, XARM_TX_TRANSFER, std::move(args), std::move(env), kill_after);
}

/// In a child process with the TX environment of s: f's return is the exit code.
int in_child(const tx_setup& s, const std::function<int()>& f) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::setenv("XARM_TX_CONFIG", s.config.c_str(), 1);
        ::setenv("XARM_TX_PROFILE", "transfer", 1);
        ::setenv("XARM_TX_CREATE_LOG", "1", 1);
        int rc = 100;
        try {
            rc = f();
        } catch (...) {
        }
        std::fflush(nullptr);
        ::_exit(rc);
    }
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Both servers, as a test case's decorator.
#define SERVERS                                              \
    *boost::unit_test::precondition(needs{"XARM_TEST_PQ"}) * \
        boost::unit_test::precondition(needs{"XARM_TEST_MYSQL"})

}  // namespace

// ---------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(tx_interface)

BOOST_AUTO_TEST_CASE(commits_on_both_as_drivers_and_as_switches, SERVERS) {
    for (bool as_switches : {false, true}) {
        BOOST_TEST_CONTEXT("resources given as "
                           << (as_switches ? "switch libraries" : "drivers")) {
            reset_accounts();
            tx_setup s(as_switches ? "txsw" : "txdrv", as_switches);
            const auto r = transfer(s, {"--count", "3", "--amount", "10"});
            BOOST_TEST(r.code == 0, r.output);
            BOOST_TEST(contains(r.output, "tx_commit: TX_OK"), r.output);
            BOOST_TEST(read_balances() == (balances{970, 1030}));
            BOOST_TEST(prepared_of(s.id) == 0u);
        }
    }
}

BOOST_AUTO_TEST_CASE(failed_statement_rolls_back_both, SERVERS) {
    reset_accounts();
    tx_setup s("txfail", true);
    const auto r = transfer(s, {"--fail", "pq", "--commit-anyway"});
    BOOST_TEST(r.code == 1, r.output);
    BOOST_TEST(contains(r.output, "tx_commit: TX_ROLLBACK"), r.output);
    BOOST_TEST(read_balances() == (balances{1000, 1000}));
    BOOST_TEST(prepared_of(s.id) == 0u);
    // The next run commits (the same thread going on after TX_ROLLBACK: see
    // protocol_misuse_gets_the_spec_codes_and_leaves_nothing).
    const auto again = transfer(s, {"--count", "1"});
    BOOST_TEST(again.code == 0, again.output);
    BOOST_TEST(read_balances() == (balances{990, 1010}));
}

BOOST_AUTO_TEST_CASE(tx_rollback_undoes_both, SERVERS) {
    reset_accounts();
    tx_setup s("txrb", false);
    const auto r = transfer(s, {"--count", "2", "--rollback"});
    BOOST_TEST(r.code == 0, r.output);
    BOOST_TEST(contains(r.output, "tx_rollback: TX_OK"), r.output);
    BOOST_TEST(read_balances() == (balances{1000, 1000}));
}

BOOST_AUTO_TEST_CASE(chained_mode_begins_the_next_transaction, SERVERS) {
    reset_accounts();
    tx_setup s("txch", true);
    const auto r = transfer(s, {"--chained", "--count", "4", "--amount", "5"});
    BOOST_TEST(r.code == 0, r.output);
    BOOST_TEST(!contains(r.output, "chained: no transaction"), r.output);
    BOOST_TEST(read_balances() == (balances{980, 1020}));
}

BOOST_AUTO_TEST_CASE(timeout_rolls_back, SERVERS) {
    reset_accounts();
    // Per transaction (tx_set_transaction_timeout) ...
    tx_setup s("txto", false);
    const auto r = transfer(s, {"--timeout", "1", "--sleep", "2"});
    BOOST_TEST(r.code == 1, r.output);
    BOOST_TEST(contains(r.output, "tx_commit: TX_ROLLBACK: xarm: tm: transaction"), r.output);
    BOOST_TEST(contains(r.output, "exceeded its timeout of 1 s"), r.output);
    BOOST_TEST(read_balances() == (balances{1000, 1000}));
    BOOST_TEST(prepared_of(s.id) == 0u);
    // ... and per coordinator (the profile's transaction_timeout_s).
    tx_setup c("txtoc", true, "transaction_timeout_s = 1\n");
    const auto rc = transfer(c, {"--sleep", "2"});
    BOOST_TEST(rc.code == 1, rc.output);
    BOOST_TEST(contains(rc.output, "exceeded its timeout of 1 s"), rc.output);
    BOOST_TEST(read_balances() == (balances{1000, 1000}));
    // Within the timeout it commits.
    const auto ok = transfer(c, {"--count", "1"});
    BOOST_TEST(ok.code == 0, ok.output);
    BOOST_TEST(read_balances() == (balances{990, 1010}));
}

BOOST_AUTO_TEST_CASE(protocol_misuse_gets_the_spec_codes_and_leaves_nothing, SERVERS) {
    reset_accounts();
    tx_setup s("txproto", true);
    const int rc = in_child(s, [] {
        int step = 1;
        auto expect = [&](int got, int want) {
            if (got != want) {
                std::fprintf(stderr, "step %d: got %d, expected %d (%s)\n", step, got, want,
                             xarm_tx_message());
                std::fflush(nullptr);
                ::_exit(step);
            }
            ++step;
        };
        TXINFO info;
        expect(tx_begin(), TX_PROTOCOL_ERROR);
        expect(tx_commit(), TX_PROTOCOL_ERROR);
        expect(tx_info(&info), TX_PROTOCOL_ERROR);
        expect(tx_set_transaction_control(TX_CHAINED), TX_PROTOCOL_ERROR);
        expect(tx_open(), TX_OK);
        expect(tx_open(), TX_OK);  // again: no change
        expect(tx_commit(), TX_PROTOCOL_ERROR);
        expect(tx_rollback(), TX_PROTOCOL_ERROR);
        expect(tx_info(&info), 0);
        expect(tx_set_transaction_control(7), TX_EINVAL);
        expect(tx_set_transaction_timeout(-1), TX_EINVAL);
        expect(tx_set_commit_return(TX_COMMIT_DECISION_LOGGED), TX_NOT_SUPPORTED);
        expect(tx_set_commit_return(TX_COMMIT_COMPLETED), TX_OK);
        expect(tx_begin(), TX_OK);
        // Work on PostgreSQL (rmid 1), then the misuse: the transaction stays as it was.
        void* pqlib = dlopen(XARM_PQ_LIB, RTLD_NOW | RTLD_NOLOAD);
        if (pqlib == nullptr) ::_exit(91);
        auto pq_conn = reinterpret_cast<void* (*)(int)>(dlsym(pqlib, "xarm_pq_conn"));
        void* libpq = dlopen("libpq.so.5", RTLD_NOW);
        auto pq_exec = reinterpret_cast<void* (*)(void*, const char*)>(dlsym(libpq, "PQexec"));
        if (pq_conn == nullptr || pq_exec == nullptr || pq_conn(1) == nullptr) ::_exit(90);
        (void)pq_exec(pq_conn(1), "UPDATE tx_account SET balance = 0 WHERE id = 1");
        expect(tx_begin(), TX_PROTOCOL_ERROR);
        expect(tx_close(), TX_PROTOCOL_ERROR);
        expect(tx_info(&info), 1);
        expect(info.xid.formatID == xarm::tm::format_id ? 0 : 1, 0);
        expect(info.transaction_state, TX_ACTIVE);
        expect(tx_rollback(), TX_OK);
        expect(tx_info(&info), 0);
        // A local transaction open on the connection: TX_OUTSIDE, and nothing begun.
        (void)pq_exec(pq_conn(1), "BEGIN");
        expect(tx_begin(), TX_OUTSIDE);
        expect(tx_info(&info), 0);
        (void)pq_exec(pq_conn(1), "ROLLBACK");
        expect(tx_begin(), TX_OK);
        expect(tx_commit(), TX_OK);
        // A failed statement: TX_ROLLBACK, and the same thread goes on.
        expect(tx_begin(), TX_OK);
        (void)pq_exec(pq_conn(1), "UPDATE tx_account SET balance = 0 WHERE id = 1");
        (void)pq_exec(pq_conn(1), "UPDATE no_such_table SET x = 1");
        expect(tx_commit(), TX_ROLLBACK);
        expect(tx_info(&info), 0);
        expect(tx_begin(), TX_OK);
        (void)pq_exec(pq_conn(1), "UPDATE tx_account SET balance = balance WHERE id = 1");
        expect(tx_commit(), TX_OK);
        // An expired transaction says so, and tx_commit rolls it back.
        expect(tx_set_transaction_timeout(1), TX_OK);
        expect(tx_begin(), TX_OK);
        (void)pq_exec(pq_conn(1), "UPDATE tx_account SET balance = 0 WHERE id = 1");
        std::this_thread::sleep_for(1100ms);
        expect(tx_info(&info), 1);
        expect(info.transaction_state, TX_TIMEOUT_ROLLBACK_ONLY);
        expect(info.transaction_timeout, 1);
        expect(tx_commit(), TX_ROLLBACK);
        expect(tx_close(), TX_OK);
        expect(tx_close(), TX_OK);
        return 0;
    });
    BOOST_TEST(rc == 0, "the misuse sequence stopped at step " << rc);
    BOOST_TEST(read_balances() == (balances{1000, 1000}));
    BOOST_TEST(prepared_of(s.id) == 0u);
}

BOOST_AUTO_TEST_CASE(threads_with_their_own_resources, SERVERS) {
    reset_accounts();
    tx_setup s("txthreads", true);
    const int rc = in_child(s, [] {
        void* pqlib = dlopen(XARM_PQ_LIB, RTLD_NOW);
        void* mylib =
            dlopen((fs::path(XARM_PQ_LIB).parent_path() / "libxarm_mysql.so").c_str(), RTLD_NOW);
        void* libpq = dlopen("libpq.so.5", RTLD_NOW);
        if (pqlib == nullptr || mylib == nullptr || libpq == nullptr) return 90;
        auto pq_conn = reinterpret_cast<void* (*)(int)>(dlsym(pqlib, "xarm_pq_conn"));
        auto pq_exec = reinterpret_cast<void* (*)(void*, const char*)>(dlsym(libpq, "PQexec"));
        auto pq_clear = reinterpret_cast<void (*)(void*)>(dlsym(libpq, "PQclear"));
        auto my_exec = reinterpret_cast<long long (*)(int, const char*, char*, size_t)>(
            dlsym(mylib, "xarm_mysql_execute"));
        std::atomic<int> failures{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < 3; ++t)
            threads.emplace_back([&] {
                if (tx_open() != TX_OK) {
                    ++failures;
                    return;
                }
                for (int i = 0; i < 5; ++i) {
                    if (tx_begin() != TX_OK) ++failures;
                    pq_clear(pq_exec(pq_conn(1),
                                     "UPDATE tx_account SET balance = balance - 1 WHERE id = 1"));
                    char err[256];
                    if (my_exec(2, "UPDATE tx_account SET balance = balance + 1 WHERE id = 1", err,
                                sizeof err) != 1)
                        ++failures;
                    if (tx_commit() != TX_OK) ++failures;
                }
                if (tx_close() != TX_OK) ++failures;
            });
        for (auto& t : threads) t.join();
        return failures.load();
    });
    BOOST_TEST(rc == 0, rc << " calls failed");
    BOOST_TEST(read_balances() == (balances{985, 1015}));
    BOOST_TEST(prepared_of(s.id) == 0u);
}

BOOST_AUTO_TEST_CASE(heuristics_and_doubt_reach_the_program, SERVERS) {
    // PostgreSQL through the lying switch (it wraps the very libxarm_pq.so the program
    // links, so xarm_pq_conn(1) is its connection).
    struct lie_case {
        const char* mode;
        const char* said;
        balances after;  // once the next (honest) tx_open has recovered
    };
    for (const auto& lc : {lie_case{"heurmix_commit", "tx_commit: TX_MIXED", {990, 1010}},
                           lie_case{"false_prepare", "tx_commit: TX_MIXED", {1000, 1010}},
                           lie_case{"weird_commit", "tx_commit: TX_HAZARD", {990, 1010}}}) {
        BOOST_TEST_CONTEXT(lc.mode) {
            reset_accounts();
            tx_setup s("txlie", true, "", XARM_LYING_LIB, "lying_switch");
            const auto r = transfer(s, {"--count", "1"}, {{"LYING_SWITCH", lc.mode}});
            BOOST_TEST(r.code == 4, r.output);
            BOOST_TEST(contains(r.output, lc.said), r.output);
            BOOST_TEST(!contains(r.output, "TX_OK"), r.output);
            const auto next = transfer(s, {"--count", "0"});
            BOOST_TEST(next.code == 0, next.output);
            BOOST_TEST(prepared_of(s.id) == 0u);
            BOOST_TEST(read_balances() == lc.after);
        }
    }
}

BOOST_AUTO_TEST_CASE(tx_open_failures_say_why, SERVERS) {
    tx_setup s("txopen", true);
    const auto no_log = transfer(s, {"--count", "0"}, {{"XARM_TX_CREATE_LOG", "0"}});
    BOOST_TEST(no_log.code == 3, no_log.output);
    BOOST_TEST(contains(no_log.output, "tx_open: TX_ERROR"), no_log.output);
    BOOST_TEST(contains(no_log.output, "no decision log at"), no_log.output);
    const auto no_file = transfer(s, {"--count", "0"}, {{"XARM_TX_CONFIG", ""}});
    BOOST_TEST(
        contains(no_file.output, "tx_open: TX_FAIL: xarm: tx_open: XARM_TX_CONFIG is not set"),
        no_file.output);
    const auto no_profile = transfer(s, {"--count", "0"}, {{"XARM_TX_PROFILE", "nope"}});
    BOOST_TEST(contains(no_profile.output, "tx_open: TX_FAIL"), no_profile.output);
    BOOST_TEST(contains(no_profile.output, "no [profile.nope] (profiles: transfer)"),
               no_profile.output);
    const auto down =
        transfer(s, {"--count", "0"},
                 {{"XARM_TEST_PQ", "host=127.0.0.1 port=1 dbname=x user=x password=secret9"}});
    BOOST_TEST(down.code == 3, down.output);
    BOOST_TEST(contains(down.output, "tx_open: TX_ERROR"), down.output);
    BOOST_TEST(!contains(down.output, "secret9"), down.output);
    // The reason comes from the switch library's own xarm_last_error.
    BOOST_TEST(contains(down.output, "Connection refused"), down.output);
}

BOOST_AUTO_TEST_CASE(killed_at_every_crash_point_then_recovered, SERVERS) {
    struct crash_case {
        const char* point;
        bool committed;      // the decision the log holds (presumed abort before it)
        bool prepared_left;  // branches of the coordinator stay prepared after the crash
        bool by_cli;         // recovered by `xarm recover --config` instead of tx_open
        bool as_switches;
    };
    const crash_case cases[] = {
        {"before_prepare", false, false, false, true},
        {"after_prepare:1", false, true, false, true},
        {"after_prepare:2", false, true, false, true},
        {"before_decision", false, true, false, true},
        {"after_decision_logged", true, true, false, true},
        {"between_commits", true, true, false, true},
        {"after_commits", true, false, false, true},
        {"after_decision_logged", true, true, false, false},
        {"after_prepare:2", false, true, true, false},
        {"between_commits", true, true, true, true},
    };
    for (const auto& cc : cases) {
        BOOST_TEST_CONTEXT(cc.point << (cc.by_cli ? ", xarm recover" : ", next tx_open")
                                    << (cc.as_switches ? ", switches" : ", drivers")) {
            reset_accounts();
            tx_setup s("txcrash", cc.as_switches);
            const auto r = transfer(s, {"--amount", "7"}, {{"XARM_CRASH_AT", cc.point}});
            BOOST_TEST(r.code == 99, r.output);
            BOOST_TEST((prepared_of(s.id) > 0u) == cc.prepared_left);
            if (cc.by_cli) {
                const auto rec = run(
                    s, XARM_CLI, {"recover", "--coordinator", s.id, "--config", s.config.string()});
                BOOST_TEST(rec.code == 0, rec.output);
            } else {
                const auto next = transfer(s, {"--count", "0"});
                BOOST_TEST(next.code == 0, next.output);
            }
            BOOST_TEST(prepared_of(s.id) == 0u);
            BOOST_TEST(read_balances() ==
                       (cc.committed ? balances{993, 1007} : balances{1000, 1000}));
        }
    }
}

BOOST_AUTO_TEST_CASE(killed_during_recovery_then_recovered, SERVERS) {
    reset_accounts();
    tx_setup s("txcrrec", true);
    BOOST_TEST(transfer(s, {"--amount", "7"}, {{"XARM_CRASH_AT", "after_decision_logged"}}).code ==
               99);
    const auto mid = transfer(s, {"--count", "0"}, {{"XARM_CRASH_AT", "during_recovery"}});
    BOOST_TEST(mid.code == 99, mid.output);
    const auto next = transfer(s, {"--count", "0"});
    BOOST_TEST(next.code == 0, next.output);
    BOOST_TEST(prepared_of(s.id) == 0u);
    BOOST_TEST(read_balances() == (balances{993, 1007}));
}

BOOST_AUTO_TEST_CASE(killed_at_random_moments_stays_atomic, SERVERS) {
    reset_accounts();
    tx_setup s("txkill", true);
    std::mt19937 rng(std::random_device{}());
    for (int round = 0; round < 4; ++round) {
        const auto after = std::chrono::milliseconds(100 + rng() % 600);
        BOOST_TEST_MESSAGE("round " << round << ": kill -9 after " << after.count() << " ms");
        (void)transfer(s, {"--count", "1000", "--amount", "1"}, {}, after);
        const auto next = transfer(s, {"--count", "0"});  // tx_open recovers
        BOOST_TEST(next.code == 0, next.output);
        BOOST_TEST(prepared_of(s.id) == 0u);
        const auto b = read_balances();
        BOOST_TEST_MESSAGE("  balances: " << b);
        BOOST_TEST(b.pq + b.my == 2000, b);
    }
    // The rounds did commit transfers (the sum alone would hold if nothing ran).
    BOOST_TEST(read_balances().pq < 1000);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(switch_resources)

namespace {
tm::switch_resource::options pq_switch(const std::string& name, const char* lib, int rmid,
                                       const char* symbol = "") {
    return {.name = name,
            .library = lib,
            .symbol = symbol,
            .open = testing::server("XARM_TEST_PQ"),
            .rmid = rmid};
}

/// Runs SQL on the calling thread's PostgreSQL session of rmid, through a library's
/// connection accessor (xarm_pq_conn, lying_conn).
void pq_sql(const char* lib, const char* accessor, int rmid, const char* sql) {
    void* h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
    BOOST_REQUIRE(h != nullptr);
    auto conn = reinterpret_cast<void* (*)(int)>(dlsym(h, accessor));
    void* libpq = dlopen("libpq.so.5", RTLD_NOW);
    auto exec = reinterpret_cast<void* (*)(void*, const char*)>(dlsym(libpq, "PQexec"));
    auto clear = reinterpret_cast<void (*)(void*)>(dlsym(libpq, "PQclear"));
    BOOST_REQUIRE(conn != nullptr && conn(rmid) != nullptr && exec != nullptr);
    clear(exec(conn(rmid), sql));
}
void my_sql(int rmid, const char* sql) {
    void* h = dlopen(XARM_PQ_LIB, RTLD_NOW | RTLD_NOLOAD);
    (void)h;
    void* my = dlopen((fs::path(XARM_PQ_LIB).parent_path() / "libxarm_mysql.so").c_str(),
                      RTLD_NOW | RTLD_NOLOAD);
    BOOST_REQUIRE(my != nullptr);
    auto exec = reinterpret_cast<long long (*)(int, const char*, char*, size_t)>(
        dlsym(my, "xarm_mysql_execute"));
    char err[256] = "";
    BOOST_TEST(exec(rmid, sql, err, sizeof err) == 1, err);
}

struct coord_fixture {
    fs::path dir = fs::temp_directory_path() / testing::unique("xarm-swres");
    coord_fixture() { fs::create_directories(dir); }
    ~coord_fixture() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    tm::coordinator make(const std::string& id) {
        // Worker threads: the switch resources must still be driven from this thread.
        tm::coordinator::options o;
        o.id = id;
        o.log_path = dir / (id + ".tmlog");
        o.create_log = true;
        o.workers = 4;
        return tm::coordinator(std::move(o));
    }
};
}  // namespace

BOOST_AUTO_TEST_CASE(transfer_over_switches_on_a_coordinator_with_workers, SERVERS) {
    reset_accounts();
    coord_fixture f;
    auto coord = f.make("swres");
    tm::switch_resource pg(pq_switch("pg", XARM_PQ_LIB, 11));
    tm::switch_resource maria({.name = "maria",
                               .library = "mysql",
                               .symbol = "",
                               .open = testing::server("XARM_TEST_MYSQL"),
                               .rmid = 12});
    for (int i = 0; i < 3; ++i) {
        auto t = coord.begin();
        t.enlist(pg);
        t.enlist(maria);
        pq_sql(XARM_PQ_LIB, "xarm_pq_conn", 11,
               "UPDATE tx_account SET balance = balance - 1 WHERE id = 1");
        my_sql(12, "UPDATE tx_account SET balance = balance + 1 WHERE id = 1");
        t.commit();
        BOOST_TEST((t.result() == tm::outcome::committed));
    }
    BOOST_TEST(read_balances() == (balances{997, 1003}));
    BOOST_TEST(coord.stats().two_phase == 3u);
}

BOOST_AUTO_TEST_CASE(coordinator_timeout_rolls_back_at_commit, SERVERS) {
    reset_accounts();
    coord_fixture f;
    tm::coordinator::options o;
    o.id = "swtimeout";
    o.log_path = f.dir / "t.tmlog";
    o.create_log = true;
    o.transaction_timeout = 300ms;
    tm::coordinator coord(std::move(o));
    tm::switch_resource pg(pq_switch("pg", XARM_PQ_LIB, 20));
    auto t = coord.begin();
    BOOST_TEST(t.timeout().count() == 300);
    t.enlist(pg);
    pq_sql(XARM_PQ_LIB, "xarm_pq_conn", 20, "UPDATE tx_account SET balance = 0 WHERE id = 1");
    std::this_thread::sleep_for(400ms);
    BOOST_TEST(t.expired());
    try {
        t.commit();
        BOOST_FAIL("an expired transaction committed");
    } catch (const rollback_error& e) {
        BOOST_TEST(e.xa_code() == XA_RBTIMEOUT);
        BOOST_TEST(contains(e.what(), "exceeded its timeout of 0.3 s"), e.what());
    }
    BOOST_TEST(!pg.active());  // ended (TMFAIL) and rolled back
    BOOST_TEST(read_balances() == (balances{1000, 1000}));
    // Within its timeout (here: none for this one) it commits.
    auto u = coord.begin();
    u.set_timeout(0ms);
    u.enlist(pg);
    pq_sql(XARM_PQ_LIB, "xarm_pq_conn", 20, "UPDATE tx_account SET balance = 5 WHERE id = 1");
    std::this_thread::sleep_for(400ms);
    u.commit();
    BOOST_TEST(read_balances().pq == 5);
}

BOOST_AUTO_TEST_CASE(thread_of_control_is_enforced, SERVERS) {
    tm::switch_resource pg(pq_switch("pg", XARM_PQ_LIB, 13));
    const xid x(tm::format_id, "swthread." + testing::unique("t"), "1");
    pg.begin(x);
    std::string what;
    std::thread([&] {
        try {
            (void)pg.prepare(x);
        } catch (const programming_error& e) {
            what = e.what();
        }
    }).join();
    BOOST_TEST(contains(what, "on a thread that did not open rmid 13"), what);
    pg.rollback(x);
}

BOOST_AUTO_TEST_CASE(unusable_switches_are_refused_at_configuration, SERVERS) {
    try {
        tm::switch_resource r(pq_switch("dyn", XARM_LYING_LIB, 14, "lying_register_switch"));
        BOOST_FAIL("a TMREGISTER switch was accepted");
    } catch (const error& e) {
        BOOST_TEST(contains(e.what(), "TMREGISTER"), e.what());
        BOOST_TEST(contains(e.what(), "resource 'dyn'"), e.what());
    }
    // The same through a configuration file, as the factory builds it.
    const auto cfg = tm::parse_config(
        std::string("[coordinator]\nid = \"x\"\nlog = \"/tmp/x\"\n[resource.dyn]\nswitch = \"") +
            XARM_LYING_LIB + "\"\nsymbol = \"lying_register_switch\"\nopen = \"\"\n",
        "cfg.toml");
    BOOST_CHECK_THROW(tm::make_factory(cfg)("dyn"), error);
}

BOOST_AUTO_TEST_CASE(recovery_pages_through_xa_recover, SERVERS) {
    tm::switch_resource pg(pq_switch("pg", XARM_PQ_LIB, 15));
    pg.recover();  // nothing of ours before
    const std::string tag = "swpage." + testing::unique("p");
    std::vector<xid> mine;
    auto& sw = pg.xa_switch();
    for (int i = 0; i < 7; ++i) {
        mine.emplace_back(tm::format_id, tag, std::to_string(i));
        XID c;
        mine.back().to_c(c);
        BOOST_REQUIRE(sw.xa_start_entry(&c, 15, TMNOFLAGS) == XA_OK);
        pq_sql(XARM_PQ_LIB, "xarm_pq_conn", 15, "SELECT pg_catalog.pg_current_xact_id()");
        BOOST_REQUIRE(sw.xa_end_entry(&c, 15, TMSUCCESS) == XA_OK);
        BOOST_REQUIRE(sw.xa_prepare_entry(&c, 15, TMNOFLAGS) == XA_OK);
    }
    tm::switch_resource paged({.name = "pg",
                               .library = XARM_PQ_LIB,
                               .symbol = "",
                               .open = testing::server("XARM_TEST_PQ"),
                               .rmid = 15,
                               .recover_page = 3});
    std::size_t found = 0;
    for (const auto& x : paged.recover())
        if (x.gtrid() == tag) ++found;
    BOOST_TEST(found == 7u);
    for (const auto& x : mine) paged.rollback_recovered(x);
    found = 0;
    for (const auto& x : paged.recover())
        if (x.gtrid() == tag) ++found;
    BOOST_TEST(found == 0u);
}

BOOST_AUTO_TEST_CASE(a_lying_switch_never_makes_a_commit_reported, SERVERS) {
    coord_fixture f;
    auto coord = f.make("swlie");
    struct lie_case {
        const char* mode;
        bool two_resources;
        tm::outcome expected;
        const char* said;    // in the error
        bool left_prepared;  // recovery (with an honest switch) commits the liar's branch
    };
    const lie_case cases[] = {
        {"false_prepare", true, tm::outcome::heuristic, "gone when phase two came", false},
        {"weird_commit", true, tm::outcome::heuristic, "answered 42", true},
        {"weird_commit", false, tm::outcome::heuristic, "the outcome of the commit is unknown",
         false},
        {"weird_prepare", true, tm::outcome::rolled_back,
         "a code the XA specification does not allow", false},
        {"heurmix_commit", true, tm::outcome::heuristic, "XA_HEURMIX", false},
        // Decided and durable: commit() returns, the branch is left to recovery.
        {"retry_commit", true, tm::outcome::committed, "", true},
    };
    for (const auto& lc : cases) {
        BOOST_TEST_CONTEXT(lc.mode << (lc.two_resources ? ", two resources" : ", one resource")) {
            reset_accounts();
            tm::switch_resource liar(pq_switch("liar", XARM_LYING_LIB, 16, "lying_switch"));
            tm::switch_resource maria({.name = "maria",
                                       .library = "mysql",
                                       .symbol = "",
                                       .open = testing::server("XARM_TEST_MYSQL"),
                                       .rmid = 17});
            ::setenv("LYING_SWITCH", lc.mode, 1);
            auto t = coord.begin();
            t.enlist(liar);
            if (lc.two_resources) t.enlist(maria);
            pq_sql(XARM_LYING_LIB, "lying_conn", 16,
                   "UPDATE tx_account SET balance = balance - 1 WHERE id = 1");
            if (lc.two_resources)
                my_sql(17, "UPDATE tx_account SET balance = balance + 1 WHERE id = 1");
            std::string what;
            try {
                t.commit();
            } catch (const error& e) {
                what = e.what();
            }
            ::unsetenv("LYING_SWITCH");
            BOOST_TEST((t.result() == lc.expected), what);
            BOOST_TEST(contains(what, lc.said), what);
            if (lc.expected == tm::outcome::committed) BOOST_TEST(t.unfinished().size() == 1u);
            if (lc.expected == tm::outcome::rolled_back)
                BOOST_TEST(read_balances() == (balances{1000, 1000}));
            if (std::string(lc.mode) == "heurmix_commit")
                BOOST_TEST(contains(what, "xa_forget answered XAER_NOTA"), what);
            if (lc.left_prepared) {
                // The decision was kept: recovery with an honest switch commits the branch.
                const auto rep = coord.recover(
                    [](const std::string& n) -> std::unique_ptr<tm::resource> {
                        if (n == "liar")
                            return std::make_unique<tm::switch_resource>(
                                pq_switch("liar", XARM_PQ_LIB, 18));
                        return std::make_unique<tm::switch_resource>(
                            tm::switch_resource::options{.name = "maria",
                                                         .library = "mysql",
                                                         .symbol = "",
                                                         .open = testing::server("XARM_TEST_MYSQL"),
                                                         .rmid = 19});
                    },
                    {"liar", "maria"});
                BOOST_TEST(rep.complete());
                BOOST_TEST(rep.committed.size() == 1u);
                BOOST_TEST(read_balances() == (balances{999, 1001}));
            }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
