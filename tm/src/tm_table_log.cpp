// The transaction manager's decision log in a PostgreSQL table, with group commit
// (concurrent decisions go in one multi-row INSERT and one COMMIT), ownership by an
// advisory lock on the log's connection, and reconnection that takes the lock back.
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cctype>
#include <thread>

#include "xarm/driver/codec.hpp"
#include "xarm/driver/protocol.hpp"
#include "xarm/tm.hpp"
#include "xarm/xa.h"

namespace xarm::tm {

namespace {

using std::chrono::milliseconds;
using clock = std::chrono::steady_clock;

/// How often a standby asks for the lock: the delay of a takeover after the owner died.
constexpr milliseconds poll_interval{100};
/// A holder that died a moment ago may not have been noticed by the server yet (its
/// backend still ending): a non-waiting open retries for about this long before failing.
constexpr milliseconds holder_grace[] = {milliseconds(20), milliseconds(60), milliseconds(150)};

bool valid_id(const std::string& id) {
    return !id.empty() && id.size() <= 16 && std::all_of(id.begin(), id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
}

/// Everything that reaches SQL is hex or a validated id.
std::string encode_branches(const log_record& r) {
    std::string s;
    for (const auto& [name, bqual] : r.branches) {
        if (!s.empty()) s += ",";
        s += hex_encode(name) + ":" + hex_encode(bqual);
    }
    return s;
}

/// Deletes the records of the given gtrids (bound parameters: the id, then one per
/// gtrid, hex as stored).
void delete_records(connection& c, const std::string& id, const std::vector<std::string>& gtrids) {
    std::string sql = "DELETE FROM xarm_tm_log WHERE coordinator = ? AND gtrid IN (";
    std::vector<value> args{value(id)};
    for (const auto& g : gtrids) {
        sql += args.size() == 1 ? "?" : ",?";
        args.emplace_back(hex_encode(g));
    }
    c.execute(sql + ")", std::span<const value>(args));
}

std::string host_name() {
    char h[256] = {};
    if (::gethostname(h, sizeof h - 1) != 0) return "?";
    return h;
}

/// "xarm-tm:<id>@<host>:<pid>", within PostgreSQL's 63 characters (the host is cut) and
/// of characters that need no quoting.
std::string application_name_for(const std::string& id) {
    const std::string pid = std::to_string(::getpid());
    std::string host;
    for (char c : host_name())
        if (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') host += c;
    const std::size_t fixed = std::string("xarm-tm:@:").size() + id.size() + pid.size();
    if (fixed + host.size() > 63) host.resize(63 > fixed ? 63 - fixed : 0);
    return "xarm-tm:" + id + "@" + host + ":" + pid;
}

std::string cell(const result& r, std::size_t col) {
    if (r.rows.empty() || r.rows[0].size() <= col || !r.rows[0][col]) return {};
    return *r.rows[0][col];
}

std::string ms(milliseconds d) {
    return fmt::format("{} ms", d.count());
}

}  // namespace

struct table_log::impl {
    impl(std::string driver, std::string info, std::string coordinator_id, options o);
    ~impl();
    impl(const impl&) = delete;
    impl& operator=(const impl&) = delete;
    std::string describe() const;
    void force(const log_record& r);
    void append(const log_record& r);
    std::vector<log_record> live() const;
    std::string fail_stop() const;
    statistics stats() const;
    std::uint64_t reconnects() const;
    /// Who holds the lock (empty: nobody now).
    struct holder {
        std::string pid, application_name, client, since;
    };
    void open_session() const;                  // connect + session settings
    bool try_lock() const;                      // pg_try_advisory_lock, committed
    std::optional<holder> find_holder() const;  // pg_locks + pg_stat_activity
    std::string holder_text(const std::optional<holder>& h) const;
    void acquire();          // at construction: fail, or wait
    void reacquire() const;  // after a loss: reconnect, lock back
    /// Runs f on the live connection; on a lost connection reconnects with back-off,
    /// takes the lock back and runs f again (f must be idempotent). m_db_mutex held.
    void on_db(const std::function<void(connection&)>& f) const;
    void flush_ends();  // m_db_mutex held

    std::string m_id;
    std::string m_driver;
    std::string m_info;  // holds the password: never in a message
    options m_opts;
    std::string m_app_name;         // application_name of the log's connection
    std::string m_where;            // database, server: for messages
    std::int64_t m_key = 0;         // the advisory lock's key
    mutable std::mutex m_db_mutex;  // the connection and the fields below
    mutable std::optional<connection> m_conn;
    mutable std::string m_session_pid, m_session_start;  // identify our own (old) session
    // Set when the lock was lost for good (fail-stop); written under both mutexes, read
    // under either.
    mutable std::string m_disowned;
    struct batch {
        std::vector<log_record> records;
        bool done = false;
        std::optional<diagnostic> error;
    };
    mutable std::mutex m_mutex;  // batch state; taken after m_db_mutex when both
    std::condition_variable m_cv;
    std::shared_ptr<batch> m_open;
    std::vector<std::string> m_ends;  // gtrids whose rows go with the next write
    bool m_flushing = false;
    statistics m_stats;
    mutable std::uint64_t m_reconnects = 0;  // under m_mutex
};

table_log::table_log(std::string driver, std::string info, std::string coordinator_id)
    : table_log(std::move(driver), std::move(info), std::move(coordinator_id), options{}) {}

table_log::impl::impl(std::string driver, std::string info, std::string coordinator_id, options o)
    : m_id(std::move(coordinator_id)),
      m_driver(std::move(driver)),
      m_info(std::move(info)),
      m_opts(o) {
    // The id reaches SQL as the table's key: it must be exactly what the coordinator allows.
    if (!valid_id(m_id))
        raise(XAER_INVAL, "22023",
              "tm: the coordinator id must be 1-16 characters of [A-Za-z0-9_-]");
    if (m_opts.reconnect_attempts < 0 || m_opts.first_backoff.count() < 0 ||
        m_opts.max_backoff.count() < 0 || m_opts.lock_timeout.count() < 0)
        raise(XAER_INVAL, "22023",
              "tm: table_log options: attempts, back-offs and the lock timeout must not be "
              "negative");
    m_app_name = application_name_for(m_id);
    std::lock_guard db(m_db_mutex);
    open_session();
    {
        // The lock's key is derived by the server from a fixed namespace and the id (sent
        // hex-encoded, as data), so every client computes the same one.
        auto r = m_conn->query(
            "SELECT hashtextextended('xarm_tm_log:' || convert_from(decode(?, 'hex'), 'UTF8'), "
            "0)::text, current_database(), COALESCE(host(inet_server_addr()), 'a local socket'), "
            "COALESCE(':' || inet_server_port()::text, '')",
            hex_encode(m_id));
        m_conn->commit();
        const std::string key = cell(r, 0);
        try {
            std::size_t used = 0;
            m_key = std::stoll(key, &used);
            if (used != key.size()) throw std::invalid_argument(key);
        } catch (const std::exception&) {
            raise(XAER_RMERR, "XX000",
                  "tm: the server computed no advisory lock key: '" + key +
                      "' (is this PostgreSQL 11 or later?)");
        }
        m_where = fmt::format("table xarm_tm_log in database '{}' at {}{}", cell(r, 1), cell(r, 2),
                              cell(r, 3));
    }
    acquire();
    if (!m_opts.create) {
        // Never created silently: a missing table is a wrong database (or a lost log),
        // where an empty log would make recovery roll back decided transactions.
        // An integer, which every driver (pq, psqlODBC) gives back as the same text.
        auto r =
            m_conn->query("SELECT CASE WHEN to_regclass('xarm_tm_log') IS NULL THEN 0 ELSE 1 END");
        m_conn->commit();
        if (cell(r, 0) != "1")
            raise(XAER_RMERR, "42P01",
                  fmt::format("tm: no decision log: no {} (coordinator '{}'; searched with the "
                              "connection's search_path). A wrong database, or the log was lost: "
                              "find the real log; never create an empty one in its place. Only "
                              "the coordinator's first start creates it (create_log: "
                              "coordinator_options(config, true), table_log::options::create)",
                              m_where, m_id));
        return;
    }
    // After the lock: one owner creates. Two first starts with different ids can still
    // race on CREATE TABLE IF NOT EXISTS (a catalog unique violation): once more then.
    for (int attempt = 1;; ++attempt) {
        try {
            m_conn->execute(
                "CREATE TABLE IF NOT EXISTS xarm_tm_log (coordinator VARCHAR(16) NOT NULL, "
                "gtrid VARCHAR(200) NOT NULL, branches VARCHAR(4000) NOT NULL, "
                "PRIMARY KEY (coordinator, gtrid))");
            m_conn->commit();
            break;
        } catch (const error& e) {
            try {
                m_conn->rollback();
            } catch (const error&) {
            }
            if (attempt < 2 && (e.sqlstate() == "23505" || e.sqlstate() == "42P07")) continue;
            diagnostic d = e.diag();
            d.message = "tm: cannot create the log table xarm_tm_log: " + d.message;
            raise(std::move(d));
        }
    }
}

table_log::impl::~impl() {
    std::lock_guard db(m_db_mutex);
    if (!m_conn || !m_disowned.empty()) return;
    // Once, without reconnecting: end records are optional.
    try {
        if (!m_ends.empty()) {
            delete_records(*m_conn, m_id, m_ends);
            m_conn->commit();
        }
    } catch (const std::exception&) {
    }
    try {
        // Released now rather than when the server notices the closed connection: a
        // successor opening the log right after this one must find it free.
        m_conn->query("SELECT pg_advisory_unlock(?)", m_key);
        m_conn->commit();
    } catch (const std::exception&) {
    }
}

void table_log::impl::open_session() const {
    m_conn.reset();
    m_conn.emplace(xarm::connect(m_driver, m_info));
    // application_name names the owner for the refusal message of the next opener;
    // synchronous_commit 'off' (a database or role default) would acknowledge a COMMIT
    // before the decision is on disk. set_config(..., false) lasts for the session
    // once committed.
    auto r = m_conn->query(
        "SELECT pg_backend_pid()::text, (SELECT backend_start::text FROM pg_stat_activity "
        "WHERE pid = pg_backend_pid()), set_config('application_name', ?, false), "
        "set_config('synchronous_commit', CASE current_setting('synchronous_commit') "
        "WHEN 'off' THEN 'on' ELSE current_setting('synchronous_commit') END, false)",
        m_app_name);
    m_conn->commit();
    m_session_pid = cell(r, 0);
    m_session_start = cell(r, 1);
}

bool table_log::impl::try_lock() const {
    // A session-level lock: it survives the COMMIT (and a rollback) of the local
    // transaction the statement runs in, and goes with the session.
    auto r = m_conn->query("SELECT CASE WHEN pg_try_advisory_lock(?) THEN 1 ELSE 0 END", m_key);
    m_conn->commit();
    return cell(r, 0) == "1";
}

std::optional<table_log::impl::holder> table_log::impl::find_holder() const {
    // A bigint key shows as classid = high half, objid = low half, objsubid = 1.
    const auto k = static_cast<std::uint64_t>(m_key);
    auto r = m_conn->query(fmt::format(
        "SELECT l.pid::text, COALESCE(a.application_name, ''), "
        "CASE WHEN a.client_port = -1 THEN 'a local socket' ELSE COALESCE(host(a.client_addr), "
        "'(not visible to this role)') END, COALESCE(a.backend_start::text, '') "
        "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid::bigint = {} AND l.objid::bigint = {}",
        k >> 32, k & 0xffffffffu));  // numbers this process computed, not data
    m_conn->commit();
    if (r.rows.empty()) return std::nullopt;
    return holder{cell(r, 0), cell(r, 1), cell(r, 2), cell(r, 3)};
}

std::string table_log::impl::holder_text(const std::optional<holder>& h) const {
    if (!h) return "another session (gone a moment later)";
    return fmt::format(
        "the PostgreSQL session of backend pid {} (application_name '{}', client {}, "
        "connected since {})",
        h->pid, h->application_name.empty() ? "?" : h->application_name, h->client,
        h->since.empty() ? "?" : h->since);
}

void table_log::impl::acquire() {
    const auto start = clock::now();
    std::size_t grace = 0;
    int losses = 0;
    auto backoff = m_opts.first_backoff;
    for (;;) {
        try {
            if (!m_conn) open_session();
            if (try_lock()) return;
            losses = 0;
            backoff = m_opts.first_backoff;
        } catch (const error& e) {
            // A standby waits long: a server restart meanwhile (the connection lost, or
            // refused while the server starts) is reconnected.
            const bool lost = dynamic_cast<const operational_error*>(&e) != nullptr || !m_conn;
            m_conn.reset();
            if (!lost || !m_opts.wait_for_lock || ++losses > m_opts.reconnect_attempts) throw;
            std::this_thread::sleep_for(backoff);
            backoff = std::min(backoff * 2, m_opts.max_backoff);
            continue;
        }
        const auto waited = std::chrono::duration_cast<milliseconds>(clock::now() - start);
        if (!m_opts.wait_for_lock) {
            if (grace < std::size(holder_grace)) {
                std::this_thread::sleep_for(holder_grace[grace++]);
                continue;
            }
            raise(XAER_RMERR, "55006",
                  fmt::format("tm: the decision log of coordinator '{}' ({}) is owned by another "
                              "process: {} holds its advisory lock. One process runs a "
                              "coordinator, and that one recovers its own transactions; to "
                              "stand by and take over when it ends, open the log with "
                              "wait_for_lock",
                              m_id, m_where, holder_text(find_holder())));
        }
        if (m_opts.lock_timeout.count() > 0 && waited >= m_opts.lock_timeout)
            raise(XAER_RMERR, "55P03",
                  fmt::format("tm: gave up after {} (lock_timeout {}) waiting to take over the "
                              "decision log of coordinator '{}' ({}): {} still holds its "
                              "advisory lock",
                              ms(waited), ms(m_opts.lock_timeout), m_id, m_where,
                              holder_text(find_holder())));
        auto nap = poll_interval;
        if (m_opts.lock_timeout.count() > 0) nap = std::min(nap, m_opts.lock_timeout - waited);
        std::this_thread::sleep_for(nap);
    }
}

void table_log::impl::reacquire() const {
    const std::string old_pid = m_session_pid, old_start = m_session_start;
    try {
        open_session();
    } catch (const operational_error&) {
        throw;
    } catch (const error& e) {
        // Connection refused or a server starting up: worth another attempt.
        m_conn.reset();
        diagnostic d = e.diag();
        d.xa_code = XAER_RMFAIL;
        raise(std::move(d));
    }
    for (int i = 0;; ++i) {
        if (try_lock()) {
            std::lock_guard lk(m_mutex);
            ++m_reconnects;
            return;
        }
        const auto h = find_holder();
        const bool ours = h && !old_pid.empty() && h->pid == old_pid && h->since == old_start;
        if (ours || !h) {
            if (i < 5) {
                // Our own previous session, not yet ended (a cut network leaves it waiting
                // for a timeout): it can never write again; end it and take the lock back.
                // No holder: released in between; try again.
                if (ours) {
                    m_conn->query("SELECT pg_terminate_backend(CAST(? AS integer))", h->pid);
                    m_conn->commit();
                }
                std::this_thread::sleep_for(milliseconds(20) * (1 << i));
                continue;
            }
            // Nobody else owns the log: not a takeover, only not yet; on_db backs off.
            m_conn.reset();
            raise(XAER_RMFAIL, "55P03",
                  fmt::format("tm: the advisory lock of coordinator '{}' could not be taken back "
                              "yet: {}",
                              m_id,
                              ours ? "this process's previous session (backend pid " + h->pid +
                                         ") still holds it and did not end"
                                   : "pg_try_advisory_lock failed with no holder in pg_locks"));
        }
        std::string why = fmt::format(
            "tm: coordinator '{}' lost ownership of its decision log ({}): the connection to "
            "it was lost, and when it came back {} held its advisory lock. This process can no "
            "longer decide transactions (fail-stop): the process that owns the log now "
            "recovers them; stop this one",
            m_id, m_where, holder_text(h));
        {
            std::lock_guard lk(m_mutex);
            m_disowned = why;
        }
        m_conn.reset();
        raise(XAER_RMERR, "55006", std::move(why));
    }
}

void table_log::impl::on_db(const std::function<void(connection&)>& f) const {
    auto backoff = m_opts.first_backoff;
    std::string last;
    for (int reconnects = 0;; ++reconnects) {
        if (!m_disowned.empty()) raise(XAER_RMERR, "55006", m_disowned);
        try {
            if (!m_conn) reacquire();
            f(*m_conn);
            return;
        } catch (const operational_error& e) {
            last = e.what();
        } catch (const error&) {
            if (m_conn) {
                try {
                    m_conn->rollback();
                } catch (const error&) {
                    m_conn.reset();
                }
            }
            throw;
        }
        m_conn.reset();
        if (reconnects >= m_opts.reconnect_attempts)
            raise(XAER_RMFAIL, "08006",
                  fmt::format("tm: the connection to the decision log ({}) was lost and {} "
                              "reconnection attempts failed: {}",
                              m_where, reconnects, last));
        // The first attempt at once (a killed session, the server still up); then back off.
        if (reconnects > 0) {
            std::this_thread::sleep_for(backoff);
            backoff = std::min(backoff * 2, m_opts.max_backoff);
        }
    }
}

void table_log::impl::flush_ends() {
    std::vector<std::string> ends;
    {
        std::lock_guard lk(m_mutex);
        ends = m_ends;
    }
    if (ends.empty()) return;
    on_db([&](connection& c) {
        delete_records(c, m_id, ends);
        c.commit();
    });
    std::lock_guard lk(m_mutex);
    m_ends.erase(m_ends.begin(), m_ends.begin() + static_cast<std::ptrdiff_t>(ends.size()));
}

void table_log::impl::force(const log_record& r) {
    std::unique_lock lk(m_mutex);
    if (!m_open) m_open = std::make_shared<batch>();
    auto mine = m_open;
    mine->records.push_back(r);
    ++m_stats.forced_records;
    while (!mine->done) {
        if (m_flushing) {
            m_cv.wait(lk);
            continue;
        }
        // Lead: write the open batch (ours, or a later one if ours is already out).
        m_flushing = true;
        auto b = m_open;
        m_open = std::make_shared<batch>();
        lk.unlock();
        std::optional<diagnostic> err;
        {
            std::lock_guard db(m_db_mutex);
            // End records ride along; they leave m_ends only once deleted, so that live()
            // (which reads m_ends under m_db_mutex) never sees a row it should not.
            std::vector<std::string> ends;
            {
                std::lock_guard again(m_mutex);
                ends = m_ends;
            }
            std::string insert = "INSERT INTO xarm_tm_log (coordinator, gtrid, branches) VALUES ";
            std::vector<value> args;
            for (const auto& rec : b->records) {
                insert += args.empty() ? "(?,?,?)" : ",(?,?,?)";
                args.emplace_back(m_id);
                args.emplace_back(hex_encode(rec.gtrid));
                args.emplace_back(encode_branches(rec));
            }
            // Idempotent: after a COMMIT cut off by a lost connection the rows may or may
            // not be there; the retry stores them once either way, and only a COMMIT that
            // answered makes the batch durable.
            insert += " ON CONFLICT (coordinator, gtrid) DO NOTHING";
            try {
                on_db([&](connection& c) {
                    if (!ends.empty()) delete_records(c, m_id, ends);
                    c.execute(insert, std::span<const value>(args));
                    c.commit();
                });
                std::lock_guard again(m_mutex);
                m_ends.erase(m_ends.begin(),
                             m_ends.begin() + static_cast<std::ptrdiff_t>(ends.size()));
            } catch (const error& e) {
                err = e.diag();
            } catch (const std::exception& e) {
                err = diagnostic{XAER_RMFAIL, "08006", 0, {}, e.what()};
            }
        }
        lk.lock();
        b->done = true;
        b->error = err;
        if (!err) ++m_stats.syncs;
        m_flushing = false;
        m_cv.notify_all();
    }
    if (mine->error) {
        diagnostic d = *mine->error;
        if (d.xa_code != XAER_RMERR || d.sqlstate != "55006") {
            d.xa_code = XAER_RMFAIL;
            if (d.sqlstate.empty()) d.sqlstate = "08006";
        }
        d.message = "tm: the decision could not be stored in xarm_tm_log: " + d.message;
        raise(std::move(d));
    }
}

void table_log::impl::append(const log_record& r) {
    if (r.type != log_record::kind::end) return force(r);
    {
        std::lock_guard lk(m_mutex);
        m_ends.push_back(r.gtrid);
        if (m_flushing || m_ends.size() < 32) return;
        m_flushing = true;
    }
    {
        std::lock_guard db(m_db_mutex);
        try {
            flush_ends();
        } catch (const std::exception&) {
            // End records are optional; they stay for the next write.
        }
    }
    {
        std::lock_guard lk(m_mutex);
        m_flushing = false;
    }
    m_cv.notify_all();
}

std::vector<log_record> table_log::impl::live() const {
    std::lock_guard db(m_db_mutex);
    std::set<std::string> ended;
    {
        std::lock_guard lk(m_mutex);
        ended.insert(m_ends.begin(), m_ends.end());
    }
    result res;
    on_db([&](connection& c) {
        res = c.query("SELECT gtrid, branches FROM xarm_tm_log WHERE coordinator = ?", m_id);
        c.commit();
    });
    std::vector<log_record> out;
    for (auto& row : res.rows) {
        if (row.size() < 2 || !row[0] || !row[1]) continue;
        auto g = hex_decode(*row[0]);
        if (!g) raise(XAER_RMERR, "XX001", "tm: xarm_tm_log holds a malformed gtrid: " + *row[0]);
        if (ended.count(*g)) continue;
        log_record r{log_record::kind::commit, *g, {}};
        std::string_view rest = *row[1];
        while (!rest.empty()) {
            const auto comma = rest.find(',');
            const std::string_view item = rest.substr(0, comma);
            const auto colon = item.find(':');
            auto name = hex_decode(item.substr(0, colon));
            auto bq =
                colon == std::string_view::npos ? std::nullopt : hex_decode(item.substr(colon + 1));
            if (!name || !bq)
                raise(XAER_RMERR, "XX001", "tm: xarm_tm_log holds a malformed branch list");
            r.branches.emplace_back(*name, *bq);
            rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        }
        out.push_back(std::move(r));
    }
    return out;
}

std::string table_log::impl::describe() const {
    return fmt::format("{} (coordinator '{}', driver {})", m_where, m_id, m_driver);
}

std::string table_log::impl::fail_stop() const {
    std::lock_guard lk(m_mutex);  // not m_db_mutex: never behind a reconnection
    return m_disowned;
}

log_store::statistics table_log::impl::stats() const {
    std::lock_guard lk(m_mutex);
    return m_stats;
}

std::uint64_t table_log::impl::reconnects() const {
    std::lock_guard lk(m_mutex);
    return m_reconnects;
}

table_log::table_log(std::string driver, std::string info, std::string coordinator_id, options o)
    : m(std::make_unique<impl>(std::move(driver), std::move(info), std::move(coordinator_id), o)) {}
table_log::~table_log() = default;
const std::string& table_log::coordinator_id() const noexcept {
    return m->m_id;
}
std::string table_log::describe() const {
    return m->describe();
}
void table_log::force(const log_record& r) {
    m->force(r);
}
void table_log::append(const log_record& r) {
    m->append(r);
}
std::vector<log_record> table_log::live() const {
    return m->live();
}
std::string table_log::fail_stop() const {
    return m->fail_stop();
}
log_store::statistics table_log::stats() const {
    return m->stats();
}
std::uint64_t table_log::reconnects() const {
    return m->reconnects();
}

}  // namespace xarm::tm
