// Bound parameters, typed results, prepared statements and the branch guard through
// the C++ API: every value round-trips exactly (all 256 byte values, NULLs of every
// type, 64-bit limits, doubles, UTF-8, timestamps), placeholders are found only outside
// literals and comments, a wrong argument count is refused before anything is sent, and
// values that look like SQL stay values.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include <fmt/format.h>

#include "cases.hpp"

namespace xarm::conformance {

namespace {

using namespace std::chrono;
using C = capability;

/// The database's column types for the table every case uses.
const dbms_profile& types_for(context& ctx) {
    const dbms_profile* p = profile_for(ctx.tgt().dbms);
    if (p == nullptr || p->type_integer.empty())
        throw not_applicable("no column types known for this DBMS");
    return *p;
}

/// A table (id, b, i, d, t, x, ts) of this case, dropped at the end.
class typed_table {
  public:
    explicit typed_table(context& ctx) : m_ctx(ctx) {
        const auto& ty = types_for(ctx);
        auto c = ctx.connect();
        m_name = fmt::format("xarm_conf_p{}_{}", ::getpid(),
                             steady_clock::now().time_since_epoch().count() % 1000000007);
        try {
            c.execute(
                fmt::format("CREATE TABLE {} (id INTEGER PRIMARY KEY, b {}, i {}, d {}, "
                            "t {}, x {}, ts {})",
                            m_name, ty.type_boolean, ty.type_integer, ty.type_real, ty.type_text,
                            ty.type_binary, ty.type_time));
            c.commit();
        } catch (const xarm::error& e) {
            throw setup_error(fmt::format("cannot create table {}: {}", m_name, e.what()));
        }
    }
    ~typed_table() {
        try {
            auto c = m_ctx.connect();
            c.execute("DROP TABLE " + m_name);
            c.commit();
        } catch (const std::exception&) {
        }
    }
    typed_table(const typed_table&) = delete;
    typed_table& operator=(const typed_table&) = delete;
    const std::string& name() const noexcept { return m_name; }

  private:
    context& m_ctx;
    std::string m_name;
};

bytes all_byte_values() {
    bytes b;
    for (int i = 0; i < 256; ++i) b.push_back(static_cast<std::byte>(i));
    return b;
}

std::string hex(const bytes& b) {
    std::string s;
    for (auto x : b) s += fmt::format("{:02x}", static_cast<unsigned>(x));
    return s;
}

/// Reads column col of row id in t, committed (a new local transaction each time).
row read_row(connection& c, const std::string& t, int id) {
    auto r = c.query(fmt::format("SELECT id, b, i, d, t, x, ts FROM {} WHERE id = ?", t), id);
    c.rollback();
    check(r.size() == 1, fmt::format("row {}: {} rows read back", id, r.size()));
    return r[0];
}

template <class T>
T read(connection& c, const std::string& t, int id, const char* col) {
    return read_row(c, t, id).get<T>(col);
}

std::string insert_sql(const std::string& t, const char* col) {
    return fmt::format("INSERT INTO {} (id, {}) VALUES (?, ?)", t, col);
}

void insert(connection& c, const std::string& t, const char* col, int id, const value& v) {
    const auto n = c.execute(insert_sql(t, col), id, v);
    check(n == 1, fmt::format("INSERT of {} reported {} rows", v.describe(), n));
}

// -- cases ------------------------------------------------------------------------------

void all_bytes(context& ctx) {
    typed_table t(ctx);
    auto c = ctx.connect();
    const bytes all = all_byte_values();
    bytes reversed(all.rbegin(), all.rend());
    bytes long_value;
    for (int i = 0; i < 16; ++i)
        long_value.insert(long_value.end(), reversed.begin(), reversed.end());
    const std::vector<std::pair<int, bytes>> cases{{1, all},
                                                   {2, {}},
                                                   {3, {std::byte{0}}},
                                                   {4, {std::byte{'\''}, std::byte{'\\'}}},
                                                   {5, long_value}};
    for (const auto& [id, b] : cases) insert(c, t.name(), "x", id, b);
    c.commit();
    for (const auto& [id, b] : cases) {
        const auto got = read<std::optional<bytes>>(c, t.name(), id, "x");
        check(got.has_value(), fmt::format("row {}: binary value read back as NULL", id));
        check(*got == b, fmt::format("row {}: {} bytes written, {} bytes read back ({}...)", id,
                                     b.size(), got->size(), hex(*got).substr(0, 64)));
    }
    // The value as a parameter finds its row.
    auto r = c.query(fmt::format("SELECT id FROM {} WHERE x = ?", t.name()), all);
    c.rollback();
    check(r.size() == 1 && r[0].get<int>(0) == 1, "WHERE x = <all 256 byte values> found no row");
}

void nulls(context& ctx) {
    typed_table t(ctx);
    auto c = ctx.connect();
    const auto sql = fmt::format(
        "INSERT INTO {} (id, b, i, d, t, x, ts) VALUES (?, ?, ?, ?, ?, ?, ?)", t.name());
    c.execute(sql, 1, nullptr, std::nullopt, nullptr, std::nullopt, nullptr, std::nullopt);
    c.execute(sql, 2, std::optional<bool>{}, std::optional<std::int64_t>{}, std::optional<double>{},
              std::optional<std::string>{}, std::optional<bytes>{}, std::optional<timestamp>{});
    c.commit();
    for (int id = 1; id <= 2; ++id) {
        auto r = read_row(c, t.name(), id);
        for (const char* col : {"b", "i", "d", "t", "x", "ts"})
            check(r[col].is_null(), fmt::format("row {}: column {} is not NULL", id, col));
        check(!r.get<std::optional<bool>>("b") && !r.get<std::optional<std::int64_t>>("i") &&
                  !r.get<std::optional<double>>("d") && !r.get<std::optional<std::string>>("t") &&
                  !r.get<std::optional<bytes>>("x") && !r.get<std::optional<timestamp>>("ts"),
              fmt::format("row {}: a NULL read as std::optional is engaged", id));
        expect_throw<data_error>([&] { r.get<std::int64_t>("i"); }, "a NULL read as a plain int64");
    }
    // NULL as a parameter compares as NULL: no row matches i = NULL.
    auto r = c.query(fmt::format("SELECT COUNT(*) FROM {} WHERE i = ?", t.name()),
                     std::optional<std::int64_t>{});
    c.rollback();
    check(r.scalar<std::int64_t>() == 0, "WHERE i = NULL matched rows");
}

void int64_limits(context& ctx) {
    typed_table t(ctx);
    auto c = ctx.connect();
    constexpr auto lo = std::numeric_limits<std::int64_t>::min();
    constexpr auto hi = std::numeric_limits<std::int64_t>::max();
    const std::vector<std::int64_t> values{lo, lo + 1, -1, 0, 1, 2147483648LL, hi - 1, hi};
    for (std::size_t k = 0; k < values.size(); ++k)
        insert(c, t.name(), "i", static_cast<int>(k + 1), values[k]);
    c.commit();
    for (std::size_t k = 0; k < values.size(); ++k) {
        const auto got = read<std::int64_t>(c, t.name(), static_cast<int>(k + 1), "i");
        check(got == values[k], fmt::format("{} read back as {}", values[k], got));
    }
    auto r = c.query(fmt::format("SELECT id FROM {} WHERE i = ?", t.name()), hi);
    c.rollback();
    check(r.size() == 1 && r.scalar<std::size_t>() == values.size(),
          "WHERE i = INT64_MAX did not find its row");
    auto row = read_row(c, t.name(), static_cast<int>(values.size()));
    expect_throw<data_error>([&] { row.get<std::int32_t>("i"); }, "INT64_MAX read as int32");
}

void doubles(context& ctx) {
    typed_table t(ctx);
    auto c = ctx.connect();
    const std::vector<double> values{0.1,
                                     -2.5,
                                     1.0 / 3.0,
                                     std::numbers::pi,
                                     1e300,
                                     -1e-300,
                                     2.2250738585072014e-308,
                                     0.0,
                                     9007199254740993.0,
                                     123456789.123456789};
    for (std::size_t k = 0; k < values.size(); ++k)
        insert(c, t.name(), "d", static_cast<int>(k + 1), values[k]);
    c.commit();
    // SQLite's ODBC driver (sqliteodbc) hands a REAL out as text with 15 significant
    // digits, whatever the application binds it to: the values are stored exactly, but
    // through that driver they read back only to 15 digits.
    const bool fifteen_digits = ctx.tgt().driver_name == "odbc" && ctx.tgt().dbms == "sqlite";
    if (fifteen_digits)
        ctx.note(
            "compared to 15 significant digits: sqliteodbc reads REAL values as text "
            "with 15");
    for (std::size_t k = 0; k < values.size(); ++k) {
        const auto got = read<double>(c, t.name(), static_cast<int>(k + 1), "d");
        const bool same = fifteen_digits ? std::abs(got - values[k]) <= 1e-14 * std::abs(values[k])
                                         : got == values[k];
        check(same, fmt::format("{:.17g} read back as {:.17g}", values[k], got));
    }
}

void utf8_text(context& ctx) {
    typed_table t(ctx);
    auto c = ctx.connect();
    std::string long_text;
    while (long_text.size() < 20000) long_text += "grüße, 日本語, 😀; ";
    const std::vector<std::string> values{"grüße", "日本語のテキスト",     "emoji 😀🎉", "",
                                          " ",     "Ωmega ∑ ∞ — “quotes”", long_text};
    for (std::size_t k = 0; k < values.size(); ++k)
        insert(c, t.name(), "t", static_cast<int>(k + 1), values[k]);
    c.commit();
    for (std::size_t k = 0; k < values.size(); ++k) {
        const auto got = read<std::string>(c, t.name(), static_cast<int>(k + 1), "t");
        check(got == values[k],
              fmt::format("'{}' ({} bytes) read back as '{}' ({} bytes)", values[k].substr(0, 40),
                          values[k].size(), got.substr(0, 40), got.size()));
    }
    auto r = c.query(fmt::format("SELECT id FROM {} WHERE t = ?", t.name()), "日本語のテキスト");
    c.rollback();
    check(r.size() == 1 && r.scalar<int>() == 2, "WHERE t = <UTF-8 text> did not find its row");
}

void timestamps(context& ctx) {
    typed_table t(ctx);
    auto c = ctx.connect();
    const std::vector<timestamp> values{
        sys_days{2024y / 2 / 29} + 12h + 34min + 56s + 789012us,
        sys_days{1970y / 1 / 1},
        sys_days{1999y / 12 / 31} + 23h + 59min + 59s + 999999us,
        sys_days{2038y / 1 / 19} + 3h + 14min + 8s,
        sys_days{2100y / 6 / 15} + 1us,
    };
    for (std::size_t k = 0; k < values.size(); ++k)
        insert(c, t.name(), "ts", static_cast<int>(k + 1), values[k]);
    // A clock's own time point (nanoseconds) binds too, kept to the microsecond.
    const auto now = system_clock::now();
    insert(c, t.name(), "ts", 100, now);
    c.commit();
    for (std::size_t k = 0; k < values.size(); ++k) {
        const auto got = read<timestamp>(c, t.name(), static_cast<int>(k + 1), "ts");
        check(got == values[k], fmt::format("{} read back as {}", format_timestamp(values[k]),
                                            format_timestamp(got)));
    }
    const auto got = read<timestamp>(c, t.name(), 100, "ts");
    check(got == floor<microseconds>(now),
          fmt::format("now ({}) read back as {}", format_timestamp(floor<microseconds>(now)),
                      format_timestamp(got)));
    auto r = c.query(fmt::format("SELECT id FROM {} WHERE ts = ?", t.name()), values[0]);
    c.rollback();
    check(r.size() == 1 && r.scalar<int>() == 1, "WHERE ts = <timestamp> did not find its row");
}

void wrong_count(context& ctx) {
    typed_table t(ctx);
    auto c = ctx.connect();
    const auto sql = insert_sql(t.name(), "i");
    c.tpc_begin(ctx.new_xid());
    auto refused = [&](auto&& f, const char* what) {
        try {
            f();
        } catch (const programming_error& e) {
            check(e.sqlstate() == "07001",
                  fmt::format("{}: SQLSTATE {}, expected 07001: {}", what, e.sqlstate(), e.what()));
            return;
        } catch (const xarm::error& e) {
            fail(fmt::format("{}: {} instead of programming_error", what, e.what()));
        }
        fail(fmt::format("{}: accepted", what));
    };
    refused([&] { c.execute(sql, 1); }, "one argument for two placeholders");
    refused([&] { c.execute(sql, 1, 2, 3); }, "three arguments for two placeholders");
    refused([&] { c.query(fmt::format("SELECT id FROM {}", t.name()), 1); },
            "an argument for no placeholder");
    auto st = c.prepare(sql);
    refused([&] { st.execute(1); }, "a prepared statement given too few arguments");
    // Nothing was sent: the branch is intact and commits the one good row.
    insert(c, t.name(), "i", 1, 5);
    c.tpc_commit();
    check(ctx.count(t.name()) == 1, "the branch did not commit its row after the refusals");
}

void special_values(context& ctx) {
    typed_table t(ctx);
    auto c = ctx.connect();
    const std::vector<std::string> values{"'",
                                          "''",
                                          "?",
                                          "??",
                                          "$1",
                                          "$$",
                                          "--",
                                          "-- comment",
                                          "/* x */",
                                          "\\",
                                          "\\'",
                                          "\"",
                                          "`",
                                          "#",
                                          ";",
                                          fmt::format("x'); DROP TABLE {}; --", t.name()),
                                          "a ? b $1 c -- d /* e */ 'f'"};
    for (std::size_t k = 0; k < values.size(); ++k)
        insert(c, t.name(), "t", static_cast<int>(k + 1), values[k]);
    c.commit();
    for (std::size_t k = 0; k < values.size(); ++k) {
        const auto got = read<std::string>(c, t.name(), static_cast<int>(k + 1), "t");
        check(got == values[k], fmt::format("'{}' read back as '{}'", values[k], got));
        auto r = c.query(fmt::format("SELECT id FROM {} WHERE t = ?", t.name()), values[k]);
        c.rollback();
        check(r.size() == 1 && r.scalar<std::size_t>() == k + 1,
              fmt::format("WHERE t = '{}' found {} rows", values[k], r.size()));
    }
    check(ctx.count(t.name()) == static_cast<long>(values.size()), "rows went missing");
}

void placeholders_in_literals(context& ctx) {
    typed_table t(ctx);
    auto c = ctx.connect();
    insert(c, t.name(), "t", 1, "row");
    c.commit();
    // In a string literal, a quoted identifier, a line comment and a block comment, plus
    // each database's own quoting: only the last ? is a placeholder.
    const auto& own = types_for(ctx).own_quoting;
    const std::string quoted = own.empty() ? "\"id\" AS \"q?\"" : own;
    const auto sql = fmt::format(
        "SELECT '?' AS lit, 'it''s ?' AS lit2, {} -- ?\n"
        "/* ? */ FROM {} WHERE t = ?",
        quoted, t.name());
    auto r = c.query(sql, "row");
    c.rollback();
    check(r.size() == 1, fmt::format("{} rows", r.size()));
    check(r[0].get<std::string>("lit") == "?" && r[0].get<std::string>("lit2") == "it's ?",
          fmt::format("the literals came back as '{}' and '{}'", r[0].get<std::string>("lit"),
                      r[0].get<std::string>("lit2")));
    check(r[0].get<int>("q?") == 1, "the quoted identifier \"q?\" is not the column's alias");
    try {
        c.query(sql, "row", "extra");
        fail("a second argument was accepted: a ? inside a literal or comment was counted");
    } catch (const programming_error&) {
    }
}

void prepared(context& ctx) {
    typed_table t(ctx);
    auto c = ctx.connect();
    auto ins = c.prepare(fmt::format("INSERT INTO {} (id, i, t) VALUES (?, ?, ?)", t.name()));
    auto sel = c.prepare(fmt::format("SELECT i, t FROM {} WHERE id = ?", t.name()));
    check(ins.parameters() == 3 && sel.parameters() == 1, "wrong parameter counts");
    // A local transaction, committed.
    check(ins.execute(1, 10, "local") == 1, "INSERT did not report one row");
    c.commit();
    // A local transaction, rolled back.
    ins.execute(2, 20, "rolled back");
    c.rollback();
    // A branch committed in one phase.
    c.tpc_begin(ctx.new_xid());
    ins.execute(3, 30, "one phase");
    c.tpc_commit();
    // A two-phase branch, where the driver has them.
    if (ctx.claims(C::two_phase)) {
        c.tpc_begin(ctx.new_xid());
        ins.execute(4, 40, "two phase");
        c.tpc_prepare();
        c.tpc_commit();
    }
    // A branch rolled back.
    c.tpc_begin(ctx.new_xid());
    ins.execute(5, 50, "branch rolled back");
    c.tpc_rollback();
    // Failed work inside a branch does not spoil the statement for the next one.
    c.tpc_begin(ctx.new_xid());
    try {
        ins.execute(1, 0, "duplicate");
    } catch (const programming_error&) {
        throw;
    } catch (const xarm::error&) {
    }
    c.tpc_rollback();
    ins.execute(6, 60, "after a failure");
    c.commit();
    const std::vector<std::pair<int, std::string>> expected{
        {1, "local"}, {3, "one phase"}, {6, "after a failure"}};
    for (const auto& [id, text] : expected) {
        auto r = sel.query(id);
        c.rollback();
        check(r.size() == 1 && r[0].get<std::string>("t") == text && r[0].get<int>("i") == id * 10,
              fmt::format("row {} read through the prepared SELECT: {} rows", id, r.size()));
    }
    const long want = ctx.claims(C::two_phase) ? 4 : 3;
    check(ctx.count(t.name()) == want,
          fmt::format("{} rows committed, expected {}", ctx.count(t.name()), want));
}

void typed_results(context& ctx) {
    typed_table t(ctx);
    auto c = ctx.connect();
    c.execute(fmt::format("INSERT INTO {} (id, b, i, d, t) VALUES (?, ?, ?, ?, ?)", t.name()), 1,
              true, 42, 2.5, "not a number");
    c.commit();
    auto r = c.query(fmt::format("SELECT id, b, i, d, t FROM {}", t.name()));
    c.rollback();
    check(r.columns().size() == 5, fmt::format("{} columns", r.columns().size()));
    for (const auto& col : r.columns()) check(!col.name.empty(), "a column without a name");
    check(r.columns()[2].name == "i", "column names not as selected");
    check(!r.columns()[4].type_name.empty(), "the text column reports no type name");
    const auto& row = r[0];
    check(row.get<bool>("b") && row.get<std::int64_t>("i") == 42 && row.get<double>("d") == 2.5 &&
              row.get<std::string>("t") == "not a number",
          "values not read back by column name");
    check(row.get<std::string>(2) == "42", "an integer column read as text is not its decimal");
    try {
        row.get<std::int64_t>("t");
        fail("'not a number' converted to an integer");
    } catch (const data_error& e) {
        const std::string m = e.what();
        check(m.find("'t'") != std::string::npos && m.find("not a number") != std::string::npos &&
                  m.find("int64_t") != std::string::npos,
              "the data_error does not name the column, the value and the type: " + m);
    }
    expect_throw<programming_error>([&] { row["no_such_column"]; }, "an unknown column name");
}

void branch_guard(context& ctx) {
    typed_table t(ctx);
    auto c = ctx.connect();
    {
        branch b(c, ctx.new_xid());
        insert(c, t.name(), "i", 1, 1);
        if (ctx.claims(C::two_phase))
            check(b.prepare() == vote::ok, "a branch that wrote voted read-only");
        b.commit();
    }
    check(ctx.count(t.name()) == 1, "the guarded branch did not commit");
    {
        branch b(c, ctx.new_xid());
        insert(c, t.name(), "i", 2, 2);
    }  // left without commit: rolled back
    check(c.current().is_null(), "the connection is still in the branch after the scope");
    check(ctx.count(t.name()) == 1, "the abandoned branch's row is visible");
    if (ctx.claims(C::two_phase)) {
        auto x = ctx.new_xid();
        {
            branch b(c, x);
            insert(c, t.name(), "i", 3, 3);
            b.prepare();
        }  // prepared, never committed: rolled back
        if (ctx.claims(C::recovery)) {
            auto left = c.tpc_recover();
            check(std::find(left.begin(), left.end(), x) == left.end(),
                  "the abandoned prepared branch is still in doubt");
        }
        check(ctx.count(t.name()) == 1, "the abandoned prepared branch's row is visible");
    }
    // The connection goes on as usual.
    insert(c, t.name(), "i", 4, 4);
    c.commit();
    check(ctx.count(t.name()) == 2, "the connection is not usable after the guards");
}

}  // namespace

/// The group tests xarm's C++ connection API. A switch's case is run through XA with
/// SQL text on its native connection, which binds nothing: not this group's subject.
template <void (*F)(context&)>
void api_case(context& ctx) {
    if (ctx.tgt().via_switch)
        throw not_applicable(
            "bound parameters, typed results and xarm::branch are xarm's C++ connection API; "
            "a switch is tested through XA, with SQL text on its native connection");
    F(ctx);
}

void add_params_cases(std::vector<case_def>& v) {
    auto add = [&](const char* id, const char* title, void (*f)(context&)) {
        v.push_back(case_def{id, title, {}, layer::sql, f, {}});
    };
    add("params.all_bytes", "binary parameters: all 256 byte values, empty, NUL, 4 KiB round trip",
        api_case<all_bytes>);
    add("params.nulls", "NULL of every type (nullptr, nullopt, empty optional<T>) round trip",
        api_case<nulls>);
    add("params.int64_limits", "64-bit integer limits round trip; INT64_MAX as int32 is data_error",
        api_case<int64_limits>);
    add("params.doubles", "doubles round trip exactly (1/3, pi, 1e300, smallest normal)",
        api_case<doubles>);
    add("params.utf8_text", "UTF-8 text (accents, CJK, emoji, 20 KB) round trip",
        api_case<utf8_text>);
    add("params.timestamps", "timestamps to the microsecond round trip and compare",
        api_case<timestamps>);
    add("params.wrong_count", "a wrong number of arguments: programming_error, nothing sent",
        api_case<wrong_count>);
    add("params.special_values", "values with ' ? $1 -- /* \\ stay values, found by WHERE",
        api_case<special_values>);
    add("params.placeholders_in_literals",
        "? inside literals, quoted identifiers and comments is no placeholder",
        api_case<placeholders_in_literals>);
    add("params.prepared", "a prepared statement reused across local transactions and branches",
        api_case<prepared>);
    add("params.typed_results", "rows by name, typed conversion, data_error naming what failed",
        api_case<typed_results>);
    add("params.branch_guard", "xarm::branch commits, or rolls back when the scope is left",
        api_case<branch_guard>);
}

}  // namespace xarm::conformance
