// The encodings of xids and bytes that drivers, the manager and the tools share: the
// PostgreSQL gid and MariaDB XA literal forms (the contracts of docs/DESIGN.md), base64
// and hex. Part of the driver-author SDK, not of the application API.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "xarm/export.h"
#include "xarm/xid.hpp"

namespace xarm {

/// Standard padded base64 (RFC 4648), as the PostgreSQL gid encoding needs.
XARM_API std::string base64_encode(std::string_view bytes);
/// Strict decoding: padding required, no whitespace; nullopt when not canonical base64.
XARM_API std::optional<std::string> base64_decode(std::string_view text);
XARM_API std::string hex_encode(std::string_view bytes);
/// The bytes a hex string (either case) spells; nullopt for odd length or a non-hex digit.
XARM_API std::optional<std::string> hex_decode(std::string_view hex);

/// PostgreSQL gid: "<formatID>_<base64(gtrid)>_<base64(bqual)>" (pgjdbc, psycopg, LIXA).
XARM_API std::string encode_pg_gid(const xid& x);
/// The xid a gid encodes, or an unparsed xid holding the gid when it is foreign.
XARM_API xid decode_pg_gid(std::string_view gid);

/// MySQL/MariaDB: X'<hex gtrid>',X'<hex bqual>',<formatID>: no XID byte reaches SQL raw.
XARM_API std::string encode_mysql_xid(const xid& x);

}  // namespace xarm
