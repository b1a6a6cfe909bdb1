#include "nova/testing/retained.h"

#include <cstdio>
#include <memory>
#include <stdexcept>

#include "nova/testing/poll.h"
#include "nova/testing/test_pki.h"

namespace nova::testing {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "tcp://127.0.0.1:1883" -> {"127.0.0.1", "1883"}
std::pair<std::string, std::string> host_port(const std::string& uri) {
  const auto scheme = uri.find("://");
  const std::string rest = scheme == std::string::npos ? uri : uri.substr(scheme + 3);
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos) throw std::invalid_argument("read_retained: no port in " + uri);
  return {rest.substr(0, colon), rest.substr(colon + 1)};
}

}  // namespace

RetainedMessages read_retained(const std::string& broker_uri, const std::string& filter, std::size_t expected,
                               std::chrono::seconds wait) {
  const auto [host, port] = host_port(broker_uri);
  // %t: topic (our topics hold no spaces), %x: the payload in hex (it is CBOR).
  // --retained-only: stop at the first live (non-retained) message.
  const std::string command = "mosquitto_sub -h " + host + " -p " + port +
                              mosquitto_tls_args(broker_uri, "test-retained-reader") + " -V mqttv311 -q 1 --retained-only -t '" +
                              filter + "' -F '%t %x' -C " + std::to_string(expected) + " -W " +
                              std::to_string(std::max<long>(1, wait.count())) + " 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  if (!pipe) throw std::runtime_error("read_retained: cannot run mosquitto_sub");
  RetainedMessages out;
  std::string line;
  for (int c; (c = std::fgetc(pipe.get())) != EOF;) {
    if (c != '\n') {
      line.push_back(static_cast<char>(c));
      continue;
    }
    const auto space = line.find(' ');
    const std::string topic = line.substr(0, space);
    const std::string hex = space == std::string::npos ? "" : line.substr(space + 1);
    std::string bytes;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
      bytes.push_back(static_cast<char>(hex_value(hex[i]) * 16 + hex_value(hex[i + 1])));
    }
    out[topic] = bytes;
    line.clear();
  }
  return out;
}

bool retained_until(const std::string& broker_uri, const std::string& filter, std::size_t expected,
                    const std::function<bool(const RetainedMessages&)>& holds, std::chrono::milliseconds deadline) {
  return poll_until([&] { return holds(read_retained(broker_uri, filter, expected)); }, deadline);
}

}  // namespace nova::testing
