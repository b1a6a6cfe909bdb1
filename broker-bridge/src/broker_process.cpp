#include "nova/bridge/broker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

#include "nova/bridge/net.h"

namespace nova::bridge {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Mosquitto logs "mosquitto version X running" (type "information") after every
// listener is bound; a failed bind exits before it.
constexpr std::string_view kRunningMarker = " running\n";
constexpr std::string_view kAddressInUse = "Address already in use";

std::string read_from(const std::filesystem::path& path, std::uintmax_t from) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(static_cast<std::streamoff>(from));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::uintmax_t size_or_zero(const std::filesystem::path& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

milliseconds left_until(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  return std::max(left, milliseconds(0));
}

// Watches a directory for created or written files so waits wake on change.
class DirWatch {
 public:
  explicit DirWatch(const std::filesystem::path& dir)
      : fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
    if (fd_ >= 0 && ::inotify_add_watch(fd_, dir.c_str(), IN_MODIFY | IN_CREATE) < 0) {
      ::close(fd_);
      fd_ = -1;  // callers fall back to their timed re-check
    }
  }
  ~DirWatch() {
    if (fd_ >= 0) ::close(fd_);
  }
  DirWatch(const DirWatch&) = delete;
  DirWatch& operator=(const DirWatch&) = delete;

  int fd() const { return fd_; }
  void drain() const {
    if (fd_ < 0) return;
    alignas(inotify_event) char buffer[4096];
    while (::read(fd_, buffer, sizeof buffer) > 0) {
    }
  }

 private:
  int fd_;
};

}  // namespace

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + ::strsignal(WTERMSIG(status));
  return "stopped (status " + std::to_string(status) + ")";
}

schemas::Result<std::string> find_mosquitto() {
  if (const char* env = std::getenv("NOVA_MOSQUITTO"); env != nullptr && *env != '\0') {
    return std::string(env);
  }
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::stringstream in(path);
    for (std::string dir; std::getline(in, dir, ':');) {
      if (!dir.empty()) dirs.push_back(dir);
    }
  }
  dirs.insert(dirs.end(), {"/usr/sbin", "/usr/local/sbin", "/sbin"});
  for (const auto& dir : dirs) {
    const std::string candidate = dir + "/mosquitto";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return schemas::Error{"",
                        "no mosquitto executable on PATH or in /usr/sbin (install the mosquitto "
                        "package or set NOVA_MOSQUITTO)"};
}

void wait_readable(std::initializer_list<int> fds, milliseconds timeout) {
  std::vector<pollfd> set;
  for (const int fd : fds) {
    if (fd >= 0) set.push_back(pollfd{fd, POLLIN, 0});
  }
  const auto ms = std::clamp<milliseconds::rep>(timeout.count(), 0, 60'000);
  ::poll(set.data(), set.size(), static_cast<int>(ms));
}

bool wait_until(const std::function<bool()>& condition, const std::filesystem::path& dir,
                milliseconds timeout, milliseconds recheck) {
  const auto deadline = Clock::now() + timeout;
  const DirWatch watch(dir);
  // Without inotify, re-check often; with it, the directory's writes wake us.
  if (watch.fd() < 0) recheck = std::min(recheck, milliseconds(20));
  for (;;) {
    if (condition()) return true;
    const auto left = left_until(deadline);
    if (left.count() == 0) return false;
    wait_readable({watch.fd()}, std::min(left, recheck));
    watch.drain();
  }
}

BrokerProcess::~BrokerProcess() {
  kill();
  release();
}

BrokerProcess::BrokerProcess(BrokerProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::exchange(other.pidfd_, -1)),
      last_status_(other.last_status_) {}

BrokerProcess& BrokerProcess::operator=(BrokerProcess&& other) noexcept {
  if (this != &other) {
    kill();
    release();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::exchange(other.pidfd_, -1);
    last_status_ = other.last_status_;
  }
  return *this;
}

void BrokerProcess::release() noexcept {
  if (pidfd_ >= 0) ::close(pidfd_);
  pidfd_ = -1;
}

std::string BrokerProcess::describe_last_exit() const { return describe_wait_status(last_status_); }

bool BrokerProcess::running() { return !reap(/*block=*/false); }

bool BrokerProcess::signal(int sig) const { return pid_ > 0 && ::kill(pid_, sig) == 0; }

// Returns true when no child is running (an exited child is reaped now).
bool BrokerProcess::reap(bool block) {
  if (pid_ < 0) return true;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
    if (r == 0) return false;
    if (r < 0 && errno == EINTR) continue;
    // r < 0 with ECHILD: reaped elsewhere (e.g. SIGCHLD ignored); the child is gone.
    last_status_ = r == pid_ ? status : 0;
    pid_ = -1;
    release();
    return true;
  }
}

std::optional<int> BrokerProcess::wait_exit(milliseconds timeout) {
  if (pid_ < 0) return std::nullopt;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (reap(false)) return last_status_;
    const auto left = left_until(deadline);
    if (left.count() == 0) return std::nullopt;
    // The pidfd becomes readable when the child exits; without one, poll every 10 ms.
    wait_readable({pidfd_}, pidfd_ >= 0 ? left : std::min(left, milliseconds(10)));
  }
}

bool BrokerProcess::stop(milliseconds timeout) {
  if (!running()) return true;
  ::kill(pid_, SIGTERM);
  if (wait_exit(timeout)) return true;
  kill();
  return false;
}

void BrokerProcess::kill() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  reap(/*block=*/true);
}

StartResult BrokerProcess::start(const BrokerLaunch& launch) {
  if (running()) return {StartOutcome::spawn_failed, "already running as pid " + std::to_string(pid_)};
  auto exe = find_mosquitto();
  if (!exe) return {StartOutcome::spawn_failed, exe.error().message()};
  const std::uintmax_t log_offset = size_or_zero(launch.log);

  // Everything the child needs is prepared before fork(): between fork and exec a
  // multi-threaded parent's child may only make async-signal-safe calls.
  const std::string config = launch.config.string();
  const std::string stdio = launch.stdio.string();
  const pid_t parent = ::getpid();
  const char* argv[] = {exe->c_str(), "-c", config.c_str(), nullptr};
  // The namespace file stays open until start() returns: the child joins it, and the
  // readiness probe connects from inside it.
  struct Fd {
    int fd = -1;
    ~Fd() { if (fd >= 0) ::close(fd); }
  } netns;
  if (!launch.netns.empty()) {
    netns.fd = ::open(launch.netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (netns.fd < 0) {
      return {StartOutcome::spawn_failed, "netns " + launch.netns.string() + ": " + std::strerror(errno)};
    }
  }

  const pid_t child = ::fork();
  if (child < 0) return {StartOutcome::spawn_failed, std::string("fork: ") + std::strerror(errno)};
  if (child == 0) {
    // Die with the forking thread. If the parent already died before prctl took
    // effect, give up now.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (netns.fd >= 0 && ::setns(netns.fd, CLONE_NEWNET) != 0) ::_exit(125);
    // Own process group: a terminal's Ctrl-C reaches the supervisor only, which then
    // stops the brokers in order, instead of every broker at once.
    ::setpgid(0, 0);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (const int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE, SIGCHLD}) {
      ::sigaction(sig, &dfl, nullptr);
    }
    const int null_fd = ::open("/dev/null", O_RDONLY);
    const int out_fd = ::open(stdio.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (null_fd < 0 || out_fd < 0) ::_exit(126);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(out_fd, STDERR_FILENO);
    ::close_range(3, ~0U, 0);
    // execv's argv is char* const[] for C compatibility; it does not modify the strings.
    ::execv(argv[0], const_cast<char* const*>(argv));
    ::_exit(127);
  }

  pid_ = child;
  // glibc 2.36's <sys/pidfd.h> lacks extern "C", so call the kernel directly.
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, child, 0));

  const auto deadline = Clock::now() + launch.timeout;
  const std::filesystem::path log_dir = launch.log.parent_path().empty() ? "." : launch.log.parent_path();
  const DirWatch watch(log_dir);
  milliseconds backoff(1);
  for (;;) {
    if (reap(false)) {
      const bool port_taken = read_from(launch.log, log_offset).find(kAddressInUse) != std::string::npos;
      std::string message = "mosquitto " + describe_wait_status(last_status_) + " during start-up";
      if (WIFEXITED(last_status_) && WEXITSTATUS(last_status_) == 127) message += " (could not exec " + *exe + ")";
      if (WIFEXITED(last_status_) && WEXITSTATUS(last_status_) == 125) message += " (could not join " + launch.netns.string() + ")";
      if (port_taken) message += " (port " + std::to_string(launch.port) + ": Address already in use)";
      return {port_taken ? StartOutcome::port_in_use : StartOutcome::exited, message};
    }
    if (read_from(launch.log, log_offset).find(kRunningMarker) != std::string::npos &&
        (netns.fd >= 0 ? accepts_connections_in(netns.fd, launch.host, launch.port)
                       : accepts_connections(launch.host, launch.port))) {
      return {StartOutcome::ready, {}};
    }
    const auto left = left_until(deadline);
    if (left.count() == 0) {
      kill();
      return {StartOutcome::timed_out, "mosquitto did not accept connections on port " +
                                           std::to_string(launch.port) + " within " +
                                           std::to_string(launch.timeout.count()) + " ms"};
    }
    // Wake on child exit or a log write; the backoff bounds the connect probes.
    wait_readable({pidfd_, watch.fd()}, std::min(backoff, left));
    watch.drain();
    backoff = std::min(backoff * 2, milliseconds(50));
  }
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string last_lines(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (std::size_t seen = 0; pos > 0; --pos) {
    if (text[pos - 1] == '\n' && ++seen == lines) break;
  }
  return text.substr(pos);
}

}  // namespace nova::bridge
