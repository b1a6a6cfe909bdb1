// The topology of a NovaCron hierarchy: sites (each running a broker) in a tree rooted
// at one level-1 cloud site, and the nodes (agents) that live at those sites.
//
// It comes from one YAML file (docs/broker-hierarchy.md shows the format) or from a
// TopologySpec built in code; either way Topology::build() validates it completely, and
// every error names the site (or node) and the problem:
//   site 'metro-3': parent 'reg-9' is not defined
//   site 'acc-1': level 3 is not below its parent 'metro-1' (level 3)
//   site 'a': parent chain loops: a -> b -> a
//   sites 'acc-1' and 'acc-2' both listen on 127.0.0.1:18834
//   site 'par': region 'us' differs from 'eu', the region of its parent 'eu'
// This is the only code that parses topology YAML; every component uses this library.
//
// Data residency. A site may name the region its data must stay in and the
// jurisdiction it answers to. The topology's owner signs them off here; a node never
// declares its own (nova-cloud takes a node's region from its site in the topology).
// Both are inherited by the site's subtree, and build() refuses:
//   - a value that is not an Id (the region is a topic level: nova/v1/resident/<region>);
//   - a site that names another region (or jurisdiction) than the one it inherits;
//   - one region declared by two sites outside each other's subtree: every region has
//     exactly one top site, whose broker is as far up as resident data travels;
//   - a backup parent outside the site's region (a failover would carry resident data
//     out of it).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nova/schemas/result.h"
#include "nova/schemas/topic.h"
#include "nova/tiers/profile.h"

namespace nova::tiers {

using schemas::Result;

struct Listener {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0: chosen when the hierarchy starts (tests, demos)
};

// Per-site departures from the tier profile.
struct SiteOverrides {
  std::optional<std::uint64_t> max_queued_messages;
  std::optional<std::uint64_t> max_queued_bytes;
  std::optional<std::uint32_t> keepalive_s;
  std::optional<std::uint32_t> autosave_interval_s;  // default 1
  std::optional<std::uint32_t> restart_base_s;
  std::optional<std::uint32_t> restart_cap_s;
};

// How each site's bridge reaches its parent (docs/broker-hierarchy.md, WireGuard links).
enum class LinkMode {
  direct,     // to the parent's listener address
  wireguard,  // through a WireGuard tunnel, to the parent's tunnel address
};

// A site's end of its WireGuard links; used only with `links: wireguard`.
struct SiteTunnel {
  // The site's IPv4 address inside Links::network. Empty in a spec: build() assigns the
  // network's address number n (the root of 10.77.0.0/16 listed first gets 10.77.0.1),
  // n being the site's 1-based place in the spec (the file's order), and writes it back,
  // so spec() keeps it when the topology is built again.
  std::string address;
  // Where the other end of a link reaches this site's WireGuard: "host" or "host:port"
  // (default port: listen_port). Empty: the site is behind NAT, nobody can dial it, and
  // it keeps its links open itself (PersistentKeepalive). Required of every site that
  // other sites bridge to.
  std::string endpoint;
  std::uint16_t listen_port = 51820;
};

struct SiteSpec {
  std::string id;
  std::uint8_t level = 0;
  std::optional<std::string> parent;        // absent only for the level-1 root
  std::vector<std::string> backup_parents;  // tried in order when the parent is unreachable
  Listener listener;
  SiteOverrides overrides;
  std::optional<std::string> region;        // as declared here; Site::region is the effective one
  std::optional<std::string> jurisdiction;  // likewise
  SiteTunnel tunnel;
};

struct NodeSpec {
  std::string id;
  std::string site;  // the site whose broker the node connects to
  // The node's own tier: 0 means its site's level; a device under an access site is 5.
  // Never above its site's level.
  std::uint8_t level = 0;
  std::string arch = "x86_64";
  std::vector<std::string> capabilities;
};

struct Links {
  LinkMode mode = LinkMode::direct;
  // The IPv4 network (CIDR, prefix 8..30) every site's tunnel address comes from.
  std::string network = "10.77.0.0/16";
};

struct TopologySpec {
  std::string name;
  Links links;
  std::vector<SiteSpec> sites;
  std::vector<NodeSpec> nodes;
};

// A validated site with what follows from its place in the tree.
struct Site {
  SiteSpec spec;
  topics::SitePath path;  // root ... this site
  const TierProfile* profile;
  // Data residency, declared here or inherited from the nearest ancestor that declares it.
  std::optional<std::string> region;
  std::optional<std::string> jurisdiction;

  const std::string& id() const { return spec.id; }
  std::uint8_t level() const { return spec.level; }
  bool is_root() const { return !spec.parent.has_value(); }

  // The effective settings: the override if any, else the tier profile's.
  std::uint64_t max_queued_messages() const;
  std::uint64_t max_queued_bytes() const;
  std::uint32_t keepalive_s() const;
  std::uint32_t autosave_interval_s() const;
  std::uint32_t restart_base_s() const;
  std::uint32_t restart_cap_s() const;
};

class Topology {
 public:
  static Result<Topology> build(TopologySpec spec);
  // YAML errors carry the line: "line 12: sites[3].level: expected an integer 1..5".
  static Result<Topology> parse_yaml(std::string_view text);
  static Result<Topology> load(const std::filesystem::path& file);

  const std::string& name() const { return name_; }
  const Links& links() const { return links_; }
  bool wireguard() const { return links_.mode == LinkMode::wireguard; }
  // Every site, parents before children (breadth first from the root).
  const std::vector<Site>& sites() const { return sites_; }
  const Site& root() const { return sites_.front(); }
  const Site* find(std::string_view id) const;
  const Site& site(std::string_view id) const;  // precondition: exists
  const Site* parent(const Site& site) const;   // nullptr for the root
  std::vector<const Site*> children(const Site& site) const;
  // The site and everything below it, parents before children.
  std::vector<const Site*> subtree(const Site& site) const;
  // The site's ancestors from its parent up to the root.
  std::vector<const Site*> ancestors(const Site& site) const;

  // The highest site of `region` (the one that declares it); nullptr for an unknown region.
  const Site* region_top(std::string_view region) const;

  const std::vector<NodeSpec>& nodes() const { return nodes_; }
  std::vector<const NodeSpec*> nodes_at(const Site& site) const;
  const NodeSpec* find_node(std::string_view id) const;

  // The spec this topology was built from (e.g. to change ports and build again).
  TopologySpec spec() const;

 private:
  Topology() = default;
  // Sets each site's effective region and jurisdiction and checks the residency rules
  // above; the first violation, if any.
  std::optional<schemas::Error> resolve_residency();
  std::string name_;
  Links links_;
  std::vector<Site> sites_;
  std::vector<NodeSpec> nodes_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

}  // namespace nova::tiers
