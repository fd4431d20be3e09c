// OpenLink Virtuoso behind the ODBC driver (Debian: virtodbcu_r.so from libvirtodbc0).
//
// Virtuoso's server keeps prepared XA branches (its transaction log, and the file named
// by xa_persistent_file), but only its JDBC driver drives them: its XAResource sends
// the server's transaction RPC with an encoded XID for XA END, PREPARE, COMMIT and
// ROLLBACK, and lists prepared branches with _2PC.DBA.XA_GET_ALL_XIDS(). The ODBC
// client sends that RPC only to start a branch (connection attribute
// SQL_COPT_SS_ENLIST_IN_XA) or to end Virtuoso's own client-coordinated transaction
// without an XID (SQLEndTran with its SQL_TP_* codes, which unixODBC refuses with
// HY012 before the driver sees them); MS DTC enlistment exists on Windows only. No SQL
// procedure prepares, commits or rolls back a branch by XID. So a branch started
// through ODBC can be committed in one phase only, and nothing prepared could be
// finished by another connection after a crash: Virtuoso takes part in a two-phase
// transaction of xarm's manager as its one-phase last resource. README.md, "ODBC",
// names the Virtuoso sources this was read from.
#include "backend.hpp"

namespace xarm::odbc {

namespace {

class virtuoso_rules final : public backend_rules {
  public:
    explicit virtuoso_rules(session& s) : backend_rules(s, backend::virtuoso) {}

    sql_syntax syntax() const override {
        sql_syntax s = sql_syntax::standard();
        // 'a\'b' is a'b in Virtuoso (unless the session sets NO_CHAR_C_ESCAPE): a ? after
        // an escaped quote is still inside the string.
        s.backslash_escapes = true;
        return s;
    }
    // Its driver answers SQL_C_SBIGINT with no value and cuts SQL_INTEGER to 32 bits.
    binding_quirks quirks() const override { return {.integers_as_text = true}; }

    void declare(capability_set& c, const std::string& via) override {
        c.no(capability::two_phase,
             "Virtuoso keeps prepared XA branches for its JDBC driver only: its ODBC driver "
             "can start an XA branch (SQL_COPT_SS_ENLIST_IN_XA) but has no call, attribute or "
             "SQL procedure that prepares, commits or rolls back one by XID (its own SQL_TP_* "
             "transaction codes carry no XID, and unixODBC refuses them), and MS DTC is "
             "Windows only; use Virtuoso as the transaction manager's one-phase last resource "
             "(" +
                 via + ")")
            .no(capability::recovery,
                "no branch is ever prepared on Virtuoso through ODBC, and a prepared branch "
                "that _2PC.DBA.XA_GET_ALL_XIDS() lists could not be committed or rolled back "
                "through ODBC (" +
                    via + ")")
            .no(capability::read_only_vote, "there is no prepare to vote at");
    }
};

}  // namespace

std::unique_ptr<backend_rules> make_virtuoso_rules(session& s) {
    return std::make_unique<virtuoso_rules>(s);
}

}  // namespace xarm::odbc
