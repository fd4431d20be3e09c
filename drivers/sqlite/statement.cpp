// SQLite statements with bound parameters (sqlite3_bind_*), prepared statements kept
// compiled (SQLITE_PREPARE_PERSISTENT), and fields read as SQLite's storage classes.
#include <fmt/format.h>

#include "sqlite.hpp"
#include "xarm/driver/scope.hpp"
#include "xarm/xa.h"

namespace xarm::sqlite {

namespace {

// Binds one parameter; text and binary data stay where they are until the statement is
// reset (SQLITE_STATIC).
int bind(sqlite3_stmt* st, int i, const value& v) {
    switch (v.type()) {
        case value_type::null:
            return sqlite3_bind_null(st, i);
        case value_type::boolean:
            return sqlite3_bind_int(st, i, v.boolean() ? 1 : 0);
        case value_type::integer:
            return sqlite3_bind_int64(st, i, v.integer());
        case value_type::real:
            return sqlite3_bind_double(st, i, v.real());
        case value_type::text:
            return sqlite3_bind_text64(st, i, v.text().data(), v.text().size(), SQLITE_STATIC,
                                       SQLITE_UTF8);
        case value_type::binary:
            // A null data pointer would bind NULL: an empty blob is a zero-length blob.
            if (v.binary().empty()) return sqlite3_bind_zeroblob(st, i, 0);
            return sqlite3_bind_blob64(st, i, v.binary().data(), v.binary().size(), SQLITE_STATIC);
        case value_type::time: {
            // SQLite keeps times as text its date functions read.
            const std::string t = format_timestamp(v.time());
            return sqlite3_bind_text64(st, i, t.data(), t.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
        }
    }
    return SQLITE_MISUSE;
}

value cell(sqlite3_stmt* st, int i) {
    switch (sqlite3_column_type(st, i)) {
        case SQLITE_INTEGER:
            return sqlite3_column_int64(st, i);
        case SQLITE_FLOAT:
            return sqlite3_column_double(st, i);
        case SQLITE_TEXT:
            return std::string_view(reinterpret_cast<const char*>(sqlite3_column_text(st, i)),
                                    static_cast<std::size_t>(sqlite3_column_bytes(st, i)));
        case SQLITE_BLOB: {
            const auto* p = static_cast<const std::byte*>(sqlite3_column_blob(st, i));
            return bytes(p, p + sqlite3_column_bytes(st, i));
        }
        default:
            return {};
    }
}

const char* fundamental_name(int t) {
    switch (t) {
        case SQLITE_INTEGER:
            return "INTEGER";
        case SQLITE_FLOAT:
            return "REAL";
        case SQLITE_TEXT:
            return "TEXT";
        case SQLITE_BLOB:
            return "BLOB";
        default:
            return "";
    }
}

}  // namespace

result session::run(sqlite3_stmt* st, std::span<const value> params, bool collect) {
    // Leave the statement reset and unbound whatever happens: bound data is not ours.
    const scope_exit reset([st]() noexcept {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    });
    for (std::size_t i = 0; i < params.size(); ++i) {
        const int rc = bind(st, static_cast<int>(i + 1), params[i]);
        if (rc != SQLITE_OK)
            raise_sqlite(m_db, rc, XAER_RMERR, fmt::format("binding parameter {}", i + 1));
    }
    const int ncol = sqlite3_column_count(st);
    int rc = sqlite3_step(st);
    // The columns, once the first row tells the fundamental type of each.
    std::vector<column> cols;
    for (int i = 0; collect && i < ncol; ++i) {
        const char* decl = sqlite3_column_decltype(st, i);
        const int t = rc == SQLITE_ROW ? sqlite3_column_type(st, i) : 0;
        cols.push_back(
            {sqlite3_column_name(st, i), decl != nullptr ? decl : fundamental_name(t), t});
    }
    result_builder out(std::move(cols));
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        if (!collect) continue;
        out.next_row();
        for (int i = 0; i < ncol; ++i) out.add(cell(st, i));
    }
    if (rc != SQLITE_DONE) raise_sqlite(m_db, rc, XAER_RMERR, "SQL error");
    return out.finish(sqlite3_stmt_readonly(st) ? 0 : sqlite3_changes64(m_db));
}

session::stmt_ptr session::compile(std::string_view sql, unsigned flags) {
    sqlite3_stmt* raw = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(m_db, sql.data(), static_cast<int>(sql.size()), flags, &raw, &tail);
    stmt_ptr st(raw, &sqlite3_finalize);
    if (rc != SQLITE_OK) raise_sqlite(m_db, rc, XAER_RMERR, "SQL error");
    if (!st) raise(XAER_INVAL, "42601", "the statement is empty");
    // What follows may only be whitespace and comments.
    const char* end = sql.data() + sql.size();
    sqlite3_stmt* next = nullptr;
    rc = sqlite3_prepare_v2(m_db, tail, static_cast<int>(end - tail), &next, nullptr);
    stmt_ptr more(next, &sqlite3_finalize);
    if (rc != SQLITE_OK || more)
        raise(XAER_INVAL, "42601", "a statement with parameters must be a single statement");
    return st;
}

result session::execute_params(std::string_view sql, std::span<const value> params, bool rows) {
    auto st = compile(sql, 0);
    begin_local_if_needed();
    return run(st.get(), params, rows);
}

namespace {
struct prepared final : native_statement {
    explicit prepared(std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> s)
        : st(std::move(s)) {}
    std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> st;
};
}  // namespace

std::unique_ptr<native_statement> session::prepare(std::string_view sql, std::size_t) {
    return std::make_unique<prepared>(compile(sql, SQLITE_PREPARE_PERSISTENT));
}

result session::execute_prepared(native_statement& st, std::span<const value> params, bool rows) {
    begin_local_if_needed();
    return run(static_cast<prepared&>(st).st.get(), params, rows);
}

}  // namespace xarm::sqlite
