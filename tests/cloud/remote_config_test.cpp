// RemotePushes (cloud/include/nova/cloud/remote_config.h) without a broker: revisions
// only grow, also across a restart; a node's report or birth moves its state only for the
// revision last pushed to it; a report is never a decision to judge.
#include <catch2/catch.hpp>

#include "nova/cloud/remote_config.h"

using namespace nova;

namespace {

schemas::DecisionRecord report(const std::string& kind, std::uint64_t revision, const std::string& action) {
  schemas::DecisionRecord d;
  d.position = {"gw-1", "decisions", 1, std::nullopt};
  d.decision_id = "decisions-1";
  d.kind = kind;
  d.inputs = {{"revision", static_cast<double>(revision)}};
  d.action = action;
  return d;
}

}  // namespace

TEST_CASE("pushed configs: revisions grow, reports and births move only the newest push's state",
          "[cloud][remote_config]") {
  std::vector<std::string> topics;
  std::map<std::string, std::string> kept;
  cloud::RemotePushes::Hooks hooks{
      [&](const std::string& topic, const std::vector<std::uint8_t>&, bool retained) {
        CHECK(retained);
        topics.push_back(topic);
        return true;
      },
      [&](const std::string& id, const std::string& json) -> schemas::Status {
        kept[id] = json;
        return schemas::Ok{};
      },
      nullptr};
  cloud::RemotePushes pushes(hooks);
  CHECK(pushes.next_revision(1000) == 1000);
  CHECK(pushes.next_revision(900) == 1001);  // a clock that went back still gives a larger one
  const std::uint64_t first = pushes.next_revision(2000);
  pushes.push(cloud::PushKind::config, {{"gw-1", "cloud/eu/par/par-a1", "1"}}, first, {0xa0}, "ops", 2000);
  const std::uint64_t second = pushes.next_revision(3000);
  pushes.push(cloud::PushKind::config, {{"gw-1", "cloud/eu/par/par-a1", "1"}}, second, {0xa0}, "ops", 3000);
  CHECK(topics == std::vector<std::string>(2, "nova/v1/down/cloud/eu/par/par-a1/gw-1/config"));

  const auto state = [&] {
    return pushes.list(cloud::PushKind::config, [](const cloud::PushState&) { return true; }).at(0);
  };
  CHECK(pushes.on_report(report("config_applied", first, "config revision 2000 in force"), 3100));
  CHECK(state().state == "pending");  // a report of the older push
  CHECK(pushes.on_report(report("config_refused", second, "config.values.x: unknown key"), 3200));
  CHECK(state().state == "refused");
  CHECK(state().reason == "config.values.x: unknown key");
  CHECK_FALSE(pushes.on_report(report("threshold_alert", second, "alerted"), 3300));  // a decision

  schemas::NodeState birth;
  birth.node = "gw-1";
  birth.config_revision = second;
  pushes.on_birth(birth, 3400);
  CHECK(state().state == "running");
  CHECK(state().reason.empty());

  // After a restart: the states come back, and revisions keep growing past them.
  cloud::RemotePushes restarted(hooks);
  for (const auto& [id, json] : kept) CHECK(restarted.restore(json));
  CHECK(restarted.list(cloud::PushKind::config, [](const cloud::PushState&) { return true; }).at(0).state == "running");
  CHECK(restarted.next_revision(10) == second + 1);
  CHECK_FALSE(restarted.restore("{\"kind\":\"firmware\"}"));
}
