// One case per child process: fork, a pipe for the result and for what the case
// created, shared memory naming the switch entry in progress, a time limit, and a stop
// request from a signal handler.
#include "isolation.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <sstream>

#include <fmt/format.h>

#include "xarm/driver/codec.hpp"

namespace xarm::conformance {

namespace {
volatile std::sig_atomic_t g_stop = 0;
}  // namespace

void request_stop(int signo) noexcept {
    g_stop = signo == 0 ? SIGINT : signo;
}

int stop_requested() noexcept {
    return g_stop;
}

namespace isolation {

namespace {

// Written by the child, read by the parent once the child is gone. Lock-free atomics
// work across processes in a shared mapping.
struct shared_state {
    std::atomic<int> call;
    std::atomic<int> rmid;
    std::atomic<int> token;
};
static_assert(std::atomic<int>::is_always_lock_free);

shared_state* g_shared = nullptr;
int g_pipe = -1;  // the child's end; -1 in-process

shared_state* shared() {
    if (g_shared == nullptr) {
        void* p = ::mmap(nullptr, sizeof(shared_state), PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return nullptr;
        g_shared = new (p) shared_state{};
        g_shared->call = static_cast<int>(call::none);
    }
    return g_shared;
}

void send_line(const std::string& line) {
    if (g_pipe < 0) return;
    // One write per line: lines below PIPE_BUF never interleave between threads.
    const char* p = line.data();
    std::size_t left = line.size();
    while (left > 0) {
        const ssize_t n = ::write(g_pipe, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

std::string signal_name(int sig) {
    if (const char* abbrev = ::sigabbrev_np(sig)) return std::string("SIG") + abbrev;
    return fmt::format("signal {}", sig);
}

void parse_line(const std::string& line, child_end& out) {
    std::istringstream in(line);
    char kind = 0;
    in >> kind;
    if (kind == 'X') {
        long format = 0;
        std::string g, b;
        in >> format >> g;
        in >> b;  // absent for an empty bqual
        auto gd = hex_decode(g), bd = hex_decode(b == "-" ? "" : b);
        if (!gd || !bd) return;
        try {
            out.xids.emplace_back(format, *gd, *bd);
        } catch (const std::exception&) {
        }
    } else if (kind == 'T') {
        std::string name;
        in >> name;
        if (!name.empty()) out.tables.push_back(name);
    } else if (kind == 'R') {
        int o = 0, noteworthy = 0;
        double seconds = 0;
        std::string id, msg;
        in >> o >> seconds >> noteworthy >> id >> msg;
        out.finished = true;
        out.result.result = static_cast<outcome>(o);
        out.result.seconds = seconds;
        out.result.noteworthy = noteworthy != 0;
        out.result.id = hex_decode(id == "-" ? "" : id).value_or("");
        out.result.message = hex_decode(msg == "-" ? "" : msg).value_or("");
    }
}

std::string hex_or_dash(const std::string& s) {
    return s.empty() ? "-" : hex_encode(s);
}

[[noreturn]] void child_main(int fd, pid_t parent, const std::function<case_result()>& fn) {
    // Die with the parent; never answer the terminal's signals (the parent does).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(3);
    // A crash must end the child with its signal, whatever handlers the parent set up
    // (a test framework's, say): the parent names the signal.
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT,
                    SIGSYS, SIGTRAP})
        std::signal(sig, SIG_DFL);
    // Nothing a switch prints may end up in the report on standard output.
    ::dup2(STDERR_FILENO, STDOUT_FILENO);
    g_pipe = fd;
    case_result r;
    try {
        r = fn();
    } catch (const std::exception& e) {
        r.result = outcome::error;
        r.message = std::string("the case broke: ") + e.what();
    } catch (...) {
        r.result = outcome::error;
        r.message = "the case broke: an unknown exception";
    }
    send_line(fmt::format("R {} {} {} {} {}\n", static_cast<int>(r.result), r.seconds,
                          r.noteworthy ? 1 : 0, hex_or_dash(r.id), hex_or_dash(r.message)));
    // No atexit handlers, no static destructors: they belong to the parent's state.
    ::_exit(0);
}

}  // namespace

const char* to_string(call c) noexcept {
    switch (c) {
        case call::none:
            return "";
        case call::xa_open:
            return "xa_open";
        case call::xa_close:
            return "xa_close";
        case call::xa_start:
            return "xa_start";
        case call::xa_end:
            return "xa_end";
        case call::xa_rollback:
            return "xa_rollback";
        case call::xa_prepare:
            return "xa_prepare";
        case call::xa_commit:
            return "xa_commit";
        case call::xa_recover:
            return "xa_recover";
        case call::xa_forget:
            return "xa_forget";
        case call::xa_complete:
            return "xa_complete";
        case call::native_conn:
            return "the native-connection function";
        case call::native_sql:
            return "the database client (SQL on the native connection)";
    }
    return "";
}

call_mark::call_mark(call c, int rmid) noexcept : m_token(0) {
    if (shared_state* s = g_shared) {
        m_token = s->token.fetch_add(1) + 1;
        s->rmid = rmid;
        s->call = static_cast<int>(c);
    }
}

call_mark::~call_mark() {
    // Threads overlap: only the latest mark clears, so a crash names a running call.
    if (shared_state* s = g_shared; s != nullptr && s->token.load() == m_token)
        s->call = static_cast<int>(call::none);
}

void track_xid(const xid& x) {
    if (g_pipe < 0 || x.is_null() || x.is_unparsed()) return;
    send_line(
        fmt::format("X {} {} {}\n", x.format_id(), hex_encode(x.gtrid()), hex_or_dash(x.bqual())));
}

void track_table(const std::string& name) {
    if (g_pipe < 0) return;
    send_line("T " + name + "\n");
}

namespace {

struct forked {
    pid_t pid;
    int fd;  ///< the read end of the child's pipe (the caller closes it)
};

// Forks the child that runs fn in its own process group, writing its lines to a pipe.
forked fork_child(const std::function<case_result()>& fn) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw setup_error("pipe failed: " + std::string(std::strerror(errno)));
    std::fflush(nullptr);  // nothing buffered may be written twice
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        throw setup_error("fork failed: " + std::string(std::strerror(errno)));
    }
    if (pid == 0) {
        ::close(fds[0]);
        ::setpgid(0, 0);
        child_main(fds[1], parent, fn);
    }
    ::setpgid(pid, pid);  // also here: no race with the kill below
    ::close(fds[1]);
    return {pid, fds[0]};
}

// Reads the child's lines into out until it ends, its time is up or a stop is requested
// (both kill its process group and say so in out.death). True when the child was reaped
// here, its status in status.
bool collect(const forked& child, double timeout_seconds, child_end& out, int& status) {
    using clock = std::chrono::steady_clock;
    const auto deadline =
        clock::now() + std::chrono::milliseconds(static_cast<long long>(timeout_seconds * 1000));
    std::string buffer;
    auto take_lines = [&] {
        for (auto nl = buffer.find('\n'); nl != std::string::npos; nl = buffer.find('\n')) {
            parse_line(buffer.substr(0, nl), out);
            buffer.erase(0, nl + 1);
        }
    };
    for (;;) {
        if (const int sig = stop_requested(); sig != 0) {
            ::kill(-child.pid, SIGKILL);
            out.death = "interrupted by " + signal_name(sig);
            return false;
        }
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
        if (left <= 0) {
            ::kill(-child.pid, SIGKILL);
            out.death = fmt::format("no result after {:g} s: killed", timeout_seconds);
            return false;
        }
        pollfd p{child.fd, POLLIN, 0};
        const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 200)));
        if (n < 0 && errno != EINTR) return false;
        if (n > 0) {
            char chunk[4096];
            const ssize_t got = ::read(child.fd, chunk, sizeof chunk);
            if (got > 0) {
                buffer.append(chunk, static_cast<std::size_t>(got));
                take_lines();
                continue;
            }
            if (got == 0) return false;  // every writer is gone
        }
        // A grandchild may keep the pipe open after the child is gone: stop waiting then.
        if (::waitpid(child.pid, &status, WNOHANG) == child.pid) {
            ::fcntl(child.fd, F_SETFL, O_NONBLOCK);
            char chunk[4096];
            for (ssize_t got; (got = ::read(child.fd, chunk, sizeof chunk)) > 0;)
                buffer.append(chunk, static_cast<std::size_t>(got));
            take_lines();
            return true;
        }
    }
}

// The call the child was in when it ended, from the shared page's mark.
void note_open_call(const shared_state* s, child_end& out) {
    if (s == nullptr) return;
    const auto c = static_cast<call>(s->call.load());
    if (c != call::none)
        out.in_call = c == call::native_sql || c == call::native_conn
                          ? to_string(c)
                          : fmt::format("{} (rmid {})", to_string(c), s->rmid.load());
}

std::string death_of(int status) {
    if (WIFSIGNALED(status)) return signal_name(WTERMSIG(status));
    if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
    return "an unknown end";
}

}  // namespace

child_end run_in_child(const std::function<case_result()>& fn, double timeout_seconds) {
    child_end out;
    shared_state* s = shared();
    if (s != nullptr) {
        s->call = static_cast<int>(call::none);
        s->rmid = 0;
    }
    const forked child = fork_child(fn);
    int status = 0;
    const bool reaped = collect(child, timeout_seconds, out, status);
    ::close(child.fd);
    if (!reaped) {
        while (::waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    // A case that died or hung may leave processes of its own behind. Not after a normal
    // end: a server started by --allow-restart's command may still be in the group.
    if (!out.finished) ::kill(-child.pid, SIGKILL);
    note_open_call(s, out);
    if (!out.finished && out.death.empty()) out.death = death_of(status);
    return out;
}

}  // namespace isolation
}  // namespace xarm::conformance
