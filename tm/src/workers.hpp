// The coordinator's own threads for running a phase on several resources at once, so
// that no transaction starts a thread. The caller takes part: it runs the first item,
// then any of its items no worker has picked up yet, so a busy pool never makes a
// transaction wait for another's work (it only loses parallelism).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace xarm::tm {

class worker_pool {
  public:
    explicit worker_pool(std::size_t threads);
    ~worker_pool();
    worker_pool(const worker_pool&) = delete;
    worker_pool& operator=(const worker_pool&) = delete;

    /// Runs f(i) for i in [0, n), in parallel where workers are free; returns when all
    /// are done and rethrows the first exception.
    /// Items for which pinned(i) is true run on the calling thread only (resources
    /// whose calls must stay on the application's thread).
    void parallel_for(std::size_t n, const std::function<void(std::size_t)>& f,
                      const std::function<bool(std::size_t)>& pinned = {});

  private:
    struct task {
        std::function<void()> run;
        std::atomic<bool> claimed{false};
        std::exception_ptr error;
    };
    struct batch {
        std::mutex mutex;
        std::condition_variable done_cv;
        std::size_t left = 0;
    };
    static void execute(task& t, batch& b);
    void work();

    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::deque<std::pair<std::shared_ptr<task>, std::shared_ptr<batch>>> m_queue;
    bool m_stop = false;
    std::vector<std::thread> m_threads;
};

}  // namespace xarm::tm
