// Restart suite (issue 9): every broker of a three-level chain top <- mid <- low is
// stopped (SIGTERM) and killed (SIGKILL) in turn and restarted, then top and mid
// together. After each, the retained state at the top must be true again within 5 s:
// both bridges' link records say "1" and both nodes' births are there. QoS 1 records
// published below the restarted brokers while they are down or restarting arrive at a
// persistent consumer on the top exactly once.
//
// A chain, not the five-tier example: the example's 15 brokers make every scenario slow
// on 2 cores, and each tier's restart is a broker with a parent, a child, or both, which
// the chain has. The bridges use restart_timeout [1, 2] (the topology below), so a
// bridge retries within 2 s; with the tier defaults (up to 15-30 s) the 5 s cannot hold
// after a parent restart.
//
// Before the fix (check_retain_source in the rendered config), "top SIGTERM" failed:
// mid's bridge re-sent its own retained link "0" after the fresh "1", and the top kept
// "0" for mid for good (docs/broker-hierarchy.md, Link state).

#include <stdio.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <iostream>
#include <map>
#include <string>

#include "nova/bridge/link.h"
#include "nova/bridge/render.h"
#include "test_common.h"

using namespace nova::hiertest;
using nova::bridge::LinkState;

namespace {

constexpr auto kTrueWithin = std::chrono::milliseconds(5000);  // the requirement

// A bridge's connections as its parent logged them ("New bridge connected ... as bridge.mid").
std::size_t bridge_connections(const RunningHierarchy& running, const std::string& parent, const std::string& child) {
  return count_in_file(running.hierarchy->site_dir(parent) / "mosquitto.log",
                       "as " + nova::bridge::bridge_username(running.hierarchy->topology().site(child)) + " ");
}

// Polls until every bridge in `reconnecting` ({parent, child}) has connected again since
// `seen` (so a "1" the top restored from its database does not count) and the top reports
// both links connected (each read is one short MQTT round trip, see link.h). Returns the
// time from `since`, or nullopt past the 5 s.
std::optional<Clock::duration> links_true_at_top(const RunningHierarchy& running,
                                                 const std::map<std::pair<std::string, std::string>, std::size_t>& seen,
                                                 Clock::time_point since) {
  const auto deadline = since + kTrueWithin;
  const std::string top = running.hierarchy->uri("top");
  const nova::bridge::MonitorTls monitor = running.monitor_tls();
  while (Clock::now() < deadline) {
    bool reconnected = true;
    for (const auto& [link, before] : seen) reconnected = reconnected && bridge_connections(running, link.first, link.second) > before;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (reconnected && nova::bridge::read_link_state(top, "mid", left, monitor) == LinkState::connected &&
        nova::bridge::read_link_state(top, "low", left, monitor) == LinkState::connected) {
      return Clock::now() - since;
    }
  }
  return std::nullopt;
}

// The retained link records and births on `site`'s broker, as an outside client
// (mosquitto_sub, as an operator) sees them: it exits once the 4 expected retained
// records are in.
std::map<std::string, std::string> retained_by_mosquitto_sub(const RunningHierarchy& running, const std::string& site) {
  const std::string command = "mosquitto_sub " + running.mosquitto_client_args(site, operator_identity("restart-outside")) +
                              " -t 'nova/v1/up/+/link' -t 'nova/v1/up/+/state' -v -C 4 -W 10";
  std::map<std::string, std::string> out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char line[512];
  while (::fgets(line, sizeof line, pipe) != nullptr) {
    std::string text(line);
    if (!text.empty() && text.back() == '\n') text.pop_back();
    const auto space = text.find(' ');
    if (space != std::string::npos) out[text.substr(0, space)] = text.substr(space + 1);
  }
  ::pclose(pipe);
  return out;
}

}  // namespace

TEST_CASE("restart of every broker of a chain: retained state true at the top within 5 s, QoS 1 once",
          "[hierarchy][restart]") {
  auto running = start_hierarchy(chain_topology("restart-chain"), "nova-hier-restart", Transport::mutual_tls,
                                 {"restart-consumer", "restart-outside"});
  auto& hierarchy = **running;

  // Births, retained, each published by its node at its own broker (its certificate).
  const std::map<std::string, std::string> births = {{"node-mid", "mid"}, {"node-low", "low"}};
  for (const auto& [node, site] : births) {
    Client birth(endpoint(*running, site, node));
    birth.paho().connect(birth.options())->wait();
    birth.publish_wait(up_topic(node, "state"), "birth of " + node, /*retained=*/true);
  }
  const std::map<std::string, std::string> expected = {
      {"nova/v1/up/mid/link", "1"},
      {"nova/v1/up/low/link", "1"},
      {"nova/v1/up/node-mid/state", "birth of node-mid"},
      {"nova/v1/up/node-low/state", "birth of node-low"},
  };

  // A persistent consumer on the top: records reaching the top while it reconnects
  // wait in its session. An operator: it reads upward only.
  Client consumer(endpoint(*running, "top", operator_identity("restart-consumer"), /*clean_session=*/false));
  consumer.paho().connect(consumer.options())->wait();
  consumer.subscribe("nova/v1/up/+/metrics");
  // The session must be in the top's database before the top is killed: wait for a save.
  const auto top_log = hierarchy.site_dir("top") / "mosquitto.log";
  constexpr std::string_view kSaved = "Saving in-memory database";
  REQUIRE(wait_for_file_count(top_log, kSaved, count_in_file(top_log, kSaved) + 1, std::chrono::seconds(10)));

  struct Scenario {
    std::vector<std::string> sites;  // parents first
    bool kill;  // SIGKILL (the supervisor restarts at once), else SIGTERM, held, started
    bool has(const std::string& site) const { return std::find(sites.begin(), sites.end(), site) != sites.end(); }
  };
  const std::vector<Scenario> scenarios = {
      {{"top"}, false}, {{"top"}, true}, {{"mid"}, false}, {{"mid"}, true},
      {{"low"}, false}, {{"low"}, true},
      {{"top", "mid"}, false}, {{"top", "mid"}, true},  // a parent and its child together
  };
  int seq = 0;
  for (const Scenario& scenario : scenarios) {
    const std::string kind = scenario.kill ? "SIGKILL" : "SIGTERM";
    std::string name;
    for (const std::string& site : scenario.sites) name += (name.empty() ? "" : "+") + site;
    INFO(name << " " << kind);
    // Publish below the brokers that go down (at mid when low itself goes down).
    const std::string node = scenario.has("low") ? "node-mid" : "node-low";
    Client publisher(endpoint(*running, scenario.has("low") ? "mid" : "low", node));
    publisher.paho().connect(publisher.options())->wait();
    const std::size_t before = consumer.count();

    // The bridges that lose their connection: to the restarted broker, and from it.
    std::map<std::pair<std::string, std::string>, std::size_t> seen;
    if (scenario.has("top") || scenario.has("mid")) seen[{"top", "mid"}] = 0;
    if (scenario.has("mid") || scenario.has("low")) seen[{"mid", "low"}] = 0;
    for (auto& [link, count] : seen) count = bridge_connections(*running, link.first, link.second);

    Clock::time_point restarted;
    const int first = seq;
    if (scenario.kill) {
      // A SIGKILLed top restarts from its last autosave (every ~2 s). Had it not saved
      // since the consumer acknowledged the previous scenario's records, it would hold
      // them as still queued for the consumer and deliver them again after the restart
      // (QoS 1 after a crash: at least once), and the test would count those copies as
      // this scenario's (seen once in 13 runs). Wait for a save made after them.
      if (scenario.has("top")) {
        REQUIRE(wait_for_file_count(top_log, kSaved, count_in_file(top_log, kSaved) + 1, std::chrono::seconds(10)));
      }
      for (const std::string& site : scenario.sites) hierarchy.kill(site);
      restarted = Clock::now();  // the supervisor restarts them at once
      for (int i = 0; i < 10; ++i) publisher.publish_wait(up_topic(node, "metrics"), std::to_string(seq++), false);
    } else {
      for (auto it = scenario.sites.rbegin(); it != scenario.sites.rend(); ++it) hierarchy.stop(*it);
      for (int i = 0; i < 10; ++i) publisher.publish_wait(up_topic(node, "metrics"), std::to_string(seq++), false);
      for (const std::string& site : scenario.sites) hierarchy.start_site(site);
      restarted = Clock::now();
    }
    if (scenario.has("top")) {  // the consumer lost its connection with the top
      REQUIRE(consumer.wait_disconnected(std::chrono::seconds(10)));
      REQUIRE(hierarchy.wait_link("mid", std::chrono::seconds(30)));  // the top is back
    }
    const auto took = links_true_at_top(*running, seen, restarted);
    if (took) {
      std::cout << "restart of " << name << " by " << kind << ": links true at the top after "
                << whole_ms(*took) << " ms\n";
    }
    CHECK(took.has_value());

    if (!consumer.connected()) consumer.paho().connect(consumer.options())->wait();
    CHECK(consumer.wait_count(before + 10, std::chrono::seconds(30)));
    const bool extra = consumer.arrives_within(std::chrono::milliseconds(300));
    const std::vector<Received> received = consumer.messages();
    std::string arrivals;  // in order, "(dup)" for a PUBLISH with the DUP flag
    for (std::size_t i = before; i < received.size(); ++i) {
      arrivals += received[i].payload + (received[i].duplicate ? "(dup) " : " ");
    }
    INFO("arrived at the consumer since the scenario began: " << arrivals);
    CHECK_FALSE(extra);  // no extra copies
    std::map<std::string, int> copies;
    for (const Received& r : received) ++copies[r.payload];
    for (int s = first; s < seq; ++s) {
      INFO("record " << s);
      CHECK(copies[std::to_string(s)] == 1);
    }
  }

  // The final word from an outside client.
  CHECK(retained_by_mosquitto_sub(*running, "top") == expected);
}
