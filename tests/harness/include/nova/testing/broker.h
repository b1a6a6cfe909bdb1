// A real Mosquitto broker for tests, run as a child process on a free loopback port.
//
// Each Broker owns a fresh temporary directory holding its generated mosquitto.conf,
// its log and its persistence database, so tests never share state and can run in
// parallel. The broker runs in the foreground as a child of the test and dies with it:
// a crashed or killed test never leaks a broker.
//
// Example:
//   nova::testing::Broker broker;              // started and accepting connections
//   mqtt::async_client client(broker.uri(), "t1");
//   ...
//   broker.stop();                             // SIGTERM: saves its database, exits
//   broker.restart();                          // same port, same data directory
//
// Every failure throws std::runtime_error whose message ends with the tail of the
// broker's log, which is usually the only way to learn why Mosquitto refused to run.
//
// A Broker is not thread-safe; use it from the thread that created it. That thread must
// outlive the broker: Linux delivers the child's "parent died" SIGKILL when the thread
// that forked it exits.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "nova/bridge/broker_process.h"
#include "nova/testing/test_broker.h"

namespace nova::testing {

struct BrokerOptions {
  // Appended verbatim to the generated mosquitto.conf (after the listener, so
  // per-listener options apply to it). Must not disable "information" log lines or
  // replace log_dest: start-up is detected from the log.
  std::string extra_config;

  // Persist retained messages, subscriptions and queued QoS 1/2 messages to
  // data_dir()/mosquitto.db. Mosquitto always writes the database on SIGTERM; between
  // saves it holds the data in memory only, so kill() loses what changed since the
  // last autosave.
  bool persistence = true;

  // Mosquitto's default autosave is 1800 s. With autosave_on_changes false this is a
  // period in seconds (2.0.11 saves once more than this has elapsed, so 1 saves every
  // ~2 s); with true it is a count of changes (retained messages, subscription changes,
  // queued messages), and 1 saves after every change.
  unsigned autosave_interval = 1;
  bool autosave_on_changes = false;

  // Mutual TLS, as nova-bridge renders a production listener: the listener takes only
  // clients with a certificate of the test process's PKI (test_pki.h), requires one
  // (require_certificate), makes its CN the MQTT username (use_identity_as_username),
  // checks the PKI's CRL, refuses anonymous clients and TLS below 1.2. uri() is then
  // mqtts://; clients get their options from paho_tls.h or mosquitto_client_args().
  bool tls = false;

  // Adds "log_type all": every packet is logged. Handy when debugging a test.
  bool verbose_log = false;

  // How long start, restart and stop may take before they throw.
  std::chrono::milliseconds timeout{10'000};
};

// The default options with the mutual TLS listener: `Broker broker(mutual_tls());`.
inline BrokerOptions mutual_tls() {
  BrokerOptions options;
  options.tls = true;
  return options;
}

// Returns a TCP port on 127.0.0.1 that was free when asked (bind to port 0, read the
// port back, close): nova::bridge::free_loopback_port, throwing on failure. Another
// process may take it before the caller binds it; callers must be ready to retry, as
// Broker is.
std::uint16_t free_loopback_port();

class Broker final : public TestBroker {
 public:
  // Creates the data directory (mkdtemp under $TMPDIR, else /tmp), writes the config
  // and starts the broker; returns once it accepts TCP connections. If the chosen port
  // is taken by someone else meanwhile, retries on another port.
  explicit Broker(BrokerOptions options = {});

  // SIGKILLs a broker still running and removes the data directory, unless the
  // environment variable NOVA_KEEP_TEST_DIRS is set (then its path is printed).
  ~Broker() override;

  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // SIGTERM and wait for exit: a graceful shutdown that saves the database.
  // No-op if the broker is not running. Throws if it does not exit within the timeout
  // (after SIGKILLing it).
  void stop() override;

  // SIGKILL and wait for exit: a crash. No-op if the broker is not running.
  void kill() override;

  // Starts the broker again on the same port with the same data directory and
  // persistence database; stops it first (SIGTERM) if it is running. Retries while the
  // port is still held by the previous incarnation, up to the timeout.
  void restart() override;

  BrokerKind kind() const override { return BrokerKind::mosquitto; }
  std::uint16_t port() const override { return port_; }
  std::string uri() const override;  // "tcp://127.0.0.1:<port>", "mqtts://127.0.0.1:<port>" with tls
  bool tls() const { return options_.tls; }
  // The host, port and (with tls) certificate options of mosquitto_pub/mosquitto_sub
  // for a client whose identity is `cn`: "-h 127.0.0.1 -p N [--cafile A --cert B --key C]".
  std::string mosquitto_client_args(const std::string& cn) const;
  const std::filesystem::path& data_dir() const override { return dir_; }

  // The broker's log file (all incarnations, appended), followed by anything the
  // process wrote to stdout/stderr (config errors surface there).
  std::string log_text() const override;

  // How many times `needle` occurs in log_text().
  std::size_t log_count(std::string_view needle) const;

  // Waits until `needle` occurs at least `min_count` times in log_text(). Returns false
  // on timeout. Wakes on log writes, not on a timer. To await the next autosave:
  //   auto saves = broker.log_count("Saving in-memory database");
  //   ... publish ...
  //   REQUIRE(broker.wait_for_log("Saving in-memory database", 10s, saves + 1));
  bool wait_for_log(std::string_view needle, std::chrono::milliseconds timeout,
                    std::size_t min_count = 1) const;

  // The broker's process id, or -1 when it is not running.
  pid_t pid() const;
  // False once the process exited, for whatever reason (reaps it).
  bool running() const;

 private:
  void start(bool may_change_port);
  void write_config() const;
  [[noreturn]] void fail(const std::string& what) const;

  BrokerOptions options_;
  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  // The process itself (spawn, readiness, signals, reaping) lives in the nova-bridge
  // library. Mutable: observing a dead child (waitpid) updates it in const accessors.
  mutable bridge::BrokerProcess process_;
};

}  // namespace nova::testing
