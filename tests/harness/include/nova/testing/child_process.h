// A child process for integration tests (nova-agent, nova-cloud, ...): its stderr goes to
// a file the test can read, PR_SET_PDEATHSIG makes it die with the test (a leaked child
// once held ctest's output pipe open for 20 minutes), and the destructor SIGKILLs it if
// the test left early.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace nova::testing {

// Whether the test's child `pid` still runs. If it has exited, reaps it and sets `pid`
// to -1, so that nothing signals or waits for a reused pid later.
inline bool still_running(pid_t& pid) {
  if (pid <= 0) return false;
  if (::waitpid(pid, nullptr, WNOHANG) != pid) return true;
  pid = -1;
  return false;
}

// The only child of process `pid` (e.g. the agent a launcher runs, or a PID namespace's
// init), or -1 if it has none.
inline pid_t only_child_of(pid_t pid) {
  const std::string id = std::to_string(pid);
  std::ifstream children("/proc/" + id + "/task/" + id + "/children");
  pid_t child = -1;
  children >> child;
  return child;
}

class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess() { signal(SIGKILL); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Runs argv[0] (a path) with `argv`; stderr to `stderr_file`, truncated or appended.
  void start(const std::vector<std::string>& argv, const std::filesystem::path& stderr_file, bool append) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int fd = ::open(stderr_file.c_str(), O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
      ::dup2(fd, 2);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }

  pid_t pid() const { return pid_; }
  // True while the process has not exited (reaps it if it has).
  bool running() { return still_running(pid_); }
  // Waits for the process to exit by itself; returns its wait status.
  int wait() {
    if (pid_ <= 0) return 0;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  // Sends `sig` and reaps the process; returns its wait status (0 if it was gone).
  int signal(int sig) {
    if (pid_ <= 0) return 0;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
};

}  // namespace nova::testing
