// keel/reactor/cross.h — running work on another shard and awaiting its result.
//
// run_on(target, fn) sends `fn` to shard `target` through the SPSC queue from this shard
// to it, runs it there, and sends the result back through the queue in the other
// direction, where the awaiting coroutine resumes. `fn` is moved, never copied; what it
// captures (a FlatBuffers buffer, say) crosses shards without a copy of its bytes.
//
// REQUIRES: called on a shard thread. `fn` runs on the target shard and may use only
// what it captured and what belongs to that shard.
#pragma once

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "keel/reactor/shard.h"
#include "keel/reactor/task.h"

namespace keel {

namespace detail {

template <typename F>
class cross_call final : public cross_message {
 public:
  explicit cross_call(F fn) : _fn(std::move(fn)) {}
  void run() noexcept override { _fn(); }

 private:
  F _fn;
};

template <typename F>
std::unique_ptr<cross_message> make_cross_call(F fn) {
  return std::make_unique<cross_call<F>>(std::move(fn));
}

template <typename T>
struct cross_result_slot {
  std::optional<T> value;
};
template <>
struct cross_result_slot<void> {};

}  // namespace detail

// Sends `fn` to run on shard `target`, without waiting for it.
template <typename F>
void post_to(unsigned target, F fn) {
  shard::current()->send_to(target, detail::make_cross_call(std::move(fn)));
}

// Runs `fn` (a plain function returning T or void) on shard `target` and returns its
// result here. The awaiter lives in the awaiting frame; the target writes the result
// into it before the reply message is published, and the queue's release/acquire pair
// makes the write visible when the awaiting coroutine resumes.
template <typename F>
auto run_on(unsigned target, F fn) {
  using returned = std::invoke_result_t<F&>;
  using stored = std::conditional_t<std::is_void_v<returned>, char, returned>;
  struct awaiter {
    unsigned target;
    F fn;
    std::coroutine_handle<> waiter{};
    unsigned origin = 0;
    std::optional<stored> value{};

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> handle) {
      waiter = handle;
      origin = shard::current()->id();
      post_to(target, [this] {
        if constexpr (std::is_void_v<returned>) fn();
        else value.emplace(fn());
        post_to(origin, [handle = waiter] { shard::current()->schedule(handle); });
      });
    }
    returned await_resume() {
      if constexpr (!std::is_void_v<returned>) return std::move(*value);
    }
  };
  return awaiter{target, std::move(fn)};
}

// Runs the task-returning `fn` on shard `target`; awaits the task there and returns its
// result here.
template <typename T, typename F>
task<T> run_task_on(unsigned target, F fn) {
  struct state {
    std::coroutine_handle<> waiter;
    unsigned origin;
    std::conditional_t<std::is_void_v<T>, char, std::optional<T>> value{};
  } st{{}, shard::current()->id()};
  struct awaiter {
    state* st;
    unsigned target;
    F* fn;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> handle) {
      st->waiter = handle;
      post_to(target, [st = st, fn = std::move(*fn)]() mutable {
        spawn([](state* st, F fn) -> task<void> {
          auto work = fn();  // a named task: see the note in bus.cc on GCC 12
          if constexpr (std::is_void_v<T>) co_await std::move(work);
          else st->value.emplace(co_await std::move(work));
          post_to(st->origin, [handle = st->waiter] { shard::current()->schedule(handle); });
        }(st, std::move(fn)));
      });
    }
    void await_resume() const noexcept {}
  };
  co_await awaiter{&st, target, &fn};
  if constexpr (!std::is_void_v<T>) co_return std::move(*st.value);
}

}  // namespace keel
