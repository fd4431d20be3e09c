// Resources shipped with the transaction manager: xarm connections and atomic files.
#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "xarm/driver/codec.hpp"
#include "xarm/driver/protocol.hpp"
#include "xarm/driver/trace.hpp"
#include "xarm/tm.hpp"
#include "xarm/xa.h"

namespace xarm::tm {

resource::~resource() = default;

void resource::commit_with_marker(const xid&, const std::string&, const std::vector<std::string>&) {
    raise(XAER_RMERR, "0A000",
          fmt::format("resource '{}' cannot prepare and keeps no commit markers: it cannot be a "
                      "last resource beside others",
                      name()));
}
std::vector<std::string> resource::markers(const std::string&) {
    return {};
}
void resource::delete_markers(const std::vector<std::string>&) {}
bool resource::marker_committed(const std::string& marker) {
    const auto found = markers(marker);
    return std::find(found.begin(), found.end(), marker) != found.end();
}
void resource::write_marker(const xid&, const std::string&, const std::vector<std::string>&) {
    raise(XAER_RMERR, "0A000",
          fmt::format("resource '{}' keeps no commit markers: it cannot be a last agent", name()));
}

bool resource::defer_marker(const xid&, const std::string&, const std::vector<std::string>&) {
    return false;
}
bool resource::withdraw_marker(const xid&) {
    return false;
}

// ---------------------------------------------------------------------------------------
// connection_resource

namespace {
/// Deletes the named markers in the connection's current transaction. The names are
/// bound parameters, one placeholder each.
void delete_marker_rows(connection& c, const std::vector<std::string>& names) {
    std::string sql = "DELETE FROM xarm_tm_marker WHERE gtrid IN (";
    std::vector<value> args;
    args.reserve(names.size());
    for (const auto& n : names) {
        sql += args.empty() ? "?" : ",?";
        args.emplace_back(n);
    }
    c.execute(sql + ")", std::span<const value>(args));
}

// Plain CREATE TABLE, made only after marker_table_exists() said no: IF NOT EXISTS is not
// in every SQL (Virtuoso 7 has none), and a creator racing another one sees an error and
// looks again either way.
constexpr const char* create_marker_table_sql =
    "CREATE TABLE xarm_tm_marker (gtrid VARCHAR(160) NOT NULL PRIMARY KEY)";

/// The server says the table does not exist: PostgreSQL 42P01 (undefined_table), MariaDB
/// and MySQL 42S02 (ER_NO_SUCH_TABLE), and the same through their ODBC drivers.
bool undefined_table(const error& e) {
    const auto& s = e.diag().sqlstate;
    return s == "42P01" || s == "42S02";
}

void rollback_quietly(connection& c) noexcept {
    try {
        c.rollback();
    } catch (const std::exception&) {
    }
}
}  // namespace

connection_resource::connection_resource(std::string name, connection&& conn, mode m)
    : m_name(std::move(name)),
      m_owned(std::make_unique<connection>(std::move(conn))),
      m_conn(m_owned.get()) {
    init(m);
}

connection_resource::connection_resource(std::string name, connection& conn, mode m)
    : m_name(std::move(name)), m_conn(&conn) {
    init(m);
}

connection_resource::~connection_resource() = default;

void connection_resource::init(mode m) {
    m_two_phase = m == mode::automatic && m_conn->capabilities().has(capability::two_phase);
}

bool connection_resource::may_hold_markers() const {
    if (!m_two_phase) return true;
    const auto d = m_conn->drv().name();
    return d == "pq" || d == "mysql";
}

bool connection_resource::marker_table_exists() {
    if (m_conn->drv().name() == "sqlite") {
        // SQLite reports a missing table as a generic SQL error: ask its catalogue.
        const auto n = m_conn
                           ->query(
                               "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                               "AND name = 'xarm_tm_marker'")
                           .scalar<std::int64_t>();
        m_conn->rollback();
        return n > 0;
    }
    try {
        (void)m_conn->query("SELECT gtrid FROM xarm_tm_marker WHERE 1 = 0");
    } catch (const error& e) {
        rollback_quietly(*m_conn);
        if (undefined_table(e)) return false;
        throw;
    }
    m_conn->rollback();
    return true;
}

int connection_resource::last_agent_rank() {
    if (!m_two_phase) return 0;
    const auto d = m_conn->drv().name();
    // PostgreSQL first: it can queue its marker behind the branch's BEGIN (defer_marker),
    // and measured as the agent of a PostgreSQL + MariaDB transfer it was the faster one
    // even without that (README, the manager's benchmarks).
    const int rank = d == "pq" ? 2 : d == "mysql" ? 1 : 0;
    if (rank == 0 || m_agent == agent::unavailable) return 0;
    if (m_agent == agent::unknown) {
        // Not with work of the application's pending on the connection (tpc_begin
        // refuses it anyway): the check would end its transaction. Ask again next time.
        if (!m_conn->current().is_null() || m_conn->session().native().in_local_transaction())
            return 0;
        try {
            if (!marker_table_exists()) {
                try {
                    m_conn->execute(create_marker_table_sql);
                    m_conn->commit();
                } catch (const error&) {
                    // Another connection may have created it at the same moment;
                    // otherwise no privilege.
                    rollback_quietly(*m_conn);
                    if (!marker_table_exists()) throw;
                }
            }
            m_agent = agent::ready;
            m_marker_table = true;
        } catch (const error& e) {
            rollback_quietly(*m_conn);
            m_agent = agent::unavailable;
            if (trace_enabled())
                trace(
                    fmt::format("tm resource '{}': no commit-marker table xarm_tm_marker and "
                                "none can be created, so it is never a last agent: {}",
                                m_name, e.what()));
        }
    }
    return m_agent == agent::ready ? rank : 0;
}

void connection_resource::ensure_marker_table() {
    if (m_marker_table) return;
    try {
        if (!marker_table_exists()) {
            m_conn->execute(create_marker_table_sql);
            m_conn->commit();
        }
    } catch (const error& e) {
        rollback_quietly(*m_conn);
        // Another connection may have created it at the same moment.
        bool made_meanwhile = false;
        try {
            made_meanwhile = marker_table_exists();
        } catch (const error&) {
            rollback_quietly(*m_conn);
        }
        if (made_meanwhile) {
            m_marker_table = true;
            return;
        }
        diagnostic d = e.diag();
        d.message = fmt::format(
            "tm: cannot create the commit-marker table xarm_tm_marker on last resource '{}' "
            "(it needs CREATE TABLE, or create it by hand: gtrid VARCHAR(160) PRIMARY KEY): {}",
            m_name, d.message);
        raise(std::move(d));
    }
    m_marker_table = true;
}

void connection_resource::begin(const xid& x) {
    // The marker table is made before the branch: DDL inside it would commit it (MySQL).
    if (!m_two_phase) ensure_marker_table();
    m_conn->tpc_begin(x);
}

vote connection_resource::prepare(const xid&) {
    return m_conn->tpc_prepare();
}

void connection_resource::commit(const xid&, bool) {
    m_conn->tpc_commit();
}

void connection_resource::rollback(const xid& x) {
    if (m_conn->current() == x)
        m_conn->tpc_rollback();
    else
        m_conn->tpc_rollback(x);
}

std::vector<xid> connection_resource::recover() {
    if (!m_conn->capabilities().has(capability::recovery)) return {};
    auto found = m_conn->tpc_recover();
    // Listing may begin a local transaction (MariaDB with autocommit off); XA COMMIT
    // of a listed branch would then fail with XAER_OUTSIDE.
    m_conn->rollback();
    return found;
}

void connection_resource::commit_recovered(const xid& x) {
    m_conn->tpc_commit(x);
}
void connection_resource::rollback_recovered(const xid& x) {
    m_conn->tpc_rollback(x);
}

void connection_resource::write_marker(const xid&, const std::string& marker,
                                       const std::vector<std::string>& forget) {
    // In the branch's own transaction: the marker exists iff the work committed.
    if (!forget.empty()) delete_marker_rows(*m_conn, forget);
    m_conn->execute("INSERT INTO xarm_tm_marker (gtrid) VALUES (?)", marker);
}

bool connection_resource::defer_marker(const xid&, const std::string& marker,
                                       const std::vector<std::string>& forget) {
    if (m_agent != agent::ready) return false;
    if (forget.empty()) {
        const value args[] = {value(marker)};
        return m_conn->tpc_defer("INSERT INTO xarm_tm_marker (gtrid) VALUES (?)",
                                 std::span<const value>(args));
    }
    // One statement for both (a deferred statement is one statement): a data-modifying
    // WITH is PostgreSQL's, the only driver that defers (tpc_defer is false elsewhere).
    std::string sql = "WITH gone AS (DELETE FROM xarm_tm_marker WHERE gtrid IN (";
    std::vector<value> args;
    args.reserve(forget.size() + 1);
    for (const auto& n : forget) {
        sql += args.empty() ? "?" : ",?";
        args.emplace_back(n);
    }
    sql += ")) INSERT INTO xarm_tm_marker (gtrid) VALUES (?)";
    args.emplace_back(marker);
    return m_conn->tpc_defer(sql, std::span<const value>(args));
}

bool connection_resource::withdraw_marker(const xid&) {
    return m_conn->tpc_withdraw_deferred();
}

void connection_resource::commit_with_marker(const xid& x, const std::string& marker,
                                             const std::vector<std::string>& forget) {
    write_marker(x, marker, forget);
    m_conn->tpc_commit();
}

// Recovery's readings never create the table: a marker is only ever inserted into a
// table that exists and was committed before the branch began, and dropping it would
// wait for a marker still being committed; so a missing table means no marker, now or
// pending. Any other failure is thrown: the caller cannot tell and must not guess.
std::vector<std::string> connection_resource::markers(const std::string& prefix) {
    if (!may_hold_markers() || !marker_table_exists()) return {};
    std::vector<std::string> out;
    auto r = m_conn->query("SELECT gtrid FROM xarm_tm_marker");
    m_conn->commit();
    for (const auto& row : r)
        if (auto g = row.get<std::optional<std::string>>(0); g && g->starts_with(prefix))
            out.push_back(std::move(*g));
    return out;
}

bool connection_resource::marker_committed(const std::string& marker) {
    if (!may_hold_markers() || !marker_table_exists()) return false;
    try {
        m_conn->execute("INSERT INTO xarm_tm_marker (gtrid) VALUES (?)", marker);
    } catch (const error& e) {
        rollback_quietly(*m_conn);
        // Class 23, integrity constraint violation: the key exists, committed (a
        // rollback_error on drivers that map it to XA_RBINTEGRITY).
        if (e.diag().sqlstate.starts_with("23")) return true;
        throw;
    }
    m_conn->rollback();
    return false;
}

void connection_resource::delete_markers(const std::vector<std::string>& names) {
    if (names.empty()) return;
    delete_marker_rows(*m_conn, names);
    m_conn->commit();
}

// ---------------------------------------------------------------------------------------
// file_resource

namespace {
[[noreturn]] void file_error(const std::filesystem::path& p, const char* what, int err) {
    raise(XAER_RMERR, "58030",
          fmt::format("file resource {}: {} failed: {}", p.string(), what, std::strerror(err)));
}
void sync_dir(const std::filesystem::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) file_error(dir, "open directory", errno);
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) file_error(dir, "fsync directory", err);
}
void write_synced(const std::filesystem::path& p, const std::string& content) {
    const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) file_error(p, "open", errno);
    std::string_view rest = content;
    while (!rest.empty()) {
        const ssize_t n = ::write(fd, rest.data(), rest.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            ::close(fd);
            file_error(p, "write", err);
        }
        rest.remove_prefix(static_cast<std::size_t>(n));
    }
    if (::fsync(fd) != 0) {
        const int err = errno;
        ::close(fd);
        file_error(p, "fsync", err);
    }
    ::close(fd);
}
constexpr std::string_view prepared_suffix = ".prepared";
std::string branch_tag(const xid& x) {
    return fmt::format(".xarm.{:x}.{}.{}", x.format_id(), hex_encode(x.gtrid()),
                       hex_encode(x.bqual()));
}
/// "<target>.xarm.<fmt>.<gtrid>.<bqual>.prepared" -> (target, xid)
std::optional<std::pair<std::string, xid>> parse_prepared(const std::string& fname) {
    if (!fname.ends_with(prepared_suffix)) return std::nullopt;
    const std::string base = fname.substr(0, fname.size() - prepared_suffix.size());
    const auto p3 = base.rfind('.');
    if (p3 == std::string::npos) return std::nullopt;
    const auto p2 = base.rfind('.', p3 - 1);
    if (p2 == std::string::npos || p2 == 0) return std::nullopt;
    const auto p1 = base.rfind('.', p2 - 1);
    if (p1 == std::string::npos || p1 < 5 || base.compare(p1 - 5, 5, ".xarm") != 0)
        return std::nullopt;
    auto g = hex_decode(std::string_view(base).substr(p2 + 1, p3 - p2 - 1));
    auto b = hex_decode(std::string_view(base).substr(p3 + 1));
    if (!g || !b) return std::nullopt;
    try {
        const long fmt_id = std::stol(base.substr(p1 + 1, p2 - p1 - 1), nullptr, 16);
        return std::pair{base.substr(0, p1 - 5), xid(fmt_id, *g, *b)};
    } catch (const std::exception&) {
        return std::nullopt;
    }
}
}  // namespace

file_resource::file_resource(std::string name, std::filesystem::path dir)
    : m_name(std::move(name)), m_dir(std::move(dir)) {
    std::filesystem::create_directories(m_dir);
}

void file_resource::write(const std::string& filename, std::string content) {
    if (filename.empty() || filename.find('/') != std::string::npos ||
        filename.find(".xarm.") != std::string::npos)
        raise(XAER_INVAL, "22023",
              "file resource: write() takes a plain file name inside the directory");
    if (m_xid.is_null())
        raise(XAER_PROTO, "25000", "file resource: write() outside a transaction (enlist first)");
    m_staged[filename] = std::move(content);
}

void file_resource::begin(const xid& x) {
    if (!m_xid.is_null()) raise(XAER_PROTO, "25000", "file resource: already in a transaction");
    m_xid = x;
    m_staged.clear();
}

vote file_resource::prepare(const xid& x) {
    if (m_staged.empty()) {
        m_xid = {};
        return vote::read_only;
    }
    const std::string tag = branch_tag(x);
    for (const auto& [f, content] : m_staged)
        write_synced(m_dir / (f + tag + std::string(prepared_suffix)), content);
    sync_dir(m_dir);
    m_staged.clear();
    return vote::ok;
}

void file_resource::commit(const xid& x, bool one_phase) {
    if (one_phase) {
        const std::string tag = branch_tag(x);
        for (const auto& [f, content] : m_staged) {
            const auto tmp = m_dir / (f + tag + ".tmp");
            write_synced(tmp, content);
            if (::rename(tmp.c_str(), (m_dir / f).c_str()) != 0)
                file_error(m_dir / f, "rename", errno);
        }
        if (!m_staged.empty()) sync_dir(m_dir);
        m_staged.clear();
        m_xid = {};
        return;
    }
    commit_recovered(x);
    m_xid = {};
}

void file_resource::rollback(const xid& x) {
    m_staged.clear();
    if (m_xid == x) m_xid = {};
    rollback_recovered(x);
}

std::vector<std::filesystem::path> file_resource::prepared_files(const xid& x) const {
    std::vector<std::filesystem::path> out;
    for (const auto& e : std::filesystem::directory_iterator(m_dir)) {
        auto p = parse_prepared(e.path().filename().string());
        if (p && p->second == x) out.push_back(e.path());
    }
    return out;
}

std::vector<xid> file_resource::recover() {
    std::set<xid> found;
    for (const auto& e : std::filesystem::directory_iterator(m_dir))
        if (auto p = parse_prepared(e.path().filename().string())) found.insert(p->second);
    return {found.begin(), found.end()};
}

void file_resource::commit_recovered(const xid& x) {
    auto files = prepared_files(x);
    if (files.empty())
        raise(XAER_NOTA, "XAE04", "file resource: no prepared files for " + x.to_string());
    for (const auto& p : files) {
        const auto parsed = parse_prepared(p.filename().string());
        if (::rename(p.c_str(), (m_dir / parsed->first).c_str()) != 0)
            file_error(p, "rename", errno);
    }
    sync_dir(m_dir);
}

void file_resource::rollback_recovered(const xid& x) {
    auto files = prepared_files(x);
    for (const auto& p : files) std::filesystem::remove(p);
    if (!files.empty()) sync_dir(m_dir);
}

}  // namespace xarm::tm
