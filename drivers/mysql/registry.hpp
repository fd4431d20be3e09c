// The process-wide registry of prepared MySQL/MariaDB branches still attached to a live
// connection of this process, shared by the native mysql driver (its parked links) and
// the ODBC driver (its sessions' connections): header-only, no client library.
//
// MariaDB lets only the session that prepared a branch finish it until that session
// ends; phase two from another session of the process finds the holder here and runs
// there. A branch whose holder closed stays known (without a holder) until it is
// finished, so that a finisher meeting it still attached (the server has not torn the
// old session down yet) waits instead of blaming another process (finish_detached).
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
    /// x was prepared on server and stays attached to h.
    void attach(const std::string& server, const xid& x, const std::shared_ptr<Holder>& h) {
        std::lock_guard g(m_mu);
        m_owners[{server, x}] = h;
    }
    /// The live holder of x (or null), and whether x was prepared in this process.
    std::pair<std::shared_ptr<Holder>, bool> owner(const std::string& server, const xid& x) {
        std::lock_guard g(m_mu);
        auto it = m_owners.find({server, x});
        if (it == m_owners.end()) return {nullptr, false};
        return {it->second.lock(), true};
    }
    /// x's holder is closing or reconnecting: x stays known, without a holder.
    void detached(const std::string& server, const xid& x) {
        std::lock_guard g(m_mu);
        if (auto it = m_owners.find({server, x}); it != m_owners.end()) it->second.reset();
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
            return e.first.first == server && e.second.expired() &&
                   std::find(listed.begin(), listed.end(), e.first.second) == listed.end();
        });
    }
    std::size_t size() {
        std::lock_guard g(m_mu);
        return m_owners.size();
    }

  private:
    std::mutex m_mu;
    std::map<std::pair<std::string, xid>, std::weak_ptr<Holder>> m_owners;
};

}  // namespace xarm::mysql
