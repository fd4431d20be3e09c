// The error model: one root exception carrying the XA code and the database's diagnostics.
#pragma once

#include <stdexcept>
#include <string>

#include "xarm/export.h"

namespace xarm {

/// What went wrong, in the terms both the C switch and the C++ API report.
struct diagnostic {
    int xa_code = 0;       ///< the XA code a switch entry returns for this failure
    std::string sqlstate;  ///< five characters; "0A000" for not supported
    long native_code = 0;  ///< the database's own error number
    std::string driver;    ///< "pq", "sqlite", ...; filled in by the core when empty
    std::string message;   ///< never contains a password
};

/// Root of every xarm exception.
class XARM_API error : public std::runtime_error {
  public:
    explicit error(diagnostic d);
    int xa_code() const noexcept { return m_diag.xa_code; }
    const std::string& sqlstate() const noexcept { return m_diag.sqlstate; }
    long native_code() const noexcept { return m_diag.native_code; }
    const std::string& driver() const noexcept { return m_diag.driver; }
    const diagnostic& diag() const noexcept { return m_diag; }

  private:
    diagnostic m_diag;
};

/// PEP 249 NotSupportedError: a capability the driver declares missing.
class XARM_API not_supported_error : public error {
    using error::error;
};
/// Misuse: a call in the wrong state, a bad argument (XAER_PROTO, XAER_INVAL, XAER_NOTA, ...).
class XARM_API programming_error : public error {
    using error::error;
};
/// The branch was rolled back (XA_RB*).
class XARM_API rollback_error : public error {
    using error::error;
};
/// The branch was completed heuristically (XA_HEUR*).
class XARM_API heuristic_error : public error {
    using error::error;
};
/// The connection or the server was lost (XAER_RMFAIL).
class XARM_API operational_error : public error {
  public:
    operational_error(diagnostic d, bool in_doubt);
    /// True when the outcome of a commit or prepare is unknown: recover to learn it.
    bool in_doubt() const noexcept { return m_in_doubt; }

  private:
    bool m_in_doubt;
};
/// Anything else the server reported (XAER_RMERR).
class XARM_API database_error : public error {
    using error::error;
};
/// PEP 249 DataError: a value that cannot be stored, converted or read as asked
/// (SQLSTATE class 22: a field read as a type it cannot convert to, a number out of range,
/// invalid input for the column's type).
class XARM_API data_error : public database_error {
  public:
    explicit data_error(diagnostic d) : database_error(std::move(d)) {}
};

/// Throws the exception class that fits d (the single place that chooses it).
[[noreturn]] XARM_API void raise(diagnostic d, bool in_doubt = false);
/// Shorthand: raise({xa_code, sqlstate, native, "", message}).
[[noreturn]] XARM_API void raise(int xa_code, std::string sqlstate, std::string message,
                                 long native_code = 0);

/// The XA code's name, e.g. "XAER_PROTO", "XA_RBDEADLOCK".
XARM_API const char* xa_code_name(int code) noexcept;
XARM_API bool is_rollback_code(int code) noexcept;
XARM_API bool is_heuristic_code(int code) noexcept;

}  // namespace xarm
