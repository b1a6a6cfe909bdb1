// libFuzzer target: nova-cloud's handling of every message it consumes, through
// CloudService::deliver -- the function the MQTT callback and the ingest thread run:
// topic parsing, decoding, validation, the store's synced write, the acks and any
// placement it triggers, encoded and published (and checked by check_published).
//
// Input: one selector byte, the varying topic level(s) up to the first '\n', then the
// payload. The selector's low bits pick the topic shape, its high bit the retain flag:
//   0..5   nova/v1/up/<text>/{state,link,result,metrics,decision,alert}
//   6..9   nova/v1/cloud/{workload,placement,cluster,instance}/<text>
//   10     nova/v1/down/cloud/<text>/ack (a peer's ack)
//   11     <text> as the whole topic
// State carries over between inputs (births make later acks go out), as in the service.
#include <cstdint>
#include <string>

#include "cloud_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static nova::fuzz::FuzzedCloud cloud;
  if (size < 1) return 0;
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t newline = input.find('\n');
  const std::string text = input.substr(0, newline);
  const std::string payload = newline == std::string::npos ? std::string() : input.substr(newline + 1);
  const bool retained = (data[0] & 0x80) != 0;
  static const char* const kUp[] = {"state", "link", "result", "metrics", "decision", "alert"};
  static const char* const kCloud[] = {"workload", "placement", "cluster", "instance"};
  const unsigned selector = (data[0] & 0x7f) % 12;
  std::string topic;
  if (selector < 6) {
    topic = "nova/v1/up/" + text + "/" + kUp[selector];
  } else if (selector < 10) {
    topic = std::string("nova/v1/cloud/") + kCloud[selector - 6] + "/" + text;
  } else if (selector == 10) {
    topic = "nova/v1/down/cloud/" + text + "/ack";
  } else {
    topic = text;
  }
  cloud.service().deliver(topic, payload, retained);
  return 0;
}
