// The ODBC driver object and the library's exported C symbols.
#include "odbc.hpp"
#include "xarm/driver/switch.hpp"
#include "xarm/xa.h"

namespace xarm::odbc {

namespace {

class odbc_driver final : public driver {
  public:
    std::string_view name() const noexcept override { return "odbc"; }
    capability_set capabilities() const override {
        // The most a connection can have: what it has depends on the DBMS behind it.
        capability_set c;
        const std::string per = "depends on the DBMS behind the connection: ";
        c.yes(capability::two_phase, per +
                                         "PostgreSQL and MariaDB/MySQL through their own SQL; "
                                         "not others (ODBC has no two-phase commit)")
            .yes(capability::one_phase,
                 "SQLEndTran(SQL_COMMIT), or the backend's XA COMMIT ONE PHASE")
            .yes(capability::recovery, per + "pg_prepared_xacts, XA RECOVER; not others")
            .yes(capability::read_only_vote, per + "PostgreSQL only")
            .yes(capability::join, "TMJOIN of an ended branch on the same connection")
            .yes(capability::suspend_resume, "on the same thread, with no other branch in between")
            .no(capability::migrate, "a branch belongs to its thread's ODBC connection")
            .no(capability::async, "this driver makes ODBC calls synchronously")
            .no(capability::interleave, "an ODBC connection holds one transaction at a time");
        return c;
    }
    std::string info_help() const override {
        return "any ODBC connection string, e.g. DSN=name;UID=user;PWD=secret or\n"
               "Driver={PostgreSQL Unicode};Server=host;Port=5432;Database=db;UID=user;PWD=secret\n"
               "(unixODBC reads DSNs from $ODBCINI / $ODBCSYSINI). Two-phase commit works when "
               "the\n"
               "DBMS behind it is PostgreSQL or MariaDB/MySQL; see capabilities.";
    }
    std::unique_ptr<native_session> open(std::string_view info) const override {
        return std::make_unique<session>(std::string(info));
    }
    std::vector<test_server> test_servers() const override {
        return {{"odbc/pq", "XARM_TEST_ODBC_PQ", "pq"},
                {"odbc/mysql", "XARM_TEST_ODBC_MYSQL", "mysql"},
                {"odbc/sqlite", "XARM_TEST_ODBC_SQLITE", "sqlite"}};
    }
    std::string unusable_info(std::string_view, std::string_view secret) const override {
        return "DSN=xarm_no_such_dsn_conformance;UID=nobody;PWD=" + std::string(secret);
    }
};

std::shared_ptr<const driver> instance() {
    static const auto d = std::make_shared<const odbc_driver>();
    return d;
}

}  // namespace
}  // namespace xarm::odbc

XARM_DEFINE_DRIVER_EXPORTS(odbc, ::xarm::odbc::instance)

extern "C" XARM_API SQLHDBC xarm_odbc_hdbc(int rmid) {
    return static_cast<SQLHDBC>(::xarm::native_handle_for(::xarm::odbc::instance, rmid));
}
