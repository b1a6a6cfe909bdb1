// The ACL nova-bridge renders, as the nova_acl plugin enforces it in one real Mosquitto
// 2.0.11 broker: the rendered config of the example's root site ('cloud'), on a free port.
//
// A denied publish is never delivered, and Mosquitto 2.0.11 then closes the publisher's
// connection (after the PUBACK, for QoS 1); the plugin logs the denial at warning
// (tls_acl_test.cpp checks the lines and counters).
// Absence is proven with a marker: once the broker has closed the denied publisher, a
// marker published afterwards reaches the subscriber only after anything the denied
// message could have produced (one broker thread, one queue per subscriber).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mqtt/async_client.h>
#include <string>
#include <utility>
#include <vector>

#include "nova/bridge/broker_process.h"
#include "nova/bridge/link.h"
#include "nova/bridge/net.h"
#include "nova/bridge/render.h"
#include "nova/tiers/topology.h"
#include "test_client.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nova::bridge::kCloudServiceUser;
using nova::bridge::kMonitorUser;
using nova::bridge::testing::Received;
using nova::bridge::testing::TestClient;

// The example's root site on a free port, with its rendered config and ACL.
class RootBroker {
 public:
  RootBroker() {
    auto example = nova::tiers::Topology::load(NOVA_FIVE_TIER_YAML);
    REQUIRE(example.ok());
    auto spec = example->spec();
    const auto port = nova::bridge::free_loopback_port();
    REQUIRE(port.ok());
    port_ = *port;
    spec.sites.front().listener.port = port_;
    auto topology = nova::tiers::Topology::build(spec);
    REQUIRE(topology.ok());
    dir_ = fs::temp_directory_path() / ("nova-acl-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    nova::bridge::RenderOptions options;
    if (::geteuid() == 0) options.user = "root";
    // Plaintext on purpose: these cases pin the plaintext ACL that --insecure-plaintext
    // still renders (and must keep denying what it denies); tls_acl_test.cpp pins the
    // TLS one, which every hierarchy test runs with.
    options.insecure_plaintext = true;
    REQUIRE(nova::bridge::write_site(*topology, topology->site("cloud"), dir_, options).ok());
    nova::bridge::BrokerLaunch launch;
    launch.config = dir_ / "mosquitto.conf";
    launch.log = dir_ / "mosquitto.log";
    launch.stdio = dir_ / "mosquitto.stdio";
    launch.port = port_;
    const auto started = process_.start(launch);
    INFO(started.message);
    REQUIRE(started.ok());
  }
  ~RootBroker() {
    process_.stop(10s);
    fs::remove_all(dir_);
  }
  std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

 private:
  fs::path dir_;
  std::uint16_t port_ = 0;
  nova::bridge::BrokerProcess process_;
};

// Publishes once on a fresh connection and reports whether the broker then closed it:
// what Mosquitto 2.0.11 does to a publish its ACL denies.
bool denied(const std::string& uri, const std::string& id, const std::string& user, const std::string& topic) {
  TestClient client(uri, id, user);
  client.paho().publish(mqtt::make_message(topic, "denied?", 1, false));
  return client.wait_connection_lost();
}

bool none_denied(const Received& got) {
  return std::none_of(got.begin(), got.end(), [](const auto& m) { return m.second == "denied?"; });
}

}  // namespace

TEST_CASE("a node may publish upward under its own client id only", "[acl]") {
  RootBroker broker;
  TestClient cloud(broker.uri(), "acl-cloud", kCloudServiceUser);
  REQUIRE(cloud.subscribe("nova/v1/#"));
  // Anonymous, client id = node id.
  CHECK(denied(broker.uri(), "dev-1", "", "nova/v1/up/dev-2/state"));  // another node's
  CHECK(denied(broker.uri(), "dev-1", "", "nova/v1/down/cloud/x/dev-1/task"));
  CHECK(denied(broker.uri(), "dev-1", "", "nova/v1/cloud/workload/w1"));
  CHECK(denied(broker.uri(), "dev-1", "", "elsewhere/x"));
  TestClient node(broker.uri(), "dev-1");
  node.publish("nova/v1/up/dev-1/state", "own");
  node.publish("nova/v1/up/dev-1/sensor/t1", "own too");
  CHECK(node.paho().is_connected());
  const Received got = cloud.until("nova/v1/up/dev-1/sensor/t1");
  CHECK(got == Received{{"nova/v1/up/dev-1/state", "own"}, {"nova/v1/up/dev-1/sensor/t1", "own too"}});
}

TEST_CASE("anonymous clients read down and sensor topics but not up", "[acl]") {
  RootBroker broker;
  TestClient node(broker.uri(), "dev-1");
  // Mosquitto's acl_file granted these and delivered nothing; the nova_acl plugin refuses
  // them (SUBACK 0x80), and the client stays connected.
  CHECK_FALSE(node.subscribe("nova/v1/up/#"));
  CHECK_FALSE(node.subscribe("nova/v1/cloud/#"));
  REQUIRE(node.subscribe("nova/v1/down/#"));
  REQUIRE(node.subscribe("nova/v1/sensor/#"));
  TestClient cloud(broker.uri(), "acl-cloud", kCloudServiceUser);
  cloud.publish("nova/v1/up/agent-x/state", "hidden from nodes");
  cloud.publish("nova/v1/cloud/workload/w1", "hidden from nodes");
  cloud.publish("nova/v1/down/cloud/eu/dev-1/task", "for the node");
  Received got = node.until("nova/v1/down/cloud/eu/dev-1/task");
  CHECK(got == Received{{"nova/v1/down/cloud/eu/dev-1/task", "for the node"}});

  TestClient sensor(broker.uri(), "thermo-7");
  sensor.publish("nova/v1/sensor/dev-1/thermo-7", R"({"v":1,"ts":1,"values":{"t":1}})");
  got = node.until("nova/v1/sensor/dev-1/thermo-7");
  CHECK(got.size() == 1);
  CHECK(node.paho().is_connected());
}

TEST_CASE("a child's bridge user writes up and reads only its own subtree", "[acl]") {
  RootBroker broker;
  TestClient bridge(broker.uri(), "bridge.eu", "bridge.eu");
  REQUIRE(bridge.subscribe("nova/v1/down/cloud/eu/#"));
  CHECK_FALSE(bridge.subscribe("nova/v1/down/cloud/us/#"));  // another subtree: refused
  TestClient cloud(broker.uri(), "acl-cloud", kCloudServiceUser);
  REQUIRE(cloud.subscribe("nova/v1/up/#"));
  REQUIRE(cloud.subscribe("nova/v1/down/#"));

  cloud.publish("nova/v1/down/cloud/us/nyc/agent-nyc/task", "other branch");
  cloud.publish("nova/v1/down/cloud/eu/par/agent-par/task", "this branch");
  Received got = bridge.until("nova/v1/down/cloud/eu/par/agent-par/task");
  CHECK(got == Received{{"nova/v1/down/cloud/eu/par/agent-par/task", "this branch"}});

  // It forwards anybody's upward traffic, but cannot inject downward.
  CHECK(denied(broker.uri(), "bridge.eu-2", "bridge.eu", "nova/v1/down/cloud/eu/par/agent-par/task"));
  TestClient forwarder(broker.uri(), "bridge.eu-3", "bridge.eu");
  forwarder.publish("nova/v1/up/agent-par/state", "forwarded");
  got = cloud.until("nova/v1/up/agent-par/state");
  CHECK(got.back() == std::pair<std::string, std::string>{"nova/v1/up/agent-par/state", "forwarded"});
  CHECK(none_denied(got));  // the cloud also hears its own two down publishes
}

TEST_CASE("an unknown username gets the pattern grants only", "[acl]") {
  RootBroker broker;
  TestClient cloud(broker.uri(), "acl-cloud", kCloudServiceUser);
  REQUIRE(cloud.subscribe("nova/v1/#"));
  // Users never get the anonymous section's grants.
  CHECK(denied(broker.uri(), "dev-9", "someone", "nova/v1/sensor/dev-9/s"));
  TestClient stranger(broker.uri(), "dev-9", "someone");
  stranger.publish("nova/v1/up/dev-9/state", "allowed by the pattern");
  const Received got = cloud.until("nova/v1/up/dev-9/state");
  CHECK(got == Received{{"nova/v1/up/dev-9/state", "allowed by the pattern"}});
}

TEST_CASE("the monitor reads link records only", "[acl]") {
  RootBroker broker;
  {
    TestClient cloud(broker.uri(), "acl-cloud", kCloudServiceUser);
    cloud.publish("nova/v1/up/eu/link", "1", /*retained=*/true);
    cloud.publish("nova/v1/up/agent-eu/state", "birth", /*retained=*/true);
  }
  TestClient monitor(broker.uri(), "acl-monitor", kMonitorUser);
  REQUIRE(monitor.subscribe("nova/v1/up/#"));
  REQUIRE(monitor.subscribe("nova-bridge/probe/acl-monitor"));
  monitor.publish("nova-bridge/probe/acl-monitor", "probe");
  const Received got = monitor.until("nova-bridge/probe/acl-monitor");
  CHECK(got == Received{{"nova/v1/up/eu/link", "1"}, {"nova-bridge/probe/acl-monitor", "probe"}});
  CHECK(denied(broker.uri(), "acl-monitor-2", kMonitorUser, "nova/v1/up/eu/link"));

  CHECK(nova::bridge::read_link_state(broker.uri(), "eu", 5s) == nova::bridge::LinkState::connected);
  CHECK(nova::bridge::read_link_state(broker.uri(), "us", 5s) == nova::bridge::LinkState::unknown);
}

TEST_CASE("every broker accepts the codec's largest payload and refuses larger packets", "[acl]") {
  RootBroker broker;
  TestClient cloud(broker.uri(), "acl-cloud", kCloudServiceUser);
  REQUIRE(cloud.subscribe("nova/v1/up/#"));
  TestClient node(broker.uri(), "dev-1");
  node.publish("nova/v1/up/dev-1/metrics", std::string(nova::bridge::kMaxPayloadBytes, 'x'));
  const Received got = cloud.until("nova/v1/up/dev-1/metrics");
  CHECK(got.back().second.size() == nova::bridge::kMaxPayloadBytes);

  // Over max_packet_size: Mosquitto disconnects the client.
  TestClient big(broker.uri(), "dev-2");
  const std::string too_big(nova::bridge::kMaxPayloadBytes + nova::bridge::kPacketOverheadBytes + 1, 'x');
  big.paho().publish(mqtt::make_message("nova/v1/up/dev-2/metrics", too_big, 1, false));
  CHECK(big.wait_connection_lost());
}

TEST_CASE("a broker whose ACL file the plugin cannot read does not start, and says which line", "[acl]") {
  const fs::path dir = fs::temp_directory_path() / ("nova-acl-bad-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "acl") << "user a\ntopic reed a/#\n";
  const auto port = nova::bridge::free_loopback_port();
  REQUIRE(port.ok());
  std::ofstream(dir / "mosquitto.conf") << "listener " << *port << " 127.0.0.1\n"
                                        << (::geteuid() == 0 ? "user root\n" : "")
                                        << "plugin " << nova::bridge::find_acl_plugin().string() << "\n"
                                        << "plugin_opt_acl_file " << (dir / "acl").string() << "\n"
                                        << "log_dest stderr\nlog_type error\n";
  // `timeout`: a broker that started anyway would otherwise keep the test waiting.
  const std::string command = "timeout 10 mosquitto -c '" + (dir / "mosquitto.conf").string() + "' 2>&1";
  FILE* broker = ::popen(command.c_str(), "r");
  REQUIRE(broker != nullptr);
  std::string output;
  char buffer[512];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, broker)) > 0;) output.append(buffer, n);
  const int status = ::pclose(broker);
  INFO(output);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) != 0);
  CHECK(WEXITSTATUS(status) != 124);  // not stopped by timeout: it refused to start
  CHECK(output.find("nova-acl: plugin_opt_acl_file: " + (dir / "acl").string() +
                    " line 2: unknown access 'reed' (read, write, readwrite or deny)") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("without plugin_opt_log_file the ACL plugin says TLS refusal counting is off, and the broker serves",
          "[acl][tls_refusals]") {
  const fs::path dir = fs::temp_directory_path() / ("nova-acl-nolog-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "acl") << "topic readwrite a/#\n";
  const auto port = nova::bridge::free_loopback_port();
  REQUIRE(port.ok());
  std::ofstream(dir / "mosquitto.conf") << "listener " << *port << " 127.0.0.1\nallow_anonymous true\n"
                                        << (::geteuid() == 0 ? "user root\n" : "")
                                        << "plugin " << nova::bridge::find_acl_plugin().string() << "\n"
                                        << "plugin_opt_acl_file " << (dir / "acl").string() << "\n"
                                        << "log_dest file " << (dir / "mosquitto.log").string() << "\nlog_type all\n";
  nova::bridge::BrokerProcess broker;
  nova::bridge::BrokerLaunch launch;
  launch.config = dir / "mosquitto.conf";
  launch.log = dir / "mosquitto.log";
  launch.stdio = dir / "mosquitto.stdio";
  launch.port = *port;
  const auto started = broker.start(launch);
  INFO(started.message);
  REQUIRE(started.ok());
  {
    // It serves: a publish comes back to its subscriber.
    const std::string uri = "tcp://127.0.0.1:" + std::to_string(*port);
    TestClient client(uri, "nolog-client");
    REQUIRE(client.subscribe("a/b"));
    client.publish("a/b", "served");
    CHECK(client.until("a/b").back().second == "served");
  }
  const std::string log = nova::bridge::read_text_file(dir / "mosquitto.log");
  INFO(log);
  CHECK(log.find("nova-acl: TLS refusal counting is off: no plugin_opt_log_file") != std::string::npos);
  broker.stop(10s);
  fs::remove_all(dir);
}
