// Issue 14, the local model, over the real hierarchy with mutual TLS: nova-cloud, an
// access broker bridged to the cloud broker, a nova-agent process at the access site and
// a sensor with its own certificate. A logistic model pushed with curl through
// POST /api/v1/models is applied (the retained birth names its id and revision); sensor
// readings published with mosquitto_pub push its score over the threshold, and the
// decision record reaches nova-cloud. Then the access site's uplink is cut (the cloud
// broker stops): the model keeps deciding on the readings, and once the cloud broker is
// back every decision record is stored once, none skipped, and the birth others read
// at the cloud broker still names the model.
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include "cloud_process.h"
#include "hierarchy_support.h"
#include "nova/schemas/codec.h"
#include "nova/testing/agent_process.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// What a command prints on stdout.
std::string output_of(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  std::string out;
  char buf[4096];
  for (std::size_t n; pipe && (n = std::fread(buf, 1, sizeof buf, pipe.get())) > 0;) out.append(buf, n);
  return out;
}

// The model decisions nova-cloud lists for gw-a1 (newest first).
std::vector<json> model_decisions(const json& list) {
  std::vector<json> out;
  for (const json& d : list) {
    if (d["kind"] == "model_decision") out.push_back(d);
  }
  return out;
}

std::uint64_t metric(const test::CloudProcess& cloud, const std::string& line_start) {
  auto r = cloud.get("/metrics");
  if (!r) return ~std::uint64_t{0};
  const auto at = r->body.find("\n" + line_start + " ");
  return at == std::string::npos ? ~std::uint64_t{0} : std::stoull(r->body.substr(at + line_start.size() + 2));
}

}  // namespace

TEST_CASE("a logistic model pushed by REST decides on sensor readings and its decisions cut off from the cloud arrive once",
          "[cloud][model][e2e]") {
  const tiers::Topology topology = hiertest::gateway_topology("model");
  auto h = hiertest::start_hierarchy(topology, "nova-model", testing::Transport::mutual_tls, {"watcher"}, {"gw-a1.s1"});
  const fs::path dir = h->dir.path() / "model";
  test::CloudProcess cloud(h->tls_uri("cloud"), dir / "cloud", "nova-cloud", "", 180, h->identity("nova-cloud"));

  // The z-score off: the only decisions on the sensor's gauges are the model's. A record
  // the cloud broker takes before nova-cloud has subscribed again is lost there and sent
  // again by the agent after drain.resend_after_s (go-back-N): 2 s rather than 30.
  const std::string settings =
      "metrics: {interval_ms: 100, batch_interval_s: 10}\ndrain: {jitter_ms: 0, resend_after_s: 2}\n"
      "anomaly: {zscore: 0}\n";
  const fs::path adir = dir / "gw-a1";
  fs::create_directories(adir);
  testing::write_agent_config(adir / "agent.yaml", "gw-a1", "cloud/a1", 2, h->tls_uri("a1"), adir, settings,
                              h->agent_tls_keys("gw-a1"));
  testing::AgentProcess agent(NOVA_AGENT_BIN, adir / "agent.yaml", adir / "agent.log");
  REQUIRE(cloud.poll_json("/api/v1/nodes/gw-a1", [](const json& n) { return n["liveness"] == "alive"; }, 60s));

  // score = sigmoid(-10 + 0.1 temp + 1.0 vib): temp 50, vib 8 scores sigmoid(3) = 0.9526;
  // temp 20, vib 1 scores sigmoid(-7) = 0.0009.
  const fs::path body = adir / "model.json";
  std::ofstream(body) << R"({"model_id": "overheat", "kind": "logistic", "features": ["sensor.s1.temp", "sensor.s1.vib"],)"
                      << R"( "weights": [0.1, 1.0], "params": {"bias": -10.0, "threshold": 0.8},)"
                      << R"( "action": "cooling requested"})";
  const std::string pushed = output_of("curl -sS -w '\\n%{http_code}' -H 'Authorization: Bearer " + cloud.admin_token() +
                                       "' -H 'Content-Type: application/json' --data-binary @" + body.string() +
                                       " 'http://127.0.0.1:" + std::to_string(cloud.port()) + "/api/v1/models?node=gw-a1'");
  INFO(pushed);
  REQUIRE(pushed.ends_with("\n201"));
  const std::uint64_t revision = json::parse(pushed.substr(0, pushed.rfind('\n')))["revision"];
  REQUIRE(cloud.poll_json("/api/v1/models?node=gw-a1", [](const json& l) {
    return l.size() == 1 && l[0]["state"] == "running";
  }, 30s));
  CHECK(agent.wait_log("event=model_applied model=overheat revision=" + std::to_string(revision) +
                           " kind=logistic features=2 threshold=0.8", 10s));
  // The birth others read at the cloud broker names the model in force.
  const std::string birth_command = "mosquitto_sub " + h->mosquitto_client_args("cloud", hiertest::operator_identity("watcher")) +
                                    " -q 1 -C 1 -W 10 --retained-only -N -t nova/v1/up/gw-a1/state";
  auto birth_names_model = [&] {
    auto state = schemas::decode_cbor<schemas::NodeState>(output_of(birth_command));
    return state.ok() && state->model_revision == revision && state->model_id == "overheat";
  };
  CHECK(birth_names_model());

  const std::string publish = "mosquitto_pub " + h->mosquitto_client_args("a1", "sensor.gw-a1.s1") +
                              " -q 1 -t nova/v1/sensor/gw-a1/s1 -m ";
  const std::string hot = publish + R"('{"v":1,"ts":1,"values":{"temp":50,"vib":8}}')";
  const std::string calm = publish + R"('{"v":1,"ts":1,"values":{"temp":20,"vib":1}}')";
  const std::string decided = "metric=model.overheat message=\"model overheat revision";
  const std::string recovered = "metric=model.overheat message=\"model overheat score";
  // One reading at a time: each goes into the next sample, and a second reading before
  // that sample would replace the first.
  REQUIRE(std::system(hot.c_str()) == 0);
  REQUIRE(agent.wait_log(decided, 10s, 1));
  REQUIRE(std::system(calm.c_str()) == 0);
  REQUIRE(agent.wait_log(recovered, 10s, 1));

  REQUIRE(cloud.poll_json("/api/v1/decisions?node=gw-a1", [](const json& l) { return model_decisions(l).size() == 1; }, 30s));
  const json first = model_decisions(cloud.get_json("/api/v1/decisions?node=gw-a1"))[0];
  INFO(first.dump());
  CHECK(first["inputs"]["sensor.s1.temp"] == 50.0);
  CHECK(first["inputs"]["sensor.s1.vib"] == 8.0);
  CHECK(first["inputs"]["score"].get<double>() == Approx(1 / (1 + std::exp(-3.0))));
  CHECK(first["inputs"]["threshold"] == 0.8);
  CHECK(first["inputs"]["model_revision"].get<double>() == static_cast<double>(revision));
  CHECK(first["action"] == "model overheat: cooling requested");
  CHECK(first["offline"] == false);

  // The uplink is cut: the cloud broker goes down. The model keeps deciding.
  (*h)->stop("cloud");
  for (std::size_t i = 2; i <= 4; ++i) {
    REQUIRE(std::system(hot.c_str()) == 0);
    REQUIRE(agent.wait_log(decided, 10s, i));
    REQUIRE(std::system(calm.c_str()) == 0);
    REQUIRE(agent.wait_log(recovered, 10s, i));
  }

  // Back: every decision is stored once, none skipped.
  (*h)->start_site("cloud");
  REQUIRE(cloud.poll_json("/api/v1/decisions?node=gw-a1", [](const json& l) { return model_decisions(l).size() >= 4; }, 60s));
  const std::vector<json> all = model_decisions(cloud.get_json("/api/v1/decisions?node=gw-a1"));
  CHECK(all.size() == 4);
  std::set<std::string> ids;
  for (const json& d : all) {
    ids.insert(d["decision_id"].get<std::string>());
    CHECK(d["inputs"]["sensor.s1.temp"] == 50.0);
    CHECK(d["inputs"]["model_revision"].get<double>() == static_cast<double>(revision));
  }
  CHECK(ids.size() == 4);
  CHECK(metric(cloud, "nova_cloud_seqs_skipped_total") == 0);
  // The birth at the restarted cloud broker still names the model.
  CHECK(birth_names_model());

  // A tree ensemble whose child comes before its node is refused at the API with the
  // reason an agent would give; nothing is published, so the retained logistic model
  // stays at the broker (the birth still names it) and stays in force.
  const json before = cloud.get_json("/api/v1/models?node=gw-a1");
  auto bad = cloud.post("/api/v1/models?node=gw-a1",
                        R"({"model_id": "loop", "kind": "tree_ensemble", "features": ["sensor.s1.temp"],)"
                        R"( "params": {"threshold": 1.0}, "trees": [[{"feature": 0, "split": 1.0, "left": 0, "right": 1}, {"leaf": 1.0}]]})");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK_THAT(bad->body, Catch::Contains("model.trees[0][0].left: 0 is not after its node 0"));
  CHECK(cloud.get_json("/api/v1/models?node=gw-a1") == before);
  CHECK(birth_names_model());
  REQUIRE(std::system(hot.c_str()) == 0);
  CHECK(agent.wait_log(decided, 10s, 5));
  CHECK(agent.running());
  agent.signal(SIGTERM);
}
