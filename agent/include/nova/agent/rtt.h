// Round-trip time through the hierarchy, measured on the end-to-end ack path.
//
// A record's round trip is the time from publishing it to receiving the cloud's ack
// that covers it: agent -> site broker -> every bridge up -> nova-cloud (group, durable
// write) -> the ack back down the same bridges. That is the path placement cares about
// (a workload's inputs and outputs travel it), and it costs nothing: the records and
// acks are sent anyway. Why not a ping from the cloud: it would need a new down and up
// kind through every broker's ACL, and would measure the same path.
//
// Samples. An ack with watermark w covers every record of its stream up to w; the sample
// is the time since the newest of them was first sent (the tightest bound). Karn's rule:
// a record sent again (go-back-N, a new session) is ambiguous, so only first sends are
// timed: sending a seq at or below the highest already sent forgets the timings from
// that seq on, and those records are not timed again.
//
// Estimate. The minimum of the last kWindow samples. Everything that is not the path --
// nova-cloud waiting for its ingest group and syncing its store, queueing behind a
// backlog -- only adds to a sample, so a minimum filter removes it (as BBR's min_rtt).
// A count window follows a real change after kWindow samples (one ack per metrics batch
// at least, more with results and alerts); an EWMA on top (TCP's SRTT) would only
// delay it further, and a minimum already does not jitter.
//
// Pure logic: the caller passes the clock. Memory is bounded: at most kMaxTimed sends
// are remembered per stream (older ones are forgotten untimed).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace nova::agent {

class RttEstimator {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kWindow = 4;
  static constexpr std::size_t kMaxTimed = 256;

  // Record `seq` of `stream` was published at `at`.
  void on_send(std::string_view stream, std::uint64_t seq, Clock::time_point at);
  // An ack covering `stream` up to `watermark` arrived at `at`; returns the sample taken,
  // if any.
  std::optional<double> on_ack(std::string_view stream, std::uint64_t watermark, Clock::time_point at);
  // The estimate in ms; nullopt before the first sample.
  std::optional<double> rtt_ms() const;

 private:
  struct Stream {
    std::uint64_t highest_sent = 0;
    std::deque<std::pair<std::uint64_t, Clock::time_point>> timed;  // seq order
  };
  std::map<std::string, Stream, std::less<>> streams_;
  std::deque<double> samples_;  // the last kWindow, oldest first
};

}  // namespace nova::agent
