// Fully populated and minimal instances of every topic-API message, for tests.
#pragma once

#include <cmath>
#include <limits>

#include "nova/schemas/messages.h"

namespace nova::test {

using namespace nova::schemas;

inline MetricSample sample_at(std::uint64_t i) {
  MetricSample s;
  s.ts = 1732650000000 + i * 1000;
  s.cpu_pct = 12.5 + static_cast<double>(i % 7);
  s.mem_pct = 41.25;
  s.disk_pct = 63.0;
  s.load1 = 0.42 + static_cast<double>(i) / 100.0;
  s.net_rx_bps = 1200.0 + static_cast<double>(i);
  s.net_tx_bps = 800.5;
  if (i % 2 == 0) s.temp_c = 48.5;
  if (i % 3 == 0) s.throttled = false;
  if (i % 5 == 0) s.power_w = 3.2;
  if (i % 4 == 0) s.extra = {{"cpu.iowait", 0.5}, {"disk.read_bps", 4096.0}};
  return s;
}

inline MetricsBatch batch_of(std::size_t n, BatchEncoding enc) {
  MetricsBatch b;
  b.position = {"gw-01", "metrics", 42};
  b.encoding = enc;
  for (std::size_t i = 0; i < n; ++i) b.samples.push_back(sample_at(i));
  return b;
}

// full<T>(): every optional field present; minimal<T>(): only what is required.
template <class T> T full();
template <class T> T minimal();

template <> inline NodeState full<NodeState>() {
  return NodeState{"gw-01", NodeStatus::online, 7, 1732650000000,
                   NodeDescription{4, "cloud/eu/par/acc-01", "aarch64", "0.1.0",
                                   {"arm64", "gpu"}, {4000, 2048, 16000}, "eu-west"},
                   {"nova/v1/sensor/gw-01/#"}, 1732650000123, 7};
}
template <> inline NodeState minimal<NodeState>() {
  return NodeState{"gw-01", NodeStatus::dead, 7, 1732650000000, std::nullopt, {}, std::nullopt, std::nullopt};
}

template <> inline MetricsBatch full<MetricsBatch>() { return batch_of(60, BatchEncoding::zstd); }
template <> inline MetricsBatch minimal<MetricsBatch>() { return batch_of(1, BatchEncoding::plain); }

template <> inline SensorReading full<SensorReading>() {
  return SensorReading{1732650000000, 991, {{"temp", 21.5}, {"humidity", 40.125}}, "degC"};
}
template <> inline SensorReading minimal<SensorReading>() {
  return SensorReading{1732650000000, std::nullopt, {{"temp", -3.0}}, std::nullopt};
}

template <> inline SensorError full<SensorError>() {
  return SensorError{"s1", 1732650000000, "reading.values.temp", "expected float, got text string"};
}
template <> inline SensorError minimal<SensorError>() {
  return SensorError{"s1", 1732650000000, "", "invalid JSON"};
}

template <> inline Task full<Task>() {
  return Task{"t-1", "w-9", {"/bin/sh", "-c", "echo héllo"}, {{"MODE", "fast"}},
              30000, 256, 500, 2, 1732650000000,
              ServiceSpec{RestartPolicy::on_failure, HealthCheck{{"/bin/true"}, 2, 1, 4, 7}}};
}
template <> inline Task minimal<Task>() {
  return Task{"t-2", std::nullopt, {"true"}, {}, 1000, 0, 0, 5, 1732650000000, std::nullopt};
}

template <> inline TaskResult full<TaskResult>() {
  return TaskResult{{"gw-01", "results", 3}, "t-1", TaskStatus::killed, -9,
                    1732650000000, 1732650001234, "partial output\n", "memory limit",
                    ServiceStatus{ServiceState::unhealthy, 7, -9, 2}};
}
template <> inline TaskResult minimal<TaskResult>() {
  return TaskResult{{"gw-01", "results", 4}, "t-2", TaskStatus::refused, std::nullopt,
                    std::nullopt, 1732650000000, "", std::nullopt, std::nullopt};
}

template <> inline DecisionRecord full<DecisionRecord>() {
  return DecisionRecord{{"gw-01", "decisions", 1}, "d-1", 1732650000000, "task_priority",
                        {{"cpu", 93.0}, {"queue", 12.0}}, "defer t-7", 0.85, true, "d-0", "t-7"};
}
template <> inline DecisionRecord minimal<DecisionRecord>() {
  return DecisionRecord{{"gw-01", "decisions", 2}, "d-2", 1732650000000, "alert", {}, "raise", 1.0, false, std::nullopt, std::nullopt};
}

template <> inline DecisionVerdict full<DecisionVerdict>() {
  return DecisionVerdict{"d-1", "gw-01", Verdict::overridden, "cloud prefers migration", 1732650005000,
                         "cpu", 80.0, 85.0};
}
template <> inline DecisionVerdict minimal<DecisionVerdict>() {
  return DecisionVerdict{"d-2", "gw-01", Verdict::accepted, std::nullopt, 1732650005000,
                         std::nullopt, std::nullopt, std::nullopt};
}

template <> inline Alert full<Alert>() {
  return Alert{{"gw-01", "alerts", 5}, "a-1", 1732650000000, Severity::critical, "cpu",
               97.5, 90.0, "CPU above 90 % for 60 s"};
}
template <> inline Alert minimal<Alert>() {
  return Alert{{"gw-01", "alerts", 6}, "a-2", 1732650000000, Severity::info, "temp",
               21.0, -std::numeric_limits<double>::infinity(), ""};
}

template <> inline Config full<Config>() {
  return Config{12, 1732650000000,
                {{"metrics.interval_s", std::int64_t{1}}, {"outbox.max_bytes", std::int64_t{67108864}},
                 {"limits.max_cpu_pct", 80.0}, {"log.level", std::string("info")},
                 {"tasks.enabled", true}, {"drift", std::int64_t{-5}}}};
}
template <> inline Config minimal<Config>() { return Config{1, 1732650000000, {}}; }

template <> inline Model full<Model>() {
  return Model{"anomaly", 3, "linear", {{"bias", 0.1}, {"z", 3.0}}, {0.5, -1.25, 2.0}, 1732650000000};
}
template <> inline Model minimal<Model>() { return Model{"anomaly", 1, "zscore", {}, {}, 1732650000000}; }

template <> inline Ack full<Ack>() {
  return Ack{"gw-01", 1732650000000, {{"metrics", 5000000000}, {"results", 3}}};
}
template <> inline Ack minimal<Ack>() { return Ack{"gw-01", 1732650000000, {{"metrics", 1}}}; }

template <> inline WorkloadSpec full<WorkloadSpec>() {
  return WorkloadSpec{"w-9", "vision inference", {"/usr/bin/infer", "--model", "m1"},
                      {1500, 512, 2048}, LatencyBound{20, "cam-3"}, {"gpu", "arm64"},
                      {3, 4}, "eu-west", 0.999, {"edge-eu"}, {"edge-us"}, 60000,
                      WorkloadKind::service, 3, RestartPolicy::never, HealthCheck{{"/bin/true", "x"}, 9, 8, 7, 6}};
}
template <> inline WorkloadSpec minimal<WorkloadSpec>() {
  return WorkloadSpec{"w-1", "", {"true"}, {100, 16, 0}, std::nullopt, {}, {}, std::nullopt,
                      0.9, {}, {}, 1000, WorkloadKind::task, 1, std::nullopt, std::nullopt};
}

template <> inline Placement full<Placement>() {
  return Placement{"w-9", "gw-01", "cloud/eu/par/acc-01", 87.25,
                   {90.0, 80.0, 100.0, 75.0, 88.5}, 4, 1732650000000, {"gw-02", "metro-1"}};
}
template <> inline Placement minimal<Placement>() {
  return Placement{"w-1", "gw-01", "cloud", 50.0, {50, 50, 50, 50, 50}, 1, 1732650000000, {}};
}

template <> inline ClusterRecord full<ClusterRecord>() {
  return ClusterRecord{"edge-eu", "EU edge", ClusterRole::secondary, "cloud/eu",
                       "https://edge-eu.example/api", {"edge_computing", "gpu"},
                       {{"failover", "within-cluster"}}, "eu-west"};
}
template <> inline ClusterRecord minimal<ClusterRecord>() {
  return ClusterRecord{"core", "core", ClusterRole::primary, std::nullopt, std::nullopt, {}, {}, std::nullopt};
}

}  // namespace nova::test
