// MySQL/MariaDB primitives over Connector/C++ 1.1, and the bridging of the server's
// connection affinity for prepared branches (see mysql.hpp).
#include <cppconn/resultset.h>
#include <cppconn/resultset_metadata.h>
#include <fmt/format.h>
#include <mysql_driver.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <thread>
#include <utility>

#include "mysql.hpp"
#include "registry.hpp"
#include "xarm/driver/scope.hpp"
#include "xarm/xa.h"

namespace xarm::mysql {

capability_set declared_capabilities(dialect d, bool read_only_vote, bool multi_statements) {
    capability_set c;
    c.yes(capability::two_phase,
          "XA END + XA PREPARE in one round trip; a prepared branch survives a server restart")
        .yes(capability::one_phase, "XA COMMIT ... ONE PHASE")
        .yes(capability::recovery,
             "XA RECOVER FORMAT='SQL' (MariaDB) or CONVERT XID (MySQL), byte-exact; a branch "
             "still attached to a live connection of another process is listed but can be "
             "finished only after that connection ends (xa_commit answers XA_RETRY)")
        .no(capability::migrate,
            "MariaDB 10.11 answers XA END ... SUSPEND FOR MIGRATE with ER_XAER_INVAL (1398)")
        .no(capability::async, "Connector/C++ 1.1 has no asynchronous calls")
        .no(capability::interleave, "a MySQL/MariaDB connection holds one XA transaction at a time")
        .no(capability::timeout,
            "MySQL has no setting that ends an idle transaction (MariaDB's "
            "idle_transaction_timeout)");
    if (d == dialect::mariadb)
        c.yes(capability::timeout,
              "SET SESSION idle_transaction_timeout after XA START: MariaDB ends the session "
              "(rolling the branch back) once it has been idle that long; reset to 0 before the "
              "verb that ends the branch, since the setting would also end a session holding "
              "a prepared branch");
    if (multi_statements)
        c.yes(capability::join,
              "TMJOIN of an ended branch on the same connection: xa_end defers XA END to the "
              "next verb, so the branch is still active and goes on (MariaDB 10.11 itself "
              "answers XA START ... JOIN with ER_XAER_INVAL, 1398)")
            .yes(capability::suspend_resume,
                 "on the same connection, with no other branch in between: TMSUSPEND defers "
                 "XA END like TMSUCCESS and TMRESUME goes on (MariaDB 10.11 itself answers "
                 "XA END ... SUSPEND with 1398)");
    else
        c.no(capability::join,
             "multi_statements=off: XA END is sent at xa_end, and MariaDB 10.11 answers "
             "XA START ... JOIN with ER_XAER_INVAL (1398)")
            .no(capability::suspend_resume,
                "multi_statements=off: XA END is sent at xa_end, and MariaDB 10.11 answers "
                "XA END ... SUSPEND with ER_XAER_INVAL (1398)");
    if (d == dialect::mysql)
        c.no(capability::read_only_vote,
             "MySQL's XA PREPARE gives no read-only answer, and the session counters xarm "
             "reads on MariaDB (information_schema.SESSION_STATUS) are not there");
    else if (read_only_vote)
        c.yes(capability::read_only_vote,
              "read_only_vote=on: a branch whose session write counters (rows written, updated "
              "or deleted; DELETE and UPDATE statements) did not move since XA START is rolled "
              "back at prepare and votes XA_RDONLY; a branch prepared having written nothing "
              "would be discarded by MariaDB when its connection ends, and XA COMMIT would "
              "then answer XA_HEURRB. Cost: each counter reading takes about 1 ms of server "
              "time (one with XA START, one at prepare unless a statement run through xarm "
              "reported changed rows)");
    else
        c.no(capability::read_only_vote,
             "off by default (read_only_vote=off): a branch that wrote nothing votes XA_OK "
             "and is committed on the connection that prepared it, from any thread of this "
             "process; MariaDB discards such a branch once that connection ends (xa_close, "
             "more than max_parked prepared branches, a crash), and XA COMMIT from elsewhere "
             "(another process, recovery) then answers XA_HEURRB. Open with "
             "read_only_vote=on to vote XA_RDONLY instead, at the cost of reading the "
             "session write counters (information_schema.SESSION_STATUS, about 1 ms of "
             "server time per reading, up to two per branch)");
    return c;
}

std::string options::server_key() const {
    return socket.empty() ? fmt::format("{}:{}", host, port) : "unix:" + socket;
}

namespace {

// Prepared branches attached to live connections of this process (registry.hpp).
class registry : public attached_registry<link> {
  public:
    static registry& instance() {
        // Leaked on purpose: sessions may still close during static destruction.
        static registry* r = new registry;
        return *r;
    }
};

// The process-wide count of parked connections per server (options::max_parked), with
// the sessions waiting for one to be freed.
class park_budget {
  public:
    static park_budget& instance() {
        // Leaked on purpose, like the registry: tickets may die during static destruction.
        static park_budget* b = new park_budget;
        return *b;
    }
    /// Takes a place within limit, waiting up to wait for one; false when none came.
    bool take(const std::string& server, int limit, std::chrono::milliseconds wait) {
        std::unique_lock lk(m_mu);
        auto& e = m_servers[server];
        ++e.waiting;
        const bool ok = m_cv.wait_for(lk, wait, [&] { return e.used < limit; });
        --e.waiting;
        if (ok) ++e.used;
        return ok;
    }
    void give_back(const std::string& server) {
        {
            std::lock_guard g(m_mu);
            --m_servers[server].used;
        }
        m_cv.notify_all();
    }
    /// A session waits for a place: a finisher then closes the parked connection it
    /// freed instead of keeping it for its owner's reuse.
    bool wanted(const std::string& server) {
        std::lock_guard g(m_mu);
        auto it = m_servers.find(server);
        return it != m_servers.end() && it->second.waiting > 0;
    }
    long used(const std::string& server) {
        std::lock_guard g(m_mu);
        return m_servers[server].used;
    }
    long total() {
        std::lock_guard g(m_mu);
        long n = 0;
        for (const auto& [k, e] : m_servers) n += e.used;
        return n;
    }

  private:
    struct entry {
        long used = 0;
        int waiting = 0;
    };
    std::mutex m_mu;
    std::condition_variable m_cv;
    std::map<std::string, entry> m_servers;
};

sql::mysql::MySQL_Driver& native_driver() {
    // get_mysql_driver_instance() is not safe to race on first use.
    static sql::mysql::MySQL_Driver* d = sql::mysql::get_mysql_driver_instance();
    return *d;
}

[[noreturn]] void raise_gone() {
    raise(XAER_RMFAIL, "08003",
          "the connection to the server was lost earlier; close and open the resource manager "
          "again");
}

// Runs one statement on l (l.mu held), discarding any result. A broken connection is
// remembered on the link.
void run(link& l, const std::string& sql) {
    if (!l.conn || l.lost) raise_gone();
    try {
        if (l.stmt->execute(sql)) std::unique_ptr<sql::ResultSet> rs(l.stmt->getResultSet());
    } catch (const sql::SQLException& e) {
        if (is_connection_lost(errnum_of(e))) l.lost = true;
        throw;
    }
}

// Runs a then b, in one round trip on a multi-statement connection. step tells which
// one failed when this throws.
void run_pair(link& l, bool multi, const std::string& a, const std::string& b, int& step) {
    step = 0;
    if (!multi) {
        run(l, a);
        step = 1;
        run(l, b);
        return;
    }
    if (!l.conn || l.lost) raise_gone();
    try {
        if (l.stmt->execute(a + ";" + b))
            std::unique_ptr<sql::ResultSet> rs(l.stmt->getResultSet());
        step = 1;
        // The second statement's error surfaces when its result is read.
        if (l.stmt->getMoreResults()) std::unique_ptr<sql::ResultSet> rs(l.stmt->getResultSet());
    } catch (const sql::SQLException& e) {
        if (is_connection_lost(errnum_of(e))) l.lost = true;
        throw;
    }
}

// MariaDB: the session's write counter (write_counter_sql) on l (l.mu held); nullopt
// when it cannot be read (then the branch counts as written).
std::optional<unsigned long long> read_write_counter(link& l) {
    if (!l.conn || l.lost) return std::nullopt;
    try {
        std::unique_ptr<sql::ResultSet> rs(l.stmt->executeQuery(write_counter_sql));
        if (rs->next()) return parse_write_counter(rs->getString(1).asStdString());
    } catch (const sql::SQLException& e) {
        if (is_connection_lost(errnum_of(e))) l.lost = true;
    }
    return std::nullopt;
}

// XA START, then the write counter, in one round trip on a multi-statement connection.
// Throws only for XA START (or a lost connection).
std::optional<unsigned long long> start_counting(link& l, bool multi, const std::string& start) {
    if (!multi) {
        run(l, start);
        return read_write_counter(l);
    }
    if (!l.conn || l.lost) raise_gone();
    try {
        l.stmt->execute(start + ";" + write_counter_sql);
    } catch (const sql::SQLException& e) {
        if (is_connection_lost(errnum_of(e))) l.lost = true;
        throw;
    }
    try {
        if (l.stmt->getMoreResults()) {
            std::unique_ptr<sql::ResultSet> rs(l.stmt->getResultSet());
            if (rs->next()) return parse_write_counter(rs->getString(1).asStdString());
        }
    } catch (const sql::SQLException& e) {
        if (is_connection_lost(errnum_of(e))) {
            l.lost = true;
            throw;
        }
    }
    return std::nullopt;
}

std::vector<xid> recover_on(link& l, dialect d) {
    if (!l.conn || l.lost) raise_gone();
    std::vector<xid> out;
    try {
        std::unique_ptr<sql::ResultSet> rs(l.stmt->executeQuery(xa_recover_sql(d)));
        while (rs->next()) {
            const std::string data = rs->getString(4).asStdString();
            auto x = parse_recover_row(d, static_cast<long>(rs->getInt64(1)),
                                       static_cast<long>(rs->getInt64(2)),
                                       static_cast<long>(rs->getInt64(3)), data);
            out.push_back(x ? *x : xid::unparsed(data));
        }
    } catch (const sql::SQLException& e) {
        if (is_connection_lost(errnum_of(e))) l.lost = true;
        raise_sql(e, XAER_RMERR, "XA RECOVER");
    }
    return out;
}

}  // namespace

park_ticket::~park_ticket() {
    park_budget::instance().give_back(server);
}

long parked_connections() noexcept {
    return park_budget::instance().total();
}

long registry_entries() noexcept {
    return static_cast<long>(registry::instance().size());
}

std::shared_ptr<link> connect(const options& o) {
    sql::ConnectOptionsMap m;
    if (!o.socket.empty()) {
        m["hostName"] = sql::SQLString("localhost");
        m["socket"] = sql::SQLString(o.socket);
    } else {
        m["hostName"] = sql::SQLString(o.host);
        m["port"] = o.port;
    }
    m["userName"] = sql::SQLString(o.user);
    m["password"] = sql::SQLString(o.password);
    if (!o.database.empty()) m["schema"] = sql::SQLString(o.database);
    m["OPT_CONNECT_TIMEOUT"] = o.connect_timeout;
    m["OPT_RECONNECT"] = false;  // a silent reconnect would drop the branch under our feet
    if (o.multi_statements) m["CLIENT_MULTI_STATEMENTS"] = true;
    auto l = std::make_shared<link>();
    try {
        l->conn.reset(native_driver().connect(m));
        l->conn->setAutoCommit(false);  // PEP 249: the first statement begins a transaction
        l->stmt.reset(l->conn->createStatement());
        // Known before the connection may be closed or lost holding a branch: a finisher
        // elsewhere waits until the server has torn this session down (wait_session_gone).
        std::unique_ptr<sql::ResultSet> rs(l->stmt->executeQuery("SELECT CONNECTION_ID()"));
        if (rs->next()) l->session_id = static_cast<long>(rs->getInt64(1));
    } catch (const sql::SQLException& e) {
        raise_sql(e, XAER_RMERR,
                  fmt::format("cannot connect to the MySQL server at {} as user '{}'",
                              o.server_key(), o.user),
                  true);
    }
    return l;
}

session::session(options opt, dialect d, std::shared_ptr<link> first, long max_connections)
    : m_opt(std::move(opt)),
      m_dialect(d),
      m_server(m_opt.server_key()),
      m_max_connections(max_connections),
      m_link(std::move(first)) {}

session::~session() {
    // Closing a connection makes the server detach its prepared branch: from then on
    // any connection can finish it.
    auto& reg = registry::instance();
    auto drop = [&](const std::shared_ptr<link>& l) {
        std::lock_guard g(l->mu);
        if (l->prepared) reg.detached(m_server, *l->prepared, l->session_id);
    };
    drop(m_link);
    for (const auto& p : m_parked) drop(p);
}

capability_set session::capabilities() const {
    return declared_capabilities(m_dialect, m_opt.read_only_vote, m_opt.multi_statements);
}

int session::parked_limit() const noexcept {
    // Half the server's connections at most: the sessions themselves and other clients
    // need the rest.
    if (m_max_connections > 0)
        return static_cast<int>(std::min<long>(m_opt.max_parked, m_max_connections / 2));
    return m_opt.max_parked;
}

void session::ensure_free_link() {
    {
        std::lock_guard g(m_link->mu);
        if (!m_link->prepared) return;
    }
    if (reuse_parked_link()) return;
    const int limit = parked_limit();
    if (limit == 0) {  // nothing may be parked: detach this one's branch
        auto fresh = connect(m_opt);
        close_detaching(*m_link);
        m_link = std::move(fresh);
        return;
    }
    switch (reserve_park_place(limit)) {
        case park_place::freed:  // another thread finished m_link's branch meanwhile
            return;
        case park_place::none:
            raise(XAER_RMERR, "08004",
                  fmt::format(
                      "XA START: this connection still holds a prepared branch and another is "
                      "needed, but this process already keeps {} connections to {} set aside "
                      "holding prepared branches, its bound of {} (max_parked={}{}); none was "
                      "freed within park_wait_ms={}. Finish prepared branches sooner (xa_commit "
                      "or xa_rollback), or raise max_parked in the open string (and the "
                      "server's max_connections)",
                      park_budget::instance().used(m_server), m_server, limit, m_opt.max_parked,
                      m_max_connections > 0
                          ? fmt::format(", at most half the server's max_connections={}",
                                        m_max_connections)
                          : std::string(),
                      m_opt.park_wait_ms));
        case park_place::taken:
            break;
    }
    auto ticket = std::make_unique<park_ticket>(m_server);  // gives the place back on failure
    auto fresh = connect(m_opt);
    {
        std::lock_guard g(m_link->mu);
        m_link->ticket = std::move(ticket);
    }
    m_parked.push_back(std::move(m_link));
    m_link = std::move(fresh);
}

void session::close_detaching(link& l) {
    // Closing a connection detaches its branch on the server: any connection can finish
    // it then.
    std::lock_guard g(l.mu);
    if (l.prepared) registry::instance().detached(m_server, *l.prepared, l.session_id);
    l.prepared.reset();
    l.close();
}

bool session::reuse_parked_link() {
    // An own parked connection whose branch was finished since (by any thread) is
    // reused; its place in the bound passes to the connection parked instead.
    std::erase_if(m_parked, [](const std::shared_ptr<link>& p) {
        std::lock_guard g(p->mu);
        return !p->conn || p->lost;
    });
    for (auto& p : m_parked) {
        std::scoped_lock g(p->mu, m_link->mu);
        if (!p->prepared && p->conn && !p->lost) {
            std::swap(p->ticket, m_link->ticket);
            std::swap(p, m_link);
            return true;
        }
    }
    return false;
}

session::park_place session::reserve_park_place(int limit) {
    auto& budget = park_budget::instance();
    const auto started = std::chrono::steady_clock::now();
    // Waits in slices until `until` for a place. Meanwhile another thread may finish
    // the branch this connection holds, and then it needs no other (freed).
    auto wait_until = [&](std::chrono::steady_clock::time_point until) {
        for (;;) {
            const auto left = until - std::chrono::steady_clock::now();
            if (left <= left.zero()) return park_place::none;
            // Rounded up: the whole wait is waited, never a millisecond less.
            if (budget.take(m_server, limit,
                            std::min(std::chrono::ceil<std::chrono::milliseconds>(left),
                                     std::chrono::milliseconds(20))))
                return park_place::taken;
            std::lock_guard g(m_link->mu);
            if (!m_link->prepared) return park_place::freed;
        }
    };
    if (budget.take(m_server, limit, std::chrono::milliseconds(0))) return park_place::taken;
    if (!m_parked.empty()) {
        // At the bound, holding parked connections itself: give other threads a moment
        // to free a place (finishing a branch on the connection that holds it is always
        // safe), then close its own oldest, detaching that branch. Closing comes last:
        // MariaDB 10.11 can lose an XA COMMIT that arrives while it tears the closed
        // session down (see wait_session_gone).
        const auto got =
            wait_until(started + std::min(std::chrono::milliseconds(m_opt.park_wait_ms),
                                          options::own_close_after));
        if (got != park_place::none) return got;
        auto victim = std::move(m_parked.front());
        m_parked.erase(m_parked.begin());
        close_detaching(*victim);
        if (budget.take(m_server, limit, std::chrono::milliseconds(0))) return park_place::taken;
    }
    return wait_until(started + std::chrono::milliseconds(m_opt.park_wait_ms));
}

void session::start(const xid& x, start_mode mode) {
    if (mode != start_mode::fresh) {
        // MariaDB refuses XA START ... JOIN/RESUME (1398), but XA END was deferred: the
        // branch is still active on the server and simply goes on.
        if (m_branch == x && m_end_pending) {
            m_end_pending = false;
            return;
        }
        raise(XAER_RMERR, "0A000",
              fmt::format("XA START {}: the branch's XA END already reached the server "
                          "(multi_statements=off, or its work failed), and MariaDB cannot "
                          "join or resume an ended branch (error 1398)",
                          mode == start_mode::join ? "JOIN" : "RESUME"));
    }
    ensure_free_link();
    std::lock_guard g(m_link->mu);
    m_write_base.reset();
    m_read_only_at_end = false;
    m_branch_wrote = false;
    try {
        if (m_dialect == dialect::mariadb && m_opt.read_only_vote)
            m_write_base = start_counting(*m_link, m_opt.multi_statements, xa_start_sql(x));
        else
            run(*m_link, xa_start_sql(x));
    } catch (const sql::SQLException& e) {
        raise_sql(e, XAER_RMERR, "XA START");
    }
    m_branch = x;
    m_end_pending = false;
    m_rollback_pending = 0;
}

void session::start_with_timeout(const xid& x, std::chrono::seconds timeout) {
    constexpr long long most = 31536000;  // idle_transaction_timeout's maximum (a year)
    if (timeout.count() <= 0 || timeout.count() > most)
        raise(XAER_INVAL, "22023",
              fmt::format("a branch timeout of {} seconds: MariaDB takes 1 to {}", timeout.count(),
                          most));
    start(x, start_mode::fresh);
    std::lock_guard g(m_link->mu);
    try {
        run(*m_link, fmt::format("SET SESSION idle_transaction_timeout = {}", timeout.count()));
    } catch (const sql::SQLException& e) {
        // No branch began (the core forgets it): leave no XA transaction behind either.
        try {
            run(*m_link, xa_end_sql(x));
            run(*m_link, xa_rollback_sql(x));
        } catch (const sql::SQLException&) {
        }
        m_branch.reset();
        raise_sql(e, XAER_RMERR, "SET SESSION idle_transaction_timeout");
    }
    m_timed = true;
}

bool session::wrote_nothing(link& l) {
    // Changed rows reported inside the branch: written, no reading needed (voting XA_OK
    // is always safe; only a false XA_RDONLY loses work).
    if (!m_write_base || m_rollback_pending != 0 || m_branch_wrote) return false;
    return read_write_counter(l) == m_write_base;
}

void session::end(const xid& x, end_mode) {
    // Suspend ends like success: the deferred XA END keeps the branch joinable and
    // resumable on this session. TMFAIL too (the core then rolls back).
    if (m_rollback_pending == 0 && m_opt.multi_statements) {
        m_end_pending = true;  // travels with the next verb
        return;
    }
    std::lock_guard g(m_link->mu);
    // The counters can be read only while the branch is active.
    m_read_only_at_end = wrote_nothing(*m_link);
    try {
        run(*m_link, xa_end_sql(x));
    } catch (const sql::SQLException& e) {
        // After a deadlock MariaDB refuses XA END (1399, "ROLLBACK ONLY state"): the
        // branch is over either way, and the rollback code says why.
        if (m_rollback_pending == 0 || is_connection_lost(errnum_of(e)))
            raise_sql(e, XAER_RMERR, "XA END");
    }
    if (m_rollback_pending != 0)
        raise(m_rollback_pending, "40001",
              fmt::format("XA END: the branch's work failed ({}); it can only be rolled back",
                          xa_code_name(m_rollback_pending)));
}

void session::flush_end() {
    if (!m_end_pending || !m_branch) return;
    m_end_pending = false;
    try {
        run(*m_link, xa_end_sql(*m_branch));
    } catch (const sql::SQLException& e) {
        const int code = xa_code_of(errnum_of(e), XAER_RMERR);
        if (!is_rollback_code(code)) raise_sql(e, XAER_RMERR, "XA END");
        m_rollback_pending = code;  // reported by the next verb on the branch
    }
}

void session::finish_idle(link& l, const xid& x, const std::string& verb_sql, const char* what,
                          bool is_rollback) {
    if (std::exchange(m_timed, false)) {
        // The branch's timeout must not reach a prepared branch (MariaDB would end the
        // session holding it) nor the session's later work.
        try {
            run(l, "SET SESSION idle_transaction_timeout = 0");
        } catch (const sql::SQLException& e) {
            raise_sql(e, XAER_RMERR, "SET SESSION idle_transaction_timeout");
        }
    }
    auto roll_back_quietly = [&] {
        try {
            run(l, xa_rollback_sql(x));
        } catch (const sql::SQLException&) {
            // Already gone on the server: nothing left to release.
        }
        m_branch.reset();
        m_end_pending = false;
    };
    if (m_rollback_pending != 0 && !m_end_pending) {
        const int code = std::exchange(m_rollback_pending, 0);
        roll_back_quietly();
        if (is_rollback) return;
        raise(code, "40001",
              fmt::format("{}: the branch's work failed ({}) and it was rolled back", what,
                          xa_code_name(code)));
    }
    int step = 1;
    try {
        if (m_end_pending)
            run_pair(l, m_opt.multi_statements, xa_end_sql(x), verb_sql, step);
        else
            run(l, verb_sql);
    } catch (const sql::SQLException& e) {
        if (step == 1) m_end_pending = false;
        const unsigned n = errnum_of(e);
        int code = xa_code_of(n, XAER_RMERR);
        if (step == 0 && n == errnum::xaer_rmfail) {
            // XA END refused because the server made the branch rollback-only (its work
            // was rolled back by a deadlock): roll it back, and XA ROLLBACK names why.
            try {
                run(l, xa_rollback_sql(x));
                code = XA_RBROLLBACK;
            } catch (const sql::SQLException& e2) {
                const int c2 = xa_code_of(errnum_of(e2), XAER_RMERR);
                if (is_rollback_code(c2)) code = c2;
            }
            if (is_rollback_code(code)) {
                m_branch.reset();
                m_end_pending = false;
                m_rollback_pending = 0;
                if (is_rollback) return;
                raise(code, "40001",
                      fmt::format("{}: the branch was rolled back by the server ({})", what,
                                  e.what()),
                      static_cast<long>(n));
            }
        }
        if (is_rollback_code(code)) {
            m_rollback_pending = 0;
            roll_back_quietly();
            if (is_rollback) return;
        }
        raise_sql(e, XAER_RMERR, step == 0 ? "XA END" : what);
    }
    m_end_pending = false;
    m_rollback_pending = 0;
    m_branch.reset();
}

vote session::prepare(const xid& x) {
    {
        std::lock_guard g(m_link->mu);
        // Wrote nothing: roll back and vote read-only, instead of a prepared branch that
        // holds this connection and that MariaDB discards when the connection ends.
        const bool read_only = m_end_pending ? wrote_nothing(*m_link) : m_read_only_at_end;
        m_read_only_at_end = false;
        if (read_only) {
            finish_idle(*m_link, x, xa_rollback_sql(x),
                        "XA ROLLBACK of a branch that wrote nothing", false);
            return vote::read_only;
        }
        finish_idle(*m_link, x, xa_prepare_sql(x), "XA PREPARE", false);
        // MySQL 8 with xa_detach_on_prepare=ON: the server detached the branch itself;
        // any connection finishes it (step 3 of finish_prepared), this one stays free.
        if (m_opt.detached_by_prepare) return vote::ok;
        m_link->prepared = x;
    }
    registry::instance().attach(m_server, x, m_link);
    return vote::ok;
}

void session::commit(const xid& x, bool one_phase) {
    if (!one_phase) return finish_prepared(x, true);
    std::lock_guard g(m_link->mu);
    finish_idle(*m_link, x, xa_commit_sql(x, true), "XA COMMIT ONE PHASE", false);
}

void session::rollback(const xid& x, bool prepared) {
    if (prepared) return finish_prepared(x, false);
    std::lock_guard g(m_link->mu);
    finish_idle(*m_link, x, xa_rollback_sql(x), "XA ROLLBACK", true);
}

namespace {

// ER_XA_RBROLLBACK: the server rolled the branch back (MariaDB discards a prepared
// branch that wrote nothing when its connection ends). Done, for a rollback; for a
// commit that is a heuristic rollback, never a success.
bool finished_anyway(const xid& x, bool commit, unsigned n) {
    if (n != errnum::xa_rbrollback) return false;
    if (commit) raise_rolled_back_at_commit(x, n);
    return true;
}

// The holder answered "unknown XID" (or, with autocommit off, XAER_OUTSIDE, which a
// connection still holding the prepared branch never answers to its XA COMMIT): the
// branch was finished on it behind xarm's back (XA COMMIT sent on xarm_mysql_conn): the
// connection is free again and the entry goes.
void finished_behind(link& l, const sql::SQLException& e, const std::string& server, const xid& x) {
    const unsigned n = errnum_of(e);
    if (n != errnum::xaer_nota && n != errnum::xaer_outside) return;
    l.prepared.reset();
    registry::instance().forget(server, x);
}

}  // namespace

// A prepared branch is attached to this session's connection (the common, free path),
// or to another connection of this process, or detached on the server (its connection
// ended, or the server restarted).
void session::finish_prepared(const xid& x, bool commit) {
    if (finish_here(x, commit)) return;
    auto owner = registry::instance().owner(m_server, x);
    if (finish_on_owner(x, commit, owner.holder, owner.closed_session)) return;
    finish_on_server(x, commit, owner.ours, owner.closed_session);
}

bool session::finish_here(const xid& x, bool commit) {
    std::unique_lock lk(m_link->mu);
    if (m_link->prepared != x) return false;
    try {
        run(*m_link, xa_finish_sql(x, commit));
    } catch (const sql::SQLException& e) {
        if (!finished_anyway(x, commit, errnum_of(e))) {
            finished_behind(*m_link, e, m_server, x);
            raise_sql(e, XAER_RMERR, xa_finish_verb(commit));
        }
    }
    m_link->prepared.reset();
    lk.unlock();
    registry::instance().forget(m_server, x);
    return true;
}

bool session::finish_on_owner(const xid& x, bool commit, const std::shared_ptr<link>& l,
                              long& closed_session) {
    if (!l) return false;
    std::unique_lock lk(l->mu);
    if (!l->conn || l->lost || l->prepared != x) return false;
    bool done = true;
    try {
        run(*l, xa_finish_sql(x, commit));
    } catch (const sql::SQLException& e) {
        const unsigned n = errnum_of(e);
        if (!finished_anyway(x, commit, n) && !is_connection_lost(n)) {
            finished_behind(*l, e, m_server, x);
            raise_sql(e, XAER_RMERR, xa_finish_verb(commit));
        }
        // Lost: the server detaches the branch; the caller finishes it detached.
        done = finished_anyway(x, commit, n);
        if (!done) closed_session = l->session_id;
    }
    l->prepared.reset();
    // A session waits for a place in the parked bound: give this one back rather than
    // keep the connection for its owner to reuse.
    if (l->ticket && park_budget::instance().wanted(m_server)) l->close();
    lk.unlock();
    if (done) registry::instance().forget(m_server, x);
    return done;
}

void session::finish_on_server(const xid& x, bool commit, bool was_ours, long closed_session) {
    const std::string sql = xa_finish_sql(x, commit);
    const char* what = xa_finish_verb(commit);
    auto& reg = registry::instance();
    ensure_free_link();
    std::lock_guard g(m_link->mu);
    // With autocommit off MariaDB counts the session as inside a transaction and
    // answers XAER_OUTSIDE for another connection's branch: switch it on meanwhile,
    // unless a local transaction is really open (which that answer then reports).
    link* switched = nullptr;
    const scope_exit autocommit_off([&switched]() noexcept {
        if (switched == nullptr) return;
        try {
            run(*switched, "SET autocommit=0");
        } catch (const sql::SQLException&) {
            // Lost connection: the next use reports it.
        }
    });
    if (!m_local) {
        try {
            run(*m_link, "SET autocommit=1");
        } catch (const sql::SQLException& e) {
            raise_sql(e, XAER_RMERR, what);
        }
        switched = m_link.get();
    }
    // Not while the server tears down the session that held the branch (closed here, or
    // unknown: any closing one): an XA COMMIT meanwhile would answer success and commit
    // nothing.
    if (!wait_session_gone(closed_session, [&](const std::string& q) -> std::optional<long> {
            try {
                std::unique_ptr<sql::ResultSet> rs(m_link->stmt->executeQuery(q));
                if (rs->next()) return static_cast<long>(rs->getInt64(1));
            } catch (const sql::SQLException& e) {
                if (is_connection_lost(errnum_of(e))) m_link->lost = true;
            }
            return std::nullopt;
        }))
        raise(commit ? XA_RETRY : XAER_RMERR, "55006", closing_session_message(what, x));
    // Prepared, yet unknown to this connection: still attached to a live connection.
    // One of ours that just closed is detached by the server shortly: wait for that.
    std::optional<sql::SQLException> last;
    const auto out = finish_detached(
        [&]() -> unsigned {
            try {
                run(*m_link, sql);
                return 0;
            } catch (const sql::SQLException& e) {
                last.reset();
                last.emplace(e);
                return errnum_of(e);
            }
        },
        [&] {
            const auto listed = recover_on(*m_link, m_dialect);
            return std::find(listed.begin(), listed.end(), x) != listed.end();
        },
        was_ours);
    switch (out.what) {
        case detached_result::finished:
            break;
        case detached_result::rolled_back:
            if (was_ours) reg.forget(m_server, x);
            finished_anyway(x, commit, out.errnum);  // raises for a commit
            return;
        case detached_result::not_prepared:
            if (was_ours) reg.forget(m_server, x);
            raise_sql(*last, XAER_NOTA, what);
        case detached_result::still_attached:
            raise(commit ? XA_RETRY : XAER_RMERR, "55006", still_attached_message(what, x),
                  out.errnum);
        case detached_result::failed:
            raise_sql(*last, XAER_RMERR, what);
    }
    if (was_ours) reg.forget(m_server, x);
}

std::vector<xid> session::recover() {
    std::lock_guard g(m_link->mu);
    flush_end();  // keep the server's state what the core believes it is
    auto listed = recover_on(*m_link, m_dialect);
    registry::instance().prune(m_server, listed);
    return listed;
}

result session::work(const std::function<result(link&)>& run_on) {
    // Outside a branch a connection that holds a prepared branch refuses everything.
    if (!m_branch) ensure_free_link();
    std::lock_guard g(m_link->mu);
    flush_end();
    if (!m_branch) m_local = true;  // autocommit is off: this begins a transaction
    link& l = *m_link;
    if (!l.conn || l.lost) raise_gone();
    try {
        result r = run_on(l);
        if (m_branch && r.affected > 0) m_branch_wrote = true;
        return r;
    } catch (const sql::SQLException& e) {
        const unsigned n = errnum_of(e);
        if (is_connection_lost(n)) l.lost = true;
        // InnoDB rolled the transaction back (deadlock), or the statement failed in a
        // way that leaves the branch's work incomplete (lock-wait timeout): the branch
        // can only be rolled back now, and xa_end says so.
        if (m_branch && (n == errnum::deadlock || n == errnum::lock_wait_timeout))
            m_rollback_pending = xa_code_of(n, XA_RBOTHER);
        raise_sql(e, XAER_RMERR, "statement failed");
    }
}

namespace {
result run_text(link& l, std::string_view text, bool rows) {
    const std::string sql(text);
    if (l.stmt->execute(sql)) {
        std::unique_ptr<sql::ResultSet> rs(l.stmt->getResultSet());
        if (rows) return read_rows(*rs, 0);
        return {};
    }
    const auto c = l.stmt->getUpdateCount();
    return result_builder().finish(c == ~std::uint64_t{0} ? 0 : static_cast<std::int64_t>(c));
}
}  // namespace

std::int64_t session::execute(std::string_view sql) {
    return work([&](link& l) { return run_text(l, sql, false); }).affected;
}

result session::query(std::string_view sql) {
    return work([&](link& l) { return run_text(l, sql, true); });
}

void session::commit_local() {
    std::lock_guard g(m_link->mu);
    if (!m_link->conn || m_link->lost) raise_gone();
    try {
        m_link->conn->commit();
    } catch (const sql::SQLException& e) {
        if (is_connection_lost(errnum_of(e))) m_link->lost = true;
        raise_sql(e, XAER_RMERR, "COMMIT");
    }
    m_local = false;
}

void session::rollback_local() {
    std::lock_guard g(m_link->mu);
    if (!m_link->conn || m_link->lost) raise_gone();
    try {
        m_link->conn->rollback();
    } catch (const sql::SQLException& e) {
        if (is_connection_lost(errnum_of(e))) m_link->lost = true;
        raise_sql(e, XAER_RMERR, "ROLLBACK");
    }
    m_local = false;
}

}  // namespace xarm::mysql
