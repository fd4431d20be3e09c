#include "xarm/connection.hpp"

#include <fmt/format.h>

#include "xa.h"

namespace xarm {

namespace {
[[noreturn]] void misuse(std::string msg) {
    raise(XAER_PROTO, "XAE06", std::move(msg));
}
}  // namespace

connection::connection(std::shared_ptr<const driver> drv, std::string_view info)
    : m_session(open_session(std::move(drv), info)) {}

connection::~connection() = default;
connection::connection(connection&&) noexcept = default;
connection& connection::operator=(connection&&) noexcept = default;

xarm::xid connection::xid(long format_id, std::string_view gtrid, std::string_view bqual) {
    return xarm::xid(format_id, gtrid, bqual);
}

void connection::check_open() const {
    if (!m_session) raise(XAER_PROTO, "08003", "the connection is closed");
}

rm_session& connection::session() {
    check_open();
    return *m_session;
}

void connection::leave_branch() noexcept {
    m_phase = phase::none;
    m_xid = {};
    m_read_only = false;
}

void connection::tpc_begin(const xarm::xid& x) {
    check_open();
    if (m_phase != phase::none)
        misuse(fmt::format("tpc_begin: two-phase transaction {} is already in progress",
                           m_xid.to_string()));
    if (x.is_null() || x.is_unparsed())
        raise(XAER_INVAL, "XAE05",
              "tpc_begin: the xid must be made with xid(format, gtrid, bqual)");
    m_session->start(x, TMNOFLAGS);
    m_xid = x;
    m_phase = phase::active;
}

void connection::tpc_prepare() {
    check_open();
    if (m_phase == phase::none) misuse("tpc_prepare: no two-phase transaction in progress");
    if (m_phase == phase::prepared) misuse("tpc_prepare: the transaction is already prepared");
    if (m_phase == phase::active) {
        try {
            m_session->end(m_xid, TMSUCCESS);
        } catch (const rollback_error&) {
            // The work failed: finish the rollback so the connection is usable again.
            try {
                m_session->rollback(m_xid, TMNOFLAGS);
            } catch (const error&) {
            }
            leave_branch();
            throw;
        } catch (const operational_error&) {
            leave_branch();
            throw;
        }
        m_phase = phase::ended;
    }
    try {
        m_read_only = m_session->prepare(m_xid, TMNOFLAGS) == XA_RDONLY;
    } catch (const rollback_error&) {
        leave_branch();
        throw;
    } catch (const operational_error&) {
        leave_branch();
        throw;
    }
    m_phase = phase::prepared;
}

void connection::tpc_commit() {
    check_open();
    switch (m_phase) {
        case phase::none:
            misuse("tpc_commit: no two-phase transaction in progress");
        case phase::prepared:
            if (!m_read_only) {
                try {
                    m_session->commit(m_xid, TMNOFLAGS);
                } catch (const error&) {
                    // Whatever phase two answered (in doubt, gone, heuristic, refused),
                    // the connection is free again: tpc_recover() shows a branch still
                    // prepared, tpc_forget() clears a heuristic one.
                    leave_branch();
                    throw;
                }
            }
            leave_branch();
            return;
        case phase::active:
            try {
                m_session->end(m_xid, TMSUCCESS);
            } catch (const rollback_error&) {
                try {
                    m_session->rollback(m_xid, TMNOFLAGS);
                } catch (const error&) {
                }
                leave_branch();
                throw;
            } catch (const operational_error&) {
                leave_branch();
                throw;
            }
            m_phase = phase::ended;
            [[fallthrough]];
        case phase::ended:
            try {
                m_session->commit(m_xid, TMONEPHASE);
            } catch (const rollback_error&) {
                leave_branch();
                throw;
            } catch (const error&) {
                // Not committed, not known to be rolled back: roll back what may be
                // left so that the connection can begin again.
                abandon_branch();
                throw;
            }
            leave_branch();
            return;
    }
}

void connection::tpc_commit(const xarm::xid& x) {
    check_open();
    if (m_phase != phase::none)
        misuse("tpc_commit(xid) is for recovery: not allowed inside a two-phase transaction");
    m_session->commit(x, TMNOFLAGS);
}

void connection::tpc_rollback() {
    check_open();
    switch (m_phase) {
        case phase::none:
            misuse("tpc_rollback: no two-phase transaction in progress");
        case phase::active:
            try {
                m_session->end(m_xid, TMSUCCESS);
            } catch (const rollback_error&) {
                // already rollback-only: the rollback below finishes it
            } catch (const operational_error&) {
                leave_branch();  // the server rolled the work back with the connection
                throw;
            }
            [[fallthrough]];
        case phase::ended:
        case phase::prepared:
            if (!(m_phase == phase::prepared && m_read_only)) {
                try {
                    m_session->rollback(m_xid, TMNOFLAGS);
                } catch (const rollback_error&) {
                    // rolled back, which is what was asked
                } catch (const error&) {
                    leave_branch();
                    throw;
                }
            }
            leave_branch();
            return;
    }
}

void connection::tpc_rollback(const xarm::xid& x) {
    check_open();
    if (m_phase != phase::none)
        misuse("tpc_rollback(xid) is for recovery: not allowed inside a two-phase transaction");
    m_session->rollback(x, TMNOFLAGS);
}

void connection::tpc_forget(const xarm::xid& x) {
    check_open();
    if (m_phase != phase::none)
        misuse("tpc_forget(xid) is for recovery: not allowed inside a two-phase transaction");
    m_session->forget(x, TMNOFLAGS);
}

void connection::abandon_branch() noexcept {
    try {
        m_session->rollback(m_xid, TMNOFLAGS);
    } catch (const std::exception&) {
        // gone already, or the connection is lost: nothing of the branch is left here
    }
    leave_branch();
}

std::vector<xarm::xid> connection::tpc_recover() {
    check_open();
    return m_session->recover_all();
}

std::int64_t connection::execute(std::string_view sql) {
    check_open();
    if (m_phase == phase::prepared || m_phase == phase::ended)
        misuse("execute: no statements between tpc_prepare() and tpc_commit()/tpc_rollback()");
    return m_session->execute(sql);
}

result connection::query(std::string_view sql) {
    check_open();
    if (m_phase == phase::prepared || m_phase == phase::ended)
        misuse("query: no statements between tpc_prepare() and tpc_commit()/tpc_rollback()");
    return m_session->query(sql);
}

void connection::commit() {
    check_open();
    if (m_phase != phase::none)
        misuse("commit: not allowed inside a two-phase transaction; use tpc_commit()");
    m_session->commit_local();
}

void connection::rollback() {
    check_open();
    if (m_phase != phase::none)
        misuse("rollback: not allowed inside a two-phase transaction; use tpc_rollback()");
    m_session->rollback_local();
}

capability_set connection::capabilities() const {
    check_open();
    return m_session->capabilities();
}

const driver& connection::drv() const {
    check_open();
    return m_session->drv();
}

xarm::xid connection::current() const {
    return m_xid;
}

void* connection::native_handle() noexcept {
    return m_session ? m_session->native().native_handle() : nullptr;
}

void connection::close() {
    m_session.reset();
    leave_branch();
}

connection connect(std::string_view driver_name_or_path, std::string_view info) {
    return connection(load_driver(driver_name_or_path), info);
}

}  // namespace xarm
