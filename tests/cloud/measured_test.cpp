// Measured placement signals (cloud/include/nova/cloud/measured.h): pure logic, a
// hand-driven clock.
#include <catch2/catch.hpp>

#include "nova/cloud/measured.h"

using namespace nova;
using namespace nova::cloud;

namespace {

constexpr Timestamp kMin = 60'000;
constexpr Timestamp kHour = 60 * kMin;

schemas::MetricSample sample(Timestamp ts, std::map<std::string, double> extra) {
  schemas::MetricSample s;
  s.ts = ts;
  s.extra = std::move(extra);
  return s;
}

}  // namespace

TEST_CASE("a node measured below the tree estimate keeps the estimate and one above adds the excess",
          "[measured]") {
  CHECK(latency_excess_ms(std::nullopt, 36.5) == 0);
  CHECK(latency_excess_ms(20.0, 36.5) == 0);  // loopback: faster than the typical figures
  CHECK(latency_excess_ms(273.0, 36.5) == Approx(100.0));  // 136.5 one way, 100 over
}

TEST_CASE("stability is the share of the last 10 min alive and reliability waits for an hour observed",
          "[measured]") {
  NodeMeasures m;
  const Timestamp t0 = 1'000 * kHour;
  CHECK_FALSE(m.of("n", t0).stability.has_value());  // never seen
  m.observe_liveness("n", Liveness::alive, t0);
  CHECK_FALSE(m.of("n", t0).stability.has_value());  // nothing observed yet
  CHECK(*m.of("n", t0 + kMin).stability == Approx(1.0));
  // Dead for 2 of the next 8 minutes.
  m.observe_liveness("n", Liveness::dead, t0 + 4 * kMin);
  m.observe_liveness("n", Liveness::alive, t0 + 6 * kMin);
  CHECK(*m.of("n", t0 + 10 * kMin).stability == Approx(0.8));
  CHECK_FALSE(m.of("n", t0 + 10 * kMin).reliability.has_value());
  // Unreachable (a link down above it) counts as down too.
  m.observe_liveness("n", Liveness::unreachable, t0 + 20 * kMin);
  m.observe_liveness("n", Liveness::alive, t0 + 25 * kMin);
  CHECK(*m.of("n", t0 + 30 * kMin).stability == Approx(0.5));
  // After an hour: the share of it alive (7 min down).
  const Measured after = m.of("n", t0 + kHour);
  REQUIRE(after.reliability.has_value());
  CHECK(*after.reliability == Approx(53.0 / 60));
  CHECK(*after.stability == Approx(1.0));  // the last 10 min were clean
  // The reliability window is 24 h: old outages fall out of it.
  CHECK(*m.of("n", t0 + 25 * kHour).reliability == Approx(1.0));
}

TEST_CASE("offline hours are the outbox headroom at the node's upward byte rate up to a cap", "[measured]") {
  NodeMeasures m;
  const Timestamp t0 = 1'000 * kHour;
  CHECK_FALSE(m.of("n", t0).offline_hours.has_value());
  // 64 MiB cap, 4 MiB used, 1 MiB appended per minute: 60 MiB / 60 MiB per hour = 1 h.
  const double mib = 1024.0 * 1024;
  for (Timestamp i = 0; i <= 5; ++i) {
    m.observe_sample("n", sample(t0 + i * kMin, {{"agent.outbox_max_bytes", 64 * mib},
                                                  {"agent.outbox_bytes", 4 * mib},
                                                  {"agent.outbox_appended_bytes", static_cast<double>(i) * mib}}));
  }
  REQUIRE(m.of("n", t0 + 5 * kMin).offline_hours.has_value());
  CHECK(*m.of("n", t0 + 5 * kMin).offline_hours == Approx(1.0));
  // The agent restarted (its counter went back) and sends nothing: the cap.
  m.observe_sample("n", sample(t0 + 6 * kMin, {{"agent.outbox_max_bytes", 64 * mib},
                                               {"agent.outbox_bytes", 4 * mib},
                                               {"agent.outbox_appended_bytes", 0}}));
  CHECK_FALSE(m.of("n", t0 + 6 * kMin).offline_hours.has_value());  // one sample: no rate yet
  m.observe_sample("n", sample(t0 + 7 * kMin, {{"agent.outbox_max_bytes", 64 * mib},
                                               {"agent.outbox_bytes", 4 * mib},
                                               {"agent.outbox_appended_bytes", 0}}));
  CHECK(*m.of("n", t0 + 7 * kMin).offline_hours == Approx(168.0));
}

TEST_CASE("rtt power and throttling come from the latest sample and fill the candidate", "[measured]") {
  NodeMeasures m;
  schemas::MetricSample s = sample(1000, {{"agent.rtt_ms", 42}, {"power.on_battery", 1}, {"power.battery_pct", 30}});
  s.throttled = true;
  m.observe_sample("n", s);
  m.observe_liveness("n", Liveness::alive, 1000);
  const Measured got = m.of("n", 2000);
  CHECK(got.rtt_ms == std::optional<double>(42));
  CHECK(got.on_battery);
  CHECK(got.power_headroom == Approx(0.3));
  CHECK(got.throttled);
  tiers::Candidate c;
  apply(got, c);
  CHECK(c.power == tiers::PowerSource::battery);
  CHECK(c.power_headroom == Approx(0.3));
  CHECK(c.thermal_throttled);
  CHECK(c.connection_stability == Approx(1.0));
  CHECK_FALSE(c.reliability.has_value());
  CHECK(c.offline_hours == 24);  // not measured: no penalty
  // Back on mains: the headroom is whole again.
  m.observe_sample("n", sample(3000, {{"power.on_battery", 0}, {"power.battery_pct", 31}}));
  CHECK_FALSE(m.of("n", 3000).on_battery);
  CHECK(m.of("n", 3000).power_headroom == 1.0);
  CHECK(m.of("n", 3000).rtt_ms == std::optional<double>(42));  // kept until measured again
}
