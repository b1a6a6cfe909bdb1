// Issue 12, data residency, over the real five-tier hierarchy with mutual TLS
// (broker-bridge/examples/five-tier.yaml: eu is region eu-west, us is us-east):
//   - a nova-agent at par-a1 (eu-west) marks its metrics stream resident: no raw record
//     is ever seen at the cloud broker nor at any us-east broker (an operator subscriber
//     at each), while the region's top broker eu sees them all, the regional nova-cloud
//     there stores every record the agent made (sent = stored), and the cloud instance
//     gets the agent's aggregates;
//   - the cloud instance takes each node's region from the topology: a birth claiming
//     another region is ignored (counted), a birth at another site than the topology's is
//     refused (counted), and a workload bound to eu-west is refused on a node whose birth
//     claims eu-west but whose site is in us-east, with the reason in the REST answer.
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "cloud_process.h"
#include "hierarchy_support.h"
#include "mqtt_support.h"
#include "nova/agent/outbox.h"
#include "nova/schemas/codec.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/poll.h"
#include "workload_spec.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kNode = "gw-par-a1";  // site par-a1, region eu-west
constexpr const char* kAuditor = "auditor";  // an operator: may read resident data at every broker

std::uint64_t watermark(const test::CloudProcess& cloud, const std::string& node, const std::string& stream) {
  const json n = cloud.get_json("/api/v1/nodes/" + node);
  if (n.is_null() || n.is_discarded() || !n.contains("watermarks") || !n["watermarks"].contains(stream)) return 0;
  return n["watermarks"][stream].get<std::uint64_t>();
}

// A retained birth of `node` published with its own certificate at `site`'s broker.
void forge_birth(const hiertest::RunningHierarchy& h, const std::string& node, const std::string& site,
                 const std::string& claimed_site, const std::optional<std::string>& claimed_region) {
  schemas::NodeState st;
  st.node = node;
  st.status = schemas::NodeStatus::online;
  st.bdseq = 1;
  st.description = schemas::NodeDescription{4, claimed_site, "x86_64", "t", {"gpu"}, {4000, 4096, 10000}, claimed_region};
  const schemas::Bytes bytes = schemas::encode_cbor(st);
  hiertest::Client c(hiertest::endpoint(h, site, node));
  hiertest::connect_all({&c});
  c.publish_wait("nova/v1/up/" + node + "/state", std::string(bytes.begin(), bytes.end()), true);
}

}  // namespace

TEST_CASE("a resident stream stays in its region, its aggregates reach the cloud, placement honours the topology's regions",
          "[cloud][residency]") {
  const tiers::Topology topology = hiertest::load_topology(NOVA_EXAMPLE_TOPOLOGY);
  auto h = hiertest::start_hierarchy(topology, "nova-residency", testing::Transport::mutual_tls, {kAuditor});
  const fs::path dir = h->dir.path() / "residency";
  const std::string topology_yaml = std::string("residency:\n  topology_file: ") + NOVA_EXAMPLE_TOPOLOGY + "\n";
  test::CloudProcess cloud(h->tls_uri("cloud"), dir / "cloud", "nova-cloud", "", 180, h->identity("nova-cloud"),
                           topology_yaml);
  test::CloudProcess regional(h->tls_uri("eu"), dir / "regional", "nova-cloud", "", 180, h->identity("nova-cloud"),
                              topology_yaml + "  role: regional\n  region: eu-west\n");

  // Raw resident records, wherever they may show up: the cloud and every us-east broker
  // must see none; eu, the top of eu-west, sees them all (and proves the watch works).
  std::vector<std::pair<std::string, std::unique_ptr<hiertest::Client>>> watchers;
  std::vector<hiertest::Client*> clients;
  for (const tiers::Site& s : topology.sites()) {
    if (s.region == "eu-west" && s.id() != "eu") continue;
    watchers.emplace_back(s.id(), std::make_unique<hiertest::Client>(
                                      hiertest::endpoint(*h, s.id(), hiertest::operator_identity(kAuditor))));
    clients.push_back(watchers.back().second.get());
  }
  hiertest::connect_all(clients);
  for (hiertest::Client* c : clients) c->subscribe("nova/v1/resident/#");

  const tiers::Site& site = topology.site(topology.find_node(kNode)->site);
  const fs::path adir = dir / kNode;
  fs::create_directories(adir);
  const testing::TlsIdentity id = h->identity(kNode);
  const std::string tls = ", tls_ca_file: " + id.ca.string() + ", tls_cert_file: " + id.cert.string() +
                          ", tls_key_file: " + id.key.string();
  const auto write_config = [&](int interval_ms, int batch_interval_s) {
    testing::write_agent_config(adir / "agent.yaml", kNode, site.path.str(), 4, h->tls_uri(site.id()), adir,
                                "metrics: {interval_ms: " + std::to_string(interval_ms) +
                                    ", batch_interval_s: " + std::to_string(batch_interval_s) +
                                    "}\ndrain: {jitter_ms: 0}\nresidency: {region: eu-west, streams: [metrics]}\n",
                                tls);
  };
  write_config(100, 10);  // the shortest batch interval: a batch every 10 s
  auto agent = std::make_unique<testing::AgentProcess>(NOVA_AGENT_BIN, adir / "agent.yaml", adir / "agent.log");

  // The cloud stores aggregates only (stream "aggregates"), the regional store the raw batches.
  REQUIRE(testing::poll_until([&] { return watermark(cloud, kNode, "aggregates") >= 2; }, 60s));
  REQUIRE(testing::poll_until([&] { return watermark(regional, kNode, "metrics") >= 2; }, 30s));
  CHECK(watermark(cloud, kNode, "metrics") == 0);
  CHECK(watermark(regional, kNode, "aggregates") == 0);

  // Sent = stored: stop the agent, count what it made, let it drain without making more.
  agent->signal(SIGKILL);
  agent.reset();
  std::uint64_t made = 0;
  std::uint64_t aggregated = 0;
  {
    agent::OutboxOptions o;
    o.dir = adir / "outbox";
    auto outbox = agent::Outbox::open(o);
    REQUIRE(outbox.ok());
    auto stats = outbox.value()->stats();
    made = stats["metrics"].next_seq - 1;
    aggregated = stats["aggregates"].next_seq - 1;
  }
  CHECK(aggregated == made);  // one aggregate per batch
  REQUIRE(made >= 2);
  write_config(1000, 3600);  // no new batch for an hour: only the backlog goes out
  agent = std::make_unique<testing::AgentProcess>(NOVA_AGENT_BIN, adir / "agent.yaml", adir / "agent.log");
  CHECK(testing::poll_until([&] { return watermark(regional, kNode, "metrics") == made; }, 60s));
  REQUIRE(testing::poll_until([&] {  // alive again (the placement below needs it)
    const json n = cloud.get_json(std::string("/api/v1/nodes/") + kNode);
    return !n.is_null() && !n.is_discarded() && n.value("liveness", "") == "alive";
  }, 30s));
  CHECK(watermark(regional, kNode, "metrics") == made);

  std::set<std::string> seen_at_top;  // distinct raw records (a resend repeats one)
  for (const auto& [where, c] : watchers) {
    INFO("broker " << where);
    if (where == "eu") {
      // The regional nova-cloud probes its own subscription on a topic of its region
      // (render.h: nova/v1/resident/<region>/probe/nova-cloud); that is not data.
      const std::string probe = "nova/v1/resident/eu-west/probe/nova-cloud";
      REQUIRE(c->wait_until([&](const std::vector<hiertest::Received>& m) {
        std::set<std::string> distinct;
        for (const auto& r : m) {
          if (r.topic != probe) distinct.insert(r.payload);
        }
        return distinct.size() >= made;
      }, 30s));
      for (const auto& r : c->messages()) {
        if (r.topic == probe) continue;
        CHECK(r.topic == std::string("nova/v1/resident/eu-west/") + kNode + "/metrics");
        seen_at_top.insert(r.payload);
      }
    } else {
      CHECK(c->count() == 0);
    }
  }
  CHECK(seen_at_top.size() == made);
  std::cout << "residency: " << made << " resident batches made, " << watermark(regional, kNode, "metrics")
            << " stored regionally, " << seen_at_top.size() << " distinct at eu, 0 at the cloud and "
            << watchers.size() - 2 << " us-east brokers; " << watermark(cloud, kNode, "aggregates")
            << " aggregates at the cloud\n";

  // The cloud holds one sample per batch (the aggregate), never a batch's raw samples.
  CHECK(testing::poll_until([&] { return watermark(cloud, kNode, "aggregates") == aggregated; }, 30s));
  CHECK(cloud.get_json(std::string("/api/v1/nodes/") + kNode + "/metrics").size() == aggregated);

  // Placement: gw-nyc-a1's birth claims eu-west (its site nyc-a1 is in us-east) and the
  // gpu the workload needs; dev-nyc-a1-1's birth claims a site in eu.
  forge_birth(*h, "gw-nyc-a1", "nyc-a1", "cloud/us/nyc/nyc-a1", "eu-west");
  forge_birth(*h, "dev-nyc-a1-1", "nyc-a1", "cloud/eu/par/par-a1", std::nullopt);
  REQUIRE(testing::poll_until([&] {
    const json n = cloud.get_json("/api/v1/nodes/gw-nyc-a1");
    return !n.is_null() && !n.is_discarded() && n.value("liveness", "") == "alive";
  }, 30s));
  const json nyc = cloud.get_json("/api/v1/nodes/gw-nyc-a1");
  CHECK(nyc["region"] == "us-east");
  // dev-nyc-a1-1's birth was published after gw-nyc-a1's, by another connection.
  CHECK(testing::poll_until([&] {
    return cloud.get("/metrics")->body.find("nova_cloud_records_rejected_total{reason=\"site_mismatch\"} 1\n") !=
           std::string::npos;
  }, 30s));
  CHECK(cloud.get("/metrics")->body.find("nova_cloud_births_region_ignored_total 1\n") != std::string::npos);
  const json dev = cloud.get_json("/api/v1/nodes/dev-nyc-a1-1");
  CHECK((dev.is_null() || dev.is_discarded() || !dev.contains("liveness")));

  json spec = json::parse(test::workload_spec("eu-only", "echo never", 60000));
  spec["region"] = "eu-west";
  spec["caps"] = {"gpu"};
  spec["tiers"] = {4};
  auto submitted = cloud.post("/api/v1/workloads", spec.dump());
  REQUIRE(submitted);
  INFO(submitted->body);
  CHECK(submitted->status == 201);
  const json w = json::parse(submitted->body);
  CHECK(w["phase"] == "pending");
  const std::string reason = w.value("unplaced_reason", "");
  CHECK_THAT(reason, Catch::Contains("region 1 (region: the workload must stay in 'eu-west', node 'gw-nyc-a1' is in "
                                     "'us-east')"));
  CHECK_THAT(reason, Catch::Contains("capability 1 (capability: 'gpu' missing"));
}
