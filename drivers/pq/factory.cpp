// The PostgreSQL driver object and the library's exported C symbols.
#include "pq.hpp"
#include "xarm/driver/switch.hpp"
#include "xarm/xa.h"

namespace xarm::pq {

namespace {

class pq_driver final : public driver {
  public:
    std::string_view name() const noexcept override { return "pq"; }
    capability_set capabilities() const override { return capabilities_for(1); }
    std::string info_help() const override {
        return "any libpq connection string or URI, e.g.\n"
               "  host=127.0.0.1 port=5432 dbname=app user=app password=secret\n"
               "  postgresql://app:secret@127.0.0.1:5432/app?sslmode=disable\n"
               "(keys: see libpq's \"Parameter Key Words\"; PG* environment variables apply).\n"
               "Two-phase commit needs max_prepared_transactions > 0 on the server.";
    }
    std::unique_ptr<native_session> open(std::string_view info) const override {
        return std::make_unique<session>(std::string(info));
    }
    std::optional<dbms_profile> profile() const override {
        return dbms_profile{
            .lock_timeout = "SET lock_timeout = 1000",
            .foreign_prepare =
                "INSERT INTO {table} (id, v) VALUES (900, 'foreign')\nPREPARE TRANSACTION '{gid}'",
            .foreign_commit = "COMMIT PREPARED '{gid}'",
            .prepared_details =
                "SELECT gid, prepared::text, owner::text, database::text FROM pg_prepared_xacts",
            .type_boolean = "BOOLEAN",
            .type_integer = "BIGINT",
            .type_real = "DOUBLE PRECISION",
            .type_text = "TEXT",
            .type_binary = "BYTEA",
            .type_time = "TIMESTAMP",
            .own_quoting = "\"id\" AS \"q?\", $$?$$ AS dq, E'\\'?' AS es",
        };
    }
    std::string server_name(const xid& x) const override {
        return x.is_unparsed() ? x.gtrid() : encode_pg_gid(x);
    }
    std::vector<test_server> test_servers() const override {
        return {{"pq", "XARM_TEST_PQ", "pq"}};
    }
};

std::shared_ptr<const driver> instance() {
    static const auto d = std::make_shared<const pq_driver>();
    return d;
}

}  // namespace
}  // namespace xarm::pq

XARM_DEFINE_DRIVER_EXPORTS(pq, ::xarm::pq::instance)

/// The calling thread's PGconn for rmid after xa_open (NULL otherwise). Taking it puts
/// the session in direct mode: xa_start sends BEGIN itself (see session.cpp).
extern "C" XARM_API PGconn* xarm_pq_conn(int rmid) {
    return static_cast<PGconn*>(::xarm::native_handle_for(::xarm::pq::instance, rmid));
}
