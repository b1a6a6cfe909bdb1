#include "nova/cloud/service.h"

#include <mqtt/async_client.h>

#include <condition_variable>
#include <deque>
#include <set>
#include <thread>
#include <variant>

#include "nova/cloud/erasures.h"
#include "nova/cloud/rollouts.h"
#include "nova/cloud/workloads.h"
#include "nova/schemas/codec.h"
#include "nova/schemas/topic.h"
#include "nova/security/audit_log.h"
#include "nova/security/control.h"
#include "nova/tiers/residency.h"

namespace nova::cloud {

using namespace nova::schemas;
namespace topics = nova::topics;

namespace {

Timestamp now_ms() {
  return static_cast<Timestamp>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

// Shared between instances when a group is set; results go to every instance, since each
// keeps the workloads' state.
constexpr const char* kSharedKinds[] = {"metrics", "decision", "alert"};
constexpr const char* kRolloutRecordKind = "rollout";  // store key c/rollout/<id>
constexpr const char* kErasureRecordKind = "erasure";  // store key c/erasure/<id>
constexpr const char* kVerdictRecordKind = "verdict";  // c/verdict/<node>/<decision id>
constexpr const char* kPushRecordKind = "push";  // c/push/<config|model>/<node>
constexpr const char* kFenceRecordKind = "fence";  // c/fence/<workload id> (fence.h)
// Workloads, placements, clusters, presence: its SUBACK starts the republish countdown.
constexpr const char* kCloudFilter = "nova/v1/cloud/#";


// Mutual TLS: the broker must chain to ca_file and carry the URI's host in its SAN; this
// client presents cert_file. TLS 1.2 at least: Paho C ignores sslVersion with OpenSSL
// 1.1 and later, so the floor is set as the agent does, through OpenSSL security level
// 2 (which refuses TLS 1.0 and 1.1).
mqtt::ssl_options tls_options(const security::TlsFiles& files, mqtt::ssl_options::error_handler on_error) {
  mqtt::ssl_options ssl;
  ssl.set_trust_store(files.ca_file);
  ssl.set_key_store(files.cert_file);
  ssl.set_private_key(files.key_file);
  ssl.set_ssl_version(MQTT_SSL_VERSION_TLS_1_2);
  ssl.set_enabled_cipher_suites("DEFAULT:@SECLEVEL=2");
  ssl.set_enable_server_cert_auth(files.verify_server);
  ssl.set_verify(files.verify_server);
  ssl.set_error_handler(std::move(on_error));
  return ssl;
}

}  // namespace

class CloudService::Impl final : public virtual mqtt::callback {
 public:
  struct Incoming {
    std::string topic;
    std::string payload;
    bool retained = false;
  };

  Impl(CloudService& owner)
      : owner_(owner),
        topology_(static_cast<std::uint64_t>(owner.options_.heartbeat_timeout.count())),
        watch_(owner.options_.client_id, owner.options_.subscriptions),
        listener_(*this),
        connect_listener_(*this) {}

  // --- Paho side: queue and return -------------------------------------------------
  void connected(const std::string&) override {
    const std::vector<std::string> filters = wanted_filters();
    {
      std::lock_guard lock(mutex_);
      counters_.connected = true;
      watch_.reset(filters, now_ms());
      republish_at_.reset();
      births_settled_ = false;
      connect_backoff_ = kFirstConnectRetry;
      first_attempt_done_ = true;
    }
    connect_cv_.notify_all();
    // A clean session forgets subscriptions with the connection: subscribe on every connect.
    for (const auto& f : filters) subscribe(f);
    // Presence: retained while connected; the will clears it.
    owner_.publish(presence_topic(), {'1'}, true);
    log("info", "connected", "broker=" + owner_.options_.broker_uri);
  }
  void connection_lost(const std::string& cause) override {
    {
      std::lock_guard lock(mutex_);
      counters_.connected = false;
      births_settled_ = false;
    }
    log("warning", "connection_lost", "cause=\"" + cause + "\"");
  }
  void message_arrived(mqtt::const_message_ptr msg) override {
    accept({msg->get_topic(), msg->get_payload_str(), msg->is_retained()});
  }

  // The one way in for a message, from the broker or deliver(): a subscription probe is
  // noted and dropped, anything else queued for the ingest thread. False if dropped.
  bool accept(Incoming in) {
    std::lock_guard lock(mutex_);
    if (SubscriptionWatch::is_probe(in.payload)) {
      watch_.probe_arrived(in.payload, now_ms());
      return false;
    }
    queue_.push_back(std::move(in));
    ++counters_.messages;
    cv_.notify_all();
    return true;
  }

  std::vector<std::string> wanted_filters() const {
    // Regional role: the topology (to address acks) and the region's resident data only.
    if (const std::string& region = owner_.options_.resident_region; !region.empty()) {
      return {"nova/v1/up/+/state", "nova/v1/up/+/link", tiers::resident_filter(region)};
    }
    const std::string& group = owner_.options_.shared_group;
    // Erasure reports go to every instance: the one that holds the erasure marks it done.
    std::vector<std::string> filters = {"nova/v1/up/+/state", "nova/v1/up/+/link", "nova/v1/up/+/result",
                                        "nova/v1/up/+/erasure", kCloudFilter};
    std::lock_guard lock(mutex_);
    for (const char* kind : kSharedKinds) {
      const std::string filter = std::string("nova/v1/up/+/") + kind;
      const std::string shared = "$share/" + group + "/" + filter;
      filters.push_back(group.empty() || fallen_back_.count(shared) != 0 ? filter : shared);
    }
    // Peers' acks: how far the other instances have stored each stream.
    if (!group.empty()) filters.push_back("nova/v1/down/#");
    return filters;
  }

  // Subscribes without waiting (Paho's callback thread must not block); the SUBACK
  // reaches the watch through `listener_`.
  void subscribe(const std::string& filter) {
    if (!client_) return;
    try {
      client_->subscribe(filter, 1, nullptr, listener_);
    } catch (const mqtt::exception& e) {
      std::lock_guard lock(mutex_);
      watch_.failed(filter, e.what(), now_ms());
    }
  }

  void on_suback(const mqtt::token& tok, bool success) {
    const auto topics = tok.get_topics();
    if (!topics || topics->empty()) return;
    const std::string filter = (*topics)[0];
    const Timestamp now = now_ms();
    int code = 0x80;
    if (success) {
      try {
        const auto codes = tok.get_subscribe_response().get_reason_codes();
        code = codes.empty() ? 0 : static_cast<int>(codes.front());
      } catch (const mqtt::exception&) {
        code = 0;  // no response details: Paho reported success
      }
    }
    std::lock_guard lock(mutex_);
    // Paho C reports a 3.1.1 SUBACK of 0x80 for a single filter as a failure with that code.
    if (success || tok.get_return_code() == 0x80) {
      watch_.suback(filter, code, now);
    } else {
      watch_.failed(filter, "return code " + std::to_string(tok.get_return_code()), now);
    }
    // Retained records arrive right after this SUBACK; give them a moment before this
    // instance publishes again what it owns.
    if (filter == kCloudFilter && !republish_at_) {
      republish_at_ = now + static_cast<Timestamp>(owner_.options_.republish_delay.count());
    }
  }

  struct SubscribeListener final : public virtual mqtt::iaction_listener {
    explicit SubscribeListener(Impl& impl) : impl_(impl) {}
    void on_failure(const mqtt::token& tok) override { impl_.on_suback(tok, false); }
    void on_success(const mqtt::token& tok) override { impl_.on_suback(tok, true); }
    Impl& impl_;
  };

  // --- connecting --------------------------------------------------------------------
  // Paho's automatic reconnect covers a lost connection only, not a connect that fails
  // before the first success (broker down at start, certificate refused): the ingest
  // thread retries those (supervise), with a doubling delay up to kLastConnectRetry.
  static constexpr Timestamp kFirstConnectRetry = 100;
  static constexpr Timestamp kLastConnectRetry = 5000;

  struct ConnectListener final : public virtual mqtt::iaction_listener {
    explicit ConnectListener(Impl& impl) : impl_(impl) {}
    void on_failure(const mqtt::token& tok) override {
      const char* text = MQTTAsync_strerror(tok.get_return_code());
      impl_.on_connect_failed("rc " + std::to_string(tok.get_return_code()) + (text ? std::string(": ") + text : ""));
    }
    void on_success(const mqtt::token&) override {}
    Impl& impl_;
  };

  // Paho's reason for a failed handshake is only "failure"; OpenSSL's own (unknown ca,
  // certificate verify failed) comes through the TLS error handler and is added.
  void note_tls_error(const std::string& text) {
    std::lock_guard lock(mutex_);
    if (tls_error_.size() < 1024) tls_error_ += (tls_error_.empty() ? "" : "; ") + text;
  }

  void on_connect_failed(std::string reason) {
    Timestamp delay = 0;
    {
      std::lock_guard lock(mutex_);
      if (!tls_error_.empty()) {
        reason += "; tls: " + tls_error_;
      } else if (!security::is_plaintext_uri(owner_.options_.broker_uri)) {
        // Under TLS 1.3 the server checks the client certificate after the client's
        // handshake is done: a refused certificate leaves no error on this side.
        reason += "; tls: no error on this side (a certificate the broker refuses shows only in the broker's log)";
      }
      tls_error_.clear();
      ++counters_.connect_failures;
      delay = connect_backoff_;
      connect_backoff_ = std::min(connect_backoff_ * 2, kLastConnectRetry);
      connect_retry_at_ = now_ms() + delay;
      first_attempt_done_ = true;
    }
    connect_cv_.notify_all();
    log("warning", "connect_failed",
        "broker=\"" + owner_.options_.broker_uri + "\" reason=\"" + reason + "\" retry_ms=" + std::to_string(delay));
  }

  void connect() {
    try {
      client_->connect(connect_options_, nullptr, connect_listener_);
    } catch (const mqtt::exception& e) {
      on_connect_failed(e.what());
    }
  }

  // Carries out what the subscription watch asks for, and the republish after a connect.
  void supervise(Timestamp now) {
    SubscriptionWatch::Actions a;
    bool republish = false;
    bool reconnect = false;
    {
      std::lock_guard lock(mutex_);
      a = watch_.due(now);
      counters_.subscriptions_refused += a.refused.size();
      counters_.shared_fallbacks += a.fallbacks.size();
      for (const auto& [shared, plain] : a.fallbacks) fallen_back_.insert(shared);
      if (republish_at_ && now >= *republish_at_ && counters_.connected) {
        republish_at_.reset();
        republish = true;
        births_settled_ = true;
      }
      if (connect_retry_at_ && now >= *connect_retry_at_ && !stopping_) {
        connect_retry_at_.reset();
        reconnect = true;
      }
    }
    if (reconnect) connect();
    for (const auto& r : a.refused) {
      log("error", "subscription_refused", "filter=\"" + r.filter + "\" reason=\"" + r.reason + "\"");
    }
    for (const auto& [shared, plain] : a.fallbacks) {
      log("warning", "shared_subscription_fallback",
          "filter=\"" + shared + "\" now=\"" + plain + "\" reason=\"granted, but no probe came back through it\"");
    }
    for (const auto& f : a.recovered) log("info", "subscription_delivering", "filter=\"" + f + "\"");
    for (const auto& f : a.unsubscribe) {
      try {
        if (client_) client_->unsubscribe(f);
      } catch (const mqtt::exception&) {
      }
    }
    for (const auto& f : a.subscribe) subscribe(f);
    for (const auto& [topic, payload] : a.probes) owner_.publish(topic, {payload.begin(), payload.end()}, false);
    if (republish) {
      const std::size_t n = owner_.workloads_->republish_owned();
      {
        std::lock_guard lock(mutex_);
        counters_.republished += n;
      }
      log("info", "records_republished", "count=" + std::to_string(n));
    }
  }

  void note_store_error(const std::string& message) {
    {
      std::lock_guard lock(mutex_);
      ++counters_.store_errors;
    }
    log("error", "store_write_failed", "error=\"" + message + "\"");
  }

  // Everything published so far acknowledged by the broker, within `timeout`. Detached
  // (no broker), nothing is pending.
  bool wait_delivered(std::chrono::milliseconds timeout) const {
    if (sink_) return true;
    if (!client_) return false;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    try {
      for (const auto& token : client_->get_pending_delivery_tokens()) {
        if (!token->wait_until(deadline)) return false;
      }
    } catch (const mqtt::exception&) {
      return false;  // a publish failed: not delivered
    }
    return true;
  }

  std::string presence_topic() const { return "nova/v1/cloud/instance/" + owner_.options_.client_id; }

  // --- ingest thread ------------------------------------------------------------------
  void run() {
    for (;;) {
      std::vector<Incoming> group;
      {
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, std::chrono::milliseconds(250), [&] { return stopping_ || !queue_.empty(); });
        if (stopping_ && queue_.empty()) return;
        while (!queue_.empty() && group.size() < owner_.options_.max_group) {
          group.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        counters_.queue_depth = queue_.size();
      }
      step(group);
    }
  }

  // One turn of the ingest thread: the group, then everything driven by the clock.
  void step(std::vector<Incoming>& group) {
    process(group);
    const Timestamp now = now_ms();
    std::vector<LivenessChange> changes;
    {
      std::lock_guard lock(mutex_);
      changes = topology_.check_heartbeats(now);
      counters_.liveness_changes += changes.size();
      nodes_cv_.notify_all();
    }
    after_liveness(changes);
    owner_.workloads_->tick(now);
    bool settled = false;
    {
      std::lock_guard lock(mutex_);
      settled = births_settled_ && counters_.connected;
    }
    owner_.rollouts_->tick(now, settled);
    if (next_sweep_ == 0) next_sweep_ = now + static_cast<Timestamp>(owner_.options_.sweep_interval.count());
    if (now >= next_sweep_) {
      const std::uint64_t deleted = owner_.store_->sweep(now);
      if (deleted > 0) log("info", "retention_sweep", "deleted=" + std::to_string(deleted));
      next_sweep_ = now + static_cast<Timestamp>(owner_.options_.sweep_interval.count());
    }
    supervise(now);
  }

  void reject(const std::string& reason_class, const std::string& topic, const std::string& detail) {
    {
      std::lock_guard lock(mutex_);
      ++counters_.rejected[reason_class];
    }
    log("warning", "record_rejected", "reason=" + reason_class + " topic=\"" + topic + "\" error=\"" + detail + "\"");
  }

  // The node's site in the topology (CloudOptions::topology); null without a topology or
  // for a node it does not list.
  const tiers::Site* topology_site(const std::string& node) const {
    const tiers::Topology* t = owner_.options_.topology.get();
    const tiers::NodeSpec* n = t ? t->find_node(node) : nullptr;
    return n ? t->find(n->site) : nullptr;
  }

  // The node and kind of a resident record for this regional instance; nullopt (logged
  // and counted) for a malformed topic, another region's data or a node the topology
  // places outside this region.
  std::optional<topics::UpTopic> admit_resident_topic(const std::string& topic) {
    auto r = tiers::parse_resident_topic(topic);
    if (!r) {
      reject("bad_topic", topic, r.error().message());
      return std::nullopt;
    }
    const std::string& own = owner_.options_.resident_region;
    if (r->region.str() != own) {
      reject("foreign_region", topic, own.empty() ? "resident data needs the regional role (residency.role)"
                                                  : "region '" + r->region.str() + "' is not this instance's '" + own + "'");
      return std::nullopt;
    }
    const tiers::Site* site = topology_site(r->node.str());
    if (site == nullptr || site->region != own) {
      reject("foreign_region", topic, "node '" + r->node.str() + "' is not at a site of region '" + own + "' in the topology");
      return std::nullopt;
    }
    return topics::UpTopic{r->node, r->kind};
  }

  // A birth's site and region against the topology (CloudOptions::topology): false (logged,
  // counted) when the birth is refused; else its region is the topology's.
  bool apply_residency(NodeState& st, const std::string& topic) {
    if (!st.description) return true;
    NodeDescription& d = *st.description;
    const tiers::Site* site = topology_site(st.node);
    if (site != nullptr && site->path.str() != d.site) {
      reject("site_mismatch", topic, "birth.site '" + d.site + "' differs from the node's site '" + site->path.str() +
                                         "' in the topology");
      return false;
    }
    const std::optional<std::string> region = site ? site->region : std::nullopt;
    if (d.region && d.region != region) {
      {
        std::lock_guard lock(mutex_);
        ++counters_.region_ignored;
      }
      log("warning", "birth_region_ignored", "node=" + st.node + " claimed=\"" + *d.region + "\" topology=\"" +
                                                 region.value_or("") + "\"");
    }
    d.region = region;
    return true;
  }

  // Decoded records of one group, kept alive until admit() returns.
  struct Decoded {
    std::variant<std::monostate, MetricsBatch, TaskResult, DecisionRecord, Alert, ErasureReport> value;
  };

  void process(std::vector<Incoming>& group) {
    const Timestamp now = now_ms();
    std::vector<IngestRecord> records;
    std::vector<std::string> record_topics;  // records[i] arrived on record_topics[i]
    std::vector<const Alert*> record_alerts;  // records[i]'s alert, or null
    std::vector<const ErasureReport*> record_erasures;  // records[i]'s erasure report, or null
    std::vector<const DecisionRecord*> record_decisions;  // records[i]'s decision, or null
    std::deque<Decoded> decoded;  // stable addresses
    std::vector<LivenessChange> changes;
    std::vector<std::string> peer_acks;
    for (Incoming& in : group) {
      // Resident data reads as the node's up record of the same kind from here on.
      std::optional<topics::UpTopic> resident;
      if (in.topic.starts_with(tiers::kResidentPrefix)) {
        resident = admit_resident_topic(in.topic);
        if (!resident) continue;
      }
      auto parsed = resident ? schemas::Result<topics::Topic>(topics::Topic(*resident)) : topics::parse(in.topic);
      if (!parsed) {
        reject("bad_topic", in.topic, parsed.error().message());
        continue;
      }
      if (const auto* cloud = std::get_if<topics::CloudTopic>(&*parsed)) {
        if (cloud->kind == topics::CloudKind::instance) {
          std::set<std::string> live;
          {
            std::lock_guard lock(mutex_);
            if (in.payload.empty()) {
              instances_.erase(cloud->id.str());
            } else {
              instances_.insert(cloud->id.str());
            }
            live = instances_;
          }
          owner_.workloads_->set_instances(live, now);
          continue;
        }
        owner_.workloads_->on_cloud_record(*cloud, in.payload, in.retained);
        continue;
      }
      if (const auto* down = std::get_if<topics::DownTopic>(&*parsed)) {
        if (down->kind == topics::DownKind::ack) peer_acks.push_back(std::move(in.payload));
        continue;
      }
      const auto* up = std::get_if<topics::UpTopic>(&*parsed);
      if (up == nullptr) continue;  // not ours (we do not subscribe to anything else)
      const std::string node = up->node.str();
      switch (up->kind) {
        case topics::UpKind::state: {
          if (in.payload.empty()) continue;  // a cleared retained record
          auto st = decode_cbor<NodeState>(in.payload);
          if (!st) {
            reject("undecodable", in.topic, st.error().message());
            continue;
          }
          if (st->node != node) {
            reject("node_mismatch", in.topic, "state.node '" + st->node + "' differs from the topic's node");
            continue;
          }
          if (!apply_residency(st.value(), in.topic)) continue;
          std::vector<LivenessChange> c;
          {
            std::lock_guard lock(mutex_);
            c = topology_.apply_state(*st, now);
          }
          if (st->status == NodeStatus::online) {
            births_.insert(node);
            owner_.erasures_->on_birth(node);  // a pending erasure goes down again, signed afresh
            owner_.pushes_->on_birth(*st, now);
          }
          owner_.rollouts_->on_state(*st, now);
          changes.insert(changes.end(), c.begin(), c.end());
          continue;
        }
        case topics::UpKind::link: {
          if (in.payload != "0" && in.payload != "1") {
            reject("bad_link_state", in.topic, "expected \"0\" or \"1\"");
            continue;
          }
          std::lock_guard lock(mutex_);
          auto c = topology_.apply_link(node, in.payload == "1", now);
          changes.insert(changes.end(), c.begin(), c.end());
          continue;
        }
        default: break;
      }
      IngestRecord r;
      r.payload = std::move(in.payload);
      r.received = now;
      Decoded& d = decoded.emplace_back();
      std::optional<Error> error;
      switch (up->kind) {
        case topics::UpKind::metrics: {
          auto b = decode_cbor<MetricsBatch>(r.payload);
          if (!b) { error = b.error(); break; }
          r.kind = IngestRecord::Kind::metrics;
          r.position = b->position;
          r.batch = &d.value.emplace<MetricsBatch>(std::move(b).value());
          break;
        }
        case topics::UpKind::result: {
          auto x = decode_cbor<TaskResult>(r.payload);
          if (!x) { error = x.error(); break; }
          r.kind = IngestRecord::Kind::result;
          r.position = x->position;
          r.result = &d.value.emplace<TaskResult>(std::move(x).value());
          break;
        }
        case topics::UpKind::decision: {
          auto x = decode_cbor<DecisionRecord>(r.payload);
          if (!x) { error = x.error(); break; }
          r.kind = IngestRecord::Kind::decision;
          r.position = x->position;
          d.value.emplace<DecisionRecord>(std::move(x).value());
          break;
        }
        case topics::UpKind::alert: {
          auto x = decode_cbor<Alert>(r.payload);
          if (!x) { error = x.error(); break; }
          r.kind = IngestRecord::Kind::alert;
          r.position = x->position;
          d.value.emplace<Alert>(std::move(x).value());
          break;
        }
        case topics::UpKind::erasure: {
          auto x = decode_cbor<ErasureReport>(r.payload);
          if (!x) { error = x.error(); break; }
          r.kind = IngestRecord::Kind::erasure;
          r.position = x->position;
          d.value.emplace<ErasureReport>(std::move(x).value());
          break;
        }
        default: continue;
      }
      if (error) {
        reject("undecodable", in.topic, error->message());
        continue;
      }
      if (r.position.node != node) {
        reject("node_mismatch", in.topic, "position.node '" + r.position.node + "' differs from the topic's node");
        continue;
      }
      if (!topics::Id::parse(r.position.stream)) {
        reject("bad_stream", in.topic, "position.stream '" + r.position.stream + "' is not a valid id");
        continue;
      }
      {
        std::lock_guard lock(mutex_);
        topology_.heartbeat(node, now);
      }
      records.push_back(std::move(r));
      record_topics.push_back(in.topic);
      record_alerts.push_back(std::get_if<Alert>(&d.value));
      record_erasures.push_back(std::get_if<ErasureReport>(&d.value));
      record_decisions.push_back(std::get_if<DecisionRecord>(&d.value));
    }
    {
      std::lock_guard lock(mutex_);
      counters_.liveness_changes += changes.size();
      nodes_cv_.notify_all();
    }

    std::set<std::string> ack_nodes;
    if (!records.empty()) {
      auto admitted = owner_.store_->admit(records);
      if (!admitted) {
        // Nothing of the group is stored and nothing is acked: the agents resend.
        std::lock_guard lock(mutex_);
        ++counters_.store_errors;
        log("error", "store_write_failed", "error=\"" + admitted.error().message() + "\"");
      } else {
        for (std::size_t i = 0; i < records.size(); ++i) {
          if (const std::string& refused = admitted.value()[i].refused; !refused.empty()) {
            reject("seq_too_far_ahead", record_topics[i], refused);
            continue;
          }
          ack_nodes.insert(records[i].position.node);
          if (admitted.value()[i].duplicate) continue;
          if (records[i].result != nullptr) owner_.workloads_->on_result(*records[i].result, now);
          if (record_alerts[i] != nullptr) owner_.rollouts_->on_alert(records[i].position.node, *record_alerts[i], now);
          if (record_erasures[i] != nullptr) owner_.erasures_->on_report(records[i].position.node, *record_erasures[i], now);
          // A node's report on a pushed config or model is not a decision to judge.
          if (record_decisions[i] != nullptr && !owner_.pushes_->on_report(*record_decisions[i], now)) {
            owner_.verdicts_->on_decision(*record_decisions[i], now);
          }
          if (records[i].batch != nullptr && !records[i].batch->samples.empty()) {
            owner_.workloads_->on_metrics(records[i].position.node, records[i].batch->samples);
          }
        }
        const StoreCounters sc = owner_.store_->counters();
        std::lock_guard lock(mutex_);
        counters_.records_stored = sc.records;
        counters_.duplicates = sc.duplicates;
        counters_.samples = sc.samples;
        counters_.store_writes = sc.writes;
      }
    }
    // A birth (first, or after a restart of the node) gets the current watermarks: the
    // agent drains from its acked seq, so telling it early avoids resending.
    for (const std::string& n : births_) {
      ack_nodes.insert(n);
      owner_.verdicts_->on_birth(n, now);  // decisions that waited for it
    }
    births_.clear();
    // An ack (ours or a peer's) may close a gap in front of records held here.
    for (const std::string& envelope : peer_acks) {
      const auto payload = peer_ack_message(envelope);
      if (!payload) continue;
      auto ack = decode_cbor<Ack>(*payload);
      if (!ack) continue;
      for (const auto& [stream, w] : ack->watermarks) {
        auto ahead = owner_.store_->observe_ack(ack->node, stream, w);
        if (ahead && ahead.value() > 0) ack_nodes.insert(ack->node);
      }
    }
    for (const std::string& n : ack_nodes) send_ack(n, now);
    after_liveness(changes);
  }

  // The ack inside a peer instance's signed envelope, if our own key signed it (the
  // instances share one key); as it is when this instance does not sign.
  std::optional<std::string> peer_ack_message(const std::string& payload) const {
    if (!owner_.options_.signing_key) return payload;
    auto env = schemas::decode_cose_sign1(
        std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()));
    if (!env || !owner_.options_.signing_key->verify_key().verify(schemas::cose_sig_structure(env->payload),
                                                                   env->signature)) {
      return std::nullopt;
    }
    return std::string(env->message.begin(), env->message.end());
  }

  void send_ack(const std::string& node, Timestamp now) {
    std::optional<std::string> site;
    {
      std::lock_guard lock(mutex_);
      const NodeView* v = topology_.find(node);
      if (v != nullptr && v->description) site = v->description->site;
      if (!site) {
        ++counters_.acks_deferred;
        return;  // the birth triggers it
      }
    }
    Ack ack;
    ack.node = node;
    ack.ts = now;
    for (const auto& [stream, w] : owner_.store_->watermarks(node)) {
      if (w > 0 && ack.watermarks.size() < 64) ack.watermarks[stream] = w;
    }
    if (ack.watermarks.empty()) return;
    auto site_path = topics::SitePath::parse(*site);
    auto node_id = topics::Id::parse(node);
    if (!site_path || !node_id) return;
    if (owner_.publish(topics::down(*site_path, *node_id, topics::DownKind::ack), encode_cbor(ack), false)) {
      std::lock_guard lock(mutex_);
      ++counters_.acks_sent;
    }
  }

  void after_liveness(const std::vector<LivenessChange>& changes) {
    if (changes.empty()) return;
    for (const auto& c : changes) {
      log("info", "liveness", "node=" + c.node + " from=" + std::string(to_string(c.from)) + " to=" +
                                  std::string(to_string(c.to)) + " cause=\"" + c.cause + "\"");
    }
    owner_.workloads_->on_liveness(changes, now_ms());
  }

  std::uint64_t topology_revision() const {
    std::lock_guard lock(mutex_);
    return topology_.revision();
  }

  std::vector<NodeView> snapshot() const {
    std::lock_guard lock(mutex_);
    std::vector<NodeView> out;
    out.reserve(topology_.nodes().size());
    for (const auto& [id, n] : topology_.nodes()) out.push_back(n);
    return out;
  }

  void log(const char* level, const std::string& event, const std::string& fields) const {
    if (owner_.options_.log) owner_.options_.log(level, event, fields);
  }

  CloudService& owner_;
  std::unique_ptr<mqtt::async_client> client_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  mutable std::condition_variable nodes_cv_;
  std::deque<Incoming> queue_;
  bool stopping_ = false;
  LiveTopology topology_;
  CloudCounters counters_;
  std::set<std::string> births_;  // nodes born in the current group (ingest thread only)
  std::set<std::string> instances_;  // live nova-cloud instances, from presence records
  std::thread thread_;
  std::mutex publish_mutex_;
  Timestamp next_sweep_ = 0;  // ingest thread only
  SubscriptionWatch watch_;
  std::set<std::string> fallen_back_;      // shared filters replaced by plain ones
  std::optional<Timestamp> republish_at_;  // after a connect: publish owned records again
  // The retained births had their second to arrive since the last connect (set with the
  // republish): rollout deadlines are enforced only then.
  bool births_settled_ = false;
  SubscribeListener listener_;
  CloudService::PublishSink sink_;         // detached: where publishes go
  mqtt::connect_options connect_options_;  // set once in start(), before the first connect
  ConnectListener connect_listener_;
  std::condition_variable connect_cv_;     // first_attempt_done_
  bool first_attempt_done_ = false;        // connected once, or a connect failed
  Timestamp connect_backoff_ = kFirstConnectRetry;
  std::optional<Timestamp> connect_retry_at_;  // a failed connect is retried then
  std::string tls_error_;                  // OpenSSL's errors of the current attempt
};

CloudService::CloudService(CloudOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<CloudService>> CloudService::prepare(CloudOptions options) {
  if (auto id = topics::Id::parse(options.client_id); !id) return Error{"mqtt.client_id", id.error().reason};
  if (!options.shared_group.empty()) {
    if (auto g = topics::Id::parse(options.shared_group); !g) return Error{"mqtt.shared_group", g.error().reason};
  }
  std::unique_ptr<CloudService> s(new CloudService(std::move(options)));
  auto store = IngestStore::open(s->options_.store);
  if (!store) return store.error();
  s->store_ = std::move(store).value();
  s->impl_ = std::make_unique<Impl>(*s);
  CloudService* raw = s.get();
  // A publish that carries a decision (a task, a record, an update offer), audited.
  const auto audited_publish = [raw](const std::string& topic, const std::vector<std::uint8_t>& payload, bool retained) {
    const bool sent = raw->publish(topic, payload, retained);
    if (raw->options_.audit) {
      auto st = raw->options_.audit->append({raw->options_.client_id, "publish", topic, sent ? "sent" : "not sent"});
      if (!st && raw->options_.log) raw->options_.log("error", "audit_failed", "error=\"" + st.error().message() + "\"");
    }
    return sent;
  };
  s->workloads_ = std::make_unique<Workloads>(
      audited_publish,
      [raw] { return raw->impl_->snapshot(); }, s->options_.log, s->options_.client_id,
      !s->options_.shared_group.empty());
  s->workloads_->set_delivery_wait([raw](std::chrono::milliseconds timeout) { return raw->impl_->wait_delivered(timeout); });
  s->workloads_->set_topology_revision([raw] { return raw->impl_->topology_revision(); });
  s->workloads_->set_heartbeat_timeout(static_cast<Timestamp>(s->options_.heartbeat_timeout.count()));
  s->workloads_->set_migration_policy(s->options_.migration);
  s->workloads_->set_reoptimiser(s->options_.reoptimiser);
  s->workloads_->set_persistence(
      [raw](topics::CloudKind kind, const std::string& id, const std::vector<std::uint8_t>& payload, bool own) {
        auto st = raw->store_->put_cloud_record(std::string(topics::to_string(kind)), id,
                                                std::string(payload.begin(), payload.end()), own);
        if (!st) raw->impl_->note_store_error(st.error().message());
      });
  s->workloads_->set_fence_persistence([raw](const std::string& workload_id, const std::string& json) {
    auto st = raw->store_->put_cloud_record(kFenceRecordKind, workload_id, json, true);
    if (!st) raw->impl_->note_store_error(st.error().message());
  });
  // What an earlier run kept, in dependency order: a placement needs its workload.
  const std::vector<CloudRecord> kept = s->store_->cloud_records();
  for (const auto kind : {topics::CloudKind::cluster, topics::CloudKind::workload, topics::CloudKind::placement}) {
    for (const CloudRecord& r : kept) {
      if (r.kind == topics::to_string(kind)) s->workloads_->restore(kind, r.id, r.payload);
    }
  }
  // Rollouts: the offers are decisions (audited); the bundle's chunks are its bytes.
  s->rollouts_ = std::make_unique<Rollouts>(Rollouts::Hooks{
      [raw, audited_publish](const std::string& topic, const std::vector<std::uint8_t>& payload, bool retained) {
        return topic.rfind("nova/v1/down/", 0) == 0 ? audited_publish(topic, payload, retained)
                                                    : raw->publish(topic, payload, retained);
      },
      [raw](const std::string& id, const std::string& json) {
        return raw->store_->put_cloud_record(kRolloutRecordKind, id, json, true);
      },
      s->options_.log});
  s->erasures_ = std::make_unique<Erasures>(Erasures::Hooks{
      audited_publish,
      [raw](const std::string& id, const std::string& json) {
        return raw->store_->put_cloud_record(kErasureRecordKind, id, json, true);
      },
      [raw](const std::string& node, const std::optional<std::string>& sensor) { return raw->store_->erase(node, sensor); },
      [raw](const std::string& actor, const std::string& action, const std::string& target,
            const std::string& outcome) -> schemas::Status {
        if (!raw->options_.audit) return schemas::Ok{};
        return raw->options_.audit->append({actor, action, target, outcome});
      },
      s->options_.log});
  for (const CloudRecord& r : kept) {
    if (r.kind != kErasureRecordKind) continue;
    if (auto e = erasure_from_json(r.payload)) s->erasures_->restore(std::move(e).value());
  }
  for (const CloudRecord& r : kept) {
    if (r.kind != kRolloutRecordKind) continue;
    auto rollout = rollout_from_json(r.payload);
    if (!rollout) {
      s->impl_->log("error", "rollout_unreadable", "id=" + r.id + " error=\"" + rollout.error().message() + "\"");
      continue;
    }
    s->rollouts_->restore(std::move(rollout).value());
  }
  // A run that ended before the restart stays ended: its result is in this store.
  for (const WorkloadState& w : s->workloads_->list()) {
    for (const Replica& r : w.replicas) {  // a service replica's last report: its state
      if (!r.placement) continue;
      if (auto res = s->store_->result(r.placement->node, r.task_id)) s->workloads_->restore_result(*res);
    }
    if (w.phase != Phase::running || !w.placement) continue;
    if (auto r = s->store_->result(w.placement->node, w.task_id)) s->workloads_->restore_result(*r);
  }
  // A fence that was waiting: it waits again (and is released at once if the stopped
  // run's result came just before the restart). One that no longer applies is forgotten.
  for (const CloudRecord& r : kept) {
    if (r.kind != kFenceRecordKind) continue;
    auto fence = fence_from_json(r.payload);
    std::optional<TaskResult> stopped;
    if (fence) stopped = s->store_->result(fence->fence.node, fence->fence.task_id);
    if (!s->workloads_->restore_fence(r.payload, stopped)) {
      s->impl_->log("info", "fence_dropped", "workload=" + r.id + " reason=\"" +
                                                 (fence ? "its workload is no longer at that run" : fence.error().message()) + "\"");
      (void)s->store_->put_cloud_record(kFenceRecordKind, r.id, "", true);
    }
  }
  s->verdicts_ = std::make_unique<Verdicts>(s->options_.verdicts, Verdicts::Hooks{
      [audited_publish](const std::string& topic, const std::vector<std::uint8_t>& payload) {
        return audited_publish(topic, payload, false);
      },
      [raw](const std::string& node) -> std::optional<std::pair<std::uint32_t, std::string>> {
        const auto v = raw->node(node);
        if (!v || !v->description) return std::nullopt;
        return std::pair{v->description->level, v->description->site};
      },
      [raw](const std::string& id, const std::string& json) {
        return raw->store_->put_cloud_record(kVerdictRecordKind, id, json, true);
      },
      s->options_.log,
      // A node's rule asking to move a workload off it (docs/cloud.md, "Migration").
      [raw](const DecisionRecord& d, Timestamp now) {
        if (d.action != "request_migration" || !d.target) return;
        (void)raw->workloads_->request_migration(*d.target, d.position.node, d.kind + " " + d.decision_id, now);
      }});
  s->pushes_ = std::make_unique<RemotePushes>(RemotePushes::Hooks{
      audited_publish,
      [raw](const std::string& id, const std::string& json) {
        return raw->store_->put_cloud_record(kPushRecordKind, id, json, true);
      },
      s->options_.log});
  for (const CloudRecord& r : kept) {
    if (r.kind == kVerdictRecordKind && !s->verdicts_->restore(r.payload)) {
      s->impl_->log("error", "verdict_unreadable", "id=" + r.id);
    }
    if (r.kind == kPushRecordKind && !s->pushes_->restore(r.payload)) {
      s->impl_->log("error", "push_unreadable", "id=" + r.id);
    }
  }
  if (!kept.empty()) s->impl_->log("info", "cloud_records_restored", "count=" + std::to_string(kept.size()));
  return s;
}

Result<std::unique_ptr<CloudService>> CloudService::start_detached(CloudOptions options, PublishSink sink) {
  auto s = prepare(std::move(options));
  if (!s) return s;
  s.value()->impl_->sink_ = std::move(sink);
  return s;
}

void CloudService::deliver(const std::string& topic, const std::string& payload, bool retained) {
  if (!impl_->sink_ || !impl_->accept({topic, payload, retained})) return;
  std::vector<Impl::Incoming> group;
  {
    std::lock_guard lock(impl_->mutex_);
    group.assign(std::make_move_iterator(impl_->queue_.begin()), std::make_move_iterator(impl_->queue_.end()));
    impl_->queue_.clear();
  }
  impl_->step(group);
}

Result<std::unique_ptr<CloudService>> CloudService::start(CloudOptions options) {
  auto prepared = prepare(std::move(options));
  if (!prepared) return prepared;
  std::unique_ptr<CloudService> s = std::move(prepared).value();
  CloudService* raw = s.get();
  if (!security::is_plaintext_uri(s->options_.broker_uri) && !s->options_.tls) {
    return Error{"mqtt.tls_ca_file", "required for a TLS uri (ssl://, mqtts://, wss://)"};
  }
  try {
    mqtt::create_options create(MQTTVERSION_3_1_1);
    // Acks and tasks for thousands of nodes can be in flight at once.
    create.set_max_buffered_messages(100000);
    s->impl_->client_ = std::make_unique<mqtt::async_client>(s->options_.broker_uri, s->options_.client_id, create);
    s->impl_->client_->set_callback(*s->impl_);
    mqtt::connect_options& opts = s->impl_->connect_options_;
    opts.set_clean_session(true);
    opts.set_user_name(s->options_.username);
    opts.set_keep_alive_interval(std::chrono::seconds(30));
    opts.set_max_inflight(65535);
    opts.set_automatic_reconnect(std::chrono::milliseconds(100), std::chrono::seconds(5));
    // An empty retained will clears this instance's presence record when it dies.
    opts.set_will(mqtt::message(s->impl_->presence_topic(), "", 1, true));
    if (s->options_.tls && !security::is_plaintext_uri(s->options_.broker_uri)) {
      opts.set_ssl(tls_options(*s->options_.tls, [raw](const std::string& text) { raw->impl_->note_tls_error(text); }));
    } else {
      s->impl_->log("warning", "plaintext_uplink",
                    "broker=\"" + s->options_.broker_uri +
                        "\" reason=\"MQTT without TLS: readable and forgeable on the path\"");
    }
  } catch (const mqtt::exception& e) {
    return Error{"mqtt.uri", std::string("cannot use ") + s->options_.broker_uri + ": " + e.what()};
  }
  s->impl_->thread_ = std::thread([raw] { raw->impl_->run(); });
  s->impl_->connect();
  // Returns connected when the broker accepts at once (callers publish right away);
  // otherwise after the first refusal, logged, with retries going on in the background
  // (readiness() says "not connected" meanwhile).
  {
    std::unique_lock lock(s->impl_->mutex_);
    s->impl_->connect_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return s->impl_->first_attempt_done_; });
  }
  return s;
}

CloudService::~CloudService() { stop(); }

bool CloudService::wait_delivered(std::chrono::milliseconds timeout) const { return impl_->wait_delivered(timeout); }

void CloudService::stop() {
  if (!impl_) return;
  {
    std::lock_guard lock(impl_->mutex_);
    if (impl_->stopping_ && !impl_->thread_.joinable()) return;
    impl_->stopping_ = true;
    impl_->cv_.notify_all();
  }
  if (impl_->thread_.joinable()) impl_->thread_.join();
  if (impl_->client_) {
    try {
      if (impl_->client_->is_connected()) {
        impl_->client_->publish(impl_->presence_topic(), "", 0, 1, true)->wait_for(std::chrono::seconds(2));
        impl_->client_->disconnect()->wait_for(std::chrono::seconds(2));
      }
    } catch (const mqtt::exception&) {
    }
  }
}

std::vector<std::uint8_t> CloudService::signed_if_down(const std::string& topic,
                                                       const std::vector<std::uint8_t>& payload) {
  if (!options_.signing_key || !topic.starts_with("nova/v1/down/")) return payload;
  const auto now = static_cast<Timestamp>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count());
  auto claims = security::claims_for_topic(topic, now, options_.control_ttl);
  if (!claims) return payload;  // not a down topic after all: nothing to address
  return security::sign_control(*options_.signing_key, *claims, payload);
}

bool CloudService::publish(const std::string& topic, const std::vector<std::uint8_t>& unsigned_payload,
                           bool retained) {
  // Every message down to the nodes leaves signed: agents refuse anything else.
  const std::vector<std::uint8_t> payload = signed_if_down(topic, unsigned_payload);
  if (impl_ && impl_->sink_) {
    impl_->sink_(topic, payload, retained);
    return true;
  }
  if (!impl_ || !impl_->client_) return false;
  try {
    std::lock_guard lock(impl_->publish_mutex_);
    impl_->client_->publish(topic, payload.data(), payload.size(), 1, retained);
    return true;
  } catch (const mqtt::exception& e) {
    impl_->log("warning", "publish_failed", "topic=\"" + topic + "\" error=\"" + e.what() + "\"");
    return false;
  }
}

std::vector<NodeView> CloudService::nodes() const { return impl_->snapshot(); }

std::optional<NodeView> CloudService::node(const std::string& id) const {
  std::lock_guard lock(impl_->mutex_);
  const NodeView* v = impl_->topology_.find(id);
  if (v == nullptr) return std::nullopt;
  return *v;
}

std::map<Liveness, std::size_t> CloudService::liveness_counts() const {
  std::lock_guard lock(impl_->mutex_);
  std::map<Liveness, std::size_t> out;
  for (const auto& [id, n] : impl_->topology_.nodes()) ++out[n.liveness];
  return out;
}

std::vector<std::string> CloudService::instances() const {
  std::lock_guard lock(impl_->mutex_);
  return {impl_->instances_.begin(), impl_->instances_.end()};
}

std::vector<std::string> CloudService::links_down() const {
  std::lock_guard lock(impl_->mutex_);
  return {impl_->topology_.links_down().begin(), impl_->topology_.links_down().end()};
}

std::vector<std::string> CloudService::readiness() const {
  std::lock_guard lock(impl_->mutex_);
  std::vector<std::string> reasons;
  if (!impl_->counters_.connected) reasons.push_back("mqtt: not connected to " + options_.broker_uri);
  for (auto& r : impl_->watch_.not_delivering()) reasons.push_back("subscription " + std::move(r));
  return reasons;
}

CloudCounters CloudService::counters() const {
  std::lock_guard lock(impl_->mutex_);
  CloudCounters c = impl_->counters_;
  c.queue_depth = impl_->queue_.size();
  return c;
}

bool CloudService::wait_for_nodes(const std::function<bool(const std::map<std::string, NodeView>&)>& pred,
                                  std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mutex_);
  return impl_->nodes_cv_.wait_for(lock, timeout, [&] { return pred(impl_->topology_.nodes()); });
}

}  // namespace nova::cloud
