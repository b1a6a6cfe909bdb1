#include "nova/testing/ack_consumer.h"
#include "nova/testing/paho_tls.h"

#include <mqtt/async_client.h>

#include <stdexcept>
#include <variant>

#include "nova/schemas/codec.h"
#include "nova/schemas/topic.h"
#include "nova/testing/signer.h"

namespace nova::testing {

using namespace nova::schemas;

class AckConsumer::Handler final : public virtual mqtt::callback {
 public:
  explicit Handler(AckConsumer& owner) : owner_(owner) {}
  // A clean session loses its subscriptions with the connection, and Paho's automatic
  // reconnect does not restore them: subscribe on every (re)connect.
  void connected(const std::string&) override {
    try {
      owner_.client_->subscribe(std::string("nova/v1/up/#"), 1);
    } catch (const mqtt::exception&) {
    }
  }
  void message_arrived(mqtt::const_message_ptr msg) override {
    owner_.on_message(msg->get_topic(), msg->get_payload_str());
  }

 private:
  AckConsumer& owner_;
};

AckConsumer::AckConsumer(const std::string& uri, const std::string& username, bool send_acks,
                         const std::optional<TlsIdentity>& identity)
    : send_acks_(send_acks) {
  client_ = std::make_unique<mqtt::async_client>(uri, "test-ack-consumer", mqtt::create_options(MQTTVERSION_3_1_1));
  handler_ = std::make_unique<Handler>(*this);
  client_->set_callback(*handler_);
  // TLS for an mqtts:// uri: the certificate of `username`, which the broker makes the
  // MQTT username.
  mqtt::connect_options opts = connect_options(uri, username);
  if (identity && uri.starts_with("mqtts://")) opts.set_ssl(ssl_options(*identity));
  opts.set_clean_session(true);
  opts.set_user_name(username);
  opts.set_automatic_reconnect(std::chrono::milliseconds(50), std::chrono::milliseconds(500));
  client_->connect(opts)->wait();
  // The first subscription is awaited so the caller knows nothing published after
  // construction is missed.
  client_->subscribe(std::string("nova/v1/up/#"), 1)->wait();
}

AckConsumer::~AckConsumer() {
  try {
    client_->disconnect()->wait_for(std::chrono::seconds(2));
  } catch (const mqtt::exception&) {
  }
}

void AckConsumer::on_message(const std::string& topic, const std::string& payload) {
  auto parsed = topics::parse(topic);
  const auto* up = parsed ? std::get_if<topics::UpTopic>(&*parsed) : nullptr;
  if (up == nullptr) return;
  std::unique_lock lock(mutex_);
  const std::string node = up->node.str();
  std::string stream;
  std::uint64_t seq = 0;
  std::uint64_t samples = 0;
  std::optional<TaskResult> result;
  std::optional<DecisionRecord> decision;
  switch (up->kind) {
    case topics::UpKind::state: {
      auto s = decode_cbor<NodeState>(payload);
      if (!s) {
        ++undecodable_;
      } else {
        if (s->description) site_of_[node] = s->description->site;
        states_[node] = *s;
      }
      cv_.notify_all();
      return;
    }
    case topics::UpKind::metrics: {
      auto b = decode_cbor<MetricsBatch>(payload);
      if (!b) {
        ++undecodable_;
        return;
      }
      stream = b->position.stream;
      seq = b->position.seq;
      samples = b->samples.size();
      break;
    }
    case topics::UpKind::result: {
      auto r = decode_cbor<TaskResult>(payload);
      if (!r) {
        ++undecodable_;
        return;
      }
      stream = r->position.stream;
      seq = r->position.seq;
      result = std::move(*r);
      break;
    }
    case topics::UpKind::alert: {
      auto a = decode_cbor<Alert>(payload);
      if (!a) {
        ++undecodable_;
        return;
      }
      stream = a->position.stream;
      seq = a->position.seq;
      break;
    }
    case topics::UpKind::decision: {
      auto d = decode_cbor<DecisionRecord>(payload);
      if (!d) {
        ++undecodable_;
        return;
      }
      stream = d->position.stream;
      seq = d->position.seq;
      decision = std::move(*d);
      break;
    }
    default: return;
  }
  if (to_drop_.erase({stream, seq}) != 0) return;
  if (result) results_[node].push_back(std::move(*result));
  StreamCount& c = counts_[{node, stream}];
  const bool repeated = !c.seqs.insert(seq).second;
  if (repeated) {
    ++c.duplicates;
  } else {
    c.samples += samples;
    if (decision) decisions_[node].push_back(std::move(*decision));
  }
  std::uint64_t w = c.watermark == 0 ? *c.seqs.begin() - 1 : c.watermark;
  while (c.seqs.count(w + 1) != 0) ++w;
  c.watermark = w;
  cv_.notify_all();
  // Acks are cumulative: an advance is worth sending, and so is the current watermark
  // in answer to a repeated record, as nova-cloud does (docs/cloud.md). A sender repeats
  // only what it holds unacknowledged, so it missed our ack; without an answer its
  // go-back-N would wait for an advance that may never come.
  if (!send_acks_ || w == 0 || (w <= c.acked && !repeated)) return;
  if (lose_acks_) {  // "sent", and lost on the way: it needs no address
    c.acked = w;
    return;
  }
  auto site = site_of_.find(node);
  if (site == site_of_.end()) return;
  c.acked = w;
  Ack ack{node, 0, {{stream, w}}};
  const Bytes unsigned_ack = encode_cbor(ack);
  const std::string ack_topic = topics::down(topics::SitePath::parse(site->second).value(),
                                             topics::Id::parse(node).value(), topics::DownKind::ack);
  // Signed as nova-cloud signs its acks; test agents trust this key (signer.h).
  const std::string bytes = test_signer().sign(ack_topic, std::string(unsigned_ack.begin(), unsigned_ack.end()));
  ++acks_sent_;
  lock.unlock();
  try {
    client_->publish(ack_topic, bytes.data(), bytes.size(), 1, false);
  } catch (const mqtt::exception&) {
    // Paho's buffer is full (a burst) or the connection is down: the next advance
    // carries a higher watermark, and the agent resends what stays unacknowledged.
    std::lock_guard relock(mutex_);
    c.acked = 0;
  }
}

StreamCount AckConsumer::count(const std::string& node, const std::string& stream) const {
  std::lock_guard lock(mutex_);
  auto it = counts_.find({node, stream});
  return it == counts_.end() ? StreamCount{} : it->second;
}

bool AckConsumer::wait_for(const std::string& node, const std::string& stream, std::size_t n,
                           std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] {
    auto it = counts_.find({node, stream});
    return it != counts_.end() && it->second.seqs.size() >= n;
  });
}

std::uint64_t AckConsumer::acks_sent() const {
  std::lock_guard lock(mutex_);
  return acks_sent_;
}

void AckConsumer::drop_next(const std::string& stream, std::uint64_t seq) {
  std::lock_guard lock(mutex_);
  to_drop_.insert({stream, seq});
}

void AckConsumer::lose_acks(bool on) {
  std::lock_guard lock(mutex_);
  lose_acks_ = on;
}

std::optional<NodeState> AckConsumer::wait_state(const std::string& node, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  if (!cv_.wait_for(lock, timeout, [&] { return states_.count(node) != 0; })) return std::nullopt;
  return states_.at(node);
}

std::vector<TaskResult> AckConsumer::results(const std::string& node) const {
  std::lock_guard lock(mutex_);
  const auto it = results_.find(node);
  return it == results_.end() ? std::vector<TaskResult>{} : it->second;
}

std::vector<DecisionRecord> AckConsumer::decisions(const std::string& node) const {
  std::lock_guard lock(mutex_);
  const auto it = decisions_.find(node);
  return it == decisions_.end() ? std::vector<DecisionRecord>{} : it->second;
}

std::uint64_t AckConsumer::undecodable() const {
  std::lock_guard lock(mutex_);
  return undecodable_;
}

}  // namespace nova::testing
