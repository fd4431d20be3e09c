// Values and their one conversion table, results, timestamps as text, and the
// placeholder tokenizer.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>

#include "xarm/driver/sql.hpp"
#include "xarm/error.hpp"
#include "xarm/result.hpp"
#include "xarm/value.hpp"
#include "xarm/xa.h"

using namespace xarm;
using namespace std::chrono;

namespace {

result one_row(std::vector<value> cells) {
    std::vector<column> cols;
    for (std::size_t i = 0; i < cells.size(); ++i)
        cols.push_back({"c" + std::to_string(i), "t", 0});
    result_builder b(std::move(cols));
    b.next_row();
    for (auto& v : cells) b.add(std::move(v));
    return b.finish();
}

// The error's message, when f throws E.
template <class E, class F>
std::string message_of(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    return "(nothing thrown)";
}

std::size_t placeholders(std::string_view sql, const sql_syntax& s) {
    return parse_placeholders(sql, s).placeholders;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(value_tests)

BOOST_AUTO_TEST_CASE(parameters_take_every_type) {
    BOOST_TEST((value(nullptr).type() == value_type::null));
    BOOST_TEST((value(std::nullopt).type() == value_type::null));
    BOOST_TEST((value(true).type() == value_type::boolean));
    BOOST_TEST((value(std::int16_t{-3}).integer() == -3));
    BOOST_TEST((value(std::numeric_limits<std::int64_t>::min()).integer() ==
                std::numeric_limits<std::int64_t>::min()));
    BOOST_TEST((value(2.5f).real() == 2.5));
    BOOST_TEST((value("text").text() == "text"));
    BOOST_TEST((value(std::string_view("view")).text() == "view"));
    BOOST_TEST((value(static_cast<const char*>(nullptr)).is_null()));
    BOOST_TEST((value(bytes{std::byte{0}, std::byte{255}}).binary().size() == 2u));
    const auto t = sys_days{2024y / 2 / 29} + 12h + 34min + 56s + 789012us;
    BOOST_TEST((value(t).time() == t));
    // A nanosecond clock's time point is kept to the microsecond.
    BOOST_TEST((value(time_point_cast<nanoseconds>(t) + 999ns).time() == t));
    // Beyond int64: the decimal text, read back exactly as uint64.
    value big(std::numeric_limits<std::uint64_t>::max());
    BOOST_TEST((big.type() == value_type::text));
    BOOST_TEST(big.get<std::uint64_t>() == std::numeric_limits<std::uint64_t>::max());
    // An empty optional is a NULL that remembers its type.
    value n(std::optional<std::int64_t>{});
    BOOST_TEST(n.is_null());
    BOOST_TEST((n.null_type() == value_type::integer));
    BOOST_TEST((value(std::optional<bytes>{}).null_type() == value_type::binary));
    BOOST_TEST((value(std::optional<std::string>("x")).text() == "x"));
}

BOOST_AUTO_TEST_CASE(conversions) {
    BOOST_TEST(value(std::int64_t{7}).get<int>() == 7);
    BOOST_TEST(value("42").get<std::int64_t>() == 42);
    BOOST_TEST(value("12.000").get<int>() == 12);
    BOOST_TEST(value(3.0).get<std::int64_t>() == 3);
    BOOST_TEST(value("t").get<bool>());
    BOOST_TEST(!value(std::int64_t{0}).get<bool>());
    BOOST_TEST(value("1.5").get<double>() == 1.5);
    BOOST_TEST(std::isinf(value("-Infinity").get<double>()));
    BOOST_TEST(std::isnan(value("NaN").get<double>()));
    BOOST_TEST(value(std::int64_t{-5}).get<std::string>() == "-5");
    BOOST_TEST(value(0.1).get<std::string>() == "0.1");
    BOOST_TEST(value("2024-01-02 03:04:05").get<timestamp>().time_since_epoch().count() ==
               (sys_days{2024y / 1 / 2} + 3h + 4min + 5s).time_since_epoch().count() * 1000000);
    BOOST_TEST(!value(nullptr).get<std::optional<int>>().has_value());
    BOOST_TEST(*value(std::int64_t{9}).get<std::optional<int>>() == 9);
    BOOST_TEST((value("ab").get<bytes>() == bytes{std::byte{'a'}, std::byte{'b'}}));
}

BOOST_AUTO_TEST_CASE(impossible_conversions_are_data_errors_naming_what) {
    auto r = one_row({value("abc"), value(std::int64_t{70000}), value(nullptr)});
    const auto& row = r[0];
    auto m = message_of<data_error>([&] { row.get<std::int64_t>("c0"); });
    BOOST_TEST(m.find("column 'c0'") != std::string::npos, m);
    BOOST_TEST(m.find("'abc'") != std::string::npos, m);
    BOOST_TEST(m.find("int64_t") != std::string::npos, m);
    m = message_of<data_error>([&] { row.get<std::int16_t>(1); });
    BOOST_TEST(m.find("out of range") != std::string::npos, m);
    BOOST_TEST(m.find("70000") != std::string::npos, m);
    m = message_of<data_error>([&] { row.get<std::string>(2); });
    BOOST_TEST(m.find("NULL") != std::string::npos, m);
    BOOST_TEST(m.find("std::optional") != std::string::npos, m);
    BOOST_CHECK_THROW(value(2.5).get<int>(), data_error);
    BOOST_CHECK_THROW(value(std::int64_t{2}).get<bool>(), data_error);
    BOOST_CHECK_THROW(value(std::int64_t{-1}).get<unsigned>(), data_error);
    BOOST_CHECK_THROW(value("9223372036854775808").get<std::int64_t>(), data_error);
    BOOST_CHECK_THROW(value(std::int64_t{1}).get<std::string_view>(), data_error);
    BOOST_CHECK_THROW(value("yesterday").get<timestamp>(), data_error);
    try {
        value("x").get<double>();
    } catch (const data_error& e) {
        BOOST_TEST(e.sqlstate().starts_with("22"));
        BOOST_TEST(e.xa_code() == XAER_RMERR);
    }
}

BOOST_AUTO_TEST_CASE(rows_by_index_and_name) {
    auto r = one_row({value(std::int64_t{5}), value("name"), value(nullptr)});
    BOOST_TEST(r.size() == 1u);
    BOOST_TEST(r.columns().size() == 3u);
    const auto& row = r[0];
    BOOST_TEST(row.get<int>(0) == 5);
    BOOST_TEST(row.get<std::string>("c1") == "name");
    BOOST_TEST(!row.get<std::optional<std::string>>("c2"));
    BOOST_TEST(row["c1"].get<std::string_view>() == "name");
    BOOST_TEST((row[0].type() == value_type::integer));
    BOOST_TEST(row[2].is_null());
    BOOST_CHECK_THROW(row["nope"], programming_error);
    BOOST_CHECK_THROW(row[3], std::out_of_range);
    BOOST_TEST(r.scalar<int>() == 5);
    int n = 0;
    for (const auto& f : row) n += f.is_null() ? 0 : 1;
    BOOST_TEST(n == 2);
    // Rows outlive their result.
    auto kept = r.rows.front();
    r = result{};
    BOOST_TEST(kept.get<std::string>(1) == "name");
}

BOOST_AUTO_TEST_CASE(fields_read_like_optional_strings) {
    auto r = one_row({value(std::int64_t{42}), value("text"), value(nullptr),
                      value(sys_days{2024y / 1 / 2} + 3h)});
    for (auto& row : r.rows) {
        BOOST_TEST(*row[0] == "42");
        BOOST_TEST(row[1]->starts_with("te"));
        std::string_view kept = *row[1];
        BOOST_TEST(kept == "text");
        BOOST_TEST(!row[2]);
        BOOST_TEST(!row[2].has_value());
        BOOST_TEST(row[2].value_or("NULL") == "NULL");
        BOOST_CHECK_THROW(row[2].value(), std::bad_optional_access);
        BOOST_TEST(row[3].value() == "2024-01-02 03:00:00");
        BOOST_TEST(&*row[0] == &*row[0]);  // rendered once, kept
    }
}

BOOST_AUTO_TEST_CASE(timestamps_as_text) {
    const auto t = sys_days{2024y / 2 / 29} + 12h + 34min + 56s + 789012us;
    BOOST_TEST(format_timestamp(t) == "2024-02-29 12:34:56.789012");
    BOOST_TEST(format_timestamp(sys_days{1970y / 1 / 1}) == "1970-01-01 00:00:00");
    BOOST_TEST((parse_timestamp("2024-02-29 12:34:56.789012") == t));
    BOOST_TEST((parse_timestamp("2024-02-29T12:34:56.789012Z") == t));
    BOOST_TEST((parse_timestamp("2024-02-29 14:34:56.789012+02") == t));
    BOOST_TEST((parse_timestamp("2024-02-29 07:04:56.789012-05:30") == t));
    BOOST_TEST((parse_timestamp("2024-02-29 12:34:56.7890129") == t));  // ns truncated
    BOOST_TEST((parse_timestamp("2024-02-29") == timestamp{sys_days{2024y / 2 / 29}}));
    BOOST_TEST(!parse_timestamp("2023-02-29 00:00:00"));
    BOOST_TEST(!parse_timestamp("infinity"));
    BOOST_TEST(!parse_timestamp("0044-03-15 12:00:00 BC"));
    BOOST_TEST(!parse_timestamp("2024-01-01 25:00:00"));
}

BOOST_AUTO_TEST_CASE(placeholders_outside_literals_and_comments) {
    const auto pg = sql_syntax::postgresql();
    BOOST_TEST(parse_placeholders("SELECT ?, ? FROM t WHERE a = ?", pg).text ==
               "SELECT $1, $2 FROM t WHERE a = $3");
    const std::string_view tricky =
        "SELECT '?', 'it''s ?', \"col?\", E'\\'?', $$ ? $$, $tag$ ?'$ $tag$, -- ?\n"
        " /* ? /* ? */ ? */ ?";
    auto p = parse_placeholders(tricky, pg);
    BOOST_TEST(p.placeholders == 1u);
    BOOST_TEST(p.text.ends_with("*/ $1"), p.text);
    // Standard strings: a backslash is an ordinary character.
    BOOST_TEST(placeholders("SELECT 'a\\' , ?", pg) == 1u);
    BOOST_TEST(placeholders("SELECT 'a\\' , ?", sql_syntax::mysql()) == 0u);
    // MySQL: backslash escapes, # comments, "--" only before a space, backticks.
    const auto my = sql_syntax::mysql();
    BOOST_TEST(placeholders("SELECT 'a\\'?', \"?\", `?` # ?\n, ?", my) == 1u);
    BOOST_TEST(placeholders("SELECT 1--?\n", my) == 1u);
    BOOST_TEST(placeholders("SELECT 1 -- ?\n", my) == 0u);
    BOOST_TEST(placeholders("SELECT 1 # ?", pg) == 1u);  // PostgreSQL's # operator
    BOOST_TEST(parse_placeholders("SELECT ?", my).text == "SELECT ?");
    // SQLite: [..] and `..` identifiers; comments do not nest.
    const auto lite = sql_syntax::sqlite();
    BOOST_TEST(placeholders("SELECT [a?], `b?`, \"c?\" /* /* */ ?", lite) == 1u);
    BOOST_TEST(placeholders("SELECT a[?]", pg) == 1u);
    // Dollar signs inside identifiers are no quotes; $1 in the text is refused.
    BOOST_TEST(placeholders("SELECT a$b$, ?", pg) == 1u);
    BOOST_CHECK_THROW(parse_placeholders("SELECT $1, ?", pg), programming_error);
    BOOST_TEST(placeholders("SELECT $1", sql_syntax::standard()) == 0u);
    // Unterminated: the rest is the literal's, as the database reads it.
    BOOST_TEST(placeholders("SELECT '?", pg) == 0u);
    BOOST_TEST(placeholders("SELECT $$ ?", pg) == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
