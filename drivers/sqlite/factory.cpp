// The SQLite driver object and the library's exported C symbols.
#include <fmt/format.h>

#include "sqlite.hpp"
#include "xarm/driver/info.hpp"
#include "xarm/driver/switch.hpp"
#include "xarm/xa.h"

namespace xarm::sqlite {

namespace {

class sqlite_driver final : public driver {
  public:
    std::string_view name() const noexcept override { return "sqlite"; }
    capability_set capabilities() const override { return declared_capabilities(); }
    std::string info_help() const override {
        return "path=FILE (required; ':memory:' for a private in-memory database)\n"
               "mode=rwc|rw|ro (default rwc: create when missing)\n"
               "busy_timeout=MS (default 5000)\n"
               "foreign_keys=on|off (default on)";
    }
    std::unique_ptr<native_session> open(std::string_view info) const override {
        auto kv = parse_info(info, {"path", "mode", "busy_timeout", "foreign_keys"});
        auto it = kv.find("path");
        if (it == kv.end() || it->second.empty())
            raise(XAER_INVAL, "08001", "info string: 'path' is required (e.g. path=/tmp/app.db)");
        int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
        if (auto m = kv.find("mode"); m != kv.end()) {
            if (m->second == "rw")
                flags = SQLITE_OPEN_READWRITE;
            else if (m->second == "ro")
                flags = SQLITE_OPEN_READONLY;
            else if (m->second != "rwc")
                raise(XAER_INVAL, "08001", "info string: mode must be rwc, rw or ro");
        }
        int busy = 5000;
        if (auto b = kv.find("busy_timeout"); b != kv.end()) {
            try {
                std::size_t used = 0;
                busy = std::stoi(b->second, &used);
                if (used != b->second.size() || busy < 0) throw std::invalid_argument("");
            } catch (const std::exception&) {
                raise(XAER_INVAL, "08001",
                      "info string: busy_timeout must be a non-negative number of milliseconds");
            }
        }
        bool fk = true;
        if (auto f = kv.find("foreign_keys"); f != kv.end()) {
            if (f->second == "off")
                fk = false;
            else if (f->second != "on")
                raise(XAER_INVAL, "08001", "info string: foreign_keys must be on or off");
        }
        return std::make_unique<session>(it->second, flags | SQLITE_OPEN_NOMUTEX, busy, fk);
    }
    std::optional<dbms_profile> profile() const override {
        return dbms_profile{
            .lock_timeout = "PRAGMA busy_timeout = 500",
            .type_boolean = "BOOLEAN",
            .type_integer = "BIGINT",
            .type_real = "REAL",
            .type_text = "TEXT",
            .type_binary = "BLOB",
            .type_time = "TIMESTAMP",
        };
    }
    std::vector<test_server> test_servers() const override {
        // No server: a scratch file.
        return {{"sqlite", "", "sqlite", "path={dir}/conformance.db"}};
    }
};

std::shared_ptr<const driver> instance() {
    static const auto d = std::make_shared<const sqlite_driver>();
    return d;
}

}  // namespace
}  // namespace xarm::sqlite

XARM_DEFINE_DRIVER_EXPORTS(sqlite, ::xarm::sqlite::instance)

extern "C" XARM_API sqlite3* xarm_sqlite_db(int rmid) {
    return static_cast<sqlite3*>(::xarm::native_handle_for(::xarm::sqlite::instance, rmid));
}
