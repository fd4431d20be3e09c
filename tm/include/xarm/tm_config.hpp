// A coordinator described in a TOML file: its identity, its decision log and its
// resources, so that an application and an operator's `xarm recover --config FILE`
// build the very same coordinator. Secrets come from the environment (${VAR}), never
// from the file, and never appear in a message.
//
//   [coordinator]
//   id = "orders"                              # 1-16 of [A-Za-z0-9_-], one live process
//   log = "/var/lib/orders/orders.tmlog"       # a file on local disk (absolute path), or
//   # log = { table_in = "bank" }              # table xarm_tm_log in resource bank's database
//   # last_agent = "auto"                      # or "off" (always force the log), or a
//                                              # resource name (only that one)
//
//   [resource.bank]                            # the name recovery reconnects by
//   driver = "pq"                              # pq, mysql, sqlite, odbc, or a library path
//   open = "host=db1 dbname=bank user=app password=${BANK_PASSWORD}"
//
//   [resource.cache]
//   driver = "sqlite"
//   open = "path=/var/lib/orders/cache.db"
//   one_phase_only = true                      # the last resource
//
//   [resource.queue]                           # any XA resource manager, by its switch
//   switch = "/opt/vendor/lib/libvendorxa.so"  # the library (absolute path or a bare name)
//   symbol = "vendor_xa_switch"                # optional; default: lixa_get_xa_switch()
//   open = "..."                               # the switch's xa_open info string
//
//   [profile.transfer]                         # one file, several programs (the TX
//   id = "transfer"                            # interface: XARM_TX_PROFILE); each
//   log = "/var/lib/orders/transfer.tmlog"     # profile is a coordinator of its own:
//   resources = ["bank", "shop"]               # its rmids are 1, 2, ... in this order
//   transaction_timeout_s = 30
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "xarm/export.h"
#include "xarm/tm.hpp"

namespace xarm::tm {

/// One [resource.NAME] table.
struct resource_config {
    std::string name;    ///< 1-64 of [A-Za-z0-9_-]: the log records branches under it
    std::string driver;  ///< "pq", "mysql", "sqlite", "odbc", or a path to an xarm driver
    std::string open;    ///< expanded open string: may hold a password, never print it
    /// Enlisted as the one-phase last resource even when its driver can prepare.
    bool one_phase_only = false;
    std::size_t line = 0;  ///< where the table starts in the file (0: built in code)
    /// Or (driver empty): an XA switch library (tm::switch_resource) and its symbol.
    std::string switch_library, symbol;
};

/// Where the decision log is: a file, or table xarm_tm_log in a PostgreSQL database
/// (that of a configured resource, or one given by driver + open string).
struct log_config {
    std::filesystem::path file;                 ///< absolute; empty for a table log
    std::string table_in;                       ///< resource whose database holds the table
    std::string driver, open;                   ///< or: a database that is not a resource
    bool wait_for_lock = false;                 ///< table log: wait for a live owner (standby)
    std::chrono::milliseconds lock_timeout{0};  ///< with wait_for_lock; 0: for ever
};

/// One [profile.NAME] table: a coordinator of its own over some of the resources.
struct profile_config {
    std::string name;
    std::string coordinator_id;          ///< empty: the [coordinator] id
    std::optional<log_config> log;       ///< none: the [coordinator] log
    std::vector<std::string> resources;  ///< in rmid order (1, 2, ...)
    std::optional<std::chrono::seconds> transaction_timeout;
    std::size_t line = 0;
};

/// A coordinator's configuration, as loaded (or built in code).
struct config {
    std::string source;  ///< the file it came from, for messages
    std::string coordinator_id;
    log_config log;
    std::vector<resource_config> resources;  ///< in file order
    /// A global transaction older than this is rolled back (0: no limit).
    std::chrono::seconds transaction_timeout{0};
    /// coordinator::options::last_agent: "auto", "off" or a configured resource's name.
    std::string last_agent = "auto";
    std::vector<profile_config> profiles;
    /// Things that work but should not be so, e.g. a password written in the file.
    std::vector<std::string> warnings;
};

/// Reads and checks a configuration file. Every string value has ${VAR} replaced by
/// the environment variable VAR ($$ is a dollar sign). Errors (xarm::programming_error,
/// SQLSTATE F0000) name the file, the line and the key: an unknown key, a missing one,
/// a value of the wrong type, an unset variable (by name, never a value).
XARM_API config load_config(const std::filesystem::path& file);
/// The same from text; `source` names it in messages.
XARM_API config parse_config(std::string_view text, const std::string& source);

/// The configuration as profile `name` sees it: its id, log and timeout (or the
/// [coordinator]'s), and only its resources, in the profile's order. An unknown profile
/// is an error naming the known ones.
XARM_API config select_profile(const config& c, const std::string& name);

/// The configured resources' names, in file order.
XARM_API std::vector<std::string> resource_names(const config& c);
/// Makes each configured resource by name: a connection_resource on a new connection,
/// or for a switch a tm::switch_resource opened on the calling thread with rmid = its
/// position in c.resources (1, 2, ...); an unknown name gives nullptr. The factory keeps
/// its own copy of the configuration.
XARM_API resource_factory make_factory(const config& c);
/// Opens the configured log: a file_log (created when missing only with `create`) or a
/// table_log. Fails at once when another process holds it, naming the holder.
XARM_API std::shared_ptr<log_store> open_log(const config& c, bool create);
/// Options for a coordinator built from c: id, the opened log, and start-up recovery of
/// every configured resource. `create_log`: the application's first start may create a
/// missing log file; an operator's recovery never does.
XARM_API coordinator::options coordinator_options(const config& c, bool create_log);

}  // namespace xarm::tm
