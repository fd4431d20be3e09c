// XID encodings: a PostgreSQL gid that decodes to an xid re-encodes to the same text
// (one canonical form: a foreign gid can never be mistaken for ours), every xid survives
// gid and text round trips, base64 and hex decoding accept only what they would write.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "dialect.hpp"
#include "fuzz_check.hpp"
#include "xarm/driver/codec.hpp"
#include "xarm/error.hpp"
#include "xarm/xid.hpp"

namespace {
std::string lower(std::string s) {
    for (auto& c : s)
        if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    return s;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    // Arbitrary text read back from a server as a gid.
    const xarm::xid g = xarm::decode_pg_gid(text);
    if (!g.is_unparsed())
        FUZZ_REQUIRE(xarm::encode_pg_gid(g) == text);
    else
        FUZZ_REQUIRE(g.gtrid() == text);
    (void)xarm::pq::parse_recovered_gid(text);

    if (auto b = xarm::base64_decode(text)) FUZZ_REQUIRE(xarm::base64_encode(*b) == text);
    if (auto h = xarm::hex_decode(text))
        FUZZ_REQUIRE(xarm::hex_encode(*h) == lower(std::string(text)));

    try {
        const auto x = xarm::xid::from_string(text);
        FUZZ_REQUIRE(xarm::xid::from_string(x.to_string()) == x);
    } catch (const xarm::error&) {
    }

    // The same bytes as an xid: format id, lengths, then gtrid and bqual bytes.
    if (size >= 6) {
        const long format =
            static_cast<long>((std::uint32_t{data[0]} << 24 | std::uint32_t{data[1]} << 16 |
                               std::uint32_t{data[2]} << 8 | data[3]) &
                              0x7fffffffU);
        const std::size_t gl = 1 + data[4] % 64, bl = data[5] % 65;
        if (size >= 6 + gl + bl) {
            const xarm::xid x(format, text.substr(6, gl), text.substr(6 + gl, bl));
            FUZZ_REQUIRE(xarm::decode_pg_gid(xarm::encode_pg_gid(x)) == x);
            FUZZ_REQUIRE(xarm::xid::from_string(x.to_string()) == x);
            FUZZ_REQUIRE(!xarm::encode_mysql_xid(x).empty());
        }
    }
    return 0;
}
