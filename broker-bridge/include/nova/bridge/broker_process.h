// One Mosquitto broker as a child process: the only code in the project that forks,
// signals and reaps mosquitto (the hierarchy, nova-bridge and the test harness use it).
//
// What it guarantees, and why:
// - The broker dies with its parent: the child sets PR_SET_PDEATHSIG(SIGKILL). Linux
//   fires it when the *thread* that forked exits, not the process, so start() must be
//   called from a thread that outlives the broker (Hierarchy forks from its own
//   long-lived thread for this reason).
// - start() returns only when this start's part of the log contains Mosquitto's
//   "... running" line (logged after every listener is bound) *and* a TCP connect to
//   the listener succeeds. The log proves the port belongs to the process we spawned and
//   not to another test's broker; the connect proves it accepts clients. It waits on the
//   child's pidfd and on inotify events of the log's directory, not on a timer.
// - "Address already in use" is reported as its own outcome so callers can pick another
//   port (free ports race with other processes) or retry the same one.
// - The broker runs in its own process group, so a terminal's Ctrl-C (SIGINT to the
//   foreground group) reaches only the supervisor, which stops brokers in order.
// - stdout/stderr are appended to a file: Mosquitto reports config errors there, before
//   its log file exists.
// - The child gets default signal dispositions and an empty signal mask (a supervisor
//   that blocks SIGTERM for sigwait must not pass that on), /dev/null as stdin, and no
//   inherited descriptors beyond 0-2 (MQTT client sockets of the parent must not leak).
//
// The config must log to `log` with at least the "information" type; running as root,
// it needs "user root" (else Mosquitto drops to user "mosquitto", which cannot write a
// root-owned data directory: the log stays empty and every autosave fails silently).
//
// Not thread-safe: one thread uses a BrokerProcess at a time.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>

#include "nova/schemas/result.h"

namespace nova::bridge {

struct BrokerLaunch {
  std::filesystem::path config;  // run as `mosquitto -c <config>`
  std::filesystem::path log;     // the file the config's `log_dest file` names
  std::filesystem::path stdio;   // mosquitto's stdout and stderr are appended here
  std::string host = "127.0.0.1";  // the listener probed for readiness
  std::uint16_t port = 0;
  std::chrono::milliseconds timeout{10'000};  // for start-up
  // Added for WireGuard links between network namespaces: empty, the broker runs in this
  // process's network namespace; else a namespace file (`ip netns add N` makes
  // /run/netns/N) the child joins before exec, and the readiness probe connects from
  // inside that namespace too.
  std::filesystem::path netns;
};

enum class StartOutcome {
  ready,         // running and accepting connections
  port_in_use,   // exited because the listener could not bind
  exited,        // exited for another reason (config error, ...): see message
  timed_out,     // not ready within the timeout (it was SIGKILLed)
  spawn_failed,  // no mosquitto executable, or fork failed
};

struct StartResult {
  StartOutcome outcome = StartOutcome::spawn_failed;
  std::string message;  // empty when ready
  bool ok() const { return outcome == StartOutcome::ready; }
};

class BrokerProcess {
 public:
  BrokerProcess() = default;
  // SIGKILLs and reaps a broker still running: a BrokerProcess never leaks a child.
  ~BrokerProcess();
  BrokerProcess(BrokerProcess&& other) noexcept;
  BrokerProcess& operator=(BrokerProcess&& other) noexcept;
  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;

  // Spawns mosquitto and waits until it is ready (see above). Only the log written
  // after this call is consulted. Precondition: !running().
  StartResult start(const BrokerLaunch& launch);

  // SIGTERM (Mosquitto saves its database and exits) and wait. After `timeout` it is
  // SIGKILLed; returns false then. True also when it was not running.
  bool stop(std::chrono::milliseconds timeout);
  // SIGKILL and reap: a crash. No-op when not running.
  void kill();
  // Sends a signal (e.g. SIGUSR1: save the database now). False when not running.
  bool signal(int sig) const;
  // Waits for the process to exit by itself. Returns its wait status, or nullopt on
  // timeout (or when it was not running).
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

  // Reaps the process if it exited; false once it is gone, for whatever reason.
  bool running();
  pid_t pid() const { return pid_; }  // -1 when not running (as of the last reap)
  // Readable once the process exited (its pidfd); -1 when not running or on kernels
  // before 5.3. For poll() loops that watch many brokers.
  int exit_fd() const { return pidfd_; }
  // The wait status of the last exit, and its description ("killed by signal Killed").
  int last_status() const { return last_status_; }
  std::string describe_last_exit() const;

 private:
  bool reap(bool block);
  void release() noexcept;

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int last_status_ = 0;
};

// "exited with status 1", "killed by signal Killed", ...
std::string describe_wait_status(int status);

// The mosquitto executable: $NOVA_MOSQUITTO, else the first on $PATH, else the sbin
// directories Debian installs it in (often missing from a non-root PATH).
schemas::Result<std::string> find_mosquitto();

// Waits until `condition()` holds, re-checking whenever a file in `dir` is created or
// written (inotify), and at least every `recheck` (for conditions that do not show in
// the directory, such as a TCP port opening). False on timeout.
bool wait_until(const std::function<bool()>& condition, const std::filesystem::path& dir,
                std::chrono::milliseconds timeout,
                std::chrono::milliseconds recheck = std::chrono::milliseconds(1000));

// Waits up to `timeout` for any of the descriptors (-1 entries ignored) to become
// readable. With none, a plain timed wait.
void wait_readable(std::initializer_list<int> fds, std::chrono::milliseconds timeout);

// A file's whole content, or "" if it cannot be read (a broker's log may not exist yet).
std::string read_text_file(const std::filesystem::path& path);

// The last `lines` lines of `text`: what errors quote from a broker's log.
std::string last_lines(const std::string& text, std::size_t lines);

}  // namespace nova::bridge
