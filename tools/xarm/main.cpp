// xarm: the command line of the project (conformance, recover, probe, drivers, demo).
#include <cstdio>
#include <exception>

#include <fmt/format.h>

#include "commands.hpp"

namespace {
int run_command_line(int argc, char** argv) {
    using namespace xarm::cli;
    CLI::App app{"xarm: XA resource managers for SQL databases"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "xarm " XARM_VERSION);
    std::vector<std::pair<CLI::App*, runner>> subs;
    auto* c = app.add_subcommand("conformance",
                                 "run the conformance suite against a driver or switch library");
    subs.emplace_back(c, add_conformance(*c));
    auto* r = app.add_subcommand("recover", "list and finish in-doubt (prepared) branches");
    subs.emplace_back(r, add_recover(*r));
    auto* p = app.add_subcommand("probe", "load a switch library and describe it");
    subs.emplace_back(p, add_probe(*p));
    auto* d = app.add_subcommand("drivers", "list the xarm drivers found beside libxarm");
    subs.emplace_back(d, add_drivers(*d));
    auto* m =
        app.add_subcommand("demo", "demonstrations: the SQLite driver, transfers through xarm::tm");
    subs.emplace_back(m, add_demo(*m));
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return exit_usage;
    }
    try {
        for (auto& [sub, run] : subs)
            if (sub->parsed()) return run();
    } catch (const usage_error& e) {
        std::fprintf(stderr, "xarm: %s\nRun with --help for more information.\n", e.what());
        return exit_usage;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "xarm: %s\n", e.what());
        return exit_failed;
    }
    return exit_usage;
}
}  // namespace

int main(int argc, char** argv) {
    try {
        return run_command_line(argc, argv);
    } catch (const std::exception& e) {
        // Building the command line itself failed (out of memory, say).
        std::fprintf(stderr, "xarm: %s\n", e.what());
        return xarm::cli::exit_failed;
    }
}
