// The coordinator's configuration file (TOML, toml++): parsing, ${VAR} expansion from
// the environment, checks that name the file, the line and the key, and the factory,
// log and options a coordinator is built from.
#include "xarm/tm_config.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "xarm/connection.hpp"
#include "xarm/driver/info.hpp"
#include "xarm/error.hpp"
#include "xarm/tm_switch.hpp"
#include "xarm/xa.h"

namespace xarm::tm {

namespace {

/// Where a value is: the source for messages, the dotted key and its line.
struct place {
    const std::string& source;
    std::string key;
    std::size_t line;
};

[[noreturn]] void fail(const place& p, std::string_view what) {
    // F0000: PostgreSQL's "config_file_error" class, a configuration that cannot be used.
    if (p.line > 0)
        raise(XAER_INVAL, "F0000", fmt::format("{}:{}: {}: {}", p.source, p.line, p.key, what));
    raise(XAER_INVAL, "F0000", fmt::format("{}: {}: {}", p.source, p.key, what));
}

std::size_t line_of(const toml::node& n) {
    return n.source().begin.line;
}

bool valid_var_name(std::string_view n) {
    if (n.empty() || std::isdigit(static_cast<unsigned char>(n[0]))) return false;
    return std::all_of(n.begin(), n.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
}

/// ${VAR} from the environment, $$ for '$'; any other '$' is an error (a typo must not
/// silently end up in an open string). Never echoes the value.
std::string expand(std::string_view raw, const place& p) {
    std::string out;
    out.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size();) {
        if (raw[i] != '$') {
            out += raw[i++];
            continue;
        }
        if (i + 1 < raw.size() && raw[i + 1] == '$') {
            out += '$';
            i += 2;
            continue;
        }
        if (i + 1 < raw.size() && raw[i + 1] == '{') {
            const auto close = raw.find('}', i + 2);
            if (close == std::string_view::npos) fail(p, "'${' without a closing '}'");
            const std::string name(raw.substr(i + 2, close - i - 2));
            if (!valid_var_name(name))
                fail(p, "'${...}' must hold an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
            const char* v = std::getenv(name.c_str());
            if (v == nullptr) fail(p, fmt::format("environment variable {} is not set", name));
            out += v;
            i = close + 1;
            continue;
        }
        fail(p, "a '$' that begins neither ${VAR} nor $$ (write $$ for a dollar sign)");
    }
    return out;
}

/// True when the raw (unexpanded) open string carries a password written out rather
/// than taken from the environment (the core's own list of secret forms: password=,
/// PWD=, a URI's user:secret@).
bool literal_password(std::string_view raw) {
    const auto secrets = secrets_in(raw);
    return std::any_of(secrets.begin(), secrets.end(),
                       [](const std::string& v) { return !v.starts_with("${"); });
}

/// The relative path= of an SQLite open string, if it has one. A last resource keeps its
/// commit markers in that file: opened from another directory, recovery would find an
/// empty database instead of the markers.
std::optional<std::string> relative_sqlite_path(const std::string& open) {
    std::map<std::string, std::string> kv;
    try {
        kv = parse_info(open, {"path", "mode", "busy_timeout", "foreign_keys"});
    } catch (const xarm::error&) {
        return std::nullopt;  // the driver says what is wrong when it opens
    }
    const auto it = kv.find("path");
    if (it == kv.end() || it->second.empty() || it->second == ":memory:" ||
        std::filesystem::path(it->second).is_absolute())
        return std::nullopt;
    return it->second;
}

bool valid_name(std::string_view n) {
    if (n.empty() || n.size() > 64) return false;
    return std::all_of(n.begin(), n.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
}

bool valid_coordinator_id(std::string_view n) {
    return !n.empty() && n.size() <= 16 && valid_name(n);
}

/// Reads one table's keys: each known key's handler is called; an unknown key is an
/// error listing the known ones; a reserved key is an error saying so.
class table_reader {
  public:
    table_reader(const std::string& source, const toml::table& t, std::string prefix)
        : m_source(source), m_table(t), m_prefix(std::move(prefix)) {}

    place at(std::string_view key, const toml::node& n) const {
        return {m_source, m_prefix + std::string(key), line_of(n)};
    }
    place self() const {
        return {
            m_source,
            m_prefix.empty() ? std::string("(top level)") : m_prefix.substr(0, m_prefix.size() - 1),
            line_of(m_table)};
    }

    /// Checks every key against `known` and `reserved` (key -> why it is refused).
    void check_keys(const std::vector<std::string_view>& known,
                    const std::map<std::string_view, std::string_view>& reserved = {}) const {
        for (auto&& [k, v] : m_table) {
            const std::string_view name = k.str();
            if (std::find(known.begin(), known.end(), name) != known.end()) continue;
            const place p{m_source, m_prefix + std::string(name), k.source().begin.line};
            if (auto it = reserved.find(name); it != reserved.end())
                fail(p, fmt::format("reserved for a later version, not supported yet ({})",
                                    it->second));
            std::string list;
            for (auto kn : known) list += (list.empty() ? "" : ", ") + std::string(kn);
            fail(p, fmt::format("unknown key (expected {})", list));
        }
    }

    const toml::node* find(std::string_view key) const { return m_table.get(key); }

    const toml::node& required(std::string_view key) const {
        const toml::node* n = find(key);
        if (n == nullptr) {
            auto p = self();
            p.key = m_prefix + std::string(key);
            fail(p, "missing (required)");
        }
        return *n;
    }

    /// A string value, ${VAR}-expanded.
    std::string string(std::string_view key, const toml::node& n) const {
        if (!n.is_string()) fail(at(key, n), "must be a string");
        return expand(n.as_string()->get(), at(key, n));
    }
    std::optional<std::string> string(std::string_view key) const {
        if (const auto* n = find(key)) return string(key, *n);
        return std::nullopt;
    }
    bool boolean(std::string_view key, bool dflt) const {
        const auto* n = find(key);
        if (n == nullptr) return dflt;
        if (!n->is_boolean()) fail(at(key, *n), "must be true or false");
        return n->as_boolean()->get();
    }
    std::int64_t integer(std::string_view key, std::int64_t dflt, std::int64_t lo,
                         std::int64_t hi) const {
        const auto* n = find(key);
        if (n == nullptr) return dflt;
        if (!n->is_integer()) fail(at(key, *n), "must be an integer");
        const auto v = n->as_integer()->get();
        if (v < lo || v > hi) fail(at(key, *n), fmt::format("must be between {} and {}", lo, hi));
        return v;
    }
    const toml::table& table(std::string_view key, const toml::node& n) const {
        if (!n.is_table()) fail(at(key, n), "must be a table");
        return *n.as_table();
    }
    const std::string& source() const { return m_source; }
    const std::string& prefix() const { return m_prefix; }

  private:
    const std::string& m_source;
    const toml::table& m_table;
    std::string m_prefix;  // "resource.bank." (with the dot) or "" at the top
};

log_config read_log(const table_reader& coord, const toml::node& n) {
    log_config l;
    if (n.is_string()) {
        const std::string path = coord.string("log", n);
        const auto p = coord.at("log", n);
        if (path.empty()) fail(p, "an empty path");
        if (!std::filesystem::path(path).is_absolute())
            fail(p, fmt::format("'{}' is a relative path: give an absolute one (a relative path "
                                "would depend on the directory the program starts in, and a "
                                "wrong one must never look like an empty log)",
                                path));
        l.file = path;
        return l;
    }
    if (!n.is_table())
        fail(coord.at("log", n),
             "must be a file path (\"/var/lib/app/app.tmlog\") or a table "
             "({ table_in = \"RESOURCE\" })");
    const table_reader t(coord.source(), *n.as_table(), coord.prefix() + "log.");
    t.check_keys({"table_in", "driver", "open", "wait_for_lock", "lock_timeout_ms"});
    l.table_in = t.string("table_in").value_or("");
    const auto drv = t.string("driver");
    const auto open = t.string("open");
    if (!l.table_in.empty() && (drv || open))
        fail(t.self(), "give either table_in (a configured resource) or driver and open, not both");
    if (l.table_in.empty()) {
        if (!drv || !open)
            fail(t.self(),
                 "a table log needs table_in = \"RESOURCE\" (its database holds table "
                 "xarm_tm_log), or driver and open for a database that is not a resource");
        l.driver = *drv;
        l.open = *open;
    }
    l.wait_for_lock = t.boolean("wait_for_lock", false);
    l.lock_timeout = std::chrono::milliseconds(
        t.integer("lock_timeout_ms", 0, 0, std::int64_t{24} * 3600 * 1000));
    return l;
}

resource_config read_resource(const std::string& source, const std::string& name,
                              std::size_t key_line, const toml::node& n,
                              std::vector<std::string>& warnings) {
    const place where{source, "resource." + name, key_line};
    if (!valid_name(name)) fail(where, "a resource name is 1-64 characters of [A-Za-z0-9_-]");
    if (!n.is_table()) fail(where, "must be a table ([resource." + name + "])");
    const table_reader t(source, *n.as_table(), "resource." + name + ".");
    t.check_keys({"driver", "switch", "symbol", "open", "one_phase_only"});
    resource_config r;
    r.name = name;
    r.line = line_of(n) > 0 ? line_of(n) : key_line;
    if (const auto* sw = t.find("switch")) {
        if (t.find("driver") != nullptr)
            fail(t.at("switch", *sw), "give either driver (an xarm driver) or switch, not both");
        r.switch_library = t.string("switch", *sw);
        if (r.switch_library.empty() || (r.switch_library.find('/') != std::string::npos &&
                                         !std::filesystem::path(r.switch_library).is_absolute()))
            fail(t.at("switch", *sw),
                 "must be the absolute path of an XA switch library, or a bare library name "
                 "the dynamic linker finds");
        r.symbol = t.string("symbol").value_or("");
        if (const auto* lr = t.find("one_phase_only");
            lr != nullptr && t.boolean("one_phase_only", false))
            fail(t.at("one_phase_only", *lr),
                 "a switch resource cannot be the last resource (it keeps no commit markers)");
    } else {
        if (const auto* sym = t.find("symbol"))
            fail(t.at("symbol", *sym), "only with switch = \"LIBRARY\"");
        const auto& drv = t.required("driver");
        r.driver = t.string("driver", drv);
        if (r.driver != "pq" && r.driver != "mysql" && r.driver != "sqlite" && r.driver != "odbc" &&
            r.driver.find('/') == std::string::npos)
            fail(t.at("driver", drv),
                 fmt::format("unknown driver '{}' (expected pq, mysql, sqlite, odbc, or the path "
                             "of an xarm driver library; a third-party XA switch is given with "
                             "switch = \"/path/lib.so\")",
                             r.driver));
    }
    const auto& open = t.required("open");
    r.open = t.string("open", open);
    if (r.driver == "sqlite")
        if (const auto rel = relative_sqlite_path(r.open))
            fail(t.at("open", open),
                 fmt::format("path '{}' is relative: give an absolute one (a last resource's "
                             "commit markers are in that file, and recovery may start in "
                             "another directory)",
                             *rel));
    if (literal_password(open.as_string()->get()))
        warnings.push_back(fmt::format(
            "{}:{}: resource.{}.open: a password is written in the file; take it from the "
            "environment instead (password=${{VAR}}), so that the file holds no secret",
            source, t.at("open", open).line, name));
    r.one_phase_only = t.boolean("one_phase_only", false);
    return r;
}

std::chrono::seconds read_timeout(const table_reader& t) {
    return std::chrono::seconds(
        t.integer("transaction_timeout_s", 0, 0, std::int64_t{7} * 24 * 3600));
}

profile_config read_profile(const std::string& source, const std::string& name,
                            std::size_t key_line, const toml::node& n) {
    const place where{source, "profile." + name, key_line};
    if (!valid_name(name)) fail(where, "a profile name is 1-64 characters of [A-Za-z0-9_-]");
    if (!n.is_table()) fail(where, "must be a table ([profile." + name + "])");
    const table_reader t(source, *n.as_table(), "profile." + name + ".");
    t.check_keys({"id", "log", "resources", "transaction_timeout_s"});
    profile_config p;
    p.name = name;
    p.line = line_of(n) > 0 ? line_of(n) : key_line;
    if (const auto* id = t.find("id")) {
        p.coordinator_id = t.string("id", *id);
        if (!valid_coordinator_id(p.coordinator_id))
            fail(t.at("id", *id),
                 fmt::format("'{}' is not a coordinator id (1-16 characters of [A-Za-z0-9_-])",
                             p.coordinator_id));
    }
    if (const auto* l = t.find("log")) p.log = read_log(t, *l);
    const auto& res = t.required("resources");
    if (!res.is_array() || res.as_array()->empty())
        fail(t.at("resources", res), "must be a non-empty array of resource names");
    for (const auto& e : *res.as_array()) {
        if (!e.is_string()) fail(t.at("resources", res), "must hold resource names (strings)");
        p.resources.push_back(e.as_string()->get());
    }
    if (t.find("transaction_timeout_s") != nullptr) p.transaction_timeout = read_timeout(t);
    return p;
}

}  // namespace

config parse_config(std::string_view text, const std::string& source) {
    toml::table root;
    try {
        root = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        // toml++ describes the syntax error; it may quote a bare word it could not
        // read, which could be part of an unquoted secret: keep only what precedes
        // the first quote.
        std::string what(e.description());
        if (auto q = what.find('\''); q != std::string::npos && what.size() - q > 4)
            what = what.substr(0, q) + "(the text is not shown)";
        raise(XAER_INVAL, "F0000",
              fmt::format("{}:{}: not valid TOML: {}", source, e.source().begin.line, what));
    }
    config c;
    c.source = source;
    const table_reader top(source, root, "");
    top.check_keys({"coordinator", "resource", "profile"});

    const toml::node* coord_node = root.get("coordinator");
    if (coord_node == nullptr)
        fail({source, "coordinator", 0}, "missing: a [coordinator] table with id and log");
    const table_reader coord(source, top.table("coordinator", *coord_node), "coordinator.");
    coord.check_keys({"id", "log", "transaction_timeout_s", "last_agent"});
    c.transaction_timeout = read_timeout(coord);
    const auto& id = coord.required("id");
    c.coordinator_id = coord.string("id", id);
    if (!valid_coordinator_id(c.coordinator_id))
        fail(coord.at("id", id),
             fmt::format("'{}' is not a coordinator id (1-16 characters of [A-Za-z0-9_-])",
                         c.coordinator_id));
    const auto& log = coord.required("log");
    c.log = read_log(coord, log);

    const toml::node* res_node = root.get("resource");
    if (res_node == nullptr)
        fail({source, "resource", 0},
             "missing: at least one [resource.NAME] table (driver and open string)");
    const auto& res = top.table("resource", *res_node);
    for (auto&& [k, v] : res)
        c.resources.push_back(
            read_resource(source, std::string(k.str()), k.source().begin.line, v, c.warnings));
    if (c.resources.empty())
        fail({source, "resource", line_of(*res_node)}, "no [resource.NAME] table in it");
    // File order, as written (the table itself is sorted by name).
    std::stable_sort(c.resources.begin(), c.resources.end(),
                     [](const auto& a, const auto& b) { return a.line < b.line; });
    const auto lr = std::count_if(c.resources.begin(), c.resources.end(),
                                  [](const auto& r) { return r.one_phase_only; });
    if (lr > 1)
        fail({source, "resource", line_of(*res_node)},
             "more than one resource is one_phase_only: a transaction can have only one last "
             "resource");
    if (const toml::node* prof = root.get("profile")) {
        for (auto&& [k, v] : top.table("profile", *prof)) {
            auto p = read_profile(source, std::string(k.str()), k.source().begin.line, v);
            for (const auto& r : p.resources)
                if (std::none_of(c.resources.begin(), c.resources.end(),
                                 [&](const auto& cr) { return cr.name == r; }))
                    fail({source, "profile." + p.name + ".resources", p.line},
                         fmt::format("'{}' is not a configured resource", r));
            c.profiles.push_back(std::move(p));
        }
    }
    if (const auto* la = coord.find("last_agent")) {
        c.last_agent = coord.string("last_agent", *la);
        if (c.last_agent != "auto" && c.last_agent != "off") {
            const auto r = std::find_if(c.resources.begin(), c.resources.end(),
                                        [&](const auto& x) { return x.name == c.last_agent; });
            if (r == c.resources.end())
                fail(coord.at("last_agent", *la),
                     fmt::format("'{}' is neither \"auto\", \"off\" nor a configured resource",
                                 c.last_agent));
            if (r->one_phase_only || !r->switch_library.empty() ||
                (r->driver != "pq" && r->driver != "mysql"))
                fail(coord.at("last_agent", *la),
                     fmt::format("resource '{}' cannot be a last agent: only a two-phase "
                                 "PostgreSQL (pq) or MariaDB/MySQL (mysql) resource can",
                                 c.last_agent));
        }
    }
    if (!c.log.table_in.empty()) {
        const auto* l = coord.find("log");
        if (std::none_of(c.resources.begin(), c.resources.end(),
                         [&](const auto& r) { return r.name == c.log.table_in; }))
            fail({source, "coordinator.log.table_in", line_of(*l)},
                 fmt::format("'{}' is not a configured resource", c.log.table_in));
    }
    return c;
}

config load_config(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in)
        raise(XAER_INVAL, "F0000",
              fmt::format("{}: cannot read the configuration: {}", file.string(),
                          std::strerror(errno)));
    std::ostringstream text;
    text << in.rdbuf();
    return parse_config(text.str(), file.string());
}

config select_profile(const config& c, const std::string& name) {
    const auto p = std::find_if(c.profiles.begin(), c.profiles.end(),
                                [&](const auto& x) { return x.name == name; });
    if (p == c.profiles.end()) {
        std::string known;
        for (const auto& x : c.profiles) known += (known.empty() ? "" : ", ") + x.name;
        raise(XAER_INVAL, "F0000",
              fmt::format("{}: no [profile.{}] (profiles: {})", c.source, name,
                          known.empty() ? "none" : known));
    }
    config out = c;
    out.profiles.clear();
    if (!p->coordinator_id.empty()) out.coordinator_id = p->coordinator_id;
    if (p->log) out.log = *p->log;
    if (p->transaction_timeout) out.transaction_timeout = *p->transaction_timeout;
    out.resources.clear();
    for (const auto& r : p->resources)
        out.resources.push_back(*std::find_if(c.resources.begin(), c.resources.end(),
                                              [&](const auto& x) { return x.name == r; }));
    return out;
}

std::vector<std::string> resource_names(const config& c) {
    std::vector<std::string> v;
    v.reserve(c.resources.size());
    for (const auto& r : c.resources) v.push_back(r.name);
    return v;
}

resource_factory make_factory(const config& c) {
    auto res = std::make_shared<const std::vector<resource_config>>(c.resources);
    return [res](const std::string& name) -> std::unique_ptr<resource> {
        for (std::size_t i = 0; i < res->size(); ++i) {
            const auto& r = (*res)[i];
            if (r.name != name) continue;
            if (!r.switch_library.empty())
                return std::make_unique<switch_resource>(
                    switch_resource::options{.name = r.name,
                                             .library = r.switch_library,
                                             .symbol = r.symbol,
                                             .open = r.open,
                                             .rmid = static_cast<int>(i + 1)});
            return std::make_unique<connection_resource>(
                name, xarm::connect(r.driver, r.open),
                r.one_phase_only ? connection_resource::mode::one_phase_only
                                 : connection_resource::mode::automatic);
        }
        return nullptr;
    };
}

std::shared_ptr<log_store> open_log(const config& c, bool create) {
    if (!c.log.file.empty()) {
        file_log::options o;
        o.create = create;
        return std::make_shared<file_log>(c.log.file, c.coordinator_id, o);
    }
    std::string driver = c.log.driver, open = c.log.open;
    if (!c.log.table_in.empty()) {
        const auto it = std::find_if(c.resources.begin(), c.resources.end(),
                                     [&](const auto& r) { return r.name == c.log.table_in; });
        if (it == c.resources.end())
            raise(XAER_INVAL, "F0000",
                  fmt::format("{}: coordinator.log.table_in: '{}' is not a configured resource",
                              c.source, c.log.table_in));
        driver = it->driver;
        open = it->open;
    }
    if (driver.empty())
        raise(
            XAER_INVAL, "F0000",
            fmt::format("{}: coordinator.log: neither a file nor a table is configured", c.source));
    table_log::options o;
    o.create = create;
    o.wait_for_lock = c.log.wait_for_lock;
    o.lock_timeout = c.log.lock_timeout;
    return std::make_shared<table_log>(driver, open, c.coordinator_id, o);
}

coordinator::options coordinator_options(const config& c, bool create_log) {
    coordinator::options o;
    o.id = c.coordinator_id;
    o.log = open_log(c, create_log);
    o.create_log = create_log;
    o.factory = make_factory(c);
    o.resources = resource_names(c);
    o.transaction_timeout = c.transaction_timeout;
    o.last_agent = c.last_agent;
    return o;
}

}  // namespace xarm::tm
