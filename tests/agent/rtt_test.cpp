// The ack-path round-trip estimator (agent/include/nova/agent/rtt.h): pure logic, a
// hand-driven clock.
#include <catch2/catch.hpp>

#include "nova/agent/rtt.h"

using nova::agent::RttEstimator;
using namespace std::chrono_literals;

namespace {
const RttEstimator::Clock::time_point t0{};
}

TEST_CASE("an ack samples the time since the newest record it covers was sent", "[rtt]") {
  RttEstimator e;
  CHECK_FALSE(e.rtt_ms().has_value());
  e.on_send("metrics", 1, t0);
  e.on_send("metrics", 2, t0 + 30ms);
  e.on_send("metrics", 3, t0 + 60ms);
  // Covers 1 and 2: timed from 2's send.
  REQUIRE(e.on_ack("metrics", 2, t0 + 80ms) == std::optional<double>(50.0));
  CHECK(e.rtt_ms() == std::optional<double>(50.0));
  // An ack that covers nothing new, or another stream's, gives no sample.
  CHECK_FALSE(e.on_ack("metrics", 2, t0 + 90ms).has_value());
  CHECK_FALSE(e.on_ack("alerts", 5, t0 + 90ms).has_value());
  REQUIRE(e.on_ack("metrics", 3, t0 + 100ms) == std::optional<double>(40.0));
  CHECK(e.rtt_ms() == std::optional<double>(40.0));
}

TEST_CASE("a record sent again is not timed (Karn)", "[rtt]") {
  RttEstimator e;
  e.on_send("metrics", 1, t0);
  e.on_send("metrics", 2, t0);
  CHECK(e.on_ack("metrics", 1, t0 + 10ms) == std::optional<double>(10.0));
  // Go-back-N: 2 goes out again; its ack could answer either send, so it is not timed.
  e.on_send("metrics", 2, t0 + 500ms);
  CHECK_FALSE(e.on_ack("metrics", 2, t0 + 510ms).has_value());
  // A record sent once after it is timed again.
  e.on_send("metrics", 3, t0 + 600ms);
  CHECK(e.on_ack("metrics", 3, t0 + 615ms) == std::optional<double>(15.0));
  CHECK(e.rtt_ms() == std::optional<double>(10.0));
}

TEST_CASE("the estimate is the minimum of the last four samples", "[rtt]") {
  RttEstimator e;
  std::uint64_t seq = 0;
  auto round = [&](std::chrono::milliseconds rtt) {
    const auto sent = t0 + std::chrono::seconds(seq);
    e.on_send("metrics", ++seq, sent);
    return e.on_ack("metrics", seq, sent + rtt);
  };
  round(20ms);
  round(90ms);  // the cloud's disk was slow: filtered out
  round(25ms);
  CHECK(e.rtt_ms() == std::optional<double>(20.0));
  // The path became slower: after four samples the estimate follows.
  for (int i = 0; i < 3; ++i) {
    round(200ms);
    CHECK(*e.rtt_ms() < 100);
  }
  round(210ms);
  CHECK(e.rtt_ms() == std::optional<double>(200.0));
}
