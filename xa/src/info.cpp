#include "xarm/info.hpp"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "xa.h"
#include "xarm/error.hpp"

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

std::map<std::string, std::string> parse_info(std::string_view info,
                                              const std::vector<std::string>& allowed) {
    std::map<std::string, std::string> out;
    std::size_t i = 0;
    const std::size_t n = info.size();
    while (true) {
        while (i < n && is_space(info[i])) ++i;
        if (i == n) break;
        std::size_t key_start = i;
        while (i < n && info[i] != '=' && !is_space(info[i])) ++i;
        std::string key(info.substr(key_start, i - key_start));
        while (i < n && is_space(info[i])) ++i;
        if (i == n || info[i] != '=')
            bad(fmt::format("info string: expected '=' after key '{}'", key));
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
            if (!closed)
                bad(fmt::format("info string: unterminated quote in the value of '{}'", key));
        } else {
            while (i < n && !is_space(info[i])) {
                char c = info[i++];
                if (c == '\\' && i < n) c = info[i++];
                value += c;
            }
        }
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
            std::string keys;
            for (const auto& k : allowed) keys += (keys.empty() ? "" : ", ") + k;
            bad(fmt::format("info string: unknown key '{}' (accepted: {})", key, keys));
        }
        if (!out.emplace(key, std::move(value)).second)
            bad(fmt::format("info string: key '{}' given twice", key));
    }
    return out;
}

std::vector<std::string> secrets_in(std::string_view info) {
    std::vector<std::string> out;
    const std::string low = lower(info);
    // key=value forms: libpq / our own (password=), ODBC (PWD=, Password=).
    for (std::string_view key : {"password", "pwd"}) {
        std::size_t pos = 0;
        while ((pos = low.find(key, pos)) != std::string::npos) {
            std::size_t j = pos + key.size();
            bool word_start = pos == 0 || !std::isalnum(static_cast<unsigned char>(low[pos - 1]));
            pos = j;
            if (!word_start) continue;
            while (j < info.size() && is_space(info[j])) ++j;
            if (j >= info.size() || info[j] != '=') continue;
            ++j;
            while (j < info.size() && is_space(info[j])) ++j;
            std::string value;
            if (j < info.size() && (info[j] == '\'' || info[j] == '{')) {
                char close = info[j] == '{' ? '}' : '\'';
                ++j;
                while (j < info.size() && info[j] != close) {
                    if (info[j] == '\\' && j + 1 < info.size()) ++j;
                    value += info[j++];
                }
            } else {
                while (j < info.size() && !is_space(info[j]) && info[j] != ';') value += info[j++];
            }
            if (!value.empty()) out.push_back(value);
        }
    }
    // URI form: scheme://user:secret@host
    if (auto scheme = info.find("://"); scheme != std::string_view::npos) {
        auto at = info.find('@', scheme + 3);
        auto colon = info.find(':', scheme + 3);
        if (at != std::string_view::npos && colon != std::string_view::npos && colon < at)
            out.emplace_back(info.substr(colon + 1, at - colon - 1));
    }
    std::erase_if(out, [](const std::string& s) { return s.empty(); });
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
