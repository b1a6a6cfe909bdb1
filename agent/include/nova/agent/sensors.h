// Third-party sensor readings, taken in by the node's agent (schemas/topics.md,
// "Third-party sensors").
//
// A sensor publishes a SensorReading, CBOR or JSON, on nova/v1/sensor/<node>/<sensor> at
// the node's local broker. SensorIngest::accept() decides the format by the first byte
// that is not JSON whitespace ('{' is JSON, anything else CBOR), decodes it with the
// schemas codec (every limit and error path of the topic API), and either
//   - keeps the reading's values as the latest of gauge "sensor.<sensor>.<name>", or
//   - returns the SensorError to publish on the reading's /error topic, in the reading's
//     own format, naming the field and the reason; the reading is counted and dropped.
// merge_into() adds the latest values to the next metric sample's extra gauges, so
// sensor data goes up inside the durable, acknowledged metrics stream (quantised and
// compressed with everything else), never as raw readings that could be lost.
//
// Nothing accepted may become undeliverable: a reading is accepted only if every value
// fits the batch it will travel in, so a refused reading is refused here, with a reply,
// never downstream with the whole batch. Concretely a reading is refused (field, reason)
// when
//   - it does not decode: field is the member's path ("reading.values.temp"), or "" when
//     the payload as a whole is at fault (not a well-formed JSON/CBOR document, too
//     large, or not a map);
//   - a gauge name "sensor.<sensor>.<name>" would not be an id (over 64 bytes):
//     field "reading.values.<name>";
//   - it would take its sensor past max_gauges_per_sensor gauges, or all sensors past
//     max_gauges, waiting for the next sample: field "reading.values". A sensor's share
//     holds a whole reading (32 values), so one noisy sensor cannot crowd out others.
// Every reply is valid for its schema: field and reason are valid UTF-8 (bytes quoted
// from the input are escaped as \xNN) and cut to the schema's sizes.
//
// Personal data (docs/agent.md, "Personal data"): a PrivacyPolicy marks values of a
// sensor, or every value of it, personal. A personal value never goes into a sample as
// read: its readings are folded into a window of PrivacyPolicy::window, and only when the
// window has passed do four derived gauges go up, "sensor.<sensor>.<name>.count",
// ".mean", ".min" and ".max" (the readings in the window, their mean, least and greatest
// value). A window of fewer than PrivacyPolicy::min_readings readings sends its count
// only: the mean of one reading is that reading. The personal value's own gauge "sensor.<sensor>.<name>" is never written. A
// window open for a personal value counts four gauges against the limits above, and its
// gauge names (the longest is ".count") must be ids too (else the reading is refused
// naming the value).
//
// SensorReplies queues those replies for the agent's loop: every refused reading gets
// its reply unless its sensor already has max_per_sensor replies waiting (then the
// newest is dropped and counted), and waiting replies go out one sensor at a time in
// turn, so a noisy sensor's backlog does not delay a quiet sensor's reply.
//
// Pure logic, no I/O; used on the agent's loop thread only.
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>

#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::agent {

struct SensorCounters {
  std::uint64_t accepted = 0;
  std::uint64_t refused = 0;
};

// Which sensor values are personal, from the agent's privacy.personal items:
// "<sensor>" marks every value of that sensor, "<sensor>/<value>" one value ('/' is
// never part of an id, so the two cannot be confused).
struct PrivacyPolicy {
  std::map<std::string, std::set<std::string>> personal;  // sensor -> values; empty: all
  schemas::Timestamp window_ms = 60'000;                   // one aggregate per window
  std::uint64_t min_readings = 3;                          // fewer in a window: count only

  bool is_personal(const std::string& sensor, const std::string& value) const;
  // The policy of `items`; the error names the item ("item 2: ...").
  static schemas::Result<PrivacyPolicy> parse(std::span<const std::string> items, schemas::Timestamp window_ms,
                                              std::uint64_t min_readings);
};
// Why `item` is not "<sensor>" or "<sensor>/<value>" with both parts ids; nullopt: it is.
std::optional<std::string> personal_item_problem(std::string_view item);

class SensorIngest {
 public:
  // Gauges kept between two samples: at most max_gauges in all (a sample holds at most
  // 256 extra gauges in all), at most max_gauges_per_sensor for one sensor.
  explicit SensorIngest(std::size_t max_gauges = 128, std::size_t max_gauges_per_sensor = 32,
                        PrivacyPolicy privacy = {})
      : max_gauges_(max_gauges), max_gauges_per_sensor_(max_gauges_per_sensor), privacy_(std::move(privacy)) {}

  struct Refusal {
    schemas::SensorError error;
    std::string payload;  // the encoded SensorError, JSON or CBOR like the reading
  };
  // nullopt: accepted (and the decoded reading moved to `*accepted`, when given: the
  // agent's pipelines take it at arrival). Otherwise the error reply to publish. Never
  // throws on any payload.
  std::optional<Refusal> accept(const std::string& sensor, std::string_view payload, schemas::Timestamp now,
                                schemas::SensorReading* accepted = nullptr);

  // Adds "sensor.<sensor>.<name>" = latest value to `extra` (never beyond 256 entries)
  // and forgets them: a gauge appears in the samples that follow a reading, not forever.
  // Adds the aggregates of the personal windows that have passed by `now` (the default
  // closes every window) and forgets those windows.
  void merge_into(std::map<std::string, double>& extra,
                  schemas::Timestamp now = std::numeric_limits<schemas::Timestamp>::max());

  // Drops what waits of `sensor` (nullopt: of every sensor), latest values and personal
  // windows, for an erasure; returns how many gauges were dropped.
  std::uint64_t forget(const std::optional<std::string>& sensor);

  const SensorCounters& counters() const { return counters_; }

 private:
  // The readings of one personal value in its window.
  struct Window {
    std::string sensor;
    schemas::Timestamp opened = 0;
    std::uint64_t count = 0;
    double sum = 0, min = 0, max = 0;
  };
  static constexpr std::size_t kGaugesPerWindow = 4;  // count, mean, min, max
  std::size_t gauges_waiting() const { return latest_.size() + kGaugesPerWindow * windows_.size(); }

  std::size_t max_gauges_;
  std::size_t max_gauges_per_sensor_;
  PrivacyPolicy privacy_;
  std::map<std::string, double> latest_;
  std::map<std::string, Window> windows_;         // by the personal value's gauge name
  std::map<std::string, std::size_t> gauges_of_;  // per sensor: its gauges in latest_ and windows_
  SensorCounters counters_;
};

// The SensorError a refused reading gets, valid for sensor.cddl whatever the input
// quoted into it: field and reason made valid UTF-8 and cut to the schema's sizes (field
// at most 256 bytes, reason 1 to 4096), encoded as JSON or CBOR.
SensorIngest::Refusal sensor_refusal(const std::string& sensor, schemas::Timestamp now, std::string_view field,
                                     std::string_view reason, bool json);

class SensorReplies {
 public:
  explicit SensorReplies(std::size_t max_per_sensor = 256) : max_per_sensor_(max_per_sensor) {}

  struct Reply {
    std::string topic;
    std::string payload;
  };
  // Queues a reply to `sensor`; false (and counted in dropped()) when that sensor
  // already has max_per_sensor replies waiting.
  bool push(const std::string& sensor, Reply reply);
  // The next reply to send, taking sensors in turn; nullptr when none waits. Stays
  // first until pop() (a publish that fails is tried again later).
  const Reply* next() const;
  void pop();

  std::size_t waiting() const { return waiting_; }
  std::uint64_t dropped() const { return dropped_; }

 private:
  std::size_t max_per_sensor_;
  std::map<std::string, std::deque<Reply>> queues_;
  std::string turn_;  // the sensor whose reply goes next (round robin by id)
  std::size_t waiting_ = 0;
  std::uint64_t dropped_ = 0;
};

}  // namespace nova::agent
