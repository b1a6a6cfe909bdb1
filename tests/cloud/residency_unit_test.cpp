// nova-cloud's residency rules on delivered messages (a detached service, no broker):
// regions come from the topology, births at another site are refused, and the regional
// role stores its own region's resident data only. cloud_residency_test runs the same
// over a real hierarchy.
#include <catch2/catch.hpp>

#include "nova/cloud/service.h"
#include "nova/schemas/codec.h"
#include "nova/testing/temp_dir.h"

using namespace nova;
using namespace nova::schemas;

namespace {

std::shared_ptr<const tiers::Topology> example() {
  auto t = tiers::Topology::load(NOVA_SOURCE_DIR "/broker-bridge/examples/five-tier.yaml");
  REQUIRE(t.ok());
  return std::make_shared<tiers::Topology>(std::move(t).value());
}

struct Detached {
  testing::TempDir dir{"nova-residency-unit"};
  std::vector<std::string> published;  // topics
  std::unique_ptr<cloud::CloudService> service;
  explicit Detached(std::shared_ptr<const tiers::Topology> topology, std::string region = "") {
    cloud::CloudOptions options;
    options.store.dir = dir.path / "store";
    options.topology = std::move(topology);
    options.resident_region = std::move(region);
    auto s = cloud::CloudService::start_detached(
        std::move(options), [this](const std::string& topic, const std::vector<std::uint8_t>&, bool) { published.push_back(topic); });
    REQUIRE(s.ok());
    service = std::move(s).value();
  }
  void birth(const std::string& node, const std::string& site, std::optional<std::string> region) {
    NodeState st;
    st.node = node;
    st.status = NodeStatus::online;
    st.bdseq = 1;
    st.description = NodeDescription{4, site, "x86_64", "t", {}, {4000, 4096, 10000}, std::move(region)};
    const Bytes b = encode_cbor(st);
    service->deliver("nova/v1/up/" + node + "/state", std::string(b.begin(), b.end()), true);
  }
  void batch(const std::string& topic, const std::string& node) {
    MetricsBatch m;
    m.position = {node, "metrics", 1};
    m.samples.push_back(MetricSample{});
    m.samples.back().ts = 1'796'000'000'000;
    const Bytes b = encode_cbor(m);
    service->deliver(topic, std::string(b.begin(), b.end()), false);
  }
  std::uint64_t rejected(const std::string& reason) const {
    const auto c = service->counters();
    auto it = c.rejected.find(reason);
    return it == c.rejected.end() ? 0 : it->second;
  }
};

}  // namespace

TEST_CASE("a node's region is its site's in the topology, whatever its birth claims", "[cloud][residency]") {
  Detached d(example());
  d.birth("gw-par-a1", "cloud/eu/par/par-a1", "us-east");  // claims another region
  d.birth("gw-nyc-a1", "cloud/us/nyc/nyc-a1", std::nullopt);
  d.birth("dev-ber-a1-1", "cloud/us/nyc/nyc-a1", std::nullopt);  // topology: ber-a1
  d.birth("stranger", "cloud/eu", "eu-west");  // not in the topology: no region
  CHECK(d.service->node("gw-par-a1")->description->region == "eu-west");
  CHECK(d.service->node("gw-nyc-a1")->description->region == "us-east");
  CHECK_FALSE(d.service->node("dev-ber-a1-1").has_value());
  CHECK(d.rejected("site_mismatch") == 1);
  CHECK_FALSE(d.service->node("stranger")->description->region.has_value());
  CHECK(d.service->counters().region_ignored == 2);
}

TEST_CASE("without a topology no node has a region", "[cloud][residency]") {
  Detached d(nullptr);
  d.birth("gw-par-a1", "cloud/eu/par/par-a1", "eu-west");
  CHECK_FALSE(d.service->node("gw-par-a1")->description->region.has_value());
  CHECK(d.service->counters().region_ignored == 1);
}

TEST_CASE("the regional role stores and acks its own region's resident data only", "[cloud][residency]") {
  Detached d(example(), "eu-west");
  d.birth("gw-par-a1", "cloud/eu/par/par-a1", std::nullopt);
  d.batch("nova/v1/resident/eu-west/gw-par-a1/metrics", "gw-par-a1");
  CHECK(d.service->counters().records_stored == 1);
  CHECK(d.service->store().watermark("gw-par-a1", "metrics") == 1);
  CHECK(std::count(d.published.begin(), d.published.end(), "nova/v1/down/cloud/eu/par/par-a1/gw-par-a1/ack") >= 1);

  d.batch("nova/v1/resident/eu-west/gw-nyc-a1/metrics", "gw-nyc-a1");  // the topology puts it in us-east
  d.batch("nova/v1/resident/us-east/gw-nyc-a1/metrics", "gw-nyc-a1");  // another region's data
  CHECK(d.rejected("foreign_region") == 2);
  d.batch("nova/v1/resident/eu-west/gw-par-a1/result", "gw-par-a1");  // only metrics is resident
  d.batch("nova/v1/resident/eu-west", "gw-par-a1");
  CHECK(d.rejected("bad_topic") == 2);
  CHECK(d.service->counters().records_stored == 1);

  // A cloud-role instance stores none (it never subscribes to them, and refuses them).
  Detached cloud(example());
  cloud.batch("nova/v1/resident/eu-west/gw-par-a1/metrics", "gw-par-a1");
  CHECK(cloud.rejected("foreign_region") == 1);
  CHECK(cloud.service->counters().records_stored == 0);
}
