// Verdicts (cloud/include/nova/cloud/verdicts.h): the policy's parsing, the rules, and the
// whole path on a detached CloudService: a birth and a decision record delivered, the
// verdict published on the node's down topic once, the agent's record of the override,
// and GET /api/v1/decisions by role and scope.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nova/cloud/auth.h"
#include "nova/cloud/config.h"
#include "nova/cloud/http_api.h"
#include "nova/cloud/service.h"
#include "nova/cloud/verdicts.h"
#include "nova/schemas/codec.h"
#include "nova/testing/temp_dir.h"

using namespace nova;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr schemas::Timestamp kT0 = 1732650000000;

// What the agent's DecisionEngine sends for a threshold alert (decisions.cpp).
schemas::DecisionRecord threshold_decision(const std::string& node, std::uint64_t seq, schemas::Timestamp ts,
                                           double warning = 90, double critical = 97) {
  schemas::DecisionRecord d;
  d.position = {node, "decisions", seq, std::nullopt};
  d.decision_id = "decisions-" + std::to_string(seq);
  d.ts = ts;
  d.kind = "threshold_alert";
  d.inputs = {{"cpu", 93}, {"threshold", warning}, {"warning", warning}, {"critical", critical}};
  d.action = "alerted";
  d.offline = true;
  return d;
}

cloud::VerdictPolicy policy(std::uint32_t rate_limit, std::vector<std::string> actions, std::vector<std::string> bounds) {
  auto p = cloud::parse_verdict_policy(true, rate_limit, 60, actions, bounds);
  REQUIRE(p.ok());
  return p.value();
}

std::string cbor(const auto& message) {
  const schemas::Bytes b = schemas::encode_cbor(message);
  return std::string(b.begin(), b.end());
}

}  // namespace

TEST_CASE("the verdict policy: errors name the key and the entry", "[cloud][verdicts]") {
  auto bad_level = cloud::parse_verdict_policy(true, 0, 60, {"9:alerted"}, {});
  REQUIRE_FALSE(bad_level.ok());
  CHECK(bad_level.error().message() == "verdicts.allowed_actions: \"9:alerted\": level must be 1..5");
  auto bad_bounds = cloud::parse_verdict_policy(true, 0, 60, {}, {"cpu:90..80"});
  REQUIRE_FALSE(bad_bounds.ok());
  CHECK(bad_bounds.error().message() == "verdicts.threshold_bounds: \"cpu:90..80\": expected numbers 0 <= min <= max");
  CHECK_FALSE(cloud::parse_verdict_policy(true, 0, 60, {}, {"cpu=80"}).ok());

  // In the config file, with the line.
  auto config = cloud::parse_config(
      "verdicts:\n  rate_limit: 30\n  rate_window_s: 60\n  allowed_actions: [\"5:alerted\"]\n"
      "  threshold_bounds: [\"cpu:50..80\"]\n");
  REQUIRE(config.ok());
  const cloud::VerdictPolicy& p = config->service_options().verdicts;
  CHECK(p.rate_limit == 30);
  CHECK(p.allowed_actions.at(5) == std::set<std::string>{"alerted"});
  CHECK(p.threshold_bounds.at("cpu") == cloud::ThresholdBounds{50, 80});
  auto wrong = cloud::parse_config("verdicts:\n  threshold_bounds: [\"cpu:lots\"]\n");
  REQUIRE_FALSE(wrong.ok());
  CHECK_THAT(wrong.error().message(), Catch::StartsWith("verdicts.threshold_bounds: \"cpu:lots\""));
}

TEST_CASE("the rules: rate limit by the decisions' own time, allowed actions per tier, threshold bounds",
          "[cloud][verdicts]") {
  SECTION("a threshold outside the bounds is overridden with levels brought within them") {
    cloud::VerdictJudge judge(policy(0, {}, {"cpu:50..80"}));
    const auto v = judge.judge("gw-1", 4, threshold_decision("gw-1", 1, kT0), kT0 + 5);
    CHECK(v.verdict == schemas::Verdict::overridden);
    CHECK(v.gauge == "cpu");
    CHECK(v.warning == 80);
    CHECK(v.critical == 80);
    CHECK(v.reason == "cpu levels warning 90 critical 97 outside verdicts.threshold_bounds 50..80: set to 80 80");
    CHECK(judge.judge("gw-1", 4, threshold_decision("gw-1", 2, kT0, 70, 80), kT0).verdict == schemas::Verdict::accepted);
    // A level that is off stays off.
    const auto off = judge.judge("gw-1", 4, threshold_decision("gw-1", 3, kT0, 0, 97), kT0);
    CHECK(off.warning == 0);
    CHECK(off.critical == 80);
  }
  SECTION("an action not allowed at the node's tier is rejected; other tiers allow any") {
    cloud::VerdictJudge judge(policy(0, {"5:alerted", "5:throttled"}, {}));
    auto d = threshold_decision("dev-1", 1, kT0);
    d.action = "rebooted";
    const auto v = judge.judge("dev-1", 5, d, kT0);
    CHECK(v.verdict == schemas::Verdict::rejected);
    CHECK(v.reason == "action 'rebooted' is not allowed at tier level 5 (verdicts.allowed_actions: alerted, throttled)");
    CHECK(judge.judge("gw-1", 4, d, kT0).verdict == schemas::Verdict::accepted);
  }
  SECTION("the rate limit counts a node's decisions by when they were taken") {
    cloud::VerdictJudge judge(policy(2, {}, {}));  // 2 per 60 s
    // A backlog decided offline an hour ago, arriving now: three within one minute.
    const schemas::Timestamp now = kT0 + 3'600'000;
    CHECK(judge.judge("gw-1", 4, threshold_decision("gw-1", 1, kT0), now).verdict == schemas::Verdict::accepted);
    CHECK(judge.judge("gw-1", 4, threshold_decision("gw-1", 2, kT0 + 10'000), now).verdict == schemas::Verdict::accepted);
    const auto third = judge.judge("gw-1", 4, threshold_decision("gw-1", 3, kT0 + 20'000), now);
    CHECK(third.verdict == schemas::Verdict::rejected);
    CHECK_THAT(*third.reason, Catch::StartsWith("rate limit: more than 2 decisions of gw-1 within 60 s"));
    // Another node has its own count; a minute later the first one's window has room.
    CHECK(judge.judge("gw-2", 4, threshold_decision("gw-2", 1, kT0), now).verdict == schemas::Verdict::accepted);
    CHECK(judge.judge("gw-1", 4, threshold_decision("gw-1", 4, kT0 + 75'000), now).verdict == schemas::Verdict::accepted);
  }
}

TEST_CASE("nova-cloud sends one verdict per decision, after the node's birth, and lists it with its override",
          "[cloud][verdicts]") {
  testing::TempDir dir("nova-verdicts");
  std::vector<std::pair<std::string, std::string>> published;  // verdicts: topic, payload
  cloud::CloudOptions options;
  options.store.dir = dir.path / "store";
  options.verdicts = policy(0, {}, {"cpu:50..80"});
  auto started = cloud::CloudService::start_detached(
      std::move(options), [&](const std::string& topic, const std::vector<std::uint8_t>& payload, bool) {
        if (topic.ends_with("/verdict")) published.emplace_back(topic, std::string(payload.begin(), payload.end()));
      });
  REQUIRE(started.ok());
  cloud::CloudService& svc = *started.value();

  // A decision taken offline arrives before the node's birth: it waits for it.
  const auto decision = threshold_decision("gw-1", 1, kT0);
  svc.deliver("nova/v1/up/gw-1/decision", cbor(decision), false);
  CHECK(published.empty());
  CHECK(svc.verdicts().counters().waiting == 1);
  schemas::NodeState birth;
  birth.node = "gw-1";
  birth.status = schemas::NodeStatus::online;
  birth.bdseq = 1;
  birth.ts = kT0;
  birth.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
  svc.deliver("nova/v1/up/gw-1/state", cbor(birth), true);
  REQUIRE(published.size() == 1);
  CHECK(published[0].first == "nova/v1/down/cloud/eu/par/par-a1/gw-1/verdict");
  auto verdict = schemas::decode_cbor<schemas::DecisionVerdict>(published[0].second);  // unsigned: no key set
  REQUIRE(verdict.ok());
  CHECK(verdict->verdict == schemas::Verdict::overridden);
  CHECK(verdict->decision_id == "decisions-1");
  CHECK(verdict->warning == 80);

  // The agent resends it (our ack was lost): a duplicate is not judged again.
  svc.deliver("nova/v1/up/gw-1/decision", cbor(decision), false);
  CHECK(published.size() == 1);
  CHECK(svc.verdicts().counters().overridden == 1);

  // The agent's record of the override marks the decision applied; it is not judged.
  schemas::DecisionRecord applied;
  applied.position = {"gw-1", "decisions", 2, std::nullopt};
  applied.decision_id = "decisions-2";
  applied.ts = kT0 + 100;
  applied.kind = "verdict_applied";
  applied.inputs = {{"warning", 80}, {"critical", 80}};
  applied.action = "cpu levels set to warning 80 critical 80 (were 90 97)";
  applied.applies = "decisions-1";
  svc.deliver("nova/v1/up/gw-1/decision", cbor(applied), false);
  CHECK(published.size() == 1);
  CHECK(svc.verdicts().counters().applied == 1);

  // GET /api/v1/decisions: viewers see it; a token scoped elsewhere does not.
  auto viewer = cloud::create_token("watcher", cloud::Role::viewer, "");
  auto asia = cloud::create_token("asia", cloud::Role::viewer, "cloud/asia");
  REQUIRE((viewer.ok() && asia.ok()));
  std::ofstream(dir.path / "tokens") << viewer->line << '\n' << asia->line << '\n';
  cloud::HttpOptions http;
  http.port = 8080;
  http.tokens = cloud::TokenStore::load(dir.path / "tokens").value();
  cloud::HttpRoutes routes(svc, http);
  const auto get = [&](const std::string& path, const std::string& token) {
    httplib::Request req;
    req.method = "GET";
    req.path = path.substr(0, path.find('?'));
    if (path.find('?') != std::string::npos) httplib::detail::parse_query_text(path.substr(path.find('?') + 1), req.params);
    req.headers = {{"Host", "127.0.0.1:8080"}, {"Authorization", "Bearer " + token}};
    httplib::Response res;
    routes.handle(req, res);
    return res;
  };
  const auto res = get("/api/v1/decisions?node=gw-1", viewer->token);
  REQUIRE(res.status == 200);
  const json list = json::parse(res.body);
  REQUIRE(list.size() == 1);  // the decision; the record of its override is shown with it
  CHECK(list[0]["decision_id"] == "decisions-1");
  CHECK(list[0]["site"] == "cloud/eu/par/par-a1");
  CHECK(list[0]["offline"] == true);
  CHECK(list[0]["verdict"]["verdict"] == "overridden");
  CHECK(list[0]["verdict"]["critical"] == 80.0);
  CHECK(list[0]["applied"]["applies"] == "decisions-1");
  CHECK(json::parse(get("/api/v1/decisions", asia->token).body).empty());
  CHECK(get("/api/v1/decisions?limit=0", viewer->token).status == 400);
  CHECK(get("/metrics", viewer->token).body.find("nova_cloud_verdicts_total{verdict=\"overridden\"} 1") != std::string::npos);

  // Pushing a config needs an operator: a viewer is refused before anything is published.
  httplib::Request push;
  push.method = "POST";
  push.path = "/api/v1/configs";
  push.params = {{"node", "gw-1"}};
  push.headers = {{"Host", "127.0.0.1:8080"}, {"Authorization", "Bearer " + viewer->token}, {"Content-Type", "application/json"}};
  push.body = R"({"values": {}})";
  httplib::Response refused;
  routes.handle(push, refused);
  CHECK(refused.status == 403);
  CHECK(svc.pushes().list(cloud::PushKind::config, [](const cloud::PushState&) { return true; }).empty());
}

TEST_CASE("the kept decisions and verdicts survive a restart of nova-cloud", "[cloud][verdicts]") {
  testing::TempDir dir("nova-verdicts-restart");
  const auto start = [&] {
    cloud::CloudOptions options;
    options.store.dir = dir.path / "store";
    auto s = cloud::CloudService::start_detached(std::move(options), [](auto&&...) {});
    REQUIRE(s.ok());
    return std::move(s).value();
  };
  {
    auto svc = start();
    schemas::NodeState birth;
    birth.node = "gw-1";
    birth.status = schemas::NodeStatus::online;
    birth.bdseq = 1;
    birth.ts = kT0;
    birth.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
    svc->deliver("nova/v1/up/gw-1/state", cbor(birth), true);
    svc->deliver("nova/v1/up/gw-1/decision", cbor(threshold_decision("gw-1", 1, kT0)), false);
  }
  auto svc = start();
  const auto kept = svc->verdicts().list(10, [](const cloud::DecisionEntry&) { return true; });
  REQUIRE(kept.size() == 1);
  CHECK(kept[0].record == threshold_decision("gw-1", 1, kT0));
  REQUIRE(kept[0].verdict);
  CHECK(kept[0].verdict->verdict == schemas::Verdict::accepted);
}
