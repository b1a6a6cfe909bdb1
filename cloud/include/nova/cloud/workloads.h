// Workloads: what the cloud was asked to run, where it runs, and keeping it running.
//
// submit() places a WorkloadSpec with tiers::PlacementEngine on the nodes that are
// alive now, accounting for what earlier workloads already hold on each node (so a burst
// of submissions never overcommits a node), then publishes, QoS 1:
//   nova/v1/cloud/workload/<id>   the spec, retained
//   nova/v1/cloud/placement/<id>  the decision with its score breakdown and the
//                                 precomputed failover candidates, retained
//   nova/v1/down/<site>/<node>/task  a Task "<id>.r<revision>" for the chosen node
// The task's result (through the ingest path) ends the run: ok -> succeeded; refused
// -> placed again elsewhere; failed/timeout/killed -> failed.
//
// Placement signals: every node's candidate carries what nova-cloud measured of it
// (measured.h: latency corrected by its round trip, stability, reliability, offline
// hours, power, throttling); the engine is kept in sync with births, deaths and samples
// rather than built per decision (docs/placement.md, "In nova-cloud").
//
// Failover: when a node hosting a running workload stops being alive (its will, its
// goodbye, a bridge above it going down, or missed heartbeats), its owner places the
// workload again with a new revision, on the nodes alive now minus the lost one (the
// published failover list is the decision's runners-up at placement time; a fresh
// decision also sees what changed since). Each failover records when the loss was seen
// and, once the new run reports, when it started (GET /api/v1/workloads/<id>). Failover
// follows the node's state, not only its changes: every tick, a placed workload whose
// node is not alive fails over (a node that died while this instance was down, a
// retained placement taken after its node's will), and so does one whose node no record
// has named for the heartbeat timeout since this instance started.
//
// Migration (migration.h): tick() checks the owned running workloads' nodes for the
// triggers (utilisation with hysteresis, thermal, maintenance window, flapping
// connectivity, cost) and moves a workload placed at least the dwell time ago, within
// the per-node cap, with a MigrationPlan when another node passes every hard constraint;
// if the target fails to start, the plan rolls back to the source with a new run there.
// Fencing (fence.h): a migration or rollback cancels the old run and sends the new run's
// task only once the old run is known stopped (its result came) or its node is declared
// dead; a failover cancels the old run too, but its node is dead already, so the new run
// starts at once. cancel() (REST) stops a workload's run the same way: it ends
// "cancelled". Fences are kept through set_fence_persistence(), so an owner that
// restarts during one waits again (restore_fence()). The re-optimiser (reoptimiser.h) moves owned workloads toward the batch
// optimum within the same limits (dwell time, per-node cap, fencing) and its own budget
// per round; a round that migrates places nothing else, since the room a migration frees
// is held by the old run until it is known stopped.
//
// Federation: clusters are registered (REST, retained records) with a role,
// capabilities and policies ("maintenance_window", "cost"); a node belongs to a cluster
// whose root_site lies on its site path. Every regional and metro site seen in births
// joins by itself as a secondary cluster "edge-<site>" with the edge_computing
// capability, and the root site as the primary cluster, unless an operator registered
// that id first.
//
// Services (spec.kind "service"): spec.replicas runs, each on its own node (never two
// on one node; a site no other replica uses is preferred), each a task that runs until
// cancelled and is restarted by its agent (restart policy, health check: docs/agent.md).
// An agent reports each replica's state as results with status "running", which update
// the replica and never end it. The phase is running while any replica is active; a
// replica whose node dies (as Failover above) is placed again on a node that hosts no
// other replica, and its old run is sent a cancel. A replica's run that ends (refused:
// placed again elsewhere; ok, failed: the restart policy gave up) ends the replica; the
// workload ends when every replica has: cancelled if cancelled, else failed if any
// failed, else succeeded. cancel() stops every replica (fence.h, one fence each).
// Services are placed one at a time (also within submit_batch, before its tasks, whose
// batch then sees what the replicas hold) and neither migrated nor
// re-optimised.
//
// Several instances: every instance sees every workload, placement and result (retained
// records and non-shared subscriptions), but only a workload's owner places it, fails
// it over or migrates it. The owner is chosen by rendezvous hashing of the workload id
// over the live instances (their retained presence records), so every instance computes
// the same owner without talking, and when an instance dies its workloads are adopted
// by the survivors. An instance that receives a submission it does not own publishes
// the spec; the owner places it.
//
// Durability: the broker's retained records are a cache for subscribers, not the record.
// Every record this instance publishes (spec, placement, cluster) or accepts from the
// broker is kept through `persist` first (CloudService keeps them in its IngestStore),
// restore() loads them at start, and republish_owned() publishes again what this
// instance owns after each (re)connect -- so a broker that lost its retained store gets
// everything back. Where the broker disagrees with the store, the owner's copy wins,
// except a placement with a higher revision, which is newer (a previous owner's) and is
// taken into the store like any other record from the broker. Retained records arrive
// in any order: a placement that comes before its workload record is held (and kept)
// until the workload arrives, then taken as the current run -- never placed again.
//
// Thread-safe: REST threads submit while the ingest thread reports results and
// liveness.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "nova/cloud/fence.h"
#include "nova/cloud/live_topology.h"
#include "nova/cloud/migration.h"
#include "nova/cloud/reoptimiser.h"
#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"
#include "nova/schemas/topic.h"
#include "nova/tiers/placement.h"

namespace nova::cloud {

using PublishFn = std::function<bool(const std::string& topic, const std::vector<std::uint8_t>& payload, bool retained)>;
using NodesFn = std::function<std::vector<NodeView>()>;
// Keeps a cloud record durably; an empty payload forgets it. `own`: this instance decided
// it (wait for the disk), else it is a copy of a record from the broker.
using PersistFn = std::function<void(topics::CloudKind kind, const std::string& id, const std::vector<std::uint8_t>& payload,
                                     bool own)>;
using WorkloadLogFn = std::function<void(const char* level, const std::string& event, const std::string& fields)>;
// Keeps a workload's fence durably (fence_to_json); an empty string forgets it.
using FencePersistFn = std::function<void(const std::string& workload_id, const std::string& json)>;
// Waits until the broker has acknowledged everything published so far (QoS 1 PUBACKs), at
// most `timeout`; false if it has not.
using WaitDeliveredFn = std::function<bool(std::chrono::milliseconds timeout)>;

// A node's birth facts as a placement candidate: id, site, level, arch, capabilities,
// region, allocatable, and alive when its liveness is. Usage, clusters, measured signals
// and latency are the caller's to add. Precondition: n.description.
tiers::Candidate birth_candidate(const NodeView& n);

enum class Phase { pending, running, succeeded, failed, cancelled, deleted };
std::string_view to_string(Phase p);

struct PlacementEvent {
  Timestamp ts = 0;
  std::string node;
  std::uint64_t revision = 0;
  std::string reason;       // "submitted", "failover: node dead (will)", "refused: ...", ...
  Timestamp detected_ts = 0;  // failover only: when the loss was seen
  Timestamp started_ts = 0;   // failover only: when the new run started (from its result)
};

// The measured values placement used for one node (measured.h), shown beside a score.
struct PlacementSignals {
  std::optional<double> rtt_ms;      // the agent's measured round trip; absent: not measured
  std::optional<double> latency_ms;  // to the workload's latency target, corrected by rtt_ms
  double stability = 1;              // share of the last 10 min the node was alive
  std::optional<double> reliability; // observed uptime over 24 h; absent: the tier's SLO
  double offline_hours = 24;         // outbox headroom at the node's upward byte rate
  bool on_battery = false;
  double power_headroom = 1;
  bool throttled = false;
};

// One replica of a service (kind "service"; see Services above). Its runs are tasks
// "<workload>.<index>.r<revision>" with the spec's restart policy and health check; its
// placement is the retained record nova/v1/cloud/placement/<workload>.<index>.
struct Replica {
  std::uint32_t index = 0;
  std::optional<schemas::Placement> placement;  // none while it waits for a node
  std::string task_id;                          // its current run
  // pending (no node), starting (sent, no report yet), running, restarting, unhealthy
  // (the agent's reports), succeeded, failed, cancelled (its run ended).
  std::string state = "pending";
  std::uint64_t restarts = 0;                   // by its agent, in the current run
  std::optional<std::int64_t> last_exit;
  std::uint32_t health_failures = 0;            // failed health checks in a row
  std::string reason;                           // the latest report's reason, or why pending
  Timestamp updated_ts = 0;
  std::optional<Fence> stopping;                // a cancel under way (fence.h)

  bool active() const { return state == "starting" || state == "running" || state == "restarting" || state == "unhealthy"; }
  bool ended() const { return state == "succeeded" || state == "failed" || state == "cancelled"; }
};

struct WorkloadState {
  schemas::WorkloadSpec spec;
  Phase phase = Phase::pending;
  std::optional<schemas::Placement> placement;  // the current one
  std::string task_id;                          // the current run's task
  Timestamp submitted_ts = 0;                   // or when this instance first saw it
  std::string unplaced_reason;                  // why it is pending, when it is
  std::optional<schemas::TaskResult> result;    // the final result
  std::vector<PlacementEvent> history;
  std::optional<MigrationPlan> migration;       // a move in flight
  std::optional<Fence> stopping;                // a run being stopped (fence.h)
  std::optional<PlacementSignals> signals;      // the chosen node's, when it was placed
  std::vector<Replica> replicas;                // a service's, spec.replicas of them
  std::optional<std::string> cancel_reason;     // a service being cancelled: why
};

// A ranked recommendation (POST /api/v1/edge/optimize): nothing is committed.
struct Recommendation {
  std::string node;
  std::string site;
  double score = 0;
  schemas::ScoreBreakdown breakdown;
  PlacementSignals signals;
};

// A node that cannot take the workload, with why (tiers::explain) and what was measured.
struct RejectedNode {
  std::string node;
  std::string site;
  std::string reason;
  PlacementSignals signals;
};

struct Optimization {
  std::vector<Recommendation> recommendations;  // up to k feasible nodes, best first
  std::vector<RejectedNode> rejected;            // the infeasible nodes, at most kMaxRejectedListed
};

struct WorkloadCounters {
  std::uint64_t submitted = 0;
  std::uint64_t placements = 0;
  std::uint64_t unplaceable = 0;
  std::uint64_t failovers = 0;
  std::uint64_t migrations = 0;
  std::uint64_t rollbacks = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;
  std::uint64_t cancelled = 0;       // workloads that ended cancelled
  std::uint64_t cancels_sent = 0;    // cancel messages published, repeats included
  std::uint64_t last_failover_recovery_ms = 0;  // loss seen -> replacement run started
  std::uint64_t batches = 0;                // submit_batch() calls that placed
  std::uint64_t reoptimiser_placed = 0;     // pending workloads the re-optimiser placed
  std::uint64_t reoptimiser_migrations = 0; // running workloads it moved (also in migrations)
  std::uint64_t replica_failovers = 0;      // service replicas placed again after losing their node
  std::uint64_t service_reports = 0;        // "running" reports of service replicas
  std::uint64_t migration_requests = 0;          // nodes' requests taken (request_migration)
  std::uint64_t migration_requests_refused = 0;  // ... and refused (unknown, not on that node, ...)
};

class Workloads {
 public:
  // `self`: this instance's id; `shared`: other instances may run (ownership applies).
  Workloads(PublishFn publish, NodesFn nodes, WorkloadLogFn log, std::string self = "nova-cloud", bool shared = false);

  // Set before any traffic: where records are kept (see Durability above).
  void set_persistence(PersistFn persist);
  // Set before any traffic: a placed workload whose node no record has named for this
  // long since the first tick() fails over (see Failover above). 0 (the default): never.
  void set_heartbeat_timeout(Timestamp ms);
  // Set before any traffic: a counter that moves whenever a node's liveness or birth
  // changes (LiveTopology::revision()). With it, a decision takes the node views from
  // `nodes` only when it moved; without it, every decision compares them all.
  void set_topology_revision(std::function<std::uint64_t()> revision);
  // Set before any traffic: the utilisation trigger's watermarks, the dwell time and the
  // per-node cap (migration.h). Unset: MigrationPolicy's defaults.
  void set_migration_policy(const MigrationPolicy& policy);
  // Set before any traffic: how often and how far tick() re-optimises (reoptimiser.h).
  // Unset: never (CloudService sets the config's, every 10 s by default).
  void set_reoptimiser(const ReoptimiserPolicy& policy);
  // One re-optimiser round over the workloads this instance owns, now (tick() calls it
  // every policy.interval_ms). Returns how many steps it took.
  std::size_t reoptimise(Timestamp now);
  // Loads a record kept by an earlier run, as if it came retained from the broker
  // (nothing is persisted again).
  void restore(topics::CloudKind kind, const std::string& id, const std::string& payload);
  // Set before any traffic: where this instance keeps its workloads' fences (a run being
  // stopped, and the run held until it has), so that a restart during the wait goes on
  // waiting and then starts the held run. Unset: fences live in memory only.
  void set_fence_persistence(FencePersistFn persist);
  // A fence kept by an earlier run (fence_to_json), for a workload restored before: the
  // workload waits again, its cancel repeated. `old_result`: the stopped run's result,
  // if the store has it (it came just before the restart): the fence is released at the
  // next tick. False, and nothing changes, if the JSON is unreadable or the workload is
  // unknown, not running, or not at that run any more.
  bool restore_fence(const std::string& json, const std::optional<schemas::TaskResult>& old_result);
  // A result kept in the store for the current run of a restored workload: an ended run
  // (ok, failed, timeout, killed) stays ended across a restart; a service replica's last
  // report gives it back its state. Counts nothing.
  void restore_result(const schemas::TaskResult& result);
  // Publishes again, retained, every record this instance owns: each workload's spec and
  // placement (an empty record for one deleted meanwhile) and each cluster. Returns how
  // many messages were published.
  std::size_t republish_owned();

  // The live instances (always including this one), from their presence records.
  void set_instances(std::set<std::string> instances, Timestamp now);
  // The instance that places `workload_id` under the current membership.
  std::string owner(const std::string& workload_id) const;

  // Set before any traffic: how submit() waits for the broker (below). Unset: no wait.
  void set_delivery_wait(WaitDeliveredFn wait_delivered);
  // How long submit() waits for the broker's acknowledgements.
  static constexpr std::chrono::milliseconds kDeliveryWait{5000};

  // Validates and places; the state says where it went or why it waits. Errors name
  // the field ("workload_id: already exists"). Returns once the spec and placement are in
  // the store (synced) and the broker has acknowledged the task (at most kDeliveryWait;
  // `task_unconfirmed` is logged when it has not): a crash right after the answer loses
  // neither the records nor the run.
  schemas::Result<WorkloadState> submit(schemas::WorkloadSpec spec, Timestamp now);
  // Many workloads at once, placed together (tiers::place_batch: the most workloads
  // placed, then the highest total score; docs/placement.md). All or nothing on
  // validation: an error names the index and field ("workloads[2].workload_id: already
  // exists") and nothing is kept. The states come back in input order; the delivery wait
  // is submit()'s, once for the whole batch.
  schemas::Result<std::vector<WorkloadState>> submit_batch(std::vector<schemas::WorkloadSpec> specs, Timestamp now);
  bool remove(const std::string& workload_id, Timestamp now);
  // Stops the workload's run (fence.h); it ends "cancelled" once the run is known
  // stopped, at once when it is pending. Errors name the reason: unknown workload, not
  // running, or a cancel already under way.
  schemas::Result<WorkloadState> cancel(const std::string& workload_id, const std::string& reason, Timestamp now);
  // `node` asks that `workload_id` leave it (a rule's request_migration decision, once
  // the verdicts accepted it: docs/agent.md "Pipelines", docs/cloud.md "Migration"). It
  // becomes the trigger "requested" for that workload, checked before the others, under
  // the same limits (dwell, per-node cap, a hold after nowhere to go). A node may only ask
  // about a task running on itself: an error says why not (unknown workload, a service,
  // not running, running on another node, owned by another instance). The request lapses
  // when the workload leaves the node or after kMigrationRequestTtl.
  static constexpr Timestamp kMigrationRequestTtl = 600'000;
  schemas::Status request_migration(const std::string& workload_id, const std::string& node, const std::string& why,
                                    Timestamp now);
  std::vector<WorkloadState> list() const;
  std::optional<WorkloadState> get(const std::string& workload_id) const;
  // The k best nodes for `spec` and the rejected ones (the first kMaxRejectedListed in
  // the order of the topology, by node id), with their signals; an error (no feasible
  // node) counts the rejections by reason.
  static constexpr std::size_t kMaxRejectedListed = 100;
  schemas::Result<Optimization> optimize(const schemas::WorkloadSpec& spec, std::size_t k) const;

  // Clusters (federation): registered as retained records.
  schemas::Status register_cluster(const schemas::ClusterRecord& cluster);
  bool remove_cluster(const std::string& cluster_id);
  std::vector<schemas::ClusterRecord> clusters() const;

  // Called by the ingest thread.
  void on_liveness(const std::vector<LivenessChange>& changes, Timestamp now);
  void on_result(const schemas::TaskResult& result, Timestamp now);
  void on_cloud_record(const topics::CloudTopic& topic, const std::string& payload, bool retained);
  // Every sample of a node's stored batch, oldest first (utilisation, throttling).
  void on_metrics(const std::string& node, const std::vector<schemas::MetricSample>& samples);
  void tick(Timestamp now);

  WorkloadCounters counters() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace nova::cloud
