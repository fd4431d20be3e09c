#include "sync_probe.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <map>
#include <mutex>

namespace xarm::tm::testing::sync_probe {
namespace {
std::mutex& mutex() {
    static std::mutex m;
    return m;
}
std::map<std::string, int>& counts() {
    static std::map<std::string, int> c;
    return c;
}
void note(int fd) {
    char buf[PATH_MAX + 1] = {};
    const std::string link = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t n = ::readlink(link.c_str(), buf, PATH_MAX);
    if (n <= 0) return;
    std::lock_guard lk(mutex());
    ++counts()[std::string(buf, static_cast<std::size_t>(n))];
}
using sync_fn = int (*)(int);
sync_fn next(const char* name) {
    return reinterpret_cast<sync_fn>(::dlsym(RTLD_NEXT, name));
}
}  // namespace

int count(const std::filesystem::path& path) {
    const auto key = std::filesystem::weakly_canonical(path).string();
    std::lock_guard lk(mutex());
    auto it = counts().find(key);
    return it == counts().end() ? 0 : it->second;
}

}  // namespace xarm::tm::testing::sync_probe

// Default visibility: the build hides symbols, and these must be seen to interpose.
extern "C" __attribute__((visibility("default"))) int fdatasync(int fd) {
    static const auto real = xarm::tm::testing::sync_probe::next("fdatasync");
    xarm::tm::testing::sync_probe::note(fd);
    return real(fd);
}

extern "C" __attribute__((visibility("default"))) int fsync(int fd) {
    static const auto real = xarm::tm::testing::sync_probe::next("fsync");
    xarm::tm::testing::sync_probe::note(fd);
    return real(fd);
}
