// Paho C++ options for a test client of a nova::testing::Broker: with the broker's TLS
// mode, the client presents the certificate of `cn` (test_pki.h) and verifies the
// broker; without it, plain MQTT. Header-only, so the harness itself needs no Paho.
//
// Example:
//   mqtt::async_client client(broker.uri(), "t1", mqtt::create_options(MQTTVERSION_3_1_1));
//   auto opts = nova::testing::connect_options(broker, "t1");
//   opts.set_clean_session(true);
//   client.connect(opts)->wait();
#pragma once

#include <mqtt/connect_options.h>
#include <mqtt/ssl_options.h>

#include <string>

#include "nova/testing/broker.h"
#include "nova/testing/test_pki.h"

namespace nova::testing {

// Presents `id` and verifies the broker against id.ca (any CA: a test's own, too).
inline mqtt::ssl_options ssl_options(const TlsIdentity& id) {
  mqtt::ssl_options ssl;
  ssl.set_trust_store(id.ca.string());
  ssl.set_key_store(id.cert.string());
  ssl.set_private_key(id.key.string());
  ssl.set_enable_server_cert_auth(true);
  ssl.set_verify(true);
  return ssl;
}

inline mqtt::ssl_options ssl_options(const std::string& cn) { return ssl_options(client_identity(cn)); }

// MQTT 3.1.1 connect options (clean session) for `cn`; TLS when `uri` is mqtts://
// (a Broker's uri() with tls).
inline mqtt::connect_options connect_options(const std::string& uri, const std::string& cn) {
  mqtt::connect_options opts;
  opts.set_mqtt_version(MQTTVERSION_3_1_1);
  opts.set_clean_session(true);
  if (uri.starts_with("mqtts://")) opts.set_ssl(ssl_options(cn));
  return opts;
}

inline mqtt::connect_options connect_options(const Broker& broker, const std::string& cn) {
  return connect_options(broker.uri(), cn);
}

}  // namespace nova::testing
