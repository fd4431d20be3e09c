#include "xarm/driver/trace.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <memory>
#include <string>

namespace xarm {

namespace {
std::shared_ptr<spdlog::logger> make_logger() {
    const char* v = std::getenv("XARM_TRACE");
    if (v == nullptr || *v == '\0' || std::string(v) == "0") return nullptr;
    try {
        std::shared_ptr<spdlog::logger> l;
        if (std::string(v) == "1")
            l = std::make_shared<spdlog::logger>("xarm",
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
        else
            l = std::make_shared<spdlog::logger>(
                "xarm", std::make_shared<spdlog::sinks::basic_file_sink_mt>(v, false));
        l->set_pattern("%Y-%m-%d %H:%M:%S.%f xarm[%P:%t] %v");
        l->flush_on(spdlog::level::info);  // a trace that stops before a crash is useless
        return l;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "xarm: XARM_TRACE=%s: cannot open the trace: %s\n", v, e.what());
        return nullptr;
    }
}
const std::shared_ptr<spdlog::logger>& logger() {
    static const std::shared_ptr<spdlog::logger> l = make_logger();
    return l;
}
}  // namespace

bool trace_enabled() noexcept {
    try {
        return logger() != nullptr;
    } catch (...) {
        return false;
    }
}

void trace(std::string_view line) noexcept {
    try {
        if (const auto& l = logger()) l->info("{}", line);
    } catch (...) {
        // tracing never changes what a call returns
    }
}

}  // namespace xarm
