// ODBC statements: SQLBindParameter for every backend alike (ODBC's `?` markers; the
// backend's driver binds them its way), prepared statement handles, and fields read by
// the SQL type the driver describes.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>

#include "backend.hpp"
#include "xarm/driver/scope.hpp"
#include "xarm/xa.h"

namespace xarm::odbc {

namespace {

bool is_binary_type(SQLSMALLINT t) {
    return t == SQL_BINARY || t == SQL_VARBINARY || t == SQL_LONGVARBINARY;
}

// A long value read in pieces (SQLGetData), as raw bytes (binary) or text.
std::optional<std::string> get_long(SQLHSTMT st, SQLUSMALLINT col, bool binary, SQLRETURN& rc) {
    std::string out;
    std::array<char, 4096> buf{};
    const SQLSMALLINT ctype = binary ? SQL_C_BINARY : SQL_C_CHAR;
    const std::size_t cap = binary ? buf.size() : buf.size() - 1;  // text: room for NUL
    for (;;) {
        SQLLEN ind = 0;
        rc = SQLGetData(st, col, ctype, buf.data(), static_cast<SQLLEN>(buf.size()), &ind);
        if (rc == SQL_NO_DATA) {
            rc = SQL_SUCCESS;  // everything was read by the previous calls
            break;
        }
        if (!ok(rc)) return std::nullopt;
        if (ind == SQL_NULL_DATA) return std::nullopt;
        const bool more = ind == SQL_NO_TOTAL || static_cast<std::size_t>(ind) > cap;
        out.append(buf.data(), more ? cap : static_cast<std::size_t>(ind));
        if (!more || rc == SQL_SUCCESS) break;
    }
    return out;
}

// One fixed-size field read as ctype into buf; false when NULL.
template <class T>
bool get_fixed(SQLHSTMT st, SQLUSMALLINT col, SQLSMALLINT ctype, T& buf, SQLRETURN& rc) {
    SQLLEN ind = 0;
    rc = SQLGetData(st, col, ctype, &buf, sizeof buf, &ind);
    return ok(rc) && ind != SQL_NULL_DATA;
}

struct col_info {
    SQLSMALLINT type = 0;
    bool is_unsigned = false;
    /// Integers read as text (Virtuoso's driver answers SQL_C_SBIGINT with no value).
    bool integer_as_text = false;
};

// An integer column read as text and parsed; the text itself if it is not an integer.
value read_integer_text(SQLHSTMT st, SQLUSMALLINT col, bool is_unsigned, SQLRETURN& rc) {
    auto v = get_long(st, col, false, rc);
    if (!v) return {};
    const char* end = v->data() + v->size();
    if (is_unsigned) {
        std::uint64_t u = 0;
        if (auto r = std::from_chars(v->data(), end, u); r.ec == std::errc{} && r.ptr == end)
            return u;
    } else {
        std::int64_t n = 0;
        if (auto r = std::from_chars(v->data(), end, n); r.ec == std::errc{} && r.ptr == end)
            return n;
    }
    return std::move(*v);
}

value read_cell(SQLHSTMT st, SQLUSMALLINT col, const col_info& c, SQLRETURN& rc) {
    switch (c.type) {
        case SQL_BIT: {
            unsigned char b = 0;
            if (!get_fixed(st, col, SQL_C_BIT, b, rc)) return {};
            return b != 0;
        }
        case SQL_TINYINT:
        case SQL_SMALLINT:
        case SQL_INTEGER:
        case SQL_BIGINT:
            if (c.integer_as_text) return read_integer_text(st, col, c.is_unsigned, rc);
            if (c.is_unsigned) {
                SQLUBIGINT u = 0;
                if (!get_fixed(st, col, SQL_C_UBIGINT, u, rc)) return {};
                return static_cast<std::uint64_t>(u);
            } else {
                SQLBIGINT n = 0;
                if (!get_fixed(st, col, SQL_C_SBIGINT, n, rc)) return {};
                return static_cast<std::int64_t>(n);
            }
        case SQL_REAL:
        case SQL_FLOAT:
        case SQL_DOUBLE: {
            SQLDOUBLE d = 0;
            if (!get_fixed(st, col, SQL_C_DOUBLE, d, rc)) return {};
            return static_cast<double>(d);
        }
        case SQL_TYPE_TIMESTAMP:
        case SQL_TIMESTAMP: {
            SQL_TIMESTAMP_STRUCT t{};
            if (!get_fixed(st, col, SQL_C_TYPE_TIMESTAMP, t, rc)) return {};
            using namespace std::chrono;
            const year_month_day ymd{year{t.year}, month{t.month}, day{t.day}};
            if (!ymd.ok()) return {};
            return timestamp{sys_days{ymd}} + hours{t.hour} + minutes{t.minute} +
                   seconds{t.second} + duration_cast<microseconds>(nanoseconds{t.fraction});
        }
        default: {
            auto v = get_long(st, col, is_binary_type(c.type), rc);
            if (!v) return {};
            if (is_binary_type(c.type)) {
                const auto* p = reinterpret_cast<const std::byte*>(v->data());
                return bytes(p, p + v->size());
            }
            return std::move(*v);
        }
    }
}

// The parameters in ODBC's form: buffers that stay put until the statement has run.
class bound_params {
  public:
    /// times_as_text: timestamps go as "YYYY-MM-DD HH:MM:SS.ffffff" text (the SQLite ODBC
    /// driver keeps only milliseconds of a bound SQL_TIMESTAMP_STRUCT). integers_as_text:
    /// 64-bit integers go as decimal text (Virtuoso's driver reads a bound SQL_C_SBIGINT
    /// as garbage, or as 0 in an INSERT).
    bound_params(std::span<const value> params, bool times_as_text, bool integers_as_text = false)
        : m_slots(params.size()),
          m_times_as_text(times_as_text),
          m_integers_as_text(integers_as_text) {}

    // Binds every parameter on st; false with st's diagnostic on failure.
    bool bind(SQLHSTMT st, std::span<const value> params) {
        for (std::size_t i = 0; i < params.size(); ++i)
            if (!ok(bind_one(st, static_cast<SQLUSMALLINT>(i + 1), params[i], m_slots[i],
                             m_times_as_text, m_integers_as_text)))
                return false;
        return true;
    }

  private:
    struct slot {
        SQLLEN ind = 0;
        std::string text;
        SQLBIGINT integer = 0;
        SQLDOUBLE real = 0;
        unsigned char bit = 0;
        SQL_TIMESTAMP_STRUCT ts{};
    };

    static SQLSMALLINT sql_type_of(value_type t) {
        switch (t) {
            case value_type::boolean:
                return SQL_BIT;
            case value_type::integer:
                return SQL_BIGINT;
            case value_type::real:
                return SQL_DOUBLE;
            case value_type::binary:
                return SQL_VARBINARY;
            case value_type::time:
                return SQL_TYPE_TIMESTAMP;
            default:
                return SQL_VARCHAR;
        }
    }

    static SQLRETURN bind_one(SQLHSTMT st, SQLUSMALLINT i, const value& v, slot& s,
                              bool times_as_text, bool integers_as_text) {
        auto bind = [&](SQLSMALLINT ctype, SQLSMALLINT sqltype, SQLULEN size, SQLSMALLINT digits,
                        const void* buf, SQLLEN len) {
            return SQLBindParameter(st, i, SQL_PARAM_INPUT, ctype, sqltype, size, digits,
                                    const_cast<void*>(buf), len, &s.ind);
        };
        switch (v.type()) {
            case value_type::null: {
                s.ind = SQL_NULL_DATA;
                const auto t = sql_type_of(v.null_type());
                return bind(SQL_C_CHAR, t, t == SQL_TYPE_TIMESTAMP ? 26 : 1, 0, &s.bit, 0);
            }
            case value_type::boolean:
                s.bit = v.boolean() ? 1 : 0;
                return bind(SQL_C_BIT, SQL_BIT, 1, 0, &s.bit, 0);
            case value_type::integer:
                if (integers_as_text) {
                    // As DECIMAL(20): Virtuoso's driver turns such text bound as SQL_BIGINT
                    // into 0 and as SQL_INTEGER cuts it to 32 bits.
                    s.text = std::to_string(v.integer());
                    s.ind = static_cast<SQLLEN>(s.text.size());
                    return bind(SQL_C_CHAR, SQL_DECIMAL, 20, 0, s.text.data(), s.ind);
                }
                s.integer = v.integer();
                return bind(SQL_C_SBIGINT, SQL_BIGINT, 19, 0, &s.integer, 0);
            case value_type::real:
                s.real = v.real();
                return bind(SQL_C_DOUBLE, SQL_DOUBLE, 15, 0, &s.real, 0);
            case value_type::text: {
                const auto& t = v.text();
                s.ind = static_cast<SQLLEN>(t.size());
                return bind(SQL_C_CHAR, SQL_VARCHAR, std::max<SQLULEN>(t.size(), 1), 0, t.data(),
                            s.ind);
            }
            case value_type::binary: {
                const auto& b = v.binary();
                s.ind = static_cast<SQLLEN>(b.size());
                return bind(SQL_C_BINARY, SQL_VARBINARY, std::max<SQLULEN>(b.size(), 1), 0,
                            b.empty() ? static_cast<const void*>(&s.bit) : b.data(), s.ind);
            }
            case value_type::time: {
                if (times_as_text) {
                    s.text = format_timestamp(v.time());
                    s.ind = static_cast<SQLLEN>(s.text.size());
                    return bind(SQL_C_CHAR, SQL_VARCHAR, s.text.size(), 0, s.text.data(), s.ind);
                }
                using namespace std::chrono;
                const auto t = v.time();
                const auto d = floor<days>(t);
                const year_month_day ymd{d};
                const hh_mm_ss<microseconds> tod{t - d};
                s.ts.year = static_cast<SQLSMALLINT>(static_cast<int>(ymd.year()));
                s.ts.month = static_cast<SQLUSMALLINT>(static_cast<unsigned>(ymd.month()));
                s.ts.day = static_cast<SQLUSMALLINT>(static_cast<unsigned>(ymd.day()));
                s.ts.hour = static_cast<SQLUSMALLINT>(tod.hours().count());
                s.ts.minute = static_cast<SQLUSMALLINT>(tod.minutes().count());
                s.ts.second = static_cast<SQLUSMALLINT>(tod.seconds().count());
                s.ts.fraction = static_cast<SQLUINTEGER>(tod.subseconds().count() * 1000);
                s.ind = sizeof s.ts;
                return bind(SQL_C_TYPE_TIMESTAMP, SQL_TYPE_TIMESTAMP, 26, 6, &s.ts, 0);
            }
        }
        return SQL_ERROR;
    }

    std::vector<slot> m_slots;  // sized once: the addresses ODBC keeps stay valid
    bool m_times_as_text;
    bool m_integers_as_text;
};

}  // namespace

// A prepared statement: its handle, made again after the connection is reopened.
struct prepared final : native_statement {
    prepared(session& s, std::string text) : owner(s), sql(std::move(text)) {
        owner.m_prepared.push_back(this);
    }
    ~prepared() override { std::erase(owner.m_prepared, this); }
    prepared(const prepared&) = delete;
    prepared& operator=(const prepared&) = delete;
    session& owner;
    std::string sql;
    stmt_ptr handle;
};

void session::release_statement_handles() noexcept {
    for (auto* p : m_prepared) p->handle.reset();
}

outcome session::fetch(SQLHSTMT st, bool collect) {
    outcome out;
    auto fail = [&] {
        out.failed = true;
        out.diag = read_diag(SQL_HANDLE_STMT, st);
        return out;
    };
    SQLRETURN rc = SQL_SUCCESS;
    for (;;) {
        SQLSMALLINT ncol = 0;
        if (!ok(SQLNumResultCols(st, &ncol))) return fail();
        if (ncol > 0 && collect) {
            std::vector<column> cols;
            std::vector<col_info> info;
            for (SQLUSMALLINT i = 1; i <= static_cast<SQLUSMALLINT>(ncol); ++i) {
                std::array<SQLCHAR, 256> name{};
                SQLSMALLINT name_len = 0, type = 0, digits = 0, nullable = 0;
                SQLULEN size = 0;
                if (!ok(SQLDescribeCol(st, i, name.data(), static_cast<SQLSMALLINT>(name.size()),
                                       &name_len, &type, &size, &digits, &nullable)))
                    return fail();
                std::array<SQLCHAR, 128> tname{};
                SQLSMALLINT tlen = 0;
                SQLLEN is_unsigned = SQL_FALSE;
                if (!ok(SQLColAttribute(st, i, SQL_DESC_TYPE_NAME, tname.data(),
                                        static_cast<SQLSMALLINT>(tname.size()), &tlen, nullptr)))
                    tname[0] = 0;
                if (!ok(SQLColAttribute(st, i, SQL_DESC_UNSIGNED, nullptr, 0, nullptr,
                                        &is_unsigned)))
                    is_unsigned = SQL_FALSE;
                cols.push_back({reinterpret_cast<const char*>(name.data()),
                                reinterpret_cast<const char*>(tname.data()), type});
                info.push_back({type, is_unsigned == SQL_TRUE, m_quirks.integers_as_text});
            }
            result_builder rows(std::move(cols));
            while ((rc = SQLFetch(st)) != SQL_NO_DATA) {
                if (!ok(rc)) return fail();
                rows.next_row();
                for (SQLUSMALLINT i = 1; i <= static_cast<SQLUSMALLINT>(ncol); ++i) {
                    rows.add(read_cell(st, i, info[i - 1], rc));
                    if (!ok(rc)) return fail();
                }
            }
            out.rows = rows.finish(out.rows.affected);
        } else if (ncol == 0) {
            SQLLEN n = 0;
            if (ok(SQLRowCount(st, &n)) && n >= 0) out.rows.affected = n;
        }
        rc = SQLMoreResults(st);
        if (rc == SQL_NO_DATA) break;
        if (!ok(rc)) return fail();
    }
    return out;
}

outcome session::run(std::string_view sql, bool collect) {
    return run(sql, {}, collect);
}

outcome session::run(std::string_view sql, std::span<const value> params, bool collect) {
    SQLHSTMT raw = SQL_NULL_HSTMT;
    if (!ok(SQLAllocHandle(SQL_HANDLE_STMT, m_dbc.get(), &raw)))
        return {{}, true, read_diag(SQL_HANDLE_DBC, m_dbc.get())};
    stmt_ptr st(raw);
    bound_params bound(params, m_quirks.times_as_text, m_quirks.integers_as_text);
    if (!bound.bind(st.get(), params)) return {{}, true, read_diag(SQL_HANDLE_STMT, st.get())};
    SQLRETURN rc =
        SQLExecDirect(st.get(), reinterpret_cast<SQLCHAR*>(const_cast<char*>(sql.data())),
                      static_cast<SQLINTEGER>(sql.size()));
    if (rc == SQL_NO_DATA) return {};  // a searched UPDATE/DELETE that matched no row
    if (!ok(rc)) return {{}, true, read_diag(SQL_HANDLE_STMT, st.get())};
    return fetch(st.get(), collect);
}

result session::work(const std::function<outcome()>& run_it) {
    // PEP 249: autocommit off; outside a branch the first statement begins a local
    // transaction (ODBC begins it implicitly). A prepared branch still attached to this
    // connection (MariaDB) would refuse the work: detach it first.
    if (!m_branch) {
        m_rules->release_held_branch();
        m_local = true;
    }
    auto out = run_it();
    if (out.failed) {
        note_failure(out.diag);
        raise_diag(out.diag, errors(), op::statement, "SQL error");
    }
    // Rows changed by a statement that returns none (INSERT, UPDATE, DELETE): a write.
    if (m_branch && out.rows.columns().empty() && out.rows.affected > 0) m_wrote = true;
    return std::move(out.rows);
}

std::int64_t session::execute(std::string_view sql) {
    return work([&] { return run(sql, false); }).affected;
}

result session::query(std::string_view sql) {
    return work([&] { return run(sql, true); });
}

result session::execute_params(std::string_view sql, std::span<const value> params, bool rows) {
    return work([&] { return run(sql, params, rows); });
}

std::unique_ptr<native_statement> session::prepare(std::string_view sql, std::size_t) {
    if (!m_branch) m_rules->release_held_branch();
    auto p = std::make_unique<prepared>(*this, std::string(sql));
    SQLHSTMT raw = SQL_NULL_HSTMT;
    if (!ok(SQLAllocHandle(SQL_HANDLE_STMT, m_dbc.get(), &raw)))
        raise_odbc(SQL_HANDLE_DBC, m_dbc.get(), errors(), op::statement,
                   "cannot allocate a statement handle");
    p->handle.reset(raw);
    if (!ok(SQLPrepare(raw, reinterpret_cast<SQLCHAR*>(p->sql.data()),
                       static_cast<SQLINTEGER>(p->sql.size())))) {
        // A parse error on the server aborts a PostgreSQL block like a failed statement.
        const diag_record d = read_diag(SQL_HANDLE_STMT, raw);
        note_failure(d);
        raise_diag(d, errors(), op::statement, "cannot prepare the statement");
    }
    return p;
}

result session::execute_prepared(native_statement& st, std::span<const value> params, bool rows) {
    auto& p = static_cast<prepared&>(st);
    return work([&]() -> outcome {
        if (!p.handle) {  // the connection was reopened since
            SQLHSTMT raw = SQL_NULL_HSTMT;
            if (!ok(SQLAllocHandle(SQL_HANDLE_STMT, m_dbc.get(), &raw)))
                return {{}, true, read_diag(SQL_HANDLE_DBC, m_dbc.get())};
            p.handle.reset(raw);
            if (!ok(SQLPrepare(raw, reinterpret_cast<SQLCHAR*>(p.sql.data()),
                               static_cast<SQLINTEGER>(p.sql.size())))) {
                outcome o{{}, true, read_diag(SQL_HANDLE_STMT, raw)};
                p.handle.reset();
                return o;
            }
        }
        SQLHSTMT h = p.handle.get();
        // The previous run's cursor and bindings go (the bound buffers were its own).
        SQLFreeStmt(h, SQL_CLOSE);
        SQLFreeStmt(h, SQL_RESET_PARAMS);
        bound_params bound(params, m_quirks.times_as_text, m_quirks.integers_as_text);
        const scope_exit unbind([h]() noexcept {
            SQLFreeStmt(h, SQL_CLOSE);
            SQLFreeStmt(h, SQL_RESET_PARAMS);
        });
        if (!bound.bind(h, params)) return {{}, true, read_diag(SQL_HANDLE_STMT, h)};
        const SQLRETURN rc = SQLExecute(h);
        if (rc == SQL_NO_DATA) return {};
        if (!ok(rc)) return {{}, true, read_diag(SQL_HANDLE_STMT, h)};
        return fetch(h, rows);
    });
}

}  // namespace xarm::odbc
