// The agent's core loop: samples metrics, batches them into the durable outbox, keeps
// an MQTT session to the local broker, drains the outbox upward at a bounded rate, and
// deletes what the cloud acknowledges end to end.
//
// Data path, and why nothing acknowledged is lost:
//   sample -> batch (qdelta: quantized, delta-encoded CBOR, zstd) -> Outbox::append (synced) -> publish QoS 1 upward
//   -> cloud stores durably -> Ack{stream: watermark} downward -> Outbox::ack
// Every record stays in the outbox until an ack covers it. A publish that a broker
// acknowledged but then lost in a crash is sent again: when a stream's acks stop
// advancing for resend_after while that stream has records outstanding (counted from its
// first unacknowledged send, or from its last ack progress if later), the drain goes
// back to that stream's acknowledged seq (go-back-N); the cloud deduplicates on
// (node, stream, seq). Each stream has its own stall timer and back-off: acks of the
// alerts stream say nothing about a metrics batch lost after its PUBACK.
//
// Liveness: on every connect the agent subscribes, and once the broker has answered
// (SUBACK) publishes a retained "online" NodeState with a new bdseq; the same topic
// carries its last will ("dead", same bdseq) and, on a clean shutdown, an "offline"
// record.
//
// Readiness: every grant of the SUBACK is checked. A filter the broker refuses (0x80, or
// a QoS below 1) is logged (event=subscription_refused), counted, listed in the birth's
// "refused" (the node is up but not fully ready), and subscribed again after a back-off
// between reconnect_min and reconnect_max; when every filter is granted the birth is
// published again without it. A reconnect starts over with every filter.
//
// After a reconnect the drain starts after a random delay in [0, jitter] and then
// spends tokens from a bucket (rate, burst): a thousand agents reconnecting together do
// not flood their broker.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <random>
#include <set>
#include <span>
#include <unordered_set>
#include <string>
#include <string_view>
#include <vector>

#include "nova/agent/control_gate.h"
#include "nova/agent/decisions.h"
#include "nova/agent/inbox.h"
#include "nova/agent/latency.h"
#include "nova/agent/outbox.h"
#include "nova/agent/rtt.h"
#include "nova/agent/pipelines.h"
#include "nova/agent/sensors.h"
#include "nova/agent/tasks.h"
#include "nova/agent/updater.h"
#include "nova/agent/uplink.h"
#include "nova/schemas/messages.h"
#include "nova/schemas/topic.h"

namespace nova::agent {

// The extra gauge of an aggregate sample (AgentOptions::resident_region): how many
// samples of the resident batch it sums up.
inline constexpr std::string_view kAggregateSamplesGauge = "aggregate.samples";

struct DrainOptions {
  double rate_per_s = 50;    // sustained publishes per second
  double burst = 100;        // bucket size
  std::chrono::milliseconds jitter{2000};   // random delay before draining after connect
  std::size_t max_in_flight = 64;           // publishes awaiting PUBACK
  // Go back to a stream's ack watermark after this long without ack progress on that
  // stream; its wait doubles after each resend that brings no progress (up to 16x), so a
  // cloud that is down for hours does not make the agent resend its whole backlog every
  // 30 s.
  std::chrono::seconds resend_after{30};
};

struct AgentOptions {
  schemas::NodeState birth;  // identity and description (status/bdseq/ts filled in)
  std::string broker_uri = "tcp://127.0.0.1:1883";
  std::optional<TlsFiles> tls;  // required for a TLS broker_uri (uplink.h)
  std::chrono::seconds keepalive{30};
  std::chrono::milliseconds reconnect_min{500};
  std::chrono::milliseconds reconnect_max{30'000};
  std::chrono::milliseconds sample_interval{1000};
  std::chrono::seconds batch_interval{60};
  // How batches are encoded; qdelta rounds each value to its precision (messages.h).
  schemas::BatchEncoding batch_encoding = schemas::BatchEncoding::qdelta;
  OutboxOptions outbox;  // its `storage` is set from storage_key below
  DrainOptions drain;
  // Encryption at rest of the outbox and the inbox (storage.h); nullopt: plaintext. The
  // caller gives the task runner the same key (TaskRunnerOptions::storage). A record that
  // does not open is logged (event=corrupt_record), counted (corrupt_records), deleted,
  // and never sent.
  std::optional<security::StorageKey> storage_key;
  std::filesystem::path state_dir;  // holds the persisted bdseq
  // Tasks from the node's down task topic go to this runner (owned by the caller;
  // none: task messages are counted as unhandled). Its results go up via the outbox.
  TaskRunner* tasks = nullptr;
  // Local decisions on every sample (decisions.h): alerts and decision records go up on
  // the "alerts" and "decisions" streams, and each alert also to the node's local topic
  // nova/v1/local/<node>/alert; a retained model on the node's down model topic
  // replaces the z-score parameters.
  DecisionOptions decisions;
  // Which sensor values are personal (sensors.h): only their window aggregates go up.
  // Personal values never enter a pipeline.
  PrivacyPolicy privacy;
  // Stream pipelines (pipelines.h), fed at each reading's arrival and each sample; their
  // rules act through the task runner, the local broker and the outbox
  // (agent_pipelines.cpp). Checked by parse_pipelines; a set Pipelines::make refuses is
  // refused by create().
  std::vector<PipelineSpec> pipelines;
  // The cache's eviction hook for the evict_cache action: removes the entries whose key
  // starts with the prefix and returns how many. None: that action fails (counted).
  std::function<std::uint64_t(const std::string& prefix)> evict_cache;
  // Called on the loop thread with each valid retained config pushed down; the caller
  // validates it against its config and calls reconfigure() with the outcome.
  std::function<void(const schemas::Config&)> on_remote_config;
  // Structured log sink (level, event, logfmt fields); none: silent.
  std::function<void(const char* level, const std::string& event, const std::string& fields)> log;
  // Who may send control messages down (control_gate.h). The default trusts no key, so
  // every control message is refused until keys (or insecure_unsigned) are given.
  ControlTrust control;
  // Installation folder for over-the-air updates (updater.h); empty: offers are refused.
  // The version offered is compared with birth.description->version.
  std::filesystem::path update_dir;
  // The metrics stream is resident in this region (tiers/residency.h): its batches go to
  // nova/v1/resident/<region>/<node>/metrics, where the regional nova-cloud stores and
  // acknowledges them, and each batch also yields one aggregate sample (the mean of each
  // core gauge, the hottest temperature; no extra or sensor gauge) on stream
  // "aggregates", sent on the normal up metrics topic to the cloud. None: nothing resident.
  std::optional<std::string> resident_region;

  // Further gauges of the caller's own components (nova-agent: the task cache's
  // agent.cache.*), added to every sample before it is judged and batched. Loop thread;
  // none: nothing is added.
  std::function<void(std::map<std::string, double>& extra)> extra_gauges;

  // Give memory the agent no longer uses back to the kernel (nova/common/resident_pages.h):
  // at every connect (start-up or a TLS handshake just done) the clean file-backed pages
  // only start-up touched and the free heap pages, and after each batch the free heap
  // pages (its compression workspace). nova-agent sets it: its VmRSS with TLS went from
  // 13.0 to 6.8 MB with this and binding symbols at start (docs/agent.md, "Memory").
  // Off by default, as a library should not change its host process's page tables and
  // heap unasked.
  bool release_memory = false;
};

// The settings that can change while the agent runs (hot configuration).
struct AgentTuning {
  std::chrono::milliseconds sample_interval{1000};
  std::chrono::seconds batch_interval{60};
  schemas::BatchEncoding batch_encoding = schemas::BatchEncoding::qdelta;
  DrainOptions drain;
  AdmissionLimits task_limits;
  std::size_t max_concurrent_tasks = 2;
  DecisionOptions decisions;
  std::vector<PipelineSpec> pipelines;  // a change restarts every pipeline's state
};

// Where samples come from: the host (MetricsCollector) or, in tests, a generator that
// replays a day of samples with their own timestamps as fast as the loop takes them
// (with sample_interval 0): that is how a 24 h offline period runs in seconds.
class SampleSource {
 public:
  virtual ~SampleSource() = default;
  // The sample for `now_ms`, or nullptr when there is none (a generator ran dry).
  virtual const schemas::MetricSample* sample(schemas::Timestamp now_ms) = 0;
};

struct AgentCounters {
  std::uint64_t samples = 0;
  std::uint64_t batches = 0;
  std::uint64_t aggregates = 0;  // aggregate samples of resident batches stored (AgentOptions::resident_region)
  std::uint64_t published = 0;      // publishes acknowledged by the broker
  std::uint64_t resends = 0;        // go-back-N restarts (of one stream each)
  std::uint64_t acks = 0;           // valid end-to-end acks applied
  std::uint64_t bad_messages = 0;   // malformed or misaddressed messages, and messages whose handling failed
  std::uint64_t handler_failures = 0;  // of those, messages whose handler threw (a bug; fuzzers watch this)
  std::uint64_t connects = 0;
  std::uint64_t outbox_errors = 0;
  std::uint64_t corrupt_records = 0;  // outbox and inbox records that did not open (deleted, never sent)
  std::uint64_t outbox_records = 0;  // gauge: records awaiting an end-to-end ack
  std::uint64_t tasks_received = 0;
  std::uint64_t cancels_received = 0;  // task cancels admitted (tasks.h, TaskRunner::cancel)
  std::uint64_t configs_received = 0;
  std::uint64_t reconfigurations = 0;
  std::uint64_t sensor_readings = 0;  // third-party readings accepted (sensors.h)
  std::uint64_t sensor_refused = 0;   // readings refused with an error reply
  std::uint64_t sensor_replies_sent = 0;     // error replies handed to the broker
  std::uint64_t sensor_replies_dropped = 0;  // error replies dropped: their sensor had 256 waiting
  std::uint64_t alerts = 0;           // alerts stored (warning, critical and recoveries)
  // Alerts published on the node's local alert topic (nova/v1/local/<node>/alert), and
  // dropped there because 256 were already waiting for the broker (their upward copy stays).
  std::uint64_t local_alerts_sent = 0;
  std::uint64_t local_alerts_dropped = 0;
  std::uint64_t decisions = 0;        // decision records stored
  std::uint64_t models_applied = 0;   // models put in force (a refused one is a bad message)
  // The cloud's verdicts on this node's decisions (agent_verdicts.cpp), and the overrides
  // put in force (each also recorded upward; a verdict that cannot be applied is a bad message).
  std::uint64_t verdicts_accepted = 0;
  std::uint64_t verdicts_overridden = 0;
  std::uint64_t verdicts_rejected = 0;
  std::uint64_t overrides_applied = 0;
  // Remote configs and models reported as in force or refused (report_remote).
  std::uint64_t remote_applied = 0;
  std::uint64_t remote_refused = 0;
  std::uint64_t subscriptions_refused = 0;  // filters refused by a SUBACK, each time
  std::uint64_t subscriptions_missing = 0;  // gauge: filters refused now (0: ready)
  // Control messages refused by the gate (control_gate.h), by reason; not bad_messages.
  std::uint64_t control_unsigned = 0;
  std::uint64_t control_untrusted = 0;
  std::uint64_t control_misaddressed = 0;
  std::uint64_t control_expired = 0;
  std::uint64_t control_not_yet_valid = 0;
  std::uint64_t control_replayed = 0;
  std::uint64_t control_stale = 0;
  std::uint64_t control_duplicates = 0;  // retained messages already in force: ignored
  // Over-the-air updates (updater.h): bundles staged (the agent then stops for the
  // launcher to start them), offers or bundles refused (each also sent up as an alert).
  std::uint64_t updates_staged = 0;
  std::uint64_t updates_refused = 0;
  std::uint64_t erasures = 0;  // erasure requests applied (each reported upward)
  // Pipelines (agent_pipelines.cpp): values that entered one, values dropped behind a
  // window's watermark, rule decisions recorded, actions that could not be carried out
  // (each logged), actuator messages handed to the broker, the agent's own alerts not
  // raised because a rule suppressed them.
  std::uint64_t pipeline_readings = 0;
  std::uint64_t pipeline_late = 0;
  std::uint64_t pipeline_decisions = 0;
  std::uint64_t pipeline_actions_failed = 0;
  std::uint64_t actuator_messages = 0;
  std::uint64_t alerts_suppressed = 0;
  // Decisions (every kind) recorded while offline, and verdicts that overrode or
  // rejected one of them later.
  std::uint64_t decisions_offline = 0;
  std::uint64_t offline_overruled = 0;
  std::uint64_t control_refused() const {
    return control_unsigned + control_untrusted + control_misaddressed + control_expired + control_not_yet_valid +
           control_replayed + control_stale;
  }
};

class Agent {
 public:
  static schemas::Result<std::unique_ptr<Agent>> create(AgentOptions options, SampleSource* source);
  ~Agent();

  // Adds one sample; closes and stores a batch once it spans batch_interval. Called by
  // the loop for each sample; tests call it directly (before run()) to compress a long
  // offline period into seconds.
  void add_sample(const schemas::MetricSample& sample);
  // Stores the open batch now (used on shutdown).
  void flush_batch();

  // Runs the loop until stop(). Samples only when a SampleSource was given.
  void run();
  // Thread-safe, but not async-signal-safe (waking the loop takes the uplink's mutex):
  // call it from a thread, never from a signal handler; nova-agent calls it from the
  // thread that reads its signals through a signalfd. run() then flushes the open batch,
  // publishes "offline", disconnects and returns.
  void stop();
  // Thread-safe: the loop applies the new tuning at its next iteration, without
  // losing the open batch or anything in the outbox.
  void reconfigure(const AgentTuning& tuning);
  // Thread-safe: reconnects now, so that rotated TLS files are used (the connection is
  // closed cleanly, so no will; tasks keep running and the outbox resends whatever the
  // old connection had in flight).
  void renew_uplink();

  // What became of a remote config or model pushed down (agent_remote.cpp): `refusal`
  // empty, revision `revision` is now in force (the birth names it from now on, and is
  // published again); else it was refused with that reason. Either way a record goes up
  // on the decisions stream (kind "config_applied", "config_refused", "model_applied",
  // "model_refused"; inputs {revision}), so the cloud learns the outcome. Loop thread
  // only (the on_remote_config callback runs there).
  enum class Remote { config, model };
  void report_remote(Remote kind, std::uint64_t revision, const std::optional<std::string>& refusal);

  // Stores a task result in the outbox "results" stream (position filled in here).
  // Loop thread only: it is the TaskRunner's result sink, called from its poll().
  void record_result(const schemas::TaskResult& result);

  const Outbox& outbox() const { return *outbox_; }
  AgentCounters counters() const;
  // Waits until `done(counters())` holds or `timeout` passes; returns the last result.
  bool wait_for(const std::function<bool(const AgentCounters&)>& done,
                std::chrono::milliseconds timeout) const;
  bool connected() const;
  // True once run() returned because an update was staged: the launcher starts it next.
  bool update_staged() const { return update_staged_.load(); }

  // One message as if it had arrived from the broker on a subscribed topic: its durable
  // hand-over (tasks go to the inbox first) and then its handling, exactly as the loop
  // does. Loop thread only (before run(), or from a fuzzer that never calls run()).
  // Never throws: a message whose handling throws is counted and logged as a bad
  // message, and the agent goes on (Paho acknowledged it, so the broker will not
  // deliver it again).
  void deliver(const std::string& topic, const std::string& payload);

 private:
  Agent(AgentOptions options, SampleSource* source, std::unique_ptr<Outbox> outbox,
        std::unique_ptr<Inbox> inbox, std::unique_ptr<ControlGate> gate);
  void process_inbox();
  using Clock = std::chrono::steady_clock;

  void on_connected(Clock::time_point now);
  void release_startup_pages();  // options_.release_memory, at connect; logged
  void on_disconnected(Clock::time_point now, const std::string& reason);
  void on_subscribed(Clock::time_point now, const UplinkEvent& e);
  // Takes a message from Paho's thread before it is acknowledged (tasks: the inbox).
  void hand_over(const std::string& topic, const std::string& payload);
  // on_message (or any handler) run so that nothing it throws escapes.
  template <class Fn>
  void guarded(const std::string& topic, Fn handler);
  void on_message(const std::string& topic, const std::string& payload);
  // Publishes waiting sensor error replies and local alerts while the uplink has room
  // (uplink.h: Paho refuses publishes past its buffer, so they wait here rather than be
  // lost).
  void send_queued();
  // Publishes what waits in `queue`; returns how many were handed to the broker.
  std::uint64_t send_local(SensorReplies& queue);
  void on_sensor_reading(const topics::SensorTopic& topic, const std::string& payload);
  void on_task(const std::string& topic, const std::string& payload);
  void on_cancel(const std::string& topic, const std::string& payload);
  // The inner message of a control message the gate lets in; none when refused (counted
  // and logged here) or a duplicate.
  std::optional<std::string> admit_control(const std::string& topic, topics::DownKind kind, const std::string& payload);
  void on_model(const std::string& topic, const std::string& payload);
  void on_verdict(const std::string& topic, const std::string& payload, schemas::Timestamp now_ms);  // agent_verdicts.cpp
  // The thresholds the cloud's verdicts put in force, kept in state_dir so that they
  // outlive a restart: written after each override, read back at start.
  void save_overrides();
  void restore_overrides();
  void on_update_offer(const std::string& topic, const std::string& payload);
  // A signed erasure request (docs/agent.md, Erasure): deletes the node's records, or
  // one sensor's gauges, from the outbox and memory, and reports the counts upward.
  void on_erase(const std::string& topic, const std::string& payload);
  void on_bundle_chunk(std::string_view index, const std::string& payload);
  // A refused offer or bundle: counted, logged and sent up as an alert ("update").
  void refuse_update(const schemas::UpdateOffer& offer, const std::string& detail);
  // Reports the launcher's rollbacks not reported yet (alerts), at start.
  void report_rollbacks();
  // The one way a record enters an upward stream: its position (and id, for alerts and
  // decisions: "<stream>-<seq>") filled in, encoded, appended to the outbox.
  template <class T>
  bool append_record(const char* stream, Priority priority, T& record);
  // Stores `samples` as one metrics batch, or as several when one would not decode.
  void store_batch(std::span<const schemas::MetricSample> samples);
  // The aggregate of a resident batch, on stream "aggregates" (AgentOptions::resident_region).
  void store_aggregate(std::span<const schemas::MetricSample> samples);
  // Where a record of `stream` goes: its resident topic, or nova/v1/up/<node>/<kind>.
  std::string topic_of(std::string_view stream, topics::UpKind kind, const topics::Id& node) const;
  void apply_pending_tuning();
  void update_backlog();
  void on_ack(const std::string& topic, const std::string& payload);
  // Go-back-N for each stream whose acks stalled (drain()).
  void resend_stalled(Clock::time_point now, const std::map<std::string, StreamStats>& stats);
  void bad_input(const std::string& topic, const std::string& reason);
  HostState host_state() const;
  void drain(Clock::time_point now);
  // Copies the stores' count of corrupt records (reported from inside them) into counters_.
  void count_corrupt();
  void refill(Clock::time_point now);
  std::uint64_t next_bdseq();
  std::string birth_payload(schemas::NodeStatus status) const;
  void publish_birth();  // the "online" record, retained, now

  // --- pipelines (agent_pipelines.cpp) ---
  class PipelineOutlet;  // the PipelineSink: outputs, decisions, actions
  void set_pipelines(std::vector<PipelineSpec> specs);
  void feed_reading(const std::string& sensor, const schemas::SensorReading& reading, Clock::time_point arrival);
  // The pipelines' part of a sample: gauge inputs fed, outbox outputs and the
  // agent.pipeline.* analytics gauges added to `sample.extra`.
  void pipeline_sample(schemas::MetricSample& sample);
  void act(const PipelineDecision& d);
  bool suppressed(const std::string& metric) const;
  // Offline decisions are remembered (the newest 4096) so a later verdict on one counts.
  void note_decision(const schemas::DecisionRecord& d);
  static schemas::Timestamp wall_ms();

  AgentOptions options_;
  SampleSource* source_;
  std::unique_ptr<Outbox> outbox_;
  std::unique_ptr<ControlGate> gate_;
  std::shared_ptr<std::atomic<std::uint64_t>> corrupt_;  // filled by the stores' on_corrupt
  std::unique_ptr<Inbox> inbox_;  // tasks received but not yet handed to the runner
  std::string task_topic_;
  std::unique_ptr<Uplink> uplink_;
  SensorIngest sensors_;
  SensorReplies sensor_replies_;
  // Alerts for the local alert topic: the same bounded queue, one key ("alert").
  SensorReplies local_alerts_;
  std::string local_alert_topic_;
  DecisionEngine decisions_;
  std::vector<Firing> firings_;  // reused for each sample's decisions
  std::unique_ptr<Pipelines> pipelines_;  // none: no pipeline configured
  std::unique_ptr<PipelineOutlet> outlet_;
  std::map<std::string, double> pipeline_outbox_;   // outbox outputs waiting for the next sample
  std::map<std::string, std::uint32_t> suppressions_;  // alert metric prefix -> rules suppressing it
  LatencyHistogram latency_;  // readings' arrival -> pipelines done, since the last sample
  std::uint64_t readings_before_ = 0;  // pipeline readings counted at the last sample
  std::optional<schemas::Timestamp> analytics_ts_;  // that sample's time
  std::deque<std::string> offline_ids_;
  std::unordered_set<std::string> offline_set_;

  std::vector<schemas::MetricSample> open_batch_;
  std::uint64_t bdseq_ = 0;
  // Per upward stream: how far this session has sent, and its go-back-N stall timer.
  struct StreamProgress {
    std::uint64_t sent = 0;  // highest seq published this epoch
    // When the oldest record still outstanding was sent, counted from the stream's last
    // ack progress (an ack that advanced while records remain outstanding restarts it).
    // Empty while nothing is outstanding, so a session's first send is not already
    // "stalled" because the session is older than resend_after.
    std::optional<Clock::time_point> stall_since;
    Clock::duration resend_interval{};  // current go-back-N wait, backed off
  };
  std::map<std::string, StreamProgress> streams_;
  RttEstimator rtt_;  // reported as agent.rtt_ms in every sample (rtt.h)
  std::uint64_t appended_bytes_ = 0;  // payload bytes appended to the outbox since start
  Clock::time_point drain_after_{};
  Clock::time_point reconnect_at_{};
  // This session's subscriptions: the birth waits for the first SUBACK; refused filters
  // are retried at resubscribe_at_.
  bool birth_pending_ = false;
  std::set<std::string> refused_;
  Clock::time_point resubscribe_at_ = Clock::time_point::max();
  std::chrono::milliseconds resubscribe_backoff_{0};
  std::chrono::milliseconds backoff_{0};
  double tokens_ = 0;
  Clock::time_point last_refill_{};
  bool session_up_ = false;
  // The cloud stopped acknowledging: a stream's acks stalled long enough for a go-back-N
  // (resend_stalled), and no ack has advanced one since. A cut above the agent's own
  // broker leaves the session up, so only this shows it.
  bool acks_stalled_ = false;
  // A decision's `offline`: no session with the broker, or the cloud's acks stalled.
  bool offline() const { return !session_up_ || acks_stalled_; }
  std::optional<schemas::MetricSample> last_sample_;
  std::optional<std::uint64_t> config_revision_;  // in force (report_remote), for the birth
  std::optional<std::uint64_t> model_revision_;
  Updater updater_;  // also holds the offer whose bundle is being fetched
  bool healthy_marked_ = false;  // this run's birth was acknowledged (updater.h)
  std::atomic<bool> update_staged_{false};
  std::atomic<bool> stop_requested_{false};
  std::mutex tuning_mutex_;
  std::optional<AgentTuning> pending_tuning_;
  std::mt19937_64 rng_;
  // Counters are written by the loop thread and read by others (metrics, tests).
  mutable std::mutex counters_mutex_;
  mutable std::condition_variable counters_changed_;
  AgentCounters counters_;
  template <class Fn>
  void update_counters(Fn fn) {
    {
      std::lock_guard lock(counters_mutex_);
      fn(counters_);
    }
    counters_changed_.notify_all();
  }
};

}  // namespace nova::agent
