// Benchmark support (header-only, no test framework): the cases of one benchmark run
// interleaved in slices, so that a shared machine's load hits all alike; the ratios
// within one run are what counts.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <vector>

namespace xarm::bench {

/// One case's throughput and latency percentiles (microseconds).
struct figures {
    double tps = 0, p50 = 0, p95 = 0, p99 = 0;
    std::size_t n = 0;
};

/// Runs each case (called with a fresh number per transaction) warmup times, then in
/// `rounds` rounds of run_for / rounds each, case after case.
inline std::vector<figures> interleaved(const std::vector<std::function<void(long)>>& cases,
                                        std::chrono::milliseconds run_for, int warmup = 10,
                                        int rounds = 10) {
    using clock_type = std::chrono::steady_clock;
    std::vector<std::vector<double>> lat(cases.size());
    std::vector<double> busy(cases.size(), 0.0);
    long i = 0;
    for (const auto& tx : cases)
        for (int w = 0; w < warmup; ++w) tx(i++);
    for (int r = 0; r < rounds; ++r)
        for (std::size_t k = 0; k < cases.size(); ++k) {
            const auto start = clock_type::now();
            while (clock_type::now() - start < run_for / rounds) {
                const auto t0 = clock_type::now();
                cases[k](i++);
                lat[k].push_back(
                    std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
            }
            busy[k] += std::chrono::duration<double>(clock_type::now() - start).count();
        }
    std::vector<figures> out;
    for (std::size_t k = 0; k < cases.size(); ++k) {
        auto& l = lat[k];
        std::sort(l.begin(), l.end());
        auto pct = [&](double p) {
            return l.empty() ? 0.0
                             : l[std::min(l.size() - 1, static_cast<std::size_t>(p * l.size()))];
        };
        out.push_back(
            {busy[k] > 0 ? l.size() / busy[k] : 0.0, pct(0.50), pct(0.95), pct(0.99), l.size()});
    }
    return out;
}

}  // namespace xarm::bench
