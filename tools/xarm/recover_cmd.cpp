// `xarm recover`: the operator's tool for prepared branches left behind (holding locks).
// Branch mode lists them on one database, and commits or rolls back one or all after a
// confirmation. Coordinator mode recovers an xarm::tm coordinator from its log: any
// application's, described by its configuration file, or the transfer demo's.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "xarm/connection.hpp"
#include "xarm/driver/codec.hpp"
#include "xarm/driver/driver.hpp"

namespace xarm::cli {

namespace {

struct options {
    std::string driver, info, commit, rollback;
    bool json = false, commit_all = false, rollback_all = false, yes = false;
};

/// What the server knows about a branch beyond its xid.
struct details {
    std::string prepared, owner, database;
};

// The driver describing the connection's database (through ODBC, the backend's own),
// for its listing of prepared transactions; null when there is none.
std::shared_ptr<const driver> describer_of(connection& c) {
    auto d = describing_driver(c.dbms());
    return d && !d->profile()->prepared_details.empty() ? d : nullptr;
}

// The server's details of each prepared transaction, by the server's name for it.
std::map<std::string, details> load_details(connection& c, const driver* describer) {
    std::map<std::string, details> out;
    if (describer == nullptr) return out;
    const std::string sql = describer->profile()->prepared_details;
    try {
        auto r = c.query(sql);
        for (const auto& row : r.rows)
            if (row.size() >= 4 && row[0])
                out[*row[0]] = {row[1].value_or(""), row[2].value_or(""), row[3].value_or("")};
        c.rollback();  // COMMIT PREPARED refuses to run inside a transaction block
    } catch (const xarm::error&) {
        try {
            c.rollback();
        } catch (const xarm::error&) {
        }
    }
    return out;
}

std::string key_of(const driver* describer, const xid& x) {
    return describer ? describer->server_name(x) : std::string();
}

/// A server-supplied name (role, database) for the text listing: control bytes become
/// '?', so that no name can split or spoof a row.
std::string printable(std::string s) {
    for (char& ch : s)
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
    return s;
}

/// The text xid::to_string() prints: "fmt:hexgtrid:hexbqual", or a quoted foreign name
/// with its escapes.
xid parse_xid(const std::string& s) {
    try {
        return xid::from_string(s);
    } catch (const xarm::error& e) {
        throw usage_error(fmt::format("{} (give the xid as listed)", e.diag().message));
    }
}

bool confirm(const std::string& question, bool yes) {
    if (yes) return true;
    if (::isatty(STDIN_FILENO) == 0)
        throw usage_error(
            "standard input is not a terminal: add --yes to finish branches without a prompt");
    std::fprintf(stderr, "%s [y/N] ", question.c_str());
    std::string answer;
    std::getline(std::cin, answer);
    return answer == "y" || answer == "Y" || answer == "yes";
}

using details_map = std::map<std::string, details>;

int list_json(const std::vector<xid>& branches, const details_map& info, const driver* drv) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& x : branches) {
        nlohmann::json e{{"xid", x.to_string()}, {"foreign", x.is_unparsed()}};
        if (!x.is_unparsed()) {
            e["format_id"] = x.format_id();
            e["gtrid_hex"] = hex_encode(x.gtrid());
            e["bqual_hex"] = hex_encode(x.bqual());
        }
        if (auto it = info.find(key_of(drv, x)); it != info.end()) {
            e["prepared"] = it->second.prepared;
            e["owner"] = it->second.owner;
            e["database"] = it->second.database;
        }
        j.push_back(e);
    }
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return exit_ok;
}

int list_text(const std::vector<xid>& branches, const details_map& info, const driver* drv) {
    if (branches.empty()) {
        std::printf("no in-doubt branches\n");
        return exit_ok;
    }
    const bool detailed = !info.empty();
    if (detailed) std::printf("%-32s  %-12s  %-12s  %s\n", "prepared", "owner", "database", "xid");
    for (const auto& x : branches) {
        if (detailed) {
            details d;
            if (auto it = info.find(key_of(drv, x)); it != info.end()) d = it->second;
            std::printf("%-32s  %-12s  %-12s  %s\n", printable(d.prepared).c_str(),
                        printable(d.owner).c_str(), printable(d.database).c_str(),
                        x.to_string().c_str());
        } else {
            std::printf("%s\n", x.to_string().c_str());
        }
    }
    std::printf("%zu in-doubt branch%s\n", branches.size(), branches.size() == 1 ? "" : "es");
    return exit_ok;
}

// Commits or rolls back target, or every branch listed, after asking (or --yes).
int finish(connection& c, const options& o, const std::vector<xid>& branches,
           const std::optional<xid>& target) {
    const bool commit = !o.commit.empty() || o.commit_all;
    std::vector<xid> todo;
    if (target) {
        if (std::find(branches.begin(), branches.end(), *target) == branches.end()) {
            std::fprintf(stderr, "xarm recover: %s is not in doubt on this server\n",
                         target->to_string().c_str());
            return exit_failed;
        }
        todo.push_back(*target);
    } else {
        todo = branches;
    }
    if (todo.empty()) {
        std::printf("no in-doubt branches\n");
        return exit_ok;
    }
    for (const auto& x : todo)
        std::fprintf(stderr, "  %s %s\n", commit ? "commit" : "rollback", x.to_string().c_str());
    if (!confirm(fmt::format("{} {} branch{}?", commit ? "Commit" : "Roll back", todo.size(),
                             todo.size() == 1 ? "" : "es"),
                 o.yes)) {
        std::fprintf(stderr, "nothing done\n");
        return exit_failed;
    }
    int failed = 0;
    for (const auto& x : todo) {
        try {
            if (commit)
                c.tpc_commit(x);
            else
                c.tpc_rollback(x);
            std::printf("%s %s\n", commit ? "committed" : "rolled back", x.to_string().c_str());
        } catch (const xarm::error& e) {
            ++failed;
            std::fprintf(stderr, "xarm recover: %s: %s\n", x.to_string().c_str(), e.what());
        }
    }
    return failed == 0 ? exit_ok : exit_failed;
}

int run(const options& o) {
    const int actions = !o.commit.empty() + !o.rollback.empty() + o.commit_all + o.rollback_all;
    if (actions > 1)
        throw usage_error("give at most one of --commit, --rollback, --commit-all, --rollback-all");
    if (actions == 1 && !o.yes && ::isatty(STDIN_FILENO) == 0)
        throw usage_error(
            "standard input is not a terminal: add --yes to finish branches without a prompt");
    std::optional<xid> target;
    if (!o.commit.empty()) target = parse_xid(o.commit);
    if (!o.rollback.empty()) target = parse_xid(o.rollback);

    std::optional<connection> c;
    try {
        c.emplace(xarm::connect(o.driver, o.info));
    } catch (const xarm::error& e) {
        std::fprintf(stderr, "xarm recover: cannot connect: %s\n", e.what());
        return exit_failed;
    }
    const auto describer = describer_of(*c);
    const driver* drv = describer.get();
    auto branches = c->tpc_recover();
    if (actions == 1) return finish(*c, o, branches, target);
    const auto info = load_details(*c, drv);
    return o.json ? list_json(branches, info, drv) : list_text(branches, info, drv);
}

}  // namespace

runner add_recover(CLI::App& app) {
    auto o = std::make_shared<options>();
    app.add_option("--driver", o->driver,
                   "branch mode: xarm driver name (pq, mysql, sqlite, odbc) or library path");
    app.add_option("--open", o->info, "branch mode: connection info string");
    // Coordinator mode: finish what an xarm::tm coordinator left in doubt.
    auto tm = std::make_shared<xarm::demo::tm_recover_options>();
    auto* coord = app.add_option(
        "--coordinator", tm->db.coordinator,
        "coordinator mode: recover xarm::tm coordinator ID from its log, as configured by "
        "--config FILE (any application), or the transfer demo's (--log/--log-in-pq and "
        "--pq/--mysql/--pq2/--sqlite/--odbc, then its invariant is checked)");
    auto demo_opts = app.add_option_group("coordinator mode");
    add_demo_databases(*demo_opts, tm->db);
    demo_opts->remove_option(demo_opts->get_option("--coordinator"));
    // Recovery reads the markers of every resource whatever the setting was.
    demo_opts->remove_option(demo_opts->get_option("--last-agent"));
    demo_opts->add_option("--attempts", tm->attempts, "attempts per unreachable resource")
        ->capture_default_str();
    auto no_check = std::make_shared<bool>(false);
    demo_opts->add_flag("--no-check", *no_check, "demo: do not check its invariant afterwards");
    app.add_flag("--json", o->json, "branch mode: list as JSON");
    app.add_option("--commit", o->commit,
                   "commit the branch XID (FORMAT:HEXGTRID:HEXBQUAL or 'foreign-name', as listed)");
    app.add_option("--rollback", o->rollback, "roll back the branch XID");
    app.add_flag("--commit-all", o->commit_all, "commit every in-doubt branch");
    app.add_flag("--rollback-all", o->rollback_all, "roll back every in-doubt branch");
    app.add_flag("--yes,-y", o->yes,
                 "do not ask for confirmation (required when stdin is not a terminal)");
    app.footer(
        "Coordinator mode: xarm recover --config FILE [--coordinator ID]\n"
        "  opens the coordinator's log exactly as configured (never creating it), reconnects\n"
        "  every configured resource, commits what the log decided and rolls back the rest.\n"
        "  Exit status:\n"
        "  0  nothing is in doubt\n"
        "  1  something is unresolved: a heuristic outcome (the transaction is not atomic:\n"
        "     an operator must compare the databases) or a resource unreachable or\n"
        "     failing (its branches stay prepared: run recovery again when it is back)\n"
        "  2  bad usage\n"
        "  3  setup error, recovery did not start: the configuration is invalid, no log\n"
        "     at the configured place, the log is in use (the message names the holder:\n"
        "     a running coordinator recovers its own transactions), or the log names a\n"
        "     resource that is not configured\n"
        "  4  demo mode only: the demo's invariant is broken after recovery\n"
        "Branch mode (--driver, --open): 0 done, 1 a failure.");
    return [o, tm, coord, no_check, demo_opts] {
        const bool config = !tm->db.config.empty();
        if (config || coord->count() > 0) {
            if (!o->driver.empty() || !o->info.empty() || o->json || !o->commit.empty() ||
                !o->rollback.empty() || o->commit_all || o->rollback_all)
                throw usage_error(
                    "--driver, --open, --json, --commit, --rollback, --commit-all and "
                    "--rollback-all are for branch mode, not with --coordinator or --config");
            check_demo_databases(*demo_opts, tm->db);
            // A configured coordinator is any application's: the demo's check does not apply.
            tm->check = !config && !*no_check;
            return xarm::demo::tm_recover(*tm, std::cout);
        }
        if (o->driver.empty() || o->info.empty())
            throw usage_error(
                "recover needs --driver and --open (branch mode), or --config FILE (a "
                "coordinator), or --coordinator ID with the demo's options");
        return run(*o);
    };
}

}  // namespace xarm::cli
