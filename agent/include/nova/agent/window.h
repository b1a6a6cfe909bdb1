// Windows over one stream of timestamped values, by event time (docs/agent.md,
// "Pipelines", "Windows and late readings").
//
//   tumbling  windows [k*size, (k+1)*size): each value is in exactly one.
//   hopping   windows of `size` starting every `hop` (hop < size): each value is in
//             size/hop of them.
//   sliding   one window per value: the values in (ts - size, ts] of the newest value
//             seen, emitted as each value arrives.
//
// Watermark and lateness: the watermark is the greatest event time seen minus
// `lateness_ms`. A value older than the watermark is late: it is dropped and counted
// (late()), never folded into a window that was already emitted. Values out of order
// but not late go into their own windows. A tumbling or hopping window is emitted once
// the watermark reaches its end, with the window's end as its event time; so a window
// closes when a reading at least `lateness_ms` past its end arrives, never by the wall
// clock (a stream that goes quiet keeps its last window open).
//
// Aggregates of a window: count, sum, mean, min, max, stddev (population), and the
// percentiles p50, p90, p95, p99 (nearest rank) over at most `max_values` values; a
// window holding more keeps the first `max_values` for its percentiles (counted in
// truncated()), while count, sum, mean, min, max and stddev stay exact.
//
// Pure logic, no I/O, no clock; used on one thread.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "nova/schemas/messages.h"

namespace nova::agent {

// What a pipeline stage knows about one event: the reading's value, a window's
// aggregates, the anomaly stage's verdict.
enum class Field : std::uint8_t {
  value, count, sum, mean, min, max, stddev, p50, p90, p95, p99, score, anomalous,
};
inline constexpr std::size_t kFieldCount = 13;
std::string_view field_name(Field f);
std::optional<Field> field_named(std::string_view name);

// One event between stages: an event time and the fields it has.
struct Event {
  schemas::Timestamp ts = 0;
  std::array<double, kFieldCount> values{};
  std::uint16_t present = 0;  // bit per Field

  void set(Field f, double v) {
    values[static_cast<std::size_t>(f)] = v;
    present = static_cast<std::uint16_t>(present | (1u << static_cast<unsigned>(f)));
  }
  bool has(Field f) const { return (present >> static_cast<unsigned>(f)) & 1u; }
  double get(Field f) const { return values[static_cast<std::size_t>(f)]; }
};

struct WindowSpec {
  enum class Kind : std::uint8_t { none, tumbling, hopping, sliding };
  Kind kind = Kind::none;
  std::uint64_t size_ms = 10'000;
  std::uint64_t hop_ms = 0;        // hopping only: 1..size_ms-1
  std::uint64_t lateness_ms = 0;   // allowed lateness behind the newest event time
  std::uint32_t max_values = 4096; // values kept per window for percentiles
  friend bool operator==(const WindowSpec&, const WindowSpec&) = default;
};

class Window {
 public:
  explicit Window(const WindowSpec& spec) : spec_(spec) {}

  // Adds a value at event time `ts`; appends the windows it closes to `out`. False: it
  // was late, dropped and counted.
  bool add(schemas::Timestamp ts, double value, std::vector<Event>& out);

  std::uint64_t late() const { return late_; }
  std::uint64_t truncated() const { return truncated_; }
  // The watermark now (0 before any value).
  schemas::Timestamp watermark() const;

 private:
  struct Acc {
    std::uint64_t count = 0;
    double mean = 0, m2 = 0, sum = 0, min = 0, max = 0;
    std::vector<double> values;
  };
  void fold(Acc& a, double v);
  Event emit(Acc& a, schemas::Timestamp end);
  void add_sliding(schemas::Timestamp ts, double value, std::vector<Event>& out);

  WindowSpec spec_;
  std::optional<schemas::Timestamp> newest_;
  std::map<schemas::Timestamp, Acc> open_;  // tumbling, hopping: by window start
  std::deque<std::pair<schemas::Timestamp, double>> recent_;  // sliding: by event time
  Acc scratch_;
  std::uint64_t late_ = 0;
  std::uint64_t truncated_ = 0;
};

}  // namespace nova::agent
