// Polling another process's state (its REST API, its files) against a deadline: the one
// home for the loop integration tests use where there is nothing to block on.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace nova::testing {

// Calls `done` until it returns true (then true) or `timeout` passes (then false).
// Re-checks every 50 ms: the state lives in another process, so there is no event to
// wait for, and a tighter loop would only steal CPU from the processes under test.
inline bool poll_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace nova::testing
