// The payloads of the NovaCron topic API, as C++ types.
//
// Each struct mirrors one CDDL rule in schemas/cddl/ (the wire authority) and is encoded
// by codec.h to CBOR (devices, bridges) or JSON (third-party sensors, REST API). Field
// comments give the wire key and the accepted range; the codec enforces both on decode.
//
// Conventions shared by every message:
//   - "v" carries kSchemaVersion; a decoder refuses a different major version.
//   - timestamps are milliseconds since the Unix epoch, UTC (Timestamp).
//   - identifiers (node, sensor, stream, task, workload, cluster ids) follow
//     topic.h's Id rules, so any of them can be used as a topic level.
//   - floats are finite unless a field says otherwise.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace nova::schemas {

inline constexpr std::uint64_t kSchemaVersion = 1;

using Timestamp = std::uint64_t;  // ms since 1970-01-01T00:00:00Z

// Every upward record that must survive end to end carries its position in a per-node
// stream. The cloud deduplicates on (node, stream, seq) and acknowledges per stream.
// Wire: flattened into the record as "node", "stream", "seq" and the optional "first".
// Not an aggregate (the constructor keeps the three-member brace form {node, stream,
// seq} free of missing-initializer warnings now that "first" exists).
struct StreamPosition {
  StreamPosition() = default;
  StreamPosition(std::string node_id, std::string stream_name, std::uint64_t position_seq,
                 std::optional<std::uint64_t> first_held = std::nullopt)
      : node(std::move(node_id)), stream(std::move(stream_name)), seq(position_seq), first(first_held) {}

  std::string node;
  std::string stream;   // e.g. "metrics", "results", "decisions", "alerts"
  std::uint64_t seq = 0;  // strictly increasing within (node, stream), starts at 1
  // "first": the lowest seq of this stream the sender still holds (1 <= first <= seq).
  // Every seq below it was acknowledged or evicted and will never be sent: a receiver
  // may stop waiting for the ones it has not got. Absent: no such statement.
  std::optional<std::uint64_t> first;

  friend bool operator==(const StreamPosition&, const StreamPosition&) = default;
};

struct Resources {
  std::uint64_t cpu_millis = 0;  // "cpu_millis": 1000 = one core
  std::uint64_t memory_mb = 0;   // "memory_mb"
  std::uint64_t storage_mb = 0;  // "storage_mb"

  friend bool operator==(const Resources&, const Resources&) = default;
};

// ---------------------------------------------------------------------------------------
// Liveness (Sparkplug B's model): a retained state record per node, the same topic as the
// node's last will. "online" is the birth and carries the node's description; "offline"
// is a graceful goodbye; "dead" is the last will. bdseq pairs a death with its birth: a
// consumer ignores a death whose bdseq differs from the birth it holds.

enum class NodeStatus { online, offline, dead };

struct NodeDescription {
  std::uint8_t level = 5;              // "level": 1 cloud .. 5 device
  std::string site;                    // "site": site path, e.g. "cloud/eu/par/acc-01"
  std::string arch;                    // "arch": e.g. "aarch64", "armv7l", "riscv64", "x86_64"
  std::string version;                 // "version": agent version
  std::vector<std::string> capabilities;  // "caps": e.g. ["gpu", "arm64"]
  Resources resources;                 // "res": allocatable resources
  std::optional<std::string> region;   // "region": data-residency region, e.g. "eu-west"

  friend bool operator==(const NodeDescription&, const NodeDescription&) = default;
};

struct NodeState {
  std::string node;         // "node"
  NodeStatus status = NodeStatus::online;  // "status": "online" | "offline" | "dead"
  std::uint64_t bdseq = 0;  // "bdseq": birth/death sequence number
  Timestamp ts = 0;         // "ts": for "dead", when the will was registered
  // Present exactly when status == online (flattened into the record on the wire).
  std::optional<NodeDescription> description;
  // "refused": online only; the topic filters the node's broker refused (SUBACK failure or
  // a QoS below the one asked). Non-empty: up but not fully ready. At most 16.
  std::vector<std::string> refused;
  // "config_revision", "model_revision": online only; the revisions of the remote config
  // and of the model the node runs (pushed on its retained down topics), when it has one.
  std::optional<std::uint64_t> config_revision;
  std::optional<std::uint64_t> model_revision;
  // "model_id": online only; the id of the model in force, beside its revision.
  std::optional<std::string> model_id = {};

  friend bool operator==(const NodeState&, const NodeState&) = default;
};

// ---------------------------------------------------------------------------------------
// Metrics.

struct MetricSample {
  Timestamp ts = 0;
  double cpu_pct = 0;     // "cpu": busy % of all cores, 0..100
  double mem_pct = 0;     // "mem": used memory %, 0..100
  double disk_pct = 0;    // "disk": used % of the data filesystem, 0..100
  double load1 = 0;       // "load1": 1-minute load average, >= 0
  double net_rx_bps = 0;  // "net_rx": bytes/s received, all interfaces, >= 0
  double net_tx_bps = 0;  // "net_tx": bytes/s sent, >= 0
  std::optional<double> temp_c;     // "temp": hottest thermal zone, -100..250 degC
  std::optional<bool> throttled;    // "throttled": thermal throttling active
  std::optional<double> power_w;    // "power": platform power draw, >= 0
  std::map<std::string, double> extra;  // "extra": further gauges by name, <= 256

  friend bool operator==(const MetricSample&, const MetricSample&) = default;
};

// How a batch's samples travel (schemas/cddl/metrics.cddl is the wire reference):
//  - "plain": a CBOR array under "samples".
//  - "zstd": the same array encoded to CBOR and compressed with zstd, under "data" as a
//    byte string, with "count" giving the number of samples. Lossless.
//  - "qdelta": quantized, column-wise, delta-encoded, then zstd-compressed, under "data"
//    with "count". Each value is rounded (half away from zero) to its field's
//    precision: ts 1 ms, cpu/mem/disk 0.1, load1 0.01, net_rx/net_tx 1 byte/s, temp
//    0.1 degC, power 0.01 W, throttled as 0/1, and each extra gauge to 10^-d with its
//    d (0..9) declared in the batch (extra_decimals). "data" inflates to a CBOR map of
//    columns named like the sample's fields, ts: [first, delta, delta, ...] in integer
//    steps of the precision; a sample without an optional field or extra gauge has null
//    in that column, and deltas run between the values present. Decoding yields the
//    quantized values exactly: decode(encode(b)) == quantize(b) (codec.h), not b. A
//    batch holding a value that does not fit 2^50 steps (or is not finite) is encoded
//    as "zstd" instead, losslessly.
enum class BatchEncoding { plain, zstd, qdelta };

struct MetricsBatch {
  StreamPosition position;
  BatchEncoding encoding = BatchEncoding::plain;  // "enc"
  std::vector<MetricSample> samples;              // 1..4096 samples
  // qdelta only: decimal places kept for each extra gauge, 0..9 (values above 9 count as
  // 9). A gauge not listed gets the fewest places (0..3) that hold each of its values in
  // the batch exactly, else 3. Places are lowered where a value would not fit 2^50
  // steps. Decoding a qdelta batch fills in the places of every extra gauge it holds;
  // the other encodings ignore this and decode it empty.
  std::map<std::string, std::uint8_t> extra_decimals;

  friend bool operator==(const MetricsBatch&, const MetricsBatch&) = default;
};

// ---------------------------------------------------------------------------------------
// Sensors (third parties). The topic names node and sensor, so a reading carries only
// what it measured. JSON example: {"v":1,"ts":1732650000000,"values":{"temp":21.5}}

struct SensorReading {
  Timestamp ts = 0;
  std::optional<std::uint64_t> seq;      // "seq": sensor's own counter, if it has one
  std::map<std::string, double> values;  // "values": 1..32 named finite readings
  std::optional<std::string> unit;       // "unit": e.g. "degC", applies to every value

  friend bool operator==(const SensorReading&, const SensorReading&) = default;
};

// Published on the reading's error-reply topic when a reading is refused.
struct SensorError {
  std::string sensor;  // "sensor"
  Timestamp ts = 0;    // "ts": when the reading was refused
  std::string field;   // "field": path of the offending field, "" for the whole payload
  std::string reason;  // "reason"

  friend bool operator==(const SensorError&, const SensorError&) = default;
};

// ---------------------------------------------------------------------------------------
// Tasks.

// Services: tasks that run until cancelled, restarted by the agent (docs/agent.md).
enum class RestartPolicy { always, on_failure, never };

// A command the agent runs on an interval beside a service; `failure_threshold` failures
// in a row (non-zero exit, or still running after timeout_s) make it restart the service.
struct HealthCheck {
  std::vector<std::string> command;    // "command": argv, 1..64, under the agent's tasks.allow
  std::uint32_t interval_s = 10;        // "interval_s": 1..3600
  std::uint32_t timeout_s = 5;          // "timeout_s": 1..3600
  std::uint32_t failure_threshold = 3;  // "failure_threshold": 1..100
  std::uint32_t initial_delay_s = 0;    // "initial_delay_s": 0..3600

  friend bool operator==(const HealthCheck&, const HealthCheck&) = default;
};

// What makes a task a service (Task "service").
struct ServiceSpec {
  RestartPolicy restart = RestartPolicy::always;  // "restart_policy"
  std::optional<HealthCheck> health;              // "health_check"

  friend bool operator==(const ServiceSpec&, const ServiceSpec&) = default;
};

struct Task {
  std::string task_id;                      // "task_id"
  std::optional<std::string> workload_id;   // "workload_id"
  std::vector<std::string> argv;            // "argv": 1..64 arguments, argv[0] the program
  std::map<std::string, std::string> env;   // "env": extra environment, <= 64 entries
  std::uint64_t timeout_ms = 0;             // "timeout_ms": 1 .. 7 days
  std::uint64_t memory_mb = 0;              // "memory_mb": limit, 0 = none
  std::uint64_t cpu_millis = 0;             // "cpu_millis": limit, 0 = none
  std::uint8_t priority = 5;                // "priority": 0 (highest) .. 9
  Timestamp issued_ts = 0;                  // "issued_ts"
  std::optional<ServiceSpec> service;       // "service": a service, run until cancelled

  friend bool operator==(const Task&, const Task&) = default;
};

// cancelled: a TaskCancel stopped it (or it was cancelled before it started or arrived).
// running: a service's state report, not the end of its run (TaskResult::service).
enum class TaskStatus { ok, failed, timeout, killed, refused, cancelled, running };

enum class ServiceState { running, restarting, unhealthy };

// A service's state, in each of its results ("running" reports and its final one).
struct ServiceStatus {
  ServiceState state = ServiceState::running;  // "state"
  std::uint64_t restarts = 0;                  // "restarts": since it was first started
  std::optional<std::int64_t> last_exit;       // "last_exit": of the latest run; -N = signal N
  std::uint32_t health_failures = 0;           // "health_failures": failed checks in a row

  friend bool operator==(const ServiceStatus&, const ServiceStatus&) = default;
};

struct TaskResult {
  StreamPosition position;
  std::string task_id;                     // "task_id"
  TaskStatus status = TaskStatus::ok;      // "status"
  std::optional<std::int64_t> exit_code;   // "exit_code": int32 range; -N = killed by signal N; absent when never started
  std::optional<Timestamp> started_ts;     // "started_ts"
  Timestamp finished_ts = 0;               // "finished_ts"
  std::string output;                      // "output": tail of stdout+stderr, <= 4096 bytes
  std::optional<std::string> reason;       // "reason": why refused/killed/failed/cancelled
  std::optional<ServiceStatus> service;    // "service": a service's state (its task had one)

  friend bool operator==(const TaskResult&, const TaskResult&) = default;
};

// Stops a task on its node (down topic kind "cancel"). The node answers with the task's
// result: status cancelled, or the result it had already reached.
struct TaskCancel {
  std::string task_id;                 // "task_id"
  std::optional<std::string> reason;   // "reason": why, for the result and the log (1..4096 bytes)
  Timestamp issued_ts = 0;             // "issued_ts"

  friend bool operator==(const TaskCancel&, const TaskCancel&) = default;
};

// ---------------------------------------------------------------------------------------
// Decisions an agent took on its own, sent up for validation, and the cloud's verdict.

struct DecisionRecord {
  StreamPosition position;
  std::string decision_id;                // "decision_id"
  Timestamp ts = 0;                       // "ts"
  std::string kind;                       // "kind": e.g. "resource_allocation"
  std::map<std::string, double> inputs;   // "inputs": what the decision saw, <= 64
  std::string action;                     // "action": what it did
  double confidence = 1;                  // "confidence": 0..1
  bool offline = false;                   // "offline": taken without an uplink
  // "applies": this record carries out the cloud's verdict on that decision (an override
  // put in force); such a record is not judged again.
  std::optional<std::string> applies;
  // "target": what the action acted on or asks about (a task, a workload, a cache key
  // prefix, an actuator, an alert metric), when it has one. A request_migration names
  // the workload the cloud is asked to move.
  std::optional<std::string> target;

  friend bool operator==(const DecisionRecord&, const DecisionRecord&) = default;
};

enum class Verdict { accepted, overridden, rejected };

struct DecisionVerdict {
  std::string decision_id;            // "decision_id"
  std::string node;                   // "node"
  Verdict verdict = Verdict::accepted;  // "verdict"
  std::optional<std::string> reason;  // "reason"
  Timestamp ts = 0;                   // "ts"
  // An override's new threshold levels for one gauge (0 = that level off); all three
  // absent otherwise.
  std::optional<std::string> gauge;   // "gauge"
  std::optional<double> warning;      // "warning": finite
  std::optional<double> critical;     // "critical": finite

  friend bool operator==(const DecisionVerdict&, const DecisionVerdict&) = default;
};

// ---------------------------------------------------------------------------------------
// Alerts.

enum class Severity { info, warning, critical };

struct Alert {
  StreamPosition position;
  std::string alert_id;  // "alert_id"
  Timestamp ts = 0;      // "ts"
  Severity severity = Severity::warning;  // "severity"
  std::string metric;    // "metric": what was watched, e.g. "cpu", "sensor.s1.temp"
  double observed = 0;   // "observed": finite
  double threshold = 0;  // "threshold": may be +/-infinity for a one-sided bound
  std::string message;   // "message": <= 1024 bytes

  friend bool operator==(const Alert&, const Alert&) = default;
};

// ---------------------------------------------------------------------------------------
// Configuration and models pushed down (retained).

using ConfigValue = std::variant<bool, std::int64_t, double, std::string>;

struct Config {
  std::uint64_t revision = 0;  // "revision": increases with every change
  Timestamp ts = 0;            // "ts"
  // "values": dotted keys of the target's config file (e.g. "outbox.max_bytes") to scalar
  // values; keys absent here keep their current value. <= 256 entries.
  std::map<std::string, ConfigValue> values;

  friend bool operator==(const Config&, const Config&) = default;
};

// One node of a decision tree (schemas/cddl/model.cddl, tree-node): a leaf when `leaf` is
// set, else a split. The codec checks types and sizes; what relates nodes to each other
// (indices in range, children after parents) the agent checks on arrival.
enum class MissingGoes { left, right };
struct TreeNode {
  std::optional<double> leaf = {};          // "leaf": a leaf's value (then nothing else is written)
  std::uint64_t feature = 0;                // "feature": index into Model::features
  double split = 0;                         // "split": a value below it goes left, else right
  std::uint64_t left = 0;                   // "left": node index
  std::uint64_t right = 0;                  // "right": node index
  std::optional<MissingGoes> missing = {};  // "missing": where a sample without the feature goes; absent: left

  friend bool operator==(const TreeNode&, const TreeNode&) = default;
};

enum class TreeCombine { sum, mean };
enum class ModelOutput { raw, sigmoid };

struct Model {
  std::string model_id;                  // "model_id"
  std::uint64_t revision = 0;            // "revision"
  std::string kind;                      // "kind": e.g. "zscore", "logistic", "tree_ensemble"
  std::map<std::string, double> params;  // "params": <= 64
  std::vector<double> weights;           // "weights": <= 4096
  Timestamp ts = 0;                      // "ts"
  // Added later in v1, all optional (so they follow ts, and default to empty):
  std::vector<std::string> features = {};          // "features": gauge names, <= 61
  std::vector<std::vector<TreeNode>> trees = {};   // "trees": <= 64 of 1..255 nodes
  std::optional<TreeCombine> combine = {};         // "combine": "sum" | "mean"
  std::optional<ModelOutput> output = {};          // "output": "raw" | "sigmoid"
  std::optional<std::string> action = {};          // "action": 1..128 bytes

  friend bool operator==(const Model&, const Model&) = default;
};

// An offer to update the agent (retained, signed, schemas/cddl/update.cddl): the bundle
// with this SHA-256 waits, retained, in chunks on nova/v1/bundle/<sha256>/<index>; its
// agent reports `version` in its birth once it runs.
struct UpdateOffer {
  std::string version;  // "version": 1..256 bytes, as the new agent's birth will say it
  std::string sha256;   // "sha256": 64 lower-case hex digits of the bundle's bytes
  std::uint64_t size = 0;  // "size": bytes of the bundle, 1 .. 256 MiB
  Timestamp ts = 0;     // "ts"

  friend bool operator==(const UpdateOffer&, const UpdateOffer&) = default;
};
// Every chunk of a bundle holds this many bytes, the last one the rest (1..this many): a
// chunk fits every broker's packet limit (docs/broker-hierarchy.md, max_packet_size).
inline constexpr std::uint64_t kBundleChunkBytes = 128 * 1024;

// ---------------------------------------------------------------------------------------
// Erasure (schemas/cddl/erasure.cddl): nova-cloud asks a node to delete every record it
// holds of itself, or of one of its sensors (retained, signed, kind "erase"); the node
// answers with what it deleted, as a record of its "erasures" stream (up kind "erasure").

struct ErasureRequest {
  std::string erasure_id;             // "erasure_id": an id
  std::string node;                   // "node"
  std::optional<std::string> sensor;  // "sensor": absent: everything of the node
  Timestamp ts = 0;                   // "ts"

  friend bool operator==(const ErasureRequest&, const ErasureRequest&) = default;
};

struct ErasureReport {
  StreamPosition position;                      // stream "erasures"
  std::string erasure_id;                       // "erasure_id": the request's
  Timestamp ts = 0;                             // "ts": when the node had erased
  std::map<std::string, std::uint64_t> counts;  // "counts": store -> records deleted or rewritten, <= 16

  friend bool operator==(const ErasureReport&, const ErasureReport&) = default;
};

// ---------------------------------------------------------------------------------------
// End-to-end acknowledgement: the cloud has durably stored every record of each named
// stream of this node up to and including the watermark seq.

struct Ack {
  std::string node;                                 // "node"
  Timestamp ts = 0;                                 // "ts"
  std::map<std::string, std::uint64_t> watermarks;  // "watermarks": stream -> seq, 1..64

  friend bool operator==(const Ack&, const Ack&) = default;
};

// ---------------------------------------------------------------------------------------
// Cloud-side records: workloads, placements and federated clusters.

struct LatencyBound {
  std::uint64_t max_ms = 0;  // "max_ms": >= 1
  std::string to;            // "to": site id or sensor id the bound is measured to

  friend bool operator==(const LatencyBound&, const LatencyBound&) = default;
};

// task: runs to completion once per placement; service: runs until cancelled, on
// `replicas` distinct nodes, restarted by its agents (docs/cloud.md, "Services").
enum class WorkloadKind { task, service };

struct WorkloadSpec {
  std::string workload_id;                    // "workload_id"
  std::string name;                           // "name": free text, <= 256 bytes
  std::vector<std::string> argv;              // "argv": 1..64
  Resources resources;                        // "res": what one replica needs
  std::optional<LatencyBound> latency;        // "latency"
  std::vector<std::string> capabilities;      // "caps": required, all of them
  std::vector<std::uint8_t> tier_preference;  // "tiers": levels in order of preference
  std::optional<std::string> region;          // "region": data residency, hard constraint
  double availability = 0.99;                 // "availability": needed, 0..1
  std::vector<std::string> clusters_include;  // "clusters_in": only these, if any
  std::vector<std::string> clusters_exclude;  // "clusters_out": never these
  std::uint64_t timeout_ms = 0;               // "timeout_ms": per task run, 1 .. 7 days
  WorkloadKind kind = WorkloadKind::task;     // "kind": omitted for a task
  std::uint32_t replicas = 1;                 // "replicas": 1..64 (services), omitted when 1
  std::optional<RestartPolicy> restart_policy;  // "restart_policy": services; unset = always
  std::optional<HealthCheck> health_check;    // "health_check": services only

  friend bool operator==(const WorkloadSpec&, const WorkloadSpec&) = default;
};

struct ScoreBreakdown {
  // Each component 0..100 before weighting; total = 0.25 r + 0.25 l + 0.20 c + 0.15 lv
  // + 0.15 a (the seed's weights).
  double resource = 0;      // "resource"
  double latency = 0;       // "latency"
  double capability = 0;    // "capability"
  double level = 0;         // "level"
  double availability = 0;  // "availability"

  friend bool operator==(const ScoreBreakdown&, const ScoreBreakdown&) = default;
};

struct Placement {
  std::string workload_id;            // "workload_id"
  std::string node;                   // "node"
  std::string site;                   // "site": site path of the node
  double score = 0;                   // "score": 0..100
  ScoreBreakdown breakdown;           // "breakdown"
  std::uint64_t revision = 0;         // "revision"
  Timestamp ts = 0;                   // "ts"
  std::vector<std::string> failover;  // "failover": precomputed candidates, in order

  friend bool operator==(const Placement&, const Placement&) = default;
};

enum class ClusterRole { primary, secondary };

struct ClusterRecord {
  std::string cluster_id;                     // "cluster_id"
  std::string name;                           // "name"
  ClusterRole role = ClusterRole::secondary;  // "role"
  std::optional<std::string> root_site;       // "root_site": subtree root, local clusters
  std::optional<std::string> endpoint;        // "endpoint": URL, external clusters
  std::vector<std::string> capabilities;      // "caps": e.g. ["edge_computing"]
  std::map<std::string, std::string> policies;  // "policies"
  std::optional<std::string> region;          // "region"

  friend bool operator==(const ClusterRecord&, const ClusterRecord&) = default;
};

}  // namespace nova::schemas
