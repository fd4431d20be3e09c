// The PostgreSQL driver's internals: one libpq connection per session. The SQL texts
// and the SQLSTATE table are in dialect.hpp (shared with the odbc driver).
#pragma once

#include <libpq-events.h>
#include <libpq-fe.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dialect.hpp"
#include "xarm/driver/driver.hpp"

namespace xarm::pq {

struct conn_deleter {
    void operator()(PGconn* c) const noexcept { PQfinish(c); }
};
struct result_deleter {
    void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using conn_ptr = std::unique_ptr<PGconn, conn_deleter>;
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

/// A server error as read from a result (or from the connection when there is none).
struct server_error {
    std::string sqlstate;  ///< "08006" when the connection is gone and the server said nothing
    std::string message;   ///< primary message, detail and hint; never the conninfo
    bool lost = false;     ///< the connection is unusable (PQstatus is CONNECTION_BAD)
};

/// The native-error table's libpq side (error.cpp): reads r's error (r may be null).
server_error read_error(PGconn* c, const PGresult* r);
/// True when r is a success (command, tuples or empty query).
bool succeeded(const PGresult* r) noexcept;
/// Raises e as an xarm error for operation o: the XA code from dialect.hpp's table,
/// XAER_RMFAIL whenever the connection is lost; context prefixes the message.
[[noreturn]] void raise_server(const server_error& e, op o, std::string_view context);
/// Raises a failed connection attempt: XAER_RMERR, libpq's text, never the conninfo.
[[noreturn]] void raise_connect(PGconn* c);
/// Checks a conninfo string or URI without connecting (XAER_INVAL with libpq's reason,
/// value fragments removed).
void check_conninfo(const std::string& info);

class session final : public native_session {
  public:
    session(const session&) = delete;
    session& operator=(const session&) = delete;
    explicit session(const std::string& conninfo);
    ~session() override;

    capability_set capabilities() const override { return m_caps; }
    void start(const xid& x, start_mode mode) override;
    /// BEGIN at once, with SET LOCAL idle_in_transaction_session_timeout in the same round
    /// trip (the setting ends with the block, PREPARE TRANSACTION included).
    void start_with_timeout(const xid& x, std::chrono::seconds timeout) override;
    void end(const xid& x, end_mode mode) override;
    vote prepare(const xid& x) override;
    void commit(const xid& x, bool one_phase) override;
    void rollback(const xid& x, bool prepared) override;
    std::vector<xid> recover() override;
    std::int64_t execute(std::string_view sql) override;
    result query(std::string_view sql) override;
    sql_syntax syntax() const override { return sql_syntax::postgresql(); }
    result execute_params(std::string_view sql, std::span<const value> params, bool rows) override;
    /// PQprepare, one round trip; the statement is named xarm_<n> on the server. Executed
    /// with typed values (integers, reals, booleans, bytes), it is parsed once more for
    /// each set of parameter types (parse()).
    std::unique_ptr<native_statement> prepare(std::string_view sql, std::size_t params) override;
    result execute_prepared(native_statement& st, std::span<const value> params,
                            bool rows) override;
    /// Queued while the branch's BEGIN is pending: the statement is parsed once per
    /// connection as a named server-side statement (one round trip the first time, outside
    /// any block), then executed behind the BEGIN in the branch's first round trip.
    /// Parameters: NULL, booleans, integers and text only (else false).
    bool defer_statement(std::string_view sql, std::span<const value> params) override;
    bool withdraw_deferred() override;
    void commit_local() override;
    void rollback_local() override;
    bool in_local_transaction() const override;
    /// Hands the PGconn to the application: from then on the session is in direct mode
    /// (start() sends BEGIN at once, since statements no longer pass through execute());
    /// a BEGIN still pending is sent now.
    void* native_handle() noexcept override;
    /// A heuristic outcome here is only a block the application ended itself (never a
    /// prepared transaction): nothing is kept to forget.
    void forget(const xid&) override {}

    /// PQprepare under a new name (xarm_<n>) with the given parameter types (null: all
    /// left to the server); a failure is recorded as the block's abort and raised.
    std::string parse(const std::string& sql, int params, const Oid* types);
    /// A server-side statement is no longer used: DEALLOCATEd at the next prepare()
    /// outside a transaction (never from a destructor, never inside a block).
    void unused(std::string name) { m_unused.push_back(std::move(name)); }

  private:
    /// PQexec; on failure records the error that aborted a block and raises for o.
    result_ptr exec(const std::string& sql, op o, std::string_view context);
    /// COMMIT of a branch or local transaction: a failure rolled it back (raised for
    /// op::commit_one, context `failed`), except a lost connection, which is in doubt.
    result_ptr exec_commit(std::string_view failed);
    /// Like exec but returns the failure instead of raising (nullptr error = success).
    result_ptr try_exec(const std::string& sql, server_error& err);
    result run(std::string_view sql, bool collect);
    /// One statement with parameters, sent by send (a PQsendQuery* call): in a pipeline
    /// behind the pending BEGIN when one is due (one round trip for both), alone
    /// otherwise. Records the error that aborts a block, raises on failure.
    result bound(const std::function<int()>& send, bool rows);
    /// Runs send and collects its results: the first error, else the last result.
    result_ptr collect(const std::function<int()>& send);
    /// The same, behind a BEGIN and the deferred statement (if any), in pipeline mode;
    /// send may be empty (only BEGIN and the deferred statement). The first failure of
    /// BEGIN or the deferred statement, else send's result (or the deferred one's).
    result_ptr collect_after_begin(const std::function<int()>& send);
    /// A deferred statement still queued goes out now with its BEGIN, before a verb that
    /// needs the block open; a failure is recorded (m_abort) for the verb's own checks.
    void flush_deferred();
    /// "EXECUTE <name>(<literals>); " for the simple-protocol path.
    std::string deferred_text();
    /// Queues through queue (in pipeline mode, ending with `syncs` sync points) and
    /// collects the results: per query the first error, else its last result (null when
    /// none came, the connection having failed).
    std::vector<result_ptr> pipeline(std::size_t queries, int syncs,
                                     const std::function<bool(PGconn*)>& queue);
    /// The read-only check (a named statement, parsed in the same round trip the first
    /// time) and PREPARE TRANSACTION in one pipeline: the check costs no parse or plan.
    /// Returns PREPARE's result, or null with err set to the first failure.
    result_ptr check_and_prepare(const xid& x, server_error& err);

    PGTransactionStatusType status() const noexcept { return PQtransactionStatus(m_conn.get()); }
    /// The block failed: raises the XA_RB* code of the error that aborted it.
    [[noreturn]] void raise_aborted(std::string_view what);
    /// After the application ended the block itself: XA_HEURHAZ, once.
    void ended_outside_hazard();
    void rollback_block() noexcept;
    /// XAER_RMFAIL when libpq already knows the connection is gone.
    void check_alive(op o, std::string_view what);
    /// libpq's event procedure (PQregisterEventProc): reads the command tag of every
    /// successful result on the connection, the application's own ones included.
    static int on_event(PGEventId id, void* info, void* self);
    void saw_tag(std::string_view tag);

    conn_ptr m_conn;
    capability_set m_caps;
    bool m_branch = false;              // a branch (not yet prepared or finished) uses the session
    bool m_pending_begin = false;       // the branch's BEGIN goes with its first statement
    bool m_ended_outside = false;       // the application ended the branch's block itself
    bool m_direct = false;              // the application has the PGconn (native_handle)
    bool m_wrote = false;               // a command tag proved a write (saw_tag)
    server_error m_abort;               // the error that aborted the current block, if any
    unsigned long m_statements = 0;     // server-side statements prepared so far (names)
    std::string m_check;                // the read-only check's statement name, once parsed
    std::vector<std::string> m_unused;  // server-side statements to deallocate
    struct deferred {
        std::string name;  // the server-side statement
        std::vector<value> params;
    };
    std::optional<deferred> m_deferred;                // queued behind the pending BEGIN
    std::map<std::string, std::string> m_defer_names;  // deferred SQL -> server statement
};

/// Result rows in libpq's text format, decoded by type OID: bool, the integer types,
/// float4/float8, bytea (hex or escape format) and timestamp/timestamptz become typed
/// values, everything else (numeric, date, json, ...) text.
result decode(const PGresult* r, bool rows);
/// The name of a built-in type OID ("int8"), else "oid <n>".
std::string type_name_of(Oid oid);

}  // namespace xarm::pq
