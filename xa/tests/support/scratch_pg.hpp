// PostgreSQL test helpers: a throwaway server for settings the shared development
// server must not get (max_prepared_transactions = 0, a synchronous standby that never
// comes): initdb in a temporary directory, started on a free loopback port with the
// given `-c` settings, stopped and removed when the object goes. As root it runs as the
// unprivileged user xarmdev (tools/devservers creates it), since PostgreSQL refuses root.
// The bootstrap role is xarm (a superuser there), trusted on TCP: no password.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "xarm/connection.hpp"
#include "xarm_testing.hpp"

namespace xarm::testing {

inline const char* pg_bin() {
    return "/usr/lib/postgresql/15/bin";
}

/// Precondition decorator: initdb is there, and (as root) the unprivileged user is.
/// Without them the test is skipped locally (the program exits 77, as for a missing
/// server) and runs, to fail, under CI=true.
struct can_start_postgres {
    boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
        std::string why;
        const std::string initdb = std::string(pg_bin()) + "/initdb";
        if (::access(initdb.c_str(), X_OK) != 0)
            why = initdb + " not found";
        else if (::geteuid() == 0 && std::system("id xarmdev >/dev/null 2>&1") != 0)
            why = "running as root without the unprivileged user xarmdev";
        if (why.empty() || under_ci()) return true;
        detail::note_missing("a scratch PostgreSQL 15 server (" + why + ")");
        boost::test_tools::assertion_result r(false);
        r.message() << why;
        return r;
    }
};

class scratch_pg {
  public:
    /// settings: extra server options, e.g. "-c max_prepared_transactions=0".
    explicit scratch_pg(const std::string& settings) {
        char tmpl[] = "/tmp/xarm-scratch-pg-XXXXXX";
        BOOST_REQUIRE(::mkdtemp(tmpl) != nullptr);
        m_dir = tmpl;
        if (::geteuid() == 0) {
            m_as = "runuser -u xarmdev -- ";
            BOOST_REQUIRE_EQUAL(std::system(("chown xarmdev " + m_dir).c_str()), 0);
        }
        const std::string bin = m_as + pg_bin();
        const std::string initdb = bin + "/initdb -D " + m_dir +
                                   "/data -A trust -U xarm --no-sync >" + m_dir +
                                   "/initdb.log 2>&1";
        BOOST_REQUIRE_EQUAL(std::system(initdb.c_str()), 0);
        // A port the kernel says is free; another process may take it first: retry.
        for (int attempt = 0; attempt < 3 && !m_started; ++attempt) {
            m_port = free_port();
            const std::string start = bin + "/pg_ctl -D " + m_dir + "/data -l " + m_dir +
                                      "/log -w -t 60 -o \"-p " + std::to_string(m_port) + " -k " +
                                      m_dir + " -c listen_addresses=127.0.0.1 -c fsync=off " +
                                      settings + "\" start >/dev/null 2>&1";
            m_started = std::system(start.c_str()) == 0;
        }
        BOOST_REQUIRE_MESSAGE(m_started,
                              "cannot start the scratch server; see " << m_dir << "/log");
    }
    ~scratch_pg() {
        if (!m_started) return;  // the directory is kept for its log
        const std::string stop =
            m_as + pg_bin() + "/pg_ctl -D " + m_dir + "/data -m immediate stop >/dev/null 2>&1";
        (void)std::system(stop.c_str());
        (void)std::system(("rm -rf " + m_dir).c_str());
    }
    scratch_pg(const scratch_pg&) = delete;
    scratch_pg& operator=(const scratch_pg&) = delete;

    /// libpq key=value string for database postgres as the superuser xarm.
    std::string info() const {
        return "host=127.0.0.1 port=" + std::to_string(m_port) + " dbname=postgres user=xarm";
    }
    int port() const noexcept { return m_port; }
    const std::string& dir() const noexcept { return m_dir; }

  private:
    static int free_port() {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        int port = 0;
        if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
            port = ntohs(a.sin_port);
        ::close(fd);
        return port;
    }

    std::string m_dir;
    std::string m_as;  // "runuser -u xarmdev -- " when root
    int m_port = 0;
    bool m_started = false;
};

/// On a new thread: waits (up to 20 s) until backend pid runs `COMMIT` and waits on
/// wait_event ("PgSleep": a trigger sleeping, "SyncRep": a synchronous standby), then
/// terminates it (pg_terminate_backend) through a new connection to info. Join it.
inline std::thread terminate_in_commit(const std::string& info, const std::string& pid,
                                       const std::string& wait_event) {
    return std::thread([info, pid, wait_event] {
        try {
            auto watcher = connect("pq", info);
            for (int i = 0; i < 1000; ++i) {
                auto r =
                    watcher.query("SELECT count(*)::text FROM pg_stat_activity WHERE pid = " + pid +
                                  " AND wait_event = '" + wait_event + "' AND query = 'COMMIT'");
                watcher.commit();
                if (r.rows.at(0).at(0).value_or("") == "1") break;
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
            watcher.query("SELECT pg_terminate_backend(" + pid + ")");
            watcher.commit();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "terminate_in_commit: %s\n", e.what());
        }
    });
}

/// Settings of a server where a session with synchronous_commit on waits for ever for a
/// synchronous standby after writing its commit or prepare record.
inline constexpr const char* never_synchronous =
    "-c max_prepared_transactions=10 -c synchronous_standby_names=nobody";
/// Appended to a scratch_pg info: the session does not wait for the standby.
inline constexpr const char* local_commit = " options='-c synchronous_commit=local'";

/// A branch that PostgreSQL reports busy (SQLSTATE 55000, "prepared transaction with
/// identifier ... is busy") to every other session, on a never_synchronous server: its
/// session's PREPARE TRANSACTION has marked the transaction prepared and waits for the
/// synchronous standby while still holding it locked (PostgreSQL's twophase.c, EndPrepare:
/// SyncRepWaitForLSN before PostPrepare_Twophase releases the gxact; LockGXact refuses a
/// locked one). release() cancels the wait (pg_cancel_backend): the PREPARE then
/// completes, with a warning, and the branch is an ordinary prepared one.
class busy_branch {
  public:
    /// info: the server (a session with synchronous_commit on); sql: the branch's work.
    busy_branch(const std::string& info, const xid& x, const std::string& sql)
        : m_admin(connect("pq", info + local_commit)), m_holder(connect("pq", info)) {
        m_pid = m_holder.query("SELECT pg_backend_pid()::text").rows.at(0).at(0).value();
        m_holder.commit();
        m_holder.tpc_begin(x);
        m_holder.execute(sql);
        m_thread = std::thread([this] {
            try {
                m_holder.tpc_prepare();
            } catch (...) {
                m_failure = std::current_exception();
            }
        });
        // Busy from the moment the session waits for the standby.
        try {
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
            while (!waiting()) {
                if (std::chrono::steady_clock::now() > deadline)
                    BOOST_FAIL("PREPARE TRANSACTION never waited for the synchronous standby");
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
        } catch (...) {
            try {
                release();
            } catch (...) {
            }
            throw;
        }
    }
    ~busy_branch() {
        try {
            release();
        } catch (...) {
        }
    }
    busy_branch(const busy_branch&) = delete;
    busy_branch& operator=(const busy_branch&) = delete;

    /// True while the holder waits for the standby (the branch is busy).
    bool waiting() {
        auto r = m_admin.query("SELECT count(*)::text FROM pg_stat_activity WHERE pid = " + m_pid +
                               " AND wait_event = 'SyncRep'");
        m_admin.commit();
        return r.rows.at(0).at(0).value() == "1";
    }
    /// Cancels the wait and joins: the branch stays prepared. Rethrows a failed PREPARE.
    void release() {
        if (!m_thread.joinable()) return;
        m_admin.query("SELECT pg_cancel_backend(" + m_pid + ")");
        m_admin.commit();
        m_thread.join();
        if (m_failure) std::rethrow_exception(std::exchange(m_failure, nullptr));
    }
    const std::string& pid() const noexcept { return m_pid; }

  private:
    connection m_admin;
    connection m_holder;
    std::string m_pid;
    std::thread m_thread;
    std::exception_ptr m_failure;
};

}  // namespace xarm::testing
