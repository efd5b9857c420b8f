// keel/reactor/task.h — lazy C++20 coroutine tasks.
//
// task<T> is lazy: nothing runs until it is awaited (or handed to shard::spawn). Awaiting
// a task transfers control to it symmetrically, and when it finishes control transfers
// back to the awaiter, so a chain of ready tasks never suspends and never grows the stack.
//
// Ownership: a task owns its coroutine frame and destroys it in its destructor. A task
// is single-shard: it is created, awaited and destroyed on one shard's thread.
// Exceptions are not used on reactor paths; an exception escaping a task is a programmer
// error and terminates (the promise's unhandled_exception asserts).
#pragma once

#include <coroutine>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

#include "keel/assert.h"

namespace keel {

template <typename T = void>
class task;

namespace detail {

struct task_promise_base {
  std::coroutine_handle<> continuation = std::noop_coroutine();

  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <typename Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) noexcept {
      return self.promise().continuation;
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }
  final_awaiter final_suspend() const noexcept { return {}; }
  [[noreturn]] void unhandled_exception() const noexcept {
    KEEL_ASSERT_MSG(false, "exception escaped a keel::task");
    __builtin_unreachable();
  }
};

template <typename T>
struct task_promise final : task_promise_base {
  std::optional<T> value;
  task<T> get_return_object() noexcept;
  template <typename U>
  void return_value(U&& result) {
    value.emplace(std::forward<U>(result));
  }
};

template <>
struct task_promise<void> final : task_promise_base {
  task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
};

}  // namespace detail

template <typename T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using handle_type = std::coroutine_handle<promise_type>;

  task() noexcept = default;
  explicit task(handle_type handle) noexcept : _handle(handle) {}
  task(task&& other) noexcept : _handle(std::exchange(other._handle, {})) {}
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      destroy();
      _handle = std::exchange(other._handle, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() { destroy(); }

  bool valid() const noexcept { return static_cast<bool>(_handle); }
  bool done() const noexcept { return _handle && _handle.done(); }

  auto operator co_await() && noexcept {
    struct awaiter {
      handle_type handle;
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> waiter) noexcept {
        handle.promise().continuation = waiter;
        return handle;
      }
      T await_resume() {
        if constexpr (!std::is_void_v<T>) {
          KEEL_ASSERT(handle.promise().value.has_value());
          return std::move(*handle.promise().value);
        }
      }
    };
    KEEL_ASSERT(_handle && !_handle.done());
    return awaiter{_handle};
  }

  // For the shard's detached runner: give up ownership of the frame.
  handle_type release() noexcept { return std::exchange(_handle, {}); }

 private:
  void destroy() noexcept {
    if (_handle) _handle.destroy();
    _handle = {};
  }
  handle_type _handle;
};

namespace detail {
template <typename T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}

// A coroutine that starts at once and frees itself when it ends; used by spawn().
struct detached {
  struct promise_type {
    detached get_return_object() const noexcept { return {}; }
    std::suspend_never initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    [[noreturn]] void unhandled_exception() const noexcept {
      KEEL_ASSERT_MSG(false, "exception escaped a spawned task");
      __builtin_unreachable();
    }
  };
};
}  // namespace detail

// Runs a task to completion with nobody waiting for it. It starts now, on the caller's
// shard, and runs until its first suspension.
inline void spawn(task<void> work) {
  [](task<void> owned) -> detail::detached { co_await std::move(owned); }(std::move(work));
}

// Awaits every task; resumes when the last one finishes. Tasks run in order until each
// first suspends, then concurrently.
task<void> when_all(std::vector<task<void>> tasks);

}  // namespace keel
