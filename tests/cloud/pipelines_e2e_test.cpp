// Issue 14's pipelines end to end over the real hierarchy (mutual TLS): nova-cloud and a
// nova-agent process, an access broker bridged through a metro broker to the cloud
// broker, a sensor and an
// actuator with their own certificates. JSON and CBOR readings from mosquitto_pub flow
// filter -> window -> anomaly -> rule -> action: the actuator sees the action on its
// local topic with mosquitto_sub, and the decision record reaches nova-cloud
// (GET /api/v1/decisions). Then the uplink is cut (the metro broker between the access
// site and the cloud stops): the rule keeps acting on the local topic, and after the
// reconnect every decision record is at nova-cloud exactly once, counted by id. Last, a
// changed pipelines key in the agent's file takes effect on SIGHUP.
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "cloud_process.h"
#include "gateway_agent.h"
#include "hierarchy_support.h"
#include "nova/schemas/codec.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/poll.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The gateway gw-a1 at access site a1, below a metro site m1 whose broker is the cut.
tiers::Topology topology_with_metro() {
  auto topology = tiers::Topology::parse_yaml(R"(name: pipelines
sites:
  - {id: cloud, level: 1, port: 18830}
  - {id: m1, level: 2, parent: cloud, port: 18831}
  - {id: a1, level: 3, parent: m1, port: 18832}
nodes:
  - {id: gw-a1, site: a1}
)");
  REQUIRE(topology.ok());
  return std::move(topology).value();
}

constexpr schemas::Timestamp kT0 = 1'700'000'000'000;  // the readings' event time: window i is [kT0 + i s, ...)

// A boiler pipeline: a range filter, 1 s tumbling windows, a z-score over the window
// means, and a rule that turns the fan on while the mean is anomalous and high.
const char* const kPipelines = R"(pipelines:
  - name: boiler
    input: {sensor: boiler, value: temp}
    filters:
      - range: {min: -40, max: 1000000}
    window: {kind: tumbling, size_ms: 1000}
    anomaly: {kind: zscore, threshold: 3, min_samples: 5, window: 100}
    rules:
      - name: overheat
        when: ["score >= 3", "mean > 100"]
        action: {do: publish, target: fan, payload: "on"}
        on_clear: {do: publish, target: fan, payload: "off"}
  - name: siren
    input: {sensor: boiler, value: temp}
    rules:
      - name: limit
        when: ["value > 1000"]
        quantum: 1
        action: {do: publish, target: siren, payload: "on"}
        on_clear: {do: publish, target: siren, payload: "off"}
)";

std::string reading_json(std::size_t window, double temp) {
  return R"({"v":1,"ts":)" + std::to_string(kT0 + window * 1000 + 500) + R"(,"values":{"temp":)" +
         std::to_string(temp) + "}}";
}

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The decisions nova-cloud lists for gw-a1 that the pipeline's rule took (the agent's
// own alerts, on host gauges, may add others).
json rule_decisions(const json& listed) {
  json out = json::array();
  for (const json& d : listed) {
    if (d["kind"] == "rule.overheat") out.push_back(d);
  }
  return out;
}

// How many lines of `text` contain `needle`.
std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("readings flow through a pipeline to an actuator and a decision record at nova-cloud also while the uplink is cut",
          "[cloud][pipelines][e2e]") {
  const tiers::Topology topology = topology_with_metro();
  auto h = hiertest::start_hierarchy(topology, "nova-pipelines", testing::Transport::mutual_tls, {},
                                     {"gw-a1.boiler", "gw-a1.fan"});
  const fs::path dir = h->dir.path() / "pipelines";
  test::CloudProcess cloud(h->tls_uri("cloud"), dir / "cloud", "nova-cloud", "", 180, h->identity("nova-cloud"));

  // resend_after_s: the cloud's acks stalling for 3 s marks decisions offline (docs/agent.md).
  const std::string settings =
      "metrics: {interval_ms: 200, batch_interval_s: 10}\ndrain: {jitter_ms: 0, resend_after_s: 3}\n";
  auto agent = test::start_gateway_agent(*h, NOVA_AGENT_BIN, dir / "gw-a1", settings + kPipelines, "cloud/m1/a1", 3);
  REQUIRE(cloud.poll_json("/api/v1/nodes/gw-a1", [](const json& n) { return n["liveness"] == "alive"; }, 60s));

  // The actuator: mosquitto_sub with the fan's certificate on its local topic.
  const fs::path fan_out = dir / "fan.out";
  testing::ChildProcess fan;
  fan.start({"/bin/sh", "-c",
             "exec stdbuf -oL mosquitto_sub -d " + h->mosquitto_client_args("a1", "sensor.gw-a1.fan") +
                 " -q 1 -t nova/v1/local/gw-a1/actuator/fan > '" + fan_out.string() + "'"},
            dir / "fan.err", false);
  // Line-buffered (stdbuf), so each message is in the file as soon as it is printed.
  const bool subscribed = testing::poll_until([&] { return read_text(fan_out).find("received SUBACK") != std::string::npos; }, 30s);
  INFO("mosquitto_sub: " << read_text(fan_out) << read_text(dir / "fan.err"));
  REQUIRE(subscribed);
  REQUIRE(read_text(fan_out).find("denied") == std::string::npos);  // the ACL grants it
  auto fan_messages = [&] {
    std::vector<json> out;
    std::istringstream lines(read_text(fan_out));
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty() && line.front() == '{') out.push_back(json::parse(line));
    }
    return out;
  };

  const std::string pub = "mosquitto_pub " + h->mosquitto_client_args("a1", "sensor.gw-a1.boiler") +
                          " -q 1 -t nova/v1/sensor/gw-a1/boiler";
  // JSON readings, one per line, one message each (mosquitto_pub -l).
  auto publish_json = [&](const std::vector<std::string>& readings) {
    const fs::path file = dir / "readings.txt";
    std::ofstream out(file);
    for (const std::string& r : readings) out << r << "\n";
    out.close();
    REQUIRE(std::system((pub + " -l < '" + file.string() + "'").c_str()) == 0);
  };
  // A CBOR reading (mosquitto_pub -f: the file is the message).
  auto publish_cbor = [&](std::size_t window, double temp) {
    schemas::SensorReading r;
    r.ts = kT0 + window * 1000 + 500;
    r.values = {{"temp", temp}};
    const schemas::Bytes bytes = schemas::encode_cbor(r);
    const fs::path file = dir / "reading.cbor";
    std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<long>(bytes.size()));
    REQUIRE(std::system((pub + " -f '" + file.string() + "'").c_str()) == 0);
  };

  // --- online: ten quiet windows, then a CBOR spike --------------------------------------
  std::vector<std::string> quiet;
  for (std::size_t w = 0; w < 10; ++w) quiet.push_back(reading_json(w, 50 + static_cast<double>(w % 3)));
  publish_json(quiet);
  publish_cbor(10, 99'999'999);  // outside the range filter: dropped
  publish_cbor(10, 300);
  publish_json({reading_json(11, 51)});  // closes window 10: mean 300, far off the baseline
  REQUIRE(testing::poll_until([&] { return fan_messages().size() == 1; }, 30s));
  const json on = fan_messages().front();
  CHECK(on["payload"] == "on");
  CHECK(on["rule"] == "overheat");
  CHECK(on["stream"] == "boiler.temp");
  CHECK(on["ts"] == kT0 + 11'000);  // the window's end
  CHECK(on["inputs"]["mean"] == 300.0);
  CHECK(on["inputs"]["score"].get<double>() >= 3);
  const std::string first_id = on["decision_id"];

  json decisions;
  const bool stored_online = cloud.poll_json("/api/v1/decisions?node=gw-a1&limit=1000", [&](const json& l) {
    decisions = rule_decisions(l);
    return decisions.size() == 1;
  }, 30s);
  INFO("agent log:\n" << agent->text() << "\ncloud log:\n" << read_text(cloud.log_file()));
  REQUIRE(stored_online);
  CHECK(decisions[0]["decision_id"] == first_id);
  CHECK(decisions[0]["kind"] == "rule.overheat");
  CHECK(decisions[0]["action"] == "publish");
  CHECK(decisions[0]["inputs"]["mean"] == 300.0);
  CHECK(decisions[0]["offline"] == false);
  CHECK(agent->text().find("event=sensor_reading_refused") == std::string::npos);

  // --- the uplink cut: the metro broker stops; the access broker and the cloud stay ------
  (*h)->stop("m1");
  // The agent's own broker stays up, so only the cloud's acks stalling show the cut: the
  // next metrics batch goes unacknowledged for resend_after_s.
  REQUIRE(agent->wait_log("event=cloud_acks_stalled", 30s));
  // Three more cycles, each a quiet window (the rule clears: "off") and a spike five
  // times the last ("on"): six decisions, taken while nothing reaches the cloud.
  double spike = 300;
  std::size_t w = 12;
  for (int cycle = 0; cycle < 3; ++cycle) {
    spike *= 5;
    publish_json({reading_json(w, 50), reading_json(w + 1, spike)});
    publish_cbor(w + 2, 50);  // closes the spike's window
    w += 3;
    const std::size_t expected = 1 + 2 * (static_cast<std::size_t>(cycle) + 1);
    REQUIRE(testing::poll_until([&] { return fan_messages().size() == expected; }, 30s));
  }
  const std::vector<json> acted = fan_messages();
  std::set<std::string> ids;
  for (std::size_t k = 0; k < acted.size(); ++k) {
    INFO(acted[k].dump());
    CHECK(acted[k]["payload"] == (k % 2 == 0 ? "on" : "off"));
    CHECK(acted[k]["offline"] == (k != 0));  // the actuator hears it too
    ids.insert(acted[k]["decision_id"].get<std::string>());
  }
  REQUIRE(ids.size() == 7);
  CHECK(rule_decisions(cloud.get_json("/api/v1/decisions?node=gw-a1&limit=1000")).size() == 1);

  // --- reconnect: every record arrives, once ---------------------------------------------
  (*h)->start_site("m1");
  REQUIRE(cloud.poll_json("/api/v1/decisions?node=gw-a1&limit=1000", [&](const json& l) {
    decisions = rule_decisions(l);
    return decisions.size() >= ids.size();
  }, 60s));
  // Whatever the bridge and the agent's go-back-N sent twice, nova-cloud holds each once.
  std::multiset<std::string> stored;
  for (const json& d : decisions) stored.insert(d["decision_id"].get<std::string>());
  CHECK(stored.size() == ids.size());
  CHECK(std::set<std::string>(stored.begin(), stored.end()) == ids);
  // Taken during the cut, they say so; the first, taken online, does not.
  for (const json& d : decisions) {
    INFO(d.dump());
    CHECK(d["offline"] == (d["decision_id"] != first_id));
  }
  // The siren's rule (raw readings, quantum 1) saw the same situations again during the
  // cut -- active at 50 after each spike -- and the decision cache answered them: those
  // records say cached, and offline.
  const json all = cloud.get_json("/api/v1/decisions?node=gw-a1&limit=1000");
  std::size_t cached_offline = 0;
  for (const json& d : all) {
    if (d["kind"] == "rule.limit" && d["offline"] == true && d["inputs"].contains("cached")) ++cached_offline;
  }
  INFO(all.dump());
  CHECK(cached_offline >= 1);
  CHECK(agent->wait_log("event=cloud_acks_resumed", 1s));
  // The agent logged each decision once.
  CHECK(count_of(agent->text(), "event=rule_action rule=boiler/overheat") == ids.size());

  // --- hot: a new rule in the file, SIGHUP -----------------------------------------------
  test::write_gateway_config(*h, dir / "gw-a1", settings + R"(pipelines:
  - name: boiler
    input: {sensor: boiler, value: temp}
    window: {kind: tumbling, size_ms: 1000}
    rules:
      - {name: hot, when: "mean > 100", action: {do: publish, target: fan, payload: "hot"}}
)", "cloud/m1/a1", 3);
  REQUIRE(::kill(agent->pid(), SIGHUP) == 0);
  REQUIRE(agent->wait_log("event=pipelines count=1", 10s));  // two at start, one now
  publish_json({reading_json(w, 500), reading_json(w + 1, 50)});
  REQUIRE(testing::poll_until([&] { return fan_messages().size() == ids.size() + 1; }, 30s));
  CHECK(fan_messages().back()["payload"] == "hot");
  CHECK(fan_messages().back()["rule"] == "hot");
  REQUIRE(agent->signal(SIGTERM) == 0);
}
