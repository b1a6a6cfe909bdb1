// Acceptance (issue 3), "No loops or duplicates": N QoS 1 records sent up through four
// brokers (access par-a1, metro par, regional eu, cloud) arrive at the cloud exactly N
// times, once per seq; each broker on the path sees each once, every other broker none.

#include <catch2/catch.hpp>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "nova/bridge/render.h"
#include "test_common.h"

using namespace nova::hiertest;

TEST_CASE("N QoS 1 messages sent up through four brokers arrive exactly once each",
          "[hierarchy][no-duplicates]") {
  constexpr std::uint64_t kMessages = 2000;
  constexpr std::size_t kWindow = 100;

  auto running = start_example("nodup", {"nodup-observer"});
  auto& hierarchy = **running;
  const auto& topology = hierarchy.topology();
  const std::string node = "gw-par-a1";
  const auto& site = topology.site(topology.find_node(node)->site);
  REQUIRE(topology.ancestors(site).size() == 3);

  // An observer on every broker: the cloud must get each record once, every broker on
  // the path once, and no broker of another branch any (up traffic goes only toward
  // the root, never sideways or back down). The observers are one operator (read-only
  // upward), one connection at each broker.
  std::map<std::string, std::unique_ptr<SeqTally>> tallies;
  std::vector<std::unique_ptr<Client>> observers;
  std::vector<Client*> clients;
  for (const auto& each : topology.sites()) {
    auto& tally = *(tallies[each.id()] = std::make_unique<SeqTally>());
    observers.push_back(
        std::make_unique<Client>(endpoint(*running, each.id(), operator_identity("nodup-observer"))));
    observers.back()->record_payloads(false);
    observers.back()->on_message(
        [&tally](const Received& message) { tally.add_payload(message.payload); });
    clients.push_back(observers.back().get());
  }
  Client publisher(endpoint(*running, site.id(), node));  // the node's own certificate
  clients.push_back(&publisher);
  connect_all(clients);
  for (auto& observer : observers) observer->subscribe("nova/v1/up/+/metrics");
  SeqTally& tally = *tallies.at(topology.root().id());
  std::set<std::string> on_path{site.id()};
  for (const auto* ancestor : topology.ancestors(site)) on_path.insert(ancestor->id());

  const auto topic = up_topic(node, "metrics");
  WindowedPublisher window(publisher.paho(), kWindow);
  const auto started = Clock::now();
  for (std::uint64_t seq = 1; seq <= kMessages; ++seq) {
    window.publish(topic, metrics_record(node, seq));
  }
  window.drain();
  REQUIRE(window.acked() == kMessages);

  REQUIRE(tally.wait_distinct(kMessages, std::chrono::seconds(60)));
  const auto elapsed = Clock::now() - started;
  // The one timed wait: a copy looping or duplicated by a bridge would follow its
  // original within milliseconds; 500 ms of silence shows there is none.
  CHECK_FALSE(tally.arrives_within(std::chrono::milliseconds(500)));

  const auto result = account(tally.counts(), node, 1, kMessages);
  std::cout << "no-duplicates: " << result.summary() << " in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
            << " ms\n";
  CHECK(result.lost.empty());
  CHECK(result.duplicated.empty());
  CHECK(result.deliveries == kMessages);
  CHECK(tally.total() == kMessages);
  CHECK(tally.foreign() == 0);

  for (const auto& [id, each] : tallies) {
    INFO("broker " << id);
    if (on_path.count(id) != 0) {
      const auto seen = account(each->counts(), node, 1, kMessages);
      CHECK(seen.lost.empty());
      CHECK(seen.deliveries == kMessages);
    } else {
      CHECK(each->total() == 0);
    }
  }
}
