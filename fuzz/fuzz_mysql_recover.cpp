// MariaDB/MySQL XA RECOVER rows, as a server (or a crafted foreign branch) may return
// them: a row that parses gives an xid with exactly the lengths and format id the row
// states; nothing else is ever accepted, whatever the data column holds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "dialect.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    const auto d = (data[0] & 1) != 0 ? xarm::mysql::dialect::mysql : xarm::mysql::dialect::mariadb;
    const long format = static_cast<long>(data[1]) - 8;  // negative ones too
    const long gl = static_cast<long>(data[2]) - 8, bl = static_cast<long>(data[3]) - 8;
    const std::string_view row(reinterpret_cast<const char*>(data) + 4, size - 4);
    if (const auto x = xarm::mysql::parse_recover_row(d, format, gl, bl, row)) {
        FUZZ_REQUIRE(x->format_id() == format);
        FUZZ_REQUIRE(static_cast<long>(x->gtrid().size()) == gl);
        FUZZ_REQUIRE(static_cast<long>(x->bqual().size()) == bl);
    }
    return 0;
}
