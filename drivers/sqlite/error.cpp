// The SQLite native-error table: result code -> SQLSTATE and rollback reason.
#include <fmt/format.h>

#include "sqlite.hpp"
#include "xarm/xa.h"

namespace xarm::sqlite {

namespace {
struct entry {
    int code;           // primary result code
    const char* state;  // SQLSTATE
    int rollback;       // XA_RB* when this failure ends a transaction
};
constexpr entry table[] = {
    {SQLITE_CONSTRAINT, "23000", XA_RBINTEGRITY},
    {SQLITE_BUSY, "40001", XA_RBTRANSIENT},
    {SQLITE_LOCKED, "40001", XA_RBDEADLOCK},
    {SQLITE_NOMEM, "53200", XA_RBOTHER},
    {SQLITE_FULL, "53100", XA_RBOTHER},
    {SQLITE_IOERR, "58030", XA_RBCOMMFAIL},
    {SQLITE_CANTOPEN, "08001", XA_RBOTHER},
    {SQLITE_READONLY, "25006", XA_RBOTHER},
    {SQLITE_PERM, "42501", XA_RBOTHER},
    {SQLITE_AUTH, "28000", XA_RBOTHER},
    {SQLITE_CORRUPT, "XX001", XA_RBOTHER},
    {SQLITE_NOTADB, "XX001", XA_RBOTHER},
    {SQLITE_MISMATCH, "42804", XA_RBOTHER},
    {SQLITE_TOOBIG, "54000", XA_RBOTHER},
    {SQLITE_RANGE, "22023", XA_RBOTHER},
    {SQLITE_MISUSE, "HY010", XA_RBOTHER},
    {SQLITE_INTERRUPT, "57014", XA_RBOTHER},
    {SQLITE_ERROR, "42000", XA_RBOTHER},  // SQL error or missing database object
};
const entry* lookup(int rc) {
    for (const auto& e : table)
        if (e.code == (rc & 0xff)) return &e;
    return nullptr;
}
}  // namespace

const char* sqlstate_of(int rc) noexcept {
    const entry* e = lookup(rc);
    return e ? e->state : "HY000";
}

int rollback_code_of(int rc) noexcept {
    const entry* e = lookup(rc);
    return e ? e->rollback : XA_RBOTHER;
}

void raise_sqlite(sqlite3* db, int rc, int xa_code, const std::string& context) {
    const char* msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    raise(xa_code, sqlstate_of(rc), fmt::format("{}: {}", context, msg ? msg : sqlite3_errstr(rc)),
          rc);
}

}  // namespace xarm::sqlite
