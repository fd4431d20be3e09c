// The process-wide registry of prepared MySQL/MariaDB branches still attached to a live
// connection of this process, shared by the native mysql driver (its parked links) and
// the ODBC driver (its sessions' connections): header-only, no client library.
//
// MariaDB lets only the session that prepared a branch finish it until that session
// ends; phase two from another session of the process finds the holder here and runs
// there. A branch whose holder closed stays known (without a holder, with the server
// session that held it) until it is finished: a finisher first waits until the server
// has torn that session down (wait_session_gone: MariaDB 10.11 answers an XA COMMIT
// sent while it does so with success yet commits nothing), and one meeting the branch
// still attached waits instead of blaming another process (finish_detached).
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "xarm/xid.hpp"

namespace xarm::mysql {

/// Holder: what holds a branch (mysql's link, odbc's branch_holder), with its own mutex.
template <class Holder>
class attached_registry {
  public:
    struct found {
        std::shared_ptr<Holder> holder;  ///< the live holder, or null
        bool ours = false;               ///< x was prepared in this process
        long closed_session = 0;         ///< the server session that held x, once closed
    };
    /// x was prepared on server and stays attached to h.
    void attach(const std::string& server, const xid& x, const std::shared_ptr<Holder>& h) {
        std::lock_guard g(m_mu);
        m_owners[{server, x}] = {h, 0};
    }
    /// The live holder of x (or null), whether x was prepared in this process, and the
    /// server session that held it if that was closed.
    found owner(const std::string& server, const xid& x) {
        std::lock_guard g(m_mu);
        auto it = m_owners.find({server, x});
        if (it == m_owners.end()) return {};
        return {it->second.holder.lock(), true, it->second.closed_session};
    }
    /// x's holder is closing or reconnecting: x stays known, without a holder, with the
    /// server session (CONNECTION_ID(); 0 when unknown) that held it.
    void detached(const std::string& server, const xid& x, long session) {
        std::lock_guard g(m_mu);
        if (auto it = m_owners.find({server, x}); it != m_owners.end()) {
            it->second.holder.reset();
            it->second.closed_session = session;
        }
    }
    /// x was finished.
    void forget(const std::string& server, const xid& x) {
        std::lock_guard g(m_mu);
        m_owners.erase({server, x});
    }
    /// XA RECOVER on server listed exactly `listed`: a detached branch of ours that is
    /// not there was finished elsewhere (another process, recovery): forget it.
    void prune(const std::string& server, const std::vector<xid>& listed) {
        std::lock_guard g(m_mu);
        std::erase_if(m_owners, [&](const auto& e) {
            return e.first.first == server && e.second.holder.expired() &&
                   std::find(listed.begin(), listed.end(), e.first.second) == listed.end();
        });
    }
    std::size_t size() {
        std::lock_guard g(m_mu);
        return m_owners.size();
    }

  private:
    struct entry {
        std::weak_ptr<Holder> holder;
        long closed_session = 0;
    };
    std::mutex m_mu;
    std::map<std::pair<std::string, xid>, entry> m_owners;
};

}  // namespace xarm::mysql
