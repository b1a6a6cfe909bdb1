#include "nova/cloud/config.h"

#include <yaml-cpp/yaml.h>

#include <array>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

#include "nova/security/tls_files.h"

namespace nova::cloud {

using schemas::Error;

namespace {

using Setter = std::function<std::optional<std::string>(CloudConfig&, const YAML::Node&)>;

template <class Int>
Setter integer(std::function<Int&(CloudConfig&)> field, std::uint64_t lo, std::uint64_t hi) {
  return [field, lo, hi](CloudConfig& c, const YAML::Node& n) -> std::optional<std::string> {
    std::uint64_t v = 0;
    try {
      if (!n.IsScalar()) throw YAML::Exception(YAML::Mark::null_mark(), "");
      const std::string text = n.Scalar();
      if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) throw YAML::Exception(YAML::Mark::null_mark(), "");
      v = std::stoull(text);
    } catch (const std::exception&) {
      return "expected an integer " + std::to_string(lo) + ".." + std::to_string(hi);
    }
    if (v < lo || v > hi) return "value " + std::to_string(v) + " is out of range " + std::to_string(lo) + ".." + std::to_string(hi);
    field(c) = static_cast<Int>(v);
    return std::nullopt;
  };
}

Setter text(std::function<std::string&(CloudConfig&)> field, bool may_be_empty) {
  return [field, may_be_empty](CloudConfig& c, const YAML::Node& n) -> std::optional<std::string> {
    if (!n.IsScalar()) return "expected a string";
    if (!may_be_empty && n.Scalar().empty()) return "must not be empty";
    field(c) = n.Scalar();
    return std::nullopt;
  };
}

Setter boolean(std::function<bool&(CloudConfig&)> field) {
  return [field](CloudConfig& c, const YAML::Node& n) -> std::optional<std::string> {
    if (n.IsScalar() && (n.Scalar() == "true" || n.Scalar() == "false")) {
      field(c) = n.Scalar() == "true";
      return std::nullopt;
    }
    return "expected true or false";
  };
}

Setter strings(std::function<std::vector<std::string>&(CloudConfig&)> field) {
  return [field](CloudConfig& c, const YAML::Node& n) -> std::optional<std::string> {
    if (!n.IsSequence()) return "expected a list of strings";
    std::vector<std::string> out;
    for (const auto& item : n) {
      if (!item.IsScalar() || item.Scalar().empty()) return "expected a list of non-empty strings";
      out.push_back(item.Scalar());
    }
    field(c) = std::move(out);
    return std::nullopt;
  };
}

// A key taking one of `names`, stored as the enum value of the same position.
template <class Enum, std::size_t N>
Setter choice(std::function<Enum&(CloudConfig&)> field, const std::array<std::string_view, N>& names) {
  return [field, names](CloudConfig& c, const YAML::Node& n) -> std::optional<std::string> {
    std::string all;
    for (std::size_t i = 0; i < N; ++i) {
      if (n.IsScalar() && n.Scalar() == names[i]) {
        field(c) = static_cast<Enum>(i);
        return std::nullopt;
      }
      all += (i == 0 ? "" : ", ") + std::string(names[i]);
    }
    return "expected one of " + all;
  };
}

// One table of keys: the parser's only knowledge of the file's shape.
const std::map<std::string, Setter>& keys() {
  static const std::map<std::string, Setter> table = {
      {"mqtt.uri", text([](CloudConfig& c) -> std::string& { return c.mqtt.uri; }, false)},
      {"mqtt.username", text([](CloudConfig& c) -> std::string& { return c.mqtt.username; }, false)},
      {"mqtt.client_id", text([](CloudConfig& c) -> std::string& { return c.mqtt.client_id; }, false)},
      {"mqtt.shared_group", text([](CloudConfig& c) -> std::string& { return c.mqtt.shared_group; }, true)},
      {"mqtt.tls_ca_file", text([](CloudConfig& c) -> std::string& { return c.mqtt.tls_ca_file; }, true)},
      {"mqtt.tls_cert_file", text([](CloudConfig& c) -> std::string& { return c.mqtt.tls_cert_file; }, true)},
      {"mqtt.tls_key_file", text([](CloudConfig& c) -> std::string& { return c.mqtt.tls_key_file; }, true)},
      {"store.dir", text([](CloudConfig& c) -> std::string& { return c.store.dir; }, false)},
      {"store.key_file", text([](CloudConfig& c) -> std::string& { return c.store.key_file; }, true)},
      {"store.raw_retention_h",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.store.raw_retention_h; }, 1, 24 * 365)},
      {"store.downsampled_retention_d",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.store.downsampled_retention_d; }, 1, 3650)},
      {"store.record_retention_d",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.store.record_retention_d; }, 1, 3650)},
      {"ingest.max_seq_ahead",
       integer<std::uint64_t>([](CloudConfig& c) -> std::uint64_t& { return c.ingest.max_seq_ahead; }, 1,
                              std::uint64_t{1} << 62)},
      {"liveness.heartbeat_timeout_s",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.liveness.heartbeat_timeout_s; }, 1, 86400)},
      {"migration.overload_high_pct",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.migration.overload_high_pct; }, 1, 100)},
      {"migration.overload_low_pct",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.migration.overload_low_pct; }, 0, 99)},
      {"migration.overload_sustain_s",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.migration.overload_sustain_s; }, 0, 86400)},
      {"migration.min_dwell_s",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.migration.min_dwell_s; }, 0, 86400)},
      {"migration.max_per_node",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.migration.max_per_node; }, 1, 1000)},
      {"reoptimiser.interval_s",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.reoptimiser.interval_s; }, 0, 86400)},
      {"reoptimiser.migration_budget",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.reoptimiser.migration_budget; }, 0, 1000)},
      {"migration.per_node_window_s",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.migration.per_node_window_s; }, 1, 86400)},
      {"log.level", choice<common::LogLevel>([](CloudConfig& c) -> common::LogLevel& { return c.log.level; },
                                              common::kLogLevelNames)},
      {"log.format", choice<common::LogFormat>([](CloudConfig& c) -> common::LogFormat& { return c.log.format; },
                                                common::kLogFormatNames)},
      {"signing.key_file", text([](CloudConfig& c) -> std::string& { return c.signing.key_file; }, true)},
      {"signing.insecure_unsigned", [](CloudConfig& c, const YAML::Node& n) -> std::optional<std::string> {
         if (n.IsScalar() && (n.Scalar() == "true" || n.Scalar() == "false")) {
           c.signing.insecure_unsigned = n.Scalar() == "true";
           return std::nullopt;
         }
         return "expected true or false";
       }},
      {"signing.ttl_s", integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.signing.ttl_s; }, 1,
                                               30 * 86400)},
      {"http.listen", text([](CloudConfig& c) -> std::string& { return c.http.listen; }, false)},
      {"http.port", integer<std::uint16_t>([](CloudConfig& c) -> std::uint16_t& { return c.http.port; }, 0, 65535)},
      {"http.dashboard_dir", text([](CloudConfig& c) -> std::string& { return c.http.dashboard_dir; }, true)},
      {"http.allowed_hosts", strings([](CloudConfig& c) -> std::vector<std::string>& { return c.http.allowed_hosts; })},
      {"http.allowed_origins",
       strings([](CloudConfig& c) -> std::vector<std::string>& { return c.http.allowed_origins; })},
      {"auth.tokens_file", text([](CloudConfig& c) -> std::string& { return c.auth.tokens_file; }, true)},
      {"auth.insecure_no_auth", boolean([](CloudConfig& c) -> bool& { return c.auth.insecure_no_auth; })},
      {"residency.topology_file",
       text([](CloudConfig& c) -> std::string& { return c.residency.topology_file; }, true)},
      {"residency.role", choice<CloudConfig::Residency::Role>(
                             [](CloudConfig& c) -> CloudConfig::Residency::Role& { return c.residency.role; },
                             std::array<std::string_view, 2>{"cloud", "regional"})},
      {"residency.region", text([](CloudConfig& c) -> std::string& { return c.residency.region; }, true)},
      {"audit.file", text([](CloudConfig& c) -> std::string& { return c.audit.file; }, false)},
      {"auth.protect_metrics", boolean([](CloudConfig& c) -> bool& { return c.auth.protect_metrics; })},
      {"verdicts.enabled", boolean([](CloudConfig& c) -> bool& { return c.verdicts.enabled; })},
      {"verdicts.rate_limit",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.verdicts.rate_limit; }, 0, 1'000'000)},
      {"verdicts.rate_window_s",
       integer<std::uint32_t>([](CloudConfig& c) -> std::uint32_t& { return c.verdicts.rate_window_s; }, 1, 30 * 86400)},
      {"verdicts.allowed_actions",
       strings([](CloudConfig& c) -> std::vector<std::string>& { return c.verdicts.allowed_actions; })},
      {"verdicts.threshold_bounds",
       strings([](CloudConfig& c) -> std::vector<std::string>& { return c.verdicts.threshold_bounds; })},
  };
  return table;
}

std::string at_line(const YAML::Node& n) {
  return n.Mark().line >= 0 ? "line " + std::to_string(n.Mark().line + 1) + ": " : "";
}

// A TLS uri needs usable files; files beside a plaintext uri would be silently unused.
std::optional<Error> check_tls_keys(const CloudConfig& c) {
  const CloudOptions options = c.service_options();
  if (options.tls) {
    if (auto problem = security::check_tls_files(*options.tls, security::linked_openssl())) {
      return Error{std::string(security::tls_file_key(problem->file)), problem->reason};
    }
    return std::nullopt;
  }
  for (const auto& [key, value] : {std::pair{"mqtt.tls_ca_file", &c.mqtt.tls_ca_file},
                                   std::pair{"mqtt.tls_cert_file", &c.mqtt.tls_cert_file},
                                   std::pair{"mqtt.tls_key_file", &c.mqtt.tls_key_file}}) {
    if (!value->empty()) return Error{key, "set, but mqtt.uri '" + c.mqtt.uri + "' is plaintext (use mqtts://)"};
  }
  return std::nullopt;
}

}  // namespace

CloudOptions CloudConfig::service_options() const {
  CloudOptions o;
  o.broker_uri = mqtt.uri;
  o.username = mqtt.username;
  o.client_id = mqtt.client_id;
  o.shared_group = mqtt.shared_group;
  if (!security::is_plaintext_uri(mqtt.uri)) {
    o.tls = security::TlsFiles{mqtt.tls_ca_file, mqtt.tls_cert_file, mqtt.tls_key_file};
  }
  o.store.dir = store.dir;
  o.store.raw_retention = std::chrono::hours(store.raw_retention_h);
  o.store.downsampled_retention = std::chrono::hours(24 * store.downsampled_retention_d);
  o.store.record_retention = std::chrono::hours(24 * store.record_retention_d);
  o.store.max_seq_ahead = ingest.max_seq_ahead;
  o.heartbeat_timeout = std::chrono::seconds(liveness.heartbeat_timeout_s);
  o.migration.high_pct = migration.overload_high_pct;
  o.migration.low_pct = migration.overload_low_pct;
  o.migration.sustain_ms = std::uint64_t{migration.overload_sustain_s} * 1000;
  o.migration.min_dwell_ms = std::uint64_t{migration.min_dwell_s} * 1000;
  o.migration.max_per_node = migration.max_per_node;
  o.migration.node_window_ms = std::uint64_t{migration.per_node_window_s} * 1000;
  o.reoptimiser.interval_ms = std::uint64_t{reoptimiser.interval_s} * 1000;
  o.reoptimiser.migration_budget = reoptimiser.migration_budget;
  o.control_ttl = std::chrono::seconds(signing.ttl_s);
  if (residency.role == Residency::Role::regional) o.resident_region = residency.region;
  o.verdicts = verdicts.policy;
  return o;  // the signing key is loaded by signing_key() (a file, with its own errors)
}

schemas::Result<std::optional<security::SigningKey>> CloudConfig::signing_key() const {
  const std::string& key_file = signing.key_file;
  if (key_file.empty()) {
    if (signing.insecure_unsigned) return std::optional<security::SigningKey>();
    return Error{"signing.key_file",
                 "no key to sign control messages with: agents refuse unsigned ones. Make one with "
                 "`nova-pki signing-key` and name its private key file, or set signing.insecure_unsigned: true"};
  }
  auto key = security::SigningKey::load(key_file);
  if (!key) return Error{"signing.key_file", key.error().message()};
  return std::optional<security::SigningKey>(std::move(key).value());
}

schemas::Result<std::optional<security::StorageKey>> CloudConfig::storage_key() const {
  if (store.key_file.empty()) return std::optional<security::StorageKey>();
  auto key = security::load_storage_key(store.key_file);
  if (!key) return Error{"store.key_file", key.error().message()};
  return std::optional<security::StorageKey>(std::move(key).value());
}

schemas::Result<std::shared_ptr<const tiers::Topology>> CloudConfig::topology() const {
  if (residency.topology_file.empty()) return std::shared_ptr<const tiers::Topology>();
  auto t = tiers::Topology::load(residency.topology_file);
  if (!t) return Error{"residency.topology_file", t.error().message()};
  if (residency.role == Residency::Role::regional && t->region_top(residency.region) == nullptr) {
    return Error{"residency.region", "'" + residency.region + "' is not a region of " + residency.topology_file};
  }
  return std::shared_ptr<const tiers::Topology>(std::make_shared<tiers::Topology>(std::move(t).value()));
}

schemas::Result<CloudConfig> parse_config(std::string_view yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return Error{"", "line " + std::to_string(e.mark.line + 1) + ": " + e.msg};
  }
  CloudConfig config;
  if (root.IsNull()) return config;  // an empty file: every default
  if (!root.IsMap()) return Error{"", at_line(root) + "expected a map of sections"};
  for (const auto& section : root) {
    const std::string name = section.first.as<std::string>();
    if (!section.second.IsMap()) {
      bool known = false;
      for (const auto& [key, setter] : keys()) known = known || key.rfind(name + ".", 0) == 0;
      return Error{"", at_line(section.first) + name + (known ? ": expected a map of keys" : ": unknown section")};
    }
    for (const auto& entry : section.second) {
      const std::string key = name + "." + entry.first.as<std::string>();
      auto it = keys().find(key);
      if (it == keys().end()) return Error{"", at_line(entry.first) + key + ": unknown key"};
      if (auto problem = it->second(config, entry.second)) return Error{"", at_line(entry.second) + key + ": " + *problem};
    }
  }
  // Without a gap between the marks there is no hysteresis: a node at the mark would flip.
  if (config.migration.overload_low_pct >= config.migration.overload_high_pct) {
    return Error{"migration.overload_low_pct", "must be below migration.overload_high_pct (" +
                                                   std::to_string(config.migration.overload_high_pct) + "), got " +
                                                   std::to_string(config.migration.overload_low_pct)};
  }
  const bool regional = config.residency.role == CloudConfig::Residency::Role::regional;
  if (regional && config.residency.region.empty()) {
    return Error{"residency.region", "the regional role needs the region whose resident data it stores"};
  }
  if (regional && config.residency.topology_file.empty()) {
    return Error{"residency.topology_file", "the regional role needs the topology (it checks each node's region)"};
  }
  if (!regional && !config.residency.region.empty()) {
    return Error{"residency.region", "set, but residency.role is cloud (only a regional instance has a region)"};
  }
  const CloudConfig::Verdicts& v = config.verdicts;
  auto policy = parse_verdict_policy(v.enabled, v.rate_limit, v.rate_window_s, v.allowed_actions, v.threshold_bounds);
  if (!policy) return policy.error();
  config.verdicts.policy = std::move(policy).value();
  return config;
}

schemas::Result<CloudConfig> load_config(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return Error{"", "cannot read " + file.string()};
  std::stringstream text;
  text << in.rdbuf();
  auto config = parse_config(text.str());
  if (!config) return config;
  if (auto problem = check_tls_keys(*config)) return *problem;
  if (auto topology = config->topology(); !topology) return topology.error();
  return config;
}

}  // namespace nova::cloud
