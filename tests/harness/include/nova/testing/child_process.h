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
#include <string>
#include <vector>

namespace nova::testing {

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
  bool running() {
    if (pid_ <= 0) return false;
    if (::waitpid(pid_, nullptr, WNOHANG) != pid_) return true;
    pid_ = -1;
    return false;
  }
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
