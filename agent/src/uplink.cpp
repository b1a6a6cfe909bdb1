#include "nova/agent/uplink.h"

#include <MQTTAsync.h>
#include <mqtt/async_client.h>

#include <mutex>

namespace nova::agent {
namespace {

bool is_tls_uri(const std::string& uri) {
  for (const char* scheme : {"ssl://", "mqtts://", "wss://"}) {
    if (uri.starts_with(scheme)) return true;
  }
  return false;
}

// Paho C initialises OpenSSL (error strings, every algorithm, the config file) when the
// first client is created, even for tcp:// URIs; that costs about 1.6 MB of resident
// libcrypto. Once per process, before the first client: skip it unless this broker is
// reached over TLS. (OpenSSL 1.1+ initialises itself on first use, so a TLS client
// created later in the same process still works.)
void init_paho_once(const std::string& uri) {
  static std::once_flag once;
  std::call_once(once, [&] {
    MQTTAsync_init_options init = MQTTAsync_init_options_initializer;
    init.do_openssl_init = is_tls_uri(uri) ? 1 : 0;
    MQTTAsync_global_init(&init);
  });
}

}  // namespace

struct Uplink::Pending {
  mqtt::delivery_token_ptr token;
  std::uint64_t tag;
};

class Uplink::Callbacks final : public virtual mqtt::callback, public virtual mqtt::iaction_listener {
 public:
  explicit Callbacks(Uplink& owner) : owner_(owner) {}

  void connected(const std::string&) override {
    owner_.push({UplinkEvent::Kind::connected, {}, {}});
  }
  void connection_lost(const std::string& cause) override {
    owner_.push({UplinkEvent::Kind::connection_lost, {}, cause.empty() ? "connection lost" : cause});
  }
  void message_arrived(mqtt::const_message_ptr msg) override {
    // Paho holds its client lock during this callback: never wait for the loop here
    // (the loop may be inside a Paho call). Durable hand-over goes through before_ack.
    if (owner_.options_.before_ack) owner_.options_.before_ack(msg->get_topic(), msg->get_payload_str());
    owner_.push({UplinkEvent::Kind::message, msg->get_topic(), msg->get_payload_str()});
  }
  void delivery_complete(mqtt::delivery_token_ptr) override {
    owner_.push({UplinkEvent::Kind::delivered, {}, {}});
  }
  // Connect outcome (the connect token's listener).
  void on_failure(const mqtt::token& tok) override {
    owner_.push({UplinkEvent::Kind::connect_failed, {},
                 "connect failed (rc " + std::to_string(tok.get_return_code()) + ")"});
  }
  void on_success(const mqtt::token&) override {}

 private:
  Uplink& owner_;
};

Uplink::Uplink(UplinkOptions options) : options_(std::move(options)) {
  init_paho_once(options_.uri);
  // No Paho persistence: the outbox is the durable store.
  client_ = std::make_unique<mqtt::async_client>(options_.uri, options_.client_id,
                                                 mqtt::create_options(MQTTVERSION_3_1_1));
  callbacks_ = std::make_unique<Callbacks>(*this);
  client_->set_callback(*callbacks_);
}

Uplink::~Uplink() {
  try {
    if (client_->is_connected()) client_->disconnect(0)->wait_for(std::chrono::milliseconds(500));
  } catch (const mqtt::exception&) {
  }
}

void Uplink::connect() {
  mqtt::connect_options opts;
  opts.set_mqtt_version(MQTTVERSION_3_1_1);
  opts.set_clean_session(false);
  opts.set_keep_alive_interval(options_.keepalive);
  opts.set_connect_timeout(std::chrono::seconds(10));
  opts.set_automatic_reconnect(false);
  if (options_.username) opts.set_user_name(*options_.username);
  if (!options_.will_topic.empty()) {
    opts.set_will(mqtt::will_options(options_.will_topic, options_.will_payload, 1, true));
  }
  try {
    client_->connect(opts, nullptr, *callbacks_);
  } catch (const mqtt::exception& e) {
    push({UplinkEvent::Kind::connect_failed, {}, e.what()});
  }
}

void Uplink::disconnect(std::chrono::milliseconds timeout) {
  try {
    if (client_->is_connected()) client_->disconnect(static_cast<int>(timeout.count()))->wait_for(timeout);
  } catch (const mqtt::exception&) {
  }
}

bool Uplink::connected() const { return client_->is_connected(); }

void Uplink::subscribe(const std::vector<std::string>& filters) {
  if (filters.empty()) return;
  try {
    const std::vector<int> qos(filters.size(), 1);
    client_->subscribe(mqtt::string_collection::create(filters), qos);
  } catch (const mqtt::exception& e) {
    push({UplinkEvent::Kind::connection_lost, {}, std::string("subscribe failed: ") + e.what()});
  }
}

bool Uplink::publish(const std::string& topic, const std::string& payload, bool retained,
                     std::uint64_t tag) {
  if (!client_->is_connected()) return false;
  try {
    auto token = client_->publish(topic, payload.data(), payload.size(), 1, retained);
    pending_.push_back(std::make_unique<Pending>(Pending{std::move(token), tag}));
    return true;
  } catch (const mqtt::exception&) {
    return false;
  }
}

std::vector<std::uint64_t> Uplink::take_delivered() {
  std::vector<std::uint64_t> done;
  std::erase_if(pending_, [&](const std::unique_ptr<Pending>& p) {
    if (!p->token->is_complete()) return false;
    if (p->token->get_return_code() == 0) done.push_back(p->tag);
    return true;
  });
  return done;
}

std::size_t Uplink::in_flight() const { return pending_.size(); }

void Uplink::push(UplinkEvent e) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(e));
  }
  cv_.notify_one();
}

void Uplink::wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  cv_.notify_one();
}

std::vector<UplinkEvent> Uplink::wait(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  cv_.wait_until(lock, deadline, [&] { return !events_.empty() || woken_; });
  woken_ = false;
  std::vector<UplinkEvent> out(std::make_move_iterator(events_.begin()),
                               std::make_move_iterator(events_.end()));
  events_.clear();
  // Deliveries in flight on a dead connection will never be acknowledged.
  for (const UplinkEvent& e : out) {
    if (e.kind == UplinkEvent::Kind::connection_lost) pending_.clear();
  }
  return out;
}

}  // namespace nova::agent
