// MySQL/MariaDB statements with bound parameters through Connector/C++'s
// PreparedStatement (the server's binary protocol: no value ever reaches the SQL text),
// kept per connection, and result sets decoded by column type.
#include <cppconn/datatype.h>
#include <cppconn/resultset_metadata.h>
#include <fmt/format.h>

#include <sstream>

#include "mysql.hpp"
#include "xarm/driver/scope.hpp"
#include "xarm/xa.h"

namespace xarm::mysql {

sql::PreparedStatement& link::statement_for(const std::string& sql) {
    if (auto it = statements.find(sql); it != statements.end()) return *it->second;
    if (statements.size() >= max_statements) {
        statements.erase(statement_order.front());
        statement_order.pop_front();
    }
    std::unique_ptr<sql::PreparedStatement> ps(conn->prepareStatement(sql));
    statement_order.push_back(sql);
    return *statements.emplace(sql, std::move(ps)).first->second;
}

void link::forget_statement(const std::string& sql) {
    statements.erase(sql);
    std::erase(statement_order, sql);
}

void link::close() noexcept {
    statements.clear();
    statement_order.clear();
    stmt.reset();
    conn.reset();
    ticket.reset();
}

namespace {

value cell(sql::ResultSet& rs, sql::ResultSetMetaData& md, unsigned i) {
    if (rs.isNull(i)) return {};
    switch (md.getColumnType(i)) {
        case sql::DataType::BIT:
            return rs.getUInt64(i);
        case sql::DataType::TINYINT:
        case sql::DataType::SMALLINT:
        case sql::DataType::MEDIUMINT:
        case sql::DataType::INTEGER:
        case sql::DataType::BIGINT:
        case sql::DataType::YEAR:
            if (md.isSigned(i)) return rs.getInt64(i);
            return rs.getUInt64(i);  // above 2^63-1: kept as decimal text
        case sql::DataType::REAL:
        case sql::DataType::DOUBLE:
            return static_cast<double>(rs.getDouble(i));
        case sql::DataType::BINARY:
        case sql::DataType::VARBINARY:
        case sql::DataType::LONGVARBINARY:
        case sql::DataType::GEOMETRY: {
            const std::string b = rs.getString(i).asStdString();
            const auto* p = reinterpret_cast<const std::byte*>(b.data());
            return bytes(p, p + b.size());
        }
        case sql::DataType::TIMESTAMP: {
            // DATETIME and TIMESTAMP; a zero date ("0000-00-00 ...") stays text.
            std::string t = rs.getString(i).asStdString();
            if (auto ts = parse_timestamp(t)) return *ts;
            return t;
        }
        default:
            return rs.getString(i).asStdString();
    }
}

// Binds params on ps; binary data is read from streams that must live until execute().
void bind(sql::PreparedStatement& ps, std::span<const value> params,
          std::vector<std::unique_ptr<std::istringstream>>& streams) {
    for (unsigned i = 1; i <= params.size(); ++i) {
        const value& v = params[i - 1];
        switch (v.type()) {
            case value_type::null:
                ps.setNull(i, sql::DataType::SQLNULL);
                break;
            case value_type::boolean:
                ps.setBoolean(i, v.boolean());
                break;
            case value_type::integer:
                ps.setInt64(i, v.integer());
                break;
            case value_type::real:
                ps.setDouble(i, v.real());
                break;
            case value_type::text:
                ps.setString(i, v.text());
                break;
            case value_type::binary: {
                const auto& b = v.binary();
                streams.push_back(std::make_unique<std::istringstream>(
                    std::string(reinterpret_cast<const char*>(b.data()), b.size())));
                ps.setBlob(i, streams.back().get());
                break;
            }
            case value_type::time:
                ps.setDateTime(i, format_timestamp(v.time()));
                break;
        }
    }
}

result run_prepared(sql::PreparedStatement& ps, std::span<const value> params, bool rows) {
    std::vector<std::unique_ptr<std::istringstream>> streams;
    // The statement keeps pointers to the streams: unbind them whatever happens.
    const scope_exit unbind([&ps]() noexcept {
        try {
            ps.clearParameters();
        } catch (...) {
            // The connection is gone: so is the statement.
        }
    });
    bind(ps, params, streams);
    // The statement's result columns are known since it was prepared (no round trip);
    // Connector/C++ has no update count for prepared statements but executeUpdate's.
    if (ps.getMetaData()->getColumnCount() > 0) {
        std::unique_ptr<sql::ResultSet> rs(ps.executeQuery());
        if (rows) return read_rows(*rs, 0);
        return {};
    }
    return result_builder().finish(ps.executeUpdate());
}

// A cached statement the schema outgrew (a result's columns changed: client error 2057;
// the server's ER_NEED_REPREPARE, 1615) leaves the cache: it fails this once, and the
// next execution prepares it afresh instead of failing on that connection for good.
result run_cached(link& l, const std::string& text, std::span<const value> params, bool rows) {
    try {
        return run_prepared(l.statement_for(text), params, rows);
    } catch (const sql::SQLException& e) {
        const unsigned n = errnum_of(e);
        if (n == 2057 || n == 1615) l.forget_statement(text);
        throw;
    }
}

// A prepared statement is its text: each connection the session works on prepares it
// once (link::statements).
struct prepared final : native_statement {
    explicit prepared(std::string s) : sql(std::move(s)) {}
    std::string sql;
};

}  // namespace

result read_rows(sql::ResultSet& rs, std::int64_t affected) {
    sql::ResultSetMetaData* md = rs.getMetaData();
    const unsigned n = md->getColumnCount();
    std::vector<column> cols;
    for (unsigned i = 1; i <= n; ++i)
        cols.push_back({md->getColumnLabel(i).asStdString(), md->getColumnTypeName(i).asStdString(),
                        md->getColumnType(i)});
    result_builder out(std::move(cols));
    out.reserve(rs.rowsCount());
    while (rs.next()) {
        out.next_row();
        for (unsigned i = 1; i <= n; ++i) out.add(cell(rs, *md, i));
    }
    return out.finish(affected);
}

result session::execute_params(std::string_view sql, std::span<const value> params, bool rows) {
    const std::string text(sql);
    return work([&](link& l) { return run_cached(l, text, params, rows); });
}

std::unique_ptr<native_statement> session::prepare(std::string_view sql, std::size_t) {
    auto st = std::make_unique<prepared>(std::string(sql));
    // Preparing is no statement of a transaction: it begins none.
    if (!m_branch) ensure_free_link();
    std::lock_guard g(m_link->mu);
    if (!m_link->conn || m_link->lost)
        raise(XAER_RMFAIL, "08003", "the connection to the server was lost earlier");
    try {
        m_link->statement_for(st->sql);
    } catch (const sql::SQLException& e) {
        if (is_connection_lost(errnum_of(e))) m_link->lost = true;
        raise_sql(e, XAER_RMERR, "cannot prepare the statement");
    }
    return st;
}

result session::execute_prepared(native_statement& st, std::span<const value> params, bool rows) {
    const auto& text = static_cast<prepared&>(st).sql;
    return work([&](link& l) { return run_cached(l, text, params, rows); });
}

}  // namespace xarm::mysql
