// The decision log in a PostgreSQL table against a real server: ownership by an
// advisory lock (a second opener is refused naming the holder, a standby waits and takes
// over when the owner dies, in another process too), and a lost log connection
// (pg_terminate_backend between transactions, during a burst, during COMMIT) that must
// cost no transaction its outcome: each commits, nothing of the coordinator stays
// prepared, recovery works.
#define BOOST_TEST_MODULE xarm_tm_table_log
#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "demo_transfer.hpp"
#include "tm_support.hpp"
#include "xarm/tm.hpp"
#include "xarm/tm_config.hpp"
#include "xarm_testing.hpp"

namespace fs = std::filesystem;
using namespace xarm;
using xarm::testing::child;
using xarm::testing::scratch;
using xarm::testing::short_id;
using xarm::testing::slurp;
using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {

/// Options of a coordinator whose decisions all go to its log: these tests are about the
/// log, so no last agent may decide instead.
tm::coordinator::options forced_log(const std::string& id, std::shared_ptr<tm::log_store> log) {
    tm::coordinator::options o{id, std::move(log), {}, {}, {}, {}};
    o.last_agent = "off";
    return o;
}

const auto needs_pq = boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ"});
const auto needs_pq2 = boost::unit_test::precondition(xarm::testing::needs{"XARM_TEST_PQ_DB2"});

std::string scalar(connection& c, const std::string& sql) {
    auto r = c.query(sql);
    c.commit();
    if (r.rows.empty() || r.rows[0].empty() || !r.rows[0][0]) return {};
    return *r.rows[0][0];
}

/// The PostgreSQL side of the lock, computed independently of table_log: the
/// application_name of the session holding coordinator id's advisory lock (empty: none).
std::string lock_holder(const std::string& info, const std::string& id) {
    auto c = xarm::connect("pq", info);
    const std::string key = "hashtextextended('xarm_tm_log:" + id + "', 0)";
    return scalar(c,
                  "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = "
                  "l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND "
                  "l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                  "AND l.classid::bigint = ((" +
                      key + " >> 32) & 4294967295) AND l.objid::bigint = (" + key +
                      " & 4294967295)");
}

/// Backend pid of the log connection of coordinator id in this process (empty: none).
std::string log_backend(connection& admin, const std::string& id) {
    return scalar(admin,
                  "SELECT pid::text FROM pg_stat_activity WHERE application_name LIKE "
                  "'xarm-tm:" +
                      id + "@%:" + std::to_string(::getpid()) +
                      "' ORDER BY backend_start DESC LIMIT 1");
}

void terminate(connection& admin, const std::string& pid) {
    BOOST_REQUIRE(!pid.empty());
    BOOST_REQUIRE(scalar(admin, "SELECT pg_terminate_backend(" + pid + ")::text") == "true");
}

/// Terminates the log connection of coordinator id and waits until it is gone.
void kill_log_connection(connection& admin, const std::string& id) {
    const std::string pid = log_backend(admin, id);
    terminate(admin, pid);
    for (int i = 0; i < 200; ++i) {
        if (scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = " + pid) == "0")
            return;
        std::this_thread::sleep_for(10ms);
    }
    BOOST_FAIL("the log's session " + pid + " did not end");
}

/// Branches of coordinator id still prepared in a database (independent of tm).
std::size_t own_prepared(const std::string& info, const std::string& id) {
    auto c = xarm::connect("pq", info);
    std::size_t n = 0;
    for (auto& x : c.tpc_recover())
        if (x.format_id() == tm::format_id && x.gtrid().starts_with(id + ".")) ++n;
    return n;
}

/// Test clean-up: rolls back what a failed case left prepared (it would hold locks on
/// the tables to drop), then drops them with a bounded lock wait.
void drop_tables(const std::string& info, const std::string& id,
                 const std::vector<std::string>& tables) {
    try {
        auto c = xarm::connect("pq", info);
        for (auto& x : c.tpc_recover())
            if (x.format_id() == tm::format_id && x.gtrid().starts_with(id + "."))
                c.tpc_rollback(x);
        c.execute("SET lock_timeout = '10s'");
        for (const auto& t : tables) c.execute("DROP TABLE IF EXISTS " + t);
        c.commit();
    } catch (const std::exception& e) {
        BOOST_TEST_MESSAGE("clean-up: " << e.what());
    }
}

void delete_rows(const std::string& info, const std::string& id) {
    auto c = xarm::connect("pq", info);
    c.execute("DELETE FROM xarm_tm_log WHERE coordinator = '" + id + "'");
    c.commit();
}

/// Two PostgreSQL databases with a table each, a coordinator id, and the log's database.
struct two_databases {
    std::string pq = xarm::testing::server("XARM_TEST_PQ");
    std::string pq2 = xarm::testing::server("XARM_TEST_PQ_DB2");
    std::string table = short_id("xtl");
    std::string id = short_id("tl");
    two_databases() {
        for (auto* info : {&pq, &pq2}) {
            auto c = xarm::connect("pq", *info);
            c.execute("CREATE TABLE " + table + " (v TEXT)");
            c.commit();
        }
    }
    ~two_databases() {
        for (auto* info : {&pq, &pq2}) drop_tables(*info, id, {table});
        try {
            delete_rows(pq, id);
        } catch (const std::exception&) {
        }
    }
    tm::resource_factory factory() const {
        return [this](const std::string& n) {
            return std::make_unique<tm::connection_resource>(
                n, xarm::connect("pq", n == "a" ? pq : pq2));
        };
    }
    long long rows(const std::string& info) const {
        auto c = xarm::connect("pq", info);
        return std::stoll(scalar(c, "SELECT count(*) FROM " + table));
    }
};

/// One two-phase transaction inserting a row in both databases; its outcome.
tm::outcome transfer(tm::coordinator& c, tm::connection_resource& a, tm::connection_resource& b,
                     const std::string& table, std::string* why = nullptr) {
    auto t = c.begin();
    try {
        t.enlist(a);
        t.enlist(b);
        a.conn().execute("INSERT INTO " + table + " VALUES ('x')");
        b.conn().execute("INSERT INTO " + table + " VALUES ('x')");
        t.commit();
    } catch (const std::exception& e) {
        if (why) *why = e.what();
        if (!t.finished()) t.rollback();
    }
    return t.result().value_or(tm::outcome::in_doubt);
}

std::string report_text(const tm::recovery_report& r) {
    std::ostringstream s;
    s << r.committed.size() << " committed, " << r.rolled_back.size() << " rolled back";
    for (auto& h : r.heuristic) s << "\nheuristic: " << h;
    for (auto& e : r.errors) s << "\nerror: " << e;
    return s.str();
}

// -- a TCP proxy that cuts the log's connection around a COMMIT ----------------------

/// Forwards connections to the PostgreSQL server of an info string (host=... port=...);
/// when armed, the next connection that sends COMMIT is cut: before forwarding it, after
/// the server answered it (the answer is dropped), or only on the client's side (a
/// network partition: the server's session stays, idle in its transaction and holding
/// its locks, until the proxy ends).
class cutting_proxy {
  public:
    enum class cut { none, before_commit, after_commit, partition };

    explicit cutting_proxy(std::string server_info) : m_info(std::move(server_info)) {
        std::string host = value("host");
        if (host.empty() || host == "localhost") host = "127.0.0.1";
        const std::string port = value("port");
        BOOST_REQUIRE_MESSAGE(!port.empty(), "the proxy needs port= in XARM_TEST_PQ");
        m_server.sin_family = AF_INET;
        m_server.sin_port = htons(static_cast<std::uint16_t>(std::stoi(port)));
        BOOST_REQUIRE(::inet_pton(AF_INET, host.c_str(), &m_server.sin_addr) == 1);
        m_listen = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in me{};
        me.sin_family = AF_INET;
        me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        BOOST_REQUIRE(::bind(m_listen, reinterpret_cast<sockaddr*>(&me), sizeof me) == 0);
        BOOST_REQUIRE(::listen(m_listen, 16) == 0);
        socklen_t len = sizeof me;
        ::getsockname(m_listen, reinterpret_cast<sockaddr*>(&me), &len);
        m_port = ntohs(me.sin_port);
        m_accept = std::thread([this] { accept_loop(); });
    }
    ~cutting_proxy() {
        m_stop = true;
        m_accept.join();
        std::vector<std::thread> pumps;
        {
            std::lock_guard lk(m_mutex);
            pumps.swap(m_pumps);
        }
        for (auto& t : pumps) t.join();
        for (int fd : m_parked) ::close(fd);
        ::close(m_listen);
    }
    /// The server info with the proxy's host and port.
    std::string info() const {
        std::string out = "host=127.0.0.1 port=" + std::to_string(m_port);
        for (const auto& t : tokens())
            if (!t.starts_with("host=") && !t.starts_with("port=")) out += " " + t;
        return out;
    }
    void arm(cut c) { m_armed = c; }
    bool fired() const { return m_fired; }

  private:
    /// The key=value words of the info string (the test servers' need no quoting).
    std::vector<std::string> tokens() const {
        std::vector<std::string> v;
        std::istringstream in(m_info);
        for (std::string t; in >> t;) v.push_back(t);
        return v;
    }
    std::string value(const std::string& key) const {
        for (const auto& t : tokens())
            if (t.starts_with(key + "=")) return t.substr(key.size() + 1);
        return {};
    }
    void accept_loop() {
        while (!m_stop) {
            pollfd p{m_listen, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            const int client = ::accept4(m_listen, nullptr, nullptr, SOCK_CLOEXEC);
            if (client < 0) continue;
            const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (::connect(server, reinterpret_cast<const sockaddr*>(&m_server), sizeof m_server) !=
                0) {
                ::close(server);
                ::close(client);
                continue;
            }
            std::lock_guard lk(m_mutex);
            m_pumps.emplace_back([this, client, server] { pump(client, server); });
        }
    }
    static bool send_all(int fd, const char* p, std::size_t n) {
        while (n > 0) {
            const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
            if (w <= 0) return false;
            p += w;
            n -= static_cast<std::size_t>(w);
        }
        return true;
    }
    void pump(int client, int server) {
        bool park = false;
        char buf[65536];
        pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
        while (!m_stop) {
            if (::poll(p, 2, 50) <= 0) continue;
            if (p[0].revents) {
                const ssize_t n = ::recv(client, buf, sizeof buf, 0);
                if (n <= 0) break;
                const std::string_view data(buf, static_cast<std::size_t>(n));
                const cut c = m_armed;
                if (c != cut::none && data.find(std::string_view("COMMIT\0", 7)) != data.npos) {
                    m_armed = cut::none;
                    if (c == cut::after_commit) {
                        // Forward, wait for the server's answer, drop it.
                        if (!send_all(server, buf, data.size())) break;
                        pollfd s{server, POLLIN, 0};
                        if (::poll(&s, 1, 10000) > 0) (void)::recv(server, buf, sizeof buf, 0);
                    }
                    park = c == cut::partition;
                    m_fired = true;
                    break;
                }
                if (!send_all(server, buf, data.size())) break;
            }
            if (p[1].revents) {
                const ssize_t n = ::recv(server, buf, sizeof buf, 0);
                if (n <= 0 || !send_all(client, buf, static_cast<std::size_t>(n))) break;
            }
        }
        ::close(client);
        if (park) {
            std::lock_guard lk(m_mutex);
            m_parked.push_back(server);
        } else {
            ::close(server);
        }
    }

    std::string m_info;
    sockaddr_in m_server{};
    int m_listen = -1;
    int m_port = 0;
    std::atomic<bool> m_stop{false}, m_fired{false};
    std::atomic<cut> m_armed{cut::none};
    std::mutex m_mutex;
    std::vector<std::thread> m_pumps;
    std::vector<int> m_parked;  // server sides of partitioned connections
    std::thread m_accept;
};

// -- child processes ------------------------------------------------------------------

/// Polls until pred() or timeout.
template <class P>
bool eventually(P pred, std::chrono::milliseconds timeout = 30s) {
    const auto end = clk::now() + timeout;
    while (clk::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(50ms);
    }
    return pred();
}

}  // namespace

namespace {
/// The log table exists in the test database, as after a coordinator's first start
/// (table_log creates it only when asked to).
struct log_table_created {
    log_table_created() {
        const char* pq = std::getenv("XARM_TEST_PQ");
        if (pq == nullptr) return;  // the cases needing it are skipped (or fail under CI)
        tm::table_log::options o;
        o.create = true;
        try {
            tm::table_log("pq", pq, "xtm-setup", o);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "cannot create the log table: %s\n", e.what());
        }
    }
};
BOOST_TEST_GLOBAL_FIXTURE(log_table_created);
}  // namespace

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(ownership)

// A missing table is never created silently: a recovery pointed at the wrong database
// (here: a schema without the table, through search_path) would see an empty log and
// roll back what was decided. Only an explicit first start creates it.
BOOST_AUTO_TEST_CASE(a_missing_table_is_an_error_unless_created, *needs_pq) {
    const std::string pq = xarm::testing::server("XARM_TEST_PQ");
    const std::string schema = short_id("xtmnolog");
    auto admin = xarm::connect("pq", pq);
    admin.execute("CREATE SCHEMA " + schema);
    admin.commit();
    struct dropped {
        connection& c;
        std::string schema;
        ~dropped() {
            try {
                c.rollback();
                c.execute("DROP SCHEMA " + schema + " CASCADE");
                c.commit();
            } catch (const std::exception&) {
            }
        }
    } drop{admin, schema};
    const std::string info = pq + " options='-c search_path=" + schema + "'";
    const std::string id = short_id("nolog");
    auto exists = [&] {
        return scalar(admin,
                      "SELECT (to_regclass('" + schema + ".xarm_tm_log') IS NOT NULL)::text");
    };
    try {
        tm::table_log log("pq", info, id);
        BOOST_FAIL("a table_log opened where there is no table");
    } catch (const xarm::error& e) {
        const std::string m = e.what();
        BOOST_TEST_MESSAGE(m);
        BOOST_TEST(e.sqlstate() == "42P01");
        BOOST_TEST(m.find("no decision log") != std::string::npos, m);
        BOOST_TEST(m.find("table xarm_tm_log in database 'xarm'") != std::string::npos, m);
        BOOST_TEST(m.find("coordinator '" + id + "'") != std::string::npos, m);
        BOOST_TEST(m.find("create_log") != std::string::npos, m);
        BOOST_TEST(m.find("password") == std::string::npos, m);
    }
    BOOST_TEST(exists() == "false");
    // The same through the configuration: recovery (create = false) refuses, and the
    // lock was released with the failed open.
    tm::config cfg;
    cfg.source = "cfg.toml";
    cfg.coordinator_id = id;
    cfg.log.driver = "pq";
    cfg.log.open = info;
    BOOST_CHECK_THROW(tm::open_log(cfg, false), xarm::error);
    BOOST_TEST(exists() == "false");
    BOOST_TEST(lock_holder(pq, id).empty());
    // The first start creates it; later opens find it.
    tm::table_log::options o;
    o.create = true;
    BOOST_CHECK_NO_THROW(tm::table_log("pq", info, id, o));
    BOOST_TEST(exists() == "true");
    BOOST_CHECK_NO_THROW(tm::open_log(cfg, false));
    // The check reads the same through psqlODBC (booleans come back as "1" there).
    if (const char* odbc = std::getenv("XARM_TEST_ODBC_PQ"))
        BOOST_CHECK_NO_THROW(tm::table_log("odbc", odbc, short_id("nolog")));
}

BOOST_AUTO_TEST_CASE(a_second_opener_fails_at_once_naming_the_holder, *needs_pq) {
    const std::string pq = xarm::testing::server("XARM_TEST_PQ");
    const std::string id = short_id("own");
    auto first = std::make_unique<tm::table_log>("pq", pq, id);
    const std::string me = std::to_string(::getpid());
    BOOST_TEST(lock_holder(pq, id).starts_with("xarm-tm:" + id + "@"));
    BOOST_TEST(lock_holder(pq, id).ends_with(":" + me));

    const auto t0 = clk::now();
    try {
        tm::table_log second("pq", pq, id);
        BOOST_FAIL("a second table_log with the same id opened");
    } catch (const xarm::error& e) {
        const std::string m = e.what();
        BOOST_TEST_MESSAGE(m);
        BOOST_TEST(e.sqlstate() == "55006");
        BOOST_TEST(m.find("owned by another process") != std::string::npos, m);
        BOOST_TEST(m.find("application_name 'xarm-tm:" + id + "@") != std::string::npos, m);
        BOOST_TEST(m.find(":" + me + "'") != std::string::npos, m);
        BOOST_TEST(m.find("backend pid") != std::string::npos, m);
        BOOST_TEST(m.find("connected since") != std::string::npos, m);
        BOOST_TEST(m.find("recovers its own transactions") != std::string::npos, m);
        BOOST_TEST(m.find("wait_for_lock") != std::string::npos, m);
    }
    BOOST_TEST((clk::now() - t0 < 2s));

    // Another id is another lock.
    const std::string other = short_id("own");
    BOOST_CHECK_NO_THROW(tm::table_log("pq", pq, other));

    // The owner's end releases the lock at once: a successor opens right away.
    first.reset();
    BOOST_TEST(lock_holder(pq, id).empty());
    BOOST_CHECK_NO_THROW(tm::table_log("pq", pq, id));
}

BOOST_AUTO_TEST_CASE(another_process_is_refused_and_refuses, *needs_pq) {
    scratch tmp;
    const std::string pq = xarm::testing::server("XARM_TEST_PQ");
    const std::string id = short_id("own");
    {
        // This process owns; another one with the same id is refused, naming us.
        tm::table_log mine("pq", pq, id);
        const auto out = tmp.dir / "refused.out";
        child p(XARM_TM_LOG_STANDBY, {"--log-db", pq, "--coordinator", id}, out, {}, {});
        BOOST_TEST(p.wait_for_exit(20s) == 3, slurp(out));
        const std::string m = slurp(out);
        BOOST_TEST(m.find("refused:") != std::string::npos, m);
        BOOST_TEST(m.find(":" + std::to_string(::getpid()) + "'") != std::string::npos, m);
        // With another id it works.
        const auto out2 = tmp.dir / "other.out";
        child q(XARM_TM_LOG_STANDBY, {"--log-db", pq, "--coordinator", short_id("own")}, out2, {},
                {});
        BOOST_TEST(q.wait_for_exit(20s) == 0, slurp(out2));
    }
    // Another process owns (and holds on); this one is refused naming it; once that
    // process is killed, the server releases the lock and this one opens.
    const auto out = tmp.dir / "holder.out";
    child h(XARM_TM_LOG_STANDBY, {"--log-db", pq, "--coordinator", id, "--hold-ms", "60000"}, out,
            {}, {});
    const std::string theirs = ":" + std::to_string(h.pid());
    BOOST_REQUIRE_MESSAGE(eventually([&] { return lock_holder(pq, id).ends_with(theirs); }),
                          slurp(out));
    try {
        tm::table_log refused("pq", pq, id);
        BOOST_FAIL("opened a log another process owns");
    } catch (const xarm::error& e) {
        const std::string m = e.what();
        BOOST_TEST(m.find(theirs + "'") != std::string::npos, m);
    }
    h.kill(SIGKILL);
    BOOST_TEST(h.wait_for_exit(10s) == 128 + SIGKILL);
    BOOST_TEST(eventually([&] { return lock_holder(pq, id).empty(); }, 10s));
    BOOST_CHECK_NO_THROW(tm::table_log("pq", pq, id));
}

BOOST_AUTO_TEST_CASE(a_lock_timeout_gives_up_after_the_timeout, *needs_pq) {
    const std::string pq = xarm::testing::server("XARM_TEST_PQ");
    const std::string id = short_id("to");
    tm::table_log owner("pq", pq, id);
    tm::table_log::options o;
    o.wait_for_lock = true;
    o.lock_timeout = 500ms;
    const auto t0 = clk::now();
    try {
        tm::table_log waiter("pq", pq, id, o);
        BOOST_FAIL("took a lock that is held");
    } catch (const xarm::error& e) {
        const auto waited = clk::now() - t0;
        const std::string m = e.what();
        BOOST_TEST_MESSAGE(m);
        BOOST_TEST(e.sqlstate() == "55P03");
        BOOST_TEST((waited >= 450ms));
        BOOST_TEST((waited < 2500ms));
        BOOST_TEST(m.find("gave up after") != std::string::npos, m);
        BOOST_TEST(m.find("lock_timeout 500 ms") != std::string::npos, m);
        BOOST_TEST(m.find("xarm-tm:" + id + "@") != std::string::npos, m);
    }
    BOOST_TEST(lock_holder(pq, id).ends_with(":" + std::to_string(::getpid())));
}

BOOST_AUTO_TEST_CASE(a_waiting_opener_takes_over_when_the_owner_ends, *needs_pq) {
    const std::string pq = xarm::testing::server("XARM_TEST_PQ");
    const std::string id = short_id("wt");
    auto owner = std::make_unique<tm::table_log>("pq", pq, id);
    std::atomic<bool> opened{false};
    std::string error;
    std::unique_ptr<tm::table_log> standby;
    std::thread t([&] {
        try {
            tm::table_log::options o;
            o.wait_for_lock = true;
            standby = std::make_unique<tm::table_log>("pq", pq, id, o);
        } catch (const std::exception& e) {
            error = e.what();
        }
        opened = true;
    });
    std::this_thread::sleep_for(600ms);
    BOOST_TEST(!opened.load());
    owner.reset();
    const auto t0 = clk::now();
    BOOST_TEST(eventually([&] { return opened.load(); }, 10s));
    t.join();
    BOOST_TEST(error.empty(), error);
    BOOST_TEST((clk::now() - t0 < 2s));
    BOOST_TEST(standby != nullptr);
}

BOOST_AUTO_TEST_CASE(losing_the_lock_is_fail_stop, *needs_pq* needs_pq2) {
    two_databases d;
    auto admin = xarm::connect("pq", d.pq);
    auto log = std::make_shared<tm::table_log>("pq", d.pq, d.id);
    tm::coordinator c(forced_log(d.id, log));
    tm::connection_resource a("a", xarm::connect("pq", d.pq)), b("b", xarm::connect("pq", d.pq2));
    BOOST_TEST((transfer(c, a, b, d.table) == tm::outcome::committed));

    // The log's session dies and another process (here: another table_log) takes the
    // lock before this one reconnects.
    kill_log_connection(admin, d.id);
    auto successor = std::make_shared<tm::table_log>("pq", d.pq, d.id);

    std::string why;
    BOOST_TEST((transfer(c, a, b, d.table, &why) == tm::outcome::in_doubt));
    BOOST_TEST(why.find("lost ownership of its decision log") != std::string::npos, why);
    BOOST_TEST(why.find("fail-stop") != std::string::npos, why);
    // For ever: no reconnect takes it back, even though the lock is free again.
    successor.reset();
    BOOST_TEST(lock_holder(d.pq, d.id).empty());
    const tm::log_record rec{tm::log_record::kind::commit, d.id + ".0.1", {{"a", "1"}}};
    try {
        log->force(rec);
        BOOST_FAIL("force() after losing ownership");
    } catch (const xarm::error& e) {
        BOOST_TEST(std::string(e.what()).find("lost ownership") != std::string::npos, e.what());
    }
    BOOST_CHECK_THROW(log->live(), xarm::error);
    BOOST_TEST(lock_holder(d.pq, d.id).empty());
    // Nor does it begin new transactions: they could only end in doubt.
    try {
        auto t = c.begin();
        BOOST_FAIL("a disowned coordinator began a transaction");
    } catch (const xarm::error& e) {
        const std::string m = e.what();
        BOOST_TEST(m.find("cannot begin") != std::string::npos, m);
        BOOST_TEST(m.find("lost ownership of its decision log") != std::string::npos, m);
    }

    // The new owner recovers: the undecided transaction is rolled back (presumed abort).
    BOOST_TEST(own_prepared(d.pq, d.id) + own_prepared(d.pq2, d.id) == 2u);
    auto next = std::make_shared<tm::table_log>("pq", d.pq, d.id);
    tm::coordinator c2(forced_log(d.id, next));
    auto rep = c2.recover(d.factory(), {"a", "b"});
    BOOST_TEST(rep.complete(), report_text(rep));
    BOOST_TEST(rep.rolled_back.size() == 2u, report_text(rep));
    BOOST_TEST(own_prepared(d.pq, d.id) + own_prepared(d.pq2, d.id) == 0u);
    BOOST_TEST(d.rows(d.pq) == 1);
    BOOST_TEST(d.rows(d.pq2) == 1);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(reconnect)

BOOST_AUTO_TEST_CASE(log_connection_terminated_between_transactions, *needs_pq* needs_pq2) {
    two_databases d;
    auto admin = xarm::connect("pq", d.pq);
    auto log = std::make_shared<tm::table_log>("pq", d.pq, d.id);
    tm::coordinator c(forced_log(d.id, log));
    tm::connection_resource a("a", xarm::connect("pq", d.pq)), b("b", xarm::connect("pq", d.pq2));
    BOOST_TEST((transfer(c, a, b, d.table) == tm::outcome::committed));
    int committed = 1;
    for (int round = 0; round < 3; ++round) {
        kill_log_connection(admin, d.id);
        for (int i = 0; i < 10; ++i) {
            std::string why;
            const auto o = transfer(c, a, b, d.table, &why);
            BOOST_TEST((o == tm::outcome::committed), "round " << round << ": " << why);
            committed += o == tm::outcome::committed;
        }
    }
    BOOST_TEST(log->reconnects() == 3u);
    BOOST_TEST(lock_holder(d.pq, d.id).ends_with(":" + std::to_string(::getpid())));
    // Recovery reads the log right after it lost its connection again.
    kill_log_connection(admin, d.id);
    tm::recovery_report rep;
    BOOST_CHECK_NO_THROW(rep = c.recover(d.factory(), {"a", "b"}));
    BOOST_TEST(rep.complete(), report_text(rep));
    BOOST_TEST(own_prepared(d.pq, d.id) + own_prepared(d.pq2, d.id) == 0u);
    BOOST_TEST(d.rows(d.pq) == committed);
    BOOST_TEST(d.rows(d.pq2) == committed);
    BOOST_TEST(committed == 31);
}

BOOST_AUTO_TEST_CASE(log_connection_terminated_during_a_burst_of_four_threads,
                     *needs_pq* needs_pq2) {
    two_databases d;
    auto log = std::make_shared<tm::table_log>("pq", d.pq, d.id);
    tm::coordinator c(forced_log(d.id, log));
    constexpr int threads = 4, per_thread = 40;
    std::atomic<int> committed{0}, done{0};
    std::mutex why_mutex;
    std::vector<std::string> whys;
    struct joiner {
        std::vector<std::thread> ts;
        ~joiner() {
            for (auto& t : ts)
                if (t.joinable()) t.join();
        }
    } workers;
    auto& ts = workers.ts;
    for (int i = 0; i < threads; ++i)
        ts.emplace_back([&] {
            tm::connection_resource a("a", xarm::connect("pq", d.pq)),
                b("b", xarm::connect("pq", d.pq2));
            for (int k = 0; k < per_thread; ++k) {
                std::string why;
                if (transfer(c, a, b, d.table, &why) == tm::outcome::committed) {
                    ++committed;
                } else {
                    std::lock_guard lk(why_mutex);
                    whys.push_back(why);
                }
                ++done;
            }
        });
    // Cut the log's connection four times while the threads commit.
    auto admin = xarm::connect("pq", d.pq);
    int kills = 0;
    for (int target : {15, 50, 90, 125}) {
        while (done.load() < target) std::this_thread::sleep_for(2ms);
        if (done.load() >= threads * per_thread) break;
        const std::string pid = log_backend(admin, d.id);
        BOOST_TEST(!pid.empty(), "no log session to terminate after " << kills << " kills");
        if (pid.empty()) continue;
        terminate(admin, pid);
        ++kills;
    }
    for (auto& t : ts) t.join();
    BOOST_TEST_MESSAGE(kills << " kills, " << log->reconnects() << " reconnects, "
                             << log->stats().forced_records << " decisions in "
                             << log->stats().syncs << " commits");
    BOOST_TEST(kills >= 3);
    BOOST_TEST(log->reconnects() >= 1u);
    BOOST_TEST(committed.load() == threads * per_thread,
               (whys.empty() ? std::string() : whys.front()));
    tm::recovery_report rep;
    BOOST_CHECK_NO_THROW(rep = c.recover(d.factory(), {"a", "b"}));
    BOOST_TEST(rep.complete(), report_text(rep));
    BOOST_TEST(rep.committed.empty());
    BOOST_TEST(own_prepared(d.pq, d.id) + own_prepared(d.pq2, d.id) == 0u);
    BOOST_TEST(d.rows(d.pq) == committed.load());
    BOOST_TEST(d.rows(d.pq2) == committed.load());
}

/// Runs one transaction whose decision's COMMIT on the log connection is cut by the
/// proxy (before the server got it, or after the server committed it and answered).
void commit_cut(cutting_proxy::cut how) {
    two_databases d;
    cutting_proxy proxy(d.pq);
    auto log = std::make_shared<tm::table_log>("pq", proxy.info(), d.id);
    tm::coordinator c(forced_log(d.id, log));
    tm::connection_resource a("a", xarm::connect("pq", d.pq)), b("b", xarm::connect("pq", d.pq2));
    BOOST_TEST((transfer(c, a, b, d.table) == tm::outcome::committed));
    proxy.arm(how);
    std::string why;
    const auto o = transfer(c, a, b, d.table, &why);
    BOOST_TEST(proxy.fired());
    BOOST_TEST((o == tm::outcome::committed), why);
    BOOST_TEST(log->reconnects() == 1u);
    BOOST_TEST(log->live().size() == 0u);
    BOOST_TEST(own_prepared(d.pq, d.id) + own_prepared(d.pq2, d.id) == 0u);
    BOOST_TEST(d.rows(d.pq) == 2);
    BOOST_TEST(d.rows(d.pq2) == 2);
    // The second decision's row is there once (its end record is still pending; the
    // first one's went with the second decision's write).
    auto k = xarm::connect("pq", d.pq);
    BOOST_TEST(scalar(k, "SELECT count(*) FROM xarm_tm_log WHERE coordinator = '" + d.id + "'") ==
               "1");
    // Only the log's new session is left (a partitioned old one was ended by the log).
    BOOST_TEST(eventually([&] {
        return scalar(k,
                      "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                      "'xarm-tm:" +
                          d.id + "@%'") == "1";
    }));
}

BOOST_AUTO_TEST_CASE(connection_cut_before_the_commit_reached_the_server, *needs_pq* needs_pq2) {
    // The decision was not stored: the retry must store it.
    commit_cut(cutting_proxy::cut::before_commit);
}

BOOST_AUTO_TEST_CASE(connection_cut_after_the_server_committed, *needs_pq* needs_pq2) {
    // The decision is stored but the answer never came: the retry must neither fail on
    // the stored row nor take it for missing.
    commit_cut(cutting_proxy::cut::after_commit);
}

BOOST_AUTO_TEST_CASE(network_partition_leaves_the_old_session_holding_the_lock,
                     *needs_pq* needs_pq2) {
    // The old session lives on (idle in its transaction, holding the advisory lock) as
    // after a network cut until TCP keepalive notices: the log must recognise its own
    // previous session, end it, and take the lock back rather than give up.
    commit_cut(cutting_proxy::cut::partition);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(takeover)

namespace {

/// Process A: the transfer demo with its log in PostgreSQL, transferring until killed or
/// crashed. Process B: the standby helper, waiting for A's log, then recovering.
struct takeover_run {
    scratch tmp;
    demo::demo_databases db;
    fs::path out_a = tmp.dir / "a.out", out_b = tmp.dir / "b.out";
    std::optional<child> a, b;

    takeover_run() {
        db.pq = xarm::testing::server("XARM_TEST_PQ");
        db.pq2 = xarm::testing::server("XARM_TEST_PQ_DB2");
        db.log_in_pq = true;
        db.coordinator = short_id("tk");
        db.table = short_id("xtmtk");
    }
    ~takeover_run() {
        a.reset();  // killed and reaped, before their tables go
        b.reset();
        for (auto* info : {&db.pq, &db.pq2})
            drop_tables(*info, db.coordinator, {db.table + "_journal", db.table});
        try {
            delete_rows(db.pq, db.coordinator);
        } catch (const std::exception&) {
        }
    }
    void start_a(const std::string& crash_at) {
        a.emplace(XARM_TM_DEMO,
                  std::vector<std::string>{"transfer", "--pq", db.pq, "--pq2", db.pq2,
                                           "--last-agent", "off", "--log-in-pq", "--coordinator",
                                           db.coordinator, "--table", db.table, "--reset",
                                           "--transfers", "1000000", "--threads", "4"},
                  out_a, fs::path(), crash_at);
        const std::string theirs = ":" + std::to_string(a->pid());
        BOOST_REQUIRE_MESSAGE(
            eventually([&] { return lock_holder(db.pq, db.coordinator).ends_with(theirs); }),
            "A never owned its log:\n"
                << slurp(out_a));
    }
    long long journal() const {
        try {
            auto c = xarm::connect("pq", db.pq);
            return std::stoll(scalar(c, "SELECT count(*) FROM " + db.table + "_journal"));
        } catch (const std::exception&) {
            return 0;
        }
    }
    void start_b() {
        b.emplace(
            XARM_TM_LOG_STANDBY,
            std::vector<std::string>{"--log-db", db.pq, "--coordinator", db.coordinator, "--wait",
                                     "--recover", "pq=" + db.pq, "--recover", "pq2=" + db.pq2},
            out_b, fs::path(), std::string());
    }
    /// B took over and recovered everything; the demo's invariant holds.
    void check_b(bool expect_commits) {
        BOOST_TEST(b->wait_for_exit(120s) == 0, "B:\n" << slurp(out_b) << "A:\n" << slurp(out_a));
        const std::string rb = slurp(out_b);
        BOOST_TEST_MESSAGE("B: " << rb);
        BOOST_TEST(rb.find("owner pid " + std::to_string(b->pid())) != std::string::npos, rb);
        BOOST_TEST(rb.find("0 heuristic, 0 errors") != std::string::npos, rb);
        if (expect_commits) BOOST_TEST(rb.find("recovery: 0 committed") == std::string::npos, rb);
        BOOST_TEST(own_prepared(db.pq, db.coordinator) == 0u);
        BOOST_TEST(own_prepared(db.pq2, db.coordinator) == 0u);
        // An independent recovery finds nothing left and checks the money.
        demo::tm_recover_options ro;
        ro.db = db;
        std::ostringstream report;
        BOOST_TEST(demo::tm_recover(ro, report) == 0, report.str());
        BOOST_TEST(report.str().find("recovery: 0 committed, 0 rolled back") != std::string::npos,
                   report.str());
        BOOST_TEST(report.str().find("invariant holds") != std::string::npos, report.str());
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(standby_process_takes_over_after_sigkill, *needs_pq* needs_pq2) {
    takeover_run r;
    r.start_a("");
    BOOST_REQUIRE_MESSAGE(eventually([&] { return r.journal() >= 30; }), slurp(r.out_a));
    r.start_b();
    // B is connected and waiting; A still owns the log and goes on transferring.
    const std::string b_name = ":" + std::to_string(r.b->pid());
    BOOST_TEST(eventually([&] {
        auto c = xarm::connect("pq", r.db.pq);
        return scalar(c,
                      "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                      "'xarm-tm:" +
                          r.db.coordinator + "@%" + b_name + "'") == "1";
    }));
    const long long before = r.journal();
    std::this_thread::sleep_for(700ms);
    BOOST_TEST(r.b->running());
    BOOST_TEST(slurp(r.out_b).find("owner") == std::string::npos, slurp(r.out_b));
    BOOST_TEST(lock_holder(r.db.pq, r.db.coordinator).ends_with(":" + std::to_string(r.a->pid())));
    BOOST_TEST(r.journal() > before);
    // A dies in the middle of its two-phase commits.
    r.a->kill(SIGKILL);
    BOOST_TEST(r.a->wait_for_exit(10s) == 128 + SIGKILL);
    r.check_b(false);
}

BOOST_AUTO_TEST_CASE(standby_process_commits_what_a_crashed_owner_decided, *needs_pq* needs_pq2) {
    if (!tm::fault_injection_enabled()) {
        BOOST_FAIL("needs a build with -DXARM_FAULT_INJECTION=ON (crash points)");
    }
    takeover_run r;
    // A crashes right after a decision was logged: that transaction's branches are
    // prepared with a commit record, which B must honour.
    r.start_a("after_decision_logged@60");
    r.start_b();
    BOOST_TEST(r.a->wait_for_exit(120s) == 99, slurp(r.out_a));
    r.check_b(true);
}

BOOST_AUTO_TEST_SUITE_END()
