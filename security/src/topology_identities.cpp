#include "nova/security/topology_identities.h"

#include <map>
#include <set>
#include <vector>

namespace nova::security {
namespace {

// The listener's address as a SAN, unless the fixed loopback SANs already cover it.
std::vector<std::string> listener_sans(const tiers::Listener& listener) {
  const std::string& a = listener.address;
  if (a.empty() || a == "127.0.0.1" || a == "localhost" || a == "0.0.0.0" || a == "::") return {};
  const bool ip =
      a.find_first_not_of("0123456789.") == std::string::npos || a.find(':') != std::string::npos;
  return {(ip ? "IP:" : "DNS:") + a};
}

Error invalid(std::string reason) { return Error{"topology", std::move(reason)}; }

}  // namespace

std::string region_of(const tiers::Topology& topology, const tiers::Site& site) {
  if (site.is_root()) return "cloud";
  if (site.level() == 2) return site.id();
  for (const tiers::Site* s : topology.ancestors(site)) {
    if (s->level() == 2) return s->id();
  }
  return "cloud";  // a site directly under the root but deeper than level 2
}

Result<TopologyIdentitiesReport> issue_topology_identities(Pki& pki, const tiers::Topology& topology,
                                                           int days) {
  // Every identity the topology needs, and what it is (for an error naming both sides
  // of a clash).
  struct Wanted {
    IssueRequest request;
    std::string what;
  };
  std::vector<Wanted> wanted;
  std::set<std::string> regions{"cloud"};
  for (const auto& site : topology.sites()) {
    const std::string region = region_of(topology, site);
    if (site.level() == 2 && region == "cloud") {
      return invalid("site 'cloud': a regional site may not be called 'cloud' (the cloud's region)");
    }
    regions.insert(region);
    std::vector<std::string> sans = listener_sans(site.spec.listener);
    // links: wireguard: bridges dial the tunnel address and check it against the certificate.
    if (topology.wireguard()) sans.push_back("IP:" + site.spec.tunnel.address);
    wanted.push_back({{Role::broker, site.id(), region, sans, days, 0},
                      "site '" + site.id() + "' (broker)"});
    if (!site.is_root()) {
      wanted.push_back({{Role::bridge, site.id(), region, {}, days, 0}, "site '" + site.id() + "' (bridge)"});
    }
  }
  for (const auto& node : topology.nodes()) {
    wanted.push_back({{Role::node, node.id, region_of(topology, topology.site(node.site)), {}, days, 0},
                      "node '" + node.id + "'"});
  }
  wanted.push_back({{Role::cloud, "nova-cloud", "cloud", {}, days, 0}, "the cloud service"});

  // One CN, one identity: "already issued" must never hide a second identity that would
  // reuse another's certificate (and its rights under use_identity_as_username).
  std::map<std::string, std::string> owner_of;  // CN -> what
  for (const auto& w : wanted) {
    auto cn = common_name(w.request.role, w.request.name);
    if (!cn) return invalid(w.what + ": " + cn.error().message());
    auto [it, fresh] = owner_of.emplace(*cn, w.what);
    if (!fresh) return invalid(w.what + " and " + it->second + " would share the certificate CN '" + *cn + "'");
  }

  if (!pki.has_root()) {
    if (auto root = pki.init_root(); !root) return root.error();
  }
  for (const auto& region : regions) {
    if (pki.has_intermediate(region)) continue;
    if (auto ca = pki.init_intermediate(region); !ca) return ca.error();
  }
  TopologyIdentitiesReport report;
  report.regions = regions.size();
  for (const auto& w : wanted) {
    if (pki.has_identity(*common_name(w.request.role, w.request.name))) {
      ++report.kept;
      continue;
    }
    if (auto info = pki.issue(w.request); !info) return info.error();
    ++report.issued;
  }
  return report;
}

}  // namespace nova::security
