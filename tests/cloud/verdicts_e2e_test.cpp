// Issue 13's acceptance of verdicts, over the real five-tier hierarchy with mutual TLS:
// a device's agent takes a decision while its access broker is down (its uplink cut),
// reconnects, its backlog reaches the real nova-cloud process four bridge hops up, the
// cloud's policy overrides the threshold the decision used, the signed verdict comes
// back down, the agent puts the new level in force -- the same CPU value that raised
// nothing before now raises an alert -- and its record of the override reaches the cloud.
// Each is counted once.
//
// The agent is the real library (nova::agent) in this process, so that the test sets the
// CPU its samples report; brokers, bridges and nova-cloud are real processes.
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>

#include "cloud_process.h"
#include "hierarchy_support.h"
#include "nova/agent/agent.h"
#include "nova/testing/signer.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kDevice = "dev-par-a1-1";

// Samples with the CPU the test sets, stamped with the loop's clock.
class SetCpu final : public agent::SampleSource {
 public:
  void set(double cpu) {
    std::lock_guard lock(mutex_);
    sample_.cpu_pct = cpu;
  }
  const schemas::MetricSample* sample(schemas::Timestamp now_ms) override {
    std::lock_guard lock(mutex_);
    current_ = sample_;
    current_.ts = now_ms;
    return &current_;
  }

 private:
  static schemas::MetricSample quiet() {
    schemas::MetricSample s;
    s.cpu_pct = 20;
    s.mem_pct = 40;
    s.disk_pct = 50;
    s.load1 = 0.5;
    return s;
  }
  std::mutex mutex_;
  schemas::MetricSample sample_ = quiet();
  schemas::MetricSample current_;
};

// A condition on the state of other processes (the agent's session, nova-cloud's API):
// nothing to wait on but the condition itself.
bool eventually(const std::function<bool()>& done, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

std::uint64_t metric(const test::CloudProcess& cloud, const std::string& line_start) {
  auto r = cloud.get("/metrics");
  if (!r) return 0;
  const auto at = r->body.find("\n" + line_start + " ");
  return at == std::string::npos ? 0 : std::stoull(r->body.substr(at + line_start.size() + 2));
}

}  // namespace

TEST_CASE("a decision taken offline is overridden by nova-cloud after the reconnect and the override takes effect",
          "[cloud][verdicts][e2e]") {
  const tiers::Topology topology = hiertest::load_topology(NOVA_EXAMPLE_TOPOLOGY);
  auto h = hiertest::start_hierarchy(topology, "nova-verdicts-e2e", testing::Transport::mutual_tls);
  const fs::path dir = h->dir.path() / "verdicts";
  test::CloudProcess cloud(h->tls_uri("cloud"), dir / "cloud", "nova-cloud", "", 180, h->identity("nova-cloud"),
                           "verdicts:\n  threshold_bounds: [\"cpu:50..80\"]\n");

  const tiers::NodeSpec* spec = topology.find_node(kDevice);
  REQUIRE(spec != nullptr);
  const tiers::Site& site = topology.site(spec->site);
  const testing::TlsIdentity id = h->identity(kDevice);
  agent::AgentOptions o;
  o.birth.node = kDevice;
  o.birth.description = schemas::NodeDescription{5, site.path.str(), "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
  o.broker_uri = h->tls_uri(site.id());
  o.tls = security::TlsFiles{id.ca.string(), id.cert.string(), id.key.string()};
  o.reconnect_min = 100ms;
  o.reconnect_max = 500ms;
  o.sample_interval = 100ms;
  o.drain.jitter = 0ms;
  o.outbox.dir = dir / "agent" / "outbox";
  o.state_dir = dir / "agent" / "state";
  o.control.keys = {testing::test_signer().verify_key()};  // nova-cloud signs with it
  o.decisions.zscore.threshold = 0;  // thresholds only: cpu 90 warning, 97 critical
  SetCpu cpu;
  auto created = agent::Agent::create(std::move(o), &cpu);
  REQUIRE(created.ok());
  agent::Agent& a = *created.value();
  std::thread loop([&] { a.run(); });
  struct StopOnExit {
    agent::Agent& a;
    std::thread& t;
    ~StopOnExit() {
      a.stop();
      t.join();
    }
  } stop_on_exit{a, loop};

  REQUIRE(eventually([&] {
    const json n = cloud.get_json(std::string("/api/v1/nodes/") + kDevice);
    return !n.is_null() && n["liveness"] == "alive";
  }, 60s));

  // The uplink is cut: the access broker goes down. cpu 92 is above the agent's warning
  // level 90 (and above the cloud's bound 80): a decision, taken offline.
  (*h)->stop(site.id());
  REQUIRE(eventually([&] { return !a.connected(); }, 30s));
  cpu.set(92);
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.decisions == 1; }, 30s));
  cpu.set(20);  // recovered (an info alert, no decision)
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.alerts == 2; }, 30s));
  // 85 is below the agent's own levels: nothing is raised.
  cpu.set(85);
  const std::uint64_t samples = a.counters().samples;
  REQUIRE(a.wait_for([&](const agent::AgentCounters& c) { return c.samples >= samples + 5; }, 30s));
  CHECK(a.counters().alerts == 2);
  cpu.set(20);
  CHECK(a.counters().overrides_applied == 0);

  // Reconnect: the backlog goes up, the verdict comes down and is put in force.
  (*h)->start_site(site.id());
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.overrides_applied == 1; }, 60s));
  const agent::AgentCounters after = a.counters();
  CHECK(after.verdicts_overridden == 1);
  CHECK(after.bad_messages == 0);
  CHECK(after.control_refused() == 0);

  // The same 85 now crosses the overridden levels (80/80): a critical alert, and a new
  // decision, which the cloud accepts (its levels are within the bounds).
  cpu.set(85);
  REQUIRE(a.wait_for([&](const agent::AgentCounters& c) { return c.alerts == after.alerts + 1; }, 30s));
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.verdicts_accepted == 1; }, 60s));

  // nova-cloud shows the offline decision with its verdict and the agent's record of it.
  json listed;
  REQUIRE(eventually([&] {
    listed = cloud.get_json(std::string("/api/v1/decisions?node=") + kDevice);
    return listed.is_array() && listed.size() == 2 && !listed[1]["applied"].is_null();
  }, 60s));
  INFO(listed.dump(2));
  const json& offline = listed[1];  // newest first
  CHECK(offline["offline"] == true);
  CHECK(offline["kind"] == "threshold_alert");
  CHECK(offline["verdict"]["verdict"] == "overridden");
  CHECK(offline["verdict"]["warning"] == 80.0);
  CHECK(offline["applied"]["applies"] == offline["decision_id"]);
  CHECK(offline["applied"]["action"] == "cpu levels set to warning 80 critical 80 (were 90 97)");
  CHECK(listed[0]["verdict"]["verdict"] == "accepted");
  CHECK(listed[0]["inputs"]["critical"] == 80.0);
  // Counted once each, at both ends.
  CHECK(metric(cloud, "nova_cloud_verdicts_total{verdict=\"overridden\"}") == 1);
  CHECK(metric(cloud, "nova_cloud_overrides_applied_total") == 1);
  CHECK(a.counters().overrides_applied == 1);
  CHECK(a.counters().verdicts_overridden == 1);
}
