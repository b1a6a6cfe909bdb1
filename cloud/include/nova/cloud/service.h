// nova-cloud's core: an MQTT consumer of the `up` namespace at the cloud broker.
//
// One Paho client (a clean session; Paho is only the transport) subscribes to
//   nova/v1/up/+/state, nova/v1/up/+/link   -> LiveTopology (every instance sees all)
//   nova/v1/up/+/{metrics,result,decision,alert} -> IngestStore, then Ack downward
//   nova/v1/cloud/#                          -> workloads/placements/clusters (retained)
// With `shared_group` set, the ingest topics are subscribed as
// $share/<group>/nova/v1/up/+/<kind>, so several instances split the ingest load and the
// broker hands each record to one of them.
//
// Threads: Paho's callback thread only queues messages (Paho holds its client lock while
// a callback runs, so nothing may wait there). One ingest thread takes up to
// `max_group` queued messages, decodes and validates them, stores the group with one
// synced write (IngestStore::admit) and only then publishes the acks -- one Ack per
// node per group, carrying the watermark of every stream the group touched. A duplicate
// is answered with the current watermark too: it means the agent did not get our ack.
// Records of a node whose birth has not been seen yet are stored; their ack waits for
// the birth (the birth names the site path the ack topic needs).
//
// Every subscription is checked (subscriptions.h): its SUBACK, then a probe through it.
// A filter that does not deliver is logged, counted, subscribed again, and fails
// readiness() until it delivers.
//
// The cloud's own records (workloads, placements, clusters) are kept in the store and
// loaded at start; after each (re)connect, once the retained records had a second to
// arrive, this instance publishes again the ones it owns (workloads.h, Durability).
//
// Bad input never stops the service: an undecodable payload, a record whose node differs
// from its topic, an unknown kind -- each is logged with the reason and counted by kind.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "nova/cloud/migration.h"
#include "nova/cloud/reoptimiser.h"
#include "nova/cloud/ingest_store.h"
#include "nova/cloud/live_topology.h"
#include "nova/cloud/remote_config.h"
#include "nova/cloud/subscriptions.h"
#include "nova/cloud/verdicts.h"
#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"
#include "nova/security/signing.h"
#include "nova/security/tls_files.h"
#include "nova/tiers/topology.h"

namespace nova::security {
class AuditLog;
}  // namespace nova::security

namespace nova::cloud {

class Rollouts;
class Erasures;
class Workloads;

using LogFn = std::function<void(const char* level, const std::string& event, const std::string& fields)>;

struct CloudOptions {
  std::string broker_uri = "tcp://127.0.0.1:1883";
  std::string username = "nova-cloud";
  std::string client_id = "nova-cloud";
  std::string shared_group;  // empty: this instance consumes all ingest alone
  // Required for a TLS broker_uri (mqtts://, ssl://): verifies the broker against
  // ca_file (TLS 1.2 at least) and presents cert_file. Ignored for a plaintext uri.
  std::optional<security::TlsFiles> tls;
  StoreOptions store;
  std::chrono::milliseconds heartbeat_timeout{180'000};
  MigrationPolicy migration;  // utilisation watermarks, dwell time, per-node cap
  ReoptimiserPolicy reoptimiser;  // rounds toward the batch optimum (reoptimiser.h)
  std::chrono::milliseconds sweep_interval{3'600'000};
  std::size_t max_group = 512;  // records per synced write
  SubscriptionTiming subscriptions;
  std::chrono::milliseconds republish_delay{1000};  // after the cloud filter's SUBACK
  LogFn log;
  // Every message the workload manager publishes (tasks down to nodes, placement,
  // workload and cluster records) is appended here, synced, after the publish. Acks are
  // not: one per stored batch, they carry no decision. Null: none.
  std::shared_ptr<security::AuditLog> audit;
  // Signs every message published on a down topic (security/control.h), valid for
  // control_ttl from when it is sent. None: sent unsigned (signing.insecure_unsigned).
  std::optional<security::SigningKey> signing_key;
  std::chrono::milliseconds control_ttl{std::chrono::hours(24)};
  // Data residency. A node's region is its site's region in `topology`; a birth that
  // claims another is stored with the topology's (counted as region_ignored), and a birth
  // whose site differs from the node's site in the topology is refused (site_mismatch).
  // A node missing from the topology gets no region. Null: no node has a region.
  std::shared_ptr<const tiers::Topology> topology;
  // Non-empty: the regional role. The instance consumes the births, links and the resident
  // data of this region (nova/v1/resident/<region>/#, tiers/residency.h) at the region's
  // top broker, stores and acknowledges that data, and ingests nothing from
  // nova/v1/up/<node>/<kind> (the cloud instances store and acknowledge those).
  std::string resident_region;
  VerdictPolicy verdicts;  // how decision records are judged (verdicts.h)
};

// Counters for /metrics. Monotonic unless named as a gauge.
struct CloudCounters {
  std::uint64_t messages = 0;             // MQTT messages received
  std::uint64_t records_stored = 0;       // distinct upward records stored
  std::uint64_t duplicates = 0;           // replayed records refused by dedup
  std::uint64_t samples = 0;              // metric samples stored
  std::uint64_t acks_sent = 0;
  std::uint64_t acks_deferred = 0;        // acks waiting for a node's birth
  std::uint64_t store_writes = 0;
  std::uint64_t store_errors = 0;
  std::map<std::string, std::uint64_t> rejected;  // by reason class, e.g. "undecodable"
  std::uint64_t liveness_changes = 0;
  std::uint64_t subscriptions_refused = 0;  // a filter refused or deaf, each time
  std::uint64_t shared_fallbacks = 0;     // shared filters replaced by plain ones
  std::uint64_t republished = 0;          // cloud records published again after a connect
  std::uint64_t connect_failures = 0;     // connects refused or failed before a first success
  std::uint64_t region_ignored = 0;       // births whose region claim the topology overrode
  std::uint64_t queue_depth = 0;          // gauge
  bool connected = false;                 // gauge
};

class CloudService {
 public:
  static schemas::Result<std::unique_ptr<CloudService>> start(CloudOptions options);
  // Without a broker, for fuzzing and tests of the handlers: nothing connects, no thread
  // runs, publishes go to `sink`, and messages enter through deliver().
  using PublishSink = std::function<void(const std::string& topic, const std::vector<std::uint8_t>& payload, bool retained)>;
  static schemas::Result<std::unique_ptr<CloudService>> start_detached(CloudOptions options, PublishSink sink);
  // Handles one message on the caller's thread exactly as one arriving from the broker
  // (the same function the MQTT callback and the ingest thread run). Detached only.
  void deliver(const std::string& topic, const std::string& payload, bool retained);

  ~CloudService();  // stops
  CloudService(const CloudService&) = delete;
  CloudService& operator=(const CloudService&) = delete;

  // Drains the queue, stops the ingest thread and disconnects. Idempotent.
  void stop();

  // Publishes (QoS 1) from any thread; false if the client refused it (disconnected or
  // buffer full). Used by the workload manager and the API.
  bool publish(const std::string& topic, const std::vector<std::uint8_t>& payload, bool retained);
  // Everything published so far acknowledged by the broker (QoS 1 PUBACK) within
  // `timeout`; true at once when detached.
  bool wait_delivered(std::chrono::milliseconds timeout) const;

  // Snapshots for the API.
  std::vector<NodeView> nodes() const;
  std::optional<NodeView> node(const std::string& id) const;
  std::vector<std::string> links_down() const;
  // How many nodes are in each liveness state (cheap: no copy of the table).
  std::map<Liveness, std::size_t> liveness_counts() const;
  // Live nova-cloud instances (this one included once its presence record came back).
  std::vector<std::string> instances() const;
  CloudCounters counters() const;
  // Why this instance cannot serve fully now (not connected, a subscription that does not
  // deliver); empty when ready.
  std::vector<std::string> readiness() const;
  IngestStore& store() { return *store_; }
  Workloads& workloads() { return *workloads_; }
  Rollouts& rollouts() { return *rollouts_; }
  Erasures& erasures() { return *erasures_; }
  Verdicts& verdicts() { return *verdicts_; }
  RemotePushes& pushes() { return *pushes_; }
  const CloudOptions& options() const { return options_; }

  // Waits until `pred` holds on the current node table (tests, readiness).
  bool wait_for_nodes(const std::function<bool(const std::map<std::string, NodeView>&)>& pred,
                      std::chrono::milliseconds timeout) const;

 private:
  // `payload` in a signed envelope when `topic` is a down topic and a key is set.
  std::vector<std::uint8_t> signed_if_down(const std::string& topic, const std::vector<std::uint8_t>& payload);
  class Impl;
  explicit CloudService(CloudOptions options);
  // Opens the store, builds the workload manager and loads the kept cloud records.
  static schemas::Result<std::unique_ptr<CloudService>> prepare(CloudOptions options);

  CloudOptions options_;
  std::unique_ptr<IngestStore> store_;
  std::unique_ptr<Workloads> workloads_;
  std::unique_ptr<Rollouts> rollouts_;
  std::unique_ptr<Erasures> erasures_;
  std::unique_ptr<Verdicts> verdicts_;
  std::unique_ptr<RemotePushes> pushes_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nova::cloud
