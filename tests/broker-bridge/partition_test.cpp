// Acceptance (issue 3), "Partition": the regional broker `eu` is stopped while 5,000
// QoS 1 records are published at two access brokers below it (par-a1 under metro par,
// ber-a2 under metro ber), and stays down until both metros' bridges have failed to
// reconnect at least once. The metros' bridges queue the records (persistent sessions,
// QoS 1, queue caps sized for a 24 h partition). When `eu` is started again, every
// record arrives at the cloud, and no broker log reports dropped messages.

#include <catch2/catch.hpp>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "nova/bridge/render.h"
#include "test_common.h"

using namespace nova::hiertest;

TEST_CASE("every QoS 1 record published during a regional partition arrives once it heals",
          "[hierarchy][partition]") {
  constexpr std::uint64_t kPerNode = 2500;  // two nodes: 5,000 records
  constexpr std::size_t kWindow = 100;

  auto running = start_example("partition", {"partition-observer"});
  auto& hierarchy = **running;
  const auto& topology = hierarchy.topology();
  const std::string regional = "eu";
  const std::vector<std::string> nodes = {"gw-par-a1", "gw-ber-a2"};
  const std::vector<std::string> metros = {"par", "ber"};

  // Consumers: the cloud, and each metro, to see the records wait there during the
  // partition: one operator (reads upward only), one connection at each broker.
  // Publishers: each node at its own access broker, with its own certificate.
  SeqTally at_cloud;
  std::vector<std::unique_ptr<SeqTally>> at_metro;
  std::vector<std::unique_ptr<Client>> clients;
  auto consumer = [&](const std::string& site, SeqTally& tally) -> Client& {
    clients.push_back(std::make_unique<Client>(endpoint(*running, site, operator_identity("partition-observer"))));
    clients.back()->record_payloads(false);
    clients.back()->on_message(
        [&tally](const Received& message) { tally.add_payload(message.payload); });
    return *clients.back();
  };
  consumer(topology.root().id(), at_cloud);
  for (const auto& metro : metros) {
    at_metro.push_back(std::make_unique<SeqTally>());
    consumer(metro, *at_metro.back());
  }
  std::vector<Client*> publishers;
  for (const auto& node : nodes) {
    const auto& site = topology.site(topology.find_node(node)->site);
    REQUIRE(topology.ancestors(site).at(1)->id() == regional);
    clients.push_back(std::make_unique<Client>(endpoint(*running, site.id(), node)));
    publishers.push_back(clients.back().get());
  }
  std::vector<Client*> all;
  for (auto& client : clients) all.push_back(client.get());
  connect_all(all);
  for (std::size_t i = 0; i < 1 + metros.size(); ++i) {
    clients[i]->subscribe("nova/v1/up/+/metrics");
  }

  // Each metro logs every attempt of its bridge to (re)connect to `eu` (2.0.11 logs
  // "Connecting bridge (step 1) <name>" then "(step 2)"; a refused connect is not logged).
  constexpr std::string_view kAttempt = "Connecting bridge (step 1)";
  std::vector<std::size_t> attempts_before;
  for (const auto& metro : metros) {
    attempts_before.push_back(count_in_file(hierarchy.site_dir(metro) / "mosquitto.log", kAttempt));
  }

  hierarchy.stop(regional);
  REQUIRE(hierarchy.pid(regional) == -1);
  const auto partition_began = Clock::now();

  // Publish alternately from both nodes, each with its own window of unacked records.
  std::vector<WindowedPublisher> windows;
  for (auto* publisher : publishers) windows.emplace_back(publisher->paho(), kWindow);
  for (std::uint64_t seq = 1; seq <= kPerNode; ++seq) {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      windows[i].publish(up_topic(nodes[i], "metrics"), metrics_record(nodes[i], seq));
    }
  }
  for (auto& window : windows) window.drain();

  // The records crossed the access bridges and wait in the metros' bridge queues.
  for (std::size_t i = 0; i < metros.size(); ++i) {
    INFO("metro " << metros[i]);
    CHECK(at_metro[i]->wait_range(nodes[i], 1, kPerNode, std::chrono::seconds(60)));
  }
  // Keep `eu` down until each metro's bridge has started a second reconnect attempt,
  // so the first one certainly failed (its back-off starts at the tier's restart_base,
  // 2 s for a metro): the queued records must survive failed attempts, not just one
  // broken connection.
  for (std::size_t i = 0; i < metros.size(); ++i) {
    INFO("metro " << metros[i]);
    CHECK(wait_for_file_count(hierarchy.site_dir(metros[i]) / "mosquitto.log", kAttempt,
                              attempts_before[i] + 2, std::chrono::seconds(60)));
  }
  // Nothing got past the partition (a copy would have arrived alongside the metros').
  CHECK(at_cloud.distinct() == 0);
  const auto partition_ended = Clock::now();

  hierarchy.start_site(regional);
  CHECK(hierarchy.wait_link(regional, std::chrono::seconds(30)));
  for (const auto& metro : metros) {
    INFO("metro " << metro);
    CHECK(hierarchy.wait_link(metro, std::chrono::seconds(60)));  // the metro's back-off
  }
  const bool complete = at_cloud.wait_distinct(nodes.size() * kPerNode, std::chrono::seconds(120));
  const auto drained = Clock::now() - partition_ended;
  // The one timed wait: 500 ms of silence shows no redelivered copies are still coming.
  while (at_cloud.arrives_within(std::chrono::milliseconds(500))) {
  }

  const auto counts = at_cloud.counts();
  std::size_t lost = 0;
  std::size_t duplicated = 0;
  for (const auto& node : nodes) {
    const auto result = account(counts, node, 1, kPerNode);
    std::cout << "partition: " << node << ": " << result.summary() << '\n';
    if (!result.lost.empty()) std::cout << "partition: lost " << ranges(result.lost) << '\n';
    if (!result.duplicated.empty()) {
      std::cout << "partition: duplicated " << ranges(result.duplicated) << '\n';
    }
    lost += result.lost.size();
    duplicated += result.extra_copies;
  }
  std::cout << "partition: '" << regional << "' was down for "
            << std::chrono::duration_cast<std::chrono::milliseconds>(partition_ended -
                                                                     partition_began)
                   .count()
            << " ms while " << nodes.size() * kPerNode << " records were published below it\n";
  std::cout << "partition: healed and drained to the cloud in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(drained).count()
            << " ms; " << duplicated << " redelivered copies (deduplicated by seq)\n";
  CHECK(complete);
  CHECK(lost == 0);
  CHECK(at_cloud.foreign() == 0);

  // No broker dropped anything: Mosquitto logs each drop of a full queue.
  for (const auto& site : topology.sites()) {
    const auto log = running->log_of(site.id());
    INFO("broker " << site.id());
    CHECK_FALSE(log.empty());
    CHECK(log.find("dropped") == std::string::npos);
    CHECK(log.find("Outgoing messages are being dropped") == std::string::npos);
  }
}
