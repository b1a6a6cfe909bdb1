// What the task runner's tests share: a runner over a temporary directory with a real
// LevelDB, driven by polling its descriptors and next_deadline_ms() (never a fixed
// sleep), and helpers to make tasks and inspect process groups.
#pragma once

#include <poll.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "nova/agent/tasks.h"

namespace nova::agent::test {

namespace fs = std::filesystem;
struct TempDir {
  fs::path path;
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "nova-tasks-XXXXXX").string();
    path = ::mkdtemp(templ.data());
  }
  ~TempDir() { fs::remove_all(path); }
};

inline Timestamp now_ms() {
  using namespace std::chrono;
  return static_cast<Timestamp>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

// A host with room to spare under the default limits (80/85/90/1024) and the fixed
// capacity the tests give the runner (16 GB, 4 cores).
inline HostState roomy() { return HostState{10, 20, 30, 12000}; }

inline Task make_task(const std::string& id, std::vector<std::string> argv, std::uint64_t timeout_ms = 20000) {
  Task t;
  t.task_id = id;
  t.argv = std::move(argv);
  t.timeout_ms = timeout_ms;
  t.issued_ts = now_ms();
  return t;
}

inline Task shell(const std::string& id, const std::string& script, std::uint64_t timeout_ms = 20000) {
  return make_task(id, {"/bin/sh", "-c", script}, timeout_ms);
}

// Processes of a process group that are still alive (zombies excluded: an orphan whose
// reaper is slow is dead all the same), from /proc/<pid>/stat.
inline std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

inline int live_in_group(int pgid) {
  int live = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 1));
    char state = 0;
    long ppid = 0, pgrp = 0;
    if (rest >> state >> ppid >> pgrp && pgrp == pgid && state != 'Z' && state != 'X') ++live;
  }
  return live;
}

struct Harness {
  TempDir dir;
  TaskRunnerOptions options;
  std::vector<TaskResult> results;
  std::unique_ptr<TaskRunner> runner;

  Harness() {
    options.dir = dir.path / "tasks";
    options.total_memory_mb = 16384;
    options.cpu_cores = 4;
    options.sync = false;  // fsync adds nothing to what these tests check
    options.kill_grace_ms = 2000;
    options.allow = {"/bin/sh", "/bin/sleep", "/bin/true", "/usr/bin/python3"};
    options.log = [this](const char* level, const std::string& event, const std::string& fields) {
      log += std::string(level) + " " + event + " " + fields + "\n";
    };
  }

  std::string log;  // what the runner logged

  void open() {
    runner.reset();
    auto r = TaskRunner::open(options, [this](const TaskResult& res) { results.push_back(res); });
    INFO((r ? "" : r.error().message()));
    REQUIRE(r.ok());
    runner = std::move(r).value();
  }

  Admission submit(const Task& t) {
    auto r = runner->submit(t);
    INFO((r ? "" : r.error().message()));
    REQUIRE(r.ok());
    return r.value();
  }

  // Polls until done() or the deadline; waits on the runner's descriptors in between.
  bool run_until(const std::function<bool()>& done, HostState host = roomy(), int timeout_ms = 15000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      runner->poll(now_ms(), host);
      if (done()) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
      const auto next = runner->next_deadline_ms(now_ms());
      const int wait = next ? std::min(*next, 50) : 50;
      std::vector<pollfd> fds;
      for (int fd : runner->watch_fds()) fds.push_back(pollfd{fd, POLLIN, 0});
      ::poll(fds.data(), fds.size(), wait);
    }
  }

  bool run_until_results(std::size_t n, HostState host = roomy(), int timeout_ms = 15000) {
    return run_until([&] { return results.size() >= n; }, host, timeout_ms);
  }

  const TaskResult& only_result() {
    REQUIRE(results.size() == 1);
    return results.front();
  }
};

inline std::string reason_of(const TaskResult& r) { return r.reason.value_or(""); }


}  // namespace nova::agent::test
