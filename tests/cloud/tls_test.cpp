// nova-cloud's MQTT client over mutual TLS, as a real process against a real Mosquitto
// with the harness's TLS listener (require_certificate, use_identity_as_username): what
// it does with a certificate the broker refuses, with TLS files that cannot work, and
// with a plaintext URI. That its subscriptions work over TLS is shown by every test of
// cloud_faults_test, cloud_ingest_test and cloud_scale_out_test, which run on TLS brokers.
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "cloud_process.h"
#include "nova/testing/broker.h"
#include "nova/testing/child_process.h"
#include "nova/testing/test_pki.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// Polls a log file another process writes (nothing to wait on but the file).
bool wait_log(const fs::path& file, const std::string& needle, std::size_t n, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (count(read_file(file), needle) < n) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

std::uint64_t metric(const test::CloudProcess& cloud, const std::string& name) {
  auto r = cloud.get("/metrics");
  if (!r) return 0;
  const std::size_t at = r->body.find("\n" + name + " ");
  if (at == std::string::npos) return 0;
  return std::stoull(r->body.substr(at + name.size() + 2));
}

// Runs nova-cloud on `yaml` until it exits by itself; its exit status and stderr.
std::pair<int, std::string> run_to_exit(const fs::path& dir, const std::string& yaml) {
  fs::create_directories(dir);
  std::ofstream(dir / "cloud.yaml") << yaml;
  testing::ChildProcess cloud;
  cloud.start({NOVA_CLOUD_BIN, "--config", (dir / "cloud.yaml").string()}, dir / "cloud.log", false);
  const int status = cloud.wait();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(dir / "cloud.log")};
}

}  // namespace

TEST_CASE("nova-cloud with a certificate of a foreign CA is refused, logs why, retries and is not ready",
          "[cloud][tls]") {
  testing::Broker broker(testing::mutual_tls());
  // Same CN, same names in its chain, the right trust anchor for the broker: only the
  // certificate's root is another one.
  const testing::TlsIdentity stranger = testing::foreign_identity(broker.data_dir() / "foreign-pki", "nova-cloud");
  const testing::TlsIdentity identity{testing::client_identity("nova-cloud").ca, stranger.cert, stranger.key};
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud", "nova-cloud", "", 180, identity);

  // Retried: a second refusal after the first, the process still serving.
  REQUIRE(wait_log(cloud.log_file(), "connect_failed", 2, 20s));
  const std::string log = read_file(cloud.log_file());
  INFO(log);
  CHECK(log.find("broker=\"" + broker.uri() + "\"") != std::string::npos);
  CHECK(log.find("retry_ms=") != std::string::npos);
  CHECK(log.find("a certificate the broker refuses shows only in the broker's log") != std::string::npos);
  CHECK(log.find("event=connected") == std::string::npos);
  // The broker's side of the refusal.
  CHECK(broker.wait_for_log("certificate verify failed", 5s));
  CHECK(broker.log_count("u'nova-cloud'") == 0);

  auto ready = cloud.get("/readyz");
  REQUIRE(ready);
  CHECK(ready->status == 503);
  CHECK(ready->body.find("not connected") != std::string::npos);
  CHECK(metric(cloud, "nova_cloud_connect_failures_total") >= 2);
  CHECK(cloud.get_json("/api/v1/health")["status"] == "ok");
}

TEST_CASE("nova-cloud with its own certificate connects over TLS as its certificate identity", "[cloud][tls]") {
  testing::Broker broker(testing::mutual_tls());
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud");
  REQUIRE(wait_log(cloud.log_file(), "event=connected", 1, 10s));
  CHECK(broker.log_count("u'nova-cloud'") == 1);
  CHECK(read_file(cloud.log_file()).find("plaintext_uplink") == std::string::npos);
  for (int i = 0; i < 200; ++i) {  // ready once its subscriptions deliver
    if (auto r = cloud.get("/readyz"); r && r->status == 200) break;
    std::this_thread::sleep_for(50ms);
  }
  auto ready = cloud.get("/readyz");
  REQUIRE(ready);
  CHECK(ready->status == 200);

  // The TLS files are read at start only: a changed path is reported, not applied.
  const fs::path config = broker.data_dir() / "cloud" / "cloud.yaml";
  const fs::path key_copy = broker.data_dir() / "cloud" / "key-copy.pem";
  fs::copy_file(testing::client_identity("nova-cloud").key, key_copy);
  std::string yaml = read_file(config);
  const std::string old_key = testing::client_identity("nova-cloud").key.string();
  yaml.replace(yaml.find(old_key), old_key.size(), key_copy.string());
  std::ofstream(config, std::ios::trunc) << yaml;
  REQUIRE(::kill(cloud.pid(), SIGHUP) == 0);
  REQUIRE(wait_log(cloud.log_file(), "needs_restart=mqtt.tls_key_file", 1, 10s));
}

TEST_CASE("nova-cloud refuses TLS files that cannot work with exit 2 naming the key", "[cloud][tls]") {
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir();
  const testing::TlsIdentity cloud = testing::client_identity("nova-cloud");
  const testing::TlsIdentity other = testing::client_identity("gw-other");
  auto yaml = [&](const std::string& uri, const fs::path& ca, const fs::path& cert, const fs::path& key) {
    return "mqtt:\n  uri: \"" + uri + "\"\n  tls_ca_file: " + ca.string() + "\n  tls_cert_file: " + cert.string() +
           "\n  tls_key_file: " + key.string() + "\nstore:\n  dir: " + (dir / "store").string() + "\n";
  };

  SECTION("the key of another certificate") {
    const auto [code, err] = run_to_exit(dir / "mismatch", yaml(broker.uri(), cloud.ca, cloud.cert, other.key));
    INFO(err);
    CHECK(code == 2);
    CHECK(err.find("mqtt.tls_key_file") != std::string::npos);
    CHECK(err.find("does not match the certificate") != std::string::npos);
  }
  SECTION("a missing CA file") {
    const auto [code, err] = run_to_exit(dir / "missing", yaml(broker.uri(), dir / "nope.pem", cloud.cert, cloud.key));
    INFO(err);
    CHECK(code == 2);
    CHECK(err.find("mqtt.tls_ca_file") != std::string::npos);
    CHECK(err.find("does not exist") != std::string::npos);
  }
  SECTION("TLS files beside a plaintext uri") {
    const auto [code, err] = run_to_exit(dir / "plain", yaml("tcp://127.0.0.1:1", cloud.ca, cloud.cert, cloud.key));
    INFO(err);
    CHECK(code == 2);
    CHECK(err.find("mqtt.tls_ca_file") != std::string::npos);
    CHECK(err.find("plaintext") != std::string::npos);
  }
}

TEST_CASE("nova-cloud on a plaintext uri warns plaintext_uplink at start", "[cloud][tls]") {
  testing::Broker broker;  // plaintext on purpose: the warning is what is tested
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud");
  const std::string log = read_file(cloud.log_file());
  INFO(log);
  CHECK(count(log, "plaintext_uplink") == 1);
  CHECK(log.find("broker=\"" + broker.uri() + "\"") != std::string::npos);
}
