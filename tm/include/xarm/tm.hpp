// xarm::tm: a small transaction manager for applications without a monitor. It enlists
// resources (xarm connections of any driver, or user-defined data managers), gives each
// global transaction one gtrid carrying the coordinator's identity and each resource its
// own bqual, commits with the usual optimisations (one-phase for one resource, read-only
// votes, presumed abort, parallel phases, a forced decision log with group commit, one
// last resource or last agent whose one-phase commit with a commit marker is the
// decision, without a forced log write) and recovers what a crash left in doubt,
// touching only its own branches.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "xarm/capability.hpp"
#include "xarm/connection.hpp"
#include "xarm/export.h"
#include "xarm/xid.hpp"

namespace xarm::tm {

/// The format id of every xid this manager issues: 'xaM1'.
inline constexpr long format_id = 0x78614d31L;

// ---------------------------------------------------------------------------------------
// Resources (data managers)

/// A participant in global transactions, in the spirit of the Zope `transaction`
/// package's data managers. The coordinator calls begin() when the resource is enlisted,
/// then either prepare() + commit()/rollback(), or (one resource, or the last resource)
/// a one-phase commit. Recovery uses recover() and the *_recovered() calls from a fresh
/// instance made by the application's factory. Errors are xarm::error exceptions
/// (rollback_error: the branch is gone; operational_error: connection lost).
class XARM_API resource {
  public:
    resource() = default;
    virtual ~resource();
    resource(const resource&) = delete;
    resource& operator=(const resource&) = delete;
    /// The name the application's factory knows it by (recovery reconnects by name).
    virtual std::string name() const = 0;
    /// False for a one-phase-only resource, which can only be the transaction's last.
    virtual bool can_prepare() const = 0;
    /// True when every call must come from the thread that called begin() (an XA
    /// switch: its branch is associated with that thread): the coordinator then makes
    /// them on the calling thread, never on its workers.
    virtual bool thread_bound() const noexcept { return false; }

    virtual void begin(const xid& x) = 0;
    /// Phase one; vote::read_only drops the resource out of phase two.
    virtual vote prepare(const xid& x) = 0;
    /// Phase two (one_phase=false) or a one-phase commit of the unprepared branch.
    virtual void commit(const xid& x, bool one_phase) = 0;
    /// Rolls back the branch, prepared or not.
    virtual void rollback(const xid& x) = 0;

    /// Prepared branches this resource holds (all of them: the coordinator filters).
    virtual std::vector<xid> recover() = 0;
    virtual void commit_recovered(const xid& x) = 0;
    virtual void rollback_recovered(const xid& x) = 0;

    // Last-resource support (one-phase-only resources). The defaults throw
    // not_supported_error: such a resource cannot be enlisted beside others.

    /// Commits the branch in one phase with a marker row `marker` written in the same
    /// local transaction, and deletes the finished markers `forget` in it too.
    virtual void commit_with_marker(const xid& x, const std::string& marker,
                                    const std::vector<std::string>& forget);
    /// Markers present whose name starts with prefix.
    virtual std::vector<std::string> markers(const std::string& prefix);
    virtual void delete_markers(const std::vector<std::string>& names);
    /// Makes the absence of a marker final before recovery acts on it: a dead
    /// coordinator's COMMIT of the marker may still be running on the server, invisible
    /// to markers(). True when the marker is (now) committed; false when it is not and
    /// can no longer be. The default (no server, nothing can be in flight) asks markers().
    virtual bool marker_committed(const std::string& marker);

    // Last-agent support (two-phase resources that also keep commit markers). A
    // transaction of two-phase resources only may leave one of them unprepared, its *last
    // agent*: the others prepare while the marker is written into its branch, then its
    // one-phase commit (commit(x, true)) commits work and marker at once and is the
    // decision, so the decision log is not forced.

    /// 0 (the default): never a last agent. Otherwise how well it suits (higher wins).
    /// Called by enlist() before begin(), outside any branch: a resource may set up its
    /// marker table here, once, and answer 0 when it cannot.
    virtual int last_agent_rank() { return 0; }
    /// Writes marker `marker` into the branch's work, and deletes the finished markers
    /// `forget` there too, without committing. The default throws not_supported_error.
    virtual void write_marker(const xid& x, const std::string& marker,
                              const std::vector<std::string>& forget);
    /// Right after begin(x), before the application's work: queues the marker's insert,
    /// and the deletion of the finished markers `forget` (may be empty), to travel with
    /// the branch's first round trip (no round trip of its own). True when queued: both
    /// are then part of the branch's work (sent at the latest before its commit) and the
    /// coordinator makes this resource the last agent (it must never be prepared: a
    /// prepared marker would hold its key against recovery's fence). The default: false
    /// (the marker is written with write_marker() while the others prepare).
    virtual bool defer_marker(const xid& x, const std::string& marker,
                              const std::vector<std::string>& forget);
    /// Drops the queued marker if it was not sent yet (true); false: it stays.
    virtual bool withdraw_marker(const xid& x);
};

/// An xarm::connection as a resource: two-phase when its driver has two_phase, else a
/// one-phase-only last resource (which keeps its commit markers in table xarm_tm_marker,
/// created when missing). The application does its SQL on the connection between
/// enlist() and commit().
///
/// A two-phase PostgreSQL or MariaDB/MySQL connection can also be a *last agent*
/// (last_agent_rank() > 0): at its first enlistment it looks for xarm_tm_marker and
/// creates it when missing (once per object, outside any branch); when the table can be
/// neither found nor created it is never a last agent (the coordinator then forces its
/// log). PostgreSQL ranks above MariaDB: a pq connection queues its marker behind the
/// branch's BEGIN (defer_marker), so that the marker costs no round trip; a MariaDB
/// agent writes it while the others prepare.
/// Recovery reads markers (markers(), marker_committed()) without ever creating the
/// table: a missing table means no marker there (one is only ever written into a table
/// that exists and committed), any other failure is an error (recovery then leaves what
/// it cannot decide in doubt).
class XARM_API connection_resource final : public resource {
  public:
    enum class mode { automatic, one_phase_only };
    /// Owns the connection.
    connection_resource(std::string name, connection&& conn, mode m = mode::automatic);
    /// Borrows the connection: it must outlive this object.
    connection_resource(std::string name, connection& conn, mode m = mode::automatic);
    ~connection_resource() override;
    connection_resource(const connection_resource&) = delete;
    connection_resource& operator=(const connection_resource&) = delete;

    connection& conn() noexcept { return *m_conn; }

    std::string name() const override { return m_name; }
    bool can_prepare() const override { return m_two_phase; }
    void begin(const xid& x) override;
    vote prepare(const xid& x) override;
    void commit(const xid& x, bool one_phase) override;
    void rollback(const xid& x) override;
    std::vector<xid> recover() override;
    void commit_recovered(const xid& x) override;
    void rollback_recovered(const xid& x) override;
    void commit_with_marker(const xid& x, const std::string& marker,
                            const std::vector<std::string>& forget) override;
    std::vector<std::string> markers(const std::string& prefix) override;
    void delete_markers(const std::vector<std::string>& names) override;
    /// Inserts the marker's key and rolls the insert back: the insert waits for an
    /// uncommitted marker of the same key (a unique-key conflict) and then fails if
    /// it committed; if it succeeds, no such marker was pending, and none can be
    /// committed later (its session waits for each statement, so no COMMIT is sent).
    bool marker_committed(const std::string& marker) override;
    int last_agent_rank() override;
    void write_marker(const xid& x, const std::string& marker,
                      const std::vector<std::string>& forget) override;
    /// Through connection::tpc_defer: pq queues it behind the branch's pending BEGIN;
    /// other drivers cannot (false).
    bool defer_marker(const xid& x, const std::string& marker,
                      const std::vector<std::string>& forget) override;
    bool withdraw_marker(const xid& x) override;

  private:
    void init(mode m);
    void ensure_marker_table();
    /// Whether xarm_tm_marker exists (never creates it; errors other than a missing
    /// table are thrown). Leaves no transaction open.
    bool marker_table_exists();
    /// False for a resource that can never have written a marker (a two-phase resource
    /// of a driver that cannot be a last agent): recovery reads nothing there.
    bool may_hold_markers() const;
    std::string m_name;
    std::unique_ptr<connection> m_owned;
    connection* m_conn;
    bool m_two_phase = false;
    bool m_marker_table = false;
    enum class agent { unknown, ready, unavailable };
    agent m_agent = agent::unknown;
};

/// A real non-SQL resource: files written atomically in one directory. write() stages
/// content; prepare writes "<file>.xarm.<fmt>.<gtrid hex>.<bqual hex>.prepared" and
/// fsyncs it and the directory; commit renames it over <file>; rollback deletes it;
/// recover lists the prepared files. A branch that wrote nothing votes read-only.
class XARM_API file_resource final : public resource {
  public:
    file_resource(std::string name, std::filesystem::path dir);
    /// Stages `content` for file `filename` (a plain name inside dir) in the current branch.
    void write(const std::string& filename, std::string content);
    const std::filesystem::path& dir() const noexcept { return m_dir; }

    std::string name() const override { return m_name; }
    bool can_prepare() const override { return true; }
    void begin(const xid& x) override;
    vote prepare(const xid& x) override;
    void commit(const xid& x, bool one_phase) override;
    void rollback(const xid& x) override;
    std::vector<xid> recover() override;
    void commit_recovered(const xid& x) override;
    void rollback_recovered(const xid& x) override;

  private:
    std::vector<std::filesystem::path> prepared_files(const xid& x) const;
    std::string m_name;
    std::filesystem::path m_dir;
    xid m_xid;
    std::map<std::string, std::string> m_staged;
};

// ---------------------------------------------------------------------------------------
// The decision log

/// One log record: a commit decision (with the resources that have branches) or the end
/// of a transaction (every branch finished, the record may be trimmed).
struct log_record {
    enum class kind : std::uint8_t { commit = 1, end = 2 };
    kind type = kind::commit;
    std::string gtrid;
    /// (resource name, bqual) of each branch to commit.
    std::vector<std::pair<std::string, std::string>> branches;
};

/// Where decisions are kept. force() returns once the record is durable; concurrent
/// callers may share one flush (group commit). A log belongs to one coordinator id and
/// is held exclusively by one process at a time (the coordinator, or an operator's
/// recovery): opening a log in use fails at once, naming the holder.
class XARM_API log_store {
  public:
    log_store() = default;
    virtual ~log_store();
    log_store(const log_store&) = delete;
    log_store& operator=(const log_store&) = delete;
    /// The coordinator this log belongs to (written in the log itself).
    virtual const std::string& coordinator_id() const noexcept = 0;
    /// Where the log is, for messages ("file /var/lib/app/c1.tmlog", "table xarm_tm_log
    /// in host=... dbname=...", never a password).
    virtual std::string describe() const = 0;
    /// Rewrites the log without its finished records where that saves space; a no-op
    /// where nothing accumulates. Called by recovery when nothing stayed in doubt.
    virtual void compact() {}
    /// Durable on return.
    virtual void force(const log_record& r) = 0;
    /// Not forced (an end record: losing it only repeats harmless recovery work).
    virtual void append(const log_record& r) = 0;
    /// Commit records without an end record, as read at open plus those since.
    virtual std::vector<log_record> live() const = 0;
    /// Problems found at open that did not stop it (a torn last record).
    virtual std::vector<std::string> warnings() const = 0;
    /// Why the log can no longer record decisions (fail-stop: a failed write, ownership
    /// lost to another process), empty while it can. Cheap: never waits for I/O.
    virtual std::string fail_stop() const { return {}; }
    struct statistics {
        std::uint64_t forced_records = 0;  ///< records force() made durable
        std::uint64_t syncs = 0;           ///< flushes issued (fdatasync)
        std::uint64_t trims = 0;
    };
    virtual statistics stats() const = 0;
};

/// The embedded default: an append-only file on local disk. It starts with a header
/// naming the format version and the coordinator id; then each record is
/// magic + length + CRC-32 + payload; writes are fdatasync'd.
/// - A missing file is an error naming the path unless options::create is set (first
///   start); a file of another coordinator, or not a log, is an error.
/// - The process holds an exclusive lock (flock on "<log>.lock", which records the
///   holder's pid and host) for the log's life: a second opener fails at once.
/// - At open, only a really short tail (the file ends inside the last record: a crash
///   mid-write, never acknowledged) is cut off, with a warning; any other damage (a bad
///   CRC or magic anywhere, a complete record that does not decode) is an error that
///   says where and what, and the file is left untouched.
/// - A symlinked path is resolved once at open: writes, trims and renames go to the
///   target. When most records are dead the live ones are rewritten (new file + rename).
class XARM_API file_log final : public log_store {
  public:
    struct options {
        /// Create the log when it does not exist (a coordinator's first start).
        bool create = false;
        /// Rewrite when the file is larger than this and over half its records are dead.
        std::uint64_t trim_bytes = 1 << 20;
        /// For tests and benchmarks: sleep this long inside each flush, as a slow disk.
        std::chrono::microseconds extra_sync_delay{0};
    };
    file_log(const std::filesystem::path& path, std::string coordinator_id);
    file_log(const std::filesystem::path& path, std::string coordinator_id, options o);
    ~file_log() override;
    file_log(file_log&&) = delete;
    file_log& operator=(file_log&&) = delete;
    file_log(const file_log&) = delete;
    file_log& operator=(const file_log&) = delete;

    const std::string& coordinator_id() const noexcept override;
    std::string describe() const override;
    void compact() override { trim(); }

    void force(const log_record& r) override;
    void append(const log_record& r) override;
    std::vector<log_record> live() const override;
    std::vector<std::string> warnings() const override;
    std::string fail_stop() const override;
    statistics stats() const override;
    /// Rewrites the file with only the live records.
    void trim();
    /// The resolved (absolute, symlink-free) path of the log file.
    const std::filesystem::path& path() const noexcept;

  private:
    struct impl;  // the file, the pending batch and their locks
    std::unique_ptr<impl> m;
};

/// The log in a PostgreSQL table, for coordinators that must survive the loss of their
/// machine: table xarm_tm_log(coordinator, gtrid, branches) on its own connection (never
/// one enlisted in transactions). A missing table is an error naming the database and
/// the table unless options::create is set (the coordinator's first start): a recovery
/// pointed at the wrong database must never see an empty log and presume abort. A decision is an
/// INSERT committed before phase two; an end record deletes the row. Concurrent decisions share one
/// database commit (group commit). Needs no local disk. Ownership: the log's connection holds a
/// PostgreSQL advisory lock keyed on the coordinator id (hashtextextended('xarm_tm_log:' || id,
/// 0)), released by the server when the process dies; the connection's application_name is
/// "xarm-tm:<id>@<host>:<pid>". A second opener fails at once naming the holder, unless
/// options::wait_for_lock (a standby on another machine: it waits, then takes over and
/// recovers). A lost connection is reconnected with back-off and the write retried
/// (idempotently: a decision whose COMMIT was cut off is never stored twice nor taken
/// for stored); if the lock cannot be taken back, the log fails every later force() and
/// live() (fail-stop: another process owns the coordinator now).
class XARM_API table_log final : public log_store {
  public:
    struct options {
        /// Create the table when it does not exist (a coordinator's first start).
        bool create = false;
        /// Wait for the advisory lock instead of failing (standby takeover).
        bool wait_for_lock = false;
        /// With wait_for_lock: give up after this long (0: wait for ever).
        std::chrono::milliseconds lock_timeout{0};
        /// Reconnection after a lost connection: attempts and back-off.
        int reconnect_attempts = 5;
        std::chrono::milliseconds first_backoff{100};
        std::chrono::milliseconds max_backoff{2000};
    };
    /// driver: "pq" (or an ODBC driver to PostgreSQL); info: its open string.
    table_log(std::string driver, std::string info, std::string coordinator_id);
    table_log(std::string driver, std::string info, std::string coordinator_id, options o);
    ~table_log() override;
    table_log(table_log&&) = delete;
    table_log& operator=(table_log&&) = delete;
    table_log(const table_log&) = delete;
    table_log& operator=(const table_log&) = delete;
    const std::string& coordinator_id() const noexcept override;
    std::string describe() const override;
    void force(const log_record& r) override;
    void append(const log_record& r) override;
    std::vector<log_record> live() const override;
    std::vector<std::string> warnings() const override { return {}; }
    std::string fail_stop() const override;
    statistics stats() const override;
    /// Times the lost connection was re-established with the lock taken back.
    std::uint64_t reconnects() const;

  private:
    struct impl;  // the connection, the lock holder, the pending batch and their locks
    std::unique_ptr<impl> m;
};

/// Encoding of one record (magic, length, CRC-32, payload), for tools and tests.
XARM_API std::string encode_record(const log_record& r);

// ---------------------------------------------------------------------------------------
// Crash points

/// Fault injection: when the point `name` is armed (XARM_CRASH_AT=<name> or
/// set_crash_point(), optionally "<name>@<k>" for its k-th hit), the process ends with
/// _exit(99) at once: no destructors, no flushing, as a crash.
XARM_API void crash_point(std::string_view name);
/// Arms a point in this process (overrides XARM_CRASH_AT); empty disarms.
XARM_API void set_crash_point(std::string_view spec);
/// True in builds configured with -DXARM_FAULT_INJECTION=ON (tests); elsewhere crash
/// points do nothing, XARM_CRASH_AT is ignored and set_crash_point() refuses.
XARM_API bool fault_injection_enabled() noexcept;
/// Every point the manager checks, with what it simulates.
XARM_API std::vector<std::pair<std::string, std::string>> crash_points();

// ---------------------------------------------------------------------------------------
// Transactions and the coordinator

/// How a transaction ended. heuristic: the commit was decided, but a branch finished
/// otherwise or vanished (an administrator rolled it back, the resource forgot it): the
/// transaction is not atomic and an operator must look.
enum class outcome { committed, rolled_back, in_doubt, heuristic };
XARM_API const char* to_string(outcome o) noexcept;

class coordinator;
class worker_pool;

/// One global transaction. Enlist resources, do the work, commit() or rollback(). Not
/// thread-safe (one application thread drives it); destroying an unfinished transaction
/// rolls it back.
class XARM_API transaction {
  public:
    ~transaction();
    transaction(transaction&&) noexcept;
    transaction& operator=(transaction&&) = delete;
    transaction(const transaction&) = delete;
    transaction& operator=(const transaction&) = delete;

    const std::string& gtrid() const noexcept { return m_gtrid; }
    /// Begins a branch on r (kept by reference until the transaction ends); returns its
    /// xid. A second one-phase-only resource is a programming_error.
    xid enlist(resource& r);
    /// Runs before commit, in order; throwing vetoes: the transaction rolls back.
    void before_commit(std::function<void()> hook);
    /// Runs after the transaction ended, told the outcome; exceptions are swallowed.
    void after_commit(std::function<void(outcome)> hook);

    /// Commits atomically. Throws rollback_error when it rolled back (a vote, a veto,
    /// the last resource or agent refusing), operational_error with in_doubt() when the
    /// last resource's or agent's outcome is unknown (the others stay prepared; recovery
    /// resolves them with the marker), and
    /// heuristic_error (outcome::heuristic) when a decided branch finished otherwise or
    /// was gone in phase two (XAER_NOTA, a rollback, a heuristic answer), naming each
    /// branch and what its resource said. Transient answers (XA_RETRY) are retried with
    /// back-off. Returns normally once the commit is decided, even if some branches
    /// could not be told yet (connection lost): unfinished() lists them and recovery
    /// finishes them.
    void commit();
    void rollback();

    /// A transaction older than its timeout (0: none; the coordinator's by default) is
    /// rolled back at commit() at the latest, which throws rollback_error (XA_RBTIMEOUT).
    void set_timeout(std::chrono::milliseconds t) noexcept { m_timeout = t; }
    std::chrono::milliseconds timeout() const noexcept { return m_timeout; }
    bool expired() const noexcept;

    bool finished() const noexcept { return m_done; }
    std::optional<outcome> result() const noexcept { return m_outcome; }
    /// Branches left for recovery after a decided commit (connection lost in phase two).
    const std::vector<xid>& unfinished() const noexcept { return m_unfinished; }

  private:
    friend class coordinator;
    transaction(coordinator& c, std::string gtrid);
    struct member {
        resource* res;
        xid x;
        bool prepared = false;
        bool read_only = false;
        int agent_rank = 0;   // > 0: may be the last agent (resource::last_agent_rank)
        bool marker = false;  // holds the transaction's deferred marker: the last agent
    };
    void finish(outcome o);
    void rollback_members(bool swallow);
    friend class two_phase_commit;  // tm.cpp: commit()'s steps with more than one member

    coordinator* m_coord;
    std::string m_gtrid;
    std::vector<member> m_members;
    std::vector<std::function<void()>> m_before;
    std::vector<std::function<void(outcome)>> m_after;
    std::vector<xid> m_unfinished;
    // Finished markers whose deletion went with the deferred marker: given back to the
    // coordinator unless this transaction commits.
    std::vector<std::string> m_deferred_forget;
    std::optional<outcome> m_outcome;
    bool m_done = false;
    std::chrono::steady_clock::time_point m_began = std::chrono::steady_clock::now();
    std::chrono::milliseconds m_timeout{0};
};

/// Makes a resource by name for recovery (a new process must reconnect).
using resource_factory = std::function<std::unique_ptr<resource>(const std::string& name)>;

struct recovery_options {
    /// Attempts per resource while it is unreachable, with exponential back-off.
    int attempts = 5;
    std::chrono::milliseconds first_backoff{100};
    std::chrono::milliseconds max_backoff{2000};
};

/// What recovery did. Nothing is hidden: heuristic outcomes and unreachable resources
/// are listed, and complete() is false while anything remains in doubt.
struct recovery_report {
    std::vector<xid> committed;
    std::vector<xid> rolled_back;
    /// Branch + what the resource reported: a heuristic answer, or a decided branch
    /// that is gone (XAER_NOTA) while the log still holds its decision.
    std::vector<std::string> heuristic;
    std::vector<std::string> errors;     ///< resources unreachable or failing after retries
    std::vector<std::string> warnings;   ///< e.g. a torn log tail that was cut off
    std::size_t foreign_left_alone = 0;  ///< branches of other coordinators / not xarm's
    std::size_t markers_deleted = 0;
    std::size_t log_records_finished = 0;  ///< commit records closed with an end record
    bool complete() const noexcept { return heuristic.empty() && errors.empty(); }
};

/// The coordinator: an identity, a log, and the transactions it runs. Thread-safe: many
/// threads may run transactions at once (their decisions share log flushes).
class XARM_API coordinator {
  public:
    /// Finished commit markers are deleted this many at a time, with a later marker
    /// (measured on PostgreSQL: a batch of 16 cost its transaction 0.5 ms, one of 64
    /// about 1 ms: 31 against 16 us per transaction).
    static constexpr std::size_t marker_batch = 64;

    struct options {
        /// 1-16 characters [A-Za-z0-9_-]: embedded in every gtrid; recovery touches only
        /// branches that carry it. Two live processes must never share one.
        std::string id;
        /// The decision log (a file_log at log_path when null). Its coordinator_id()
        /// must be this id.
        std::shared_ptr<log_store> log;
        std::filesystem::path log_path;
        /// Recovery at construction when set (resources = names to scan).
        resource_factory factory;
        std::vector<std::string> resources;
        recovery_options recovery;
        /// With log_path: create the log file when missing (the first start). Without
        /// it a missing log is an error: a wrong path must never look like an empty log.
        bool create_log = false;
        /// Threads the coordinator keeps for running a phase on several resources at
        /// once (no thread is started per transaction; a caller whose items find no free
        /// worker runs them itself).
        std::size_t workers = 8;
        /// Transactions older than this are rolled back at commit at the latest (0: no
        /// limit); transaction::set_timeout changes it for one transaction.
        std::chrono::milliseconds transaction_timeout{0};
        /// The last-agent optimisation for transactions of two-phase resources only:
        /// "auto" (any resource whose last_agent_rank() > 0, the highest rank, the later
        /// enlisted on a tie), "off" (always prepare every resource and force the
        /// decision log), or a resource name (only that resource). A transaction with a
        /// one-phase-only resource uses it as the last resource whatever this says.
        std::string last_agent = "auto";
    };
    explicit coordinator(options o);
    ~coordinator();
    coordinator(const coordinator&) = delete;
    coordinator& operator=(const coordinator&) = delete;

    const std::string& id() const noexcept { return m_id; }
    transaction begin();
    log_store& log() noexcept { return *m_log; }
    /// The report of the recovery run at construction, if one ran.
    const std::optional<recovery_report>& startup_recovery() const noexcept { return m_startup; }

    /// Resolves every in-doubt branch of this coordinator held by the named resources
    /// (and by those the log names): commit when the log or a last resource's marker
    /// says committed, roll back otherwise (presumed abort). Branches of transactions
    /// running in this process are left to them.
    recovery_report recover(const resource_factory& make, std::vector<std::string> names,
                            const recovery_options& o = {});

    /// True when x was issued by this coordinator (format id and identity prefix).
    bool owns(const xid& x) const;
    /// Counters for tests and benchmarks.
    /// two_phase: commits through the forced decision log (or with one writer left);
    /// last_resource / last_agent: commits whose marker was the decision.
    struct statistics {
        std::uint64_t one_phase = 0, two_phase = 0, read_only_only = 0, rolled_back = 0,
                      last_resource = 0, last_agent = 0;
    };
    statistics stats() const;

  private:
    friend class transaction;
    friend class two_phase_commit;
    friend class recovery_pass;
    void forget_inflight(const std::string& gtrid);
    void finished_marker(const std::string& resource_name, const std::string& gtrid);
    /// Markers taken with take_markers() and not deleted after all (the transaction
    /// that carried their delete did not commit): back to the finished list; empties
    /// names.
    void give_back_markers(const std::string& resource_name, std::vector<std::string>& names);
    /// Finished markers of the resource to delete in passing, in batches (none while
    /// fewer than a batch wait: a delete costs the marker's commit a statement).
    std::vector<std::string> take_markers(const std::string& resource_name);
    bool may_be_last_agent(const resource& r) const;

    std::string m_id;
    std::string m_prefix;  // id + "." + instance nonce
    std::shared_ptr<log_store> m_log;
    mutable std::mutex m_mutex;
    std::uint64_t m_seq = 0;
    std::set<std::string> m_inflight;
    std::map<std::string, std::vector<std::string>> m_finished_markers;  // by resource name
    statistics m_stats;
    std::optional<recovery_report> m_startup;
    std::unique_ptr<worker_pool> m_workers;
    std::chrono::milliseconds m_timeout{0};
    std::string m_last_agent;  // "auto", "off" or a resource name
};

}  // namespace xarm::tm
