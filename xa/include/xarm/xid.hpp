// The transaction branch identifier as a value type.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "xarm/export.h"

// XA's C layout, declared as xa.h does, so that this header brings none of its macros.
struct xid_t;

namespace xarm {

/// A transaction branch identifier: format id, global transaction id and branch
/// qualifier, binary-safe. A default-constructed xid is the null XID.
///
/// An xid read back from a database that does not parse as one of ours (a "foreign"
/// gid, e.g. a PostgreSQL transaction prepared by hand) is *unparsed*: it has no format
/// id and its gtrid holds the whole name, so it can still be committed or rolled back.
class XARM_API xid {
  public:
    static constexpr long null_format = -1;
    static constexpr std::size_t max_gtrid = 64;  ///< MAXGTRIDSIZE (checked in xid.cpp)
    static constexpr std::size_t max_bqual = 64;  ///< MAXBQUALSIZE
    /// Format ids are kept to 0..2^31-1 so that every database can store them.
    static constexpr long max_format = 0x7fffffffL;

    xid() = default;
    /// Validates: format id 0..2^31-1, gtrid 1..64 bytes, bqual 0..64 bytes
    /// (programming_error, XAER_INVAL, otherwise).
    xid(long format_id, std::string_view gtrid, std::string_view bqual);

    /// A name found in a database that is not one of our encodings.
    static xid unparsed(std::string_view name);
    /// Reads and validates a C XID; XAER_INVAL on a null pointer, the null XID or bad lengths.
    static xid from_c(const ::xid_t* c);

    void to_c(::xid_t& out) const;  ///< requires !is_null() && !is_unparsed()

    long format_id() const noexcept { return m_format; }
    const std::string& gtrid() const noexcept { return m_gtrid; }
    const std::string& bqual() const noexcept { return m_bqual; }
    bool is_null() const noexcept { return m_format == null_format && !m_unparsed; }
    bool is_unparsed() const noexcept { return m_unparsed; }

    /// For messages, logs and listings: "fmt:hexgtrid:hexbqual", or the foreign name
    /// quoted, with a backslash, a quote and every byte below 0x20 or 0x7f written as an
    /// escape (\\, \', \n, \r, \t, \xHH), so that a crafted name cannot split or spoof
    /// a line. from_string() reads it back.
    std::string to_string() const;
    /// The inverse of to_string(); XAER_INVAL (SQLSTATE 22023) naming what is wrong.
    static xid from_string(std::string_view text);

    friend bool operator==(const xid&, const xid&) = default;
    friend auto operator<=>(const xid&, const xid&) = default;

  private:
    long m_format = null_format;
    std::string m_gtrid;
    std::string m_bqual;
    bool m_unparsed = false;
};

}  // namespace xarm

template <>
struct std::hash<xarm::xid> {
    std::size_t operator()(const xarm::xid& x) const noexcept {
        return std::hash<std::string>{}(x.gtrid()) ^ (std::hash<std::string>{}(x.bqual()) << 1) ^
               static_cast<std::size_t>(x.format_id());
    }
};
