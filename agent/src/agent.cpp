#include "nova/agent/agent.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <fstream>

#include "nova/common/log.h"
#include "nova/common/resident_pages.h"
#include "nova/schemas/codec.h"
#include "nova/schemas/sensor_gauges.h"
#include "nova/schemas/topic.h"
#include "nova/schemas/update_alert.h"
#include "nova/tiers/residency.h"
#include "durable_file.h"
#include "pipeline_outlet.h"

namespace nova::agent {
namespace {

using namespace std::chrono_literals;
using schemas::Error;

struct StreamDef {
  const char* name;
  Priority priority;
  topics::UpKind kind;
};

// Drain order: what the cloud needs most goes first.
constexpr StreamDef kStreams[] = {
    {"results", Priority::results, topics::UpKind::result},
    {"erasures", Priority::results, topics::UpKind::erasure},
    {"decisions", Priority::decisions, topics::UpKind::decision},
    {"alerts", Priority::alerts, topics::UpKind::alert},
    {"metrics", Priority::metrics, topics::UpKind::metrics},
    // Only with a resident metrics stream (AgentOptions::resident_region).
    {"aggregates", Priority::metrics, topics::UpKind::metrics},
};

// What the cloud may see of a resident batch: one sample, the mean of each core gauge
// (the hottest temperature, throttled if any sample was), at the batch's last ts, with
// the sample count as its only extra gauge. Extra and sensor gauges stay in the region.
schemas::MetricSample aggregate_of(std::span<const schemas::MetricSample> samples) {
  schemas::MetricSample a;
  a.ts = samples.back().ts;
  double power = 0;
  std::size_t powered = 0;
  for (const schemas::MetricSample& s : samples) {
    a.cpu_pct += s.cpu_pct;
    a.mem_pct += s.mem_pct;
    a.disk_pct += s.disk_pct;
    a.load1 += s.load1;
    a.net_rx_bps += s.net_rx_bps;
    a.net_tx_bps += s.net_tx_bps;
    if (s.temp_c) a.temp_c = std::max(a.temp_c.value_or(*s.temp_c), *s.temp_c);
    if (s.throttled) a.throttled = a.throttled.value_or(false) || *s.throttled;
    if (s.power_w) {
      power += *s.power_w;
      ++powered;
    }
  }
  const double n = static_cast<double>(samples.size());
  for (double* v : {&a.cpu_pct, &a.mem_pct, &a.disk_pct, &a.load1, &a.net_rx_bps, &a.net_tx_bps}) *v /= n;
  if (powered > 0) a.power_w = power / static_cast<double>(powered);
  a.extra[std::string(kAggregateSamplesGauge)] = n;
  return a;
}

topics::Id id(const std::string& s) { return topics::Id::parse(s).value(); }

// The uplink tag of birth publishes: their PUBACK tells that the broker took the birth
// (updater.h, healthy). Outbox records are tagged with their seq, which never gets here.
constexpr std::uint64_t kBirthTag = std::numeric_limits<std::uint64_t>::max();

// What an update's refusal or rollback sends up: a warning alert on "update", its message
// cut to the alert's 1024 bytes at a UTF-8 character boundary.
schemas::Alert update_alert(std::string message, schemas::Timestamp now) {
  constexpr std::size_t kMaxMessage = 1024;
  if (message.size() > kMaxMessage) {
    std::size_t cut = kMaxMessage;
    while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xc0) == 0x80) --cut;
    message.resize(cut);
  }
  schemas::Alert a;
  a.ts = now;
  a.severity = schemas::Severity::warning;
  a.metric = schemas::kUpdateAlertMetric;
  a.message = std::move(message);
  return a;
}

// A stored record re-encoded with position.first = `first` (messages.h StreamPosition).
// The payload was encoded when the record was created, before any eviction it now has to
// declare. A payload that does not decode is sent as stored.
template <class T>
std::string with_first(const std::string& payload, std::uint64_t first) {
  auto decoded = schemas::decode_cbor<T>(payload);
  if (!decoded || first > decoded->position.seq || decoded->position.first == first) return payload;
  T m = std::move(decoded).value();
  m.position.first = first;
  const schemas::Bytes b = schemas::encode_cbor(m);
  return std::string(b.begin(), b.end());
}

std::string with_first(topics::UpKind kind, const std::string& payload, std::uint64_t first) {
  switch (kind) {
    case topics::UpKind::metrics: return with_first<schemas::MetricsBatch>(payload, first);
    case topics::UpKind::result: return with_first<schemas::TaskResult>(payload, first);
    case topics::UpKind::decision: return with_first<schemas::DecisionRecord>(payload, first);
    case topics::UpKind::alert: return with_first<schemas::Alert>(payload, first);
    case topics::UpKind::erasure: return with_first<schemas::ErasureReport>(payload, first);
    case topics::UpKind::state:
    case topics::UpKind::link: break;
  }
  return payload;
}

// The precision kept for the collector's extra gauges in qdelta batches (decimal
// places); nullopt leaves it to the codec (the fewest places that are exact, at most 3).
std::optional<std::uint8_t> extra_decimals(std::string_view name) {
  auto ends = [&](std::string_view s) { return name.ends_with(s); };
  if (name == "self.cpu_pct" || name == "load5" || name == "load15") return 2;   // 0.01
  if (name.starts_with("cpu.") || name.starts_with("temp.") || ends("_pct")) return 1;  // 0.1
  if (ends("_bps") || ends("_mb") || ends("_kb") || ends("_events") || name.starts_with("agent.")) {
    return 0;  // whole bytes/s, MB, kB, counts
  }
  return std::nullopt;
}

// `text` as a logfmt value, with bytes that are not UTF-8 written as \xNN (text may
// quote what a sender wrote).
std::string logfmt_quoted(const std::string& text) { return common::logfmt_quote(schemas::printable_utf8(text)); }

// Stream records named by their stream and seq, unique per node (alert/decision ids).
void stamp_id(schemas::Alert& a, std::uint64_t seq) { a.alert_id = "alert-" + std::to_string(seq); }
void stamp_id(schemas::DecisionRecord& d, std::uint64_t seq) { d.decision_id = "decision-" + std::to_string(seq); }
void stamp_id(auto&, std::uint64_t) {}

// A stored record without the gauges whose names start with `prefix` (one sensor's,
// nova/schemas/sensor_gauges.h): metrics batches and decision records are rewritten
// without them, an alert about one of them is removed, anything else is kept.
ErasureEdit without_gauges(std::string_view stream, std::string_view stored, const std::string& prefix) {
  auto rewritten = [&](auto decoded) {
    if (!decoded) return ErasureEdit{};
    auto m = std::move(decoded).value();
    if (schemas::drop_gauges(m, prefix) == 0) return ErasureEdit{};
    const schemas::Bytes b = schemas::encode_cbor(m);
    return ErasureEdit{ErasureEdit::Action::replace, std::string(b.begin(), b.end())};
  };
  if (stream == "metrics") return rewritten(schemas::decode_cbor<schemas::MetricsBatch>(stored));
  if (stream == "decisions") return rewritten(schemas::decode_cbor<schemas::DecisionRecord>(stored));
  if (stream == "alerts") {
    auto alert = schemas::decode_cbor<schemas::Alert>(stored);
    return alert && alert->metric.starts_with(prefix) ? ErasureEdit{ErasureEdit::Action::remove, {}} : ErasureEdit{};
  }
  return {};
}

}  // namespace

schemas::Timestamp Agent::wall_ms() {
  return static_cast<schemas::Timestamp>(std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch()).count());
}

schemas::Result<std::unique_ptr<Agent>> Agent::create(AgentOptions options, SampleSource* source) {
  if (!options.birth.description) return Error{"", "agent: birth record needs a node description"};
  if (!topics::Id::valid(options.birth.node)) return Error{"", "agent: invalid node id '" + options.birth.node + "'"};
  if (options.resident_region && !topics::Id::valid(*options.resident_region)) {
    return Error{"", "agent: invalid resident region '" + *options.resident_region + "'"};
  }
  if (!topics::SitePath::parse(options.birth.description->site)) {
    return Error{"", "agent: invalid site path '" + options.birth.description->site + "'"};
  }
  if (auto checked = Pipelines::make(options.pipelines); !checked) return checked.error();
  auto corrupt = std::make_shared<std::atomic<std::uint64_t>>(0);
  const StorageOptions storage = reported_storage(options.storage_key, options.log, corrupt);
  options.outbox.storage = storage;
  auto outbox = Outbox::open(options.outbox);
  if (!outbox) return outbox.error();
  std::error_code ec;
  std::filesystem::create_directories(options.state_dir, ec);
  if (ec) return Error{"", "agent: cannot create state dir " + options.state_dir.string() + ": " + ec.message()};
  auto inbox = Inbox::open(options.state_dir / "inbox", storage);
  if (!inbox) return inbox.error();
  auto gate = ControlGate::open(options.state_dir / "control", options.control, options.birth.node,
                                options.birth.description->site);
  if (!gate) return gate.error();
  try {
    auto agent = std::unique_ptr<Agent>(new Agent(std::move(options), source, std::move(outbox).value(),
                                                  std::move(inbox).value(), std::move(gate).value()));
    agent->corrupt_ = std::move(corrupt);
    return agent;
  } catch (const std::runtime_error& e) {  // the uplink: its Paho library cannot be loaded
    return Error{"", std::string("agent: ") + e.what()};
  }
}

Agent::Agent(AgentOptions options, SampleSource* source, std::unique_ptr<Outbox> outbox,
             std::unique_ptr<Inbox> inbox, std::unique_ptr<ControlGate> gate)
    : options_(std::move(options)), source_(source), outbox_(std::move(outbox)), gate_(std::move(gate)),
      inbox_(std::move(inbox)), sensors_(128, 32, options_.privacy), decisions_(options_.decisions),
      updater_(options_.update_dir, options_.birth.description->version), rng_(std::random_device{}()) {
  local_alert_topic_ = topics::local(id(options_.birth.node), id("alert"));
  task_topic_ = topics::down(topics::SitePath::parse(options_.birth.description->site).value(),
                             id(options_.birth.node), topics::DownKind::task);
  UplinkOptions u;
  // Tasks are stored durably before Paho acknowledges them to the broker.
  u.before_ack = [this](const std::string& topic, const std::string& payload) { hand_over(topic, payload); };
  u.uri = options_.broker_uri;
  u.tls = options_.tls;
  u.client_id = options_.birth.node;
  u.keepalive = options_.keepalive;
  u.will_topic = topics::up(id(options_.birth.node), topics::UpKind::state);
  uplink_ = std::make_unique<Uplink>(std::move(u));
  tokens_ = options_.drain.burst;
  set_pipelines(options_.pipelines);
  restore_overrides();
}

Agent::~Agent() = default;

void Agent::hand_over(const std::string& topic, const std::string& payload) {
  if (topic == task_topic_ && !inbox_->put(payload) && options_.log) {
    options_.log("error", "inbox_write_failed", "topic=" + topic);
  }
}

void Agent::deliver(const std::string& topic, const std::string& payload) {
  hand_over(topic, payload);
  guarded(topic, [&] { on_message(topic, payload); });
}

std::uint64_t Agent::next_bdseq() {
  const std::filesystem::path file = options_.state_dir / "bdseq";
  std::uint64_t last = 0;
  if (std::ifstream in(file); in) in >> last;
  bdseq_ = last + 1;
  write_file_durably(file, std::to_string(bdseq_) + "\n");
  return bdseq_;
}

std::string Agent::birth_payload(schemas::NodeStatus status) const {
  schemas::NodeState s = options_.birth;
  s.status = status;
  s.bdseq = bdseq_;
  s.ts = wall_ms();
  if (status != schemas::NodeStatus::online) s.description.reset();
  if (status == schemas::NodeStatus::online) {
    s.refused.assign(refused_.begin(), refused_.end());
    s.config_revision = config_revision_;
    s.model_revision = model_revision_;
    if (model_revision_) s.model_id = decisions_.model_id();
  }
  const schemas::Bytes b = schemas::encode_cbor(s);
  return std::string(b.begin(), b.end());
}

void Agent::add_sample(const schemas::MetricSample& sample) {
  update_counters([](AgentCounters& c) { ++c.samples; });
  last_sample_ = sample;
  if (!open_batch_.empty()) {
    const auto span_ms = std::chrono::duration_cast<std::chrono::milliseconds>(options_.batch_interval).count();
    if (sample.ts >= open_batch_.front().ts + static_cast<std::uint64_t>(span_ms)) flush_batch();
  }
  open_batch_.push_back(sample);
  // The outbox reports on itself in every sample, so the cloud can tell a gap caused by
  // the disk cap (evicted) from a loss, and see a backlog building while offline.
  std::uint64_t records = 0;
  std::uint64_t evicted = 0;
  for (const auto& [name, st] : outbox_->stats()) {
    records += st.count;
    evicted += st.evicted;
  }
  auto& extra = open_batch_.back().extra;
  extra["agent.outbox_records"] = static_cast<double>(records);
  extra["agent.outbox_bytes"] = static_cast<double>(outbox_->total_bytes());
  extra["agent.outbox_evicted"] = static_cast<double>(evicted);
  // What the cloud turns into placement signals (docs/cloud.md, "Measured signals"): the
  // round trip through the hierarchy, and the outbox's cap and intake, from which it
  // derives how long this node can keep working without an uplink.
  extra["agent.outbox_max_bytes"] = static_cast<double>(options_.outbox.max_bytes);
  extra["agent.outbox_appended_bytes"] = static_cast<double>(appended_bytes_);
  if (const auto rtt = rtt_.rtt_ms()) extra["agent.rtt_ms"] = *rtt;
  // Only once there is something to report, so a healthy sample keeps its gauge set.
  if (const std::uint64_t corrupt = corrupt_ ? corrupt_->load() : 0; corrupt > 0) {
    extra["agent.corrupt_records"] = static_cast<double>(corrupt);
  }
  if (const std::uint64_t overrides = counters().overrides_applied; overrides > 0) {
    extra["agent.overrides_applied"] = static_cast<double>(overrides);  // the cloud's verdicts in force
  }
  if (decisions_.local_model().model() != nullptr) {  // what the local model did so far (model_decisions.h)
    const ModelDecisions::Counters& m = decisions_.local_model().counters();
    extra["agent.model.evaluations"] = static_cast<double>(m.evaluations);
    extra["agent.model.positives"] = static_cast<double>(m.positives);
    extra["agent.model.skipped"] = static_cast<double>(m.skipped);
  }
  if (options_.extra_gauges) options_.extra_gauges(extra);
  sensors_.merge_into(extra, sample.ts);  // third-party readings since the last sample
  pipeline_sample(open_batch_.back());    // gauge inputs, outbox outputs, agent.pipeline.*
  // Decided here, on the sample as it goes up (sensor gauges included), whether or not
  // the uplink is there: the outbox keeps what is decided offline until it can be sent.
  firings_.clear();
  decisions_.evaluate(open_batch_.back(), offline(), firings_);
  for (Firing& f : firings_) {
    if (suppressed(f.alert.metric)) {  // a rule's suppress_alert action is in force
      update_counters([](AgentCounters& c) { ++c.alerts_suppressed; });
      continue;
    }
    if (options_.log) {
      options_.log(f.alert.severity == schemas::Severity::info ? "info" : "warning", "alert",
                   "metric=" + f.alert.metric + " message=\"" + f.alert.message + "\"");
    }
    if (append_record("alerts", Priority::alerts, f.alert)) {
      update_counters([](AgentCounters& c) { ++c.alerts; });
      // The same record (its id and stream position set) for consumers on the node's own
      // broker, QoS 1, not retained: a local actuator need not wait for the cloud.
      const schemas::Bytes b = schemas::encode_cbor(f.alert);
      if (!local_alerts_.push("alert", {local_alert_topic_, std::string(b.begin(), b.end())})) {
        update_counters([](AgentCounters& c) { ++c.local_alerts_dropped; });
      }
    }
    if (f.record && append_record("decisions", Priority::decisions, *f.record)) {
      note_decision(*f.record);
      update_counters([](AgentCounters& c) { ++c.decisions; });
    }
  }
  if (!firings_.empty()) {
    update_backlog();
    send_queued();
  }
}

template <class T>
bool Agent::append_record(const char* stream, Priority priority, T& record) {
  const std::uint64_t seq = outbox_->next_seq(stream);
  record.position = {options_.birth.node, stream, seq};
  stamp_id(record, seq);
  const schemas::Bytes b = schemas::encode_cbor(record);
  auto stored = outbox_->append(stream, priority, std::string(b.begin(), b.end()));
  if (!stored) update_counters([](AgentCounters& c) { ++c.outbox_errors; });
  if (stored) appended_bytes_ += b.size();
  return static_cast<bool>(stored);
}
template bool Agent::append_record(const char*, Priority, schemas::DecisionRecord&);  // agent_verdicts.cpp

void Agent::flush_batch() {
  if (open_batch_.empty()) return;
  std::vector<schemas::MetricSample> samples = std::move(open_batch_);
  open_batch_.clear();
  store_batch(samples);
  if (options_.resident_region) store_aggregate(samples);
  // The batch's encoding and compression workspace is free now (AgentOptions::release_memory).
  if (options_.release_memory) common::release_free_heap_pages();
  update_backlog();
}

void Agent::store_batch(std::span<const schemas::MetricSample> samples) {
  schemas::MetricsBatch batch;
  batch.encoding = options_.batch_encoding;
  batch.samples.assign(samples.begin(), samples.end());
  if (batch.encoding == schemas::BatchEncoding::qdelta) {
    for (const schemas::MetricSample& s : batch.samples) {
      for (const auto& [name, value] : s.extra) {
        if (auto places = extra_decimals(name)) batch.extra_decimals.emplace(name, *places);
      }
    }
  }
  // Many samples of many gauges (sensor gauges fill up to 128 more) can make a batch
  // over a decoder's limits (message bytes, inflated bytes, gauge cells), and the cloud
  // would refuse all of it: such a batch is stored as two halves instead. The trial
  // encoding carries the seq append_record() will give it, so it is the stored bytes.
  if (samples.size() > 1) {
    batch.position = {options_.birth.node, "metrics", outbox_->next_seq("metrics")};
    const schemas::Bytes trial = schemas::encode_cbor(batch);
    if (trial.size() > schemas::Limits{}.max_message_bytes || !schemas::decode_cbor<schemas::MetricsBatch>(trial)) {
      const std::size_t half = samples.size() / 2;
      store_batch(samples.first(half));
      store_batch(samples.subspan(half));
      return;
    }
  }
  if (append_record("metrics", Priority::metrics, batch)) update_counters([](AgentCounters& c) { ++c.batches; });
}

void Agent::store_aggregate(std::span<const schemas::MetricSample> samples) {
  schemas::MetricsBatch batch;
  batch.encoding = options_.batch_encoding;
  batch.samples = {aggregate_of(samples)};
  if (batch.encoding == schemas::BatchEncoding::qdelta) batch.extra_decimals.emplace(kAggregateSamplesGauge, 0);
  if (append_record("aggregates", Priority::metrics, batch)) update_counters([](AgentCounters& c) { ++c.aggregates; });
}

void Agent::reconfigure(const AgentTuning& tuning) {
  {
    std::lock_guard lock(tuning_mutex_);
    pending_tuning_ = tuning;
  }
  uplink_->wake();
}

void Agent::apply_pending_tuning() {
  std::optional<AgentTuning> t;
  {
    std::lock_guard lock(tuning_mutex_);
    t.swap(pending_tuning_);
  }
  if (!t) return;
  options_.sample_interval = t->sample_interval;
  options_.batch_interval = t->batch_interval;
  options_.batch_encoding = t->batch_encoding;
  options_.drain = t->drain;
  decisions_.set_options(t->decisions);
  if (!pipelines_ ? !t->pipelines.empty() : pipelines_->specs() != t->pipelines) set_pipelines(std::move(t->pipelines));
  tokens_ = std::min(tokens_, options_.drain.burst);
  if (options_.tasks != nullptr) {
    options_.tasks->set_limits(t->task_limits);
    options_.tasks->set_max_concurrent(t->max_concurrent_tasks);
  }
  update_counters([](AgentCounters& c) { ++c.reconfigurations; });
}

HostState Agent::host_state() const {
  HostState h;
  if (!last_sample_) return h;
  h.cpu_pct = last_sample_->cpu_pct;
  h.memory_pct = last_sample_->mem_pct;
  h.disk_pct = last_sample_->disk_pct;
  if (auto it = last_sample_->extra.find("mem.available_mb"); it != last_sample_->extra.end()) {
    h.free_memory_mb = static_cast<std::uint64_t>(std::max(0.0, it->second));
  }
  return h;
}

void Agent::record_result(const schemas::TaskResult& result) {
  schemas::TaskResult r = result;
  append_record("results", Priority::results, r);
  update_backlog();
}

void Agent::update_backlog() {
  std::uint64_t records = 0;
  for (const auto& [name, s] : outbox_->stats()) records += s.count;
  update_counters([&](AgentCounters& c) { c.outbox_records = records; });
}

std::optional<std::string> Agent::admit_control(const std::string& topic, topics::DownKind kind,
                                                const std::string& payload) {
  const std::string kind_name(topics::to_string(kind));
  ControlGate::Outcome o = gate_->admit(kind_name, payload, wall_ms());
  if (o.message) return std::move(o.message);
  if (o.duplicate) {
    update_counters([](AgentCounters& c) { ++c.control_duplicates; });
    if (options_.log) options_.log("debug", "control_duplicate", "topic=" + topic + " detail=" + logfmt_quoted(o.reason));
    return std::nullopt;
  }
  update_counters([&](AgentCounters& c) {
    switch (*o.refusal) {
      case security::Refusal::unsigned_message: ++c.control_unsigned; break;
      case security::Refusal::untrusted: ++c.control_untrusted; break;
      case security::Refusal::misaddressed: ++c.control_misaddressed; break;
      case security::Refusal::expired: ++c.control_expired; break;
      case security::Refusal::not_yet_valid: ++c.control_not_yet_valid; break;
      case security::Refusal::replayed: ++c.control_replayed; break;
      case security::Refusal::stale: ++c.control_stale; break;
    }
  });
  if (options_.log) {
    options_.log("warning", "control_refused",
                 "reason=" + std::string(security::refusal_name(*o.refusal)) + " topic=" + topic +
                     " detail=" + logfmt_quoted(o.reason));
  }
  return std::nullopt;
}

void Agent::on_task(const std::string& topic, const std::string& signed_payload) {
  const auto payload = admit_control(topic, topics::DownKind::task, signed_payload);
  if (!payload) return;
  auto task = schemas::decode_cbor<schemas::Task>(*payload);
  if (!task) return bad_input(topic, task.error().message());
  if (options_.tasks == nullptr) return bad_input(topic, "this agent runs no tasks");
  update_counters([](AgentCounters& c) { ++c.tasks_received; });
  auto admission = options_.tasks->submit(*task);
  if (!admission) {
    schemas::TaskResult refused;
    refused.task_id = task->task_id;
    refused.status = schemas::TaskStatus::refused;
    refused.finished_ts = wall_ms();
    refused.reason = admission.error().message();
    record_result(refused);
  }
}

// Not kept in the inbox: a cancel lost to a crash before it was acted on is sent again
// by nova-cloud, which repeats it until the task's result comes (docs/cloud.md).
void Agent::on_cancel(const std::string& topic, const std::string& payload) {
  auto cancel = schemas::decode_cbor<schemas::TaskCancel>(payload);
  if (!cancel) return bad_input(topic, cancel.error().message());
  if (options_.tasks == nullptr) return bad_input(topic, "this agent runs no tasks");
  process_inbox();  // a task delivered before its cancel is submitted first
  update_counters([](AgentCounters& c) { ++c.cancels_received; });
  auto outcome = options_.tasks->cancel(cancel->task_id, cancel->reason.value_or(""), wall_ms());
  if (!outcome) return bad_input(topic, outcome.error().message());
  if (options_.log) {
    options_.log("info", "task_cancel", "task_id=" + cancel->task_id + " outcome=" + std::string(to_string(*outcome)));
  }
}

void Agent::process_inbox() {
  for (const Inbox::Entry& e : inbox_->pending()) {
    // Removed even when handling throws: a task that cannot be handled must not be
    // handled again at every start (a crash loop).
    guarded(task_topic_, [&] { on_task(task_topic_, e.payload); });
    inbox_->remove(e.id);
  }
  count_corrupt();
}

void Agent::count_corrupt() {
  const std::uint64_t corrupt = corrupt_ ? corrupt_->load() : 0;
  if (corrupt != counters().corrupt_records) {
    update_counters([&](AgentCounters& c) { c.corrupt_records = corrupt; });
  }
}

void Agent::stop() {
  stop_requested_.store(true);
  uplink_->wake();
}

void Agent::renew_uplink() { uplink_->renew(); }

bool Agent::connected() const { return uplink_->connected(); }

AgentCounters Agent::counters() const {
  std::lock_guard lock(counters_mutex_);
  return counters_;
}


bool Agent::wait_for(const std::function<bool(const AgentCounters&)>& done,
                     std::chrono::milliseconds timeout) const {
  std::unique_lock lock(counters_mutex_);
  return counters_changed_.wait_for(lock, timeout, [&] { return done(counters_); });
}

void Agent::on_connected(Clock::time_point now) {
  session_up_ = true;
  if (options_.log) options_.log("info", "connected", "broker=" + options_.broker_uri + " bdseq=" + std::to_string(bdseq_));
  backoff_ = 0ms;
  update_counters([](AgentCounters& c) { ++c.connects; });
  const auto& d = *options_.birth.description;
  const topics::SitePath site = topics::SitePath::parse(d.site).value();
  const topics::Id node = id(options_.birth.node);
  std::vector<std::string> filters;
  for (topics::DownKind k : {topics::DownKind::ack, topics::DownKind::task, topics::DownKind::config,
                             topics::DownKind::model, topics::DownKind::verdict, topics::DownKind::update,
                             topics::DownKind::cancel}) {
    filters.push_back(topics::down(site, node, k));
  }
  filters.push_back(topics::down(site, node, topics::DownKind::erase));
  // A bundle still awaited: the broker re-sends its retained chunks on this subscribe.
  if (const auto& offer = updater_.fetching()) filters.push_back(topics::bundle_chunks(id(offer->sha256)));
  filters.push_back(topics::sensor_all(node));  // local sensors' readings (sensors.h)
  uplink_->subscribe(filters);
  // The birth follows the SUBACK (on_subscribed), so it can say whether the node is ready.
  birth_pending_ = true;
  refused_.clear();
  resubscribe_at_ = Clock::time_point::max();
  resubscribe_backoff_ = 0ms;
  update_counters([](AgentCounters& c) { c.subscriptions_missing = 0; });
  // Everything not yet acknowledged is sent again: the previous connection may have
  // died with publishes in flight. The cloud deduplicates.
  // Nothing is sent in this session yet: no stall timer runs.
  streams_.clear();
  for (const auto& [name, s] : outbox_->stats()) streams_[name] = {s.acked, std::nullopt, options_.drain.resend_after};
  const auto jitter_ms = options_.drain.jitter.count();
  drain_after_ = now + std::chrono::milliseconds(
                           jitter_ms > 0 ? std::uniform_int_distribution<std::int64_t>(0, jitter_ms)(rng_) : 0);
  if (options_.release_memory) release_startup_pages();
}

void Agent::release_startup_pages() {
  const common::ReleasedPages r = common::release_clean_file_pages();
  const bool heap = common::release_free_heap_pages();
  if (!options_.log) return;
  if (!r.error.empty()) {
    options_.log("warning", "startup_pages_kept", "error=" + common::logfmt_quote(r.error));
    return;
  }
  options_.log("info", "startup_pages_released",
               "mappings=" + std::to_string(r.mappings) + " kib=" + std::to_string(r.kib) +
                   " free_heap_released=" + (heap ? "true" : "false"));
}

void Agent::on_disconnected(Clock::time_point now, const std::string& reason) {
  if (options_.log && (session_up_ || backoff_ == 0ms)) {
    options_.log("warning", "disconnected", "reason=\"" + reason + "\"");
  }
  session_up_ = false;
  // Full-jitter exponential back-off between reconnect_min and reconnect_max.
  backoff_ = std::clamp(backoff_ * 2, options_.reconnect_min, options_.reconnect_max);
  const auto delay = std::uniform_int_distribution<std::int64_t>(options_.reconnect_min.count(), backoff_.count())(rng_);
  reconnect_at_ = now + std::chrono::milliseconds(delay);
}

void Agent::on_subscribed(Clock::time_point now, const UplinkEvent& e) {
  if (!session_up_) return;  // a subscribe of a connection already lost
  const std::set<std::string> before = refused_;
  std::uint64_t refusals = 0;
  for (const SubscriptionGrant& g : e.grants) {
    if (g.qos >= 1 && g.qos != SubscriptionGrant::kRefused) {
      refused_.erase(g.filter);
      continue;
    }
    ++refusals;
    refused_.insert(g.filter);
    if (options_.log) {
      options_.log("warning", "subscription_refused",
                   "filter=" + g.filter + " granted=" + (g.qos == SubscriptionGrant::kRefused ? "0x80" : std::to_string(g.qos)) +
                       (e.payload.empty() ? "" : " reason=\"" + e.payload + "\""));
    }
  }
  update_counters([&](AgentCounters& c) {
    c.subscriptions_refused += refusals;
    c.subscriptions_missing = refused_.size();
  });
  if (refused_.empty()) {
    resubscribe_backoff_ = 0ms;
    resubscribe_at_ = Clock::time_point::max();
    if (!before.empty() && options_.log) options_.log("info", "subscriptions_ready", "");
  } else {
    resubscribe_backoff_ = std::clamp(resubscribe_backoff_ * 2, options_.reconnect_min, options_.reconnect_max);
    resubscribe_at_ = now + resubscribe_backoff_;
  }
  if (birth_pending_ || refused_ != before) {
    birth_pending_ = false;
    publish_birth();
  }
}

void Agent::publish_birth() {
  uplink_->publish(topics::up(id(options_.birth.node), topics::UpKind::state),
                   birth_payload(schemas::NodeStatus::online), true, kBirthTag);
}

void Agent::bad_input(const std::string& topic, const std::string& reason) {
  update_counters([](AgentCounters& c) { ++c.bad_messages; });
  if (options_.log) options_.log("warning", "bad_message", "topic=" + topic + " error=" + logfmt_quoted(reason));
}

template <class Fn>
void Agent::guarded(const std::string& topic, Fn handler) {
  try {
    handler();
  } catch (const std::exception& e) {
    update_counters([](AgentCounters& c) { ++c.handler_failures; });
    bad_input(topic, std::string("handling failed: ") + e.what());
  } catch (...) {
    update_counters([](AgentCounters& c) { ++c.handler_failures; });
    bad_input(topic, "handling failed: unknown exception");
  }
}

void Agent::on_sensor_reading(const topics::SensorTopic& t, const std::string& payload) {
  const Clock::time_point arrival = Clock::now();
  schemas::SensorReading reading;
  auto refused = sensors_.accept(t.sensor.str(), payload, wall_ms(), pipelines_ ? &reading : nullptr);
  if (!refused) {
    update_counters([](AgentCounters& c) { ++c.sensor_readings; });
    feed_reading(t.sensor.str(), reading, arrival);
    return;
  }
  update_counters([](AgentCounters& c) { ++c.sensor_refused; });
  if (options_.log) {
    options_.log("warning", "sensor_reading_refused",
                 "sensor=" + t.sensor.str() + " field=" + logfmt_quoted(refused->error.field) +
                     " reason=" + logfmt_quoted(refused->error.reason));
  }
  // Every refusal gets its reply (QoS 1), queued until the uplink has room; only a
  // sensor with 256 replies already waiting loses the newest (sensors.h).
  if (!sensor_replies_.push(t.sensor.str(), {topics::sensor_error(t.node, t.sensor), std::move(refused->payload)})) {
    update_counters([](AgentCounters& c) { ++c.sensor_replies_dropped; });
    if (options_.log) options_.log("warning", "sensor_reply_dropped", "sensor=" + t.sensor.str());
  }
  send_queued();
}

std::uint64_t Agent::send_local(SensorReplies& queue) {
  // They share the uplink's in-flight budget with the drain: together they stay under
  // Paho's buffer of queued publishes.
  std::uint64_t sent = 0;
  while (const SensorReplies::Reply* r = queue.next()) {
    if (uplink_->in_flight() >= options_.drain.max_in_flight) break;
    if (!uplink_->publish(r->topic, r->payload, false)) break;  // not connected: later
    queue.pop();
    ++sent;
  }
  return sent;
}

void Agent::send_queued() {
  if (const std::uint64_t sent = send_local(sensor_replies_); sent > 0) {
    update_counters([&](AgentCounters& c) { c.sensor_replies_sent += sent; });
  }
  if (const std::uint64_t sent = send_local(local_alerts_); sent > 0) {
    update_counters([&](AgentCounters& c) { c.local_alerts_sent += sent; });
  }
}

void Agent::on_message(const std::string& topic, const std::string& payload) {
  if (const auto& offer = updater_.fetching()) {
    const std::string chunks = topics::bundle_chunks(id(offer->sha256));  // ".../<sha256>/+"
    const std::string_view prefix = std::string_view(chunks).substr(0, chunks.size() - 1);
    if (topic.starts_with(prefix)) return on_bundle_chunk(std::string_view(topic).substr(prefix.size()), payload);
  }
  // Chunks of a bundle no longer fetched (refused, or replaced by a newer offer) still
  // come on its subscription until the next reconnect: nothing is wrong with them.
  if (topic.starts_with(topics::bundle_all().substr(0, topics::bundle_all().size() - 1))) return;
  auto parsed = topics::parse(topic);
  if (const auto* sensor = parsed ? std::get_if<topics::SensorTopic>(&*parsed) : nullptr) {
    if (!sensor->error_reply && sensor->node.str() == options_.birth.node) return on_sensor_reading(*sensor, payload);
  }
  const auto* down = parsed ? std::get_if<topics::DownTopic>(&*parsed) : nullptr;
  if (down == nullptr || down->node.str() != options_.birth.node) {
    return bad_input(topic, parsed ? "not addressed to this node" : parsed.error().message());
  }
  if (down->kind == topics::DownKind::task) {
    process_inbox();  // the callback stored this task (and any left from before)
    return;
  }
  // A retained erasure request cleared (an empty retained message): nothing to check or do.
  if (down->kind == topics::DownKind::erase && payload.empty()) return;
  // Everything else that comes down is a signed control message too.
  const auto message = admit_control(topic, down->kind, payload);
  if (!message) return;
  if (down->kind == topics::DownKind::ack) {
    on_ack(topic, *message);
  } else if (down->kind == topics::DownKind::config) {
    auto config = schemas::decode_cbor<schemas::Config>(*message);
    if (!config) return bad_input(topic, config.error().message());
    update_counters([](AgentCounters& c) { ++c.configs_received; });
    if (options_.on_remote_config) options_.on_remote_config(*config);
  } else if (down->kind == topics::DownKind::model) {
    on_model(topic, *message);
  } else if (down->kind == topics::DownKind::verdict) {
    on_verdict(topic, *message, wall_ms());
  } else if (down->kind == topics::DownKind::update) {
    on_update_offer(topic, *message);
  } else if (down->kind == topics::DownKind::cancel) {
    on_cancel(topic, *message);
  } else if (down->kind == topics::DownKind::erase) {
    on_erase(topic, *message);
  }
}

void Agent::on_erase(const std::string& topic, const std::string& payload) {
  auto request = schemas::decode_cbor<schemas::ErasureRequest>(payload);
  if (!request) return bad_input(topic, request.error().message());
  if (request->node != options_.birth.node) return bad_input(topic, "erasure for node '" + request->node + "'");
  const std::string what = "erasure=" + request->erasure_id + " sensor=" + request->sensor.value_or("*");
  // Done once: the retained request comes again at every reconnect and restart, and
  // applying it again would erase what was recorded after it.
  const std::filesystem::path done = options_.state_dir / "erasures" / request->erasure_id;
  if (std::filesystem::exists(done)) {
    if (options_.log) options_.log("debug", "erasure_done_before", what);
    return;
  }
  const std::string prefix = request->sensor ? schemas::sensor_gauge_prefix(*request->sensor) : "";
  auto erased = outbox_->erase([&](std::string_view stream, std::string_view stored) -> ErasureEdit {
    if (stream == "erasures") return {};  // reports of erasures: counts, no data
    if (!request->sensor) return {ErasureEdit::Action::remove, {}};
    return without_gauges(stream, stored, prefix);
  });
  if (!erased) {
    update_counters([](AgentCounters& c) { ++c.outbox_errors; });
    if (options_.log) options_.log("error", "erasure_failed", what + " error=" + logfmt_quoted(erased.error().message()));
    return;
  }
  // What waits in memory for the next batch: sensor gauges, and the open batch's samples.
  std::uint64_t memory = sensors_.forget(request->sensor);
  if (!request->sensor) {
    memory += open_batch_.size();
    open_batch_.clear();
  } else {
    schemas::MetricsBatch open;
    open.samples = std::move(open_batch_);
    memory += schemas::drop_gauges(open, prefix);
    open_batch_ = std::move(open.samples);
  }
  schemas::ErasureReport report;
  report.erasure_id = request->erasure_id;
  report.ts = wall_ms();
  report.counts = {{"outbox_removed", erased->removed}, {"outbox_rewritten", erased->rewritten}, {"memory", memory}};
  if (!append_record("erasures", Priority::results, report)) return;  // counted; applied again next time
  std::error_code ec;
  std::filesystem::create_directories(done.parent_path(), ec);
  write_file_durably(done, std::to_string(report.ts) + "\n");
  update_counters([](AgentCounters& c) { ++c.erasures; });
  update_backlog();
  if (options_.log) {
    options_.log("info", "erasure_applied",
                 what + " outbox_removed=" + std::to_string(erased->removed) +
                     " outbox_rewritten=" + std::to_string(erased->rewritten) + " memory=" + std::to_string(memory));
  }
}

void Agent::on_update_offer(const std::string& topic, const std::string& payload) {
  auto offer = schemas::decode_cbor<schemas::UpdateOffer>(payload);
  if (!offer) return bad_input(topic, offer.error().message());
  const Updater::Decision d = updater_.consider(*offer);
  const std::string what = "version=" + logfmt_quoted(offer->version) + " sha256=" + offer->sha256;
  updater_.cancel();  // a newer offer replaces the one being fetched
  if (d.verdict == Updater::Verdict::current) {
    if (options_.log) options_.log("info", "update_current", what);
    return;
  }
  if (d.verdict == Updater::Verdict::rolled_back) {
    // Reported once already, when the launcher rolled it back (report_rollbacks).
    if (options_.log) options_.log("info", "update_skipped", what + " detail=" + logfmt_quoted(d.reason));
    return;
  }
  if (d.verdict == Updater::Verdict::refuse) return refuse_update(*offer, d.reason);
  if (options_.log) options_.log("info", "update_offered", what + " size=" + std::to_string(offer->size));
  updater_.fetch(*offer);
  uplink_->subscribe({topics::bundle_chunks(id(offer->sha256))});
}

void Agent::on_bundle_chunk(std::string_view index, const std::string& payload) {
  if (payload.empty()) return;  // a retained chunk was cleared: wait for it
  const schemas::UpdateOffer offer = *updater_.fetching();
  Updater::ChunkOutcome o = updater_.add_chunk(index, payload);
  if (o.error) return refuse_update(offer, *o.error);
  if (!o.staged) return;
  update_counters([](AgentCounters& c) { ++c.updates_staged; });
  if (options_.log) {
    options_.log("info", "update_staged",
                 "version=" + logfmt_quoted(offer.version) + " sha256=" + offer.sha256 +
                     " detail=\"stopping for the launcher to start it\"");
  }
  update_staged_ = true;
  stop_requested_ = true;
}

void Agent::refuse_update(const schemas::UpdateOffer& offer, const std::string& detail) {
  const std::string message = schemas::update_refused_message(offer.version, offer.sha256, detail);
  update_counters([](AgentCounters& c) { ++c.updates_refused; });
  if (options_.log) options_.log("warning", "update_refused", "detail=" + logfmt_quoted(message));
  schemas::Alert a = update_alert(message, wall_ms());
  if (append_record("alerts", Priority::alerts, a)) update_counters([](AgentCounters& c) { ++c.alerts; });
  update_backlog();
}

void Agent::report_rollbacks() {
  for (const Updater::Rollback& r : updater_.unreported_rollbacks()) {
    const std::string message = schemas::update_rolled_back_message(r.sha256, r.reason);
    if (options_.log) options_.log("warning", "update_rolled_back", "detail=" + logfmt_quoted(message));
    schemas::Alert a = update_alert(message, wall_ms());
    if (!append_record("alerts", Priority::alerts, a)) continue;  // stays unreported: tried again next start
    update_counters([](AgentCounters& c) { ++c.alerts; });
    updater_.mark_reported(r.sha256);
  }
  update_backlog();
}

void Agent::on_ack(const std::string& topic, const std::string& payload) {
  auto ack = schemas::decode_cbor<schemas::Ack>(payload);
  if (!ack) return bad_input(topic, ack.error().message());
  if (ack->node != options_.birth.node) return bad_input(topic, "ack for node '" + ack->node + "'");
  for (const auto& [stream, watermark] : ack->watermarks) {
    const std::uint64_t before = outbox_->stats()[stream].acked;
    if (!outbox_->ack(stream, watermark)) {
      update_counters([](AgentCounters& c) { ++c.outbox_errors; });
      continue;
    }
    const std::uint64_t acked = outbox_->stats()[stream].acked;
    rtt_.on_ack(stream, watermark, Clock::now());
    if (acked <= before) continue;
    // Progress on this stream only: its stall timer restarts if it still has records
    // outstanding, and stops otherwise. Other streams' timers keep running.
    StreamProgress& p = streams_[stream];
    p.resend_interval = options_.drain.resend_after;
    if (acks_stalled_) {
      acks_stalled_ = false;
      if (options_.log) options_.log("info", "cloud_acks_resumed", "stream=" + stream);
    }
    if (p.sent > acked) {
      p.stall_since = Clock::now();
    } else {
      p.stall_since.reset();
    }
  }
  update_counters([](AgentCounters& c) { ++c.acks; });
  update_backlog();
}

void Agent::on_model(const std::string& topic, const std::string& payload) {
  if (payload.empty()) {  // the retained model was cleared (schemas/topics.md)
    decisions_.clear_model();
    if (options_.log) options_.log("info", "model_cleared", "");
    if (model_revision_) {  // the birth no longer names a model
      model_revision_.reset();
      if (session_up_ && !birth_pending_) publish_birth();
    }
    return;
  }
  auto model = schemas::decode_cbor<schemas::Model>(payload);
  if (!model) return bad_input(topic, model.error().message());
  if (auto refused = decisions_.apply_model(*model)) {
    report_remote(Remote::model, model->revision, *refused);
    return bad_input(topic, *refused);
  }
  update_counters([](AgentCounters& c) { ++c.models_applied; });
  report_remote(Remote::model, model->revision, std::nullopt);
  if (options_.log) {
    const std::string what = "model=" + model->model_id + " revision=" + std::to_string(model->revision);
    if (const models::LocalModel* local = decisions_.local_model().model()) {
      options_.log("info", "model_applied",
                   what + " kind=" + local->kind() + " features=" + std::to_string(local->features().size()) +
                       " threshold=" + models::score_text(local->threshold()));
    } else {
      const ZScoreParams& p = decisions_.zscore();
      options_.log("info", "model_applied",
                   what + " zscore=" + std::to_string(p.threshold) + " min_samples=" + std::to_string(p.min_samples) +
                       " window=" + std::to_string(p.window));
    }
  }
}

void Agent::refill(Clock::time_point now) {
  const double elapsed = std::chrono::duration<double>(now - last_refill_).count();
  last_refill_ = now;
  tokens_ = std::min(options_.drain.burst, tokens_ + elapsed * options_.drain.rate_per_s);
}

void Agent::resend_stalled(Clock::time_point now, const std::map<std::string, StreamStats>& stats) {
  for (const auto& [name, s] : stats) {
    StreamProgress& p = streams_[name];
    if (p.resend_interval == Clock::duration::zero()) p.resend_interval = options_.drain.resend_after;
    if (p.sent <= s.acked) {
      p.stall_since.reset();
      continue;
    }
    if (!p.stall_since || now - *p.stall_since <= p.resend_interval) continue;
    p.sent = s.acked;
    p.stall_since.reset();  // restarts at the first send of the go-back
    p.resend_interval = std::min<Clock::duration>(p.resend_interval * 2, options_.drain.resend_after * 16);
    update_counters([](AgentCounters& c) { ++c.resends; });
    if (options_.log) {
      options_.log("info", "resend", "stream=" + name + " from_seq=" + std::to_string(s.acked + 1));
    }
    if (!acks_stalled_) {
      acks_stalled_ = true;
      if (options_.log) {
        options_.log("warning", "cloud_acks_stalled",
                     "stream=" + name + " unacked_from_seq=" + std::to_string(s.acked + 1) +
                         " decisions=offline");
      }
    }
  }
}

std::string Agent::topic_of(std::string_view stream, topics::UpKind kind, const topics::Id& node) const {
  if (options_.resident_region && stream == "metrics") return tiers::resident_topic(id(*options_.resident_region), node, kind);
  return topics::up(node, kind);
}

void Agent::drain(Clock::time_point now) {
  refill(now);
  if (!session_up_ || now < drain_after_) return;
  const auto delivered = uplink_->take_delivered();
  if (!delivered.empty()) update_counters([&](AgentCounters& c) { c.published += delivered.size(); });
  if (!healthy_marked_ && std::find(delivered.begin(), delivered.end(), kBirthTag) != delivered.end()) {
    healthy_marked_ = true;
    updater_.mark_healthy();
  }
  const auto stats = outbox_->stats();
  resend_stalled(now, stats);
  const topics::Id node = id(options_.birth.node);
  for (const StreamDef& def : kStreams) {
    auto it = stats.find(def.name);
    if (it == stats.end()) continue;
    StreamProgress& progress = streams_[def.name];
    std::uint64_t& sent = progress.sent;
    sent = std::max(sent, it->second.first - 1);  // skip what eviction removed
    // Eviction removed unacknowledged records: every record sent declares the lowest
    // seq still held ("first"), so the cloud stops waiting for the evicted ones. Once
    // the cloud acknowledges past the gap, records go out exactly as stored again.
    const bool gap = it->second.first > it->second.acked + 1;
    while (tokens_ >= 1 && uplink_->in_flight() < options_.drain.max_in_flight && sent + 1 < it->second.next_seq) {
      const std::size_t room = std::min<std::size_t>(static_cast<std::size_t>(tokens_),
                                                     options_.drain.max_in_flight - uplink_->in_flight());
      auto records = outbox_->read(def.name, sent, room);
      if (!records || records->empty()) break;
      for (const OutboxRecord& r : *records) {
        const std::string payload = gap ? with_first(def.kind, r.payload, it->second.first) : std::string();
        if (!uplink_->publish(topic_of(def.name, def.kind, node), gap ? payload : r.payload, false, r.seq)) return;
        rtt_.on_send(def.name, r.seq, now);
        if (!progress.stall_since) progress.stall_since = now;
        sent = r.seq;
        tokens_ -= 1;
      }
    }
  }
}

void Agent::run() {
  auto now = Clock::now();
  last_refill_ = now;
  update_backlog();
  report_rollbacks();
  process_inbox();  // tasks received before a crash
  next_bdseq();
  uplink_->set_will_payload(birth_payload(schemas::NodeStatus::dead));
  uplink_->connect();
  reconnect_at_ = Clock::time_point::max();
  auto next_sample = now;
  while (!stop_requested_.load()) {
    apply_pending_tuning();
    now = Clock::now();
    if (source_ != nullptr && now >= next_sample) {
      if (const schemas::MetricSample* s = source_->sample(wall_ms())) {
        add_sample(*s);
        next_sample += options_.sample_interval;
        if (next_sample < now) next_sample = now + options_.sample_interval;  // fell behind
      } else {
        next_sample = now + std::max<Clock::duration>(options_.sample_interval, 1s);
      }
    }
    if (!session_up_ && now >= reconnect_at_) {
      reconnect_at_ = Clock::time_point::max();
      next_bdseq();
      uplink_->set_will_payload(birth_payload(schemas::NodeStatus::dead));
      uplink_->connect();
    }
    if (session_up_ && now >= resubscribe_at_) {
      resubscribe_at_ = Clock::time_point::max();  // set again by the answer
      uplink_->subscribe(std::vector<std::string>(refused_.begin(), refused_.end()));
    }
    if (options_.tasks != nullptr) options_.tasks->poll(wall_ms(), host_state());
    drain(now);
    count_corrupt();
    send_queued();

    // Sleep until the next thing to do: a sample, a reconnect, tokens, or an event.
    auto deadline = now + 1s;
    if (source_ != nullptr) deadline = std::min(deadline, next_sample);
    deadline = std::min(deadline, reconnect_at_);
    if (session_up_) deadline = std::min(deadline, resubscribe_at_);
    if (session_up_ && tokens_ < 1) {
      deadline = std::min(deadline, now + std::chrono::milliseconds(
                                              static_cast<long>(1000.0 / options_.drain.rate_per_s) + 1));
    }
    if (session_up_ && now < drain_after_) deadline = std::min(deadline, drain_after_);
    if (options_.tasks != nullptr) {
      if (auto ms = options_.tasks->next_deadline_ms(wall_ms())) {
        deadline = std::min(deadline, now + std::chrono::milliseconds(std::max(*ms, 0)));
      }
    }
    for (const UplinkEvent& e : uplink_->wait(deadline)) {
      switch (e.kind) {
        case UplinkEvent::Kind::connected: on_connected(Clock::now()); break;
        case UplinkEvent::Kind::connect_failed:
        case UplinkEvent::Kind::connection_lost: on_disconnected(Clock::now(), e.payload); break;
        case UplinkEvent::Kind::message: guarded(e.topic, [&] { on_message(e.topic, e.payload); }); break;
        case UplinkEvent::Kind::subscribed: on_subscribed(Clock::now(), e); break;
        case UplinkEvent::Kind::delivered: break;
      }
    }
  }
  flush_batch();
  if (session_up_) {
    uplink_->publish(topics::up(id(options_.birth.node), topics::UpKind::state),
                     birth_payload(schemas::NodeStatus::offline), true);
    uplink_->disconnect(2s);
  }
}

}  // namespace nova::agent
