// The transaction manager's decision log in a database table (e.g. PostgreSQL), with
// group commit: concurrent decisions go in one multi-row INSERT and one COMMIT.
#include <fmt/format.h>
#include <algorithm>
#include <cctype>

#include "xa.h"
#include "xarm/tm.hpp"

namespace xarm::tm {

namespace {

/// Everything that reaches SQL is hex or a validated id.
std::string encode_branches(const log_record& r) {
    std::string s;
    for (const auto& [name, bqual] : r.branches) {
        if (!s.empty()) s += ",";
        s += hex_encode(name) + ":" + hex_encode(bqual);
    }
    return s;
}
}  // namespace

table_log::table_log(std::string driver, std::string info, std::string coordinator_id)
    : table_log(std::move(driver), std::move(info), std::move(coordinator_id), options{}) {}

table_log::table_log(std::string driver, std::string info, std::string coordinator_id, options o)
    : m_id(std::move(coordinator_id)),
      m_driver(std::move(driver)),
      m_info(std::move(info)),
      m_opts(o),
      m_conn(xarm::connect(m_driver, m_info)) {
    if (m_id.empty() || m_id.size() > 16 || !std::all_of(m_id.begin(), m_id.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
        }))
        raise(XAER_INVAL, "22023",
              "tm: the coordinator id must be 1-16 characters of [A-Za-z0-9_-]");
    try {
        m_conn.execute(
            "CREATE TABLE IF NOT EXISTS xarm_tm_log (coordinator VARCHAR(16) NOT NULL, gtrid "
            "VARCHAR(200) NOT "
            "NULL, branches VARCHAR(4000) NOT NULL, PRIMARY KEY (coordinator, gtrid))");
        m_conn.commit();
    } catch (const error& e) {
        diagnostic d = e.diag();
        d.message = "tm: cannot create the log table xarm_tm_log: " + d.message;
        raise(std::move(d));
    }
}

table_log::~table_log() {
    std::lock_guard db(m_db_mutex);
    std::lock_guard lk(m_mutex);
    try {
        flush_ends();
    } catch (const std::exception&) {
        // end records are optional
    }
}

void table_log::flush_ends() {
    if (m_ends.empty()) return;
    std::string in;
    for (const auto& g : m_ends) in += (in.empty() ? "'" : ",'") + hex_encode(g) + "'";
    m_conn.execute("DELETE FROM xarm_tm_log WHERE coordinator = '" + m_id + "' AND gtrid IN (" +
                   in + ")");
    m_conn.commit();
    m_ends.clear();
}

void table_log::force(const log_record& r) {
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
        auto ends = std::move(m_ends);
        m_ends.clear();
        lk.unlock();
        std::string err;
        {
            std::lock_guard db(m_db_mutex);
            try {
                if (!ends.empty()) {
                    std::string in;
                    for (const auto& g : ends)
                        in += (in.empty() ? "'" : ",'") + hex_encode(g) + "'";
                    m_conn.execute("DELETE FROM xarm_tm_log WHERE coordinator = '" + m_id +
                                   "' AND gtrid IN (" + in + ")");
                }
                std::string values;
                for (const auto& rec : b->records)
                    values += fmt::format("{}('{}','{}','{}')", values.empty() ? "" : ",", m_id,
                                          hex_encode(rec.gtrid), encode_branches(rec));
                m_conn.execute("INSERT INTO xarm_tm_log (coordinator, gtrid, branches) VALUES " +
                               values);
                m_conn.commit();
            } catch (const std::exception& e) {
                err = e.what();
                try {
                    m_conn.rollback();
                } catch (const std::exception&) {
                }
            }
        }
        lk.lock();
        b->done = true;
        b->error = err;
        if (err.empty()) ++m_stats.syncs;
        m_flushing = false;
        m_cv.notify_all();
    }
    if (!mine->error.empty())
        raise(XAER_RMFAIL, "08006",
              "tm: the decision could not be stored in xarm_tm_log: " + mine->error);
}

void table_log::append(const log_record& r) {
    if (r.type != log_record::kind::end) return force(r);
    std::unique_lock lk(m_mutex);
    m_ends.push_back(r.gtrid);
    if (m_flushing || m_ends.size() < 32) return;
    m_flushing = true;
    lk.unlock();
    {
        std::lock_guard db(m_db_mutex);
        std::lock_guard again(m_mutex);
        try {
            flush_ends();
        } catch (const std::exception&) {
            try {
                m_conn.rollback();
            } catch (const std::exception&) {
            }
        }
        m_flushing = false;
    }
    m_cv.notify_all();
}

std::vector<log_record> table_log::live() const {
    std::set<std::string> ended;
    {
        std::lock_guard lk(m_mutex);
        ended.insert(m_ends.begin(), m_ends.end());
    }
    std::lock_guard db(m_db_mutex);
    auto res =
        m_conn.query("SELECT gtrid, branches FROM xarm_tm_log WHERE coordinator = '" + m_id + "'");
    m_conn.commit();
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

std::string table_log::describe() const {
    return fmt::format("table xarm_tm_log (coordinator '{}', driver {})", m_id, m_driver);
}

log_store::statistics table_log::stats() const {
    std::lock_guard lk(m_mutex);
    return m_stats;
}

}  // namespace xarm::tm
