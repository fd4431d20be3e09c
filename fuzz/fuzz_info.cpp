// Info strings: parse_info either accepts a string or throws xarm::error, and every
// password it accepts is among the secrets secrets_in finds in the same string, so that
// scrubbing can never miss a password a driver was given.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "xarm/driver/info.hpp"
#include "xarm/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view info(reinterpret_cast<const char*>(data), size);
    const auto secrets = xarm::secrets_in(info);
    try {
        const auto pairs = xarm::parse_info(
            info, {"host", "port", "user", "password", "path", "dbname", "pwd", "PWD", "options"});
        for (const auto& [key, value] : pairs) {
            std::string k = key;
            std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) {
                return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
            });
            if ((k == "password" || k == "pwd") && !value.empty())
                FUZZ_REQUIRE(std::find(secrets.begin(), secrets.end(), value) != secrets.end());
        }
    } catch (const xarm::error&) {
        // Rejected with XAER_INVAL: fine. Anything else escapes and aborts.
    }
    // Scrubbing terminates and removes every secret it was given.
    std::string message(info);
    message = xarm::scrub(message, secrets);
    for (const auto& s : secrets)
        if (s.find('*') == std::string::npos) FUZZ_REQUIRE(message.find(s) == std::string::npos);
    return 0;
}
