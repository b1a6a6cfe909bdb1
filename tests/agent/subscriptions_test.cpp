// Readiness: a subscription the broker refuses is noticed, retried, and keeps the
// node's birth from claiming it is fully ready until the broker grants it.
//
// Mosquitto 2.0.11 grants an acl_file-denied subscription (SUBACK 1) and drops its
// messages silently; its dynamic security plugin refuses it with SUBACK 0x80 (checked
// with mosquitto_sub -d). This test uses the plugin on a mutual-TLS broker: every client
// is the CN of its certificate (use_identity_as_username, so the plugin never checks a
// password), and the plugin knows the test's CNs as clients with one role, which may
// subscribe below nova/v1/down/ and nova/v1/up/ only. The agent's sensor filter is
// refused until the test adds an ACL to that role through the plugin's $CONTROL topic.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <mqtt/async_client.h>
#include <thread>

#include "nova/agent/agent.h"
#include "nova/schemas/codec.h"
#include "nova/testing/broker.h"
#include "nova/testing/paho_tls.h"
#include "nova/testing/test_pki.h"
#include "nova/testing/signer.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// The certificate CNs of the test's clients: the agent, the birth watchers, the admin.
constexpr const char* kAgentCn = "gw-1";
constexpr const char* kWatcherCn = "test-birth-watcher";
constexpr const char* kAdminCn = "test-acl-admin";

// The plugin's clients are the CNs above. Clients without a password: a TLS listener with use_identity_as_username authenticates
// them by certificate and only asks the plugin for its ACLs.
constexpr const char* kDynsecConfig = R"({
  "defaultACLAccess": {"publishClientSend": true, "publishClientReceive": true, "subscribe": false, "unsubscribe": true},
  "roles": [{"rolename": "site", "acls": [
    {"acltype": "subscribePattern", "topic": "nova/v1/down/#", "allow": true},
    {"acltype": "subscribePattern", "topic": "nova/v1/up/#", "allow": true},
    {"acltype": "publishClientSend", "topic": "$CONTROL/dynamic-security/#", "allow": true}]}],
  "clients": [
    {"username": "gw-1", "roles": [{"rolename": "site"}]},
    {"username": "test-birth-watcher", "roles": [{"rolename": "site"}]},
    {"username": "test-acl-admin", "roles": [{"rolename": "site"}]}]
})";

// The latest "online" birth seen on the node's state topic.
class BirthWatcher {
 public:
  BirthWatcher(const std::string& uri, const std::string& node)
      : client_(uri, kWatcherCn, mqtt::create_options(MQTTVERSION_3_1_1)) {
    client_.start_consuming();
    client_.connect(testing::connect_options(uri, kWatcherCn))->wait();
    client_.subscribe("nova/v1/up/" + node + "/state", 1)->wait();
  }
  ~BirthWatcher() {
    try {
      client_.disconnect()->wait_for(2s);
    } catch (const mqtt::exception&) {
    }
  }
  // Waits for a birth for which `want` holds.
  std::optional<schemas::NodeState> wait_birth(const std::function<bool(const schemas::NodeState&)>& want,
                                              std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      mqtt::const_message_ptr msg;
      if (!client_.try_consume_message_until(&msg, deadline) || !msg) continue;
      auto s = schemas::decode_cbor<schemas::NodeState>(msg->get_payload_str());
      if (s && s->status == schemas::NodeStatus::online && want(*s)) return *s;
    }
    return std::nullopt;
  }

 private:
  mqtt::async_client client_;
};

}  // namespace

TEST_CASE("a refused subscription is logged, counted, retried and keeps the birth not ready",
          "[agent][subscriptions]") {
  const fs::path dynsec = fs::temp_directory_path() / ("nova-dynsec-" + std::to_string(::getpid()) + ".json");
  std::ofstream(dynsec) << kDynsecConfig;
  struct RemoveAtExit {  // also when a REQUIRE fails
    fs::path file;
    ~RemoveAtExit() { fs::remove(file); }
  } remove_dynsec{dynsec};
  testing::BrokerOptions bo = testing::mutual_tls();
  bo.extra_config = "plugin " NOVA_MOSQUITTO_DYNSEC "\nplugin_opt_config_file " + dynsec.string() + "\n";
  testing::Broker broker(bo);
  BirthWatcher births(broker.uri(), kAgentCn);

  agent::AgentOptions o;
  o.birth.node = kAgentCn;
  o.birth.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
  o.broker_uri = broker.uri();
  o.tls = testing::tls_files_for(broker.uri(), kAgentCn);
  o.reconnect_min = 100ms;
  o.reconnect_max = 400ms;
  o.outbox.dir = broker.data_dir() / "agent" / "outbox";
  o.state_dir = broker.data_dir() / "agent" / "state";
  o.control.keys = {testing::test_signer().verify_key()};  // the acking consumer's key
  std::vector<std::string> log;
  std::mutex log_mutex;
  o.log = [&](const char* level, const std::string& event, const std::string& fields) {
    std::lock_guard lock(log_mutex);
    log.push_back(std::string(level) + " " + event + " " + fields);
  };
  auto created = agent::Agent::create(o, nullptr);
  REQUIRE(created.ok());
  agent::Agent& a = *created.value();
  std::thread loop([&] { a.run(); });
  struct StopAtExit {  // a failed REQUIRE must not leave the loop thread joinable
    agent::Agent& a;
    std::thread& t;
    ~StopAtExit() {
      a.stop();
      t.join();
    }
  } stop_at_exit{a, loop};

  const std::string sensor_filter = "nova/v1/sensor/gw-1/+";
  // The birth says which filter is missing; the refusal is counted and logged.
  auto not_ready = births.wait_birth([](const schemas::NodeState& s) { return !s.refused.empty(); }, 20s);
  REQUIRE(not_ready);
  CHECK(not_ready->refused == std::vector<std::string>{sensor_filter});
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.subscriptions_missing == 1; }, 10s));
  // ... and retried, with back-off, within the same connection.
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.subscriptions_refused >= 3; }, 20s));
  CHECK(a.counters().connects == 1);
  {
    std::lock_guard lock(log_mutex);
    CHECK(std::count(log.begin(), log.end(),
                     "warning subscription_refused filter=" + sensor_filter + " granted=0x80") >= 3);
  }

  // The broker's ACL is fixed. The plugin then disconnects the clients of the role it
  // changed (the agent and the watcher too): the agent's next SUBACK grants everything.
  {
    mqtt::async_client admin(broker.uri(), kAdminCn, mqtt::create_options(MQTTVERSION_3_1_1));
    admin.connect(testing::connect_options(broker, kAdminCn))->wait();
    const std::string command =
        R"({"commands":[{"command":"addRoleACL","rolename":"site","acltype":"subscribePattern",)"
        R"("topic":"nova/v1/sensor/#","allow":true}]})";
    try {
      admin.publish("$CONTROL/dynamic-security/v1", command.data(), command.size(), 1, false)->wait();
    } catch (const mqtt::exception&) {  // disconnected by the plugin before its PUBACK
    }
  }
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.subscriptions_missing == 0; }, 20s));
  BirthWatcher after(broker.uri(), kAgentCn);  // the retained birth, and any later one
  auto ready = after.wait_birth([](const schemas::NodeState& s) { return s.refused.empty(); }, 20s);
  REQUIRE(ready);
}
