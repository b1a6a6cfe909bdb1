// Issue 10's attacks on the REST API, made by an outside client (curl) against a real
// nova-cloud with authentication on: a write without credentials, a cross-origin
// text/plain write (what a web page can send without a preflight), a foreign Host
// (DNS rebinding), a foreign Origin. Each is refused and counted, and nothing is created.
// Also: `nova-cloud token create` and SIGHUP reloading the tokens file.
#include <signal.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cloud_process.h"
#include "curl.h"
#include "nova/schemas/codec.h"
#include "nova/testing/broker.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using test::curl;

std::string run(const std::string& command, int& exit_code) {
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
  const int status = ::pclose(pipe);
  exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

bool log_has(const test::CloudProcess& cloud, const std::string& text, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(cloud.log_file());
    const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (log.find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(50ms);  // another process's log file
  }
  return false;
}

constexpr const char* kWorkload =
    R"({"v":1,"workload_id":"w-attack","name":"n","argv":["touch","/tmp/pwned"],"timeout_ms":1000,)"
    R"("availability":0.9,"res":{"cpu_millis":1,"memory_mb":1,"storage_mb":0}})";

}  // namespace

TEST_CASE("REST attacks from an outside client are refused with a reason and counted", "[cloud][auth][hostile]") {
  testing::Broker broker(testing::mutual_tls());
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud");
  const std::string api = "http://127.0.0.1:" + std::to_string(cloud.port());
  const std::string workloads = api + "/api/v1/workloads";

  // No credentials, as a script would send it.
  auto r = curl({"-X", "POST", "-H", "Content-Type: application/json", "--data", kWorkload, workloads});
  CHECK(r.status == 401);
  CHECK(r.body == R"({"error":"Authorization: expected \"Bearer <token>\""})");
  // A web page's fetch() or form: text/plain, its own Origin, no token (a browser has none
  // to send: the dashboard keeps it in sessionStorage, not in a cookie).
  r = curl({"-X", "POST", "-H", "Content-Type: text/plain", "-H", "Origin: http://evil.example", "--data", kWorkload,
            workloads});
  CHECK(r.status == 401);
  const std::string bearer = "Authorization: Bearer " + cloud.admin_token();
  // Even with a token: text/plain is not a write format, a foreign Origin is not a caller.
  r = curl({"-X", "POST", "-H", bearer, "-H", "Content-Type: text/plain", "--data", kWorkload, workloads});
  CHECK(r.status == 415);
  r = curl({"-X", "POST", "-H", bearer, "-H", "Content-Type: application/json", "-H", "Origin: http://evil.example",
            "--data", kWorkload, workloads});
  CHECK(r.status == 403);
  CHECK(r.body == R"({"error":"Origin: 'http://evil.example' is not an allowed origin"})");
  // DNS rebinding: evil.example resolved to 127.0.0.1, the browser sends its own name.
  r = curl({"-H", bearer, "-H", "Host: evil.example:" + std::to_string(cloud.port()), api + "/api/v1/nodes"});
  CHECK(r.status == 421);
  // A token that is not in the file.
  r = curl({"-H", "Authorization: Bearer " + std::string(64, '0'), api + "/api/v1/nodes"});
  CHECK(r.status == 401);

  CHECK(curl({"-H", bearer, workloads}).body == "[]");  // nothing was created
  const std::string metrics = curl({api + "/metrics"}).body;  // open, as Prometheus expects
  CHECK(metrics.find("nova_cloud_http_refused_total{reason=\"missing_token\"} 2\n") != std::string::npos);
  CHECK(metrics.find("nova_cloud_http_refused_total{reason=\"bad_token\"} 1\n") != std::string::npos);
  CHECK(metrics.find("nova_cloud_http_refused_total{reason=\"content_type\"} 1\n") != std::string::npos);
  CHECK(metrics.find("nova_cloud_http_refused_total{reason=\"bad_origin\"} 1\n") != std::string::npos);
  CHECK(metrics.find("nova_cloud_http_refused_total{reason=\"bad_host\"} 1\n") != std::string::npos);

  // The legitimate call, for contrast.
  r = curl({"-X", "POST", "-H", bearer, "-H", "Content-Type: application/json", "--data", kWorkload, workloads});
  CHECK(r.status == 201);
}

TEST_CASE("nova-cloud token create appends a hashed token that SIGHUP makes valid", "[cloud][auth][process]") {
  testing::Broker broker(testing::mutual_tls());
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud");
  const std::string nodes = "http://127.0.0.1:" + std::to_string(cloud.port()) + "/api/v1/nodes";
  int exit_code = -1;
  const std::string printed = run(std::string(NOVA_CLOUD_BIN) + " token create --name ops-eu --role operator --scope cloud/eu"
                                  " --tokens-file " + cloud.tokens_file().string(), exit_code);
  REQUIRE(exit_code == 0);
  REQUIRE(printed.size() == 65);  // 64 hex digits and a newline
  const std::string token = printed.substr(0, 64);
  std::ifstream in(cloud.tokens_file());
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(file.find(token) == std::string::npos);  // only its hash is stored
  CHECK(file.find(" ops-eu operator cloud/eu\n") != std::string::npos);

  CHECK(curl({"-H", "Authorization: Bearer " + token, nodes}).status == 401);  // not loaded yet
  REQUIRE(::kill(cloud.pid(), SIGHUP) == 0);
  REQUIRE(log_has(cloud, "tokens_reloaded tokens=2", 10s));
  CHECK(curl({"-H", "Authorization: Bearer " + token, nodes}).status == 200);

  // A file it creates is readable by its owner only.
  const fs::path fresh = broker.data_dir() / "fresh-tokens";
  run(std::string(NOVA_CLOUD_BIN) + " token create --name v --role viewer --tokens-file " + fresh.string(), exit_code);
  CHECK(exit_code == 0);
  CHECK((fs::status(fresh).permissions() & (fs::perms::group_all | fs::perms::others_all)) == fs::perms::none);
  run(std::string(NOVA_CLOUD_BIN) + " token create --name x --role root --tokens-file /dev/null 2>/dev/null", exit_code);
  CHECK(exit_code == 2);
}

// Issue 10 item 9: a REST write and the placement it caused are in the hash-chained audit
// log, with the token's name as the actor; `nova-cloud audit verify` accepts the log and
// names the entry whose byte was changed.
TEST_CASE("a REST write and its placement are in the audit log, which verify checks", "[cloud][audit][process]") {
  testing::Broker broker(testing::mutual_tls());
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud");
  int exit_code = -1;
  const std::string token = run(std::string(NOVA_CLOUD_BIN) + " token create --name ops-audit --role operator"
                                " --tokens-file " + cloud.tokens_file().string(), exit_code).substr(0, 64);
  REQUIRE(exit_code == 0);
  REQUIRE(::kill(cloud.pid(), SIGHUP) == 0);
  REQUIRE(log_has(cloud, "tokens_reloaded tokens=2", 10s));

  // A node to place on, born by an outside client.
  schemas::NodeState birth;
  birth.node = "gw-audit";
  birth.status = schemas::NodeStatus::online;
  birth.bdseq = 1;
  birth.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {4000, 4096, 10000}, std::nullopt};
  const auto bytes = schemas::encode_cbor(birth);
  const fs::path birth_file = broker.data_dir() / "birth.cbor";
  std::ofstream(birth_file, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                    static_cast<std::streamsize>(bytes.size()));
  run("mosquitto_pub " + broker.mosquitto_client_args("gw-audit") + " -q 1 -r -t nova/v1/up/gw-audit/state -f " +
          birth_file.string(), exit_code);
  REQUIRE(exit_code == 0);
  const std::string api = "http://127.0.0.1:" + std::to_string(cloud.port());
  const auto alive = [&] { return curl({"-H", "Authorization: Bearer " + token, api + "/api/v1/nodes/gw-audit"}).status == 200; };
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!alive() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);  // another process
  REQUIRE(alive());

  auto r = curl({"-X", "POST", "-H", "Authorization: Bearer " + token, "-H", "Content-Type: application/json", "--data",
                 std::string(kWorkload), api + "/api/v1/workloads"});
  REQUIRE(r.status == 201);
  r = curl({"-X", "POST", "-H", "Content-Type: application/json", "--data", std::string(kWorkload), api + "/api/v1/workloads"});
  REQUIRE(r.status == 401);

  std::vector<std::string> lines;
  {
    std::ifstream in(cloud.audit_file());
    for (std::string l; std::getline(in, l);) lines.push_back(l);
  }
  const auto has = [&](const std::string& a, const std::string& b) {
    return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) {
      return l.find(a) != std::string::npos && l.find(b) != std::string::npos;
    });
  };
  CHECK(has(R"("actor":"ops-audit","action":"POST /api/v1/workloads","target":"/api/v1/workloads","outcome":"201")", ""));
  CHECK(has(R"("actor":"anonymous","action":"POST /api/v1/workloads")", R"("outcome":"401")"));
  CHECK(has(R"("actor":"nova-cloud","action":"publish","target":"nova/v1/cloud/placement/w-attack","outcome":"sent")", ""));
  CHECK(has(R"("actor":"nova-cloud","action":"publish","target":"nova/v1/down/cloud/eu/par/par-a1/gw-audit/task")", ""));

  std::string out = run(std::string(NOVA_CLOUD_BIN) + " audit verify " + cloud.audit_file().string(), exit_code);
  CHECK(exit_code == 0);
  CHECK(out == cloud.audit_file().string() + ": " + std::to_string(lines.size()) + " entries, chain intact\n");
  // One byte of entry 2 changed (its actor's first letter): verify names entry 2.
  REQUIRE(lines.size() >= 3);
  const std::size_t at = lines[1].find(R"("actor":")") + 9;
  lines[1][at] = lines[1][at] == 'x' ? 'y' : 'x';
  {
    std::ofstream outf(cloud.audit_file(), std::ios::trunc);
    for (const auto& l : lines) outf << l << '\n';
  }
  out = run(std::string(NOVA_CLOUD_BIN) + " audit verify " + cloud.audit_file().string(), exit_code);
  CHECK(exit_code == 1);
  CHECK(out.find(": entry 2 is broken: hash: does not match the entry's text (the entry was changed)") != std::string::npos);
}
