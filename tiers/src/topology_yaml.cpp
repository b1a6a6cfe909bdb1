// Topology YAML: the file format documented in docs/broker-hierarchy.md.
//
// Unknown keys are errors, as in Mosquitto's own config: a misspelt "parnet" must not
// silently produce a second root.
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <limits>
#include <sstream>

#include "nova/tiers/topology.h"

namespace nova::tiers {
namespace {

using schemas::Error;

struct YamlError {
  Error error;
};

[[noreturn]] void fail(const YAML::Node& at, const std::string& path, const std::string& reason) {
  const YAML::Mark mark = at.Mark();
  std::string where = mark.is_null() ? "" : "line " + std::to_string(mark.line + 1) + ": ";
  throw YamlError{Error{"", where + path + ": " + reason}};
}

void allow_keys(const YAML::Node& map, const std::string& path,
                std::initializer_list<std::string_view> keys) {
  if (!map.IsMap()) fail(map, path, "expected a mapping");
  for (const auto& kv : map) {
    const std::string key = kv.first.as<std::string>();
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      fail(kv.first, path, "unknown key '" + key + "'");
    }
  }
}

std::string text(const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) fail(n, path, "expected a string");
  return n.as<std::string>();
}

std::uint64_t number(const YAML::Node& n, const std::string& path, std::uint64_t min,
                     std::uint64_t max) {
  std::uint64_t v = 0;
  if (!n.IsScalar() || !YAML::convert<std::uint64_t>::decode(n, v) || v < min || v > max) {
    fail(n, path, "expected an integer " + std::to_string(min) + ".." + std::to_string(max));
  }
  return v;
}

std::vector<std::string> text_list(const YAML::Node& n, const std::string& path) {
  if (!n.IsSequence()) fail(n, path, "expected a list");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n.size(); ++i) out.push_back(text(n[i], path + "[" + std::to_string(i) + "]"));
  return out;
}

constexpr std::uint64_t kU32 = std::numeric_limits<std::uint32_t>::max();

SiteOverrides read_overrides(const YAML::Node& n, const std::string& path) {
  allow_keys(n, path,
             {"max_queued_messages", "max_queued_bytes", "keepalive", "autosave_interval",
              "restart_timeout"});
  SiteOverrides o;
  const auto max = std::numeric_limits<std::uint64_t>::max();
  if (n["max_queued_messages"]) {
    o.max_queued_messages = number(n["max_queued_messages"], path + ".max_queued_messages", 1, max);
  }
  if (n["max_queued_bytes"]) o.max_queued_bytes = number(n["max_queued_bytes"], path + ".max_queued_bytes", 0, max);
  if (n["keepalive"]) o.keepalive_s = static_cast<std::uint32_t>(number(n["keepalive"], path + ".keepalive", 5, 65535));
  if (n["autosave_interval"]) {
    o.autosave_interval_s =
        static_cast<std::uint32_t>(number(n["autosave_interval"], path + ".autosave_interval", 1, 3600));
  }
  if (const YAML::Node r = n["restart_timeout"]) {
    if (!r.IsSequence() || r.size() != 2) fail(r, path + ".restart_timeout", "expected [base, cap] in seconds");
    o.restart_base_s = static_cast<std::uint32_t>(number(r[0], path + ".restart_timeout[0]", 1, kU32));
    o.restart_cap_s = static_cast<std::uint32_t>(number(r[1], path + ".restart_timeout[1]", *o.restart_base_s, kU32));
  }
  return o;
}

SiteTunnel read_tunnel(const YAML::Node& n, const std::string& path) {
  allow_keys(n, path, {"address", "endpoint", "listen_port"});
  SiteTunnel t;
  if (n["address"]) t.address = text(n["address"], path + ".address");
  if (n["endpoint"]) t.endpoint = text(n["endpoint"], path + ".endpoint");
  if (n["listen_port"]) t.listen_port = static_cast<std::uint16_t>(number(n["listen_port"], path + ".listen_port", 1, 65535));
  return t;
}

SiteSpec read_site(const YAML::Node& n, const std::string& path) {
  allow_keys(n, path,
             {"id", "level", "parent", "backups", "address", "port", "overrides", "region", "jurisdiction", "wireguard"});
  SiteSpec s;
  if (!n["id"]) fail(n, path, "missing 'id'");
  if (!n["level"]) fail(n, path, "missing 'level'");
  s.id = text(n["id"], path + ".id");
  s.level = static_cast<std::uint8_t>(number(n["level"], path + ".level", kMinLevel, kMaxLevel));
  if (n["parent"]) s.parent = text(n["parent"], path + ".parent");
  if (n["backups"]) s.backup_parents = text_list(n["backups"], path + ".backups");
  if (n["address"]) s.listener.address = text(n["address"], path + ".address");
  if (n["port"]) s.listener.port = static_cast<std::uint16_t>(number(n["port"], path + ".port", 0, 65535));
  if (n["overrides"]) s.overrides = read_overrides(n["overrides"], path + ".overrides");
  if (n["region"]) s.region = text(n["region"], path + ".region");
  if (n["jurisdiction"]) s.jurisdiction = text(n["jurisdiction"], path + ".jurisdiction");
  if (n["wireguard"]) s.tunnel = read_tunnel(n["wireguard"], path + ".wireguard");
  return s;
}

NodeSpec read_node(const YAML::Node& n, const std::string& path) {
  allow_keys(n, path, {"id", "site", "level", "arch", "capabilities"});
  NodeSpec s;
  if (!n["id"]) fail(n, path, "missing 'id'");
  if (!n["site"]) fail(n, path, "missing 'site'");
  s.id = text(n["id"], path + ".id");
  s.site = text(n["site"], path + ".site");
  if (n["level"]) s.level = static_cast<std::uint8_t>(number(n["level"], path + ".level", kMinLevel, kMaxLevel));
  if (n["arch"]) s.arch = text(n["arch"], path + ".arch");
  if (n["capabilities"]) s.capabilities = text_list(n["capabilities"], path + ".capabilities");
  return s;
}

TopologySpec read_spec(const YAML::Node& root) {
  allow_keys(root, "topology", {"name", "links", "wireguard", "sites", "nodes"});
  TopologySpec spec;
  if (root["name"]) spec.name = text(root["name"], "name");
  if (const YAML::Node links = root["links"]) {
    const std::string mode = text(links, "links");
    if (mode == "wireguard") {
      spec.links.mode = LinkMode::wireguard;
    } else if (mode != "direct") {
      fail(links, "links", "expected 'direct' or 'wireguard', not '" + mode + "'");
    }
  }
  if (const YAML::Node wg = root["wireguard"]) {
    allow_keys(wg, "wireguard", {"network"});
    if (wg["network"]) spec.links.network = text(wg["network"], "wireguard.network");
  }
  const YAML::Node sites = root["sites"];
  if (!sites || !sites.IsSequence()) fail(root, "sites", "expected a list of sites");
  for (std::size_t i = 0; i < sites.size(); ++i) {
    spec.sites.push_back(read_site(sites[i], "sites[" + std::to_string(i) + "]"));
  }
  if (const YAML::Node nodes = root["nodes"]) {
    if (!nodes.IsSequence()) fail(nodes, "nodes", "expected a list of nodes");
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      spec.nodes.push_back(read_node(nodes[i], "nodes[" + std::to_string(i) + "]"));
    }
  }
  return spec;
}

}  // namespace

Result<Topology> Topology::parse_yaml(std::string_view text) {
  try {
    return build(read_spec(YAML::Load(std::string(text))));
  } catch (const YamlError& e) {
    return e.error;
  } catch (const YAML::Exception& e) {
    return Error{"", "line " + std::to_string(e.mark.line + 1) + ": " + e.msg};
  }
}

Result<Topology> Topology::load(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return Error{"", "cannot read topology file " + file.string()};
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto t = parse_yaml(buffer.str());
  if (!t) return Error{"", file.string() + ": " + t.error().message()};
  return t;
}

}  // namespace nova::tiers
