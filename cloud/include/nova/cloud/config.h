// nova-cloud's configuration file: YAML sections of keys, every key with a default
// (cloud/examples/cloud.yaml lists them all with their meaning).
//
// As in nova-agent and the topology file, unknown keys are errors and errors name the
// key and the line:
//   line 4: http.port: expected an integer 1..65535
//   line 2: mqtt.url: unknown key
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "nova/cloud/service.h"
#include "nova/common/log.h"
#include "nova/schemas/result.h"
#include "nova/security/sealed_records.h"
#include "nova/tiers/topology.h"

namespace nova::cloud {

struct CloudConfig {
  struct Mqtt {
    std::string uri = "tcp://127.0.0.1:1883";  // the cloud site's broker
    std::string username = "nova-cloud";       // the ACL's cloud service user
    std::string client_id = "nova-cloud";      // unique per instance
    std::string shared_group;                  // set on every instance to share ingest
    // TLS (a TLS uri, mqtts:// or ssl://, only): PEM files of the PKI (docs/security.md).
    // Read at start and at every reconnect; a change needs a restart (SIGHUP reports it).
    std::string tls_ca_file;
    std::string tls_cert_file;
    std::string tls_key_file;
  } mqtt;
  struct Store {
    std::string dir = "/var/lib/nova-cloud/store";
    std::uint32_t raw_retention_h = 24;          // raw metric batches
    std::uint32_t downsampled_retention_d = 30;  // per-minute aggregates
    std::uint32_t record_retention_d = 30;       // results, decisions, alerts
    // Encryption at rest: 64 hex digits, mode 0600 (security/sealed_records.h); empty:
    // the store is plaintext, warned at every start.
    std::string key_file;
  } store;
  struct Ingest {
    // A record whose seq lies further than this beyond its stream's watermark is refused
    // (a forged huge seq or first would otherwise stall the stream).
    std::uint64_t max_seq_ahead = 1'000'000;
  } ingest;
  struct Liveness {
    std::uint32_t heartbeat_timeout_s = 180;  // silent this long -> not placeable, failover
  } liveness;
  // When utilisation moves a workload (migration.h): hysteresis between two watermarks,
  // a dwell time after each placement, a cap per node.
  struct Migration {
    std::uint32_t overload_high_pct = 90;    // CPU or memory above this ...
    std::uint32_t overload_sustain_s = 60;   // ... for this long: the node is overloaded
    std::uint32_t overload_low_pct = 75;     // until a sample at or below this (< high)
    std::uint32_t min_dwell_s = 300;         // no migration of a placement younger than this
    std::uint32_t max_per_node = 2;          // migrations off one node ...
    std::uint32_t per_node_window_s = 600;   // ... per this sliding window
  } migration;
  // The re-optimiser (reoptimiser.h): rounds toward the batch optimum, within the
  // migration limits above and a budget of moves per round.
  struct Reoptimiser {
    std::uint32_t interval_s = 10;           // between rounds; 0: off
    std::uint32_t migration_budget = 2;      // running workloads moved per round, at most
  } reoptimiser;
  // How decision records are judged (verdicts.h, docs/cloud.md "Verdicts").
  struct Verdicts {
    bool enabled = true;
    std::uint32_t rate_limit = 0;        // decisions per node per window; 0: no limit
    std::uint32_t rate_window_s = 3600;
    std::vector<std::string> allowed_actions;   // "<level>:<action>"
    std::vector<std::string> threshold_bounds;  // "<gauge>:<min>..<max>"
    VerdictPolicy policy;                       // the above, checked (parse_config)
  } verdicts;
  struct Log {
    common::LogLevel level = common::LogLevel::info;     // lines below it are not written
    common::LogFormat format = common::LogFormat::logfmt;  // or json: one object per line
  } log;
  // Downward control messages are signed with this Ed25519 key (security/control.h).
  struct Signing {
    std::string key_file;            // PEM private key from `nova-pki signing-key`
    bool insecure_unsigned = false;  // true: start without key_file, sending unsigned (warned)
    std::uint32_t ttl_s = 86400;     // a message is valid this long after it is sent
  } signing;
  struct Http {
    std::string listen = "127.0.0.1";
    std::uint16_t port = 8080;        // 0: any free port (printed at start)
    std::string dashboard_dir;        // static files served at /; empty: the built-in page
    std::vector<std::string> allowed_hosts;    // Host values; empty: listen, localhost, 127.0.0.1 with the port
    std::vector<std::string> allowed_origins;  // Origin values on writes; empty: http:// + each allowed host
  } http;
  struct Auth {
    std::string tokens_file;        // required unless insecure_no_auth (see auth.h for the format)
    bool insecure_no_auth = false;  // no authentication at all: logs a warning at start
    bool protect_metrics = false;   // /metrics needs a viewer token too
  } auth;
  // Data residency (docs/placement.md, docs/cloud.md). A node's region is the region of
  // its site in this topology, signed off by whoever owns the file; never what its own
  // birth claims.
  struct Residency {
    std::string topology_file;  // empty: no node has a region (region-bound workloads stay pending)
    enum class Role { cloud, regional } role = Role::cloud;
    // Regional role only: the region whose resident data this instance stores (it runs at
    // the region's top broker, consumes nova/v1/resident/<region>/# and births, nothing else).
    std::string region;
  } residency;
  struct Audit {
    // The hash-chained audit log (security/audit_log.h): API writes and what nova-cloud
    // publishes to nodes.
    std::string file = "/var/lib/nova-cloud/audit.log";
  } audit;

  CloudOptions service_options() const;
  // The key named by signing.key_file; none when signing.insecure_unsigned allows it.
  schemas::Result<std::optional<security::SigningKey>> signing_key() const;
  // The key named by store.key_file; none when it is empty.
  schemas::Result<std::optional<security::StorageKey>> storage_key() const;
  // The topology named by residency.topology_file (none when it is empty); errors name the
  // key. In the regional role residency.region must be one of its regions.
  schemas::Result<std::shared_ptr<const tiers::Topology>> topology() const;
};

// The file's shape and values only (no file is opened).
schemas::Result<CloudConfig> parse_config(std::string_view yaml_text);
// parse_config, then the TLS files: a TLS uri needs all three, readable, the key matching
// the certificate (security::check_tls_files), and a plaintext uri refuses them (they
// would be ignored). Errors name the key: "mqtt.tls_key_file: the key in ... does not
// match the certificate in ...".
schemas::Result<CloudConfig> load_config(const std::filesystem::path& file);

}  // namespace nova::cloud
