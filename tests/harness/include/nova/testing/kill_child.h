// Crash tests of stores: a forked child writes and reports each write it completed as
// one fixed-size value on a pipe; the parent reads `reports` of them, kills the child
// with SIGKILL at that moment, and learns the last write the child confirmed (reports
// sent after the parent's last read included). What the store holds afterwards must
// include everything confirmed.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <functional>

namespace nova::testing {

// `work` runs in the child with the pipe's write end and never returns normally (it
// loops until killed; it may _exit on a failure, which the parent sees as not killed).
template <class T>
T kill_after_reports(const std::function<void(int report_fd)>& work, int reports) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    work(fds[1]);
    ::_exit(2);
  }
  ::close(fds[1]);
  T last{};
  for (int i = 0; i < reports; ++i) REQUIRE(::read(fds[0], &last, sizeof last) == static_cast<ssize_t>(sizeof last));
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(WIFSIGNALED(status));
  while (::read(fds[0], &last, sizeof last) == static_cast<ssize_t>(sizeof last)) {
  }
  ::close(fds[0]);
  return last;
}

}  // namespace nova::testing
