// The transfer demo over xarm::tm, and coordinator-mode recovery with its checks.
#include "demo_transfer.hpp"

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

namespace xarm::demo {

namespace {

struct db_spec {
    std::string name;    // resource name: "pq", "mysql", "pq2", "sqlite"
    std::string driver;  // xarm driver
    std::string info;
};

/// The databases in a fixed order (two-phase ones first, SQLite last): every transfer
/// touches them in this order, so concurrent transfers cannot deadlock across servers.
std::vector<db_spec> databases(const demo_databases& d) {
    std::vector<db_spec> v;
    if (!d.pq.empty()) v.push_back({"pq", "pq", d.pq});
    if (!d.mysql.empty()) v.push_back({"mysql", "mysql", d.mysql});
    if (!d.pq2.empty()) v.push_back({"pq2", "pq", d.pq2});
    if (!d.sqlite.empty())
        v.push_back({"sqlite", "sqlite", "path='" + d.sqlite + "' busy_timeout=20000"});
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

tm::resource_factory factory_for(const std::vector<db_spec>& dbs) {
    return [dbs](const std::string& name) -> std::unique_ptr<tm::resource> {
        for (const auto& s : dbs)
            if (s.name == name) return std::make_unique<tm::connection_resource>(name, open_db(s));
        return nullptr;
    };
}

/// The coordinator's options: identity and log (file, or a table in PostgreSQL).
tm::coordinator::options coordinator_options(const demo_databases& d) {
    tm::coordinator::options co;
    co.id = d.coordinator;
    if (d.log_in_pq) {
        if (d.pq.empty())
            throw std::invalid_argument("the log in PostgreSQL needs the pq database");
        co.log = std::make_shared<tm::table_log>("pq", d.pq, d.coordinator);
    } else {
        co.log_path = d.log;
    }
    return co;
}

std::vector<std::string> names_of(const std::vector<db_spec>& dbs) {
    std::vector<std::string> v;
    for (const auto& s : dbs) v.push_back(s.name);
    return v;
}

long long scalar(connection& c, const std::string& sql) {
    auto r = c.query(sql);
    c.commit();
    if (r.rows.empty() || r.rows[0].empty() || !r.rows[0][0]) return 0;
    return std::stoll(*r.rows[0][0]);
}

void setup(const demo_transfer_options& o, const std::vector<db_spec>& dbs, std::ostream& out) {
    const std::string& t = o.db.table;
    for (const auto& s : dbs) {
        auto c = open_db(s);
        if (o.reset) {
            c.execute("DROP TABLE IF EXISTS " + t + "_journal");
            c.execute("DROP TABLE IF EXISTS " + t);
            c.commit();
        }
        c.execute("CREATE TABLE IF NOT EXISTS " + t +
                  " (id INT PRIMARY KEY, balance BIGINT NOT NULL)");
        c.commit();
        c.execute("CREATE TABLE IF NOT EXISTS " + t +
                  "_journal (transfer VARCHAR(80) PRIMARY KEY, delta BIGINT NOT NULL)");
        c.commit();
        if (scalar(c, "SELECT COUNT(*) FROM " + t) == 0) {
            for (int a = 0; a < o.accounts; ++a)
                c.execute("INSERT INTO " + t + " (id, balance) VALUES (" + std::to_string(a) +
                          ", " + std::to_string(o.initial_balance) + ")");
            c.commit();
            out << "  " << s.name << ": " << o.accounts << " accounts of " << o.initial_balance
                << "\n";
        }
    }
}

/// The atomicity and invariant checks; returns true when they hold.
bool check(const demo_databases& d, const std::vector<db_spec>& dbs, std::ostream& out) {
    const std::string& t = d.table;
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
        for (auto& row : r.rows) seen[*row[0]].push_back(s.name);
        out << "  " << s.name << ": " << n << " accounts, balance sum " << sum << ", "
            << r.rows.size() << " transfers in the journal\n";
        // Nothing of this coordinator may stay prepared.
        std::size_t left = 0;
        if (c.capabilities().has(capability::two_phase))
            for (auto& x : c.tpc_recover())
                if (x.format_id() == tm::format_id && x.gtrid().starts_with(d.coordinator + "."))
                    ++left;
        if (left != 0) {
            out << "  FAIL: " << s.name << " still holds " << left
                << " in-doubt branches of coordinator '" << d.coordinator << "'\n";
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

void print_report(const tm::recovery_report& r, std::ostream& out) {
    out << "recovery: " << r.committed.size() << " committed, " << r.rolled_back.size()
        << " rolled back, " << r.heuristic.size() << " heuristic, " << r.errors.size()
        << " errors, " << r.foreign_left_alone << " foreign branches left alone, "
        << r.markers_deleted << " markers deleted, " << r.log_records_finished
        << " log records finished\n";
    for (auto& w : r.warnings) out << "  warning: " << w << "\n";
    for (auto& h : r.heuristic) out << "  HEURISTIC: " << h << "\n";
    for (auto& e : r.errors) out << "  error: " << e << "\n";
}

}  // namespace

int demo_transfer(const demo_transfer_options& o, std::ostream& out) {
    if (o.list_crash_points) {
        for (auto& [name, what] : tm::crash_points()) out << name << "\t" << what << "\n";
        return 0;
    }
    const auto dbs = databases(o.db);
    std::unique_ptr<tm::coordinator> coord;
    try {
        check_table_name(o.db.table);
        if (dbs.size() < 2) throw std::invalid_argument("the demo needs at least two databases");
        if (o.threads < 1 || o.transfers < 0 || o.accounts < 1)
            throw std::invalid_argument("bad counts");
        out << "demo transfer: " << o.transfers << " transfers, " << o.threads << " threads over";
        for (auto& s : dbs) out << " " << s.name;
        out << "\n";
        // Start-up recovery first: a previous crash may have left branches holding locks.
        auto co = coordinator_options(o.db);
        co.create_log = true;  // the coordinator's own start; recovery never creates one
        co.factory = factory_for(dbs);
        co.resources = names_of(dbs);
        coord = std::make_unique<tm::coordinator>(std::move(co));
        if (auto& r = coord->startup_recovery();
            r && (!r->committed.empty() || !r->rolled_back.empty() || !r->complete()))
            print_report(*r, out);
        setup(o, dbs, out);
    } catch (const std::exception& e) {
        out << "demo transfer: setup failed: " << e.what() << "\n";
        return 2;
    }
    if (!o.crash_at.empty()) tm::set_crash_point(o.crash_at);

    std::atomic<int> next{0}, committed{0}, rolled_back{0}, in_doubt{0};
    std::mutex out_mutex;
    const auto t0 = std::chrono::steady_clock::now();
    auto worker = [&](int w) {
        std::mt19937 rng(o.seed * 7919u + static_cast<unsigned>(w));
        std::vector<std::unique_ptr<tm::connection_resource>> res;
        try {
            for (auto& s : dbs)
                res.push_back(std::make_unique<tm::connection_resource>(s.name, open_db(s)));
        } catch (const std::exception& e) {
            std::lock_guard lk(out_mutex);
            out << "  worker " << w << ": cannot connect: " << e.what() << "\n";
            return;
        }
        const int n = static_cast<int>(dbs.size());
        while (next.fetch_add(1) < o.transfers) {
            auto t = coord->begin();
            try {
                for (auto& r : res) t.enlist(*r);
                const int src = static_cast<int>(rng() % n);
                const int dst = (src + 1 + static_cast<int>(rng() % (n - 1))) % n;
                const long long amount = 1 + rng() % 100;
                for (int k = 0; k < n; ++k) {
                    const long long delta = k == src ? -amount : k == dst ? amount : 0;
                    auto& c = res[static_cast<std::size_t>(k)]->conn();
                    if (delta != 0)
                        c.execute("UPDATE " + o.db.table + " SET balance = balance + " +
                                  std::to_string(delta) + " WHERE id = " +
                                  std::to_string(rng() % static_cast<unsigned>(o.accounts)));
                    c.execute("INSERT INTO " + o.db.table + "_journal (transfer, delta) VALUES ('" +
                              t.gtrid() + "', " + std::to_string(delta) + ")");
                }
                t.commit();
                ++committed;
            } catch (const operational_error& e) {
                (e.in_doubt() ? in_doubt : rolled_back)++;
                if (!t.finished()) t.rollback();
                std::lock_guard lk(out_mutex);
                out << "  " << t.gtrid() << ": " << e.what() << "\n";
            } catch (const std::exception& e) {
                ++rolled_back;
                try {
                    if (!t.finished()) t.rollback();
                } catch (const std::exception&) {
                }
                std::lock_guard lk(out_mutex);
                out << "  " << t.gtrid() << " rolled back: " << e.what() << "\n";
            }
        }
    };
    std::vector<std::thread> ts;
    for (int w = 0; w < o.threads; ++w) ts.emplace_back(worker, w);
    for (auto& t : ts) t.join();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto st = coord->log().stats();
    out << "transfers: " << committed << " committed, " << rolled_back << " rolled back, "
        << in_doubt << " in doubt in " << secs << " s (" << (secs > 0 ? committed / secs : 0)
        << " tx/s); log: " << st.forced_records << " decisions in " << st.syncs << " flushes\n";
    if (in_doubt > 0) {
        out << "some transfers are in doubt: run `xarm recover --coordinator` to finish them\n";
        return 1;
    }
    return check(o.db, dbs, out) ? 0 : 1;
}

int tm_recover(const tm_recover_options& o, std::ostream& out) {
    const auto dbs = databases(o.db);
    std::unique_ptr<tm::coordinator> coord;
    tm::recovery_report rep;
    try {
        check_table_name(o.db.table);
        coord = std::make_unique<tm::coordinator>(coordinator_options(o.db));
        tm::recovery_options ro;
        ro.attempts = o.attempts;
        rep = coord->recover(factory_for(dbs), names_of(dbs), ro);
    } catch (const std::exception& e) {
        out << "recover: " << e.what() << "\n";
        return 3;
    }
    print_report(rep, out);
    if (!rep.complete()) return 1;
    if (!o.check) return 0;
    try {
        return check(o.db, dbs, out) ? 0 : 2;
    } catch (const std::exception& e) {
        out << "recover: check failed to run: " << e.what() << "\n";
        return 2;
    }
}

}  // namespace xarm::demo
