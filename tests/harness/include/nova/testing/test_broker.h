// The MQTT brokers the suite runs against, behind one interface, so a test can run the
// same scenario on each: Mosquitto (the default, nova/testing/broker.h) and nats-server's
// MQTT 3.1.1 listener (nova/testing/nats_broker.h). Both run as children of the test on a
// free loopback port, in a fresh data directory, with persistence on.
//
// Example:
//   for (BrokerKind kind : all_broker_kinds()) {
//     auto broker = start_broker(kind, Transport::mutual_tls);
//     ... broker->uri() ... broker->kill(); broker->restart(); ...
//   }
//
// What differs between them (and what docs/brokers.md records) is what they do with
// the MQTT the components speak, not how a test drives them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "nova/testing/transport.h"

namespace nova::testing {

enum class BrokerKind { mosquitto, nats };

// "mosquitto", "nats": for test names and messages.
std::string to_string(BrokerKind kind);

// Every kind, Mosquitto first.
std::vector<BrokerKind> all_broker_kinds();

class TestBroker {
 public:
  virtual ~TestBroker() = default;

  virtual BrokerKind kind() const = 0;
  virtual std::string uri() const = 0;  // "mqtts://127.0.0.1:<port>", "tcp://..." in plaintext
  virtual std::uint16_t port() const = 0;
  // The broker's own directory (config, log, persistence); tests may put theirs below.
  virtual const std::filesystem::path& data_dir() const = 0;
  // SIGTERM and wait: a graceful shutdown that saves what the broker persists.
  virtual void stop() = 0;
  // SIGKILL and wait: a crash.
  virtual void kill() = 0;
  // Starts it again (stopping it first if running) on the same port and data.
  virtual void restart() = 0;
  // The broker's log, for failure messages.
  virtual std::string log_text() const = 0;
};

// Starts a broker of `kind` with the harness's default options and `transport`; throws
// std::runtime_error (with the tail of its log) if it cannot.
std::unique_ptr<TestBroker> start_broker(BrokerKind kind, Transport transport);

}  // namespace nova::testing
