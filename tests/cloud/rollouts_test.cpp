// Rollouts without a broker (cloud/include/nova/cloud/rollouts.h): waves, the canary halt
// on a rollback alert or a missed deadline, the store's JSON, targets and bundles.
#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "nova/cloud/rollouts.h"
#include "nova/schemas/codec.h"
#include "nova/schemas/update_alert.h"
#include "nova/security/digest.h"

using namespace nova::cloud;
using nova::schemas::Timestamp;

namespace {

const std::string kBundle = "#!/bin/sh\nexec true\n";

// The rollouts' world: what they published and kept.
struct World {
  std::vector<std::string> offers;  // topics of update offers, in order
  std::size_t chunks = 0;
  std::map<std::string, std::string> kept;
  Rollouts rollouts{Rollouts::Hooks{
      [this](const std::string& topic, const std::vector<std::uint8_t>&, bool retained) {
        REQUIRE(retained);
        if (topic.rfind("nova/v1/bundle/", 0) == 0) {
          ++chunks;
        } else {
          offers.push_back(topic);
        }
        return true;
      },
      [this](const std::string& id, const std::string& json) {
        kept[id] = json;
        return nova::schemas::Status(nova::schemas::Ok{});
      },
      nullptr}};

  Rollout start(std::size_t wave_size, Timestamp now = 1000) {
    std::vector<TargetNode> nodes = {{"a", "cloud/s", "1"}, {"b", "cloud/s", "1"}, {"c", "cloud/s", "1"}};
    auto r = rollouts.start({"2", "subtree:cloud", nodes, wave_size, std::chrono::seconds(60), "tester"}, kBundle, now);
    REQUIRE(r);
    return *r;
  }
  void birth(const std::string& node, const std::string& version, Timestamp now) {
    nova::schemas::NodeState s;
    s.node = node;
    s.status = nova::schemas::NodeStatus::online;
    s.description.emplace();
    s.description->site = "cloud/s";
    s.description->version = version;
    rollouts.on_state(s, now);
  }
  RolloutNodePhase phase(const std::string& id, const std::string& node) const {
    const auto r = rollouts.get(id);
    REQUIRE(r);
    for (const auto& n : r->nodes) {
      if (n.node == node) return n.phase;
    }
    FAIL("no node " << node);
    return RolloutNodePhase::waiting;
  }
};

}  // namespace

TEST_CASE("a rollout offers one wave at a time and ends when the last wave reports the version", "[cloud][rollouts]") {
  World w;
  const Rollout r = w.start(2);
  CHECK(w.chunks == 1);
  REQUIRE(w.offers == std::vector<std::string>{"nova/v1/down/cloud/s/a/update", "nova/v1/down/cloud/s/b/update"});
  w.birth("a", "2", 2000);
  CHECK(w.offers.size() == 2);  // b is not done yet
  w.birth("b", "1", 2100);      // a birth of the old version is not done
  CHECK(w.phase(r.id, "b") == RolloutNodePhase::offered);
  w.birth("b", "2", 2200);
  REQUIRE(w.offers.size() == 3);
  CHECK(w.offers.back() == "nova/v1/down/cloud/s/c/update");
  CHECK(w.rollouts.get(r.id)->wave == 1);
  w.birth("c", "2", 3000);
  CHECK(w.rollouts.get(r.id)->state == RolloutState::succeeded);
  CHECK(w.phase(r.id, "c") == RolloutNodePhase::updated);
}

TEST_CASE("a rollback alert of the bundle halts the rollout before its next wave", "[cloud][rollouts]") {
  World w;
  const Rollout r = w.start(1);
  nova::schemas::Alert other;  // an alert about something else changes nothing
  other.metric = "cpu";
  other.message = nova::schemas::update_rolled_back_message(r.sha256, "no");
  w.rollouts.on_alert("a", other, 1500);
  CHECK(w.rollouts.get(r.id)->state == RolloutState::running);

  nova::schemas::Alert a;
  a.metric = nova::schemas::kUpdateAlertMetric;
  a.message = nova::schemas::update_rolled_back_message(r.sha256, "exited with status 1 during its trial");
  w.rollouts.on_alert("a", a, 2000);
  const Rollout now = *w.rollouts.get(r.id);
  CHECK(now.state == RolloutState::halted);
  CHECK(now.halt_reason == "node a rolled back: exited with status 1 during its trial");
  CHECK(now.nodes[0].phase == RolloutNodePhase::rolled_back);
  CHECK(now.nodes[0].reason == "exited with status 1 during its trial");
  w.rollouts.tick(100'000, true);
  CHECK(w.offers.size() == 1);  // b and c never get it
  CHECK(w.phase(r.id, "b") == RolloutNodePhase::waiting);
}

TEST_CASE("a node that misses its wave's deadline halts the rollout, once the topology is current", "[cloud][rollouts]") {
  World w;
  const Rollout r = w.start(1, 1000);
  w.rollouts.tick(1000 + 60'000, false);  // births not settled after a connect: waits
  CHECK(w.rollouts.get(r.id)->state == RolloutState::running);
  w.rollouts.tick(1000 + 59'999, true);
  CHECK(w.rollouts.get(r.id)->state == RolloutState::running);
  w.rollouts.tick(1000 + 60'000, true);
  CHECK(w.rollouts.get(r.id)->state == RolloutState::halted);
  CHECK(w.phase(r.id, "a") == RolloutNodePhase::timed_out);
  CHECK(w.offers.size() == 1);
}

TEST_CASE("a refused bundle halts, an agent going offline after its offer is installing", "[cloud][rollouts]") {
  World w;
  const Rollout r = w.start(3);
  nova::schemas::NodeState gone;
  gone.node = "b";
  gone.status = nova::schemas::NodeStatus::offline;
  w.rollouts.on_state(gone, 1500);
  CHECK(w.phase(r.id, "b") == RolloutNodePhase::installing);
  nova::schemas::Alert a;
  a.metric = nova::schemas::kUpdateAlertMetric;
  a.message = nova::schemas::update_refused_message("2 (odd version)", r.sha256, "bundle sha256 is 00");
  w.rollouts.on_alert("c", a, 2000);
  CHECK(w.phase(r.id, "c") == RolloutNodePhase::refused);
  CHECK(w.rollouts.get(r.id)->halt_reason == "node c refused the bundle: bundle sha256 is 00");
}

TEST_CASE("a rollout kept in the store comes back as it was and goes on", "[cloud][rollouts]") {
  World w;
  const Rollout r = w.start(1);
  w.birth("a", "2", 2000);  // wave 1 offered
  World after;
  auto restored = rollout_from_json(w.kept.at(r.id));
  REQUIRE(restored);
  CHECK(rollout_json(*restored) == w.kept.at(r.id));
  after.rollouts.restore(*restored);
  after.birth("b", "2", 3000);
  REQUIRE(after.offers == std::vector<std::string>{"nova/v1/down/cloud/s/c/update"});
  CHECK(after.chunks == 0);  // published by the first run, retained on the broker
}

TEST_CASE("targets resolve to known nodes in scope, bundles must be executable", "[cloud][rollouts]") {
  const std::vector<TargetNode> known = {{"n2", "cloud/eu/par", "1"}, {"n1", "cloud/eu", "1"}, {"n3", "cloud/us", "1"}};
  auto subtree = resolve_target("subtree", "cloud/eu", known, "");
  REQUIRE(subtree);
  REQUIRE(subtree->size() == 2);
  CHECK(subtree->at(0).node == "n1");  // by id
  auto site = resolve_target("site", "cloud/eu", known, "");
  REQUIRE(site);
  CHECK(site->size() == 1);
  CHECK(resolve_target("node", "n3", known, "cloud/eu").error().message() ==
        "node: 'n3' names no node known here within the token's scope 'cloud/eu'");
  CHECK(resolve_target("node", "nope", known, "").error().message() == "node: 'nope' names no node known here");
  CHECK(resolve_target("site", "cloud//x", known, "").error().path == "site");
  CHECK(!bundle_problem("\x7f" "ELF\x02\x01"));
  CHECK(!bundle_problem("#!/bin/sh\n"));
  CHECK(bundle_problem("")->rfind("body: empty", 0) == 0);
  CHECK(bundle_problem("PK\x03\x04 a zip")->rfind("body: not an update bundle", 0) == 0);
}

TEST_CASE("update alerts read back what the agent writes", "[cloud][rollouts]") {
  const std::string sha = nova::security::sha256_hex("x");
  nova::schemas::Alert a;
  a.metric = nova::schemas::kUpdateAlertMetric;
  a.message = nova::schemas::update_rolled_back_message(sha, "no acknowledged birth within 5s");
  auto o = nova::schemas::parse_update_alert(a);
  REQUIRE(o);
  CHECK(o->kind == nova::schemas::UpdateOutcome::Kind::rolled_back);
  CHECK(o->sha256 == sha);
  CHECK(o->reason == "no acknowledged birth within 5s");
  a.message = nova::schemas::update_refused_message("5.0.0 ) refused: x", sha, "bundle sha256 is 1");
  o = nova::schemas::parse_update_alert(a);
  REQUIRE(o);
  CHECK(o->kind == nova::schemas::UpdateOutcome::Kind::refused);
  CHECK(o->sha256 == sha);
  CHECK(o->reason == "bundle sha256 is 1");
  a.message = "update to sha256 short rolled back by the launcher: x";
  CHECK(!nova::schemas::parse_update_alert(a));
}

TEST_CASE("a node that runs the version is updated without an offer, a bundle's chunks go out once", "[cloud][rollouts]") {
  World w;
  std::vector<TargetNode> nodes = {{"a", "cloud/s", "2"}, {"b", "cloud/s", "1"}};
  auto r = w.rollouts.start({"2", "site:cloud/s", nodes, 1, std::chrono::seconds(60), "tester"}, kBundle, 1000);
  REQUIRE(r);
  CHECK(r->nodes[0].phase == RolloutNodePhase::updated);
  CHECK(r->wave == 1);  // a's wave was done at once
  CHECK(w.offers == std::vector<std::string>{"nova/v1/down/cloud/s/b/update"});
  auto again = w.rollouts.start({"2", "node:b", {nodes[1]}, 1, std::chrono::seconds(60), "tester"}, kBundle, 1001);
  REQUIRE(again);
  CHECK(w.chunks == 1);
}

TEST_CASE("two rollouts of one bundle in the same millisecond get their own ids", "[cloud][rollouts]") {
  World w;
  const Rollout first = w.start(1, 5000);
  const Rollout second = w.start(1, 5000);
  CHECK(first.id != second.id);
  CHECK(second.id == first.id + "-2");
  CHECK(w.rollouts.get(first.id));
  CHECK(w.rollouts.get(second.id));
}
