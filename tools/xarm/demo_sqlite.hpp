// `xarm demo sqlite`: the SQLite driver's XA and TPC behaviour, step by step.
#pragma once

#include <ostream>
#include <string>

namespace xarm::cli {

/// Walks the SQLite driver through the C switch and the C++ API on the database file at
/// path, printing each call and its answer. Returns 0 when every answer was the one the
/// driver declares, 1 otherwise.
int demo_sqlite(const std::string& path, std::ostream& out);

}  // namespace xarm::cli
