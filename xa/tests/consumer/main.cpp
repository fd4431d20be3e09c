// Uses the installed headers and library: an xid, its encodings (from the driver SDK
// headers), a connection, and checks that the application headers stay free of xa.h.
#include <iostream>

#include <xarm/connection.hpp>
#include <xarm/driver/codec.hpp>
#include <xarm/tm.hpp>

// The application headers bring none of xa.h's macros (an application may have its own).
#if defined(TMNOFLAGS) || defined(XA_OK) || defined(MAXGTRIDSIZE)
#error "xarm/connection.hpp or xarm/tm.hpp pulled in xa.h"
#endif

int main() {
    auto x = xarm::connection::xid(42, "gtrid", "bqual");
    if (xarm::encode_pg_gid(x) != "42_Z3RyaWQ=_YnF1YWw=") return 1;
    auto c = xarm::connect("sqlite", "path=:memory:");  // found beside the installed libxarm
    c.tpc_begin(x);
    c.execute("CREATE TABLE t (v)");
    c.execute("INSERT INTO t VALUES (?)", 7);
    if (c.query("SELECT v FROM t").scalar<int>() != 7) return 1;
    c.tpc_commit();
    (void)xarm::tm::fault_injection_enabled();  // libxarm_tm links on its own
    std::cout << "consumer: xarm found, sqlite driver loaded, a bound parameter read back, "
                 "one-phase commit done\n";
    return 0;
}
