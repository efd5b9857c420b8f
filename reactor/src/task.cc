// task.cc — when_all.
#include "keel/reactor/task.h"

#include "keel/reactor/shard.h"

namespace keel {

namespace {
struct join_state {
  std::size_t remaining;
  std::coroutine_handle<> waiter;
};

task<void> run_and_count(task<void> work, join_state* state) {
  co_await std::move(work);
  if (--state->remaining == 0 && state->waiter) shard::current()->schedule(state->waiter);
}
}  // namespace

task<void> when_all(std::vector<task<void>> tasks) {
  join_state state{tasks.size(), {}};
  if (state.remaining == 0) co_return;
  for (auto& work : tasks) spawn(run_and_count(std::move(work), &state));
  struct awaiter {
    join_state* state;
    bool await_ready() const noexcept { return state->remaining == 0; }
    void await_suspend(std::coroutine_handle<> waiter) noexcept { state->waiter = waiter; }
    void await_resume() const noexcept {}
  };
  co_await awaiter{&state};
}

}  // namespace keel
