// Child processes and cgroups for the task runner. Internal to the agent library.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nova/agent/tasks.h"
#include "nova/schemas/result.h"

namespace nova::agent::detail {

// Why execve() could not run `path` (missing, not a regular file, no execute
// permission), checked in the parent so that the result names the cause instead of
// exit code 127.
std::optional<std::string> not_executable(const std::string& path);

struct SpawnRequest {
  std::string program;  // an absolute, resolved path
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;  // the complete environment
  std::filesystem::path work_dir;          // empty: inherit
  std::uint64_t rlimit_as_bytes = 0;       // 0: no RLIMIT_AS
  std::filesystem::path cgroup;            // empty: none; else the child joins it
  // The child drops to uid/gid (its only group) before execve; needs a root agent.
  bool switch_user = false;
  unsigned uid = 0;
  unsigned gid = 0;
};

struct Child {
  pid_t pid = -1;     // also its process group id
  int output_fd = -1;  // non-blocking read end of its stdout+stderr
  int pidfd = -1;      // readable on exit; -1 when the kernel has no pidfd_open
};

// fork + execve. The child: own process group, PR_SET_PDEATHSIG(SIGKILL), cgroup,
// RLIMIT_AS, then the user switch, cwd, stdio, every other descriptor closed,
// PR_SET_NO_NEW_PRIVS, default signal dispositions. Returns once the child has exec'd; an exec failure (or a failure of the
// setup before it) is an error naming the step and errno, with the child already reaped.
schemas::Result<Child> spawn(const SpawnRequest& request);

// Whether the child has exited, without reaping it (so its pid, and
// with it the process group id, cannot be reused while the runner cleans up).
bool has_exited(pid_t pid);
// Reaps an exited (or killed) child; returns its wait status, or -1 when something
// else reaped it.
int reap(pid_t pid);

// Per-task cgroups under a delegated cgroup v2 root.
class Cgroups {
 public:
  // Checks the root (cgroup2 filesystem, writable, controllers) and enables the memory
  // and cpu controllers for its children where it can. Never fails: what works is in
  // support().
  void init(const std::filesystem::path& root);
  const LimitSupport& support() const { return support_; }

  // Creates the task's cgroup and writes its limits (0 = none). Empty path on failure,
  // with the reason in `why`.
  std::filesystem::path create(const std::string& task_id, std::uint64_t memory_mb,
                               std::uint64_t cpu_millis, std::string& why);
  // memory.events oom_kill of a task's cgroup.
  std::uint64_t oom_kills(const std::filesystem::path& cgroup) const;
  // SIGKILLs everything in the cgroup (cgroup.kill, or each pid where that is missing).
  void kill_all(const std::filesystem::path& cgroup) const;
  // rmdir; false while it still holds processes (call again later).
  bool remove(const std::filesystem::path& cgroup) const;
  // Kills and removes task cgroups a previous run of the agent left behind; returns
  // those that could not be removed yet.
  std::vector<std::filesystem::path> remove_stale() const;

 private:
  LimitSupport support_;
  std::filesystem::path root_;
};

// "SIGKILL" for 9; "signal 99" for a number with no name.
std::string signal_name(int sig);

// Makes `text` valid UTF-8 of at most `max_bytes`, keeping its end: invalid sequences
// become U+FFFD, and the cut falls on a character boundary.
std::string utf8_tail(const std::string& text, std::size_t max_bytes);

}  // namespace nova::agent::detail
