// A function run when a scope ends, however it ends: a driver's cleanup that must
// happen after an error too (unbinding parameters, resetting a statement).
#pragma once

#include <utility>

namespace xarm {

template <class F>
class scope_exit {
  public:
    explicit scope_exit(F f) : m_f(std::move(f)) {}
    ~scope_exit() { m_f(); }
    scope_exit(const scope_exit&) = delete;
    scope_exit& operator=(const scope_exit&) = delete;

  private:
    F m_f;
};

}  // namespace xarm
