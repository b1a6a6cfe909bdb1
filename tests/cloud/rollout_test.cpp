// Over-the-air rollouts driven by nova-cloud (docs/cloud.md, "Rollouts"): a real
// nova-cloud on a mutual-TLS Mosquitto, three devices provisioned by nova-device-bundle
// and run by the real launcher (tests/harness/include/nova/testing/ota_devices.h, as
// tests/agent/update_test.cpp runs them), the rollout started through the REST API.
//
// v2 goes out one node a wave, nova-cloud SIGKILLed right after the 201 and started again
// on its store; a v3 that exits at once is rolled back by the first wave's launcher, the
// rollout halts and the other nodes never get it; every metrics batch each device made
// is stored at nova-cloud. Bad requests get a 4xx naming the field, and are counted.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "cloud_process.h"
#include "nova/cloud/auth.h"
#include "nova/cloud/rollouts.h"
#include "nova/testing/broker.h"
#include "nova/testing/ota_devices.h"
#include "nova/testing/poll.h"

namespace {

using namespace nova::testing::ota;
using nlohmann::json;
using nova::testing::Broker;
using nova::testing::poll_until;

constexpr const char* kBundleType = "application/octet-stream";

// POSTs `bundle` as a rollout; the reply's JSON (201 required).
json start_rollout(const nova::test::CloudProcess& cloud, const std::string& query, const std::string& bundle) {
  auto r = cloud.post("/api/v1/rollouts?" + query, bundle, kBundleType);
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 201);
  CHECK(r->get_header_value("Location").rfind("/api/v1/rollouts/ro-", 0) == 0);
  return json::parse(r->body);
}

// The rollout once `state` holds, or null after `timeout`.
json wait_rollout(const nova::test::CloudProcess& cloud, const std::string& id, const std::string& state,
                  std::chrono::milliseconds timeout) {
  json now;
  poll_until([&] {
    now = cloud.get_json("/api/v1/rollouts/" + id);
    return now.is_object() && now["state"] == state;
  }, timeout);
  INFO(now.dump());
  return now.is_object() && now["state"] == state ? now : json();
}

json node_of(const json& rollout, const std::string& node) {
  for (const json& n : rollout["nodes"]) {
    if (n["node"] == node) return n;
  }
  FAIL("rollout has no node " << node);
  return {};
}

// One line of nova-cloud's /metrics, e.g. nova_cloud_http_refused_total{reason="role"}.
std::uint64_t metric(const nova::test::CloudProcess& cloud, const std::string& series) {
  auto r = cloud.get("/metrics");
  REQUIRE(r);
  const std::size_t at = r->body.find("\n" + series + " ");
  if (at == std::string::npos) return 0;
  return std::stoull(r->body.substr(at + series.size() + 2));
}

}  // namespace

TEST_CASE("nova-cloud rolls an update out in waves, resumes after a SIGKILL, halts on a rollback, loses no batch",
          "[cloud][rollout][integration]") {
  TempDir tmp;
  Broker broker(nova::testing::mutual_tls());
  nova::test::CloudProcess cloud(broker.uri(), tmp.path / "cloud");
  Births births(broker.uri());

  run(std::string(NOVA_DEVICE_BUNDLE) + " make --binary " + NOVA_AGENT_BIN + " --out " + quoted(tmp.path / "bundle") +
      " >/dev/null");
  run("strip --strip-debug -o " + quoted(tmp.path / "v2") + " " NOVA_AGENT_V2_BIN);
  write_file(tmp.path / "v3-exits", "#!/bin/sh\nexit 1\n", fs::perms::owner_all);
  const Bundle v2 = bundle_of(tmp.path / "v2");
  const Bundle v3 = bundle_of(tmp.path / "v3-exits");

  std::vector<std::unique_ptr<Device>> devices;
  for (int i = 1; i <= 3; ++i) {
    devices.push_back(std::make_unique<Device>("dev-" + std::to_string(i), tmp.path, tmp.path / "bundle", broker, false));
  }
  std::map<std::string, std::uint64_t> bdseq;
  for (auto& d : devices) {
    auto b = births.wait_version(d->node(), NOVA_V1_VERSION);
    REQUIRE(b);
    bdseq[d->node()] = *b;
  }
  // nova-cloud knows all three (a target names only nodes whose birth it has).
  REQUIRE(poll_until([&] { return cloud.get_json("/api/v1/nodes").size() == 3; }, 30s));

  // (a) v2, one node a wave. nova-cloud is SIGKILLed right after the 201: the rollout,
  // kept in its store, goes on when it is started again.
  const auto t0 = std::chrono::steady_clock::now();
  json r = start_rollout(cloud, "version=2.0.0-test&subtree=cloud/ota&wave_size=1&deadline_s=60", v2.bytes);
  const std::string id = r["id"];
  CHECK(r["sha256"] == v2.sha256);
  CHECK(r["waves"] == 3);
  CHECK(node_of(r, "dev-1")["phase"] == "offered");
  CHECK(node_of(r, "dev-2")["phase"] == "waiting");
  cloud.kill(SIGKILL);
  cloud.start();
  r = wait_rollout(cloud, id, "succeeded", 120s);
  REQUIRE(r.is_object());
  std::cout << "rollout: v2 to three nodes, one a wave, across a SIGKILL of nova-cloud: "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms\n";
  for (std::size_t i = 0; i < devices.size(); ++i) {
    const json n = node_of(r, devices[i]->node());
    CHECK(n["phase"] == "updated");
    CHECK(n["running_version"] == "2.0.0-test");
    CHECK(n["wave"] == i);
    // A wave is offered only once the one before it reported the version.
    if (i > 0) CHECK(n["offered_ts"].get<std::uint64_t>() >= node_of(r, devices[i - 1]->node())["updated_ts"].get<std::uint64_t>());
    auto b = births.wait_version(devices[i]->node(), "2.0.0-test", bdseq[devices[i]->node()]);
    REQUIRE(b);
    bdseq[devices[i]->node()] = *b;
  }

  // The request and each offer are in nova-cloud's audit log.
  const std::string audit = read_file(cloud.audit_file());
  CHECK(audit.find("\"action\":\"POST /api/v1/rollouts\",\"target\":\"/api/v1/rollouts\",\"outcome\":\"201\"") !=
        std::string::npos);
  for (auto& d : devices) {
    CHECK(audit.find("\"action\":\"publish\",\"target\":\"" + d->update_topic() + "\",\"outcome\":\"sent\"") !=
          std::string::npos);
  }

  // (b) a v3 that exits at once: dev-1's launcher rolls it back, its agent says so, the
  // rollout halts, and dev-2 and dev-3 are never offered it.
  json h = start_rollout(cloud, "version=3.0.0-exits&subtree=cloud/ota&wave_size=1&deadline_s=60", v3.bytes);
  h = wait_rollout(cloud, h["id"], "halted", 60s);
  REQUIRE(h.is_object());
  CHECK(h["halt_reason"] == "node dev-1 rolled back: exited with status 1 during its trial");
  CHECK(node_of(h, "dev-1")["phase"] == "rolled_back");
  CHECK(node_of(h, "dev-1")["reason"] == "exited with status 1 during its trial");
  CHECK(node_of(h, "dev-2")["phase"] == "waiting");
  CHECK(node_of(h, "dev-3")["phase"] == "waiting");
  REQUIRE(births.wait_version("dev-1", "2.0.0-test", bdseq["dev-1"]));
  CHECK(devices[0]->count("switching from " + v2.sha256 + " to " + v3.sha256) == 1);
  for (std::size_t i : {std::size_t{1}, std::size_t{2}}) CHECK(devices[i]->count(v3.sha256) == 0);

  // Every batch each device made is stored at nova-cloud: stop all, count what each
  // made, start them again so the last ones drain; nova-cloud's watermark of each
  // metrics stream (every seq at or below it stored, and none declared gone) reaches it.
  std::map<std::string, std::uint64_t> made = batches_made_then_restart(devices);
  for (auto& d : devices) {
    INFO(d->node() << " made " << made[d->node()] << " batches");
    CHECK(made[d->node()] >= 2);
    std::uint64_t watermark = 0;
    CHECK(poll_until([&] {
      const json n = cloud.get_json("/api/v1/nodes/" + d->node());
      watermark = n.is_object() ? n["watermarks"].value("metrics", std::uint64_t{0}) : 0;
      return watermark >= made[d->node()];
    }, 60s));
    std::cout << "rollout: " << d->node() << " made " << made[d->node()] << " batches across two rollouts, "
              << "nova-cloud's watermark " << watermark << "\n";
  }
  CHECK(metric(cloud, "nova_cloud_seqs_skipped_total") == 0);
}

TEST_CASE("bad rollout requests get a 4xx naming the field, are counted and audited", "[cloud][rollout][integration]") {
  TempDir tmp;
  Broker broker(nova::testing::mutual_tls());
  nova::test::CloudProcess cloud(broker.uri(), tmp.path / "cloud");
  auto viewer = nova::cloud::create_token("watcher", nova::cloud::Role::viewer, "");
  REQUIRE(viewer);
  std::ofstream(cloud.tokens_file(), std::ios::app) << viewer->line << '\n';
  REQUIRE(::kill(cloud.pid(), SIGHUP) == 0);
  REQUIRE(poll_until([&] { return read_file(cloud.log_file()).find("tokens_reloaded") != std::string::npos; }, 10s));

  const std::string script = "#!/bin/sh\nexit 0\n";
  write_file(tmp.path / "script", script);
  const std::string url = "http://127.0.0.1:" + std::to_string(cloud.port()) + "/api/v1/rollouts";
  // An outside client: curl, with or without a token; the status and the body.
  const auto curl = [&](const std::string& token, const std::string& query, const std::string& type,
                        const fs::path& body) {
    const fs::path out = tmp.path / "reply";
    const std::string command = "curl -s -o " + quoted(out) + " -w '%{http_code}' -X POST -H 'Content-Type: " + type +
                                "' " + (token.empty() ? "" : "-H 'Authorization: Bearer " + token + "' ") +
                                "--data-binary @" + quoted(body) + " '" + url + "?" + query + "' > " +
                                quoted(tmp.path / "status");
    run(command);
    return std::make_pair(std::stoi(read_file(tmp.path / "status")), json::parse(read_file(out))["error"].get<std::string>());
  };
  const std::string admin = cloud.admin_token();

  auto [status, error] = curl("", "version=2&node=dev-1", kBundleType, tmp.path / "script");
  CHECK(status == 401);
  CHECK(error == "Authorization: expected \"Bearer <token>\"");
  std::tie(status, error) = curl(viewer->token, "version=2&node=dev-1", kBundleType, tmp.path / "script");
  CHECK(status == 403);
  CHECK(error == "role: 'watcher' is a viewer; POST /api/v1/rollouts needs admin");
  std::tie(status, error) = curl(admin, "version=2&node=dev-1", "application/json", tmp.path / "script");
  CHECK(status == 415);
  CHECK(error == "Content-Type: expected application/octet-stream, got 'application/json'");
  write_file(tmp.path / "zip", "PK\x03\x04 not an executable");
  std::tie(status, error) = curl(admin, "version=2&node=dev-1", kBundleType, tmp.path / "zip");
  CHECK(status == 400);
  CHECK(error.rfind("body: not an update bundle: expected an executable", 0) == 0);
  std::tie(status, error) = curl(admin, "version=2&node=nope", kBundleType, tmp.path / "script");
  CHECK(status == 404);
  CHECK(error == "node: 'nope' names no node known here");
  std::tie(status, error) = curl(admin, "version=2", kBundleType, tmp.path / "script");
  CHECK(status == 400);
  CHECK(error == "target: give exactly one of node, site or subtree");
  std::tie(status, error) = curl(admin, "version=2&subtree=cloud&wave_size=0", kBundleType, tmp.path / "script");
  CHECK(status == 400);
  CHECK(error == "wave_size: expected an integer 1..10000");
  std::tie(status, error) = curl(admin, "node=dev-1", kBundleType, tmp.path / "script");
  CHECK(status == 400);
  CHECK(error == "version: expected 1..256 bytes, what the new agent's birth reports");

  // Over the limit: python's http.client declares a body and sends none of it; nova-cloud
  // answers from the declared length, before reading a byte of the body: a bundle of
  // 64 MiB + 1 (with a token), and 2 MiB of JSON from a caller without a token.
  const fs::path py = tmp.path / "oversized.py";
  write_file(py, "import http.client, sys\n"
                 "def declare(path, token, length):\n"
                 "    c = http.client.HTTPConnection('127.0.0.1', " + std::to_string(cloud.port()) + ", timeout=10)\n"
                 "    c.putrequest('POST', path)\n"
                 "    if token: c.putheader('Authorization', 'Bearer ' + token)\n"
                 "    c.putheader('Content-Type', 'application/octet-stream' if 'rollouts' in path else 'application/json')\n"
                 "    c.putheader('Content-Length', str(length))\n"
                 "    c.endheaders()\n"
                 "    r = c.getresponse()\n"
                 "    print(r.status, r.read().decode())\n"
                 "declare('/api/v1/rollouts?version=2&node=dev-1', '" + admin + "', " +
                     std::to_string(nova::cloud::kMaxBundleBytes) + " + 1)\n"
                 "declare('/api/v1/workloads', '', 2 << 20)\n");
  run("/usr/bin/python3 " + quoted(py) + " > " + quoted(tmp.path / "oversized.out"));
  CHECK(read_file(tmp.path / "oversized.out") == "413 {\"error\":\"body: larger than 67108864 bytes\"}\n"
                                                 "413 {\"error\":\"body: larger than 1048576 bytes\"}\n");

  CHECK(metric(cloud, "nova_cloud_http_refused_total{reason=\"missing_token\"}") == 1);
  CHECK(metric(cloud, "nova_cloud_http_refused_total{reason=\"role\"}") == 1);
  CHECK(metric(cloud, "nova_cloud_http_refused_total{reason=\"content_type\"}") == 1);
  CHECK(metric(cloud, "nova_cloud_http_refused_total{reason=\"bad_request\"}") == 4);
  CHECK(metric(cloud, "nova_cloud_http_refused_total{reason=\"unknown_target\"}") == 1);
  CHECK(metric(cloud, "nova_cloud_http_refused_total{reason=\"body_too_large\"}") == 2);
  // Every request that reached a route is in the audit log with its status.
  const std::string audit = read_file(cloud.audit_file());
  for (const char* outcome : {"401", "403", "415", "400", "404"}) {
    CHECK(audit.find("\"action\":\"POST /api/v1/rollouts\",\"target\":\"/api/v1/rollouts\",\"outcome\":\"" +
                     std::string(outcome) + "\"") != std::string::npos);
  }
  // And it keeps serving.
  auto health = cloud.get("/api/v1/health");
  REQUIRE(health);
  CHECK(health->status == 200);
}
