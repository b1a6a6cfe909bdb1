// Checks the broker harness against a real Mosquitto and a real Paho client.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mqtt/client.h>
#include <stdexcept>
#include <string>

#include "nova/testing/broker.h"
#include "nova/testing/paho_tls.h"

namespace {

using nova::testing::Broker;
using nova::testing::BrokerOptions;
using namespace std::chrono_literals;

mqtt::connect_options connect_options(bool clean_session = true) {
  return mqtt::connect_options_builder()
      .mqtt_version(MQTTVERSION_3_1_1)
      .clean_session(clean_session)
      .connect_timeout(5s)
      .finalize();
}

// Publishes one retained QoS 1 message; the synchronous client returns after PUBACK.
void publish_retained(const Broker& broker, const std::string& topic,
                      const std::string& payload) {
  mqtt::client publisher(broker.uri(), "harness-pub");
  publisher.connect(connect_options());
  publisher.publish(mqtt::make_message(topic, payload, 1, /*retained=*/true));
  publisher.disconnect();
}

// Subscribes and returns the first message (the retained one, if any), or nullptr.
mqtt::const_message_ptr receive_one(const Broker& broker, const std::string& topic) {
  mqtt::client subscriber(broker.uri(), "harness-sub");
  subscriber.start_consuming();
  subscriber.connect(connect_options());
  subscriber.subscribe(topic, 1);
  mqtt::const_message_ptr message;
  subscriber.try_consume_message_for(&message, 10s);
  subscriber.disconnect();
  return message;
}

bool process_exists(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

}  // namespace

// The cases without `tls` check the plaintext mode itself, on purpose.
TEST_CASE("a started broker accepts a Paho client", "[harness]") {
  Broker broker;
  REQUIRE(broker.running());
  REQUIRE(broker.pid() > 0);
  REQUIRE(broker.port() != 0);
  REQUIRE(broker.uri() == "tcp://127.0.0.1:" + std::to_string(broker.port()));
  REQUIRE(std::filesystem::is_regular_file(broker.data_dir() / "mosquitto.conf"));

  mqtt::client client(broker.uri(), "harness-connect");
  client.connect(connect_options());
  CHECK(client.is_connected());
  client.disconnect();

  CHECK(broker.log_text().find("running") != std::string::npos);
}

TEST_CASE("a TLS broker takes a client certificate of the test PKI as the username, and only that", "[harness]") {
  BrokerOptions options;
  options.tls = true;
  Broker broker(options);
  REQUIRE(broker.uri() == "mqtts://127.0.0.1:" + std::to_string(broker.port()));

  mqtt::client client(broker.uri(), "harness-tls");
  auto opts = nova::testing::connect_options(broker, "gw-harness");
  opts.set_connect_timeout(5s);
  client.connect(opts);
  CHECK(client.is_connected());
  client.disconnect();
  CHECK(broker.log_count("u'gw-harness'") == 1);

  // mosquitto_pub with the arguments the harness gives.
  CHECK(std::system(("mosquitto_pub " + broker.mosquitto_client_args("gw-cli") + " -t t -m x -q 1").c_str()) == 0);
  CHECK(broker.log_count("u'gw-cli'") == 1);

  // Refused: no certificate, and a certificate of another CA with the same name.
  CHECK(std::system(("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker.port()) + " --cafile '" +
                     nova::testing::client_identity("gw-cli").ca.string() + "' -t t -m x 2>/dev/null")
                        .c_str()) != 0);
  const auto stranger = nova::testing::foreign_identity(broker.data_dir() / "foreign-pki", "gw-cli");
  CHECK(std::system(("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker.port()) + " --cafile '" +
                     nova::testing::client_identity("gw-cli").ca.string() + "' --cert '" + stranger.cert.string() +
                     "' --key '" + stranger.key.string() + "' -t t -m x 2>/dev/null")
                        .c_str()) != 0);
  CHECK(broker.log_count("u'gw-cli'") == 1);
}

TEST_CASE("a retained QoS 1 message survives SIGTERM and restart", "[harness]") {
  Broker broker;
  const auto port = broker.port();
  const auto old_pid = broker.pid();
  publish_retained(broker, "harness/retained", "kept across restarts");

  broker.stop();
  CHECK_FALSE(broker.running());
  CHECK(broker.pid() == -1);
  CHECK_FALSE(process_exists(old_pid));
  CHECK(std::filesystem::exists(broker.data_dir() / "mosquitto.db"));

  broker.restart();
  REQUIRE(broker.running());
  CHECK(broker.port() == port);
  CHECK(broker.pid() != old_pid);

  const auto message = receive_one(broker, "harness/retained");
  REQUIRE(message != nullptr);
  CHECK(message->get_payload_str() == "kept across restarts");
  CHECK(message->is_retained());
}

TEST_CASE("restart right after stop reuses the port despite closed connections",
          "[harness]") {
  Broker broker;
  mqtt::client client(broker.uri(), "harness-held");
  client.connect(connect_options());
  broker.stop();  // the broker closes the client's socket first: TIME_WAIT on its side
  broker.restart();
  mqtt::client again(broker.uri(), "harness-again");
  again.connect(connect_options());
  CHECK(again.is_connected());
  again.disconnect();
}

TEST_CASE("kill() SIGKILLs the broker", "[harness]") {
  Broker broker;
  const pid_t pid = broker.pid();
  REQUIRE(process_exists(pid));

  broker.kill();
  CHECK_FALSE(broker.running());
  CHECK(broker.pid() == -1);
  CHECK_FALSE(process_exists(pid));
  CHECK_FALSE(std::filesystem::exists("/proc/" + std::to_string(pid)));
  // A SIGTERMed Mosquitto logs "terminating" and saves; a SIGKILLed one cannot.
  CHECK(broker.log_text().find("terminating") == std::string::npos);

  broker.restart();
  CHECK(broker.running());
}

TEST_CASE("after an autosave, a retained message survives kill()", "[harness]") {
  BrokerOptions options;
  options.autosave_on_changes = true;  // save after every change
  Broker broker(options);
  const auto saves = broker.log_count("Saving in-memory database");
  publish_retained(broker, "harness/crash", "saved before the crash");
  REQUIRE(broker.wait_for_log("Saving in-memory database", 10s, saves + 1));

  broker.kill();
  broker.restart();
  const auto message = receive_one(broker, "harness/crash");
  REQUIRE(message != nullptr);
  CHECK(message->get_payload_str() == "saved before the crash");
}

TEST_CASE("two brokers at once get different ports and directories", "[harness]") {
  Broker first;
  Broker second;
  CHECK(first.port() != second.port());
  CHECK(first.data_dir() != second.data_dir());
  CHECK(first.pid() != second.pid());

  mqtt::client a(first.uri(), "harness-a");
  mqtt::client b(second.uri(), "harness-b");
  a.connect(connect_options());
  b.connect(connect_options());
  CHECK(a.is_connected());
  CHECK(b.is_connected());
  a.disconnect();
  b.disconnect();
}

TEST_CASE("the destructor kills the broker and removes its directory", "[harness]") {
  std::filesystem::path dir;
  pid_t pid = -1;
  {
    Broker broker;
    dir = broker.data_dir();
    pid = broker.pid();
  }
  if (std::getenv("NOVA_KEEP_TEST_DIRS") == nullptr) CHECK_FALSE(std::filesystem::exists(dir));
  CHECK_FALSE(process_exists(pid));
}

TEST_CASE("a broker that refuses its config throws with the log tail", "[harness]") {
  BrokerOptions options;
  options.extra_config = "no_such_option 1";
  options.timeout = 5s;
  try {
    Broker broker(options);
    FAIL("the broker started despite an unknown option");
  } catch (const std::runtime_error& error) {
    const std::string message = error.what();
    INFO(message);
    CHECK(message.find("no_such_option") != std::string::npos);
    CHECK(message.find("during start-up") != std::string::npos);
  }
}

TEST_CASE("restart() retries while the port is taken, then throws", "[harness]") {
  BrokerOptions options;
  options.timeout = 1s;
  Broker broker(options);
  broker.stop();

  // Someone else listens on the broker's port meanwhile.
  const int blocker = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(blocker >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(broker.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(blocker, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(blocker, 1) == 0);

  try {
    broker.restart();
    FAIL("restart succeeded on a taken port");
  } catch (const std::runtime_error& error) {
    const std::string message = error.what();
    INFO(message);
    CHECK(message.find("still in use") != std::string::npos);
    CHECK(message.find("Address already in use") != std::string::npos);
  }
  CHECK_FALSE(broker.running());

  ::close(blocker);
  broker.restart();  // the port is free again
  CHECK(broker.running());
}

TEST_CASE("free_loopback_port returns a port that can be bound", "[harness]") {
  const auto port = nova::testing::free_loopback_port();
  REQUIRE(port != 0);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  ::close(fd);
}
