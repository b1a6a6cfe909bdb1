// Issue 13, remote config and models, over the real five-tier hierarchy with mutual TLS:
// nova-cloud and three nova-agent processes. A config pushed by REST to a subtree reaches
// exactly the nodes below it (retained on their down topics, read back with mosquitto_sub),
// each applies it and acknowledges the revision (a record, and its birth); a config the
// agent must refuse, and a model of a kind it does not run, come back refused with the
// agent's reason, shown by the API.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <thread>

#include "cloud_process.h"
#include "hierarchy_support.h"
#include "nova/schemas/codec.h"
#include "nova/testing/agent_process.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* const kNodes[] = {"dev-par-a1-1", "dev-par-a2-1", "dev-ber-a1-1"};


// The states listed by GET `path`, by node.
std::map<std::string, json> by_node(const json& list) {
  std::map<std::string, json> out;
  for (const json& s : list) out[s["node"]] = s;
  return out;
}

constexpr const char* kObserver = "remote-check";  // an operator: reads nova/v1/up/# anywhere

// The retained message on `topic` at `site`'s broker, as mosquitto_sub reads it with the
// certificate `cn`. The brokers take the client id from the certificate
// (use_username_as_clientid): nova-cloud's own identity may be used only where nova-cloud
// is not connected (an access broker), or it would take nova-cloud's session over.
std::string retained(const hiertest::RunningHierarchy& h, const std::string& site, const std::string& topic,
                     const std::string& cn) {
  const testing::TlsIdentity id = h.identity(cn);
  const std::string uri = h.tls_uri(site);                          // mqtts://127.0.0.1:<port>
  const std::string port = uri.substr(uri.rfind(':') + 1);
  const std::string cmd = "mosquitto_sub -h 127.0.0.1 -p " + port + " --cafile " + id.ca.string() + " --cert " +
                          id.cert.string() + " --key " + id.key.string() +
                          " -q 1 -C 1 -W 10 --retained-only -N -t '" + topic + "'";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(cmd.c_str(), "r"), ::pclose);
  std::string out;
  char buf[4096];
  for (std::size_t n; pipe && (n = std::fread(buf, 1, sizeof buf, pipe.get())) > 0;) out.append(buf, n);
  return out;
}

}  // namespace

TEST_CASE("configs and models pushed by REST to a node or subtree are applied, acknowledged, or refused with the reason",
          "[cloud][remote_config][e2e]") {
  const tiers::Topology topology = hiertest::load_topology(NOVA_EXAMPLE_TOPOLOGY);
  auto h = hiertest::start_hierarchy(topology, "nova-remote-config", testing::Transport::mutual_tls, {kObserver});
  const fs::path dir = h->dir.path() / "remote";
  test::CloudProcess cloud(h->tls_uri("cloud"), dir / "cloud", "nova-cloud", "", 180, h->identity("nova-cloud"));

  std::map<std::string, std::unique_ptr<testing::AgentProcess>> agents;
  std::map<std::string, std::string> sites;  // node -> site id
  for (const char* node : kNodes) {
    const tiers::NodeSpec* spec = topology.find_node(node);
    REQUIRE(spec != nullptr);
    const tiers::Site& site = topology.site(spec->site);
    sites[node] = site.id();
    const fs::path adir = dir / node;
    fs::create_directories(adir);
    const testing::TlsIdentity id = h->identity(node);
    testing::write_agent_config(adir / "agent.yaml", node, site.path.str(), 5, h->tls_uri(site.id()), adir, "",
                                ", tls_ca_file: " + id.ca.string() + ", tls_cert_file: " + id.cert.string() +
                                    ", tls_key_file: " + id.key.string());
    agents[node] = std::make_unique<testing::AgentProcess>(NOVA_AGENT_BIN, adir / "agent.yaml", adir / "agent.log");
  }
  REQUIRE(cloud.poll_json("/api/v1/nodes", [](const json& nodes) {
    int alive = 0;
    for (const auto& n : nodes) alive += n["liveness"] == "alive" ? 1 : 0;
    return alive == 3;
  }, 60s));

  // A config to the Paris subtree: the two Paris devices, not Berlin's.
  auto pushed = cloud.post("/api/v1/configs?subtree=cloud/eu/par", R"({"values": {"drain.rate_per_s": 7}})");
  REQUIRE(pushed);
  INFO(pushed->body);
  REQUIRE(pushed->status == 201);
  const json answer = json::parse(pushed->body);
  const std::uint64_t revision = answer["revision"];
  REQUIRE(answer["nodes"].size() == 2);
  REQUIRE(cloud.poll_json("/api/v1/configs", [&](const json& list) {
    const auto s = by_node(list);
    return s.size() == 2 && s.at("dev-par-a1-1")["state"] == "running" && s.at("dev-par-a2-1")["state"] == "running";
  }, 60s));
  for (const char* node : {"dev-par-a1-1", "dev-par-a2-1"}) {
    CHECK(agents.at(node)->wait_log("event=config_applied source=remote", 10s));
    // Retained at the node's own access broker, signed, carrying the revision.
    const std::string topic = "nova/v1/down/" + topology.site(topology.find_node(node)->site).path.str() + "/" + node + "/config";
    const std::string envelope = retained(*h, sites.at(node), topic, "nova-cloud");  // only nova-cloud reads down topics
    REQUIRE_FALSE(envelope.empty());
    auto signed_message = schemas::decode_cose_sign1(
        std::span(reinterpret_cast<const std::uint8_t*>(envelope.data()), envelope.size()));
    REQUIRE(signed_message.ok());
    auto config = schemas::decode_cbor<schemas::Config>(
        std::span(signed_message->message.data(), signed_message->message.size()));
    REQUIRE(config.ok());
    CHECK(config->revision == revision);
  }
  CHECK(agents.at("dev-ber-a1-1")->text().find("source=remote") == std::string::npos);
  CHECK(cloud.poll_json("/api/v1/configs?node=dev-par-a1-1", [&](const json& l) {
    return l.size() == 1 && l[0]["revision"] == revision && l[0]["pushed_by"] == "test-admin";
  }, 10s));
  // The birth names the revision the node runs (retained at the cloud broker).
  const std::string birth = retained(*h, "cloud", "nova/v1/up/dev-par-a1-1/state", hiertest::operator_identity(kObserver));
  auto state = schemas::decode_cbor<schemas::NodeState>(birth);
  REQUIRE(state.ok());
  CHECK(state->config_revision == revision);

  // A config the agent refuses: its reason comes back.
  auto refused = cloud.post("/api/v1/configs?node=dev-ber-a1-1", R"({"values": {"trust.signing_keys": "/tmp/attacker.pub"}})");
  REQUIRE(refused);
  REQUIRE(refused->status == 201);
  REQUIRE(cloud.poll_json("/api/v1/configs?node=dev-ber-a1-1", [](const json& l) {
    return l.size() == 1 && l[0]["state"] == "refused";
  }, 60s));
  CHECK_THAT(cloud.get_json("/api/v1/configs?node=dev-ber-a1-1")[0]["reason"].get<std::string>(),
             Catch::Contains("trust keys cannot be changed remotely"));

  // Models: one the agent runs, and one of a kind it does not.
  auto model = cloud.post("/api/v1/models?node=dev-par-a1-1", R"({"model_id": "z1", "kind": "zscore", "params": {"threshold": 5}})");
  REQUIRE(model);
  REQUIRE(model->status == 201);
  // A kind no agent runs is refused at the API, before anything is published.
  auto linear = cloud.post("/api/v1/models?node=dev-par-a2-1", R"({"model_id": "l1", "kind": "linear", "weights": [1.0, 2.0]})");
  REQUIRE(linear);
  CHECK(linear->status == 400);
  CHECK_THAT(linear->body, Catch::Contains("model.kind: 'linear' is not one agents run (zscore, logistic, tree_ensemble)"));
  auto fraction = cloud.post("/api/v1/models?node=dev-par-a2-1", R"({"model_id": "z3", "kind": "zscore", "params": {"window": 2.5}})");
  REQUIRE(fraction);
  CHECK(fraction->status == 400);
  CHECK_THAT(fraction->body, Catch::Contains("model.params.window: must be a whole number 1..1000000"));
  REQUIRE(cloud.poll_json("/api/v1/models", [](const json& list) {
    const auto s = by_node(list);
    return s.size() == 1 && s.at("dev-par-a1-1")["state"] == "running";
  }, 60s));
  CHECK(agents.at("dev-par-a1-1")->wait_log("event=model_applied model=z1", 10s));

  // Bad requests name the field; nothing is pushed.
  auto bad = cloud.post("/api/v1/configs?node=dev-par-a1-1", R"({"values": {"drain.rate_per_s": [1]}})");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK_THAT(bad->body, Catch::Contains("config.values"));
  auto sets_revision = cloud.post("/api/v1/configs?node=dev-par-a1-1", R"({"revision": 1, "values": {}})");
  REQUIRE(sets_revision);
  CHECK(sets_revision->status == 400);
  CHECK_THAT(sets_revision->body, Catch::Contains("revision: set by nova-cloud, not by the caller"));
  auto no_target = cloud.post("/api/v1/models", R"({"model_id": "z2", "kind": "zscore"})");
  REQUIRE(no_target);
  CHECK(no_target->status == 400);
  auto unknown = cloud.post("/api/v1/configs?node=nobody", R"({"values": {}})");
  REQUIRE(unknown);
  CHECK(unknown->status == 404);
  for (auto& [node, agent] : agents) CHECK(agent->running());

  // Audited: the request, and each retained message published to a node.
  std::ifstream audit(cloud.audit_file());
  const std::string trail((std::istreambuf_iterator<char>(audit)), std::istreambuf_iterator<char>());
  CHECK_THAT(trail, Catch::Contains("POST /api/v1/configs") && Catch::Contains("POST /api/v1/models"));
  CHECK_THAT(trail, Catch::Contains("nova/v1/down/cloud/eu/par/par-a2/dev-par-a2-1/config") &&
                        Catch::Contains("nova/v1/down/cloud/eu/par/par-a1/dev-par-a1-1/model"));
  // The models refused at the API were never published.
  CHECK_THAT(trail, !Catch::Contains("nova/v1/down/cloud/eu/par/par-a2/dev-par-a2-1/model"));
}
