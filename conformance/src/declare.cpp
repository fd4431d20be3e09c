// --declare: an explicit declaration for a switch that has none of its own (or to
// override one), from a file or inline.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

#include "xarm/conformance.hpp"

namespace xarm::conformance {

namespace {

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) return {};
    return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

std::optional<capability> capability_named(const std::string& name) {
    for (auto c : all_capabilities)
        if (name == to_string(c)) return c;
    return std::nullopt;
}

std::string capability_names() {
    std::string all;
    for (auto c : all_capabilities) all += (all.empty() ? "" : ", ") + std::string(to_string(c));
    return all;
}

}  // namespace

void apply_declarations(target& t, const std::string& file_or_inline) {
    std::vector<std::string> entries;
    std::string where;
    std::error_code ec;
    if (std::filesystem::is_regular_file(file_or_inline, ec)) {
        // A file: one entry per line (a reason may hold commas), # comments.
        std::ifstream in(file_or_inline);
        if (!in) throw std::runtime_error("--declare: cannot read " + file_or_inline);
        for (std::string line; std::getline(in, line);)
            entries.push_back(line.substr(0, line.find('#')));
        where = file_or_inline;
    } else {
        if (file_or_inline.find('=') == std::string::npos)
            throw std::runtime_error(fmt::format(
                "--declare: '{}' is neither a file nor 'capability=yes|no[:reason],...'",
                file_or_inline));
        // Commas separate entries; one inside a reason stays (the next piece is no
        // "name=" of its own).
        std::stringstream ss(file_or_inline);
        for (std::string item; std::getline(ss, item, ',');) {
            const auto eq = item.find('=');
            const bool starts_entry =
                eq != std::string::npos &&
                trim(item.substr(0, eq)).find_first_not_of("abcdefghijklmnopqrstuvwxyz_") ==
                    std::string::npos;
            if (!starts_entry && !entries.empty())
                entries.back() += "," + item;
            else
                entries.push_back(item);
        }
        where = "--declare";
    }
    capability_set caps = t.caps.value_or(capability_set{});
    if (!t.caps)
        for (auto c : all_capabilities) caps.yes(c, "undeclared");
    for (const auto& raw : entries) {
        const std::string e = trim(raw);
        if (e.empty()) continue;
        const auto eq = e.find('=');
        if (eq == std::string::npos)
            throw std::runtime_error(
                fmt::format("{}: '{}' is not capability=yes|no[:reason]", where, e));
        const std::string name = trim(e.substr(0, eq));
        std::string value = trim(e.substr(eq + 1)), reason;
        if (auto colon = value.find(':'); colon != std::string::npos) {
            reason = trim(value.substr(colon + 1));
            value = trim(value.substr(0, colon));
        }
        const auto c = capability_named(name);
        if (!c)
            throw std::runtime_error(fmt::format("{}: unknown capability '{}' (known: {})", where,
                                                 name, capability_names()));
        if (value == "yes") {
            caps.yes(*c, reason.empty() ? "declared with --declare" : reason);
        } else if (value == "no") {
            caps.no(*c, reason.empty() ? "declared missing with --declare" : reason);
        } else {
            throw std::runtime_error(
                fmt::format("{}: '{}' for {}: say yes or no", where, value, name));
        }
        t.sources[*c] = decl_source::declare_option;
    }
    t.caps = caps;
}

}  // namespace xarm::conformance
