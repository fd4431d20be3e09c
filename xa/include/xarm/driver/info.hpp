// Parsing of libpq-style "key=value" info strings (mysql and sqlite drivers), and the
// redaction of secrets in any info string, in one place.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "xarm/export.h"

namespace xarm {

/// key=value pairs separated by spaces; single-quote values with spaces; a backslash
/// escapes the next character. Unknown keys, duplicates and syntax errors are XAER_INVAL
/// errors whose message names the key (never a value). allowed: the accepted keys.
XARM_API std::map<std::string, std::string> parse_info(std::string_view info,
                                                       const std::vector<std::string>& allowed);

/// The secret values an info string carries (password=, PWD=, URI user:secret@), so the
/// core can scrub them from any message, whatever the driver put in it.
XARM_API std::vector<std::string> secrets_in(std::string_view info);
/// message with every occurrence of each secret replaced by "***".
XARM_API std::string scrub(std::string message, const std::vector<std::string>& secrets);

}  // namespace xarm
