// Acceptance (issue 3), "Upward": a node's retained birth published at its access broker
// arrives at the cloud broker retained and byte-identical, and when the node's process
// is SIGKILLed its last will arrives there too.

#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <string>

#include "nova/bridge/render.h"
#include "nova/schemas/codec.h"
#include "nova/schemas/messages.h"
#include "test_common.h"

namespace {

using namespace nova::hiertest;
using nova::schemas::NodeDescription;
using nova::schemas::NodeState;
using nova::schemas::NodeStatus;

bool has_payload(const std::vector<Received>& messages, const std::string& payload) {
  for (const auto& message : messages) {
    if (message.payload == payload) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("a retained birth at an access broker reaches the cloud retained and "
          "byte-identical, and the node's last will follows it",
          "[hierarchy][upward]") {
  auto running = start_example("upward", {"upward-live", "upward-after-birth", "upward-after-death"});
  auto& hierarchy = **running;
  const auto& topology = hierarchy.topology();

  const std::string node = "dev-par-a1-1";
  const auto* spec = topology.find_node(node);
  REQUIRE(spec != nullptr);
  const auto& site = topology.site(spec->site);
  REQUIRE(site.level() == 4);                      // an access site ...
  REQUIRE(topology.ancestors(site).size() == 3);   // ... three bridges below the cloud

  const NodeState birth{node, NodeStatus::online, 3, 1732650000000,
                        NodeDescription{5, site.path.str(), spec->arch, "0.1.0", {},
                                        {500, 256, 1024}, std::nullopt}, {}, {}, {}};
  const NodeState will{node, NodeStatus::dead, 3, 1732650000000, std::nullopt, {}, {}, {}};
  const std::string birth_bytes = as_string(nova::schemas::encode_cbor(birth));
  const std::string will_bytes = as_string(nova::schemas::encode_cbor(will));
  const std::string topic = up_topic(node, "state");

  // Cloud-side consumers, connected together before anything happens (see
  // mqtt_support.h on why connecting late costs ~2 s). "live" watches the topic from
  // the start; the other two subscribe only after the record is at the cloud, so what
  // they get comes from the cloud broker's retained store, exactly as for a consumer
  // that connects afterwards (MQTT sends retained messages per new subscription).
  // Each is an operator of its own (read-only upward; one identity per connection).
  const std::string cloud = topology.root().id();
  Client live(endpoint(*running, cloud, operator_identity("upward-live")));
  Client after_birth(endpoint(*running, cloud, operator_identity("upward-after-birth")));
  Client after_death(endpoint(*running, cloud, operator_identity("upward-after-death")));
  connect_all({&live, &after_birth, &after_death});
  live.subscribe(topic);

  // The node: a separate process, so that SIGKILL leaves its broker to fire the will.
  // It presents its own node certificate at its access broker.
  ChildProcess node_process(will_publisher_argv(*running, site.id(), node, topic, will_bytes, birth_bytes));
  REQUIRE(node_process.wait_for_line("ready", std::chrono::seconds(20)));  // birth PUBACKed

  REQUIRE(live.wait_until([&](const auto& m) { return has_payload(m, birth_bytes); },
                          std::chrono::seconds(10)));

  after_birth.subscribe(topic);
  REQUIRE(after_birth.wait_count(1, std::chrono::seconds(10)));
  {
    const auto retained = after_birth.messages().front();
    CHECK(retained.topic == topic);
    CHECK(retained.retained);
    CHECK(retained.qos == 1);
    CHECK(retained.payload == birth_bytes);  // byte-identical after three bridges
    const auto decoded = nova::schemas::decode_cbor<NodeState>(retained.payload);
    REQUIRE(decoded.ok());
    CHECK(*decoded == birth);
  }

  // SIGKILL: no DISCONNECT is sent, the kernel closes the socket, the access broker
  // publishes the will (retained, QoS 1) and the bridges carry it up.
  const int status = node_process.kill_and_reap();
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(WTERMSIG(status) == SIGKILL);

  REQUIRE(live.wait_until([&](const auto& m) { return has_payload(m, will_bytes); },
                          std::chrono::seconds(10)));

  after_death.subscribe(topic);
  REQUIRE(after_death.wait_count(1, std::chrono::seconds(10)));
  const auto retained = after_death.messages().front();
  CHECK(retained.retained);
  CHECK(retained.payload == will_bytes);  // the will replaced the birth at the cloud
  const auto decoded = nova::schemas::decode_cbor<NodeState>(retained.payload);
  REQUIRE(decoded.ok());
  CHECK(decoded->status == NodeStatus::dead);
  CHECK(decoded->bdseq == birth.bdseq);

  // Exactly one birth and one will went past the live consumer: nothing looped back.
  const auto seen = live.messages();
  CHECK(seen.size() == 2);
}
