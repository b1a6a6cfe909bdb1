// Quiet when healthy (docs/agent.md, Local decisions): a node-day of an idle, healthy
// host replayed through the DecisionEngine with the default config, by the samples' own
// timestamps (86,400 samples at 1 s, in well under a second). The host is synthetic,
// from a fixed seed: the gauges an idle Linux host reports, with what real idle hosts do
// to them (cron bursts of CPU, softirq blips, the agent's RSS stepping at each batch,
// bursty disk and network rates) and two sensors (a room temperature following the day,
// a humidity reading with noise).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <map>
#include <numbers>
#include <random>

#include "nova/agent/config.h"
#include "nova/agent/decisions.h"

using namespace nova;
using namespace nova::agent;

namespace {

constexpr schemas::Timestamp kT0 = 1732650000000;
constexpr int kDay = 86400;

class IdleHost {
 public:
  explicit IdleHost(std::uint64_t seed) : rng_(seed) {}
  schemas::MetricSample sample(int i) {
    schemas::MetricSample s;
    s.ts = kT0 + static_cast<schemas::Timestamp>(i) * 1000;
    const bool cron = i % 600 < 3;  // a job every 10 minutes, 3 s of work
    s.cpu_pct = (cron ? 25 : 2) + std::abs(normal());
    mem_ = std::clamp(mem_ + 0.01 * normal(), 28.0, 32.0);
    s.mem_pct = mem_;
    s.disk_pct = 50 + 1e-5 * i;  // logs grow
    s.load1 = (cron ? 0.6 : 0.05) + 0.02 * std::abs(normal());
    s.extra["cpu.softirq"] = uniform() < 0.02 ? 1.0 : 0.05 * std::abs(normal());
    s.extra["cpu.steal"] = uniform() < 0.01 ? 1.0 : 0.0;
    s.extra["self.rss_kb"] = 5000 + (i % 60 == 0 ? 300 : 0) + 4 * (i % 60);  // each batch
    s.extra["disk.write_bps"] = i % 60 == 0 || cron ? 2e6 * (1 + uniform()) : 4096 * std::floor(3 * uniform());
    s.extra["net.eth0.rx_bps"] = uniform() < 0.05 ? 5e4 * uniform() : 200 * uniform();
    // A room: 21 degC, 2 degC warmer in the afternoon, read to 0.1 degC.
    const double room = 21 + 2 * std::sin(2 * std::numbers::pi * i / kDay) + 0.05 * normal();
    s.extra["sensor.room.temp"] = std::round(room * 10) / 10;
    s.extra["sensor.room.humidity"] = 45 + 0.5 * normal();
    return s;
  }

 private:
  double uniform() { return (static_cast<double>(rng_() >> 11) + 0.5) * 0x1.0p-53; }
  double normal() { return std::sqrt(-2 * std::log(uniform())) * std::cos(2 * std::numbers::pi * uniform()); }
  std::mt19937_64 rng_;
  double mem_ = 30;
};

// Alerts raised over a node-day, by gauge.
std::map<std::string, int> day_of_alerts(const DecisionOptions& options) {
  DecisionEngine e(options);
  IdleHost host(7);
  std::map<std::string, int> by_gauge;
  std::vector<Firing> out;
  for (int i = 0; i < kDay; ++i) {
    out.clear();
    e.evaluate(host.sample(i), false, out);
    for (const Firing& f : out) ++by_gauge[f.alert.metric];
  }
  return by_gauge;
}

int total(const std::map<std::string, int>& m) {
  int n = 0;
  for (const auto& [gauge, count] : m) n += count;
  return n;
}

}  // namespace

TEST_CASE("a node-day of an idle healthy host raises at most one alert with the default config", "[agent][decisions]") {
  const DecisionOptions defaults = AgentConfig{}.decision_options();
  const auto quiet = day_of_alerts(defaults);
  // What the default was before anomaly.streams: a z-score detector at 4 on every gauge.
  DecisionOptions everywhere = defaults;
  everywhere.streams.clear();
  const auto noisy = day_of_alerts(everywhere);

  std::printf("alerts in a node-day of the idle host: default config %d, z-score on every gauge %d (",
              total(quiet), total(noisy));
  for (const auto& [gauge, count] : noisy) std::printf(" %s %d", gauge.c_str(), count);
  std::printf(" )\n");
  CHECK(total(quiet) <= 1);
  // The same day is not quiet for the detector the default replaced: the replay can tell.
  CHECK(total(noisy) > 100);
  // And the default still sees a sensor that really goes wrong: the room at 35 degC.
  DecisionEngine e(defaults);
  IdleHost host(7);
  std::vector<Firing> out;
  for (int i = 0; i < 1000; ++i) e.evaluate(host.sample(i), false, out);
  REQUIRE(out.empty());
  auto hot = host.sample(1000);
  hot.extra["sensor.room.temp"] = 35;
  e.evaluate(hot, false, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].alert.metric == "sensor.room.temp");
}
