#include "xarm/driver/info.hpp"

#include <algorithm>
#include <cctype>
#include <functional>

#include <fmt/format.h>

#include "xarm/error.hpp"
#include "xarm/xa.h"

namespace xarm {

namespace {
[[noreturn]] void bad(std::string msg) {
    raise(XAER_INVAL, "08001", std::move(msg));
}

bool is_space(char c) {
    return std::isspace(static_cast<unsigned char>(c)) != 0;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}
}  // namespace

namespace {
/// The one reader of space-separated key=value strings (ours and libpq's conninfo):
/// single-quoted values with \' and \\ escapes, a backslash escaping the next character
/// in bare values. Calls pair(key, value) for each pair; on a syntax error calls
/// fail(message naming the key, never a value) and stops, unless fail is null (the
/// secrets' reading): then a word without '=' is passed over and an unterminated quote
/// runs to the end, so that no later password escapes.
template <class Pair, class Fail>
void read_pairs(std::string_view info, Pair pair, Fail fail) {
    const bool lenient = fail == nullptr;
    std::size_t i = 0;
    const std::size_t n = info.size();
    while (true) {
        while (i < n && is_space(info[i])) ++i;
        if (i == n) return;
        std::size_t key_start = i;
        while (i < n && info[i] != '=' && !is_space(info[i])) ++i;
        std::string key(info.substr(key_start, i - key_start));
        while (i < n && is_space(info[i])) ++i;
        if (i == n || info[i] != '=') {
            if (lenient) continue;
            return fail(fmt::format("info string: expected '=' after key '{}'", key));
        }
        ++i;
        while (i < n && is_space(info[i])) ++i;
        std::string value;
        if (i < n && info[i] == '\'') {
            ++i;
            bool closed = false;
            while (i < n) {
                char c = info[i++];
                if (c == '\\') {
                    if (i == n) break;
                    value += info[i++];
                } else if (c == '\'') {
                    closed = true;
                    break;
                } else {
                    value += c;
                }
            }
            if (!closed) {
                if (lenient) return pair(std::move(key), std::move(value));
                return fail(
                    fmt::format("info string: unterminated quote in the value of '{}'", key));
            }
        } else {
            while (i < n && !is_space(info[i])) {
                char c = info[i++];
                if (c == '\\' && i < n) c = info[i++];
                value += c;
            }
        }
        pair(std::move(key), std::move(value));
    }
}

/// ODBC connection strings: key=value pairs separated by ';', a value in braces may hold
/// ';' and '}' (written "}}"). Calls pair(key, value) for each.
template <class Pair>
void read_odbc_pairs(std::string_view info, Pair pair) {
    std::size_t i = 0;
    const std::size_t n = info.size();
    while (i < n) {
        const std::size_t eq = info.find('=', i);
        if (eq == std::string_view::npos) return;
        std::string key(info.substr(i, eq - i));
        std::erase_if(key, is_space);
        std::size_t j = eq + 1;
        while (j < n && is_space(info[j])) ++j;
        std::string value;
        if (j < n && info[j] == '{') {
            ++j;
            while (j < n) {
                if (info[j] == '}') {
                    if (j + 1 < n && info[j + 1] == '}') {
                        value += '}';
                        j += 2;
                        continue;
                    }
                    ++j;
                    break;
                }
                value += info[j++];
            }
            while (j < n && info[j] != ';') ++j;
        } else {
            const std::size_t end = std::min(info.find(';', j), n);
            value.assign(info.substr(j, end - j));
            j = end;
        }
        pair(std::move(key), std::move(value));
        i = j + 1;
    }
}

std::string percent_decoded(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() &&
            std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
            out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

bool is_secret_key(std::string_view key) {
    const std::string k = lower(key);
    return k == "password" || k == "pwd";
}
}  // namespace

std::map<std::string, std::string> parse_info(std::string_view info,
                                              const std::vector<std::string>& allowed) {
    std::map<std::string, std::string> out;
    read_pairs(
        info,
        [&](std::string key, std::string value) {
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
                std::string keys;
                for (const auto& k : allowed) keys += (keys.empty() ? "" : ", ") + k;
                bad(fmt::format("info string: unknown key '{}' (accepted: {})", key, keys));
            }
            if (!out.emplace(key, std::move(value)).second)
                bad(fmt::format("info string: key '{}' given twice", key));
        },
        std::function<void(std::string)>([](std::string msg) { bad(std::move(msg)); }));
    return out;
}

std::vector<std::string> secrets_in(std::string_view info) {
    // Whichever grammar the driver reads the string with, its secret is among these: the
    // same readers as the parsers (key=value as parse_info and libpq read it, ODBC's
    // ';'-separated form, a URI's user:secret@), the raw text as written too. Scrubbing
    // a value that is not a secret costs nothing; missing one leaks it.
    std::vector<std::string> out;
    auto keep = [&](const std::string& key, std::string value) {
        if (is_secret_key(key)) out.push_back(std::move(value));
    };
    read_pairs(info, keep, std::function<void(std::string)>());
    read_odbc_pairs(info, keep);
    if (auto scheme = info.find("://"); scheme != std::string_view::npos) {
        const auto at = info.find('@', scheme + 3);
        const auto colon = info.find(':', scheme + 3);
        if (at != std::string_view::npos && colon != std::string_view::npos && colon < at) {
            const std::string_view raw = info.substr(colon + 1, at - colon - 1);
            out.emplace_back(raw);
            out.push_back(percent_decoded(raw));
        }
    }
    // Longest first, so that scrubbing a secret never leaves a longer one half-visible.
    std::erase_if(out, [](const std::string& s) { return s.empty(); });
    std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
        return a.size() != b.size() ? a.size() > b.size() : a < b;
    });
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

std::string scrub(std::string message, const std::vector<std::string>& secrets) {
    for (const auto& s : secrets) {
        if (s.empty()) continue;
        std::size_t pos = 0;
        while ((pos = message.find(s, pos)) != std::string::npos) {
            message.replace(pos, s.size(), "***");
            pos += 3;
        }
    }
    return message;
}

}  // namespace xarm
