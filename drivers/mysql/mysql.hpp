// The MySQL/MariaDB driver's internals: one Connector/C++ 1.1 connection per session,
// plus the connections it had to set aside to keep prepared branches alive.
//
// Connection affinity: MariaDB keeps a prepared XA branch attached to the connection
// that prepared it until that connection ends; meanwhile other connections get "unknown
// XID" for it and the connection itself refuses any other statement. The driver bridges
// this inside one process:
//   - prepare then commit on the same session runs on the same connection (no cost);
//   - a session whose connection holds a prepared branch and must do anything else
//     parks that connection (it keeps the branch) and continues on another one: an own
//     parked connection whose branch has since finished, or a new one, within a bound
//     per process and server (park_budget in session.cpp), so that many threads cannot
//     exhaust the server's max_connections;
//   - phase two from any session of this process finds the owning connection through
//     a process-wide registry and runs XA COMMIT/ROLLBACK there.
// Another process cannot reach a connection of this one: while it lives, xa_commit
// there answers XA_RETRY (and xa_rollback XAER_RMERR) with a message that says why.
#pragma once

#include <cppconn/connection.h>
#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dialect.hpp"
#include "xarm/driver/driver.hpp"

namespace xarm::mysql {

/// The parsed info string.
struct options {
    std::string host = "127.0.0.1";
    int port = 3306;
    std::string socket;
    std::string user;
    std::string password;
    std::string database;
    int connect_timeout = 10;      ///< seconds
    bool multi_statements = true;  ///< send XA END and the next XA verb in one round trip
    /// Connections this process may set aside holding prepared branches, per server (all
    /// sessions together), and never more than half the server's max_connections.
    int max_parked = 64;
    /// How long xa_start waits for a parked connection to be freed when the bound is
    /// reached (milliseconds). A session holding parked connections itself waits
    /// own_close_after of it, then closes its own oldest instead.
    int park_wait_ms = 5000;
    static constexpr std::chrono::milliseconds own_close_after{100};
    /// MariaDB: vote XA_RDONLY for a branch that wrote nothing, told by the session write
    /// counters (write_counter_sql), read at XA START and before XA END: about 1 ms of
    /// server time each. Off: such a branch votes XA_OK and no counter is read.
    bool read_only_vote = false;
    /// Not an info-string key: the server's @@xa_detach_on_prepare (MySQL 8.0.30+), read
    /// at open. True: XA PREPARE leaves the connection free and nothing is parked.
    bool detached_by_prepare = false;

    /// The server this connects to, as a registry key (branch names are server-wide).
    std::string server_key() const;
};

/// The native-error table as exceptions (error.cpp): the XA code and SQLSTATE from the
/// dialect's table, fallback when the number is not in it.
/// force: report fallback whatever the table says (e.g. XAER_RMERR for a failed open).
[[noreturn]] void raise_sql(const sql::SQLException& e, int fallback, const std::string& context,
                            bool force = false);
/// The server's (or client library's) error number.
unsigned errnum_of(const sql::SQLException& e) noexcept;

/// A parked connection's place in the process-wide bound (options::max_parked), given
/// back when the connection is closed or destroyed.
struct park_ticket {
    explicit park_ticket(std::string s) : server(std::move(s)) {}
    park_ticket(const park_ticket&) = delete;
    park_ticket& operator=(const park_ticket&) = delete;
    ~park_ticket();
    std::string server;
};

/// Connections set aside by this process (all servers) and the registry's entries, for
/// monitoring and tests (xarm_mysql_counts).
long parked_connections() noexcept;
long registry_entries() noexcept;

/// One server connection and the prepared branch it still holds. Every use of conn
/// holds mu: a session of another thread may run phase two on it.
struct link {
    std::mutex mu;
    std::unique_ptr<sql::Connection> conn;  ///< null once closed or lost
    std::unique_ptr<sql::Statement> stmt;   ///< reused for every statement
    /// Server-side prepared statements by text, made on first use (statements with
    /// parameters and prepare()), at most max_statements, the oldest dropped first.
    /// Declared after conn: destroyed before it.
    std::map<std::string, std::unique_ptr<sql::PreparedStatement>, std::less<>> statements;
    std::deque<std::string> statement_order;
    std::optional<xid> prepared;  ///< attached prepared branch, if any
    bool lost = false;            ///< the server connection broke
    long session_id = 0;          ///< the server's CONNECTION_ID() (0: unknown)
    /// Held while the connection is parked (in a session's set-aside list): counted
    /// against the process-wide bound; released by close().
    std::unique_ptr<park_ticket> ticket;

    static constexpr std::size_t max_statements = 64;
    /// The prepared statement for sql on this connection (prepared now if new).
    sql::PreparedStatement& statement_for(const std::string& sql);
    /// Drops the cached statement for sql (the schema outgrew it).
    void forget_statement(const std::string& sql);
    /// Closes the server connection (statements first).
    void close() noexcept;
};

/// A result set's rows, decoded by the column types Connector/C++ reports: the integer
/// types, float/double, the binary types and DATETIME/TIMESTAMP become typed values,
/// the rest (DECIMAL, DATE, TIME, JSON, ...) text.
result read_rows(sql::ResultSet& rs, std::int64_t affected);

class session final : public native_session {
  public:
    session(const session&) = delete;
    session& operator=(const session&) = delete;
    /// max_connections: the server's, read at open (bounds the parked connections).
    session(options opt, dialect d, std::shared_ptr<link> first, long max_connections);
    ~session() override;

    capability_set capabilities() const override;
    void start(const xid& x, start_mode mode) override;
    /// XA START, then SET SESSION idle_transaction_timeout (MariaDB), reset to 0 by the
    /// verb that ends the branch.
    void start_with_timeout(const xid& x, std::chrono::seconds timeout) override;
    void end(const xid& x, end_mode mode) override;
    vote prepare(const xid& x) override;
    void commit(const xid& x, bool one_phase) override;
    void rollback(const xid& x, bool prepared) override;
    /// A heuristic outcome (XA_HEURRB at commit) leaves nothing on the server to forget.
    void forget(const xid&) override {}
    std::vector<xid> recover() override;
    std::int64_t execute(std::string_view sql) override;
    result query(std::string_view sql) override;
    sql_syntax syntax() const override { return sql_syntax::mysql(); }
    /// Server-side prepared statements (COM_STMT_PREPARE once per text and connection,
    /// then COM_STMT_EXECUTE: one round trip).
    result execute_params(std::string_view sql, std::span<const value> params, bool rows) override;
    /// Prepares on the current connection now; on another one (after a prepared branch
    /// made the session switch) again on first use.
    std::unique_ptr<native_statement> prepare(std::string_view sql, std::size_t params) override;
    result execute_prepared(native_statement& st, std::span<const value> params,
                            bool rows) override;
    void commit_local() override;
    void rollback_local() override;
    bool in_local_transaction() const override { return m_local; }
    void* native_handle() noexcept override { return m_link->conn.get(); }

  private:
    /// Makes sure m_link holds no prepared branch, switching connections when it does:
    /// an own parked connection whose branch is finished, else a new one within the
    /// process-wide bound (closing this session's oldest parked connection, or waiting
    /// up to park_wait_ms for another session's to be freed, when it is reached).
    void ensure_free_link();
    /// ensure_free_link's first choice: swaps in an own parked connection whose branch is
    /// finished (dropping lost ones); false when there is none.
    bool reuse_parked_link();
    /// What reserve_park_place got.
    enum class park_place { taken, freed, none };
    /// A place within the bound for m_link to be parked in (taken), or m_link's branch
    /// finished by another thread meanwhile (freed), or none within park_wait_ms.
    park_place reserve_park_place(int limit);
    /// Closes l, detaching its prepared branch on the server.
    void close_detaching(link& l);
    /// The process-wide bound of parked connections for this server.
    int parked_limit() const noexcept;
    /// Sends the deferred XA END of the idle branch, if any.
    void flush_end();
    /// Runs XA END (when deferred) then verb, in one round trip when possible; on a
    /// rollback code rolls the branch back on the server and rethrows.
    /// is_rollback: the verb is XA ROLLBACK, which a rollback code does not fail.
    void finish_idle(link& l, const xid& x, const std::string& verb_sql, const char* what,
                     bool is_rollback);
    /// Phase two of a prepared branch, wherever in this process it is attached.
    void finish_prepared(const xid& x, bool commit);
    /// finish_prepared on this session's connection; false when x is not attached here.
    bool finish_here(const xid& x, bool commit);
    /// finish_prepared on l, another connection of this process holding x; false when
    /// it does not (any more), or its connection was lost (closed_session: its session).
    bool finish_on_owner(const xid& x, bool commit, const std::shared_ptr<link>& l,
                         long& closed_session);
    /// finish_prepared of a branch detached on the server, from a free connection.
    void finish_on_server(const xid& x, bool commit, bool was_ours, long closed_session);
    /// MariaDB with read_only_vote=on: the branch (still active on l) has not moved the
    /// write counter since XA START; false when unknown, when the vote is off, or when a
    /// statement run through xarm already reported rows it changed (no reading then).
    bool wrote_nothing(link& l);
    /// Runs an application statement through run (on the connection in use, its mutex
    /// held), with the branch and local-transaction bookkeeping and the error mapping.
    result work(const std::function<result(link&)>& run);

    options m_opt;
    dialect m_dialect;
    std::string m_server;
    long m_max_connections = 0;    ///< the server's max_connections at open (0: unknown)
    std::shared_ptr<link> m_link;  ///< the connection in use
    std::vector<std::shared_ptr<link>> m_parked;  ///< set aside, holding (or having held) a branch
    std::optional<xid> m_branch;  ///< the server-side XA transaction (active or idle)
    bool m_end_pending = false;   ///< XA END deferred, to travel with the next verb
    bool m_timed = false;         ///< the branch set idle_transaction_timeout (reset at its end)
    int m_rollback_pending = 0;   ///< XA_RB* after a statement failure inside the branch
    bool m_local = false;         ///< a local transaction is open
    std::optional<unsigned long long> m_write_base;  ///< MariaDB: write counter at XA START
    bool m_branch_wrote = false;      ///< a statement through xarm changed rows in the branch
    bool m_read_only_at_end = false;  ///< wrote nothing, seen before an immediate XA END
};

/// Opens a connection with autocommit off (PEP 249).
std::shared_ptr<link> connect(const options& opt);

/// What the driver declares: the read-only vote only on MariaDB (d) with
/// read_only_vote=on; join and suspend/resume with multi_statements=on (XA END deferred). The
/// defaults are what a connection opened with the default info string declares.
capability_set declared_capabilities(dialect d = dialect::mariadb, bool read_only_vote = false,
                                     bool multi_statements = true);

}  // namespace xarm::mysql
