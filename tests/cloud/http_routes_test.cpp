// The REST handlers through HttpRoutes::handle (what httplib calls), on a detached
// CloudService: no broker, no socket.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nova/cloud/auth.h"
#include "nova/cloud/http_api.h"
#include "nova/cloud/service.h"
#include "nova/cloud/workloads.h"
#include "nova/schemas/codec.h"
#include "detached_routes.h"

using namespace nova;
namespace fs = std::filesystem;
using nlohmann::json;
using nova::testing::Detached;

TEST_CASE("an id with invalid UTF-8 in the path is a 404 naming it, not an exception", "[cloud][http]") {
  Detached d("utf8");
  // httplib decodes %F9 in the path to the byte 0xF9 before routing.
  const auto res = d.call("GET", std::string("/api/v1/workloads/w-\xf9"), d.tokens.viewer);
  CHECK(res.status == 404);
  const json body = json::parse(res.body);
  CHECK(body["error"].get<std::string>().find("is not known") != std::string::npos);
}

TEST_CASE("/readyz answers 503 with the reason while there is no broker", "[cloud][http]") {
  Detached d("readyz");
  const auto res = d.call("GET", "/readyz");
  CHECK(res.status == 503);
  const json body = json::parse(res.body);
  CHECK(body["error"].get<std::string>().find("mqtt: not connected") == 0);
}

TEST_CASE("an unknown route is a JSON 404", "[cloud][http]") {
  Detached d("unknown");
  const auto res = d.call("PUT", "/api/v1/nowhere", d.tokens.admin);
  CHECK(res.status == 404);
  CHECK(json::parse(res.body)["error"] == "no such resource");
}

// Issue 10: the REST API took writes from anyone, from any web page (text/plain needs no
// preflight), under any Host name (DNS rebinding).
constexpr const char* kWorkload = R"({"v":1,"workload_id":"w1","name":"n","argv":["true"],"timeout_ms":1000,"availability":0.9,)"
                                  R"("res":{"cpu_millis":100,"memory_mb":16,"storage_mb":0}})";

TEST_CASE("a write without a token is a 401 with WWW-Authenticate: Bearer", "[cloud][http][auth]") {
  Detached d("no-token");
  auto res = d.call("POST", "/api/v1/workloads", "", kWorkload);
  CHECK(res.status == 401);
  CHECK(res.get_header_value("WWW-Authenticate") == "Bearer realm=\"nova-cloud\"");
  CHECK(d.error_of(res) == "Authorization: expected \"Bearer <token>\"");
  res = d.call("POST", "/api/v1/workloads", std::string(64, 'a'), kWorkload);
  CHECK(res.status == 401);
  CHECK(res.get_header_value("WWW-Authenticate").find("error=\"invalid_token\"") != std::string::npos);
  CHECK(d.call("GET", "/api/v1/nodes").status == 401);  // reads too
  CHECK(d.service->workloads().list().empty());
  // Liveness, readiness, Prometheus and the dashboard page stay open.
  CHECK(d.call("GET", "/api/v1/health").status == 200);
  CHECK(d.call("GET", "/metrics").status == 200);
  CHECK(d.call("GET", "/").status == 200);
  CHECK(d.call("GET", "/readyz").status == 503);  // no broker, but not a 401
}

TEST_CASE("a cross-origin text/plain write is refused even with a token", "[cloud][http][auth]") {
  Detached d("csrf");
  auto res = d.call("POST", "/api/v1/workloads", d.tokens.admin, kWorkload,
                    {{"Host", "127.0.0.1:8080"}, {"Content-Type", "text/plain"}});
  CHECK(res.status == 415);
  CHECK(d.error_of(res) == "Content-Type: expected application/json, got 'text/plain'");
  res = d.call("POST", "/api/v1/workloads", d.tokens.admin, kWorkload,
               {{"Host", "127.0.0.1:8080"}, {"Origin", "http://evil.example"}});
  CHECK(res.status == 403);
  CHECK(d.error_of(res) == "Origin: 'http://evil.example' is not an allowed origin");
  CHECK(d.service->workloads().list().empty());
  res = d.call("POST", "/api/v1/workloads", d.tokens.admin, kWorkload,
               {{"Host", "127.0.0.1:8080"}, {"Origin", "http://127.0.0.1:8080"}});
  INFO(res.body);
  CHECK(res.status == 201);
}

TEST_CASE("a Host that is not this server's is refused (DNS rebinding)", "[cloud][http][auth]") {
  Detached d("host");
  auto res = d.call("GET", "/api/v1/nodes", d.tokens.admin, "", {{"Host", "evil.example:8080"}});
  CHECK(res.status == 421);
  CHECK(d.error_of(res) == "Host: 'evil.example:8080' is not an allowed host (http.allowed_hosts)");
  res = d.call("GET", "/api/v1/health", "", "", {});
  CHECK(res.status == 400);
  CHECK(d.error_of(res) == "Host: missing (HTTP/1.1 requires it)");
  CHECK(d.call("GET", "/api/v1/nodes", d.tokens.admin, "", {{"Host", "LOCALHOST:8080"}}).status == 200);
  const std::string metrics = d.call("GET", "/metrics").body;
  CHECK(metrics.find("nova_cloud_http_refused_total{reason=\"bad_host\"} 1\n") != std::string::npos);
  CHECK(metrics.find("nova_cloud_http_refused_total{reason=\"missing_host\"} 1\n") != std::string::npos);
}

TEST_CASE("roles: a viewer reads, an operator places, only an admin federates", "[cloud][http][auth]") {
  Detached d("roles");
  CHECK(d.call("GET", "/api/v1/workloads", d.tokens.viewer).status == 200);
  auto res = d.call("POST", "/api/v1/workloads", d.tokens.viewer, kWorkload);
  CHECK(res.status == 403);
  CHECK(d.error_of(res) == "role: 'watcher' is a viewer; POST /api/v1/workloads needs operator");
  const std::string cluster = R"({"v":1,"cluster_id":"c-eu","name":"eu","role":"secondary","root_site":"cloud/eu"})";
  res = d.call("POST", "/api/v1/clusters", d.tokens.operator_eu, cluster);
  CHECK(res.status == 403);
  CHECK(d.error_of(res) == "role: 'ops-eu' is an operator; POST /api/v1/clusters needs admin");
  CHECK(d.call("POST", "/api/v1/clusters", d.tokens.admin, cluster).status == 201);
  res = d.call("DELETE", "/api/v1/workloads/none", d.tokens.viewer);
  CHECK(res.status == 403);
  CHECK(d.error_of(res) == "role: 'watcher' is a viewer; DELETE /api/v1/workloads/{id} needs operator");
  const std::string metrics = d.call("GET", "/metrics").body;
  CHECK(metrics.find("nova_cloud_http_refused_total{reason=\"role\"} 3\n") != std::string::npos);
}

namespace {
// Births of eu-1 at cloud/eu/par and us-1 at cloud/us/nyc.
void two_regions(Detached& d) {
  using namespace nova::schemas;
  for (const auto& [node, site] : {std::pair{"eu-1", "cloud/eu/par"}, std::pair{"us-1", "cloud/us/nyc"}}) {
    NodeState st;
    st.node = node;
    st.status = NodeStatus::online;
    st.bdseq = 1;
    st.description = NodeDescription{3, site, "x86_64", "t", {}, {4000, 4096, 10000}, std::nullopt};
    const auto bytes = encode_cbor(st);
    d.service->deliver(std::string("nova/v1/up/") + node + "/state", std::string(bytes.begin(), bytes.end()), true);
  }
}
}  // namespace

TEST_CASE("scope: an operator scoped to cloud/eu cannot place outside it nor see it", "[cloud][http][auth]") {
  Detached d("scope");
  two_regions(d);
  const std::string admin = d.tokens.admin, eu = d.tokens.operator_eu;
  REQUIRE(d.call("POST", "/api/v1/clusters", admin, R"({"v":1,"cluster_id":"c-eu","name":"eu","role":"secondary","root_site":"cloud/eu"})").status == 201);
  REQUIRE(d.call("POST", "/api/v1/clusters", admin, R"({"v":1,"cluster_id":"c-us","name":"us","role":"secondary","root_site":"cloud/us"})").status == 201);

  auto res = d.call("GET", "/api/v1/nodes", eu);
  REQUIRE(res.status == 200);
  const json nodes = json::parse(res.body);
  REQUIRE(nodes.size() == 1);
  CHECK(nodes[0]["id"] == "eu-1");
  CHECK(d.call("GET", "/api/v1/nodes/us-1", eu).status == 404);
  CHECK(d.call("GET", "/api/v1/nodes/us-1/metrics", eu).status == 404);
  CHECK(json::parse(d.call("GET", "/api/v1/nodes", admin).body).size() == 2);

  const std::string base = R"({"v":1,"name":"n","argv":["true"],"timeout_ms":1000,"availability":0.9,"res":{"cpu_millis":100,"memory_mb":16,"storage_mb":0})";
  res = d.call("POST", "/api/v1/workloads", eu, base + R"(,"workload_id":"free"})");
  CHECK(res.status == 403);
  CHECK(d.error_of(res).find("scope: a token scoped to 'cloud/eu' may only name workloads confined") == 0);
  res = d.call("POST", "/api/v1/workloads", eu, base + R"(,"workload_id":"to-us","clusters_in":["c-us"]})");
  CHECK(res.status == 403);
  CHECK(d.error_of(res).find("(cluster 'c-us' is not)") != std::string::npos);
  res = d.call("POST", "/api/v1/workloads", eu, base + R"(,"workload_id":"in-eu","clusters_in":["c-eu"]})");
  REQUIRE(res.status == 201);
  CHECK(json::parse(res.body)["placement"]["node"] == "eu-1");
  // The admin's unconfined workload is invisible to the scoped operator, and so undeletable.
  REQUIRE(d.call("POST", "/api/v1/workloads", admin, base + R"(,"workload_id":"global"})").status == 201);
  CHECK(json::parse(d.call("GET", "/api/v1/workloads", eu).body).size() == 1);
  CHECK(d.call("DELETE", "/api/v1/workloads/global", eu).status == 404);
  CHECK(d.call("DELETE", "/api/v1/workloads/in-eu", eu).status == 204);
}

TEST_CASE("cancel: operator role, the body checked, 404 unknown, 202 then 409 while under way", "[cloud][http][cancel]") {
  Detached d("cancel");
  two_regions(d);
  REQUIRE(d.call("POST", "/api/v1/workloads", d.tokens.admin, kWorkload).status == 201);
  auto res = d.call("POST", "/api/v1/workloads/w1/cancel", d.tokens.viewer, "{}");
  CHECK(res.status == 403);
  CHECK(d.error_of(res) == "role: 'watcher' is a viewer; POST /api/v1/workloads/{id}/cancel needs operator");
  res = d.call("POST", "/api/v1/workloads/w1/cancel", d.tokens.admin, R"({"reason": 5})");
  CHECK(res.status == 400);
  CHECK(d.error_of(res) == "reason: expected a string");
  res = d.call("POST", "/api/v1/workloads/w1/cancel", d.tokens.admin, "[]");
  CHECK(d.error_of(res) == "body: expected a JSON object");
  res = d.call("POST", "/api/v1/workloads/nope/cancel", d.tokens.admin, "{}");
  CHECK(res.status == 404);
  res = d.call("POST", "/api/v1/workloads/w1/cancel", d.tokens.admin, R"({"reason": "maintenance"})");
  REQUIRE(res.status == 202);
  const json state = json::parse(res.body);
  CHECK(state["phase"] == "running");
  CHECK(state["stopping"]["task_id"] == "w1.r1");
  CHECK(state["stopping"]["reason"] == "maintenance");
  CHECK_FALSE(state["stopping"].contains("next"));
  res = d.call("POST", "/api/v1/workloads/w1/cancel", d.tokens.admin, "{}");
  CHECK(res.status == 409);
  CHECK(d.error_of(res).starts_with("workload: a cancel of 'w1' is under way since "));
  CHECK(d.call("GET", "/metrics").body.find("nova_cloud_cancels_sent_total 1\n") != std::string::npos);
}

TEST_CASE("every reply carries the dashboard's framing and sniffing protections", "[cloud][http][auth]") {
  Detached d("headers");
  for (const auto& res : {d.call("GET", "/"), d.call("GET", "/api/v1/nodes")}) {
    CHECK(res.get_header_value("Content-Security-Policy") == "default-src 'self'; frame-ancestors 'none'");
    CHECK(res.get_header_value("X-Frame-Options") == "DENY");
    CHECK(res.get_header_value("X-Content-Type-Options") == "nosniff");
  }
}

TEST_CASE("the built-in dashboard runs under its CSP: no inline script or style", "[cloud][http][auth]") {
  Detached d("dashboard");
  const std::string page = d.call("GET", "/").body;
  CHECK(page.find(R"(<script src="/dashboard.js"></script>)") != std::string::npos);
  CHECK(page.find(R"(<link rel="stylesheet" href="/dashboard.css">)") != std::string::npos);
  CHECK(page.find("<script>") == std::string::npos);
  CHECK(page.find("<style>") == std::string::npos);
  CHECK(page.find("style=") == std::string::npos);
  const auto js = d.call("GET", "/dashboard.js");
  CHECK(js.status == 200);
  CHECK(js.get_header_value("Content-Type") == "text/javascript");
  CHECK(js.body.find("sessionStorage") != std::string::npos);  // where the pasted token lives
  CHECK(d.call("GET", "/dashboard.css").body.find(".push-right") != std::string::npos);
}

TEST_CASE("tokens file: errors name the line and the field", "[cloud][auth]") {
  const std::string hash(64, 'a');
  CHECK(cloud::parse_tokens("# c\n\n" + hash + " alice admin\n").value().size() == 1);
  CHECK(cloud::parse_tokens(hash + " alice root\n").error().message() == "line 1: role: expected viewer, operator or admin");
  CHECK(cloud::parse_tokens("abc alice admin\n").error().message() ==
        "line 1: hash: expected 64 lower-case hex digits (SHA-256 of the token)");
  CHECK(cloud::parse_tokens(hash + " al/ice admin\n").error().message().find("line 1: name: ") == 0);
  CHECK(cloud::parse_tokens(hash + " alice admin cloud//eu\n").error().message().find("line 1: scope: ") == 0);
  CHECK(cloud::parse_tokens(hash + " a admin\n" + hash + " b viewer\n").error().message() ==
        "line 2: hash: the same token is listed twice");
  CHECK(cloud::in_scope("cloud/eu", "cloud/eu/par"));
  CHECK(cloud::in_scope("cloud/eu", "cloud/eu"));
  CHECK_FALSE(cloud::in_scope("cloud/eu", "cloud/europe"));
  CHECK_FALSE(cloud::in_scope("cloud/eu", "cloud/us/eu"));
}

TEST_CASE("rollouts: admin only, a scoped admin reaches and sees only its subtree", "[cloud][http][auth][rollouts]") {
  Detached d("rollout-scope");
  two_regions(d);
  const httplib::Headers bundle = {{"Host", "127.0.0.1:8080"}, {"Content-Type", "application/octet-stream"}};
  const std::string script = "#!/bin/sh\nexit 0\n";
  const auto post = [&](const std::string& token, const std::string& query) {
    return d.call("POST", "/api/v1/rollouts?" + query, token, script, bundle);
  };
  auto res = post(d.tokens.operator_eu, "version=2&subtree=cloud/eu");
  CHECK(res.status == 403);
  CHECK(d.error_of(res) == "role: 'ops-eu' is an operator; POST /api/v1/rollouts needs admin");
  res = post(d.tokens.admin_eu, "version=2&subtree=cloud/us");
  CHECK(res.status == 403);
  CHECK(d.error_of(res) == "subtree: 'cloud/us' is outside the token's scope 'cloud/eu'");
  res = post(d.tokens.admin_eu, "version=2&node=us-1");
  CHECK(res.status == 404);
  CHECK(d.error_of(res) == "node: 'us-1' names no node known here within the token's scope 'cloud/eu'");
  res = post(d.tokens.admin_eu, "version=2&subtree=cloud/eu");
  REQUIRE(res.status == 201);
  const json eu = json::parse(res.body);
  REQUIRE(eu["nodes"].size() == 1);
  CHECK(eu["nodes"][0]["node"] == "eu-1");
  CHECK(eu["created_by"] == "admin-eu");
  // The unscoped admin's rollout reaches us-1 too: hidden from the scoped admin.
  res = post(d.tokens.admin, "version=3&subtree=cloud");
  REQUIRE(res.status == 201);
  const std::string everywhere = json::parse(res.body)["id"];
  CHECK(json::parse(d.call("GET", "/api/v1/rollouts", d.tokens.admin_eu).body).size() == 1);
  CHECK(json::parse(d.call("GET", "/api/v1/rollouts", d.tokens.viewer).body).size() == 2);
  CHECK(d.call("GET", "/api/v1/rollouts/" + everywhere, d.tokens.admin_eu).status == 404);
  CHECK(d.call("GET", "/api/v1/rollouts/" + everywhere, d.tokens.viewer).status == 200);
}

TEST_CASE("a batch of workloads is placed together and errors name the index", "[cloud][http][reoptimiser]") {
  Detached d("batch");
  two_regions(d);
  auto spec = [](const std::string& id) {
    return R"({"v":1,"workload_id":")" + id + R"(","name":"n","argv":["true"],"timeout_ms":1000,"availability":0.9,)" +
           R"("res":{"cpu_millis":1000,"memory_mb":256,"storage_mb":0}})";
  };
  const std::string one = spec("b1"), two = spec("b2");
  auto res = d.call("POST", "/api/v1/workloads:batch", d.tokens.viewer, R"({"workloads":[)" + one + "]}");
  CHECK(res.status == 403);
  CHECK(d.error_of(res) == "role: 'watcher' is a viewer; POST /api/v1/workloads:batch needs operator");
  res = d.call("POST", "/api/v1/workloads:batch", d.tokens.admin, R"({"workloads":[]})");
  CHECK(res.status == 400);
  CHECK(d.error_of(res) == "workloads: expected 1..1000 specs, got 0");
  res = d.call("POST", "/api/v1/workloads:batch", d.tokens.admin, R"({"workloads":[)" + one + R"(,{"v":1,"workload_id":"x"}]})");
  CHECK(res.status == 400);
  CHECK(d.error_of(res).starts_with("workloads[1]."));
  CHECK(d.call("GET", "/api/v1/workloads/b1", d.tokens.admin).status == 404);  // all or nothing

  res = d.call("POST", "/api/v1/workloads:batch", d.tokens.admin, R"({"workloads":[)" + one + "," + two + "]}");
  REQUIRE(res.status == 201);
  const json placed = json::parse(res.body)["workloads"];
  REQUIRE(placed.size() == 2);
  CHECK(placed[0]["workload_id"] == "b1");
  CHECK(placed[0]["phase"] == "running");
  CHECK(placed[1]["phase"] == "running");
  CHECK(d.call("GET", "/metrics").body.find("nova_cloud_workload_batches_total 1\n") != std::string::npos);
  res = d.call("POST", "/api/v1/workloads:batch", d.tokens.admin, R"({"workloads":[)" + two + "]}");
  CHECK(res.status == 409);
  CHECK(d.error_of(res) == "workloads[0].workload_id: 'b2' already exists");
}
