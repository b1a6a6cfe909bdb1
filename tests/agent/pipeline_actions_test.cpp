// What the agent does with its rules' decisions, without a broker (Agent::deliver): each
// action carried out through the real task runner (a real /bin/sleep paused, resumed,
// reprioritised and stopped), the alert stream, the cache hook; each decision recorded in
// the outbox with its inputs, offline set, and an action that cannot be carried out
// (publish, with no broker) recorded as failed.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "nova/agent/agent.h"
#include "nova/schemas/codec.h"
#include "nova/testing/signer.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kRules = R"(
- name: out
  input: {sensor: s, value: v}
  outputs: [outbox]
- name: act
  input: {sensor: s, value: v}
  rules:
    - {name: pause, when: "value > 10", action: {do: pause_task, target: t1}, on_clear: {do: resume_task, target: t1}}
    - {name: prio, when: "value > 20", action: {do: set_task_priority, target: t2, priority: 1}}
    - {name: alarm, when: "value > 30", action: {do: raise_alert, target: sensor.s.v, severity: critical}}
    - {name: hush, when: "value > 40", action: {do: suppress_alert, target: sensor.s}}
    - {name: shout, when: "value > 50", action: {do: raise_alert, target: sensor.s.w}}
    - {name: move, when: "value > 60", action: {do: request_migration, target: w1}}
    - {name: light, when: "value > 70", action: {do: publish, target: lamp, payload: "on"}}
    - {name: evict, when: "value > 80", action: {do: evict_cache, target: img.}}
    - {name: stop, when: "value > 90", action: {do: stop_task, target: t1}}
)";

// The state letter of /proc/<pid>/stat: 'T' stopped, 'S' sleeping, ...
char state_of(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  const auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

schemas::Task sleeper(const std::string& id) {
  schemas::Task t;
  t.task_id = id;
  t.argv = {"/bin/sleep", "30"};
  t.timeout_ms = 60'000;
  t.issued_ts = static_cast<schemas::Timestamp>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  return t;
}

}  // namespace

TEST_CASE("rule actions pause and resume and reprioritise and stop tasks and raise and suppress alerts and are recorded",
          "[agent][pipelines]") {
  const fs::path dir = fs::temp_directory_path() / ("nova-actions-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  {
    agent::TaskRunnerOptions to;
    to.dir = dir / "tasks";
    to.total_memory_mb = 16384;
    to.cpu_cores = 4;
    to.sync = false;
    to.kill_grace_ms = 2000;
    to.allow = {"/bin/sleep"};
    std::vector<schemas::TaskResult> results;
    auto runner = agent::TaskRunner::open(to, [&](const schemas::TaskResult& r) { results.push_back(r); });
    REQUIRE(runner.ok());
    agent::TaskRunner& tasks = *runner.value();
    tasks.set_max_concurrent(1);
    REQUIRE(tasks.submit(sleeper("t1")).ok());
    REQUIRE(tasks.submit(sleeper("t2")).ok());  // waits: one at a time
    const agent::HostState roomy{0, 0, 0, 16384};
    tasks.poll(1, roomy);
    REQUIRE(tasks.running().size() == 1);
    const int pid = tasks.running().front().pid;

    agent::AgentOptions o;
    o.birth.node = "gw-1";
    o.birth.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
    o.broker_uri = "tcp://127.0.0.1:1";  // never reached: run() is not called, so offline
    o.outbox.dir = dir / "outbox";
    o.state_dir = dir / "state";
    o.control.keys = {testing::test_signer().verify_key()};
    o.tasks = &tasks;
    o.pipelines = agent::parse_pipelines(kRules).value();
    std::vector<std::string> evicted;
    o.evict_cache = [&](const std::string& prefix) {
      evicted.push_back(prefix);
      return std::uint64_t{3};
    };
    auto created = agent::Agent::create(std::move(o), nullptr);
    REQUIRE(created.ok());
    agent::Agent& a = *created.value();
    auto reading = [&](schemas::Timestamp ts, double v) {
      a.deliver("nova/v1/sensor/gw-1/s", R"({"v":1,"ts":)" + std::to_string(ts) + R"(,"values":{"v":)" + std::to_string(v) + "}}");
    };

    reading(1000, 15);  // pause fires
    CHECK(state_of(pid) == 'T');
    reading(2000, 5);   // pause clears: resume
    CHECK(state_of(pid) != 'T');
    CHECK(a.counters().pipeline_decisions == 2);

    reading(3000, 95);  // every rule fires
    const agent::AgentCounters c = a.counters();
    CHECK(c.pipeline_readings == 6);  // three readings, each into both pipelines
    CHECK(c.pipeline_decisions == 11);
    CHECK(c.alerts == 1);             // alarm; shout's is suppressed by hush
    CHECK(c.alerts_suppressed == 1);
    CHECK(c.pipeline_actions_failed == 1);  // light: no broker to publish to
    CHECK(c.decisions_offline == 11);
    CHECK(evicted == std::vector<std::string>{"img."});
    REQUIRE(tasks.queued().size() == 1);
    CHECK(tasks.queued().front().priority == 1);  // prio
    // stop: t1 was paused again, and is cancelled (SIGTERM, then SIGCONT so it can act on it).
    for (int i = 0; i < 100 && results.empty(); ++i) {
      tasks.poll(2, roomy);
      std::this_thread::sleep_for(50ms);
    }
    REQUIRE_FALSE(results.empty());
    CHECK(results.front().task_id == "t1");
    CHECK(results.front().status == schemas::TaskStatus::cancelled);

    // The records: one per decision, in order, with the rule's operand and what happened.
    auto stored = a.outbox().read("decisions", 0, 100);
    REQUIRE(stored.ok());
    REQUIRE(stored->size() == 11);
    std::vector<std::string> actions;
    for (const auto& r : *stored) {
      auto d = schemas::decode_cbor<schemas::DecisionRecord>(r.payload);
      REQUIRE(d.ok());
      CHECK(d->offline);
      CHECK(d->kind.starts_with("rule."));
      CHECK(d->inputs.count("value") == 1);
      CHECK(d->inputs.count("failed") == (d->kind == "rule.light" ? 1u : 0u));
      actions.push_back(d->action);
    }
    CHECK(actions == std::vector<std::string>{"pause_task", "resume_task", "pause_task", "set_task_priority",
                                              "raise_alert", "suppress_alert", "raise_alert", "request_migration",
                                              "publish", "evict_cache", "stop_task"});

    // The samples that follow carry the outbox output and the analytics gauges.
    schemas::MetricSample sample;
    sample.ts = 10'000;
    a.add_sample(sample);
    sample.ts = 11'000;
    a.add_sample(sample);
    a.flush_batch();
    auto batches = a.outbox().read("metrics", 0, 10);
    REQUIRE(batches.ok());
    REQUIRE(batches->size() == 1);
    auto batch = schemas::decode_cbor<schemas::MetricsBatch>(batches->front().payload);
    REQUIRE(batch.ok());
    REQUIRE(batch->samples.size() == 2);
    const auto& first = batch->samples[0].extra;
    CHECK(first.at("pipeline.out.s.v.value") == 95);  // the stream's latest event
    CHECK(first.count("agent.pipeline.latency_p50_us") == 1);  // three readings came before it
    CHECK(first.count("agent.pipeline.latency_p99_us") == 1);
    CHECK(first.at("agent.pipeline.decisions_offline") == 11);
    CHECK(first.at("agent.pipeline.late") == 0);
    CHECK(first.count("agent.pipeline.cache_hit_ratio") == 0);  // no rule has a quantum
    const auto& second = batch->samples[1].extra;
    CHECK(second.count("pipeline.out.s.v.value") == 0);  // sent once
    CHECK(second.count("agent.pipeline.latency_p50_us") == 0);  // no reading since
    CHECK(second.at("agent.pipeline.events_per_s") == 0);
  }
  fs::remove_all(dir);
}
