#include "nova/agent/rtt.h"

#include <algorithm>

namespace nova::agent {

void RttEstimator::on_send(std::string_view stream, std::uint64_t seq, Clock::time_point at) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) it = streams_.emplace(std::string(stream), Stream{}).first;
  Stream& s = it->second;
  if (seq <= s.highest_sent) {  // sent again (go-back-N): its ack would be ambiguous (Karn)
    while (!s.timed.empty() && s.timed.back().first >= seq) s.timed.pop_back();
    return;
  }
  s.highest_sent = seq;
  s.timed.emplace_back(seq, at);
  if (s.timed.size() > kMaxTimed) s.timed.pop_front();
}

std::optional<double> RttEstimator::on_ack(std::string_view stream, std::uint64_t watermark, Clock::time_point at) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) return std::nullopt;
  auto& timed = it->second.timed;
  std::optional<Clock::time_point> newest;
  while (!timed.empty() && timed.front().first <= watermark) {
    newest = timed.front().second;
    timed.pop_front();
  }
  if (!newest || at < *newest) return std::nullopt;
  const double ms = std::chrono::duration<double, std::milli>(at - *newest).count();
  samples_.push_back(ms);
  if (samples_.size() > kWindow) samples_.pop_front();
  return ms;
}

std::optional<double> RttEstimator::rtt_ms() const {
  if (samples_.empty()) return std::nullopt;
  return *std::min_element(samples_.begin(), samples_.end());
}

}  // namespace nova::agent
