// The hierarchy's broker-fault scenarios with an agent as the publisher: a metro broker
// SIGKILLed mid-stream, and a regional broker held down for a sustained period. Unlike
// the hierarchy's own crash test (which records what Mosquitto loses in its autosave
// window), here the agent's outbox and the cloud's end-to-end acks must close the gap:
// every stored batch arrives at the cloud, exactly once after dedup.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "hierarchy_support.h"
#include "crash_child_support.h"
#include "nova/testing/ack_consumer.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kNode = test::kCrashChildNode;

// The example topology with crash_child's node added at its site, par-a1: every hop is
// mutual TLS, and the ACL nova-bridge renders grants only the topology's nodes.
tiers::Topology topology_with_crash_child() {
  tiers::TopologySpec spec = hiertest::load_topology(NOVA_EXAMPLE_TOPOLOGY).spec();
  tiers::NodeSpec node;
  node.id = kNode;
  node.site = "par-a1";
  spec.nodes.push_back(std::move(node));
  auto built = tiers::Topology::build(std::move(spec));
  if (!built.ok()) throw std::runtime_error("topology with " + std::string(kNode) + ": " + built.error().message());
  return std::move(built).value();
}

// A TLS hierarchy with crash_child's node in it, an acknowledging consumer at the cloud
// broker with nova-cloud's certificate, and where the agent connects (par-a1) as gw-crash.
struct FaultScene {
  explicit FaultScene(const std::string& prefix)
      : h(hiertest::start_hierarchy(topology_with_crash_child(), prefix, testing::Transport::mutual_tls)),
        consumer(h->tls_uri("cloud"), "nova-cloud", true, h->identity("nova-cloud")),
        dir(h->dir.path() / "agent"),
        access(h->tls_uri("par-a1")),
        agent_identity(h->identity(kNode)) {}

  pid_t spawn_agent(bool drain_only) const { return test::spawn_crash_child(access, dir, drain_only, agent_identity); }

  std::unique_ptr<hiertest::RunningHierarchy> h;
  testing::AckConsumer consumer;
  fs::path dir;
  std::string access;
  testing::TlsIdentity agent_identity;
};

// Stops the generating agent (it stores its open batch), then drains everything with a
// fresh agent process until the consumer acknowledged it all, and checks the result.
void finish_and_check(pid_t generator, const FaultScene& scene) {
  const testing::AckConsumer& consumer = scene.consumer;
  ::kill(generator, SIGTERM);
  const int stopped = test::wait_exit(generator);
  REQUIRE(WIFEXITED(stopped));
  const std::uint64_t stored = test::metrics_stats(scene.dir).next_seq - 1;
  REQUIRE(stored > 0);
  pid_t drainer = scene.spawn_agent(true);
  const test::ChildGuard guard(drainer);
  const bool all = consumer.wait_for(kNode, "metrics", stored, 120s);
  if (!all) ::kill(drainer, SIGTERM);
  test::wait_exit(drainer);  // exits by itself once the outbox is empty
  REQUIRE(all);
  const testing::StreamCount c = consumer.count(kNode, "metrics");
  CHECK(c.seqs.size() == stored);  // nothing lost ...
  CHECK(*c.seqs.begin() == 1);
  CHECK(*c.seqs.rbegin() == stored);  // ... and no gap: exactly once after dedup
  WARN(stored << " batches stored, all received once after dedup; duplicate deliveries removed: "
              << c.duplicates);
}

}  // namespace

TEST_CASE("metro broker SIGKILLed mid-stream: the agent's outbox closes the gap", "[agent][faults]") {
  FaultScene scene("nova-agent-crash");
  auto& h = scene.h;
  const testing::AckConsumer& consumer = scene.consumer;

  pid_t agent = scene.spawn_agent(false);
  const test::ChildGuard guard(agent);
  REQUIRE(consumer.wait_for(kNode, "metrics", 30, 60s));  // flowing end to end
  const std::size_t from = h->events->size();
  (*h)->kill("par");
  REQUIRE(h->events->wait_for("par", "broker_restarted", from, 30s));
  REQUIRE((*h)->wait_link("par", 30s));
  REQUIRE((*h)->wait_link("par-a1", 30s));
  const std::size_t before = consumer.count(kNode, "metrics").seqs.size();
  REQUIRE(consumer.wait_for(kNode, "metrics", before + 30, 60s));  // flowing again
  finish_and_check(agent, scene);
}

TEST_CASE("regional broker held down: everything buffered below arrives once", "[agent][faults]") {
  FaultScene scene("nova-agent-partition");
  auto& h = scene.h;
  const testing::AckConsumer& consumer = scene.consumer;

  pid_t agent = scene.spawn_agent(false);
  const test::ChildGuard guard(agent);
  REQUIRE(consumer.wait_for(kNode, "metrics", 20, 60s));
  (*h)->stop("eu");
  // The partition lasts while the agent stores ~100 more batches (about 6 s of its
  // synthetic samples); nothing reaches the cloud meanwhile.
  const std::size_t at_cut = consumer.count(kNode, "metrics").seqs.size();
  REQUIRE_FALSE(consumer.wait_for(kNode, "metrics", at_cut + 100, 6s));
  (*h)->start_site("eu");
  REQUIRE((*h)->wait_link("eu", 60s));
  REQUIRE(consumer.wait_for(kNode, "metrics", at_cut + 100, 120s));
  finish_and_check(agent, scene);
  for (const tiers::Site& s : (*h)->topology().sites()) {
    INFO("site " << s.id());
    CHECK(h->log_of(s.id()).find("dropped") == std::string::npos);
  }
}
