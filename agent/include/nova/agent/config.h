// The agent's configuration: every setting nova-agent has, with a default for each.
//
// It comes from a YAML file of sections (agent/examples/agent.yaml documents every key)
// and, at run time, from the retained `down` config message, whose values are the same
// keys spelt with dots ("limits.max_cpu_pct"). Both go through one table of keys
// (config_keys(): name, type, range, default, hot or restart, may the cloud change it),
// which also renders the reference in docs/agent.md, so the three cannot drift apart.
//
// Errors are refused, never repaired: a running agent keeps its configuration when a
// new one is bad, and the error names the key and the reason:
//   line 7: mqtt.keepalive_s: expected an integer
//   line 3: mqtt.keepalive: unknown key (did you mean mqtt.keepalive_s?)
//   limits.max_cpu_pct: value 150 is out of range 1..100
//   node.id: required key is missing
//   config.values.node.site: identity keys cannot be changed remotely (...)
//   config.values.tasks.allow: only the agent's file sets what tasks may run (...)
// Unknown keys are errors, as in the topology file: a misspelt key must not silently
// leave its default in force.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nova/agent/decisions.h"
#include "nova/agent/uplink.h"
#include "nova/common/log.h"
#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::agent {

// log.level and log.format are the shared daemon logging's (nova/common/log.h).
using common::LogFormat;
using common::LogLevel;

// The machine's architecture as `uname -m` reports it ("x86_64", "aarch64", ...).
std::string host_arch();

// Defaults are written here once; docs and the example file are checked against them.
// A yes/no setting that is off unless explicitly turned on (YAML false/true).
enum class Insecure { off, on };

struct AgentConfig {
  struct Node {
    std::string id;          // required; a topic Id, the MQTT client id
    std::string site;        // required; site path, e.g. "cloud/eu/par/par-a1"
    std::uint8_t level = 5;  // tier 1..5, not above its site's depth
    std::string arch = host_arch();
    std::vector<std::string> capabilities;  // Ids, e.g. ["gpu", "arm64"]
    friend bool operator==(const Node&, const Node&) = default;
  } node;
  struct Mqtt {
    std::string uri = "tcp://127.0.0.1:1883";  // the site's local broker
    std::optional<std::uint32_t> keepalive_s;  // unset: kDefaultKeepalive (keepalive())
    std::uint32_t reconnect_min_ms = 500;      // jittered exponential back-off bounds
    std::uint32_t reconnect_max_ms = 30000;
    // TLS (a TLS uri only): PEM files, read again at every connect.
    std::string tls_ca_file;
    std::string tls_cert_file;
    std::string tls_key_file;
    bool tls_insecure_skip_verify = false;  // the broker is not verified: lab use only
    friend bool operator==(const Mqtt&, const Mqtt&) = default;
  } mqtt;
  struct Metrics {
    std::uint32_t interval_ms = 1000;     // one MetricSample per interval
    std::uint32_t batch_interval_s = 60;  // samples per outbox batch = batch / interval
    std::string data_path = "/";          // disk_pct measures this path's filesystem
    // How batches are encoded: qdelta (quantized, delta-encoded, zstd), zstd or plain.
    schemas::BatchEncoding encoding = schemas::BatchEncoding::qdelta;
    friend bool operator==(const Metrics&, const Metrics&) = default;
  } metrics;
  struct Outbox {
    std::string dir = "/var/lib/nova-agent/outbox";
    std::uint64_t max_bytes = 64ull * 1024 * 1024;  // disk cap before priority eviction
    friend bool operator==(const Outbox&, const Outbox&) = default;
  } outbox;
  struct Drain {
    std::uint32_t rate_per_s = 50;   // token bucket refill, messages/s, after reconnect
    std::uint32_t burst = 100;       // bucket size
    std::uint32_t jitter_ms = 2000;  // random delay before draining starts
    std::uint32_t resend_after_s = 30;  // go-back-N after this long without ack progress
    friend bool operator==(const Drain&, const Drain&) = default;
  } drain;
  struct Limits {  // the seed's EdgeAgentConfig; tasks that would break them wait or are refused
    std::uint32_t max_cpu_pct = 80;
    std::uint32_t max_memory_pct = 85;
    std::uint32_t max_disk_pct = 90;
    std::uint64_t min_free_memory_mb = 1024;
    std::uint64_t cache_size_mb = 100;  // the task cache's byte budget; 0 = no cache
    friend bool operator==(const Limits&, const Limits&) = default;
  } limits;
  // The task cache (nova/agent/cache.h; docs/agent.md, Cache); its budget is
  // limits.cache_size_mb.
  struct TaskCache {
    std::string dir;     // empty: cache_dir()
    std::string socket;  // empty: cache_socket(); NOVA_CACHE_SOCKET of every task
    std::string origin;                                  // http://host[:port][/path]; empty: none
    bool prefetch = true;
    std::uint32_t prefetch_depth = 4;
    std::uint32_t max_entries = 16384;
    friend bool operator==(const TaskCache&, const TaskCache&) = default;
  } cache;
  struct Tasks {
    std::string dir = "/var/lib/nova-agent/tasks";
    std::uint32_t max_concurrent = 2;
    std::uint32_t output_tail_bytes = 4096;  // kept of stdout+stderr; the schema's maximum
    // What a task may run and as whom: file only (see TaskRunnerOptions in tasks.h).
    std::vector<std::string> allow;  // absolute paths; empty: every task is refused
    std::string user = "nobody";     // applies when the agent runs as root
    bool allow_root = false;
    friend bool operator==(const Tasks&, const Tasks&) = default;
  } tasks;
  // Local decisions (decisions.h): warning and critical levels of the core gauges,
  // 0 = off. The defaults leave headroom above limits.* (tasks wait first, then alert).
  struct Alerts {
    std::uint32_t cpu_pct_warning = 90;
    std::uint32_t cpu_pct_critical = 97;
    std::uint32_t mem_pct_warning = 90;
    std::uint32_t mem_pct_critical = 97;
    std::uint32_t disk_pct_warning = 90;
    std::uint32_t disk_pct_critical = 97;
    std::uint32_t temp_c_warning = 80;
    std::uint32_t temp_c_critical = 95;
    std::uint32_t repeat_s = 300;  // a lasting condition is raised again after this
    friend bool operator==(const Alerts&, const Alerts&) = default;
  } alerts;
  struct Anomaly {  // detectors per gauge (decisions.h); a retained zscore model may override
    std::uint32_t zscore = 4;        // score that is an anomaly, for rules without one; 0 = off
    std::uint32_t min_samples = 60;  // values per gauge before any is judged
    std::uint32_t window = 600;      // the baseline's memory, in samples
    // StreamRule lines, first match wins; empty: a z-score detector on every gauge. By
    // default sensor readings only: cpu, memory, load and disk move with the work a
    // healthy node is given (tasks placed on it among them), and their threshold alerts
    // (alerts.*) stay on. Robust at 6: noise does not reach it (docs/agent.md).
    std::vector<std::string> streams{"sensor.* mad threshold=6"};
    friend bool operator==(const Anomaly&, const Anomaly&) = default;
  } anomaly;
  // Who may send control messages down (control_gate.h). File only: a remote config that
  // names a trust key is refused, so no message can make the agent trust its sender.
  struct Trust {
    std::vector<std::string> signing_keys;  // Ed25519 public key files (PEM); several during a rotation
    Insecure insecure_unsigned = Insecure::off;  // on: unsigned control messages are accepted
    std::uint32_t clock_skew_s = 300;             // allowance on iat and exp
    friend bool operator==(const Trust&, const Trust&) = default;
  } trust;
  // Encryption at rest of the outbox, task store and inbox (docs/agent.md). File only.
  struct Storage {
    std::string key_file;  // 64 hex digits, mode 0600; empty: plaintext, warned at every start
    friend bool operator==(const Storage&, const Storage&) = default;
  } storage;
  // Data residency (docs/agent.md, Resident streams). File only.
  struct Residency {
    // The region of this node's site as the topology says (nova-bridge renders the
    // resident rules from it); empty: nothing is resident.
    std::string region;
    // Streams whose raw records stay in the region: "metrics" (the metrics batches).
    std::vector<std::string> streams;
    friend bool operator==(const Residency&, const Residency&) = default;
  } residency;
  // Personal sensor data (sensors.h, PrivacyPolicy): only aggregates of it go upward. File only.
  struct Privacy {
    std::vector<std::string> personal;  // "<sensor>" or "<sensor>/<value>"
    std::uint32_t window_s = 60;        // one count/mean/min/max per personal value per window
    std::uint32_t min_readings = 3;     // a window of fewer sends its count only
    friend bool operator==(const Privacy&, const Privacy&) = default;
  } privacy;
  struct Update {
    // The installation folder the launcher (firmware/nova-agent-launch) runs versions
    // from; empty: over-the-air updates are refused (docs/agent.md, Updates).
    std::string dir;
    friend bool operator==(const Update&, const Update&) = default;
  } update;
  // Stream pipelines (pipelines.h): the `pipelines:` list as one line of flow YAML,
  // checked by parse_pipelines; "[]": none.
  std::string pipelines = "[]";
  struct Log {
    LogLevel level = LogLevel::info;
    LogFormat format = LogFormat::logfmt;
    friend bool operator==(const Log&, const Log&) = default;
  } log;

  // The detector parameters anomaly.* gives a rule for the fields it does not set.
  DetectorParams anomaly_defaults() const;
  // anomaly.streams as rules (a config that loaded always has valid ones).
  std::vector<StreamRule> anomaly_rules() const;
  // The local decisions' options: alerts.* and anomaly.*.
  DecisionOptions decision_options() const;

  // mqtt.keepalive_s if set, else kDefaultKeepalive.
  std::chrono::seconds keepalive() const;
  // Not the tier profile's (30-60 s, what bridges use): a node that vanishes without
  // closing its connection must be dead at nova-cloud within 10 s. Mosquitto 2.0.11
  // drops a client once more than 1.5 keepalives (whole seconds, rounded down) passed
  // since its last packet, and looks only every 6 s: at 2, at most 4 + 6 s.
  static constexpr std::chrono::seconds kDefaultKeepalive{2};
  // cache.dir if set, else "cache" beside outbox.dir (in its parent folder), so agents
  // with their own outbox never share a cache.
  std::filesystem::path cache_dir() const;
  // cache.socket if set, else "cache.sock" beside outbox.dir.
  std::filesystem::path cache_socket() const;
  // The uplink's TLS files for a TLS mqtt.uri; nullopt for a plaintext one
  // (is_plaintext_uri).
  std::optional<TlsFiles> tls() const;

  friend bool operator==(const AgentConfig&, const AgentConfig&) = default;
};

// The key that names `file` ("mqtt.tls_cert_file"), for errors about it.
using security::tls_file_key;

// The one stream residency.streams may name.
inline constexpr std::string_view kResidentMetricsStream = "metrics";

// --- the key table ---------------------------------------------------------------------

enum class KeyType {
  integer,      // YAML integer; remote int64
  size,         // bytes: an integer, or a number with B, KiB, MiB, GiB, kB, MB or GB
  string,       // YAML scalar; remote string
  string_list,  // YAML sequence of scalars; remote string of comma-separated items
  choice,       // one of `choices`
};

// When a changed value takes effect. `hot`: the agent applies it while running;
// `restart`: it is stored, and used after the agent (or, for mqtt.*, its session)
// restarts. The owner of each setting honours this; changed_keys() tells it what moved.
enum class Reload { hot, restart };

struct ConfigKey {
  std::string_view name;  // dotted: "section.key"
  KeyType type = KeyType::integer;
  std::int64_t min = 0;  // integer and size: inclusive range
  std::int64_t max = 0;
  std::span<const std::string_view> choices;  // choice
  bool required = false;                      // must be in the file (there is no sensible default)
  bool remote = true;                         // may the retained down config change it
  Reload reload = Reload::hot;
  std::string_view default_note;  // a default that is computed, in words; empty: AgentConfig{}'s
  std::string_view accepts;       // what a string must be, in words (empty: anything)
  std::string_view description;
};

// Every key, in file order.
std::span<const ConfigKey> config_keys();
const ConfigKey* find_config_key(std::string_view name);

// A key's value in `config`, as the docs and logs print it ("80", "tcp://...", "[a, b]").
// Precondition: `key` is one of config_keys().
std::string format_value(const AgentConfig& config, const ConfigKey& key);

// --- loading and changing --------------------------------------------------------------

// YAML errors carry the line where one is known; load_config prefixes the file name.
schemas::Result<AgentConfig> parse_config(std::string_view yaml);
schemas::Result<AgentConfig> load_config(const std::filesystem::path& path);

// `remote.values` applied over `current` with the file's validation. Paths in errors are
// "config.values.<key>". Refused whole on any error (the caller keeps `current`), and
// for keys with remote == false (node.id, node.site: the identity a node is addressed
// by). The caller checks remote.revision against the last one applied.
schemas::Result<AgentConfig> apply_remote(const AgentConfig& current,
                                          const schemas::Config& remote);

// The keys whose values differ, in table order.
std::vector<const ConfigKey*> changed_keys(const AgentConfig& a, const AgentConfig& b);
// For logs: "limits.max_cpu_pct: 80 -> 70; mqtt.uri: tcp://a:1883 -> tcp://b:1883
// (restart)", or "no changes".
std::string describe_changes(const AgentConfig& a, const AgentConfig& b);

// The Markdown table of every key that docs/agent.md's "Configuration" section holds
// (a test keeps the two equal).
std::string config_reference_markdown();

}  // namespace nova::agent
