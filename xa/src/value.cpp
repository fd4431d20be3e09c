// The one conversion table between values and C++ types, timestamps as text, and the
// result types' storage.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>

#include "xarm/driver/codec.hpp"
#include "xarm/error.hpp"
#include "xarm/result.hpp"
#include "xarm/xa.h"
#include "xarm/xid.hpp"

namespace xarm {

const char* to_string(value_type t) noexcept {
    switch (t) {
        case value_type::null:
            return "NULL";
        case value_type::boolean:
            return "boolean";
        case value_type::integer:
            return "integer";
        case value_type::real:
            return "double";
        case value_type::text:
            return "text";
        case value_type::binary:
            return "binary";
        case value_type::time:
            return "timestamp";
    }
    return "?";
}

// ---- timestamps ---------------------------------------------------------------------

std::string format_timestamp(timestamp t) {
    using namespace std::chrono;
    const auto day = floor<days>(t);
    const year_month_day ymd{day};
    const hh_mm_ss<microseconds> tod{t - day};
    std::string s =
        fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", static_cast<int>(ymd.year()),
                    static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                    tod.hours().count(), tod.minutes().count(), tod.seconds().count());
    if (tod.subseconds().count() != 0) s += fmt::format(".{:06}", tod.subseconds().count());
    return s;
}

namespace {

// Reads exactly n digits at p; advances p.
bool digits(std::string_view& p, std::size_t n, int& out) {
    if (p.size() < n) return false;
    out = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (!std::isdigit(static_cast<unsigned char>(p[i]))) return false;
        out = out * 10 + (p[i] - '0');
    }
    p.remove_prefix(n);
    return true;
}

bool take(std::string_view& p, char c) {
    if (p.empty() || p.front() != c) return false;
    p.remove_prefix(1);
    return true;
}

}  // namespace

std::optional<timestamp> parse_timestamp(std::string_view p) {
    using namespace std::chrono;
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
    if (!digits(p, 4, y) || !take(p, '-') || !digits(p, 2, mo) || !take(p, '-') || !digits(p, 2, d))
        return std::nullopt;
    const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)},
                             day{static_cast<unsigned>(d)}};
    if (!ymd.ok()) return std::nullopt;
    microseconds frac{0};
    seconds offset{0};
    if (!p.empty()) {
        if (!take(p, ' ') && !take(p, 'T')) return std::nullopt;
        if (!digits(p, 2, h) || !take(p, ':') || !digits(p, 2, mi)) return std::nullopt;
        if (take(p, ':')) {
            if (!digits(p, 2, s)) return std::nullopt;
            if (take(p, '.')) {
                // Up to microseconds; further digits are truncated.
                long us = 0;
                int n = 0;
                while (!p.empty() && std::isdigit(static_cast<unsigned char>(p.front()))) {
                    if (n < 6) us = us * 10 + (p.front() - '0');
                    ++n;
                    p.remove_prefix(1);
                }
                if (n == 0) return std::nullopt;
                for (; n < 6; ++n) us *= 10;
                frac = microseconds{us};
            }
        }
        if (h > 24 || mi > 59 || s > 60 || (h == 24 && (mi != 0 || s != 0 || frac.count() != 0)))
            return std::nullopt;
        const bool utc = take(p, 'Z') || take(p, 'z');
        if (!utc && !p.empty() && (p.front() == '+' || p.front() == '-')) {
            const int sign = p.front() == '-' ? -1 : 1;
            p.remove_prefix(1);
            int oh = 0, om = 0, os = 0;
            if (!digits(p, 2, oh)) return std::nullopt;
            if (take(p, ':')) {
                if (!digits(p, 2, om)) return std::nullopt;
                if (take(p, ':') && !digits(p, 2, os)) return std::nullopt;
            } else if (!p.empty() && !digits(p, 2, om)) {
                return std::nullopt;
            }
            offset = seconds{sign * (oh * 3600 + om * 60 + os)};
        }
        if (!p.empty()) return std::nullopt;
    }
    return timestamp{sys_days{ymd}} + hours{h} + minutes{mi} + seconds{s} + frac - offset;
}

// ---- values ------------------------------------------------------------------------

std::string value::describe() const {
    auto quote = [](std::string_view s) {
        constexpr std::size_t max = 40;
        std::string out = "'";
        out.append(s.substr(0, max));
        out += s.size() > max ? "...'" : "'";
        return out;
    };
    switch (type()) {
        case value_type::null:
            return "NULL";
        case value_type::boolean:
            return boolean() ? "true" : "false";
        case value_type::integer:
            return std::to_string(integer());
        case value_type::real:
            return fmt::format("{}", real());
        case value_type::text:
            return quote(text());
        case value_type::binary: {
            const auto& b = binary();
            const std::size_t n = std::min<std::size_t>(b.size(), 20);
            std::string hex =
                hex_encode(std::string_view(reinterpret_cast<const char*>(b.data()), n));
            return fmt::format("binary {} bytes x'{}{}'", b.size(), hex, b.size() > n ? "..." : "");
        }
        case value_type::time:
            return quote(format_timestamp(time()));
    }
    return "?";
}

namespace detail {

namespace {

[[noreturn]] void cannot(const value& v, std::string_view column, std::string_view target,
                         std::string_view why, const char* sqlstate = "22018") {
    raise(XAER_RMERR, sqlstate,
          fmt::format("{}{} {} cannot be read as {}{}{}",
                      column.empty() ? "" : fmt::format("column '{}': ", column),
                      to_string(v.type()), v.describe(), target, why.empty() ? "" : ": ", why));
}

std::string_view trimmed(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

template <class N>
std::optional<N> parse_number(std::string_view s) {
    s = trimmed(s);
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    N n{};
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
    return n;
}

// A decimal number's text, for integers: "12", "-3", "12.000" (exact) are integers.
std::optional<std::string_view> integral_part(std::string_view s) {
    s = trimmed(s);
    const auto dot = s.find('.');
    if (dot == std::string_view::npos) return s;
    for (char c : s.substr(dot + 1))
        if (c != '0') return std::nullopt;
    return s.substr(0, dot);
}

}  // namespace

void null_error(std::string_view column, const char* target) {
    raise(XAER_RMERR, "22004",
          fmt::format("{}NULL cannot be read as {}; read it as std::optional<{}>",
                      column.empty() ? "" : fmt::format("column '{}': ", column), target, target));
}

bool to_bool(const value& v, std::string_view column) {
    switch (v.type()) {
        case value_type::null:
            null_error(column, "bool");
        case value_type::boolean:
            return v.boolean();
        case value_type::integer:
            if (v.integer() == 0 || v.integer() == 1) return v.integer() == 1;
            cannot(v, column, "bool", "only 0 and 1 are booleans");
        case value_type::text: {
            std::string low;
            for (char c : trimmed(v.text()))
                low += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (low == "t" || low == "true" || low == "1" || low == "y" || low == "yes" ||
                low == "on")
                return true;
            if (low == "f" || low == "false" || low == "0" || low == "n" || low == "no" ||
                low == "off")
                return false;
            cannot(v, column, "bool", "not a boolean");
        }
        default:
            cannot(v, column, "bool", "");
    }
}

std::int64_t to_int64(const value& v, std::string_view column, const char* target, std::int64_t min,
                      std::int64_t max) {
    std::int64_t n = 0;
    switch (v.type()) {
        case value_type::null:
            null_error(column, target);
        case value_type::boolean:
            n = v.boolean() ? 1 : 0;
            break;
        case value_type::integer:
            n = v.integer();
            break;
        case value_type::real: {
            const double d = v.real();
            // 2^63 is exactly representable; every double below it converts exactly.
            if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || std::trunc(d) != d)
                cannot(v, column, target, "not a whole number in range", "22003");
            n = static_cast<std::int64_t>(d);
            break;
        }
        case value_type::text: {
            auto whole = integral_part(v.text());
            auto parsed = whole ? parse_number<std::int64_t>(*whole) : std::nullopt;
            if (!parsed) {
                if (whole && parse_number<std::uint64_t>(*whole))
                    cannot(v, column, target, "out of range", "22003");
                cannot(v, column, target, "not a whole number");
            }
            n = *parsed;
            break;
        }
        default:
            cannot(v, column, target, "");
    }
    if (n < min || n > max) cannot(v, column, target, "out of range", "22003");
    return n;
}

std::uint64_t to_uint64(const value& v, std::string_view column, const char* target,
                        std::uint64_t max) {
    std::uint64_t n = 0;
    switch (v.type()) {
        case value_type::null:
            null_error(column, target);
        case value_type::text: {
            auto whole = integral_part(v.text());
            auto parsed = whole ? parse_number<std::uint64_t>(*whole) : std::nullopt;
            if (!parsed) {
                if (whole && parse_number<std::int64_t>(*whole))
                    cannot(v, column, target, "out of range", "22003");
                cannot(v, column, target, "not a whole number");
            }
            n = *parsed;
            break;
        }
        default: {
            const std::int64_t s = to_int64(v, column, target, 0, INT64_MAX);
            n = static_cast<std::uint64_t>(s);
        }
    }
    if (n > max) cannot(v, column, target, "out of range", "22003");
    return n;
}

double to_double(const value& v, std::string_view column, const char* target) {
    switch (v.type()) {
        case value_type::null:
            null_error(column, target);
        case value_type::integer:
            return static_cast<double>(v.integer());
        case value_type::real:
            return v.real();
        case value_type::text: {
            std::string_view s = trimmed(v.text());
            // PostgreSQL's spellings; from_chars takes "inf", "infinity" and "nan".
            const bool neg = !s.empty() && s.front() == '-';
            std::string_view body = neg || (!s.empty() && s.front() == '+') ? s.substr(1) : s;
            std::string low;
            for (char c : body)
                low += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (low == "infinity" || low == "inf")
                return neg ? -std::numeric_limits<double>::infinity()
                           : std::numeric_limits<double>::infinity();
            if (low == "nan") return std::numeric_limits<double>::quiet_NaN();
            if (auto d = parse_number<double>(s)) return *d;
            cannot(v, column, target, "not a number");
        }
        default:
            cannot(v, column, target, "");
    }
}

std::string to_text(const value& v, std::string_view column) {
    switch (v.type()) {
        case value_type::null:
            null_error(column, "std::string");
        case value_type::boolean:
            return v.boolean() ? "true" : "false";
        case value_type::integer:
            return std::to_string(v.integer());
        case value_type::real: {
            char buf[64];
            auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v.real());
            return ec == std::errc() ? std::string(buf, end) : fmt::format("{}", v.real());
        }
        case value_type::text:
            return v.text();
        case value_type::binary:
            return std::string(reinterpret_cast<const char*>(v.binary().data()), v.binary().size());
        case value_type::time:
            return format_timestamp(v.time());
    }
    return {};
}

std::string_view to_text_view(const value& v, std::string_view column) {
    switch (v.type()) {
        case value_type::null:
            null_error(column, "std::string_view");
        case value_type::text:
            return v.text();
        case value_type::binary:
            return {reinterpret_cast<const char*>(v.binary().data()), v.binary().size()};
        default:
            cannot(v, column, "std::string_view",
                   "only text and binary values have characters to view; read it as std::string");
    }
}

bytes to_bytes(const value& v, std::string_view column) {
    switch (v.type()) {
        case value_type::null:
            null_error(column, "xarm::bytes");
        case value_type::binary:
            return v.binary();
        case value_type::text: {
            const auto& t = v.text();
            const auto* p = reinterpret_cast<const std::byte*>(t.data());
            return bytes(p, p + t.size());
        }
        default:
            cannot(v, column, "xarm::bytes", "");
    }
}

timestamp to_timestamp(const value& v, std::string_view column) {
    switch (v.type()) {
        case value_type::null:
            null_error(column, "a time point");
        case value_type::time:
            return v.time();
        case value_type::text:
            if (auto t = parse_timestamp(trimmed(v.text()))) return *t;
            cannot(v, column, "a time point", "not a timestamp (YYYY-MM-DD HH:MM:SS[.f][+HH:MM])");
        default:
            cannot(v, column, "a time point", "");
    }
}

// ---- result storage -----------------------------------------------------------------

const std::string& row_block::text_of(std::size_t i) const {
    const value& v = cells.at(i);
    if (v.type() == value_type::text) return v.text();
    std::lock_guard lk(m_mu);
    if (m_texts.size() != cells.size()) m_texts.resize(cells.size());
    auto& t = m_texts[i];
    if (!t) t = std::make_unique<std::string>(to_text(v, columns[i % columns.size()].name));
    return *t;
}

std::size_t row_block::index_of(std::string_view name) const {
    for (std::size_t i = 0; i < columns.size(); ++i)
        if (columns[i].name == name) return i;
    std::string names;
    for (const auto& c : columns) names += (names.empty() ? "" : ", ") + c.name;
    raise(XAER_INVAL, "42703",
          fmt::format("no column '{}' in the result (columns: {})", name,
                      names.empty() ? "none" : names));
}

}  // namespace detail

// ---- field, row, result -------------------------------------------------------------

const std::string& field::operator*() const {
    if (is_null()) detail::null_error(name(), "std::string");
    return m_block->text_of(m_cell);
}

const std::string& field::value() const {
    if (is_null()) throw std::bad_optional_access();
    return m_block->text_of(m_cell);
}

std::string field::value_or(std::string_view fallback) const {
    if (is_null()) return std::string(fallback);
    return m_block->text_of(m_cell);
}

namespace {
const std::vector<column>& no_columns() {
    static const std::vector<column> none;
    return none;
}
}  // namespace

const std::vector<column>& row::columns() const noexcept {
    return m_block ? m_block->columns : no_columns();
}

field row::at(std::size_t i) const {
    if (i >= size())
        throw std::out_of_range(fmt::format("row: field {} of a row with {} columns", i, size()));
    return field(m_block.get(), m_first + i, i);
}

field row::at(std::string_view name) const {
    static const detail::row_block none;
    const std::size_t i = (m_block ? *m_block : none).index_of(name);  // raises when absent
    return field(m_block.get(), m_first + i, i);
}

const std::vector<column>& result::columns() const noexcept {
    return m_block ? m_block->columns : no_columns();
}

field result::only() const {
    if (rows.size() != 1 || rows.front().empty())
        raise(XAER_RMERR, "21000",
              fmt::format("expected one row with a value, the result has {} rows and {} columns",
                          rows.size(), columns().size()));
    return rows.front()[0];
}

result_builder::result_builder(std::vector<column> columns)
    : m_block(std::make_shared<detail::row_block>()) {
    m_block->columns = std::move(columns);
    m_out.m_block = m_block;
}

void result_builder::reserve(std::size_t rows) {
    m_out.rows.reserve(rows);
    m_block->cells.reserve(rows * m_block->columns.size());
}

void result_builder::next_row() {
    m_out.rows.push_back(row(m_block, m_block->cells.size()));
}

void result_builder::add(value v) {
    m_block->cells.push_back(std::move(v));
}

result result_builder::finish(std::int64_t affected) {
    m_out.affected = affected;
    return std::move(m_out);
}

}  // namespace xarm
