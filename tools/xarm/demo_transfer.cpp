// The transfer demo over xarm::tm, and coordinator-mode recovery with its checks.
#include "demo_transfer.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "xarm/connection.hpp"
#include "xarm/error.hpp"
#include "xarm/tm.hpp"
#include "xarm/tm_config.hpp"

namespace xarm::demo {

namespace {

struct db_spec {
    std::string name;    // resource name: "pq", "mysql", "pq2", "sqlite", "odbc", or the config's
    std::string driver;  // xarm driver
    std::string info;
    bool one_phase_only = false;
};

std::string quoted(const std::string& v) {
    std::string q = "'";
    for (char c : v) {
        if (c == '\\' || c == '\'') q += '\\';
        q += c;
    }
    return q + "'";
}

/// The coordinator's configuration: the file given, or one made from the options (the
/// databases in a fixed order, two-phase ones first, SQLite last: every transfer
/// touches them in this order, so concurrent transfers cannot deadlock across servers).
tm::config demo_config(const demo_databases& d, bool with_log) {
    if (!d.config.empty()) {
        auto c = tm::load_config(d.config);
        // A file serving several programs: --coordinator names the profile's coordinator.
        if (!d.coordinator.empty() && d.coordinator != c.coordinator_id) {
            const auto p = std::find_if(c.profiles.begin(), c.profiles.end(), [&](const auto& x) {
                return x.coordinator_id == d.coordinator || x.name == d.coordinator;
            });
            if (p != c.profiles.end()) c = tm::select_profile(c, std::string(p->name));
        }
        if (!d.coordinator.empty() && d.coordinator != c.coordinator_id)
            throw std::invalid_argument(d.config + " configures coordinator '" + c.coordinator_id +
                                        "', not '" + d.coordinator + "'");
        if (!d.last_agent.empty()) c.last_agent = d.last_agent;
        return c;
    }
    tm::config c;
    c.source = "the command line";
    c.coordinator_id = d.coordinator.empty() ? "demo" : d.coordinator;
    if (!d.last_agent.empty()) c.last_agent = d.last_agent;
    auto add = [&](const char* name, const char* driver, const std::string& info) {
        if (!info.empty()) c.resources.push_back({name, driver, info, false, 0, {}, {}});
    };
    add("pq", "pq", d.pq);
    add("mysql", "mysql", d.mysql);
    add("pq2", "pq", d.pq2);
    // Absolute, as the log: the last resource's markers must be found from anywhere.
    if (!d.sqlite.empty())
        add("sqlite", "sqlite",
            "path=" + quoted(std::filesystem::absolute(d.sqlite).string()) + " busy_timeout=20000");
    add("odbc", "odbc", d.odbc);
    if (!with_log) return c;
    if (const auto why = log_problem(d); !why.empty()) throw std::invalid_argument(why);
    if (d.log_in_pq)
        c.log.table_in = "pq";
    else
        c.log.file = std::filesystem::absolute(d.log);
    return c;
}

std::vector<db_spec> databases(const tm::config& c) {
    std::vector<db_spec> v;
    for (const auto& r : c.resources) v.push_back({r.name, r.driver, r.open, r.one_phase_only});
    return v;
}

void check_table_name(const std::string& t) {
    if (t.empty() || t.size() > 48) throw std::invalid_argument("table name: 1-48 characters");
    for (char c : t)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
            throw std::invalid_argument("table name: only [A-Za-z0-9_]");
}

connection open_db(const db_spec& s) {
    auto c = xarm::connect(s.driver, s.info);
    // Bounded lock waits: a branch left prepared by a crash holds its row locks until
    // recovery; a transfer waiting on one fails instead of hanging.
    try {
        if (s.driver == "pq")
            c.execute("SET lock_timeout = '15s'");
        else if (s.driver == "mysql")
            c.execute("SET SESSION innodb_lock_wait_timeout = 15");
        c.commit();
    } catch (const xarm::error&) {
        c.rollback();
    }
    return c;
}

/// True when table exists: one query that fails on a missing table (DROP TABLE IF EXISTS
/// and CREATE TABLE IF NOT EXISTS are not in every database's SQL: Virtuoso 7).
bool table_exists(connection& c, const std::string& table) {
    try {
        (void)c.query("SELECT COUNT(*) FROM " + table + " WHERE 1 = 0");
        c.rollback();
        return true;
    } catch (const database_error&) {
        c.rollback();  // no such table
    } catch (const programming_error&) {
        c.rollback();
    }
    return false;
}

long long scalar(connection& c, const std::string& sql) {
    const auto n = c.query(sql).scalar<std::optional<std::int64_t>>();
    c.commit();
    return n.value_or(0);
}

void setup(const demo_transfer_options& o, const std::vector<db_spec>& dbs, std::ostream& out) {
    const std::string& t = o.db.table;
    for (const auto& s : dbs) {
        auto c = open_db(s);
        for (const auto& [name, columns] :
             {std::pair<std::string, const char*>{t, "id INT PRIMARY KEY, balance BIGINT NOT NULL"},
              {t + "_journal", "transfer VARCHAR(80) PRIMARY KEY, delta BIGINT NOT NULL"}}) {
            bool exists = table_exists(c, name);
            if (exists && o.reset) {
                c.execute("DROP TABLE " + name);
                c.commit();
                exists = false;
            }
            if (!exists) {
                c.execute("CREATE TABLE " + name + " (" + columns + ")");
                c.commit();
            }
        }
        if (scalar(c, "SELECT COUNT(*) FROM " + t) == 0) {
            for (int a = 0; a < o.accounts; ++a)
                c.execute("INSERT INTO " + t + " (id, balance) VALUES (?, ?)", a,
                          o.initial_balance);
            c.commit();
            out << "  " << s.name << ": " << o.accounts << " accounts of " << o.initial_balance
                << "\n";
        }
    }
}

/// True when the account table exists in any of the databases (the demo ran before).
bool tables_exist(const std::vector<db_spec>& dbs, const std::string& table) {
    for (const auto& s : dbs) {
        auto c = open_db(s);
        if (table_exists(c, table)) return true;
    }
    return false;
}

/// The atomicity and invariant checks; returns true when they hold.
bool check(const std::string& coordinator, const std::string& t, const std::vector<db_spec>& dbs,
           std::ostream& out) {
    long long total = 0, expected = 0;
    std::map<std::string, std::vector<std::string>> seen;  // transfer -> databases
    bool ok = true;
    for (const auto& s : dbs) {
        auto c = open_db(s);
        const long long sum = scalar(c, "SELECT COALESCE(SUM(balance), 0) FROM " + t);
        const long long n = scalar(c, "SELECT COUNT(*) FROM " + t);
        const long long deltas = scalar(c, "SELECT COALESCE(SUM(delta), 0) FROM " + t + "_journal");
        // Initial balances are equal per account; the journal explains every change.
        const long long initial = sum - deltas;
        total += sum;
        expected += initial;
        auto r = c.query("SELECT transfer FROM " + t + "_journal");
        c.commit();
        for (const auto& row : r) seen[row.get<std::string>(0)].push_back(s.name);
        out << "  " << s.name << ": " << n << " accounts, balance sum " << sum << ", "
            << r.rows.size() << " transfers in the journal\n";
        // Nothing of this coordinator may stay prepared.
        std::size_t left = 0;
        if (c.capabilities().has(capability::two_phase))
            for (auto& x : c.tpc_recover())
                if (x.format_id() == tm::format_id && x.gtrid().starts_with(coordinator + "."))
                    ++left;
        if (left != 0) {
            out << "  FAIL: " << s.name << " still holds " << left
                << " in-doubt branches of coordinator '" << coordinator << "'\n";
            ok = false;
        }
    }
    std::size_t partial = 0;
    for (auto& [tr, where] : seen)
        if (where.size() != dbs.size()) {
            if (partial++ < 5)
                out << "  FAIL: transfer " << tr << " happened on " << where.size() << " of "
                    << dbs.size() << " databases\n";
        }
    if (partial) ok = false;
    // Per database, initial = sum - deltas must be accounts * initial balance, and the
    // grand total must be unchanged: money neither appeared nor vanished.
    if (total != expected) {
        out << "  FAIL: total " << total << " != " << expected << "\n";
        ok = false;
    }
    out << (ok ? "  invariant holds: " : "  invariant BROKEN: ") << "total " << total << ", "
        << seen.size() << " transfers on all " << dbs.size() << " databases, " << partial
        << " partial\n";
    return ok;
}

/// An xid of this manager as an operator looks it up: the gtrid as text (the
/// application's records may carry it), the branch number, and the exact xid.
std::string branch_text(const xid& x) {
    const auto printable = [](const std::string& v) {
        return std::all_of(v.begin(), v.end(),
                           [](unsigned char c) { return c >= 0x20 && c < 0x7f; });
    };
    if (x.is_unparsed() || !printable(x.gtrid()) || !printable(x.bqual())) return x.to_string();
    return "transaction " + x.gtrid() + " branch " + x.bqual() + " (" + x.to_string() + ")";
}

void print_report(const tm::recovery_report& r, std::ostream& out) {
    out << "recovery: " << r.committed.size() << " committed, " << r.rolled_back.size()
        << " rolled back, " << r.heuristic.size() << " heuristic, " << r.errors.size()
        << " errors, " << r.foreign_left_alone << " foreign branches left alone, "
        << r.markers_deleted << " markers deleted, " << r.log_records_finished
        << " log records finished\n";
    if (!r.committed.empty()) {
        out << "  committed (the log or the last resource's marker holds the commit decision):\n";
        for (auto& x : r.committed) out << "    " << branch_text(x) << "\n";
    }
    if (!r.rolled_back.empty()) {
        out << "  rolled back (no commit decision was recorded: presumed abort):\n";
        for (auto& x : r.rolled_back) out << "    " << branch_text(x) << "\n";
    }
    for (auto& w : r.warnings) out << "  warning: " << w << "\n";
    if (!r.heuristic.empty()) {
        out << "  HEURISTIC outcomes: the commit was decided, but these branches finished "
               "otherwise or vanished, so their transactions are not atomic. Compare the "
               "databases for these transactions and repair by hand; keep this output, a "
               "later run may not list them again:\n";
        for (auto& h : r.heuristic) out << "    HEURISTIC: " << h << "\n";
    }
    if (!r.errors.empty()) {
        out << "  errors: these resources were unreachable or failed; their branches stay "
               "prepared (holding locks) and the decisions stay in the log. Run recovery "
               "again once they are back:\n";
        for (auto& e : r.errors) out << "    error: " << e << "\n";
    }
    out << (r.complete() ? "nothing in doubt\n"
                         : "UNRESOLVED: something stays in doubt (see above)\n");
}

/// How to recover this run by hand, for messages.
std::string recover_hint(const demo_databases& d, const tm::config& c) {
    if (!d.config.empty()) return "xarm recover --config " + d.config;
    std::string h = "xarm recover --coordinator " + c.coordinator_id;
    h += c.log.file.empty() ? " --log-in-pq" : " --log " + c.log.file.string();
    return h + " with the same database options";
}

}  // namespace

std::string log_problem(const demo_databases& d) {
    if (!d.config.empty() || d.log_in_pq || !d.log.empty()) return {};
    return "no decision log given: use --log FILE (created on the demo's first start), "
           "--log-in-pq, or --config FILE. There is no default: a log looked up relative to "
           "whatever directory a program starts in is how a crash's decisions get lost";
}

bool check_invariant(const demo_databases& d, std::ostream& out) {
    const auto c = demo_config(d, false);
    return check(c.coordinator_id, d.table, databases(c), out);
}

namespace {

// One run of the demo: its workers, what they counted, and the first sign of a lost
// database (which ends the run: the other workers finish their transfer and stop).
class transfer_run {
  public:
    transfer_run(const demo_transfer_options& o, const std::vector<db_spec>& dbs,
                 tm::coordinator& coord, std::ostream& out)
        : m_o(o), m_dbs(dbs), m_coord(coord), m_out(out) {}

    void run() {
        m_t0 = std::chrono::steady_clock::now();
        std::vector<std::thread> ts;
        ts.reserve(static_cast<std::size_t>(m_o.threads));
        for (int w = 0; w < m_o.threads; ++w) ts.emplace_back([this, w] { worker(w); });
        for (auto& t : ts) t.join();
    }

    // The counts, then the exit status: unresolved (a database lost, or transfers in
    // doubt or heuristic: recovery must run), else what the invariant check says.
    int conclude(const tm::config& cfg) {
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - m_t0).count();
        const auto st = m_coord.log().stats();
        m_out << "transfers: " << m_committed << " committed, " << m_rolled_back << " rolled back, "
              << m_in_doubt << " in doubt, " << m_heuristic << " heuristic in " << secs << " s ("
              << (secs > 0 ? m_committed / secs : 0) << " tx/s); log: " << st.forced_records
              << " decisions in " << st.syncs << " flushes\n";
        if (!m_lost.empty()) {
            m_out << "demo transfer: stopped early: a database was lost during the run (" << m_lost
                  << "). " << m_in_doubt + m_unfinished
                  << " transfer(s) are known to be left for recovery, others may be prepared; "
                     "once the database is back, `"
                  << recover_hint(m_o.db, cfg)
                  << "` finishes them (then the invariant holds again)\n";
            return exit_unresolved;
        }
        if (m_in_doubt > 0 || m_heuristic > 0) {
            m_out << "demo transfer: some transfers are in doubt or heuristic: run `"
                  << recover_hint(m_o.db, cfg) << "`\n";
            return exit_unresolved;
        }
        return check(cfg.coordinator_id, m_o.db.table, m_dbs, m_out) ? exit_done : exit_broken;
    }

  private:
    void lose(const std::string& what) {
        std::lock_guard lk(m_out_mutex);
        m_out << "  " << what << "\n";
        if (m_lost.empty()) m_lost = what;
        m_stop = true;
    }

    void say(const std::string& line) {
        std::lock_guard lk(m_out_mutex);
        m_out << "  " << line << "\n";
    }

    // No exception may leave a worker (std::terminate would abort the whole process).
    void worker(int w) noexcept {
        try {
            std::mt19937 rng(m_o.seed * 7919u + static_cast<unsigned>(w));
            std::vector<std::unique_ptr<tm::connection_resource>> res;
            try {
                for (const auto& s : m_dbs)
                    res.push_back(std::make_unique<tm::connection_resource>(
                        s.name, open_db(s),
                        s.one_phase_only ? tm::connection_resource::mode::one_phase_only
                                         : tm::connection_resource::mode::automatic));
            } catch (const std::exception& e) {
                lose("worker " + std::to_string(w) + ": cannot connect: " + e.what());
                return;
            }
            while (!m_stop && m_next.fetch_add(1) < m_o.transfers) transfer(res, rng);
        } catch (const std::exception& e) {
            lose("worker " + std::to_string(w) + " stopped: " + e.what());
        } catch (...) {
            lose("worker " + std::to_string(w) + " stopped by an unknown exception");
        }
    }

    // One transfer: an amount from one database's account to another's, a journal row
    // in every database, one transaction of the manager.
    void transfer(std::vector<std::unique_ptr<tm::connection_resource>>& res, std::mt19937& rng) {
        auto t = m_coord.begin();
        // Rolls back what is left; a lost connection took its branch with it, so an error
        // here adds nothing to the one being handled.
        auto abandon = [&t] {
            try {
                if (!t.finished()) t.rollback();
            } catch (const std::exception&) {
            }
        };
        const int n = static_cast<int>(res.size());
        try {
            for (auto& r : res) t.enlist(*r);
            const int src = static_cast<int>(rng() % n);
            const int dst = (src + 1 + static_cast<int>(rng() % (n - 1))) % n;
            const auto amount = static_cast<long long>(1 + rng() % 100);
            for (int k = 0; k < n; ++k) {
                const long long delta = k == src ? -amount : k == dst ? amount : 0;
                auto& c = res[static_cast<std::size_t>(k)]->conn();
                if (delta != 0)
                    c.execute("UPDATE " + m_o.db.table + " SET balance = balance + ? WHERE id = ?",
                              delta, rng() % static_cast<unsigned>(m_o.accounts));
                c.execute(
                    "INSERT INTO " + m_o.db.table + "_journal (transfer, delta) VALUES (?, ?)",
                    t.gtrid(), delta);
            }
            t.commit();
            ++m_committed;
            if (!t.unfinished().empty()) {
                // Decided, but a database could not be told: it is gone.
                ++m_unfinished;
                lose(t.gtrid() + ": committed, " + std::to_string(t.unfinished().size()) +
                     " branch(es) left for recovery (connection lost in phase two)");
            }
        } catch (const operational_error& e) {
            (e.in_doubt() ? m_in_doubt : m_rolled_back)++;
            abandon();
            lose(t.gtrid() + (e.in_doubt() ? " in doubt: " : " rolled back: ") + e.what());
        } catch (const heuristic_error& e) {
            ++m_heuristic;
            say(t.gtrid() + " HEURISTIC: " + e.what());
        } catch (const std::exception& e) {
            ++m_rolled_back;
            abandon();
            say(t.gtrid() + " rolled back: " + e.what());
        }
    }

    const demo_transfer_options& m_o;
    const std::vector<db_spec>& m_dbs;
    tm::coordinator& m_coord;
    std::ostream& m_out;
    std::chrono::steady_clock::time_point m_t0;
    std::atomic<int> m_next{0}, m_committed{0}, m_rolled_back{0}, m_in_doubt{0}, m_unfinished{0},
        m_heuristic{0};
    std::atomic<bool> m_stop{false};
    std::mutex m_out_mutex;
    std::string m_lost;  // the first sign of a lost database (under m_out_mutex)
};

}  // namespace

int demo_transfer(const demo_transfer_options& o, std::ostream& out) {
    if (o.list_crash_points) {
        for (auto& [name, what] : tm::crash_points()) out << name << "\t" << what << "\n";
        return exit_done;
    }
    tm::config cfg;
    std::vector<db_spec> dbs;
    std::unique_ptr<tm::coordinator> coord;
    bool first_start = false;
    try {
        check_table_name(o.db.table);
        cfg = demo_config(o.db, true);
        dbs = databases(cfg);
        if (dbs.size() < 2) throw std::invalid_argument("the demo needs at least two databases");
        if (o.threads < 1 || o.transfers < 0 || o.accounts < 1)
            throw std::invalid_argument("bad counts");
        for (auto& w : cfg.warnings) out << "warning: " << w << "\n";
        out << "demo transfer: " << o.transfers << " transfers, " << o.threads << " threads over";
        for (auto& s : dbs) out << " " << s.name;
        out << "\n";
        // Start-up recovery first: a previous crash may have left branches holding locks.
        // Only the demo's first start (its tables missing, or --reset) creates the log:
        // once it ran, a missing log is a wrong path, and an empty log in its place would
        // roll back what a crash left decided. Recovery by hand never creates one.
        first_start = o.reset || !tables_exist(dbs, o.db.table);
        coord = std::make_unique<tm::coordinator>(tm::coordinator_options(cfg, first_start));
        if (auto& r = coord->startup_recovery();
            r && (!r->committed.empty() || !r->rolled_back.empty() || !r->complete()))
            print_report(*r, out);
        setup(o, dbs, out);
    } catch (const std::exception& e) {
        out << "demo transfer: setup failed: " << e.what() << "\n";
        if (!coord && !first_start && !cfg.log.file.empty() &&
            !std::filesystem::exists(cfg.log.file))
            out << "demo transfer: its tables exist, so the demo ran before with a decision "
                   "log: give that log (or --reset to start afresh)\n";
        return exit_setup;
    }
    out << "demo transfer: running as pid " << ::getpid() << ", coordinator '" << coord->id()
        << "', log " << coord->log().describe() << std::endl;
    if (!o.crash_at.empty()) tm::set_crash_point(o.crash_at);
    transfer_run r(o, dbs, *coord, out);
    r.run();
    return r.conclude(cfg);
}

int tm_recover(const tm_recover_options& o, std::ostream& out) {
    tm::config cfg;
    std::unique_ptr<tm::coordinator> coord;
    try {
        check_table_name(o.db.table);
        cfg = demo_config(o.db, true);
        for (auto& w : cfg.warnings) out << "warning: " << w << "\n";
        // Opens the log as configured (never creating it; one held by a running
        // coordinator is refused at once, naming it), then recovers every resource.
        auto co = tm::coordinator_options(cfg, false);
        co.recovery.attempts = o.attempts;
        out << "recovering coordinator '" << cfg.coordinator_id << "' from " << co.log->describe()
            << ", resources";
        for (auto& n : co.resources) out << " " << n;
        out << std::endl;
        coord = std::make_unique<tm::coordinator>(std::move(co));
    } catch (const std::exception& e) {
        out << "recover: did not start: " << e.what() << "\n";
        return exit_setup;
    }
    const auto& rep = *coord->startup_recovery();
    print_report(rep, out);
    if (!rep.complete()) return exit_unresolved;
    if (!o.check) return exit_done;
    try {
        return check(cfg.coordinator_id, o.db.table, databases(cfg), out) ? exit_done : exit_broken;
    } catch (const std::exception& e) {
        out << "recover: the check failed to run: " << e.what() << "\n";
        return exit_broken;
    }
}

}  // namespace xarm::demo
