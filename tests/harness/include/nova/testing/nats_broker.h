// A real nats-server for tests, with its MQTT 3.1.1 listener on a free loopback port:
// the second broker implementation the suite runs the components against (see
// test_broker.h and docs/brokers.md).
//
// NATS's MQTT support stores retained messages, sessions and QoS 1 queues in JetStream,
// so the config enables JetStream (file storage under data_dir()/jetstream, which
// survives restart and SIGKILL) and names the server (JetStream refuses to start
// without a server_name when MQTT is on). The NATS client port is chosen by the server
// itself (port -1): tests only speak MQTT.
//
// Like Broker: the process dies with the thread that created it (PR_SET_PDEATHSIG),
// the directory is removed by the destructor unless NOVA_KEEP_TEST_DIRS is set, and a
// failure throws std::runtime_error ending with the tail of the server's log.
//
// With Transport::mutual_tls the MQTT listener runs TLS with the test broker's
// certificate (test_pki.h) and `verify: true`: it takes only clients presenting a
// certificate of the test PKI, and uri() is mqtts://. Two differences from Mosquitto's TLS
// listener (broker.h): nats-server 2.9 has no CRL file option (it checks revocation by
// OCSP only), so the PKI's CRL is not consulted; and the certificate is not mapped to a
// user (`verify_and_map` needs every client's subject listed in the config beforehand),
// which only an ACL would use, and test brokers have none.
//
// The executable is $NOVA_NATS_SERVER, else nats-server found on $PATH or in /usr/sbin
// (where Debian installs it, often missing from a non-root PATH).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include "nova/testing/child_process.h"
#include "nova/testing/test_broker.h"

namespace nova::testing {

class NatsBroker final : public TestBroker {
 public:
  // Creates the data directory, writes the config, starts the server and returns once
  // its MQTT listener accepts connections (retrying on another port if the chosen one
  // was taken meanwhile).
  explicit NatsBroker(Transport transport, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  ~NatsBroker() override;
  NatsBroker(const NatsBroker&) = delete;
  NatsBroker& operator=(const NatsBroker&) = delete;

  BrokerKind kind() const override { return BrokerKind::nats; }
  std::string uri() const override;
  std::uint16_t port() const override { return port_; }
  const std::filesystem::path& data_dir() const override { return dir_; }
  void stop() override;
  void kill() override;
  void restart() override;
  std::string log_text() const override;

 private:
  enum class Started { ready, port_in_use };
  Started start();
  void write_config() const;
  [[noreturn]] void fail(const std::string& what) const;

  Transport transport_;
  std::chrono::milliseconds timeout_;
  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  ChildProcess process_;
};

}  // namespace nova::testing
