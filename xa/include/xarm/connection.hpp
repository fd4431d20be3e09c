// The DB-API-style C++ API: PEP 249's two-phase extension on one connection.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "xarm/driver.hpp"
#include "xarm/export.h"
#include "xarm/protocol.hpp"
#include "xarm/xid.hpp"

namespace xarm {

/// Loads a driver by name ("pq", "mysql", "sqlite", "odbc": libxarm_<name>.so, searched
/// in $XARM_DRIVER_PATH, beside libxarm, then the system's library path) or by library
/// path. The error lists every place tried.
XARM_API std::shared_ptr<const driver> load_driver(std::string_view name_or_path);

/// Loads a switch library the same way (a driver name or any library path, a third
/// party's too) and returns its xa_switch_t: the named symbol when given, else the one
/// lixa_get_xa_switch() returns. The library is never unloaded.
XARM_API xa_switch_t* load_switch(std::string_view name_or_path, std::string_view symbol = {});

/// One database connection speaking PEP 249's two-phase API. Usable from any one
/// thread at a time.
class XARM_API connection {
  public:
    connection(std::shared_ptr<const driver> drv, std::string_view info);
    ~connection();
    connection(connection&&) noexcept;
    connection& operator=(connection&&) noexcept;

    /// PEP 249 xid(format_id, gtrid, bqual); validates (programming_error).
    static xarm::xid xid(long format_id, std::string_view gtrid, std::string_view bqual);

    /// Begins a branch. programming_error inside a branch or with local work pending.
    void tpc_begin(const xarm::xid& x);
    /// Phase one: ends the branch's work and prepares it. Afterwards only tpc_commit()
    /// or tpc_rollback() are allowed.
    void tpc_prepare();
    /// Phase two when prepared, else a one-phase commit. A read-only vote at prepare
    /// leaves nothing to do. After any answer, success or error, the connection is out
    /// of the branch and can begin another.
    void tpc_commit();
    /// Commits a prepared branch by xid (recovery); not inside a branch.
    void tpc_commit(const xarm::xid& x);
    void tpc_rollback();
    void tpc_rollback(const xarm::xid& x);
    /// Forgets a heuristically completed branch (xa_forget); not inside a branch. PEP 249
    /// has no forget: this is XA's, for branches a tpc_commit() reported heuristic.
    void tpc_forget(const xarm::xid& x);
    /// In-doubt branches this connection may finish, foreign names as unparsed xids.
    std::vector<xarm::xid> tpc_recover();

    /// Runs a statement (in the branch when one is active); returns rows affected.
    std::int64_t execute(std::string_view sql);
    result query(std::string_view sql);
    /// Local transaction control; programming_error inside a branch (PEP 249).
    void commit();
    void rollback();

    capability_set capabilities() const;
    const driver& drv() const;
    /// The current branch, or a null xid.
    xarm::xid current() const;
    /// True between tpc_prepare() and tpc_commit()/tpc_rollback().
    bool prepared() const noexcept { return m_phase == phase::prepared; }
    void* native_handle() noexcept;
    void close();

    /// The protocol session, for code that drives XA verbs with flags directly.
    rm_session& session();

  private:
    enum class phase { none, active, ended, prepared };
    void check_open() const;
    void leave_branch() noexcept;
    void abandon_branch() noexcept;

    std::unique_ptr<rm_session> m_session;
    xarm::xid m_xid;
    phase m_phase = phase::none;
    bool m_read_only = false;
};

/// xarm::connect("pq", "host=... dbname=..."): load_driver + connection.
XARM_API connection connect(std::string_view driver_name_or_path, std::string_view info);

}  // namespace xarm
