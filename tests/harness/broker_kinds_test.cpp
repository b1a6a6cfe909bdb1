// What each broker the suite runs against does with the MQTT 3.1.1 our components
// speak: the facts docs/brokers.md states, checked with a real Paho client against a
// real Mosquitto and a real nats-server (nova/testing/test_broker.h), both on mutual TLS;
// each client presents the certificate of the CN it uses as its client id.
#include <catch2/catch.hpp>
#include <chrono>
#include <mqtt/client.h>
#include <string>

#include "nova/testing/paho_tls.h"
#include "nova/testing/retained.h"
#include "nova/testing/test_broker.h"

namespace {

using namespace nova::testing;
using namespace std::chrono_literals;

mqtt::connect_options options(const TestBroker& broker, const std::string& cn, bool clean_session = true) {
  mqtt::connect_options opts = connect_options(broker.uri(), cn);
  opts.set_clean_session(clean_session);
  opts.set_connect_timeout(5s);
  return opts;
}

void publish(const TestBroker& broker, const std::string& topic, const std::string& payload, bool retained) {
  mqtt::client publisher(broker.uri(), "kinds-pub");
  publisher.connect(options(broker, "kinds-pub"));
  publisher.publish(mqtt::make_message(topic, payload, 1, retained));
  publisher.disconnect();
}

// True when the broker grants the subscription (SUBACK with a QoS, not 0x80). Paho
// reports a refused 3.1.1 subscription as an exception.
bool subscription_granted(mqtt::client& client, const std::string& filter) {
  try {
    const auto response = client.subscribe(filter, 1);
    for (int code : response.get_reason_codes()) {
      if (code >= 0x80) return false;
    }
    return true;
  } catch (const mqtt::exception&) {
    return false;
  }
}

}  // namespace

TEST_CASE("each broker keeps retained messages and QoS 1 sessions across a restart", "[harness][brokers]") {
  for (BrokerKind kind : all_broker_kinds()) {
    INFO("broker " << to_string(kind));
    auto broker = start_broker(kind, Transport::mutual_tls);

    // A durable subscriber registers its session, then goes away.
    {
      mqtt::client durable(broker->uri(), "kinds-durable");
      durable.connect(options(*broker, "kinds-durable", /*clean_session=*/false));
      REQUIRE(subscription_granted(durable, "nova/v1/up/+/metrics"));
      durable.disconnect();
    }
    publish(*broker, "nova/v1/up/n-1/state", "born", /*retained=*/true);
    publish(*broker, "nova/v1/up/n-1/metrics", "queued", /*retained=*/false);

    broker->restart();  // SIGTERM, then the same port and data

    const RetainedMessages retained = read_retained(broker->uri(), "nova/v1/up/+/state", 1);
    REQUIRE(retained.count("nova/v1/up/n-1/state") == 1);
    CHECK(retained.at("nova/v1/up/n-1/state") == "born");

    mqtt::client durable(broker->uri(), "kinds-durable");
    durable.start_consuming();
    const auto session = durable.connect(options(*broker, "kinds-durable", /*clean_session=*/false));
    CHECK(session.is_session_present());
    mqtt::const_message_ptr queued;
    REQUIRE(durable.try_consume_message_for(&queued, 10s));
    CHECK(queued->get_payload_str() == "queued");
    durable.disconnect();

    // A crash keeps what was stored (for Mosquitto: what its SIGTERM saved).
    broker->kill();
    broker->restart();
    CHECK(read_retained(broker->uri(), "nova/v1/up/+/state", 1).count("nova/v1/up/n-1/state") == 1);

    // An empty retained message clears the record: an outside reader sees nothing.
    publish(*broker, "nova/v1/up/n-1/state", "", /*retained=*/true);
    CHECK(read_retained(broker->uri(), "nova/v1/up/+/state", 1).empty());
  }
}

TEST_CASE("shared subscriptions: Mosquitto delivers, nats-server grants them and delivers nothing", "[harness][brokers]") {
  for (BrokerKind kind : all_broker_kinds()) {
    INFO("broker " << to_string(kind));
    auto broker = start_broker(kind, Transport::mutual_tls);
    mqtt::client consumer(broker->uri(), "kinds-shared");
    consumer.start_consuming();
    consumer.connect(options(*broker, "kinds-shared"));
    CHECK(subscription_granted(consumer, "$share/g/nova/v1/up/+/metrics"));
    CHECK(subscription_granted(consumer, "nova/v1/up/+/state"));
    // The plain topic goes second: once it arrives, a delivered shared one has too
    // (one publisher, one consumer connection, QoS 1: in order on both brokers).
    publish(*broker, "nova/v1/up/n-1/metrics", "batch", false);
    publish(*broker, "nova/v1/up/n-1/state", "born", false);
    std::vector<std::string> topics;
    for (mqtt::const_message_ptr m; consumer.try_consume_message_for(&m, 10s);) {
      topics.push_back(m->get_topic());
      if (m->get_topic() == "nova/v1/up/n-1/state") break;
    }
    REQUIRE_FALSE(topics.empty());
    CHECK(topics.back() == "nova/v1/up/n-1/state");
    const bool shared_delivered = topics.front() == "nova/v1/up/n-1/metrics";
    CHECK(shared_delivered == (kind == BrokerKind::mosquitto));
    consumer.disconnect();
  }
}

TEST_CASE("topic levels with '.': Mosquitto takes them, nats-server refuses them", "[harness][brokers]") {
  // Our id grammar allows '.' (schemas/topics.md), so a node id like "gw.1" is valid.
  for (BrokerKind kind : all_broker_kinds()) {
    INFO("broker " << to_string(kind));
    auto broker = start_broker(kind, Transport::mutual_tls);
    mqtt::client client(broker->uri(), "kinds-dots");
    client.connect(options(*broker, "kinds-dots"));
    const bool granted = subscription_granted(client, "nova/v1/up/gw.1/state");
    CHECK(granted == (kind == BrokerKind::mosquitto));
    // Publishing to such a topic: Mosquitto acks it, nats-server closes the connection.
    bool published = true;
    try {
      client.publish(mqtt::make_message("nova/v1/up/gw.1/state", "born", 1, false));
    } catch (const mqtt::exception&) {
      published = false;
    }
    CHECK(published == (kind == BrokerKind::mosquitto));
    CHECK(client.is_connected() == (kind == BrokerKind::mosquitto));
  }
}

TEST_CASE("a will topic with '.': nats-server refuses the connection itself", "[harness][brokers]") {
  // Every nova-agent registers its death record as its will, so a node id like "gw.1"
  // cannot connect to nats-server at all.
  for (BrokerKind kind : all_broker_kinds()) {
    INFO("broker " << to_string(kind));
    auto broker = start_broker(kind, Transport::mutual_tls);
    mqtt::client client(broker->uri(), "gw.1");
    auto opts = options(*broker, "gw-1");  // the certificate's CN cannot hold a '.': any CN
    opts.set_will(mqtt::will_options("nova/v1/up/gw.1/state", std::string("dead"), 1, true));
    bool connected = true;
    try {
      client.connect(opts);
    } catch (const mqtt::exception&) {
      connected = false;
    }
    CHECK(connected == (kind == BrokerKind::mosquitto));
    if (connected) client.disconnect();
  }
}

TEST_CASE("each broker's TLS listener refuses a client without a certificate of the test PKI", "[harness][brokers][tls]") {
  for (BrokerKind kind : all_broker_kinds()) {
    INFO("broker " << to_string(kind));
    auto broker = start_broker(kind, Transport::mutual_tls);
    const auto refused = [&](const mqtt::ssl_options& ssl) {
      mqtt::client client(broker->uri(), "kinds-no-cert");
      auto opts = options(*broker, "kinds-no-cert");
      opts.set_ssl(ssl);
      try {
        client.connect(opts);
      } catch (const mqtt::exception&) {
        return true;
      }
      client.disconnect();
      return false;
    };
    mqtt::ssl_options no_certificate;  // trusts the broker, presents nothing
    no_certificate.set_trust_store(client_identity("kinds-no-cert").ca.string());
    CHECK(refused(no_certificate));
    const TlsIdentity foreign = foreign_identity(broker->data_dir() / "foreign", "kinds-foreign");
    mqtt::ssl_options foreign_certificate = ssl_options(foreign);
    foreign_certificate.set_trust_store(client_identity("kinds-no-cert").ca.string());
    CHECK(refused(foreign_certificate));
    CHECK_FALSE(refused(ssl_options("kinds-no-cert")));  // the control: the PKI's own
  }
}
