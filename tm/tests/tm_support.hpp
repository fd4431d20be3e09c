// Support shared by the transaction manager's test programs: scratch directories,
// short unique ids, child processes (the `xarm` command, the demo, the standby helper;
// with a crash point armed or not: output to a file, waiting for a line, killing), and
// counting a coordinator's prepared branches with the databases' own SQL, independently
// of xarm's recovery code.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "xarm/connection.hpp"
#include "xarm/driver/codec.hpp"
#include "xarm/tm.hpp"
#include "xarm/xid.hpp"
#include "xarm_testing.hpp"

namespace xarm::testing {

/// A fresh directory under the system's temporary one, removed with its contents.
struct scratch {
    std::filesystem::path dir;
    explicit scratch(const std::string& prefix = "xarm-tm")
        : dir(std::filesystem::temp_directory_path() / unique(prefix)) {
        std::filesystem::create_directories(dir);
    }
    ~scratch() {
        std::error_code ignored;
        std::filesystem::remove_all(dir, ignored);
    }
    scratch(const scratch&) = delete;
    scratch& operator=(const scratch&) = delete;
};

/// A short unique name usable as a table name and a coordinator id (at most 16
/// characters for a prefix of up to 5).
inline std::string short_id(const char* prefix) {
    static std::atomic<int> n{0};
    return std::string(prefix) + std::to_string(::getpid() % 100000) + "x" + std::to_string(n++);
}

inline bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

inline std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p);
    return {std::istreambuf_iterator<char>(in), {}};
}

#ifdef XARM_CLI
/// The xarm program under test: $XARM_CLI_UNDER_TEST when set (to run these tests
/// against another build, e.g. an older one to see them fail), else this build's.
inline std::string xarm_program() {
    const char* v = std::getenv("XARM_CLI_UNDER_TEST");
    return v != nullptr && *v != '\0' ? v : XARM_CLI;
}
#endif

/// A running child process; killed (SIGKILL) and reaped by the destructor if still alive.
class child {
  public:
#ifdef XARM_CLI
    /// Starts `xarm args...` in `cwd` (empty: ours), stdout and stderr appended to out.
    child(const std::vector<std::string>& args, const std::filesystem::path& out,
          const std::filesystem::path& cwd = {})
        : child(xarm_program(), args, out, cwd, {}) {}
#endif
    /// Starts `program args...` in `cwd` (empty: ours), stdout and stderr appended to
    /// out, with XARM_CRASH_AT=crash_at (unset when empty).
    child(const std::string& program, const std::vector<std::string>& args,
          const std::filesystem::path& out, const std::filesystem::path& cwd,
          const std::string& crash_at)
        : m_out(out) {
        const std::string prog = program;
        m_pid = ::fork();
        if (m_pid == 0) {
            if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(126);
            const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                ::dup2(fd, 1);
                ::dup2(fd, 2);
            }
            if (crash_at.empty())
                ::unsetenv("XARM_CRASH_AT");
            else
                ::setenv("XARM_CRASH_AT", crash_at.c_str(), 1);
            std::vector<std::string> copy = args;
            std::string p = prog;
            std::vector<char*> argv{p.data()};
            for (auto& a : copy) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(p.c_str(), argv.data());
            ::_exit(127);
        }
    }
    child(const child&) = delete;
    child& operator=(const child&) = delete;
    ~child() {
        if (m_pid > 0 && !m_status) {
            ::kill(m_pid, SIGKILL);
            (void)wait();
        }
    }

    pid_t pid() const noexcept {
        return m_pid;
    }
    const std::filesystem::path& out() const noexcept {
        return m_out;
    }

    /// Exit code, or 128 + signal number. Blocks.
    int wait() {
        if (!m_status) {
            int st = 0;
            while (::waitpid(m_pid, &st, 0) < 0 && errno == EINTR) {
            }
            m_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        return *m_status;
    }
    /// True while it has not exited (reaps it when it has).
    bool running() {
        if (m_status) return false;
        int st = 0;
        if (::waitpid(m_pid, &st, WNOHANG) == m_pid) {
            m_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            return false;
        }
        return true;
    }
    void kill(int sig) {
        ::kill(m_pid, sig);
    }

    /// Waits until `needle` appears in the output; false when the child exits first or
    /// the timeout passes.
    bool wait_for(const std::string& needle, std::chrono::milliseconds timeout) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < end) {
            if (slurp(m_out).find(needle) != std::string::npos) return true;
            if (!running()) return slurp(m_out).find(needle) != std::string::npos;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return false;
    }
    /// Waits for the exit at most `timeout`; SIGKILL after it. Exit code or 128 + signal.
    int wait_for_exit(std::chrono::milliseconds timeout) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (running() && std::chrono::steady_clock::now() < end)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (running()) kill(SIGKILL);
        return wait();
    }

  private:
    pid_t m_pid = -1;
    std::filesystem::path m_out;
    std::optional<int> m_status;
};

#ifdef XARM_CLI
/// Runs `xarm args...` to its end; returns its exit code (128 + signal) and its output.
struct run_result {
    int code;
    std::string output;
};
inline run_result run_xarm(const std::vector<std::string>& args, const std::filesystem::path& out,
                           const std::filesystem::path& cwd = {}) {
    std::filesystem::remove(out);
    child c(args, out, cwd);
    const int code = c.wait();
    return {code, slurp(out)};
}
#endif

/// Branches of coordinator `id` prepared in the PostgreSQL database of `info`, from
/// pg_prepared_xacts.
inline std::size_t pg_prepared_of(const std::string& info, const std::string& id) {
    auto c = xarm::connect("pq", info);
    auto r = c.query("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()");
    c.rollback();
    std::size_t n = 0;
    for (const auto& row : r.rows) {
        const auto x = xarm::decode_pg_gid(row.at(0).value_or(""));
        if (!x.is_unparsed() && x.format_id() == tm::format_id && x.gtrid().starts_with(id + "."))
            ++n;
    }
    return n;
}

/// Branches of coordinator `id` prepared in MariaDB/MySQL, from XA RECOVER
/// (formatID, gtrid_length, bqual_length, data).
inline std::size_t mysql_prepared_of(const std::string& info, const std::string& id) {
    auto c = xarm::connect("mysql", info);
    auto r = c.query("XA RECOVER");
    c.rollback();
    std::size_t n = 0;
    for (const auto& row : r.rows) {
        const long fmt = std::stol(row.at(0).value_or("-1"));
        const auto glen = std::stoul(row.at(1).value_or("0"));
        const std::string gtrid = row.at(3).value_or("").substr(0, glen);
        if (fmt == tm::format_id && gtrid.starts_with(id + ".")) ++n;
    }
    return n;
}

}  // namespace xarm::testing
