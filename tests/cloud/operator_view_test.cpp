// The operator's view (issue 13, item 6): live events (event_hub.h, operator_view.h), gauge
// series and outbox statistics (metric_series.h), and their REST routes through
// HttpRoutes::handle on a detached CloudService (no broker, no socket).
#include <httplib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "nova/cloud/auth.h"
#include "nova/cloud/event_hub.h"
#include "nova/cloud/http_api.h"
#include "nova/cloud/metric_series.h"
#include "nova/cloud/operator_view.h"
#include "nova/cloud/service.h"
#include "nova/schemas/codec.h"
#include "detached_routes.h"

using namespace nova;
using namespace nova::schemas;
namespace fs = std::filesystem;
using nlohmann::json;
using cloud::EventHub;
using cloud::LiveEvent;

namespace {

LiveEvent event(const std::string& type, const std::string& site = "") { return {0, type, "{}", site}; }

MetricSample sample(Timestamp ts, double records, double bytes, double evicted) {
  MetricSample s;
  s.ts = ts;
  s.cpu_pct = 10;
  s.extra = {{"agent.outbox_records", records}, {"agent.outbox_bytes", bytes}, {"agent.outbox_evicted", evicted}};
  return s;
}

}  // namespace

TEST_CASE("event hub: a slow reader is dropped and never holds the producer back", "[cloud][events]") {
  EventHub hub(EventHub::Limits{4, 16, 2});
  auto slow = hub.subscribe("", 0);
  auto quick = hub.subscribe("", 0);
  REQUIRE((slow && quick));
  for (int i = 0; i < 4; ++i) hub.publish(event("node"));
  CHECK(quick->next(std::chrono::milliseconds(0)).size() == 4);
  hub.publish(event("node"));  // slow's queue holds 4 already: dropped, not waited for
  CHECK(slow->dropped());
  CHECK(slow->closed());
  CHECK(slow->next(std::chrono::milliseconds(1000)).empty());  // at once, not after the timeout
  const auto got = quick->next(std::chrono::milliseconds(0));
  REQUIRE(got.size() == 1);
  CHECK(got[0].id == 5);
  CHECK(hub.counters().dropped == 1);
  CHECK(hub.counters().published == 5);
}

TEST_CASE("event hub: replay after Last-Event-ID and a reset when it is no longer kept", "[cloud][events]") {
  EventHub hub(EventHub::Limits{64, 3, 4});
  for (int i = 0; i < 5; ++i) hub.publish(event("node"));  // ids 1..5, 3..5 kept
  bool reset = false;
  auto late = hub.subscribe("", 3, &reset);
  CHECK_FALSE(reset);
  auto got = late->next(std::chrono::milliseconds(0));
  REQUIRE(got.size() == 2);
  CHECK(got[0].id == 4);
  CHECK(got[1].id == 5);
  auto lost = hub.subscribe("", 1, &reset);
  CHECK(reset);  // 2 is gone
  CHECK(lost->next(std::chrono::milliseconds(0)).size() == 3);
}

TEST_CASE("event hub: a scoped reader sees only its subtree and max_clients holds and close ends readers", "[cloud][events]") {
  EventHub hub(EventHub::Limits{64, 64, 2});
  auto eu = hub.subscribe("cloud/eu", 0);
  auto all = hub.subscribe("", 0);
  CHECK(hub.subscribe("", 0) == nullptr);
  CHECK(hub.counters().refused == 1);
  hub.publish(event("node", "cloud/us/nyc"));
  hub.publish(event("node", "cloud/eu/par"));
  hub.publish(event("link"));  // no site: for everyone
  CHECK(eu->next(std::chrono::milliseconds(0)).size() == 2);
  CHECK(all->next(std::chrono::milliseconds(0)).size() == 3);
  eu.reset();
  CHECK(hub.counters().clients == 1);
  std::thread closer([&] { hub.close(); });
  CHECK(all->next(std::chrono::milliseconds(10000)).empty());
  closer.join();
  CHECK(all->closed());
  CHECK_FALSE(all->dropped());
  CHECK(hub.subscribe("", 0) == nullptr);
}

TEST_CASE("sse_frame is the EventSource wire form", "[cloud][events]") {
  CHECK(cloud::sse_frame({7, "alert", R"({"a":1})", ""}) == "id: 7\nevent: alert\ndata: {\"a\":1}\n\n");
}

TEST_CASE("outbox statistics: backlog and peak and drained and evicted from the agent's gauges", "[cloud][series]") {
  // Offline: the backlog grows to 50 (2 evicted at the cap), then drains to 0.
  const std::vector<MetricSample> samples = {sample(1000, 10, 1000, 0), sample(2000, 50, 5000, 0),
                                             sample(3000, 48, 4800, 2),  // eviction, not a drain
                                             sample(4000, 20, 2000, 2), sample(5000, 0, 0, 2)};
  const cloud::OutboxStats o = cloud::outbox_stats(samples);
  CHECK(o.samples_used == 5);
  CHECK(o.backlog_records == 0);
  CHECK(o.peak_records == 50);
  CHECK(o.peak_bytes == 5000);
  CHECK(o.evicted == 2);
  CHECK(o.drained == 48);
  CHECK(o.last_ts == 5000);
  // A restarted agent counts evictions from 0 again.
  CHECK(cloud::outbox_stats({sample(1, 5, 1, 7), sample(2, 5, 1, 1)}).evicted == 1);
  CHECK(cloud::outbox_stats({MetricSample{}}).samples_used == 0);
}

TEST_CASE("gauge series: any gauge by name in buckets and merged per site", "[cloud][series]") {
  MetricSample a;
  a.ts = 60'000;
  a.cpu_pct = 10;
  a.extra["sensor.s1.temp"] = 20;
  MetricSample b = a;
  b.ts = 61'000;
  b.cpu_pct = 30;
  b.extra["sensor.s1.temp"] = 22;
  MetricSample c;
  c.ts = 125'000;
  c.cpu_pct = 50;
  const auto temp = cloud::bucket_series({a, b, c}, "sensor.s1.temp", 60'000);
  REQUIRE(temp.size() == 1);  // c has no sensor gauge
  CHECK(temp[0].ts == 60'000);
  CHECK(temp[0].mean == Approx(21));
  CHECK(temp[0].count == 2);
  const auto cpu = cloud::bucket_series({c, a, b}, "cpu", 60'000);
  REQUIRE(cpu.size() == 2);
  CHECK(cpu[0].mean == Approx(20));
  CHECK(cpu[1].ts == 120'000);
  CHECK_FALSE(cloud::gauge_value(c, "temp"));
  const auto merged = cloud::merge_series({cpu, {{60'000, 1, 70, 90, 80}}});
  REQUIRE(merged.size() == 2);
  CHECK(merged[0].mean == Approx(50));  // (20 + 80) / 2
  CHECK(merged[0].count == 2);
  CHECK(merged[0].max == 90);
  CHECK(merged[1].count == 1);
}

TEST_CASE("liveness history: time away from alive and its periods within a window", "[cloud][series]") {
  cloud::LivenessHistory h;
  h.record("n", cloud::Liveness::alive, 0);
  h.record("n", cloud::Liveness::dead, 1000);
  h.record("n", cloud::Liveness::dead, 1500);  // a repeat changes nothing
  h.record("n", cloud::Liveness::alive, 3000);
  h.record("n", cloud::Liveness::unreachable, 5000);
  auto o = h.offline("n", 0, 6000);
  CHECK(o.offline_ms == 3000);  // 1000..3000 and 5000..6000
  CHECK(o.periods == 2);
  o = h.offline("n", 2000, 4000);
  CHECK(o.offline_ms == 1000);
  CHECK(o.periods == 0);  // it began before the window
  CHECK(h.offline("other", 0, 6000).offline_ms == 0);
}

namespace {

constexpr Timestamp kT0 = 1'796'000'000'000;

// A detached nova-cloud with its routes (detached_routes.h); the watcher ticked by the test.
cloud::HttpOptions no_watcher() {
  cloud::HttpOptions http;
  http.events_interval = std::chrono::milliseconds(0);
  return http;
}

struct View : nova::testing::Detached {
  explicit View(const std::string& name, cloud::HttpOptions http = no_watcher()) : Detached("operator-view-" + name, http) {}
  template <class M>
  void deliver(const std::string& topic, const M& message, bool retained = false) {
    const Bytes b = encode_cbor(message);
    service->deliver(topic, std::string(b.begin(), b.end()), retained);
  }
  void state(const std::string& node, const std::string& site, NodeStatus status) {
    NodeState st;
    st.node = node;
    st.status = status;
    st.bdseq = 1;
    st.ts = kT0;
    if (status == NodeStatus::online) st.description = NodeDescription{5, site, "x86_64", "t", {}, {1000, 512, 1024}, std::nullopt};
    deliver("nova/v1/up/" + node + "/state", st, true);
  }
  void alert(const std::string& node, std::uint64_t seq, Severity severity, const std::string& metric) {
    Alert a;
    a.position = {node, "alerts", seq};
    a.alert_id = "a" + std::to_string(seq);
    a.ts = kT0 + seq;
    a.severity = severity;
    a.metric = metric;
    a.observed = 90;
    a.threshold = 80;
    a.message = metric + " high";
    deliver("nova/v1/up/" + node + "/alert", a);
  }
  httplib::Response get(const std::string& path, const std::string& token, httplib::Headers headers = {}) {
    headers.emplace("Host", "127.0.0.1:8080");
    return call("GET", path, token, "", std::move(headers));
  }
  json get_json(const std::string& path, const std::string& token) {
    const auto res = get(path, token);
    INFO(path << ": " << res.body);
    REQUIRE(res.status == 200);
    return json::parse(res.body);
  }
};

}  // namespace

TEST_CASE("every gauge over time: sensor and agent gauges raw and per minute", "[cloud][http][series]") {
  View v("gauges");
  v.state("dev-1", "cloud/eu/par", NodeStatus::online);
  MetricsBatch m;
  m.position = {"dev-1", "metrics", 1};
  for (int i = 0; i < 4; ++i) {
    MetricSample s = sample(kT0 + static_cast<Timestamp>(i) * 20'000, 10.0 * i, 100.0 * i, 0);
    s.extra["sensor.s1.temp"] = 20 + i;
    m.samples.push_back(s);
  }
  v.deliver("nova/v1/up/dev-1/metrics", m);
  const std::string window = "from=" + std::to_string(kT0) + "&to=" + std::to_string(kT0 + 120'000);
  json raw = v.get_json("/api/v1/nodes/dev-1/metrics?gauge=sensor.s1.temp&" + window, v.tokens.viewer);
  REQUIRE(raw.size() == 4);
  CHECK(raw[3]["value"] == 23);
  // Without gauge=, every raw sample carries its extra gauges.
  raw = v.get_json("/api/v1/nodes/dev-1/metrics?" + window, v.tokens.viewer);
  REQUIRE(raw.size() == 4);
  CHECK(raw[1]["extra"]["agent.outbox_records"] == 10);
  CHECK(raw[1]["extra"]["sensor.s1.temp"] == 21);
  const json minute = v.get_json("/api/v1/nodes/dev-1/metrics?resolution=1m&gauge=agent.outbox_records&" + window, v.tokens.viewer);
  REQUIRE(minute.size() >= 1);
  double count = 0;
  for (const auto& p : minute) count += p["count"].get<double>();
  CHECK(count == 4);
  const auto bad = v.get("/api/v1/nodes/dev-1/metrics?gauge=a%20b", v.tokens.viewer);
  CHECK(bad.status == 400);
  CHECK(json::parse(bad.body)["error"].get<std::string>().rfind("gauge: ", 0) == 0);

  // Trends per site: the core gauge from the minute aggregates.
  const json trends = v.get_json("/api/v1/trends?gauge=cpu&" + window, v.tokens.viewer);
  REQUIRE(trends["series"].contains("cloud/eu/par"));
  CHECK_FALSE(trends["series"]["cloud/eu/par"].empty());
  const json by_node = v.get_json("/api/v1/trends?by=node&site=cloud/eu&gauge=sensor.s1.temp&" + window, v.tokens.viewer);
  CHECK(by_node["series"].contains("dev-1"));
  CHECK(v.get("/api/v1/trends?by=everything", v.tokens.viewer).status == 400);
}

TEST_CASE("alerts by node and severity and since and limit newest first within the token's scope", "[cloud][http]") {
  View v("alerts");
  v.state("eu-1", "cloud/eu/par", NodeStatus::online);
  v.state("us-1", "cloud/us/nyc", NodeStatus::online);
  v.alert("eu-1", 1, Severity::warning, "cpu");
  v.alert("eu-1", 2, Severity::critical, "sensor.s1.temp");
  v.alert("us-1", 1, Severity::warning, "mem");
  json all = v.get_json("/api/v1/alerts", v.tokens.viewer);
  REQUIRE(all.size() == 3);
  CHECK(all[0]["received"].get<Timestamp>() >= all[2]["received"].get<Timestamp>());
  CHECK(v.get_json("/api/v1/alerts?node=eu-1", v.tokens.viewer).size() == 2);
  const json critical = v.get_json("/api/v1/alerts?severity=critical", v.tokens.viewer);
  REQUIRE(critical.size() == 1);
  CHECK(critical[0]["metric"] == "sensor.s1.temp");
  CHECK(critical[0]["site"] == "cloud/eu/par");
  CHECK(v.get_json("/api/v1/alerts?limit=1", v.tokens.viewer).size() == 1);
  CHECK(v.get_json("/api/v1/alerts", v.tokens.operator_eu).size() == 2);  // cloud/eu: us-1's is out of scope
  CHECK(v.get_json("/api/v1/alerts?since=" + std::to_string(cloud::Timestamp(4'000'000'000'000)), v.tokens.viewer).empty());
  const auto bad = v.get("/api/v1/alerts?severity=loud", v.tokens.viewer);
  CHECK(bad.status == 400);
  CHECK(json::parse(bad.body)["error"] == "severity: expected info, warning or critical");
}

TEST_CASE("the watcher publishes liveness changes and alerts and offline time is measured on its history", "[cloud][http][events]") {
  View v("watcher");
  v.state("dev-1", "cloud/eu/par", NodeStatus::online);
  cloud::OperatorView& view = v.routes->operator_view();
  auto reader = v.routes->events().subscribe("", 0);
  const Timestamp now = static_cast<Timestamp>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  view.tick(now);  // learns the state: no event
  CHECK(reader->next(std::chrono::milliseconds(0)).empty());
  v.state("dev-1", "", NodeStatus::dead);
  v.alert("dev-1", 1, Severity::critical, "cpu");
  view.tick(now + 1000);
  auto events = reader->next(std::chrono::milliseconds(0));
  std::map<std::string, json> by_type;
  for (const auto& e : events) by_type[e.type] = json::parse(e.data);
  REQUIRE(by_type.count("node") == 1);
  CHECK(by_type["node"]["id"] == "dev-1");
  CHECK(by_type["node"]["liveness"] == "dead");
  CHECK(by_type["node"]["from"] == "alive");
  REQUIRE(by_type.count("alert") == 1);
  CHECK(by_type["alert"]["severity"] == "critical");
  view.tick(now + 2000);
  CHECK(reader->next(std::chrono::milliseconds(0)).empty());  // nothing new, nothing said
  v.state("dev-2", "cloud/eu/ber", NodeStatus::online);
  view.tick(now + 3000);
  events = reader->next(std::chrono::milliseconds(0));
  REQUIRE(events.size() == 1);
  CHECK(json::parse(events[0].data)["id"] == "dev-2");

  // dev-1 has been dead since now + 1000.
  const json offline = v.get_json("/api/v1/offline?from=" + std::to_string(now) + "&to=" + std::to_string(now + 5000), v.tokens.viewer);
  REQUIRE(offline["nodes"].size() == 2);
  CHECK(offline["nodes"][0]["node"] == "dev-1");
  CHECK(offline["nodes"][0]["offline_ms"] == 4000);
  CHECK(offline["nodes"][0]["offline_periods"] == 1);
  CHECK(v.get("/api/v1/offline?limit=0", v.tokens.viewer).status == 400);

  const json sites = v.get_json("/api/v1/sites", v.tokens.viewer);
  std::map<std::string, json> by_path;
  for (const auto& s : sites["sites"]) by_path[s["path"]] = s;
  REQUIRE(by_path.count("cloud/eu/par") == 1);
  CHECK(by_path["cloud/eu/par"]["liveness"]["dead"] == 1);
  CHECK(by_path["cloud/eu/par"]["tier"] == 3);
  CHECK(by_path["cloud/eu"]["nodes"] == 0);  // a site on the way, with no node of its own
  CHECK(v.get_json("/api/v1/nodes?site=cloud/eu/ber", v.tokens.viewer).size() == 1);
}

TEST_CASE("the events route takes the token as a query parameter or cookie and no other route does", "[cloud][http][events][auth]") {
  View v("events-auth");
  CHECK(v.get("/api/v1/events", "").status == 401);
  CHECK(v.get("/api/v1/events?token=" + std::string(64, 'a'), "").status == 401);
  auto res = v.get("/api/v1/events?token=" + v.tokens.viewer, "");
  CHECK(res.status == 200);
  CHECK(res.get_header_value("Content-Type") == "text/event-stream");
  res = v.get("/api/v1/events", "", {{"Cookie", "theme=dark; nova_token=" + v.tokens.viewer}});
  CHECK(res.status == 200);
  CHECK(v.get("/api/v1/nodes?token=" + v.tokens.viewer, "").status == 401);
  CHECK(v.get("/api/v1/nodes", "", {{"Cookie", "nova_token=" + v.tokens.viewer}}).status == 401);
  res = v.get("/api/v1/events", v.tokens.viewer, {{"Last-Event-ID", "x1"}});
  CHECK(res.status == 400);
  CHECK(json::parse(res.body)["error"] == "Last-Event-ID: expected the id of an event");
}

TEST_CASE("the event stream as httplib writes it: greeting then events then keep-alive then dropped when slow", "[cloud][http][events]") {
  cloud::HttpOptions http = no_watcher();
  http.events_keepalive = std::chrono::milliseconds(50);
  http.events.queue_capacity = 2;
  View v("sse-wire", http);
  httplib::Response res = v.get("/api/v1/events", v.tokens.viewer);
  REQUIRE(res.status == 200);
  REQUIRE(res.is_chunked_content_provider_);
  std::string out;
  bool done = false;
  httplib::DataSink sink;
  sink.write = [&](const char* data, std::size_t size) {
    out.append(data, size);
    return true;
  };
  sink.done = [&] { done = true; };
  sink.is_writable = [] { return true; };
  const auto next = [&] {
    out.clear();
    REQUIRE(res.content_provider_(0, 0, sink));
    return out;
  };
  CHECK(next().rfind("retry: 1000\n", 0) == 0);
  CHECK(next() == ": keep-alive\n\n");  // nothing for 50 ms
  v.routes->events().publish({0, "node", R"({"id":"x"})", ""});
  CHECK(next() == "id: 1\nevent: node\ndata: {\"id\":\"x\"}\n\n");
  for (int i = 0; i < 3; ++i) v.routes->events().publish({0, "node", "{}", ""});  // a queue of 2: dropped
  CHECK(next().rfind("event: dropped\n", 0) == 0);
  CHECK(done);
  CHECK(v.routes->events().counters().dropped == 1);
}

TEST_CASE("a bad parameter of the operator's routes is a 400 naming it and is counted", "[cloud][http]") {
  View v("bad-params");
  for (const char* path : {"/api/v1/alerts?limit=0", "/api/v1/trends?to=x", "/api/v1/offline?limit=2000"}) {
    const auto res = v.get(path, v.tokens.viewer);
    CHECK(res.status == 400);
  }
  CHECK(json::parse(v.get("/api/v1/trends?from=5&to=1", v.tokens.viewer).body)["error"] == "to: expected after from, within 24 h of it");
  CHECK(v.get("/metrics", "").body.find("nova_cloud_http_refused_total{reason=\"bad_request\"} 4\n") != std::string::npos);
}

TEST_CASE("the watcher publishes a link going down and back with the liveness it changes", "[cloud][http][events]") {
  View v("links");
  v.state("dev-1", "cloud/eu/par", NodeStatus::online);
  cloud::OperatorView& view = v.routes->operator_view();
  auto reader = v.routes->events().subscribe("", 0);
  view.tick(kT0);
  v.service->deliver("nova/v1/up/par/link", "0", true);  // Mosquitto's bridge notification
  view.tick(kT0 + 1000);
  std::map<std::string, json> by_type;
  for (const auto& e : reader->next(std::chrono::milliseconds(0))) by_type[e.type] = json::parse(e.data);
  REQUIRE(by_type.count("link") == 1);
  CHECK(by_type["link"]["site"] == "par");
  CHECK(by_type["link"]["state"] == "down");
  REQUIRE(by_type.count("node") == 1);
  CHECK(by_type["node"]["liveness"] == "unreachable");
  const json sites = v.get_json("/api/v1/sites", v.tokens.viewer);
  CHECK(sites["links_down"] == json::array({"par"}));
  v.service->deliver("nova/v1/up/par/link", "1", true);
  view.tick(kT0 + 2000);
  by_type.clear();
  for (const auto& e : reader->next(std::chrono::milliseconds(0))) by_type[e.type] = json::parse(e.data);
  CHECK(by_type["link"]["state"] == "up");
  CHECK(by_type["node"]["liveness"] == "alive");
}
