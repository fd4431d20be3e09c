// The transaction manager's decision log on local disk, with group commit.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/crc.hpp>
#include <cerrno>
#include <cstring>
#include <thread>

#include "xarm/tm.hpp"
#include "xarm/xa.h"

namespace xarm::tm {

namespace {

constexpr std::uint32_t record_magic = 0x584c4f47;  // "XLOG"
// The first line of every log file: format version and owner, readable with `head -1`.
constexpr std::string_view header_prefix = "xarm tm log v1 coordinator=";
constexpr std::size_t header_size = 12;  // magic, length, crc
constexpr std::uint32_t max_payload = 1u << 20;

void put_u16(std::string& s, std::size_t v) {
    s.push_back(static_cast<char>(v & 0xff));
    s.push_back(static_cast<char>((v >> 8) & 0xff));
}
void put_u32(std::string& s, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint32_t get_u32(const char* p) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i)
        v |= static_cast<std::uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    return v;
}
void put_str(std::string& s, std::string_view v) {
    if (v.size() > 0xffff) raise(XAER_INVAL, "22001", "tm log: string too long for a record");
    put_u16(s, v.size());
    s.append(v);
}

std::uint32_t crc32(std::string_view bytes) {
    boost::crc_32_type crc;
    crc.process_bytes(bytes.data(), bytes.size());
    return crc.checksum();
}

/// Parses the payload; false when it is malformed (which a valid CRC makes a bug).
bool decode_payload(std::string_view p, log_record& out) {
    std::size_t i = 0;
    auto u16 = [&](std::size_t& v) {
        if (i + 2 > p.size()) return false;
        v = static_cast<unsigned char>(p[i]) |
            (static_cast<std::size_t>(static_cast<unsigned char>(p[i + 1])) << 8);
        i += 2;
        return true;
    };
    auto str = [&](std::string& v) {
        std::size_t n = 0;
        if (!u16(n) || i + n > p.size()) return false;
        v.assign(p.substr(i, n));
        i += n;
        return true;
    };
    if (p.empty()) return false;
    const auto t = static_cast<std::uint8_t>(p[0]);
    if (t != 1 && t != 2) return false;
    out.type = static_cast<log_record::kind>(t);
    i = 1;
    std::size_t n = 0;
    if (!str(out.gtrid) || !u16(n)) return false;
    out.branches.clear();
    for (std::size_t k = 0; k < n; ++k) {
        std::string a, b;
        if (!str(a) || !str(b)) return false;
        out.branches.emplace_back(std::move(a), std::move(b));
    }
    return i == p.size();
}

/// What is at off: a whole valid record, a torn tail (the file ends inside a record: a
/// write interrupted by a crash, never acknowledged), or damage.
enum class parsed { record, torn, corrupt };
struct parse_result {
    parsed what;
    std::size_t size = 0;  // of the record
    std::string why;       // for corrupt
};

parse_result parse_at(std::string_view buf, std::size_t off, log_record& out) {
    const std::size_t left = buf.size() - off;
    const char* h = buf.data() + off;
    // A prefix of the magic may be a torn header; anything else there is damage.
    if (left < 4) {
        std::string magic;
        put_u32(magic, record_magic);
        if (std::string_view(h, left) == std::string_view(magic).substr(0, left))
            return {parsed::torn, 0, {}};
        return {parsed::corrupt, 0, "bytes that do not begin a record"};
    }
    if (get_u32(h) != record_magic)
        return {parsed::corrupt, 0, "no record magic (overwritten or misplaced bytes)"};
    if (left < header_size) return {parsed::torn, 0, {}};
    const std::uint32_t len = get_u32(h + 4);
    if (len > max_payload)
        return {parsed::corrupt, 0, fmt::format("an impossible record length {}", len)};
    if (left - header_size < len) return {parsed::torn, 0, {}};
    const std::string_view payload = buf.substr(off + header_size, len);
    if (crc32(payload) != get_u32(h + 8))
        return {parsed::corrupt, 0,
                "a complete record whose CRC does not match its bytes (a changed byte)"};
    if (!decode_payload(payload, out))
        return {parsed::corrupt, 0, "a record with a valid CRC that does not decode"};
    return {parsed::record, header_size + len, {}};
}

[[noreturn]] void io_error(const std::filesystem::path& p, const char* what, int err) {
    raise(XAER_RMERR, "58030",
          fmt::format("tm log {}: {} failed: {}", p.string(), what, std::strerror(err)));
}

void fsync_dir(const std::filesystem::path& file) {
    auto dir = file.parent_path();
    if (dir.empty()) dir = ".";
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) io_error(dir, "open directory", errno);
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) io_error(dir, "fsync directory", err);
}

void write_fd(int fd, const std::filesystem::path& p, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            io_error(p, "write", errno);
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

std::string header_for(const std::string& id) {
    return std::string(header_prefix) + id + "\n";
}

std::string read_all(int fd, const std::filesystem::path& p) {
    std::string buf;
    char chunk[65536];
    for (;;) {
        const ssize_t n = ::pread(fd, chunk, sizeof chunk, static_cast<off_t>(buf.size()));
        if (n < 0) {
            if (errno == EINTR) continue;
            io_error(p, "read", errno);
        }
        if (n == 0) break;
        buf.append(chunk, static_cast<std::size_t>(n));
    }
    return buf;
}

/// Writes `bytes` to a new file beside `target` and renames it over target: the file
/// appears whole or not at all.
void replace_file(const std::filesystem::path& target, std::string_view bytes) {
    const auto tmp = std::filesystem::path(target.string() + ".new");
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) io_error(tmp, "open", errno);
    try {
        write_fd(fd, tmp, bytes);
        if (::fdatasync(fd) != 0) io_error(tmp, "fdatasync", errno);
    } catch (...) {
        ::close(fd);
        throw;
    }
    ::close(fd);
    if (::rename(tmp.c_str(), target.c_str()) != 0) io_error(target, "rename", errno);
    fsync_dir(target);
}

std::string host_name() {
    char h[256] = {};
    if (::gethostname(h, sizeof h - 1) != 0) return "?";
    return h;
}

/// Takes the exclusive lock on "<log>.lock" (kept open for the log's life; never
/// removed, so that two openers always lock the same inode) and records the holder.
int lock_log(const std::filesystem::path& log) {
    const auto lp = std::filesystem::path(log.string() + ".lock");
    const int fd = ::open(lp.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) io_error(lp, "open lock file", errno);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        std::string holder;
        try {
            holder = read_all(fd, lp);
        } catch (const error&) {
        }
        ::close(fd);
        while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0'))
            holder.pop_back();
        if (err != EWOULDBLOCK) io_error(lp, "flock", err);
        raise(XAER_RMERR, "55006",
              fmt::format("tm log {} is in use by {}: a log has exactly one owner. If that is "
                          "the running coordinator, it recovers its own transactions; stop it "
                          "before recovering by hand",
                          log.string(), holder.empty() ? "another process" : holder));
    }
    const std::string me = fmt::format("pid {} on host {}", ::getpid(), host_name());
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) < 0) {
        // The lock is what matters; the note only makes the refusal message better.
    }
    return fd;
}

}  // namespace

std::string encode_record(const log_record& r) {
    std::string payload;
    payload.push_back(static_cast<char>(r.type));
    put_str(payload, r.gtrid);
    put_u16(payload, r.branches.size());
    for (const auto& [name, bqual] : r.branches) {
        put_str(payload, name);
        put_str(payload, bqual);
    }
    std::string out;
    out.reserve(header_size + payload.size());
    put_u32(out, record_magic);
    put_u32(out, static_cast<std::uint32_t>(payload.size()));
    put_u32(out, crc32(payload));
    out += payload;
    return out;
}

log_store::~log_store() = default;

struct file_log::impl {
    impl(const std::filesystem::path& path, std::string coordinator_id, options o);
    ~impl();
    impl(const impl&) = delete;
    impl& operator=(const impl&) = delete;
    std::string describe() const;
    void force(const log_record& r);
    void append(const log_record& r);
    std::vector<log_record> live() const;
    std::vector<std::string> warnings() const;
    std::string fail_stop() const;
    statistics stats() const;
    void trim();
    void open_and_read();
    [[noreturn]] void missing_log() const;
    void write_all(std::string_view bytes);
    void note(const log_record& r);  // under m_mutex
    void append_locked(const log_record& r);
    void flush_pending(std::unique_lock<std::mutex>& lk, bool delay);
    void maybe_trim();
    void trim_locked();  // m_file_mutex held

    std::filesystem::path m_path;
    std::string m_id;
    options m_opts;
    int m_lock_fd = -1;  // flock held on "<log>.lock" while this object lives
    int m_fd = -1;
    mutable std::mutex m_mutex;  // pending batch, sequence numbers, live set, stats
    std::condition_variable m_cv;
    std::string m_pending;
    std::uint64_t m_appended = 0, m_durable = 0;
    bool m_flushing = false;
    std::string m_broken;  // a failed write or flush makes the log unusable (fail-stop)
    std::map<std::string, log_record> m_live;
    std::uint64_t m_records_in_file = 0, m_bytes_in_file = 0;
    statistics m_stats;
    std::vector<std::string> m_warnings;
    std::mutex m_file_mutex;  // the descriptor: writes, flushes, trims
};

file_log::file_log(const std::filesystem::path& path, std::string coordinator_id)
    : file_log(path, std::move(coordinator_id), options{}) {}

file_log::impl::impl(const std::filesystem::path& path, std::string coordinator_id, options o)
    : m_id(std::move(coordinator_id)), m_opts(o) {
    if (path.empty()) raise(XAER_INVAL, "22023", "tm log: no path given for the decision log");
    if (m_id.empty() || m_id.find_first_of(" \n\t") != std::string::npos)
        raise(XAER_INVAL, "22023", "tm log: the coordinator id must be a non-empty word");
    // Resolved once: a symlink's target is where every write, trim and rename goes.
    std::error_code ec;
    m_path = std::filesystem::weakly_canonical(std::filesystem::absolute(path), ec);
    if (ec) io_error(path, "resolve path", ec.value());
    const auto dir = m_path.parent_path();
    if (!std::filesystem::is_directory(dir, ec))
        raise(XAER_RMERR, "58030",
              fmt::format("tm log {}: directory {} does not exist", m_path.string(), dir.string()));
    // A missing log fails before anything is written beside it (no stray lock file at
    // a wrong path); whether it exists is checked again under the lock.
    if (!m_opts.create && !std::filesystem::exists(m_path, ec)) missing_log();
    m_lock_fd = lock_log(m_path);
    try {
        open_and_read();
    } catch (...) {
        if (m_fd >= 0) ::close(m_fd);
        ::close(m_lock_fd);
        throw;
    }
}

void file_log::impl::open_and_read() {
    if (!std::filesystem::exists(m_path)) {
        if (!m_opts.create) missing_log();
        replace_file(m_path, header_for(m_id));
    }
    m_fd = ::open(m_path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
    if (m_fd < 0) io_error(m_path, "open", errno);
    const std::string buf = read_all(m_fd, m_path);

    const auto eol = buf.find('\n');
    const std::string_view first =
        std::string_view(buf).substr(0, eol == std::string::npos ? buf.size() : eol);
    if (eol == std::string::npos || !first.starts_with("xarm tm log "))
        raise(XAER_RMERR, "XX001",
              fmt::format("tm log {}: not an xarm decision log (no header line; {} bytes)",
                          m_path.string(), buf.size()));
    if (!first.starts_with(header_prefix))
        raise(XAER_RMERR, "XX001",
              fmt::format("tm log {}: unsupported log format '{}' (this xarm reads v1)",
                          m_path.string(), first));
    const std::string_view owner = first.substr(header_prefix.size());
    if (owner != m_id)
        raise(XAER_RMERR, "55006",
              fmt::format("tm log {} belongs to coordinator '{}', not '{}': one log per "
                          "coordinator",
                          m_path.string(), owner, m_id));

    std::size_t off = eol + 1;
    m_bytes_in_file = off;
    while (off < buf.size()) {
        log_record r;
        const parse_result p = parse_at(buf, off, r);
        if (p.what == parsed::corrupt)
            raise(XAER_RMERR, "XX001",
                  fmt::format("tm log {}: damaged at byte {} of {}: {}. Nothing was changed "
                              "and nothing is recovered: a damaged log could hide commit "
                              "decisions. Restore the log or inspect it; if the damage is a "
                              "tail that was never acknowledged (a power loss during a write), "
                              "`truncate -s {} {}` removes it",
                              m_path.string(), off, buf.size(), p.why, off, m_path.string()));
        if (p.what == parsed::torn) {
            m_warnings.push_back(fmt::format(
                "tm log {}: incomplete last record at byte {} ({} bytes, the file ends inside "
                "it) cut off: a write interrupted by a crash, never acknowledged",
                m_path.string(), off, buf.size() - off));
            if (::ftruncate(m_fd, static_cast<off_t>(off)) != 0)
                io_error(m_path, "truncate", errno);
            if (::fdatasync(m_fd) != 0) io_error(m_path, "fdatasync", errno);
            break;
        }
        note(r);
        ++m_records_in_file;
        m_bytes_in_file += p.size;
        off += p.size;
    }
}

void file_log::impl::missing_log() const {
    raise(XAER_RMERR, "58030",
          fmt::format("tm log: no decision log at {} (coordinator '{}'). A missing log is never "
                      "taken for an empty one: check the path; only the coordinator's first "
                      "start creates its log (coordinator option create_log)",
                      m_path.string(), m_id));
}

std::string file_log::impl::fail_stop() const {
    std::lock_guard lk(m_mutex);
    return m_broken.empty() ? std::string()
                            : "tm log unusable after an earlier failure: " + m_broken;
}

std::string file_log::impl::describe() const {
    return "file " + m_path.string();
}

file_log::impl::~impl() {
    std::lock_guard f(m_file_mutex);
    std::lock_guard lk(m_mutex);
    if (!m_pending.empty() && m_broken.empty()) {
        try {
            write_fd(m_fd, m_path, m_pending);
            (void)::fdatasync(m_fd);
        } catch (const error&) {
        }
    }
    ::close(m_fd);
    ::close(m_lock_fd);
}

void file_log::impl::note(const log_record& r) {
    if (r.type == log_record::kind::commit)
        m_live[r.gtrid] = r;
    else
        m_live.erase(r.gtrid);
}

void file_log::impl::write_all(std::string_view bytes) {
    write_fd(m_fd, m_path, bytes);
}

// Writes and fdatasyncs everything pending, as the one flusher; lk (on m_mutex) is
// released during the I/O. delay: the test hook that widens the group-commit window.
void file_log::impl::flush_pending(std::unique_lock<std::mutex>& lk, bool delay) {
    m_flushing = true;
    std::string batch;
    batch.swap(m_pending);
    const std::uint64_t upto = m_appended;
    const auto records = upto - m_durable;
    lk.unlock();
    std::string err;
    {
        std::lock_guard f(m_file_mutex);
        try {
            write_all(batch);
            if (delay && m_opts.extra_sync_delay.count() > 0)
                std::this_thread::sleep_for(m_opts.extra_sync_delay);
            if (::fdatasync(m_fd) != 0) io_error(m_path, "fdatasync", errno);
        } catch (const std::exception& e) {
            err = e.what();
        }
    }
    lk.lock();
    m_flushing = false;
    if (err.empty()) {
        m_durable = std::max(m_durable, upto);
        ++m_stats.syncs;
        m_records_in_file += records;
        m_bytes_in_file += batch.size();
    } else {
        m_broken = err;
    }
    m_cv.notify_all();
}

void file_log::impl::force(const log_record& r) {
    const std::string bytes = encode_record(r);
    std::unique_lock lk(m_mutex);
    if (!m_broken.empty())
        raise(XAER_RMERR, "58030", "tm log unusable after an earlier failure: " + m_broken);
    note(r);
    m_pending += bytes;
    const std::uint64_t mine = ++m_appended;
    ++m_stats.forced_records;
    // Group commit: one leader flushes everything pending; the others wait for it.
    while (m_durable < mine) {
        if (!m_broken.empty())
            raise(XAER_RMERR, "58030",
                  "tm log write failed, the decision is not durable: " + m_broken);
        if (m_flushing) {
            m_cv.wait(lk);
            continue;
        }
        flush_pending(lk, true);
    }
}

void file_log::impl::append(const log_record& r) {
    append_locked(r);
    maybe_trim();
}

void file_log::impl::append_locked(const log_record& r) {
    {
        std::unique_lock lk(m_mutex);
        if (!m_broken.empty()) return;  // end records are optional
        if (r.type == log_record::kind::end && m_live.count(r.gtrid) == 0)
            return;  // nothing to close
        note(r);
        m_pending += encode_record(r);
        ++m_appended;
        // Written with the next forced batch, or now when enough is pending and nobody
        // is flushing.
        if (m_flushing || m_pending.size() < 4096) return;
        flush_pending(lk, false);
    }
}

void file_log::impl::maybe_trim() {
    {
        std::lock_guard lk(m_mutex);
        if (m_bytes_in_file < m_opts.trim_bytes || m_live.size() * 2 > m_records_in_file) return;
    }
    trim();
}

void file_log::impl::trim() {
    std::lock_guard f(m_file_mutex);
    trim_locked();
}

void file_log::impl::trim_locked() {
    std::unique_lock lk(m_mutex);
    if (!m_broken.empty()) return;
    // Everything noted is in m_live, pending records included: the new file holds them
    // all, durable, so waiters for pending records may go on.
    std::string bytes = header_for(m_id);
    for (const auto& [g, r] : m_live) bytes += encode_record(r);
    replace_file(m_path, bytes);
    const int nfd = ::open(m_path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
    if (nfd < 0) io_error(m_path, "reopen", errno);
    ::close(m_fd);
    m_fd = nfd;
    m_pending.clear();
    m_durable = m_appended;
    m_records_in_file = m_live.size();
    m_bytes_in_file = bytes.size();
    ++m_stats.trims;
    m_cv.notify_all();
}

std::vector<log_record> file_log::impl::live() const {
    std::lock_guard lk(m_mutex);
    std::vector<log_record> out;
    out.reserve(m_live.size());
    for (const auto& [g, r] : m_live) out.push_back(r);
    return out;
}

std::vector<std::string> file_log::impl::warnings() const {
    std::lock_guard lk(m_mutex);
    return m_warnings;
}

log_store::statistics file_log::impl::stats() const {
    std::lock_guard lk(m_mutex);
    return m_stats;
}

file_log::file_log(const std::filesystem::path& path, std::string coordinator_id, options o)
    : m(std::make_unique<impl>(path, std::move(coordinator_id), o)) {}
file_log::~file_log() = default;
const std::string& file_log::coordinator_id() const noexcept {
    return m->m_id;
}
std::string file_log::describe() const {
    return m->describe();
}
void file_log::force(const log_record& r) {
    m->force(r);
}
void file_log::append(const log_record& r) {
    m->append(r);
}
std::vector<log_record> file_log::live() const {
    return m->live();
}
std::vector<std::string> file_log::warnings() const {
    return m->warnings();
}
std::string file_log::fail_stop() const {
    return m->fail_stop();
}
log_store::statistics file_log::stats() const {
    return m->stats();
}
void file_log::trim() {
    m->trim();
}
const std::filesystem::path& file_log::path() const noexcept {
    return m->m_path;
}

}  // namespace xarm::tm
