// Topology validation: every refusal names the site (or node) and the problem.
#include <catch2/catch.hpp>

#include "nova/tiers/topology.h"

using namespace nova::tiers;

namespace {

std::string error_of(std::string_view yaml) {
  auto t = Topology::parse_yaml(yaml);
  return t.ok() ? "(accepted)" : t.error().message();
}

constexpr const char* kChain = R"(
name: chain
sites:
  - {id: cloud, level: 1, port: 1}
  - {id: eu, level: 2, parent: cloud, port: 2}
  - {id: par, level: 3, parent: eu, port: 3}
  - {id: par-a1, level: 4, parent: par, backups: [eu], port: 4}
  - {id: par-a2, level: 4, parent: par, port: 5}
nodes:
  - {id: gw-1, site: par-a1}
  - {id: dev-1, site: par-a1, level: 5, arch: armv7l}
)";

}  // namespace

TEST_CASE("the example five-tier topology is valid and complete", "[tiers]") {
  auto t = Topology::load(NOVA_EXAMPLE_TOPOLOGY);
  INFO((t ? "" : t.error().message()));
  REQUIRE(t.ok());
  std::size_t per_level[6] = {};
  for (const Site& s : t->sites()) ++per_level[s.level()];
  CHECK(per_level[1] == 1);
  CHECK(per_level[2] == 2);
  CHECK(per_level[3] == 4);
  CHECK(per_level[4] == 8);
  std::size_t devices = 0;
  for (const NodeSpec& n : t->nodes()) devices += n.level == 5 ? 1 : 0;
  CHECK(devices == 16);
  CHECK(t->root().id() == "cloud");
}

TEST_CASE("tree queries: paths, parents, children, subtrees, ancestors", "[tiers]") {
  auto t = Topology::parse_yaml(kChain);
  REQUIRE(t.ok());
  const Site& acc = t->site("par-a1");
  CHECK(acc.path.str() == "cloud/eu/par/par-a1");
  CHECK(t->parent(acc)->id() == "par");
  CHECK(t->parent(t->root()) == nullptr);
  CHECK(t->children(t->site("par")).size() == 2);
  CHECK(t->subtree(t->site("eu")).size() == 4);
  CHECK(t->subtree(acc).size() == 1);
  auto up = t->ancestors(acc);
  REQUIRE(up.size() == 3);
  CHECK(up[0]->id() == "par");
  CHECK(up[2]->id() == "cloud");
  // Breadth first: every parent precedes its children.
  for (std::size_t i = 1; i < t->sites().size(); ++i) {
    const Site* p = t->parent(t->sites()[i]);
    REQUIRE(p != nullptr);
    CHECK(p->level() < t->sites()[i].level());
  }
  CHECK(t->nodes_at(acc).size() == 2);
  CHECK(t->find_node("gw-1")->level == 4);  // defaults to its site's level
  CHECK(t->find_node("dev-1")->level == 5);
}

TEST_CASE("tier profiles carry the SLOs and the sizing", "[tiers]") {
  CHECK(profile(1).uptime_slo_pct == 99.99);
  CHECK(profile(2).uptime_slo_pct == 99.95);
  CHECK(profile(3).uptime_slo_pct == 99.9);
  CHECK(profile(4).uptime_slo_pct == 99.5);
  CHECK(profile(5).uptime_slo_pct == 95.0);
  // An access site's bridge holds a day of its 32 design nodes' traffic, with headroom.
  CHECK(profile(4).max_queued_messages >= 32 * kMessagesPerNodePerDay);
  CHECK(profile(3).max_queued_messages >= 8 * profile(4).max_queued_messages);
  CHECK(profile(2).max_queued_messages >= 4 * profile(3).max_queued_messages);
  for (std::uint8_t l = 2; l <= 5; ++l) CHECK(profile(l).restart_base < profile(l).restart_cap);

  auto t = Topology::parse_yaml(R"(
sites:
  - {id: c, level: 1}
  - {id: a, level: 4, parent: c, overrides: {max_queued_messages: 7, restart_timeout: [1, 3]}}
)");
  REQUIRE(t.ok());
  CHECK(t->site("a").max_queued_messages() == 7);
  CHECK(t->site("a").max_queued_bytes() == profile(4).max_queued_bytes);
  CHECK(t->site("a").restart_cap_s() == 3);
  CHECK(t->site("a").autosave_interval_s() == 1);
}

TEST_CASE("bad topologies are refused naming the site and the problem", "[tiers][reject]") {
  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: a, level: 3, parent: b}
  - {id: b, level: 3, parent: a}
)") == "site 'a': parent chain loops: a -> b -> a");

  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: m, level: 3, parent: reg-9}
)") == "site 'm': parent 'reg-9' is not defined");

  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: m, level: 3, parent: c}
  - {id: r, level: 2, parent: m}
)") == "site 'r': level 2 is not below its parent 'm' (level 3)");

  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: m, level: 3, parent: c}
  - {id: m, level: 4, parent: c}
)") == "duplicate id 'm'");

  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: m, level: 3, parent: c}
nodes:
  - {id: m, site: c}
)") == "duplicate id 'm'");

  CHECK(error_of(R"(
sites:
  - {id: c, level: 1, port: 1883}
  - {id: a1, level: 4, parent: c, port: 1884}
  - {id: a2, level: 4, parent: c, port: 1884}
)") == "sites 'a1' and 'a2' both listen on 127.0.0.1:1884");

  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: d, level: 1}
)") == "two roots: sites 'c' and 'd' both have no parent");

  CHECK(error_of(R"(
sites:
  - {id: m, level: 3}
)") == "site 'm': has no parent but is on level 3 (only the level-1 root has none)");

  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: m, level: 3, parent: c, backups: [x]}
)") == "site 'm': backup parent 'x' is not defined");

  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: a, level: 3, parent: c}
  - {id: b, level: 3, parent: c, backups: [a]}
)") == "site 'b': backup parent 'a' (level 3) is not above level 3");

  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: "a/b", level: 2, parent: c}
)") == "site 'a/b': invalid id: '/' is not allowed in an id");

  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
nodes:
  - {id: n, site: nowhere}
)") == "node 'n': site 'nowhere' is not defined");

  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: a, level: 4, parent: c}
nodes:
  - {id: n, site: a, level: 2}
)") == "node 'n': level 2 is not in 4..5 (its site 'a' is on level 4)");
}

TEST_CASE("YAML mistakes carry the line and the key", "[tiers][reject]") {
  CHECK(error_of("sites:\n  - {id: c, level: 1}\n  - {id: a, level: 9, parent: c}\n") ==
        "line 3: sites[1].level: expected an integer 1..5");
  CHECK(error_of("sites:\n  - id: c\n    level: 1\n    parnet: x\n") ==
        "line 4: sites[0]: unknown key 'parnet'");
  CHECK(error_of("sites:\n  - {id: c}\n") == "line 2: sites[0]: missing 'level'");
  CHECK(error_of("name: x\n") == "line 1: sites: expected a list of sites");
  CHECK_THAT(error_of("sites: [ {id: c, level: 1}\n"), Catch::StartsWith("line "));
  CHECK(error_of("sites:\n  - {id: c, level: 1, port: 70000}\n") ==
        "line 2: sites[0].port: expected an integer 0..65535");
  auto missing = Topology::load("/nonexistent/topology.yaml");
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.error().message(), Catch::StartsWith("cannot read topology file"));
}

TEST_CASE("regions and jurisdictions are declared by sites and inherited below them", "[tiers][residency]") {
  auto t = Topology::load(NOVA_EXAMPLE_TOPOLOGY);
  REQUIRE(t.ok());
  CHECK_FALSE(t->root().region.has_value());
  CHECK(t->site("eu").region == "eu-west");
  CHECK(t->site("par-a1").region == "eu-west");
  CHECK(t->site("par-a1").jurisdiction == "eu-gdpr");
  CHECK(t->site("sfo-a2").region == "us-east");
  REQUIRE(t->region_top("eu-west") != nullptr);
  CHECK(t->region_top("eu-west")->id() == "eu");
  CHECK(t->region_top("us-east")->id() == "us");
  CHECK(t->region_top("ap-south") == nullptr);
  // Repeating the inherited value lower down is allowed and changes nothing.
  auto repeated = Topology::parse_yaml(R"(
sites:
  - {id: c, level: 1}
  - {id: r, level: 2, parent: c, region: eu}
  - {id: m, level: 3, parent: r, region: eu}
)");
  REQUIRE(repeated.ok());
  CHECK(repeated->region_top("eu")->id() == "r");
}

TEST_CASE("residency mistakes are refused naming the site and the field", "[tiers][residency][reject]") {
  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: r, level: 2, parent: c, region: eu}
  - {id: m, level: 3, parent: r, region: us}
)") == "site 'm': region 'us' differs from 'eu', the region of its parent 'r'");
  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: r, level: 2, parent: c, region: eu, jurisdiction: gdpr}
  - {id: m, level: 3, parent: r, jurisdiction: ccpa}
)") == "site 'm': jurisdiction 'ccpa' differs from 'gdpr', the jurisdiction of its parent 'r'");
  CHECK_THAT(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: r, level: 2, parent: c, region: "eu/west"}
)"), Catch::StartsWith("site 'r': region 'eu/west' is not a valid id: "));
  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: r1, level: 2, parent: c, region: eu}
  - {id: r2, level: 2, parent: c, region: eu}
)") == "region 'eu' is declared by sites 'r1' and 'r2', neither below the other: a region has one top site");
  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: eu, level: 2, parent: c, region: eu}
  - {id: us, level: 2, parent: c, region: us}
  - {id: par, level: 3, parent: eu, backups: [us]}
)") == "site 'par': backup parent 'us' is in region 'us', not in 'eu' (a failover would carry resident "
       "data out of it)");
  CHECK(error_of(R"(
sites:
  - {id: c, level: 1}
  - {id: eu, level: 2, parent: c, region: eu}
  - {id: par, level: 3, parent: eu, backups: [c]}
)") == "site 'par': backup parent 'c' is in no region, not in 'eu' (a failover would carry resident data out "
       "of it)");
  CHECK(error_of("sites:\n  - {id: c, level: 1, region: [eu]}\n") == "line 2: sites[0].region: expected a string");
}

namespace {

constexpr const char* kTunnelled = R"(
name: tunnelled
links: wireguard
wireguard: {network: 10.77.0.0/16}
sites:
  - {id: cloud, level: 1, port: 1, wireguard: {endpoint: 192.0.2.1}}
  - {id: eu, level: 2, parent: cloud, port: 2, wireguard: {endpoint: "192.0.2.2:51000", address: 10.77.9.9}}
  - {id: par, level: 3, parent: eu, backups: [cloud], port: 3}
)";

}  // namespace

TEST_CASE("links: wireguard gives each site a tunnel address from the network, in file order", "[tiers][wireguard]") {
  auto t = Topology::parse_yaml(kTunnelled);
  REQUIRE(t.ok());
  CHECK(t->wireguard());
  CHECK(t->links().network == "10.77.0.0/16");
  CHECK(t->site("cloud").spec.tunnel.address == "10.77.0.1");
  CHECK(t->site("eu").spec.tunnel.address == "10.77.9.9");  // pinned
  CHECK(t->site("par").spec.tunnel.address == "10.77.0.3");  // third in the file
  CHECK(t->site("par").spec.tunnel.endpoint.empty());         // behind NAT
  CHECK(t->site("cloud").spec.tunnel.listen_port == 51820);
  // spec() keeps the assigned addresses, so building again (new ports, reload) keeps them.
  auto again = Topology::build(t->spec());
  REQUIRE(again.ok());
  CHECK(again->site("par").spec.tunnel.address == "10.77.0.3");
  CHECK(again->wireguard());
  CHECK_FALSE(Topology::parse_yaml(kChain)->wireguard());
}

TEST_CASE("bad WireGuard plans are refused naming the field and the reason", "[tiers][wireguard][reject]") {
  const std::string sites = R"(
sites:
  - {id: cloud, level: 1, port: 1, wireguard: {endpoint: 192.0.2.1}}
  - {id: eu, level: 2, parent: cloud, port: 2}
)";
  CHECK(error_of("links: tunnel\n" + sites).find("links: expected 'direct' or 'wireguard', not 'tunnel'") !=
        std::string::npos);
  CHECK(error_of("links: wireguard\nwireguard: {network: 10.77.0.0/33}\n" + sites) ==
        "wireguard.network: '10.77.0.0/33' is not an IPv4 network a.b.c.d/8..30");
  CHECK(error_of("links: wireguard\nwireguard: {network: 10.77.0.1/16}\n" + sites) ==
        "wireguard.network: '10.77.0.1/16' has host bits set");
  CHECK(error_of("links: wireguard\nwireguard: {network: 10.77.0.0/30}\n" + sites + R"(  - {id: a, level: 3, parent: eu, port: 3}
)") == "site 'a': wireguard.address: network 10.77.0.0/30 has no address left for site 3 of the file");
  CHECK(error_of(R"(
links: wireguard
sites:
  - {id: cloud, level: 1, port: 1}
  - {id: eu, level: 2, parent: cloud, port: 2}
)") == "site 'cloud': wireguard.endpoint: required, site 'eu' connects to it through the tunnel");
  CHECK(error_of(R"(
links: wireguard
sites:
  - {id: cloud, level: 1, port: 1, address: 0.0.0.0, wireguard: {endpoint: 192.0.2.1}}
  - {id: eu, level: 2, parent: cloud, port: 2}
)").find("site 'cloud': address: '0.0.0.0' would take bridges from outside the tunnel") != std::string::npos);
  CHECK(error_of(R"(
links: wireguard
sites:
  - {id: cloud, level: 1, port: 1, wireguard: {endpoint: 192.0.2.1, address: 10.78.0.1}}
  - {id: eu, level: 2, parent: cloud, port: 2}
)") == "site 'cloud': wireguard.address: 10.78.0.1 is not a host address of 10.77.0.0/16");
  CHECK(error_of(R"(
links: wireguard
sites:
  - {id: cloud, level: 1, port: 1, wireguard: {endpoint: 192.0.2.1}}
  - {id: eu, level: 2, parent: cloud, port: 2, wireguard: {address: 10.77.0.1}}
)") == "sites 'cloud' and 'eu' both have tunnel address 10.77.0.1");
  CHECK(error_of(R"(
sites:
  - {id: cloud, level: 1, port: 1, wireguard: {endpoint: 192.0.2.1, mtu: 1400}}
)").find("sites[0].wireguard: unknown key 'mtu'") != std::string::npos);
}
