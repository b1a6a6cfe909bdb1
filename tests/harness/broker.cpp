#include "nova/testing/broker.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <sstream>
#include <string>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace nova::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kConfigName = "mosquitto.conf";
constexpr const char* kLogName = "mosquitto.log";
constexpr const char* kStdioName = "mosquitto.stdio";
// Mosquitto logs this (at "information" level) after every listener is bound; a
// failed bind exits before it. Seeing it in *this* start's part of the log proves the
// process we spawned owns the port, not some other test's broker that took it.
constexpr std::string_view kRunningMarker = " running\n";
constexpr std::string_view kAddressInUse = "Address already in use";
constexpr int kMaxPortAttempts = 8;
constexpr std::size_t kLogTailLines = 25;

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

std::string read_file(const std::filesystem::path& path, std::uintmax_t from = 0) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(static_cast<std::streamoff>(from));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::uintmax_t file_size_or_zero(const std::filesystem::path& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

std::string tail_lines(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (std::size_t seen = 0; pos > 0; --pos) {
    if (text[pos - 1] == '\n' && ++seen == lines) break;
  }
  return text.substr(pos);
}

// The mosquitto executable: $NOVA_MOSQUITTO, else the first on $PATH, else the sbin
// directories Debian installs it in (often missing from a non-root PATH).
std::string find_mosquitto() {
  if (const char* env = std::getenv("NOVA_MOSQUITTO"); env != nullptr && *env != '\0') {
    return env;
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
  throw std::runtime_error(
      "nova::testing::Broker: no mosquitto executable on PATH or in /usr/sbin "
      "(install the mosquitto package or set NOVA_MOSQUITTO)");
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

bool accepts_connections(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const sockaddr_in addr = loopback(port);
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return std::string("killed by signal ") + ::strsignal(WTERMSIG(status));
  }
  return "stopped (status " + std::to_string(status) + ")";
}

int millis_until(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<milliseconds::rep>(left.count(), 0, 60'000));
}

// Waits up to `ms` for any of `fds` to become readable; -1 entries are ignored, and
// with none left this is a plain timed wait (used only as a retry backoff).
void wait_readable(std::initializer_list<int> fds, int ms) {
  std::vector<pollfd> set;
  for (const int fd : fds) {
    if (fd >= 0) set.push_back(pollfd{fd, POLLIN, 0});
  }
  ::poll(set.data(), set.size(), ms);
}

// Watches a directory for writes so log waits wake on change, not on a timer.
class DirWatch {
 public:
  explicit DirWatch(const std::filesystem::path& dir)
      : fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
    if (fd_ >= 0 && ::inotify_add_watch(fd_, dir.c_str(), IN_MODIFY | IN_CREATE) < 0) {
      ::close(fd_);
      fd_ = -1;  // fall back to the caller's timed backoff
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

std::uint16_t free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("free_loopback_port: socket");
  sockaddr_in addr = loopback(0);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    throw_errno("free_loopback_port: bind/getsockname");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

Broker::Broker(BrokerOptions options) : options_(std::move(options)) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
  pattern += "/nova-broker-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) throw_errno("Broker: mkdtemp " + pattern);
  dir_ = buffer.data();
  try {
    start(/*may_change_port=*/true);
  } catch (...) {
    kill();
    if (std::getenv("NOVA_KEEP_TEST_DIRS") == nullptr) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
    throw;
  }
}

Broker::~Broker() {
  try {
    kill();
  } catch (...) {  // a destructor must not throw; the child is gone or orphaned to init
  }
  if (pidfd_ >= 0) ::close(pidfd_);
  if (std::getenv("NOVA_KEEP_TEST_DIRS") != nullptr) {
    std::cerr << "nova::testing::Broker: kept " << dir_.string() << "\n";
  } else {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string Broker::uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

pid_t Broker::pid() const { return running() ? pid_ : -1; }

bool Broker::running() const { return !reap(/*block=*/false); }

std::string Broker::log_text() const {
  std::string text = read_file(dir_ / kLogName);
  const std::string stdio = read_file(dir_ / kStdioName);
  if (!stdio.empty()) text += "--- mosquitto stdout/stderr ---\n" + stdio;
  return text;
}

std::size_t Broker::log_count(std::string_view needle) const {
  if (needle.empty()) return 0;
  const std::string text = log_text();
  std::size_t count = 0;
  for (auto at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size())) {
    ++count;
  }
  return count;
}

bool Broker::wait_for_log(std::string_view needle, milliseconds timeout,
                          std::size_t min_count) const {
  const auto deadline = Clock::now() + timeout;
  const DirWatch watch(dir_);
  for (;;) {
    if (log_count(needle) >= min_count) return true;
    const int left = millis_until(deadline);
    if (left == 0) return false;
    // Without inotify, re-read every 20 ms.
    wait_readable({watch.fd()}, watch.fd() >= 0 ? left : std::min(left, 20));
    watch.drain();
  }
}

void Broker::stop() {
  if (!running()) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + options_.timeout;
  while (!reap(false)) {
    if (Clock::now() >= deadline) {
      kill();
      fail("mosquitto did not exit within " + std::to_string(options_.timeout.count()) +
           " ms of SIGTERM (SIGKILLed it)");
    }
    // pidfd becomes readable when the child exits; without one, poll every 10 ms.
    wait_readable({pidfd_}, pidfd_ >= 0 ? millis_until(deadline)
                                        : std::min(millis_until(deadline), 10));
  }
}

void Broker::kill() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  reap(/*block=*/true);
}

void Broker::restart() {
  stop();
  start(/*may_change_port=*/false);
}

// Returns true when no child is running (any exited child is reaped now).
bool Broker::reap(bool block) const {
  if (pid_ < 0) return true;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
    if (r == 0) return false;
    if (r < 0 && errno == EINTR) continue;
    // r < 0 with ECHILD: reaped elsewhere (e.g. SIGCHLD ignored); the child is gone.
    last_status_ = r == pid_ ? status : 0;
    pid_ = -1;
    if (pidfd_ >= 0) {
      ::close(pidfd_);
      pidfd_ = -1;
    }
    return true;
  }
}

void Broker::write_config() const {
  std::ofstream out(dir_ / kConfigName, std::ios::trunc);
  out << "# Generated by nova::testing::Broker (tests/harness) for one test.\n";
  if (::geteuid() == 0) {
    // Started as root, mosquitto switches to user "mosquitto" by default, which cannot
    // write our 0700 root-owned directory: the log file fails to open and every
    // autosave fails with "Permission denied" while the broker keeps running.
    out << "user root\n";
  }
  out << "listener " << port_ << " 127.0.0.1\n"
      << "allow_anonymous true\n";
  if (options_.persistence) {
    out << "persistence true\n"
        << "persistence_location " << dir_.string() << "/\n"
        << "autosave_interval " << options_.autosave_interval << "\n"
        << "autosave_on_changes " << (options_.autosave_on_changes ? "true" : "false")
        << "\n";
  } else {
    out << "persistence false\n";
  }
  out << "log_dest file " << (dir_ / kLogName).string() << "\n"
      << "log_timestamp_format %Y-%m-%dT%H:%M:%S\n";
  if (options_.verbose_log) {
    out << "log_type all\n";
  } else {
    out << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n";
  }
  if (!options_.extra_config.empty()) {
    out << "# extra_config\n" << options_.extra_config << "\n";
  }
  out.close();
  if (!out) {
    throw std::runtime_error("nova::testing::Broker: cannot write " +
                             (dir_ / kConfigName).string());
  }
}

void Broker::start(bool may_change_port) {
  const auto deadline = Clock::now() + options_.timeout;
  int backoff_ms = 5;
  for (int attempt = 1;; ++attempt) {
    if (may_change_port) port_ = free_loopback_port();
    write_config();
    const auto log_offset = file_size_or_zero(dir_ / kLogName);
    std::string failure;
    if (spawn_and_wait_ready(log_offset, failure)) return;
    const bool port_taken =
        read_file(dir_ / kLogName, log_offset).find(kAddressInUse) != std::string::npos;
    if (!port_taken) fail(failure);
    if (may_change_port) {
      // Another process took the free port between our probe and mosquitto's bind.
      if (attempt >= kMaxPortAttempts) {
        fail("no free port after " + std::to_string(attempt) + " attempts");
      }
    } else {
      // restart(): the previous incarnation or its sockets still hold the port.
      if (Clock::now() >= deadline) {
        fail("port " + std::to_string(port_) + " still in use after " +
             std::to_string(options_.timeout.count()) + " ms");
      }
      wait_readable({}, std::min(backoff_ms, millis_until(deadline)));
      backoff_ms = std::min(backoff_ms * 2, 200);
    }
  }
}

// Only the log written after `log_offset` (this start's part) is consulted.
bool Broker::spawn_and_wait_ready(std::uintmax_t log_offset, std::string& failure) {
  // Everything the child needs is prepared before fork(): between fork and exec a
  // multi-threaded parent's child may only make async-signal-safe calls.
  const std::string exe = find_mosquitto();
  const std::string config = (dir_ / kConfigName).string();
  const std::string stdio = (dir_ / kStdioName).string();
  const std::filesystem::path log = dir_ / kLogName;
  const pid_t parent = ::getpid();
  const char* argv[] = {exe.c_str(), "-c", config.c_str(), nullptr};

  const pid_t child = ::fork();
  if (child < 0) throw_errno("Broker: fork");
  if (child == 0) {
    // Die with the test: the kernel SIGKILLs us when the forking thread exits. If the
    // parent already died before prctl took effect, give up now.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (const int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE}) {
      ::sigaction(sig, &dfl, nullptr);
    }
    const int null_fd = ::open("/dev/null", O_RDONLY);
    const int out_fd = ::open(stdio.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (null_fd < 0 || out_fd < 0) ::_exit(126);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(out_fd, STDERR_FILENO);
    // Do not leak the test's sockets (e.g. MQTT client connections) into the broker.
    ::close_range(3, ~0U, 0);
    // execv's argv is char* const[] for C compatibility; it does not modify the strings.
    ::execv(exe.c_str(), const_cast<char* const*>(argv));
    ::_exit(127);
  }

  pid_ = child;
  // glibc 2.36's <sys/pidfd.h> lacks extern "C", so call the kernel directly. -1 on
  // kernels before 5.3: waits then fall back to timed polling.
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, child, 0));
  const auto deadline = Clock::now() + options_.timeout;
  const DirWatch watch(dir_);
  int backoff_ms = 1;
  for (;;) {
    if (reap(false)) {
      failure = "mosquitto " + describe_status(last_status_) + " during start-up";
      if (WIFEXITED(last_status_) && WEXITSTATUS(last_status_) == 127) {
        failure += " (could not exec " + exe + ")";
      }
      return false;
    }
    if (read_file(log, log_offset).find(kRunningMarker) != std::string::npos &&
        accepts_connections(port_)) {
      return true;
    }
    if (Clock::now() >= deadline) {
      kill();
      failure = "mosquitto did not accept connections on port " + std::to_string(port_) +
                " within " + std::to_string(options_.timeout.count()) + " ms";
      return false;
    }
    // Wake on child exit or a log write; the backoff bounds the connect probes.
    wait_readable({pidfd_, watch.fd()}, std::min(backoff_ms, millis_until(deadline)));
    watch.drain();
    backoff_ms = std::min(backoff_ms * 2, 50);
  }
}

void Broker::fail(const std::string& what) const {
  throw std::runtime_error("nova::testing::Broker (" + dir_.string() + ", port " +
                           std::to_string(port_) + "): " + what +
                           "\n--- tail of broker log ---\n" +
                           tail_lines(log_text(), kLogTailLines));
}

}  // namespace nova::testing
