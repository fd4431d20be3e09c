// The transaction manager's decision log: any bytes after a valid header either open
// (a torn last record cut off) or fail with xarm::error; a log that opened reopens with
// the same live records (nothing decided is lost or invented by reading it twice).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "fuzz_check.hpp"
#include "xarm/error.hpp"
#include "xarm/tm.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const std::filesystem::path dir = [] {
        auto d = std::filesystem::temp_directory_path() /
                 ("xarm-fuzz-log-" + std::to_string(::getpid()));
        std::filesystem::create_directories(d);
        return d;
    }();
    const auto path = dir / "tm.log";
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << "xarm tm log v1 coordinator=fz\n";
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        std::vector<xarm::tm::log_record> first;
        {
            xarm::tm::file_log log(path, "fz");
            first = log.live();
        }
        xarm::tm::file_log again(path, "fz");
        const auto second = again.live();
        FUZZ_REQUIRE(first.size() == second.size());
        for (std::size_t i = 0; i < first.size(); ++i)
            FUZZ_REQUIRE(xarm::tm::encode_record(first[i]) == xarm::tm::encode_record(second[i]));
    } catch (const xarm::error&) {
        // A damaged log is refused with a message: the right answer.
    }
    std::filesystem::remove(path);
    std::filesystem::remove(dir / "tm.log.lock");
    return 0;
}
