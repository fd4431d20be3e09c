// `xarm probe LIB.so` (what a switch library is) and `xarm drivers` (the xarm drivers
// installed beside libxarm), in the spirit of unixODBC's dltest.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "commands.hpp"
#include "xarm/conformance.hpp"
#include "xarm/connection.hpp"
#include "xarm/driver/driver.hpp"
#include "xarm/xa.h"

namespace xarm::cli {

namespace {

std::string flag_names(long f) {
    std::string s;
    auto add = [&](long bit, const char* name) {
        if (f & bit) s += (s.empty() ? "" : "|") + std::string(name);
    };
    add(TMREGISTER, "TMREGISTER");
    add(TMNOMIGRATE, "TMNOMIGRATE");
    add(TMUSEASYNC, "TMUSEASYNC");
    const long rest = f & ~(TMREGISTER | TMNOMIGRATE | TMUSEASYNC);
    if (rest) s += (s.empty() ? "" : "|") + fmt::format("0x{:x}", static_cast<unsigned long>(rest));
    return s.empty() ? "TMNOFLAGS" : s;
}

void print_caps(const capability_set& caps) {
    for (const auto& s : caps.list())
        std::printf("    %-15s %-3s %s\n", to_string(s.what), s.supported ? "yes" : "no",
                    s.reason.c_str());
}

int probe(const std::string& lib, const std::string& symbol) {
    void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (h == nullptr) {
        const char* why = dlerror();
        std::fprintf(stderr, "xarm probe: cannot load %s: %s\n", lib.c_str(),
                     why ? why : "dlopen failed");
        return exit_failed;
    }
    xa_switch_t* sw = nullptr;
    std::string via;
    if (!symbol.empty()) {
        sw = static_cast<xa_switch_t*>(dlsym(h, symbol.c_str()));
        via = "symbol " + symbol;
    } else if (auto g = reinterpret_cast<xa_switch_t* (*)()>(dlsym(h, "lixa_get_xa_switch"));
               g != nullptr) {
        sw = g();
        via = "returned by lixa_get_xa_switch()";
    }
    if (sw == nullptr) {
        std::fprintf(stderr,
                     "xarm probe: %s: no switch found (%s); name its symbol with --symbol\n",
                     lib.c_str(),
                     symbol.empty() ? "no lixa_get_xa_switch" : ("no symbol " + symbol).c_str());
        return exit_failed;
    }
    // Printed before anything else is read: what makes the switch unusable.
    const auto problems = conformance::switch_problems(*sw);
    char name[RMNAMESZ + 1] = {};
    std::memcpy(name, sw->name, RMNAMESZ);
    std::printf("library:  %s\nswitch:   %s\nname:     %s\nflags:    %s (0x%lx)\nversion:  %ld\n",
                lib.c_str(), via.c_str(), name, flag_names(sw->flags).c_str(),
                static_cast<unsigned long>(sw->flags), sw->version);
    std::printf("entries:\n");
    const std::pair<const char*, bool> entries[] = {
        {"xa_open", sw->xa_open_entry != nullptr},
        {"xa_close", sw->xa_close_entry != nullptr},
        {"xa_start", sw->xa_start_entry != nullptr},
        {"xa_end", sw->xa_end_entry != nullptr},
        {"xa_rollback", sw->xa_rollback_entry != nullptr},
        {"xa_prepare", sw->xa_prepare_entry != nullptr},
        {"xa_commit", sw->xa_commit_entry != nullptr},
        {"xa_recover", sw->xa_recover_entry != nullptr},
        {"xa_forget", sw->xa_forget_entry != nullptr},
        {"xa_complete", sw->xa_complete_entry != nullptr},
    };
    for (const auto& [n, present] : entries)
        std::printf("    %-12s %s\n", n, present ? "present" : "NULL");
    std::printf("xarm_last_error: %s\n", dlsym(h, "xarm_last_error") ? "exported" : "not exported");
    if (!problems.empty()) {
        std::fprintf(stderr, "xarm probe: %s: the switch is unusable:\n", lib.c_str());
        for (const auto& p : problems) std::fprintf(stderr, "    %s\n", p.c_str());
        return exit_failed;
    }
    using entry_t = const driver* (*)();
    auto entry = reinterpret_cast<entry_t>(dlsym(h, "xarm_driver_v1"));
    if (entry == nullptr) {
        std::printf(
            "xarm driver: no (a third-party switch: declares only what its flags say; "
            "%s, %s)\n",
            (sw->flags & TMNOMIGRATE) ? "no migrate (TMNOMIGRATE)" : "migrate undeclared",
            (sw->flags & TMUSEASYNC) ? "async (TMUSEASYNC)" : "no async (no TMUSEASYNC)");
        return exit_ok;
    }
    const driver* d = entry();
    std::printf("xarm driver: %s\ncapabilities:\n", std::string(d->name()).c_str());
    print_caps(d->capabilities());
    std::printf("open string keys:\n");
    std::istringstream help(d->info_help());
    for (std::string line; std::getline(help, line);) std::printf("    %s\n", line.c_str());
    return exit_ok;
}

int drivers() {
    int found = 0;
    for (const auto& name : available_drivers()) {
        try {
            auto d = load_driver(name);
            std::printf("%s  (%s)\n", std::string(d->name()).c_str(), driver_library(name).c_str());
            print_caps(d->capabilities());
            ++found;
        } catch (const std::exception& ex) {
            std::printf("%s: cannot load: %s\n", name.c_str(), ex.what());
        }
    }
    if (found == 0) {
        std::fprintf(stderr,
                     "xarm drivers: no driver found ($XARM_DRIVER_PATH, beside libxarm, the "
                     "installed library directory)\n");
        return exit_failed;
    }
    return exit_ok;
}

}  // namespace

runner add_probe(CLI::App& app) {
    auto lib = std::make_shared<std::string>();
    auto sym = std::make_shared<std::string>();
    app.add_option("library", *lib, "the switch library (.so)")->required();
    app.add_option("--symbol", *sym, "the xa_switch_t symbol (default: lixa_get_xa_switch())");
    return [lib, sym] { return probe(*lib, *sym); };
}

runner add_drivers(CLI::App& app) {
    (void)app;
    return [] { return drivers(); };
}

}  // namespace xarm::cli
