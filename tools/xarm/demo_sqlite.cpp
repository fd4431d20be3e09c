#include "demo_sqlite.hpp"

#include <chrono>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "xarm/connection.hpp"
#include "xarm/driver/switch.hpp"
#include "xarm/xa.h"

namespace xarm::cli {

namespace {

struct walkthrough {
    std::ostream& out;
    int wrong = 0;

    // Prints one call with its answer, marking an answer that is not the expected one.
    void show(const std::string& call, int rc, int want, int rmid) {
        std::string line = fmt::format("  {:<44} -> {}", call, xa_code_name(rc));
        if (rc != XA_OK && rc != XA_RDONLY) {
            xarm_diag d{};
            if (last_error(rmid, &d) == 0)
                line += fmt::format("  [SQLSTATE {}] {}", d.sqlstate, d.message);
        }
        if (rc != want) {
            line += fmt::format("   << UNEXPECTED, wanted {}", xa_code_name(want));
            ++wrong;
        }
        fmt::print(out, "{}\n", line);
    }
};

XID c_xid(const char* gtrid) {
    XID x{};
    x.formatID = 4711;
    x.gtrid_length = static_cast<long>(std::strlen(gtrid));
    x.bqual_length = 1;
    std::memcpy(x.data, gtrid, static_cast<std::size_t>(x.gtrid_length));
    x.data[x.gtrid_length] = '1';
    return x;
}

std::int64_t count(connection& c) {
    auto r = c.query("SELECT count(*) FROM account");
    c.rollback();
    return r.scalar<std::int64_t>();
}

}  // namespace

int demo_sqlite(const std::string& path, std::ostream& out) {
    std::filesystem::remove(path);
    const std::string info = fmt::format("path='{}'", path);
    walkthrough w{out};

    fmt::print(out, "SQLite driver: capabilities as declared\n");
    auto drv = load_driver("sqlite");
    for (const auto& c : drv->capabilities().list())
        fmt::print(out, "  {:<15} {:<4} {}\n", to_string(c.what), c.supported ? "yes" : "no",
                   c.reason);

    fmt::print(out, "\nThe C switch, as a transaction monitor sees it (lixa_get_xa_switch)\n");
    xa_switch_t* sw = load_switch("sqlite");
    std::string open_info = info;
    const int rm = 1;
    XID a = c_xid("demo-a");
    w.show("xa_open(path=...)", sw->xa_open_entry(open_info.data(), rm, TMNOFLAGS), XA_OK, rm);
    w.show("xa_start(a)", sw->xa_start_entry(&a, rm, TMNOFLAGS), XA_OK, rm);
    w.show("xa_start(a) again", sw->xa_start_entry(&a, rm, TMNOFLAGS), XAER_PROTO, rm);
    w.show("xa_end(a, TMSUCCESS)", sw->xa_end_entry(&a, rm, TMSUCCESS), XA_OK, rm);
    w.show("xa_prepare(a)", sw->xa_prepare_entry(&a, rm, TMNOFLAGS), XAER_RMERR, rm);
    w.show("xa_commit(a) without TMONEPHASE", sw->xa_commit_entry(&a, rm, TMNOFLAGS), XAER_PROTO,
           rm);
    w.show("xa_commit(a, TMONEPHASE)", sw->xa_commit_entry(&a, rm, TMONEPHASE), XA_OK, rm);
    XID page[4];
    w.show("xa_recover(TMSTARTRSCAN|TMENDRSCAN) count",
           sw->xa_recover_entry(page, 4, rm, TMSTARTRSCAN | TMENDRSCAN), 0, rm);
    XID bad = a;
    bad.gtrid_length = 65;
    w.show("xa_start(gtrid_length 65)", sw->xa_start_entry(&bad, rm, TMNOFLAGS), XAER_INVAL, rm);
    XID unknown = c_xid("never-started");
    w.show("xa_end(unknown xid)", sw->xa_end_entry(&unknown, rm, TMSUCCESS), XAER_NOTA, rm);
    XID b = c_xid("demo-b");
    w.show("xa_start(b); xa_end(b, TMFAIL)",
           (sw->xa_start_entry(&b, rm, TMNOFLAGS), sw->xa_end_entry(&b, rm, TMFAIL)), XA_RBROLLBACK,
           rm);
    w.show("xa_commit(b, TMONEPHASE)", sw->xa_commit_entry(&b, rm, TMONEPHASE), XA_RBROLLBACK, rm);
    w.show("xa_close", sw->xa_close_entry(open_info.data(), rm, TMNOFLAGS), XA_OK, rm);

    fmt::print(out, "\nThe C++ API (PEP 249's two-phase names, bound parameters)\n");
    auto c = connect("sqlite", info);
    c.execute(
        "CREATE TABLE account (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, "
        "balance INTEGER NOT NULL, opened TIMESTAMP)");
    c.commit();
    auto other = connect("sqlite", info);
    const auto opened = std::chrono::sys_days{std::chrono::year{2024} / 1 / 31};
    c.tpc_begin(c.xid(42, "transfer-1", "sqlite"));
    auto open_account = c.prepare("INSERT INTO account VALUES (?, ?, ?, ?)");
    open_account.execute(1, "Zoë O'Brien", 100, opened);
    open_account.execute(2, "Bob -- ? $1", 50, std::nullopt);
    fmt::print(out,
               "  tpc_begin + 2 inserts (a prepared statement); rows seen by another "
               "connection: {}\n",
               count(other));
    c.tpc_commit();
    fmt::print(out, "  tpc_commit() without prepare (one phase); rows now: {}\n", count(other));
    for (const auto& row : other.query("SELECT id, owner, balance, opened FROM account")) {
        fmt::print(out, "    id {} owner \"{}\" balance {} opened {}\n", row.get<int>("id"),
                   row.get<std::string>("owner"), row.get<std::int64_t>("balance"),
                   row["opened"].value_or("NULL"));
    }
    other.rollback();
    try {
        branch transfer(c, c.xid(42, "transfer-2", "sqlite"));
        c.execute("UPDATE account SET balance = balance - ? WHERE id = ?", 10, 1);
        transfer.prepare();
        fmt::print(out, "  tpc_prepare() succeeded   << UNEXPECTED\n");
        ++w.wrong;
    } catch (const not_supported_error& e) {
        fmt::print(out, "  tpc_prepare() -> not_supported_error: {}\n", e.what());
    }  // the branch guard rolls the branch back
    auto r = other.query("SELECT balance FROM account WHERE id = ?", 1);
    other.rollback();
    fmt::print(out, "  left the xarm::branch scope: rolled back; balance of account 1 still {}\n",
               r.scalar<std::int64_t>());
    try {
        other.query("SELECT balance FROM account WHERE id = ? AND owner = ?", 1);
        fmt::print(out, "  a missing argument was accepted   << UNEXPECTED\n");
        ++w.wrong;
    } catch (const programming_error& e) {
        fmt::print(out, "  one argument for two placeholders -> programming_error: {}\n", e.what());
    }
    fmt::print(out, "  tpc_recover(): {} in-doubt branches\n", c.tpc_recover().size());
    fmt::print(out, "\n{}\n",
               w.wrong == 0 ? "Every answer was the declared one."
                            : fmt::format("{} UNEXPECTED answers", w.wrong));
    return w.wrong == 0 ? 0 : 1;
}

}  // namespace xarm::cli
