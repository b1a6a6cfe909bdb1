// Third-party sensor readings, taken in by the node's agent (schemas/topics.md,
// "Third-party sensors").
//
// A sensor publishes a SensorReading, CBOR or JSON, on nova/v1/sensor/<node>/<sensor> at
// the node's local broker. accept() decides the format by the first byte that is not
// JSON whitespace ('{' is JSON, anything else CBOR), decodes it with the schemas codec
// (every limit and error path of the topic API), and either
//   - keeps the reading's values as the latest of "sensor.<sensor>.<name>", or
//   - returns the SensorError to publish on the reading's /error topic, in the reading's
//     own format, naming the field and the reason; the reading is counted and dropped.
// merge_into() adds the latest values to the next metric sample's extra gauges, so
// sensor data goes up inside the durable, acknowledged metrics stream (quantised and
// compressed with everything else), never as raw readings that could be lost.
//
// Pure logic, no I/O; used on the agent's loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "nova/schemas/messages.h"

namespace nova::agent {

struct SensorCounters {
  std::uint64_t accepted = 0;
  std::uint64_t refused = 0;
};

class SensorIngest {
 public:
  // At most this many sensor gauges are kept (the newest win); a sample holds at most
  // 256 extra gauges in all.
  explicit SensorIngest(std::size_t max_gauges = 128) : max_gauges_(max_gauges) {}

  struct Refusal {
    schemas::SensorError error;
    std::string payload;  // the encoded SensorError, JSON or CBOR like the reading
  };
  // nullopt: accepted. Otherwise the error reply to publish.
  std::optional<Refusal> accept(const std::string& sensor, std::string_view payload, schemas::Timestamp now);

  // Adds "sensor.<sensor>.<name>" = latest value to `extra` (never beyond 256 entries)
  // and forgets them: a gauge appears in the samples that follow a reading, not forever.
  void merge_into(std::map<std::string, double>& extra);

  const SensorCounters& counters() const { return counters_; }

 private:
  std::size_t max_gauges_;
  std::map<std::string, double> latest_;
  SensorCounters counters_;
};

}  // namespace nova::agent
