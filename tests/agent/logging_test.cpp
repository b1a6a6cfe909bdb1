// log.level and log.format of the real nova-agent: lines below the level are not
// written, json writes one JSON object per line, and both change on a config reload.
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nova/testing/agent_process.h"
#include "nova/testing/broker.h"
#include "nova/testing/signer.h"
#include "nova/testing/paho_tls.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kSite = "cloud/eu/par/par-a1";

void write_config(const fs::path& file, const std::string& uri, const fs::path& dir, const std::string& log) {
  testing::write_agent_config(file, "gw-log", kSite, 4, uri, dir, "log: " + log + "\n");
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("nova-agent logs at its log.level in its log.format, and reloads both", "[agent][process][log]") {
  testing::Broker broker(testing::mutual_tls());
  // A retained malformed (signed) config: the agent answers it with a warning as soon as it has
  // subscribed, which shows that it runs without any info line.
  {
    mqtt::async_client c(broker.uri(), "test-publisher", mqtt::create_options(MQTTVERSION_3_1_1));
    c.connect(testing::connect_options(broker, "test-publisher"))->wait();
    const std::string topic = std::string("nova/v1/down/") + kSite + "/gw-log/config";
    const std::string signed_config = testing::test_signer().sign(topic, "not cbor");  // signed, so it is decoded
    c.publish(topic, signed_config.data(), signed_config.size(), 1, true)->wait();
    c.disconnect()->wait();
  }
  const fs::path dir = broker.data_dir() / "agent";
  fs::create_directories(dir);
  const fs::path config = dir / "agent.yaml";
  write_config(config, broker.uri(), dir, "{level: warning, format: json}");
  testing::AgentProcess agent(NOVA_AGENT_BIN, config, dir / "agent.log");
  REQUIRE(agent.wait_log(R"("event":"bad_message")", 20s));

  const std::vector<std::string> json_lines = lines(agent.text());
  REQUIRE(!json_lines.empty());
  for (const std::string& line : json_lines) {
    INFO(line);
    const nlohmann::json j = nlohmann::json::parse(line);  // throws (fails) if not JSON
    REQUIRE(j.is_object());
    CHECK(j.at("ts").is_string());
    CHECK(j.at("level") != "info");
    CHECK(j.at("level") != "debug");
    CHECK(j.at("event").is_string());
  }
  const nlohmann::json bad = nlohmann::json::parse(json_lines.back());
  CHECK(bad.at("event") == "bad_message");
  CHECK(bad.at("topic") == std::string("nova/v1/down/") + kSite + "/gw-log/config");

  // Hot: back to info and logfmt without a restart; the change is logged in the new form.
  write_config(config, broker.uri(), dir, "{level: info, format: logfmt}");
  REQUIRE(agent.wait_log("level=info event=config_applied", 10s));
  const int status = agent.signal(SIGTERM);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_THAT(agent.text(), Catch::Contains("level=info event=stopped"));
}
