// The subcommands of the `xarm` program; each registers itself on the CLI11 app and
// returns the process exit status from its run function.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "demo_transfer.hpp"

namespace xarm::cli {

/// Exit statuses: 0 success, 1 a failure the command found (FAIL/ERROR cases, a server
/// that cannot be reached), 2 bad usage.
inline constexpr int exit_ok = 0, exit_failed = 1, exit_usage = 2;

/// Thrown for usage errors found after parsing (mutually dependent options).
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

using runner = std::function<int()>;

runner add_conformance(CLI::App& app);
runner add_recover(CLI::App& app);
runner add_probe(CLI::App& app);
runner add_drivers(CLI::App& app);
runner add_demo(CLI::App& app);
/// The demo's database options (shared by `demo transfer` and `recover --coordinator`).
void add_demo_databases(CLI::App& app, xarm::demo::demo_databases& db);
/// After parsing: --config excludes the database and log options; without it a log is
/// required (usage_error otherwise). `app` is where add_demo_databases added them.
void check_demo_databases(const CLI::App& app, const xarm::demo::demo_databases& db);

}  // namespace xarm::cli
