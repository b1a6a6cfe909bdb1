// One publish from a test, as nova-cloud would send it: a control message on a
// nova/v1/down/... topic is signed with the key test agents trust (signer.h); anything else
// goes as it is. Connects for an mqtts:// uri with `identity` when given (a broker of a
// test's own CA), else the test PKI's identity (paho_tls.h); waits for the PUBACK,
// disconnects.
#pragma once

#include <mqtt/async_client.h>

#include <optional>
#include <string>

#include "nova/testing/paho_tls.h"
#include "nova/testing/signer.h"

namespace nova::testing {

inline void publish_as_cloud(const std::string& uri, const std::string& topic, const std::string& payload,
                             bool retained = false, const std::optional<TlsIdentity>& identity = std::nullopt) {
  mqtt::async_client c(uri, "test-publisher", mqtt::create_options(MQTTVERSION_3_1_1));
  mqtt::connect_options opts = connect_options(uri, "test-publisher");
  if (identity && uri.starts_with("mqtts://")) opts.set_ssl(ssl_options(*identity));
  c.connect(opts)->wait();
  const std::string sent = topic.starts_with("nova/v1/down/") ? test_signer().sign(topic, payload) : payload;
  c.publish(topic, sent.data(), sent.size(), 1, retained)->wait();
  c.disconnect()->wait();
}

}  // namespace nova::testing
