// Observes the flushes that really reach the kernel: the test program defines fsync and
// fdatasync itself (exported, so they interpose on libxarm_tm's calls), counts them by
// the path of the descriptor, and calls the C library's. A counter inside the manager
// would count a flush whether or not it ran; this one cannot.
#pragma once

#include <filesystem>
#include <string>

namespace xarm::tm::testing::sync_probe {

/// fdatasync + fsync calls so far on descriptors whose file (or directory) was `path`
/// at the time.
int count(const std::filesystem::path& path);

}  // namespace xarm::tm::testing::sync_probe
