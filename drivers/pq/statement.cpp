// PostgreSQL statements with bound parameters (PQsendQueryParams, PQprepare,
// PQsendQueryPrepared) and results decoded by type OID.
//
// Parameters go in text format. Integers, reals and booleans carry their type, as the
// same value written in the SQL would (5 is an int4, 5000000000 an int8, a real a
// float8; psycopg 3 types them too), so that a bare "SELECT ?" returns 5, not '5'; the
// server casts an int4 up to int8 or numeric where the context asks. Text and timestamps
// leave the type to the server (OID 0, as for a quoted literal), so that a string binds
// to any column type and a timestamp ("...+00") to timestamp or timestamptz; binary data
// goes in binary format as bytea. A prepared statement is parsed once more for each set
// of parameter types it is executed with. A statement that would begin a transaction
// (PEP 249: the first statement does) takes its BEGIN along in one pipeline: one round
// trip.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <iterator>
#include <limits>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "pq.hpp"
#include "xarm/driver/codec.hpp"
#include "xarm/xa.h"

namespace xarm::pq {

namespace {

constexpr Oid bool_oid = 16;
constexpr Oid bytea_oid = 17;
constexpr Oid int8_oid = 20;
constexpr Oid int4_oid = 23;
constexpr Oid float8_oid = 701;

// The parameters in libpq's arrays. Text lives in the values themselves or in texts.
struct wire_params {
    std::vector<const char*> values;
    std::vector<int> lengths;
    std::vector<int> formats;
    std::vector<Oid> types;
    // At most one text per parameter, and reserved: never reallocated, so the c_str()
    // pointers in values stay valid (a deque would cost two allocations per statement).
    std::vector<std::string> texts;

    explicit wire_params(std::span<const value> params) {
        const std::size_t n = params.size();
        texts.reserve(n);
        values.resize(n);
        lengths.resize(n);
        formats.resize(n);
        types.resize(n);
        for (std::size_t i = 0; i < n; ++i) add(i, params[i]);
    }

    int count() const { return static_cast<int>(values.size()); }

  private:
    const char* keep(std::string s) { return texts.emplace_back(std::move(s)).c_str(); }

    void add(std::size_t i, const value& v) {
        switch (v.type()) {
            case value_type::null:
                values[i] = nullptr;
                return;
            case value_type::boolean:
                values[i] = v.boolean() ? "true" : "false";
                types[i] = bool_oid;
                return;
            case value_type::integer: {
                const std::int64_t n = v.integer();
                values[i] = keep(std::to_string(n));
                using int4 = std::numeric_limits<std::int32_t>;
                types[i] = n >= int4::min() && n <= int4::max() ? int4_oid : int8_oid;
                return;
            }
            case value_type::real: {
                const double d = v.real();
                types[i] = float8_oid;
                if (std::isnan(d)) {
                    values[i] = "NaN";
                } else if (std::isinf(d)) {
                    values[i] = d > 0 ? "Infinity" : "-Infinity";
                } else {
                    char buf[32];
                    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
                    values[i] = keep(std::string(buf, ec == std::errc() ? end : buf));
                }
                return;
            }
            case value_type::text:
                // Text-format parameters end at the first NUL, which PostgreSQL text
                // cannot hold anyway: say so rather than cut the value short.
                if (v.text().find('\0') != std::string::npos)
                    raise(XAER_RMERR, "22021",
                          fmt::format("parameter {}: PostgreSQL text cannot contain the NUL "
                                      "character (bind binary data as xarm::bytes)",
                                      i + 1));
                values[i] = v.text().c_str();
                return;
            case value_type::binary:
                // A null pointer would be SQL NULL: an empty value points at "".
                values[i] =
                    v.binary().empty() ? "" : reinterpret_cast<const char*>(v.binary().data());
                lengths[i] = static_cast<int>(v.binary().size());
                formats[i] = 1;
                types[i] = bytea_oid;
                return;
            case value_type::time:
                values[i] = keep(format_timestamp(v.time()) + "+00");
                return;
        }
    }
};

std::optional<bytes> decode_bytea(std::string_view t) {
    if (t.starts_with("\\x")) {
        auto raw = hex_decode(t.substr(2));
        if (!raw) return std::nullopt;
        const auto* p = reinterpret_cast<const std::byte*>(raw->data());
        return bytes(p, p + raw->size());
    }
    // bytea_output = escape: \\ is a backslash, \ooo an octal byte, the rest as is.
    bytes out;
    for (std::size_t i = 0; i < t.size(); ++i) {
        if (t[i] != '\\') {
            out.push_back(static_cast<std::byte>(t[i]));
        } else if (i + 1 < t.size() && t[i + 1] == '\\') {
            out.push_back(std::byte{'\\'});
            ++i;
        } else if (i + 3 < t.size()) {
            int v = 0;
            for (std::size_t k = 1; k <= 3; ++k) {
                if (t[i + k] < '0' || t[i + k] > '7') return std::nullopt;
                v = v * 8 + (t[i + k] - '0');
            }
            out.push_back(static_cast<std::byte>(v));
            i += 3;
        } else {
            return std::nullopt;
        }
    }
    return out;
}

value decode_cell(Oid type, std::string_view t) {
    switch (type) {
        case 16:  // bool
            return t == "t";
        case 20:  // int8
        case 21:  // int2
        case 23:  // int4
        case 26:  // oid
        {
            std::int64_t n = 0;
            auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
            if (ec == std::errc() && end == t.data() + t.size()) return n;
            break;
        }
        case 700:  // float4
        case 701:  // float8
            return value(t).get<double>();
        case bytea_oid:
            if (auto b = decode_bytea(t)) return std::move(*b);
            break;
        case 1114:  // timestamp
        case 1184:  // timestamptz
            // 'infinity', BC dates and non-ISO DateStyles stay text.
            if (auto ts = parse_timestamp(t)) return *ts;
            break;
        default:
            break;
    }
    return t;
}

}  // namespace

std::string type_name_of(Oid oid) {
    static constexpr std::pair<Oid, const char*> names[] = {
        {16, "bool"},     {17, "bytea"},       {18, "char"},          {19, "name"},
        {20, "int8"},     {21, "int2"},        {23, "int4"},          {25, "text"},
        {26, "oid"},      {114, "json"},       {142, "xml"},          {650, "cidr"},
        {700, "float4"},  {701, "float8"},     {705, "unknown"},      {790, "money"},
        {829, "macaddr"}, {869, "inet"},       {1007, "_int4"},       {1009, "_text"},
        {1016, "_int8"},  {1042, "bpchar"},    {1043, "varchar"},     {1082, "date"},
        {1083, "time"},   {1114, "timestamp"}, {1184, "timestamptz"}, {1186, "interval"},
        {1266, "timetz"}, {1560, "bit"},       {1562, "varbit"},      {1700, "numeric"},
        {2249, "record"}, {2950, "uuid"},      {3802, "jsonb"},
    };
    for (const auto& [o, n] : names)
        if (o == oid) return n;
    return fmt::format("oid {}", oid);
}

result decode(const PGresult* r, bool rows) {
    std::int64_t affected = 0;
    const char* n = PQcmdTuples(const_cast<PGresult*>(r));
    std::from_chars(n, n + std::char_traits<char>::length(n), affected);
    if (!rows) return result_builder().finish(affected);
    const int ncol = PQnfields(r);
    std::vector<column> cols;
    std::vector<Oid> types;
    for (int j = 0; j < ncol; ++j) {
        types.push_back(PQftype(r, j));
        cols.push_back(
            {PQfname(r, j), type_name_of(types.back()), static_cast<long>(types.back())});
    }
    result_builder out(std::move(cols));
    const int nrow = PQntuples(r);
    out.reserve(static_cast<std::size_t>(nrow));
    for (int i = 0; i < nrow; ++i) {
        out.next_row();
        for (int j = 0; j < ncol; ++j) {
            if (PQgetisnull(r, i, j)) {
                out.add({});
            } else {
                out.add(
                    decode_cell(types[static_cast<std::size_t>(j)],
                                std::string_view(PQgetvalue(r, i, j),
                                                 static_cast<std::size_t>(PQgetlength(r, i, j)))));
            }
        }
    }
    return out.finish(affected);
}

result_ptr session::collect(const std::function<int()>& send) {
    if (!send()) return nullptr;
    result_ptr out;
    while (PGresult* x = PQgetResult(m_conn.get())) {
        result_ptr r(x);
        if (!out || succeeded(out.get())) out = std::move(r);  // the first error stays
    }
    return out;
}

result_ptr session::collect_after_begin(const std::function<int()>& send) {
    PGconn* c = m_conn.get();
    std::optional<deferred> d = std::exchange(m_deferred, std::nullopt);
    if (!PQenterPipelineMode(c)) return nullptr;
    std::optional<wire_params> dw;
    if (d) dw.emplace(d->params);
    const bool queued = PQsendQueryParams(c, "BEGIN", 0, nullptr, nullptr, nullptr, nullptr, 0);
    const bool d_queued =
        queued && (!d || PQsendQueryPrepared(c, d->name.c_str(), dw->count(), dw->values.data(),
                                             dw->lengths.data(), dw->formats.data(), 0));
    const bool stmt_queued = d_queued && send && send();
    // The sync point goes out even when a statement could not be queued: it flushes
    // what was and ends the pipeline.
    const std::size_t queries = 1 + (d ? 1 : 0) + (send ? 1 : 0);
    std::vector<result_ptr> slots(queries);
    if (queued && PQpipelineSync(c)) {
        // Each query's results end with a null; the sync point ends the pipeline.
        std::size_t query = 0;
        for (;;) {
            PGresult* x = PQgetResult(c);
            if (x == nullptr) {
                if (++query > queries || PQstatus(c) == CONNECTION_BAD) break;
                continue;
            }
            result_ptr r(x);
            if (PQresultStatus(x) == PGRES_PIPELINE_SYNC) break;
            if (query >= queries) continue;
            auto& slot = slots[query];
            if (!slot || succeeded(slot.get())) slot = std::move(r);  // the first error stays
        }
    }
    PQexitPipelineMode(c);
    if (slots[0] && !succeeded(slots[0].get())) return std::move(slots[0]);
    if (d) {
        auto& dr = slots[1];
        if (!dr || !succeeded(dr.get())) {
            // Deallocated by the application (26000): parse it anew next time.
            if (dr && read_error(c, dr.get()).sqlstate == "26000") m_defer_names.clear();
            return d_queued ? std::move(dr) : nullptr;
        }
        if (!send) return std::move(dr);
    }
    return stmt_queued ? std::move(slots.back()) : nullptr;
}

void session::flush_deferred() {
    if (!m_deferred || !m_pending_begin) return;
    m_pending_begin = false;
    const auto before = status();
    result_ptr r = collect_after_begin({});
    if (!succeeded(r.get()) && before != PQTRANS_INERROR)
        m_abort = read_error(m_conn.get(), r.get());
}

std::string session::deferred_text() {
    std::string out = "EXECUTE " + m_deferred->name;
    const char* sep = "(";
    for (const auto& v : m_deferred->params) {
        out += sep;
        sep = ", ";
        switch (v.type()) {
            case value_type::null:
                out += "NULL";
                break;
            case value_type::boolean:
                out += v.boolean() ? "true" : "false";
                break;
            case value_type::integer:
                out += std::to_string(v.integer());
                break;
            default: {
                // Text (defer_statement takes nothing else), escaped by libpq itself.
                const std::string& t = v.text();
                char* lit = PQescapeLiteral(m_conn.get(), t.data(), t.size());
                if (lit == nullptr)
                    raise_server(read_error(m_conn.get(), nullptr), op::statement,
                                 "escaping a deferred statement's parameter");
                out += lit;
                PQfreemem(lit);
            }
        }
    }
    if (!m_deferred->params.empty()) out += ")";
    m_deferred.reset();
    return out + "; ";
}

bool session::defer_statement(std::string_view sql, std::span<const value> params) {
    if (!m_branch || !m_pending_begin || m_direct || m_deferred) return false;
    for (const auto& v : params) {
        const auto t = v.type();
        if (t != value_type::null && t != value_type::boolean && t != value_type::integer &&
            (t != value_type::text || v.text().find('\0') != std::string::npos))
            return false;
    }
    std::string key(sql);
    auto it = m_defer_names.find(key);
    if (it == m_defer_names.end()) {
        // Parsed once, outside any block (the BEGIN is still pending): a failure here
        // leaves nothing behind, and the caller runs the statement itself.
        auto name = fmt::format("xarm_deferred_{}", ++m_statements);
        result_ptr r(PQprepare(m_conn.get(), name.c_str(), key.c_str(),
                               static_cast<int>(params.size()), nullptr));
        if (!succeeded(r.get())) {
            const server_error err = read_error(m_conn.get(), r.get());
            if (err.lost) raise_server(err, op::statement, "cannot prepare the deferred statement");
            return false;
        }
        it = m_defer_names.emplace(std::move(key), std::move(name)).first;
    }
    m_deferred = deferred{it->second, std::vector<value>(params.begin(), params.end())};
    return true;
}

bool session::withdraw_deferred() {
    if (!m_deferred) return false;
    m_deferred.reset();
    return true;
}

result session::bound(const std::function<int()>& send, bool rows) {
    // PEP 249: autocommit off, the first statement begins a transaction; in a branch
    // the pending BEGIN goes in the same round trip.
    const bool begin = m_branch ? m_pending_begin : status() == PQTRANS_IDLE;
    if (begin && !m_branch) m_abort = {};
    const auto before = status();
    m_pending_begin = false;
    result_ptr r = begin ? collect_after_begin(send) : collect(send);
    if (!succeeded(r.get())) {
        server_error err = read_error(m_conn.get(), r.get());
        // The first error of a block is the one that aborted it; later ones are 25P02.
        if (before != PQTRANS_INERROR) m_abort = err;
        raise_server(err, op::statement, "SQL error");
    }
    return decode(r.get(), rows);
}

result session::execute_params(std::string_view sql, std::span<const value> params, bool rows) {
    const std::string text(sql);
    wire_params w(params);
    return bound(
        [&] {
            return PQsendQueryParams(m_conn.get(), text.c_str(), w.count(), w.types.data(),
                                     w.values.data(), w.lengths.data(), w.formats.data(), 0);
        },
        rows);
}

namespace {
struct prepared final : native_statement {
    prepared(session& s, std::string q, std::string n)
        : owner(s), sql(std::move(q)), name(std::move(n)) {}
    ~prepared() override {
        owner.unused(std::move(name));
        for (auto& t : typed) owner.unused(std::move(t.second));
    }
    prepared(const prepared&) = delete;
    prepared& operator=(const prepared&) = delete;
    session& owner;
    std::string sql;
    std::string name;  // parsed with every parameter's type left to the server
    std::vector<std::pair<std::vector<Oid>, std::string>> typed;  // types -> statement
};
}  // namespace

std::string session::parse(const std::string& sql, int params, const Oid* types) {
    auto name = fmt::format("xarm_{}", ++m_statements);
    const auto before = status();
    result_ptr r(PQprepare(m_conn.get(), name.c_str(), sql.c_str(), params, types));
    if (!succeeded(r.get())) {
        server_error err = read_error(m_conn.get(), r.get());
        if (before == PQTRANS_INTRANS) m_abort = err;  // a failed parse aborts the block
        raise_server(err, op::statement, "cannot prepare the statement");
    }
    return name;
}

std::unique_ptr<native_statement> session::prepare(std::string_view sql, std::size_t params) {
    if (!m_unused.empty() && status() == PQTRANS_IDLE) {
        std::string dealloc;
        for (const auto& n : m_unused) dealloc += "DEALLOCATE " + n + ";";
        m_unused.clear();
        result_ptr r(PQexec(m_conn.get(), dealloc.c_str()));  // a failure costs only memory
    }
    // Parsed at once with no types, so that a wrong statement fails here.
    std::string text(sql);
    auto name = parse(text, static_cast<int>(params), nullptr);
    return std::make_unique<prepared>(*this, std::move(text), std::move(name));
}

result session::execute_prepared(native_statement& st, std::span<const value> params, bool rows) {
    auto& p = static_cast<prepared&>(st);
    wire_params w(params);
    const std::string* found = &p.name;
    if (std::any_of(w.types.begin(), w.types.end(), [](Oid t) { return t != 0; })) {
        auto it = std::find_if(p.typed.begin(), p.typed.end(),
                               [&](const auto& t) { return t.first == w.types; });
        if (it == p.typed.end()) {
            p.typed.emplace_back(w.types, parse(p.sql, w.count(), w.types.data()));
            it = std::prev(p.typed.end());
        }
        found = &it->second;
    }
    const std::string& name = *found;
    return bound(
        [&] {
            return PQsendQueryPrepared(m_conn.get(), name.c_str(), w.count(), w.values.data(),
                                       w.lengths.data(), w.formats.data(), 0);
        },
        rows);
}

}  // namespace xarm::pq
