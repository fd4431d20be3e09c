#include "workers.hpp"

namespace xarm::tm {

worker_pool::worker_pool(std::size_t threads) {
    m_threads.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) m_threads.emplace_back([this] { work(); });
}

worker_pool::~worker_pool() {
    {
        std::lock_guard lk(m_mutex);
        m_stop = true;
    }
    m_cv.notify_all();
    for (auto& t : m_threads) t.join();
}

void worker_pool::execute(task& t, batch& b) {
    try {
        t.run();
    } catch (...) {
        t.error = std::current_exception();
    }
    std::lock_guard lk(b.mutex);
    if (--b.left == 0) b.done_cv.notify_all();
}

void worker_pool::work() {
    for (;;) {
        std::pair<std::shared_ptr<task>, std::shared_ptr<batch>> item;
        {
            std::unique_lock lk(m_mutex);
            m_cv.wait(lk, [this] { return m_stop || !m_queue.empty(); });
            if (m_queue.empty()) return;  // stopping, nothing left
            item = std::move(m_queue.front());
            m_queue.pop_front();
        }
        if (!item.first->claimed.exchange(true)) execute(*item.first, *item.second);
    }
}

void worker_pool::parallel_for(std::size_t n, const std::function<void(std::size_t)>& f,
                               const std::function<bool(std::size_t)>& pinned) {
    if (n == 0) return;
    if (n == 1) {
        f(0);  // nothing to run beside it: no hand-over, no allocation
        return;
    }
    // The caller runs its own items (the pinned ones, or else the first) and shares the rest.
    std::vector<std::size_t> own, shared;
    for (std::size_t i = 0; i < n; ++i) (pinned && pinned(i) ? own : shared).push_back(i);
    if (own.empty()) {
        own.push_back(shared.front());
        shared.erase(shared.begin());
    }
    auto b = std::make_shared<batch>();
    std::vector<std::shared_ptr<task>> mine;
    mine.reserve(shared.size());
    b->left = shared.size();
    if (!shared.empty()) {
        std::lock_guard lk(m_mutex);
        for (std::size_t i : shared) {
            auto t = std::make_shared<task>();
            t->run = [&f, i] { f(i); };
            mine.push_back(t);
            m_queue.emplace_back(t, b);
        }
    }
    if (shared.size() > 1)
        m_cv.notify_all();
    else if (shared.size() == 1)
        m_cv.notify_one();
    std::exception_ptr first;
    for (std::size_t i : own) {
        try {
            f(i);
        } catch (...) {
            if (!first) first = std::current_exception();
        }
    }
    // Whatever no worker has started yet, the caller runs itself.
    for (auto& t : mine)
        if (!t->claimed.exchange(true)) execute(*t, *b);
    {
        std::unique_lock lk(b->mutex);
        b->done_cv.wait(lk, [&] { return b->left == 0; });
    }
    if (first) std::rethrow_exception(first);
    for (auto& t : mine)
        if (t->error) std::rethrow_exception(t->error);
}

}  // namespace xarm::tm
