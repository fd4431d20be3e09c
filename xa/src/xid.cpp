#include "xarm/xid.hpp"

#include <array>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "xarm/driver/codec.hpp"
#include "xarm/error.hpp"
#include "xarm/xa.h"

namespace xarm {

namespace {
constexpr char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

[[noreturn]] void invalid(std::string msg) {
    raise(XAER_INVAL, "22023", std::move(msg));
}

// Parses a non-negative decimal without sign or leading zeros, as encode_pg_gid writes.
std::optional<long> parse_format(std::string_view s) {
    if (s.empty() || s.size() > 10 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
    long v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + (c - '0');
    }
    if (v > xid::max_format) return std::nullopt;
    return v;
}
}  // namespace

xid::xid(long format_id, std::string_view gtrid, std::string_view bqual)
    : m_format(format_id), m_gtrid(gtrid), m_bqual(bqual) {
    if (format_id < 0 || format_id > max_format)
        invalid(fmt::format("xid format id {} is outside 0..{}", format_id, max_format));
    if (gtrid.empty() || gtrid.size() > max_gtrid)
        invalid(fmt::format("xid gtrid is {} bytes; it must be 1..{}", gtrid.size(), max_gtrid));
    if (bqual.size() > max_bqual)
        invalid(fmt::format("xid bqual is {} bytes; it must be 0..{}", bqual.size(), max_bqual));
}

xid xid::unparsed(std::string_view name) {
    xid x;
    x.m_gtrid = std::string(name);
    x.m_unparsed = true;
    return x;
}

static_assert(xid::max_gtrid == MAXGTRIDSIZE && xid::max_bqual == MAXBQUALSIZE);

xid xid::from_c(const XID* c) {
    if (c == nullptr) invalid("XID pointer is NULL");
    if (c->formatID == null_format) invalid("the null XID (formatID -1) names no branch");
    if (c->gtrid_length < 1 || c->gtrid_length > static_cast<long>(max_gtrid))
        invalid(fmt::format("XID gtrid_length {} is outside 1..{}", c->gtrid_length, max_gtrid));
    if (c->bqual_length < 0 || c->bqual_length > static_cast<long>(max_bqual))
        invalid(fmt::format("XID bqual_length {} is outside 0..{}", c->bqual_length, max_bqual));
    return xid(
        c->formatID, std::string_view(c->data, static_cast<std::size_t>(c->gtrid_length)),
        std::string_view(c->data + c->gtrid_length, static_cast<std::size_t>(c->bqual_length)));
}

void xid::to_c(XID& out) const {
    std::memset(&out, 0, sizeof out);
    if (is_null() || is_unparsed()) {
        out.formatID = null_format;
        return;
    }
    out.formatID = m_format;
    out.gtrid_length = static_cast<long>(m_gtrid.size());
    out.bqual_length = static_cast<long>(m_bqual.size());
    std::memcpy(out.data, m_gtrid.data(), m_gtrid.size());
    std::memcpy(out.data + m_gtrid.size(), m_bqual.data(), m_bqual.size());
}

std::string xid::to_string() const {
    if (m_unparsed) {
        std::string out = "'";
        for (const char ch : m_gtrid) {
            const auto b = static_cast<unsigned char>(ch);
            switch (ch) {
                case '\\':
                    out += "\\\\";
                    break;
                case '\'':
                    out += "\\'";
                    break;
                case '\n':
                    out += "\\n";
                    break;
                case '\r':
                    out += "\\r";
                    break;
                case '\t':
                    out += "\\t";
                    break;
                default:
                    if (b < 0x20 || b == 0x7f)
                        out += fmt::format("\\x{:02x}", b);
                    else
                        out += ch;
            }
        }
        return out + "'";
    }
    if (is_null()) return "null-xid";
    return fmt::format("{}:{}:{}", m_format, hex_encode(m_gtrid), hex_encode(m_bqual));
}

xid xid::from_string(std::string_view s) {
    auto bad = [&](std::string_view why) {
        std::string shown = xid::unparsed(s).to_string();  // escaped: s may be anything
        invalid(fmt::format("{} is not an xid: {}", shown, why));
    };
    if (s.size() >= 2 && s.front() == '\'' && s.back() == '\'') {
        std::string name;
        for (std::size_t i = 1; i + 1 < s.size(); ++i) {
            if (s[i] != '\\') {
                name += s[i];
                continue;
            }
            if (i + 2 >= s.size()) bad("a backslash ends the name");
            const char e = s[++i];
            switch (e) {
                case '\\':
                    name += '\\';
                    break;
                case '\'':
                    name += '\'';
                    break;
                case 'n':
                    name += '\n';
                    break;
                case 'r':
                    name += '\r';
                    break;
                case 't':
                    name += '\t';
                    break;
                case 'x': {
                    auto h = i + 3 < s.size() ? hex_decode(s.substr(i + 1, 2)) : std::nullopt;
                    if (!h) bad("\\x needs two hexadecimal digits");
                    name += *h;
                    i += 2;
                    break;
                }
                default:
                    bad(fmt::format("unknown escape \\{}", e));
            }
        }
        return unparsed(name);
    }
    const auto a = s.find(':');
    const auto b = a == std::string_view::npos ? a : s.find(':', a + 1);
    if (b == std::string_view::npos)
        bad("expected FORMAT:HEXGTRID:HEXBQUAL, or a foreign name in quotes");
    long format = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + a, format);
    if (ec != std::errc{} || end != s.data() + a || a == 0) bad("the format id is not a number");
    auto g = hex_decode(s.substr(a + 1, b - a - 1));
    auto q = hex_decode(s.substr(b + 1));
    if (!g || !q) bad("gtrid and bqual must be hexadecimal");
    return xid(format, *g, *q);
}

std::string base64_encode(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                     (static_cast<unsigned char>(in[i + 1]) << 8) |
                     static_cast<unsigned char>(in[i + 2]);
        out += b64_alphabet[(v >> 18) & 63];
        out += b64_alphabet[(v >> 12) & 63];
        out += b64_alphabet[(v >> 6) & 63];
        out += b64_alphabet[v & 63];
    }
    if (std::size_t rest = in.size() - i; rest > 0) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16;
        if (rest == 2) v |= static_cast<unsigned char>(in[i + 1]) << 8;
        out += b64_alphabet[(v >> 18) & 63];
        out += b64_alphabet[(v >> 12) & 63];
        out += rest == 2 ? b64_alphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
    if (in.size() % 4 != 0) return std::nullopt;
    std::string out;
    out.reserve(in.size() / 4 * 3);
    for (std::size_t i = 0; i < in.size(); i += 4) {
        bool last = i + 4 == in.size();
        std::array<int, 4> v{};
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            char c = in[i + k];
            if (c == '=' && last && k >= 2) {
                ++pad;
                v[k] = 0;
                continue;
            }
            if (pad > 0) return std::nullopt;  // data after padding
            v[k] = b64_value(c);
            if (v[k] < 0) return std::nullopt;
        }
        unsigned n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
        out += static_cast<char>((n >> 16) & 0xff);
        if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
        if (pad < 1) out += static_cast<char>(n & 0xff);
        // Canonical only: the bits the padding hides must be zero, so that every gid
        // decodes from exactly one spelling and re-encodes to the same text.
        if ((pad == 1 && (v[2] & 3) != 0) || (pad == 2 && (v[1] & 15) != 0)) return std::nullopt;
    }
    return out;
}

namespace {

// Appends bytes as lower-case hex digits, written in place (this runs for every XA
// statement a driver sends).
void append_hex(std::string& out, std::string_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    const std::size_t at = out.size();
    out.resize(at + bytes.size() * 2);
    char* p = out.data() + at;
    for (unsigned char c : bytes) {
        *p++ = digits[c >> 4];
        *p++ = digits[c & 15];
    }
}

}  // namespace

std::string hex_encode(std::string_view bytes) {
    std::string out;
    append_hex(out, bytes);
    return out;
}

std::optional<std::string> hex_decode(std::string_view hex) {
    auto digit = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    if (hex.size() % 2 != 0) return std::nullopt;
    std::string out;
    out.reserve(hex.size() / 2);
    for (std::size_t i = 0; i < hex.size(); i += 2) {
        const int hi = digit(hex[i]), lo = digit(hex[i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out.push_back(static_cast<char>(hi * 16 + lo));
    }
    return out;
}

std::string encode_pg_gid(const xid& x) {
    if (x.is_unparsed()) return x.gtrid();
    if (x.is_null()) invalid("the null xid has no gid");
    return fmt::format("{}_{}_{}", x.format_id(), base64_encode(x.gtrid()),
                       base64_encode(x.bqual()));
}

xid decode_pg_gid(std::string_view gid) {
    auto first = gid.find('_');
    auto second = first == std::string_view::npos ? first : gid.find('_', first + 1);
    if (second == std::string_view::npos || gid.find('_', second + 1) != std::string_view::npos)
        return xid::unparsed(gid);
    auto format = parse_format(gid.substr(0, first));
    auto gtrid = base64_decode(gid.substr(first + 1, second - first - 1));
    auto bqual = base64_decode(gid.substr(second + 1));
    if (!format || !gtrid || !bqual || gtrid->empty() || gtrid->size() > xid::max_gtrid ||
        bqual->size() > xid::max_bqual)
        return xid::unparsed(gid);
    return xid(*format, *gtrid, *bqual);
}

std::string encode_mysql_xid(const xid& x) {
    if (x.is_null() || x.is_unparsed())
        invalid("only a well-formed xid can be written as a MySQL XID");
    // X'' is the empty string, which MySQL accepts for an empty bqual. Built by hand:
    // every XA statement of the mysql and odbc drivers starts here.
    std::string out;
    out.reserve(2 * (x.gtrid().size() + x.bqual().size()) + 20);
    out += "X'";
    append_hex(out, x.gtrid());
    out += "',X'";
    append_hex(out, x.bqual());
    out += "',";
    out += std::to_string(x.format_id());
    return out;
}

}  // namespace xarm
