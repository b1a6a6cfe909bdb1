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

#include "hierarchy_support.h"
#include "crash_child_support.h"
#include "nova/testing/ack_consumer.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kNode = "gw-crash";  // crash_child's node, at site par-a1

// Stops the generating agent (it stores its open batch), then drains everything with a
// fresh agent process until the consumer acknowledged it all, and checks the result.
void finish_and_check(pid_t generator, const std::string& access_uri, const fs::path& dir,
                      const testing::AckConsumer& consumer) {
  ::kill(generator, SIGTERM);
  const int stopped = test::wait_exit(generator);
  REQUIRE(WIFEXITED(stopped));
  const std::uint64_t stored = test::metrics_stats(dir).next_seq - 1;
  REQUIRE(stored > 0);
  pid_t drainer = test::spawn_crash_child(access_uri, dir, true);
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
  const tiers::Topology topology = hiertest::load_topology(NOVA_EXAMPLE_TOPOLOGY);
  // Plaintext only until its agent (crash_child) is given a certificate: not converted yet
  // (issue 10). Its node, gw-crash, is not in the example topology, and the rendered TLS
  // ACL grants only the topology's nodes: it needs a topology with gw-crash at par-a1, its
  // identity of the hierarchy's PKI (NOVA_CRASH_TLS_*), and the consumer nova-cloud's.
  auto h = hiertest::start_hierarchy(topology, "nova-agent-crash", hiertest::Transport::insecure_plaintext);
  testing::AckConsumer consumer((*h)->uri("cloud"));
  const fs::path dir = h->dir.path() / "agent";
  const std::string access = (*h)->uri("par-a1");

  pid_t agent = test::spawn_crash_child(access, dir, false);
  const test::ChildGuard guard(agent);
  REQUIRE(consumer.wait_for(kNode, "metrics", 30, 60s));  // flowing end to end
  const std::size_t from = h->events->size();
  (*h)->kill("par");
  REQUIRE(h->events->wait_for("par", "broker_restarted", from, 30s));
  REQUIRE((*h)->wait_link("par", 30s));
  REQUIRE((*h)->wait_link("par-a1", 30s));
  const std::size_t before = consumer.count(kNode, "metrics").seqs.size();
  REQUIRE(consumer.wait_for(kNode, "metrics", before + 30, 60s));  // flowing again
  finish_and_check(agent, access, dir, consumer);
}

TEST_CASE("regional broker held down: everything buffered below arrives once", "[agent][faults]") {
  const tiers::Topology topology = hiertest::load_topology(NOVA_EXAMPLE_TOPOLOGY);
  // Plaintext only until its agent (crash_child) is given a certificate: not converted yet
  // (issue 10). Its node, gw-crash, is not in the example topology, and the rendered TLS
  // ACL grants only the topology's nodes: it needs a topology with gw-crash at par-a1, its
  // identity of the hierarchy's PKI (NOVA_CRASH_TLS_*), and the consumer nova-cloud's.
  auto h = hiertest::start_hierarchy(topology, "nova-agent-partition", hiertest::Transport::insecure_plaintext);
  testing::AckConsumer consumer((*h)->uri("cloud"));
  const fs::path dir = h->dir.path() / "agent";
  const std::string access = (*h)->uri("par-a1");

  pid_t agent = test::spawn_crash_child(access, dir, false);
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
  finish_and_check(agent, access, dir, consumer);
  for (const tiers::Site& s : (*h)->topology().sites()) {
    INFO("site " << s.id());
    CHECK(h->log_of(s.id()).find("dropped") == std::string::npos);
  }
}
