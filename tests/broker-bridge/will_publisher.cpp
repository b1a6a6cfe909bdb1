// A node stand-in for tests that need a publisher in another process, so that a SIGKILL
// can make its broker fire its last will.
//
//   will_publisher <uri> <client id> <topic> <will hex> <birth hex> [<ca> <cert> <key>]
//
// Connects (MQTT 3.1.1, clean session; with the three files, mutual TLS as the
// certificate's identity to an mqtts:// uri, else anonymously) with a retained QoS 1
// last will of <will hex> on <topic>, publishes <birth hex> there retained at QoS 1,
// waits for the PUBACK, prints "ready" on stdout and blocks until killed. It dies with its parent
// (PR_SET_PDEATHSIG), so a failed test never leaks it. Exit codes: 2 usage, 1 failure.
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <mqtt/async_client.h>
#include <optional>
#include <string>
#include <string_view>

namespace {

std::optional<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string bytes;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int high = nibble(hex[i]);
    const int low = nibble(hex[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    bytes.push_back(static_cast<char>(high * 16 + low));
  }
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6 && argc != 9) {
    std::cerr << "usage: will_publisher <uri> <client id> <topic> <will hex> <birth hex> [<ca> <cert> <key>]\n";
    return 2;
  }
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() == 1) return 1;  // the parent already died

  const std::string uri = argv[1];
  const std::string client_id = argv[2];
  const std::string topic = argv[3];
  const auto will = from_hex(argv[4]);
  const auto birth = from_hex(argv[5]);
  if (!will || !birth) {
    std::cerr << "will_publisher: payloads must be hex\n";
    return 2;
  }
  try {
    mqtt::async_client client(uri, client_id);
    auto options = mqtt::connect_options_builder()
                       .mqtt_version(MQTTVERSION_3_1_1)
                       .clean_session(true)
                       .keep_alive_interval(std::chrono::seconds(30))
                       .connect_timeout(std::chrono::seconds(10))
                       .will(mqtt::message(topic, *will, 1, true))
                       .finalize();
    if (argc == 9) {
      options.set_ssl(mqtt::ssl_options_builder()
                          .trust_store(argv[6])
                          .key_store(argv[7])
                          .private_key(argv[8])
                          .enable_server_cert_auth(true)
                          .verify(true)
                          .finalize());
    }
    if (!client.connect(options)->wait_for(std::chrono::seconds(15))) {
      std::cerr << "will_publisher: connect timeout\n";
      return 1;
    }
    if (!client.publish(mqtt::make_message(topic, *birth, 1, true))
             ->wait_for(std::chrono::seconds(15))) {
      std::cerr << "will_publisher: no PUBACK for the birth\n";
      return 1;
    }
    std::cout << "ready" << std::endl;
    for (;;) ::pause();
  } catch (const mqtt::exception& error) {
    std::cerr << "will_publisher: " << error.what() << '\n';
    return 1;
  }
}
