#include "nova/agent/uplink.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>

#include "paho_api.h"

// Every Paho call goes through paho_ (the library loaded for this URI, paho_api.h).

namespace nova::agent {
namespace {

std::string describe(const detail::PahoApi& paho, int rc, const char* message) {
  std::string s = "rc " + std::to_string(rc);
  if (message != nullptr && *message != '\0') {
    s += ": ";
    s += message;
  } else if (const char* text = paho.MQTTAsync_strerror(rc); text != nullptr) {
    s += ": ";
    s += text;
  }
  return s;
}

}  // namespace

std::optional<TlsFileProblem> check_tls_files(const TlsFiles& files) {
  return security::check_tls_files(files, detail::openssl_api());
}

struct Uplink::Pending {
  enum class State { sent, ok, failed };
  Uplink* owner;
  std::uint64_t tag;
  State state = State::sent;  // guarded by owner->mutex_
  bool abandoned = false;     // its connection was lost; not counted, not reported
};

struct Uplink::Subscribe {
  Uplink* owner;
  std::vector<std::string> filters;
};

// Paho calls these on its own threads. No exception may cross them (C frames), and none
// may wait for the loop thread: Paho may hold its client lock while calling (always for
// messageArrived), and the loop thread may be inside a Paho call. They take only
// Uplink::mutex_, which the loop thread never holds while calling Paho.
struct Uplink::Callbacks {
  static void connected(void* context, char* /*cause*/) {
    try {
      static_cast<Uplink*>(context)->push({UplinkEvent::Kind::connected, {}, {}, {}});
    } catch (...) {
    }
  }

  // Paho's reason for a failed TLS handshake is only "TCP/TLS connect failure"; OpenSSL's
  // (e.g. "certificate verify failed" when the broker is not trusted) arrives before it
  // through ssl_error, and is added.
  static void connect_failed(void* context, MQTTAsync_failureData* response) {
    auto* self = static_cast<Uplink*>(context);
    try {
      const int rc = response != nullptr ? response->code : MQTTASYNC_FAILURE;
      std::string reason = "connect failed (" + describe(self->paho_, rc, response != nullptr ? response->message : nullptr);
      {
        std::lock_guard lock(self->mutex_);
        if (!self->tls_error_.empty()) reason += "; tls: " + self->tls_error_;
        self->tls_error_.clear();
      }
      self->push({UplinkEvent::Kind::connect_failed, {}, reason + ")", {}});
    } catch (...) {
    }
  }

  // OpenSSL's error queue, one line per error, while a TLS connection is made or used.
  static int ssl_error(const char* text, std::size_t len, void* context) {
    auto* self = static_cast<Uplink*>(context);
    try {
      std::string line(text, len);
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      std::lock_guard lock(self->mutex_);
      if (!self->tls_error_.empty()) self->tls_error_ += "; ";
      if (self->tls_error_.size() < 1024) self->tls_error_ += line;
    } catch (...) {
    }
    return 0;
  }

  static void connection_lost(void* context, char* cause) {
    try {
      static_cast<Uplink*>(context)->push(
          {UplinkEvent::Kind::connection_lost, {},
           cause != nullptr && *cause != '\0' ? std::string(cause) : "connection lost", {}});
    } catch (...) {
    }
  }

  // Paho acknowledges a QoS 1 message when this returns 1, so the durable hand-over
  // (before_ack) happens here; the loop gets the message as an event. Returning 0 would
  // make Paho call again later, so the message is always taken.
  static int message_arrived(void* context, char* topic_name, int topic_len,
                             MQTTAsync_message* message) {
    auto* self = static_cast<Uplink*>(context);
    try {
      std::string topic = topic_len > 0
                              ? std::string(topic_name, static_cast<std::size_t>(topic_len))
                              : std::string(topic_name);
      std::string payload(static_cast<const char*>(message->payload),
                          static_cast<std::size_t>(message->payloadlen));
      if (self->options_.before_ack) self->options_.before_ack(topic, payload);
      self->push({UplinkEvent::Kind::message, std::move(topic), std::move(payload), {}});
    } catch (...) {
    }
    self->paho_.MQTTAsync_freeMessage(&message);
    self->paho_.MQTTAsync_free(topic_name);
    return 1;
  }

  static void published(void* context, MQTTAsync_successData* /*response*/) {
    complete(static_cast<Pending*>(context), Pending::State::ok);
  }
  static void publish_failed(void* context, MQTTAsync_failureData* /*response*/) {
    complete(static_cast<Pending*>(context), Pending::State::failed);
  }
  static void complete(Pending* p, Pending::State state) {
    Uplink* owner = p->owner;
    {
      std::lock_guard lock(owner->mutex_);
      p->state = state;  // p may be freed by the loop thread from here on
    }
    try {
      owner->push({UplinkEvent::Kind::delivered, {}, {}, {}});
    } catch (...) {
    }
  }

  // Paho reports SUBACK failure codes either in the grant list or, for a single filter
  // refused, as a failure; both end as one subscribed event.
  static void subscribed(void* context, MQTTAsync_successData* response) {
    auto* sub = static_cast<Subscribe*>(context);
    std::vector<int> granted;
    if (response != nullptr && sub->filters.size() == 1) {
      granted.push_back(response->alt.qos);
    } else if (response != nullptr && response->alt.qosList != nullptr) {
      granted.assign(response->alt.qosList, response->alt.qosList + sub->filters.size());
    }
    finish_subscribe(sub, granted, {});
  }
  static void subscribe_failed(void* context, MQTTAsync_failureData* response) {
    const int rc = response != nullptr ? response->code : MQTTASYNC_FAILURE;
    if (rc == SubscriptionGrant::kRefused) {  // one filter, refused by the broker: a grant
      return finish_subscribe(static_cast<Subscribe*>(context), {rc}, {});
    }
    finish_subscribe(static_cast<Subscribe*>(context), {},
                     "subscribe failed (" + describe(static_cast<Subscribe*>(context)->owner->paho_, rc,
                                                        response != nullptr ? response->message : nullptr) + ")");
  }
  static void finish_subscribe(Subscribe* sub, const std::vector<int>& granted, const std::string& reason) {
    Uplink* owner = sub->owner;
    try {
      UplinkEvent e{UplinkEvent::Kind::subscribed, {}, reason, {}};
      for (std::size_t i = 0; i < sub->filters.size(); ++i) {
        e.grants.push_back({sub->filters[i], i < granted.size() ? granted[i] : SubscriptionGrant::kRefused});
      }
      owner->push(std::move(e));
    } catch (...) {
    }
    std::lock_guard lock(owner->mutex_);
    std::erase_if(owner->subscribes_, [&](const std::unique_ptr<Subscribe>& s) { return s.get() == sub; });
  }

  static void disconnected(void* context, MQTTAsync_successData* /*response*/) {
    disconnect_done(static_cast<Uplink*>(context));
  }
  static void disconnect_failed(void* context, MQTTAsync_failureData* /*response*/) {
    disconnect_done(static_cast<Uplink*>(context));
  }
  // DISCONNECT, letting Paho finish in-flight work for `paho_timeout`; waits for the
  // outcome for at most `wait` (loop thread).
  static void disconnect(Uplink& self, std::chrono::milliseconds paho_timeout,
                         std::chrono::milliseconds wait) {
    if (!self.connected()) return;
    {
      std::lock_guard lock(self.mutex_);
      self.disconnected_ = false;
    }
    MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;
    opts.timeout = static_cast<int>(paho_timeout.count());
    opts.onSuccess = &disconnected;
    opts.onFailure = &disconnect_failed;
    opts.context = &self;
    if (self.paho_.MQTTAsync_disconnect(self.client_, &opts) != MQTTASYNC_SUCCESS) return;
    std::unique_lock lock(self.mutex_);
    self.cv_.wait_for(lock, wait, [&] { return self.disconnected_; });
  }
  static void disconnect_done(Uplink* self) {
    {
      std::lock_guard lock(self->mutex_);
      self->disconnected_ = true;
    }
    self->cv_.notify_all();
  }
};

Uplink::Uplink(UplinkOptions options)
    : options_(std::move(options)), paho_(detail::paho_api(!is_plaintext_uri(options_.uri))) {
  if (!is_plaintext_uri(options_.uri) && !options_.tls) {
    throw std::runtime_error("mqtt client for " + options_.uri + ": a TLS uri needs the TLS files");
  }
  MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer;
  create.MQTTVersion = MQTTVERSION_3_1_1;
  create.sendWhileDisconnected = 0;  // no offline buffer: the outbox is the buffer
  // No Paho persistence: the outbox is the durable store.
  int rc = paho_.MQTTAsync_createWithOptions(&client_, options_.uri.c_str(), options_.client_id.c_str(),
                                       MQTTCLIENT_PERSISTENCE_NONE, nullptr, &create);
  if (rc != MQTTASYNC_SUCCESS) {
    throw std::runtime_error("mqtt client for " + options_.uri + ": " + describe(paho_, rc, nullptr));
  }
  // Callbacks are set before the first connect.
  rc = paho_.MQTTAsync_setCallbacks(client_, this, &Callbacks::connection_lost, &Callbacks::message_arrived,
                              nullptr);
  if (rc == MQTTASYNC_SUCCESS) rc = paho_.MQTTAsync_setConnected(client_, this, &Callbacks::connected);
  if (rc != MQTTASYNC_SUCCESS) {
    paho_.MQTTAsync_destroy(&client_);
    throw std::runtime_error("mqtt client callbacks: " + describe(paho_, rc, nullptr));
  }
}

Uplink::~Uplink() {
  Callbacks::disconnect(*this, std::chrono::milliseconds(0), std::chrono::milliseconds(500));
  // After destroy Paho calls nothing more for this client; the Pending contexts of
  // publishes it never completed are freed with pending_.
  paho_.MQTTAsync_destroy(&client_);
}

void Uplink::connect() {
  MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
  opts.MQTTVersion = MQTTVERSION_3_1_1;
  opts.cleansession = 0;
  opts.keepAliveInterval = static_cast<int>(options_.keepalive.count());
  opts.connectTimeout = 10;
  opts.automaticReconnect = 0;
  opts.username = options_.username ? options_.username->c_str() : nullptr;
  // Paho copies the will (and the user name) when connect() is called.
  MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
  if (!options_.will_topic.empty()) {
    will.topicName = options_.will_topic.c_str();
    will.message = nullptr;  // binary payload below
    will.payload.data = options_.will_payload.data();
    will.payload.len = static_cast<int>(options_.will_payload.size());
    will.qos = 1;
    will.retained = 1;
    opts.will = &will;
  }
  MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
  if (options_.tls && !is_plaintext_uri(options_.uri)) {
    const TlsFiles& tls = *options_.tls;
    ssl.trustStore = tls.ca_file.c_str();
    ssl.keyStore = tls.cert_file.c_str();
    ssl.privateKey = tls.key_file.c_str();
    // TLS 1.2 at least. Paho C 1.3.11 ignores sslVersion with OpenSSL 1.1 and later (it
    // always uses TLS_client_method), so the floor is set through the cipher string:
    // at security level 2, OpenSSL 3 refuses TLS 1.0 and 1.1 (and keys under 112 bits).
    ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
    ssl.enabledCipherSuites = "DEFAULT:@SECLEVEL=2";
    ssl.enableServerCertAuth = tls.verify_server ? 1 : 0;  // chain to ca_file
    ssl.verify = tls.verify_server ? 1 : 0;                // the URI's host in the certificate
    ssl.disableDefaultTrustStore = 1;                      // only ca_file is trusted
    ssl.ssl_error_cb = &Callbacks::ssl_error;
    ssl.ssl_error_context = this;
    opts.ssl = &ssl;
    std::lock_guard lock(mutex_);
    tls_error_.clear();
  }
  opts.onSuccess = nullptr;  // the connected callback reports success
  opts.onFailure = &Callbacks::connect_failed;
  opts.context = this;
  if (const int rc = paho_.MQTTAsync_connect(client_, &opts); rc != MQTTASYNC_SUCCESS) {
    push({UplinkEvent::Kind::connect_failed, {}, "connect failed (" + describe(paho_, rc, nullptr) + ")", {}});
  }
}

void Uplink::disconnect(std::chrono::milliseconds timeout) {
  Callbacks::disconnect(*this, timeout, timeout);
}

bool Uplink::connected() const { return paho_.MQTTAsync_isConnected(client_) != 0; }

void Uplink::subscribe(const std::vector<std::string>& filters) {
  if (filters.empty()) return;
  auto owned = std::make_unique<Subscribe>(Subscribe{this, filters});
  Subscribe* sub = owned.get();
  {
    std::lock_guard lock(mutex_);
    subscribes_.push_back(std::move(owned));  // before sending: the SUBACK may come at once
  }
  std::vector<char*> topics;
  topics.reserve(filters.size());
  // Paho copies the filters; its signature is not const-correct.
  for (const std::string& f : sub->filters) topics.push_back(const_cast<char*>(f.c_str()));
  std::vector<int> qos(filters.size(), 1);
  MQTTAsync_responseOptions ropts = MQTTAsync_responseOptions_initializer;
  ropts.onSuccess = &Callbacks::subscribed;
  ropts.onFailure = &Callbacks::subscribe_failed;
  ropts.context = sub;
  const int rc = paho_.MQTTAsync_subscribeMany(client_, static_cast<int>(topics.size()), topics.data(),
                                         qos.data(), &ropts);
  if (rc != MQTTASYNC_SUCCESS) {
    // Not queued: Paho will never call back for it.
    {
      std::lock_guard lock(mutex_);
      std::erase_if(subscribes_, [&](const std::unique_ptr<Subscribe>& s) { return s.get() == sub; });
    }
    push({UplinkEvent::Kind::connection_lost, {}, "subscribe failed: " + describe(paho_, rc, nullptr), {}});
  }
}

bool Uplink::publish(const std::string& topic, const std::string& payload, bool retained,
                     std::uint64_t tag) {
  if (!connected()) return false;
  auto pending = std::make_unique<Pending>(Pending{this, tag});
  Pending* p = pending.get();
  {
    std::lock_guard lock(mutex_);
    pending_.push_back(std::move(pending));  // before sending: completion may come at once
  }
  MQTTAsync_message msg = MQTTAsync_message_initializer;
  msg.payload = const_cast<char*>(payload.data());  // Paho copies the payload
  msg.payloadlen = static_cast<int>(payload.size());
  msg.qos = 1;
  msg.retained = retained ? 1 : 0;
  MQTTAsync_responseOptions ropts = MQTTAsync_responseOptions_initializer;
  ropts.onSuccess = &Callbacks::published;
  ropts.onFailure = &Callbacks::publish_failed;
  ropts.context = p;
  if (paho_.MQTTAsync_sendMessage(client_, topic.c_str(), &msg, &ropts) != MQTTASYNC_SUCCESS) {
    // Not queued: Paho will never call back for it.
    std::lock_guard lock(mutex_);
    std::erase_if(pending_, [&](const std::unique_ptr<Pending>& q) { return q.get() == p; });
    return false;
  }
  return true;
}

std::vector<std::uint64_t> Uplink::take_delivered() {
  std::vector<std::uint64_t> done;
  std::lock_guard lock(mutex_);
  std::erase_if(pending_, [&](const std::unique_ptr<Pending>& p) {
    if (p->state == Pending::State::sent) return false;
    if (p->state == Pending::State::ok && !p->abandoned) done.push_back(p->tag);
    return true;
  });
  return done;
}

std::size_t Uplink::in_flight() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(std::count_if(
      pending_.begin(), pending_.end(), [](const std::unique_ptr<Pending>& p) { return !p->abandoned; }));
}

void Uplink::push(UplinkEvent e) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

void Uplink::renew() {
  {
    std::lock_guard lock(mutex_);
    renew_ = true;
  }
  cv_.notify_all();
}

void Uplink::take_renew() {
  {
    std::lock_guard lock(mutex_);
    if (!renew_) return;
    renew_ = false;
  }
  if (!connected()) return;  // the next connect reads the files anyway
  Callbacks::disconnect(*this, std::chrono::milliseconds(0), std::chrono::milliseconds(1000));
  push({UplinkEvent::Kind::connection_lost, {}, "renewing the TLS identity", {}});
}

void Uplink::wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  cv_.notify_all();
}

std::vector<UplinkEvent> Uplink::wait(std::chrono::steady_clock::time_point deadline) {
  take_renew();
  std::unique_lock lock(mutex_);
  cv_.wait_until(lock, deadline, [&] { return !events_.empty() || woken_ || renew_; });
  if (renew_) {
    lock.unlock();
    take_renew();
    lock.lock();
  }
  woken_ = false;
  std::vector<UplinkEvent> out(std::make_move_iterator(events_.begin()),
                               std::make_move_iterator(events_.end()));
  events_.clear();
  // Deliveries in flight on a dead connection are no longer awaited. Paho may still
  // complete them (it resends them on the next connection of the session), so their
  // contexts stay until it does; they are neither counted nor reported.
  for (const UplinkEvent& e : out) {
    if (e.kind != UplinkEvent::Kind::connection_lost) continue;
    std::erase_if(pending_, [](const std::unique_ptr<Pending>& p) { return p->state != Pending::State::sent; });
    for (const auto& p : pending_) p->abandoned = true;
  }
  return out;
}

}  // namespace nova::agent
