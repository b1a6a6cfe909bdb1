// What a task may run, against a real nova-agent and a real broker (issue 10, item 6):
// the task policy is local (a retained remote config cannot widen it), refusals reach
// the cloud as results and the log as task id + rule, and a task's argv and env values
// never appear in the agent's log, whether the task runs or is refused.
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <mqtt/async_client.h>

#include "nova/schemas/codec.h"
#include "nova/testing/publish.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/broker.h"
#include "nova/testing/paho_tls.h"
#include "nova/testing/signer.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kSite = "cloud/eu/par/par-a1";
constexpr const char* kNode = "gw-sec";

void publish(const std::string& uri, const std::string& topic, const std::string& payload, bool retained = false) {
  testing::publish_as_cloud(uri, topic, payload, retained);
}

std::string cbor(const auto& message) {
  const schemas::Bytes b = schemas::encode_cbor(message);
  return std::string(b.begin(), b.end());
}

// The agent publishes its retained birth once the broker granted its subscriptions:
// from then on a task published to it is delivered ("connected" comes earlier).
bool wait_for_birth(const std::string& uri, std::chrono::seconds timeout) {
  mqtt::async_client c(uri, "test-birth-watch", mqtt::create_options(MQTTVERSION_3_1_1));
  c.start_consuming();
  c.connect(testing::connect_options(uri, "test-birth-watch"))->wait();
  c.subscribe(std::string("nova/v1/up/") + kNode + "/state", 1)->wait();
  mqtt::const_message_ptr msg;
  const bool got = c.try_consume_message_for(&msg, timeout) && msg;
  c.disconnect()->wait();
  return got;
}

std::string down_topic(const char* kind) { return std::string("nova/v1/down/") + kSite + "/" + kNode + "/" + kind; }

schemas::Task task(const std::string& id, std::vector<std::string> argv, std::map<std::string, std::string> env = {}) {
  schemas::Task t;
  t.task_id = id;
  t.argv = std::move(argv);
  t.env = std::move(env);
  t.timeout_ms = 10000;
  t.issued_ts = 1;
  return t;
}

}  // namespace

TEST_CASE("a real agent keeps its task policy local and never logs a task's argv or env", "[agent][process][tasks]") {
  testing::Broker broker(testing::mutual_tls());
  testing::AckConsumer consumer(broker.uri());
  const fs::path dir = broker.data_dir() / "agent";
  fs::create_directories(dir);
  const fs::path config = dir / "agent.yaml";
  // Debug level: whatever the agent logs about a task, this sees it.
  testing::write_agent_config(config, kNode, kSite, 4, broker.uri(), dir, "log: {level: debug}\n");
  testing::AgentProcess agent(NOVA_AGENT_BIN, config, dir / "agent.log");
  REQUIRE(agent.wait_log("event=connected", 20s));
  REQUIRE(wait_for_birth(broker.uri(), 20s));

  const std::string secrets[] = {"xyz-argv-secret-123", "xyz-env-secret-456", "xyz-preload-secret-789",
                                 "xyz-env2-secret-246"};
  // Runs (the program is allowed): a secret in its argv and in its env.
  publish(broker.uri(), down_topic("task"),
          cbor(task("t-secret", {"/bin/sh", "-c", "test -n \"$SECRET_TOKEN\"", secrets[0]},
                    {{"SECRET_TOKEN", secrets[1]}})));
  REQUIRE(consumer.wait_for(kNode, "results", 1, 30s));
  // Refused: a loader variable, beside another secret.
  publish(broker.uri(), down_topic("task"),
          cbor(task("t-preload", {"/bin/sh", "-c", "true"}, {{"LD_PRELOAD", secrets[2]}, {"TOKEN", secrets[3]}})));
  REQUIRE(agent.wait_log("event=task_refused task_id=t-preload rule=env_forbidden", 20s));
  REQUIRE(consumer.wait_for(kNode, "results", 2, 30s));

  // A retained remote config that would allow /usr/bin/id is refused, naming the key...
  schemas::Config widen;
  widen.revision = 7;
  widen.ts = 1;
  widen.values = {{"tasks.allow", std::string("/bin/sh,/usr/bin/id")}, {"tasks.user", std::string("root")}};
  publish(broker.uri(), down_topic("config"), cbor(widen), true);
  REQUIRE(agent.wait_log("event=remote_config_refused", 20s));
  CHECK_THAT(agent.text(), Catch::Contains("only the agent's file sets what tasks may run"));
  // ...and /usr/bin/id stays refused, its result going up like any other.
  publish(broker.uri(), down_topic("task"), cbor(task("t-id", {"/usr/bin/id", "-u"})));
  REQUIRE(agent.wait_log("event=task_refused task_id=t-id rule=program_not_allowed", 20s));
  REQUIRE(consumer.wait_for(kNode, "results", 3, 30s));

  const int status = agent.signal(SIGTERM);
  CHECK(WIFEXITED(status));
  const std::string log = agent.text();
  for (const std::string& secret : secrets) {
    INFO(secret);
    CHECK(log.find(secret) == std::string::npos);
  }
  CHECK(log.find("xyz-") == std::string::npos);
  CHECK(consumer.undecodable() == 0);
}
