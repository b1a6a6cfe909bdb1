// One publish from a test, as nova-cloud would send it: a control message on a
// nova/v1/down/... topic is signed with the key test agents trust (signer.h); anything else
// goes as it is. Connects with the test PKI's identity for an mqtts:// uri (paho_tls.h),
// waits for the PUBACK, disconnects.
#pragma once

#include <mqtt/async_client.h>

#include <string>

#include "nova/testing/paho_tls.h"
#include "nova/testing/signer.h"

namespace nova::testing {

inline void publish_as_cloud(const std::string& uri, const std::string& topic, const std::string& payload,
                             bool retained = false) {
  mqtt::async_client c(uri, "test-publisher", mqtt::create_options(MQTTVERSION_3_1_1));
  c.connect(connect_options(uri, "test-publisher"))->wait();
  const std::string sent = topic.starts_with("nova/v1/down/") ? test_signer().sign(topic, payload) : payload;
  c.publish(topic, sent.data(), sent.size(), 1, retained)->wait();
  c.disconnect()->wait();
}

}  // namespace nova::testing
