#include "nova/tiers/topology.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <set>

namespace nova::tiers {
namespace {

using schemas::Error;

Error site_error(std::string_view id, std::string reason) {
  return Error{"", "site '" + std::string(id) + "': " + std::move(reason)};
}

Error node_error(std::string_view id, std::string reason) {
  return Error{"", "node '" + std::string(id) + "': " + std::move(reason)};
}

std::optional<Error> check_ids(const TopologySpec& spec) {
  std::set<std::string, std::less<>> seen;
  auto check = [&](const std::string& id, bool is_site) -> std::optional<Error> {
    if (auto parsed = topics::Id::parse(id); !parsed) {
      return is_site ? site_error(id, "invalid id: " + parsed.error().reason)
                     : node_error(id, "invalid id: " + parsed.error().reason);
    }
    // Sites and nodes share one namespace: a downward topic is read from its end
    // (.../<site>/<node>/<kind>), so a node named like a child site would be ambiguous.
    if (!seen.insert(id).second) return Error{"", "duplicate id '" + id + "'"};
    return std::nullopt;
  };
  for (const SiteSpec& s : spec.sites) {
    if (auto e = check(s.id, true)) return e;
  }
  for (const NodeSpec& n : spec.nodes) {
    if (auto e = check(n.id, false)) return e;
  }
  return std::nullopt;
}

// One residency attribute ("region" or "jurisdiction") of `site`: its own declaration,
// which must be an Id and agree with what it inherits, else the parent's effective value.
Result<std::optional<std::string>> inherit(const Site& site, const Site* parent, const char* field,
                                           const std::optional<std::string>& declared,
                                           const std::optional<std::string>& inherited) {
  if (!declared) return inherited;
  if (auto parsed = topics::Id::parse(*declared); !parsed) {
    return site_error(site.id(), std::string(field) + " '" + *declared + "' is not a valid id: " + parsed.error().reason);
  }
  if (inherited && *inherited != *declared) {
    return site_error(site.id(), std::string(field) + " '" + *declared + "' differs from '" + *inherited +
                                     "', the " + field + " of its parent '" + parent->id() + "'");
  }
  return declared;
}

std::optional<std::uint32_t> parse_ipv4(const std::string& text) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) return std::nullopt;
  return ntohl(a.s_addr);
}

std::string format_ipv4(std::uint32_t address) {
  in_addr a{htonl(address)};
  char buffer[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &a, buffer, sizeof buffer);
  return buffer;
}

bool is_wildcard(const std::string& address) { return address.empty() || address == "0.0.0.0" || address == "::"; }

// links: wireguard. Checks the network, assigns the tunnel addresses not given (the
// site's 1-based place in the spec), and checks every address and endpoint.
std::optional<Error> plan_tunnels(TopologySpec& spec) {
  const std::string& net = spec.links.network;
  const auto slash = net.find('/');
  const Error bad_network{"", "wireguard.network: '" + net + "' is not an IPv4 network a.b.c.d/8..30"};
  if (slash == std::string::npos) return bad_network;
  const auto base = parse_ipv4(net.substr(0, slash));
  const std::string prefix_text = net.substr(slash + 1);
  if (!base || prefix_text.empty() || prefix_text.size() > 2 ||
      prefix_text.find_first_not_of("0123456789") != std::string::npos) {
    return bad_network;
  }
  const int prefix = std::stoi(prefix_text);
  if (prefix < 8 || prefix > 30) return bad_network;
  const std::uint32_t mask = ~std::uint32_t{0} << (32 - prefix);
  if ((*base & ~mask) != 0) return Error{"", "wireguard.network: '" + net + "' has host bits set"};
  const std::uint32_t broadcast = *base | ~mask;

  std::map<std::uint32_t, std::string> owner;  // address -> site
  for (std::size_t i = 0; i < spec.sites.size(); ++i) {
    SiteSpec& s = spec.sites[i];
    if (s.tunnel.address.empty()) {
      if (i + 1 >= broadcast - *base) {
        return site_error(s.id, "wireguard.address: network " + net + " has no address left for site " +
                                    std::to_string(i + 1) + " of the file");
      }
      s.tunnel.address = format_ipv4(*base + static_cast<std::uint32_t>(i + 1));
    }
    const auto a = parse_ipv4(s.tunnel.address);
    if (!a) return site_error(s.id, "wireguard.address: '" + s.tunnel.address + "' is not an IPv4 address");
    if ((*a & mask) != *base || *a == *base || *a == broadcast) {
      return site_error(s.id, "wireguard.address: " + s.tunnel.address + " is not a host address of " + net);
    }
    if (auto [it, fresh] = owner.emplace(*a, s.id); !fresh) {
      return Error{"", "sites '" + it->second + "' and '" + s.id + "' both have tunnel address " + s.tunnel.address};
    }
  }
  for (const SiteSpec& s : spec.sites) {
    std::vector<std::string> dialers;
    for (const SiteSpec& c : spec.sites) {
      const bool bridges = c.parent == s.id ||
                           std::find(c.backup_parents.begin(), c.backup_parents.end(), s.id) != c.backup_parents.end();
      if (bridges) dialers.push_back(c.id);
    }
    if (dialers.empty()) continue;
    if (s.tunnel.endpoint.empty()) {
      return site_error(s.id, "wireguard.endpoint: required, site '" + dialers.front() +
                                  "' connects to it through the tunnel");
    }
    if (is_wildcard(s.listener.address)) {
      return site_error(s.id, "address: '" + s.listener.address +
                                  "' would take bridges from outside the tunnel (links: wireguard); "
                                  "listen on a local address, bridges get the tunnel address");
    }
  }
  return std::nullopt;
}

}  // namespace

std::uint64_t Site::max_queued_messages() const {
  return spec.overrides.max_queued_messages.value_or(profile->max_queued_messages);
}
std::uint64_t Site::max_queued_bytes() const {
  return spec.overrides.max_queued_bytes.value_or(profile->max_queued_bytes);
}
std::uint32_t Site::keepalive_s() const {
  return spec.overrides.keepalive_s.value_or(static_cast<std::uint32_t>(profile->keepalive.count()));
}
std::uint32_t Site::autosave_interval_s() const { return spec.overrides.autosave_interval_s.value_or(1); }
std::uint32_t Site::restart_base_s() const {
  return spec.overrides.restart_base_s.value_or(static_cast<std::uint32_t>(profile->restart_base.count()));
}
std::uint32_t Site::restart_cap_s() const {
  return spec.overrides.restart_cap_s.value_or(static_cast<std::uint32_t>(profile->restart_cap.count()));
}

Result<Topology> Topology::build(TopologySpec spec) {
  if (spec.sites.empty()) return Error{"", "topology has no sites"};
  if (auto e = check_ids(spec)) return *e;

  std::map<std::string, const SiteSpec*, std::less<>> by_id;
  for (const SiteSpec& s : spec.sites) by_id[s.id] = &s;

  // Levels and the root.
  const SiteSpec* root = nullptr;
  for (const SiteSpec& s : spec.sites) {
    if (s.level < kMinLevel || s.level > kMaxLevel) {
      return site_error(s.id, "level " + std::to_string(s.level) + " is not in 1..5");
    }
    if (!s.parent) {
      if (s.level != kMinLevel) {
        return site_error(s.id, "has no parent but is on level " + std::to_string(s.level) +
                                    " (only the level-1 root has none)");
      }
      if (root != nullptr) {
        return Error{"", "two roots: sites '" + root->id + "' and '" + s.id + "' both have no parent"};
      }
      root = &s;
    }
  }

  // Parents exist and chains end at the root (no cycles), then levels strictly increase
  // downward. Cycles are reported before levels: a loop is the more basic mistake.
  for (const SiteSpec& s : spec.sites) {
    std::vector<std::string> chain{s.id};
    const SiteSpec* at = &s;
    while (at->parent) {
      auto it = by_id.find(*at->parent);
      if (it == by_id.end()) return site_error(at->id, "parent '" + *at->parent + "' is not defined");
      at = it->second;
      if (std::find(chain.begin(), chain.end(), at->id) != chain.end()) {
        std::string loop;
        for (const std::string& id : chain) loop += id + " -> ";
        return site_error(s.id, "parent chain loops: " + loop + at->id);
      }
      chain.push_back(at->id);
    }
  }
  if (root == nullptr) return Error{"", "no level-1 root site (a site without a parent)"};
  for (const SiteSpec& s : spec.sites) {
    if (!s.parent) continue;
    const SiteSpec& p = *by_id.at(*s.parent);
    if (p.level >= s.level) {
      return site_error(s.id, "level " + std::to_string(s.level) + " is not below its parent '" +
                                  p.id + "' (level " + std::to_string(p.level) + ")");
    }
    for (const std::string& b : s.backup_parents) {
      auto it = by_id.find(b);
      if (it == by_id.end()) return site_error(s.id, "backup parent '" + b + "' is not defined");
      if (it->second->level >= s.level) {
        return site_error(s.id, "backup parent '" + b + "' (level " +
                                    std::to_string(it->second->level) + ") is not above level " +
                                    std::to_string(s.level));
      }
      if (b == *s.parent) return site_error(s.id, "backup parent '" + b + "' is its parent");
    }
  }

  // Listeners: no two sites on one address and port (port 0 means "assign later").
  std::map<std::pair<std::string, std::uint16_t>, std::string> listeners;
  for (const SiteSpec& s : spec.sites) {
    if (s.listener.port == 0) continue;
    auto [it, fresh] = listeners.emplace(std::pair(s.listener.address, s.listener.port), s.id);
    if (!fresh) {
      return Error{"", "sites '" + it->second + "' and '" + s.id + "' both listen on " +
                           s.listener.address + ":" + std::to_string(s.listener.port)};
    }
  }

  for (NodeSpec& n : spec.nodes) {
    auto it = by_id.find(n.site);
    if (it == by_id.end()) return node_error(n.id, "site '" + n.site + "' is not defined");
    if (n.level == 0) n.level = it->second->level;
    if (n.level < it->second->level || n.level > kMaxLevel) {
      return node_error(n.id, "level " + std::to_string(n.level) + " is not in " +
                                  std::to_string(it->second->level) + "..5 (its site '" + n.site +
                                  "' is on level " + std::to_string(it->second->level) + ")");
    }
  }

  if (spec.links.mode == LinkMode::wireguard) {
    if (auto e = plan_tunnels(spec)) return *e;
  }

  // Order breadth first from the root, computing each site path from its parent's.
  Topology t;
  t.name_ = std::move(spec.name);
  t.links_ = spec.links;
  std::vector<const SiteSpec*> frontier{root};
  while (!frontier.empty()) {
    std::vector<const SiteSpec*> next;
    for (const SiteSpec* s : frontier) {
      auto id = topics::Id::parse(s->id).value();
      topics::SitePath path = s->parent ? t.site(*s->parent).path.child(std::move(id))
                                        : topics::SitePath::root(std::move(id));
      if (path.sites().size() > topics::kMaxSiteDepth) {
        return site_error(s->id, "is deeper than " + std::to_string(topics::kMaxSiteDepth) + " levels");
      }
      t.index_[s->id] = t.sites_.size();
      t.sites_.push_back(Site{*s, std::move(path), &profile(s->level), {}, {}});
      for (const SiteSpec& c : spec.sites) {
        if (c.parent == s->id) next.push_back(&c);
      }
    }
    frontier = std::move(next);
  }
  if (auto e = t.resolve_residency()) return *e;
  t.nodes_ = std::move(spec.nodes);
  return t;
}

std::optional<schemas::Error> Topology::resolve_residency() {
  // Parents come before children, so each parent's effective values are final here.
  std::map<std::string, const Site*, std::less<>> tops;
  for (Site& s : sites_) {
    const Site* p = parent(s);
    auto region = inherit(s, p, "region", s.spec.region, p ? p->region : std::nullopt);
    if (!region) return region.error();
    auto jurisdiction = inherit(s, p, "jurisdiction", s.spec.jurisdiction, p ? p->jurisdiction : std::nullopt);
    if (!jurisdiction) return jurisdiction.error();
    s.region = std::move(region).value();
    s.jurisdiction = std::move(jurisdiction).value();
    if (!s.region || (p && p->region)) continue;
    // s declares a region its parent is not in: s is that region's top.
    if (auto [it, fresh] = tops.emplace(*s.region, &s); !fresh) {
      return Error{"", "region '" + *s.region + "' is declared by sites '" + it->second->id() + "' and '" + s.id() +
                           "', neither below the other: a region has one top site"};
    }
  }
  for (const Site& s : sites_) {
    if (!s.region) continue;
    for (const std::string& b : s.spec.backup_parents) {
      const Site& backup = site(b);
      if (backup.region != s.region) {
        return site_error(s.id(), "backup parent '" + b + "' is " +
                                      (backup.region ? "in region '" + *backup.region + "'" : "in no region") +
                                      ", not in '" + *s.region + "' (a failover would carry resident data out of it)");
      }
    }
  }
  return std::nullopt;
}

const Site* Topology::region_top(std::string_view region) const {
  for (const Site& s : sites_) {
    if (s.region == region) return &s;  // breadth first: the first one is the highest
  }
  return nullptr;
}

const Site* Topology::find(std::string_view id) const {
  auto it = index_.find(id);
  return it == index_.end() ? nullptr : &sites_[it->second];
}

const Site& Topology::site(std::string_view id) const { return sites_[index_.find(id)->second]; }

const Site* Topology::parent(const Site& s) const {
  return s.spec.parent ? find(*s.spec.parent) : nullptr;
}

std::vector<const Site*> Topology::children(const Site& s) const {
  std::vector<const Site*> out;
  for (const Site& c : sites_) {
    if (c.spec.parent == s.id()) out.push_back(&c);
  }
  return out;
}

std::vector<const Site*> Topology::subtree(const Site& s) const {
  std::vector<const Site*> out;
  for (const Site& c : sites_) {
    if (c.path.within(s.path)) out.push_back(&c);
  }
  return out;
}

std::vector<const Site*> Topology::ancestors(const Site& s) const {
  std::vector<const Site*> out;
  for (const Site* p = parent(s); p != nullptr; p = parent(*p)) out.push_back(p);
  return out;
}

std::vector<const NodeSpec*> Topology::nodes_at(const Site& s) const {
  std::vector<const NodeSpec*> out;
  for (const NodeSpec& n : nodes_) {
    if (n.site == s.id()) out.push_back(&n);
  }
  return out;
}

const NodeSpec* Topology::find_node(std::string_view id) const {
  for (const NodeSpec& n : nodes_) {
    if (n.id == id) return &n;
  }
  return nullptr;
}

TopologySpec Topology::spec() const {
  TopologySpec s{name_, links_, {}, nodes_};
  for (const Site& site : sites_) s.sites.push_back(site.spec);
  return s;
}

}  // namespace nova::tiers
