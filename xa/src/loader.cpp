#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "xarm/connection.hpp"
#include "xarm/driver/driver.hpp"
#include "xarm/switch_loader.hpp"
#include "xarm/xa.h"

namespace xarm {

namespace {

// The directory libxarm itself was loaded from: drivers are installed beside it.
std::string own_directory() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&load_driver), &info) == 0 || info.dli_fname == nullptr)
        return {};
    return std::filesystem::path(info.dli_fname).parent_path().string();
}

bool valid_name(std::string_view name) {
    if (name.empty() || name.size() > 32) return false;
    for (char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    return true;
}

// The directories searched for a driver given by name, in order.
std::vector<std::string> search_dirs() {
    std::vector<std::string> dirs;
    if (const char* path = std::getenv("XARM_DRIVER_PATH")) {
        std::stringstream ss(path);
        for (std::string dir; std::getline(ss, dir, ':');)
            if (!dir.empty()) dirs.push_back(dir);
    }
    if (auto dir = own_directory(); !dir.empty()) dirs.push_back(dir);
    dirs.emplace_back(XARM_INSTALL_LIBDIR);
    return dirs;
}

// Every place a driver name or path may be found, in search order.
std::vector<std::string> candidates_for(std::string_view name_or_path) {
    const bool is_path = name_or_path.find('/') != std::string_view::npos ||
                         name_or_path.find(".so") != std::string_view::npos;
    std::vector<std::string> candidates;
    if (is_path) {
        candidates.emplace_back(name_or_path);
        return candidates;
    }
    if (!valid_name(name_or_path))
        raise(XAER_INVAL, "XAE05",
              fmt::format("driver name '{}' is not a name (letters, digits, _)", name_or_path));
    const std::string file = fmt::format("libxarm_{}.so", name_or_path);
    for (const auto& dir : search_dirs()) candidates.push_back(fmt::format("{}/{}", dir, file));
    candidates.push_back(file);  // the system's library search path
    return candidates;
}

struct found {
    void* symbol;
    std::string library;
};

// Opens the first candidate that loads and has `symbol`; the error lists every try.
found find_symbol(std::string_view name_or_path, const std::string& symbol, const char* hint) {
    std::string tried;
    for (const auto& c : candidates_for(name_or_path)) {
        // RTLD_NODELETE: sessions of a thread outlive any handle; the code must stay.
        void* h = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (h == nullptr) {
            const char* why = dlerror();
            tried += fmt::format("\n  {}: {}", c, why ? why : "cannot load");
            continue;
        }
        if (void* sym = dlsym(h, symbol.c_str())) return {sym, c};
        tried += fmt::format("\n  {}: loads, but has no {}{}", c, symbol, hint);
    }
    raise(XAER_INVAL, "08001", fmt::format("cannot load '{}'; tried:{}", name_or_path, tried));
}

const char* const not_a_driver =
    " (not an xarm driver; a third-party xa_switch_t is tested with `xarm conformance "
    "--switch`)";

}  // namespace

std::shared_ptr<const driver> load_driver(std::string_view name_or_path) {
    using entry_t = const driver* (*)();
    auto entry =
        reinterpret_cast<entry_t>(find_symbol(name_or_path, "xarm_driver_v1", not_a_driver).symbol);
    // The driver object is static in a library that is never unloaded.
    return std::shared_ptr<const driver>(entry(), [](const driver*) {});
}

std::string driver_library(std::string_view name_or_path) {
    return find_symbol(name_or_path, "xarm_driver_v1", not_a_driver).library;
}

std::shared_ptr<const driver> describing_driver(std::string_view dbms) {
    if (!valid_name(dbms)) return nullptr;
    try {
        auto d = load_driver(dbms);
        return d->profile() ? d : nullptr;
    } catch (const error&) {
        return nullptr;  // no driver of that name here
    }
}

std::vector<std::string> available_drivers() {
    std::set<std::string> names;
    for (const auto& dir : search_dirs()) {
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
            const auto file = e.path().filename().string();
            if (!file.starts_with("libxarm_") || !file.ends_with(".so")) continue;
            const auto name = file.substr(8, file.size() - 11);
            if (!valid_name(name) || names.count(name)) continue;
            // Only libraries that export a driver (libxarm_tm.so does not).
            void* h = dlopen(e.path().c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
            if (h != nullptr && dlsym(h, "xarm_driver_v1") != nullptr) names.insert(name);
        }
    }
    return {names.begin(), names.end()};
}

xa_switch_t* load_switch(std::string_view name_or_path, std::string_view symbol) {
    if (!symbol.empty())
        return static_cast<xa_switch_t*>(find_symbol(name_or_path, std::string(symbol), "").symbol);
    using get_t = xa_switch_t* (*)();
    auto get = reinterpret_cast<get_t>(
        find_symbol(name_or_path, "lixa_get_xa_switch", " (name the switch symbol instead)")
            .symbol);
    xa_switch_t* sw = get();
    if (sw == nullptr)
        raise(XAER_INVAL, "08001",
              fmt::format("'{}': lixa_get_xa_switch() returned NULL", name_or_path));
    return sw;
}

std::vector<std::string> switch_problems(const xa_switch_t& sw) {
    std::vector<std::string> out;
    const void* nul = std::memchr(sw.name, '\0', RMNAMESZ);
    if (nul == nullptr) {
        out.push_back(
            fmt::format("the name is not NUL-terminated within RMNAMESZ ({}) bytes", RMNAMESZ));
    } else if (sw.name[0] == '\0') {
        out.push_back("the name is empty");
    } else {
        for (const char* p = sw.name; *p != '\0'; ++p)
            if (static_cast<unsigned char>(*p) < 0x20 || static_cast<unsigned char>(*p) > 0x7e) {
                out.push_back("the name has bytes that are not printable ASCII");
                break;
            }
    }
    if (sw.flags & TMREGISTER)
        out.push_back(
            "the flags have TMREGISTER (dynamic registration through ax_reg), which xarm does "
            "not offer: it registers every resource statically; use the library's static "
            "switch");
    if (const long unknown = sw.flags & ~(TMREGISTER | TMNOMIGRATE | TMUSEASYNC); unknown != 0)
        out.push_back(fmt::format("the flags have bits no XA flag defines (0x{:x})",
                                  static_cast<unsigned long>(unknown)));
    if (sw.version != 0)
        out.push_back(
            fmt::format("the version is {} (the XA specification requires 0)", sw.version));
    const std::pair<const char*, bool> entries[] = {
        {"xa_open_entry", sw.xa_open_entry != nullptr},
        {"xa_close_entry", sw.xa_close_entry != nullptr},
        {"xa_start_entry", sw.xa_start_entry != nullptr},
        {"xa_end_entry", sw.xa_end_entry != nullptr},
        {"xa_rollback_entry", sw.xa_rollback_entry != nullptr},
        {"xa_prepare_entry", sw.xa_prepare_entry != nullptr},
        {"xa_commit_entry", sw.xa_commit_entry != nullptr},
        {"xa_recover_entry", sw.xa_recover_entry != nullptr},
        {"xa_forget_entry", sw.xa_forget_entry != nullptr},
        {"xa_complete_entry", sw.xa_complete_entry != nullptr},
    };
    for (const auto& [name, present] : entries)
        if (!present) out.push_back(fmt::format("{} is NULL", name));
    return out;
}

}  // namespace xarm
