// LiveTopology's liveness rules: births, stale wills, replays, links, heartbeats.
#include <catch2/catch.hpp>

#include "nova/cloud/live_topology.h"

using namespace nova;
using namespace nova::cloud;

namespace {

schemas::NodeState birth(const std::string& node, std::uint64_t bdseq, const std::string& site) {
  schemas::NodeState s;
  s.node = node;
  s.status = schemas::NodeStatus::online;
  s.bdseq = bdseq;
  s.description = schemas::NodeDescription{5, site, "aarch64", "1", {}, {1000, 512, 1000}, std::nullopt};
  return s;
}

schemas::NodeState death(const std::string& node, std::uint64_t bdseq) {
  schemas::NodeState s;
  s.node = node;
  s.status = schemas::NodeStatus::dead;
  s.bdseq = bdseq;
  return s;
}

}  // namespace

TEST_CASE("birth then matching death then stale death", "[cloud][topology]") {
  LiveTopology t(10'000);
  auto c = t.apply_state(birth("d1", 3, "cloud/eu/par/a1"), 1000);
  REQUIRE(c.size() == 1);
  CHECK(c[0].to == Liveness::alive);
  CHECK(t.apply_state(birth("d1", 3, "cloud/eu/par/a1"), 1500).empty());  // bridge replay
  CHECK(t.apply_state(death("d1", 2), 2000).empty());                     // an older session's will
  CHECK(t.find("d1")->liveness == Liveness::alive);
  c = t.apply_state(death("d1", 3), 3000);
  REQUIRE(c.size() == 1);
  CHECK(c[0].to == Liveness::dead);
  CHECK(c[0].cause == "will");
  c = t.apply_state(birth("d1", 4, "cloud/eu/par/a1"), 4000);
  REQUIRE(c.size() == 1);
  CHECK(c[0].to == Liveness::alive);
}

TEST_CASE("a link going down makes its subtree unreachable but not dead", "[cloud][topology]") {
  LiveTopology t(0);
  t.apply_state(birth("d1", 1, "cloud/eu/par/a1"), 0);
  t.apply_state(birth("d2", 1, "cloud/eu/lyo/b1"), 0);
  auto c = t.apply_link("par", false, 10);
  REQUIRE(c.size() == 1);
  CHECK(c[0].node == "d1");
  CHECK(c[0].to == Liveness::unreachable);
  CHECK(t.find("d2")->liveness == Liveness::alive);
  CHECK(t.apply_link("par", false, 11).empty());
  c = t.apply_link("par", true, 20);
  REQUIRE(c.size() == 1);
  CHECK(c[0].to == Liveness::alive);
}

TEST_CASE("silence past the heartbeat timeout and recovery", "[cloud][topology]") {
  LiveTopology t(5'000);
  t.apply_state(birth("d1", 1, "cloud/eu/par/a1"), 1'000);
  CHECK(t.check_heartbeats(5'000).empty());
  auto c = t.check_heartbeats(7'000);
  REQUIRE(c.size() == 1);
  CHECK(c[0].to == Liveness::silent);
  t.heartbeat("d1", 7'500);
  c = t.check_heartbeats(7'600);
  REQUIRE(c.size() == 1);
  CHECK(c[0].to == Liveness::alive);
  CHECK(t.count(Liveness::alive) == 1);
}

TEST_CASE("the revision moves with every change a placement engine must see and only then", "[cloud][topology]") {
  LiveTopology t(10'000);
  const auto r0 = t.revision();
  t.apply_state(birth("d1", 3, "cloud/eu/par/a1"), 1000);
  const auto r1 = t.revision();
  CHECK(r1 != r0);
  t.apply_state(birth("d1", 3, "cloud/eu/par/a1"), 1500);  // a bridge's replay
  t.heartbeat("d1", 1600);
  CHECK(t.check_heartbeats(1700).empty());
  CHECK(t.revision() == r1);
  // A new birth of the same session with another description (a config change).
  auto moved = birth("d1", 3, "cloud/eu/par/a1");
  moved.description->capabilities = {"gpu"};
  CHECK(t.apply_state(moved, 1800).empty());  // no liveness change, but a new description
  const auto r2 = t.revision();
  CHECK(r2 != r1);
  t.apply_link("par", false, 1900);  // unreachable
  const auto r3 = t.revision();
  CHECK(r3 != r2);
  t.apply_link("par", true, 2000);
  CHECK(t.revision() != r3);
  const auto r4 = t.revision();
  CHECK_FALSE(t.check_heartbeats(20'000).empty());  // silent
  CHECK(t.revision() != r4);
}
