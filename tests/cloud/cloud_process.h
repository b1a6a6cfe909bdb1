// A real nova-cloud process for integration tests: written config, a free HTTP port,
// started with PR_SET_PDEATHSIG (it never outlives the test), ready once /api/v1/health
// answers. SIGKILL and restart on the same store keep the port and the data. It signs
// control messages with the test signer's key (nova/testing/signer.h).
#pragma once

#include <httplib.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "nova/cloud/auth.h"
#include "nova/testing/broker.h"
#include "nova/testing/child_process.h"
#include "nova/testing/poll.h"
#include "nova/testing/signer.h"
#include "nova/testing/test_pki.h"

namespace nova::test {

class CloudProcess {
 public:
  // With a TLS broker_uri (mqtts://), nova-cloud presents `identity`, by default the
  // test PKI's nova-cloud identity. `extra_yaml`: further sections of the config file.
  // A `store_key_file` seals the store (store.key_file).
  CloudProcess(const std::string& broker_uri, const std::filesystem::path& dir, const std::string& client_id = "nova-cloud",
               const std::string& shared_group = "", std::uint32_t heartbeat_timeout_s = 180,
               const std::optional<testing::TlsIdentity>& identity = std::nullopt, const std::string& extra_yaml = "",
               const std::filesystem::path& store_key_file = {})
      : dir_(dir), port_(testing::free_loopback_port()) {
    std::filesystem::create_directories(dir);
    // Authentication on, as in production: an admin token the test's client sends.
    auto admin = cloud::create_token("test-admin", cloud::Role::admin, "");
    if (!admin) throw std::runtime_error(admin.error().message());
    token_ = admin->token;
    std::ofstream(tokens_file(), std::ios::app) << admin->line << '\n';
    std::ofstream(dir / "cloud.yaml") << "mqtt:\n  uri: \"" << broker_uri << "\"\n  client_id: " << client_id
                                      << "\n  shared_group: \"" << shared_group << "\"\n" << tls_keys(broker_uri, identity)
                                      << "store:\n  dir: " << (dir / "store").string()
                                      << (store_key_file.empty() ? "" : "\n  key_file: " + store_key_file.string())
                                      << "\nliveness:\n  heartbeat_timeout_s: " << heartbeat_timeout_s
                                      << "\nhttp:\n  port: " << port_ << "\nauth:\n  tokens_file: " << tokens_file().string()
                                      << "\naudit:\n  file: " << audit_file().string()
                                      // Signs with the key test agents trust (signer.h).
                                      << "\nsigning:\n  key_file: " << testing::test_signer().private_file().string()
                                      << "\n" << extra_yaml;
    start();
  }
  ~CloudProcess() = default;  // the child is SIGKILLed

  // The mqtt.tls_* keys for a TLS test broker (mqtts://); none for a plaintext one.
  static std::string tls_keys(const std::string& broker_uri, const std::optional<testing::TlsIdentity>& identity) {
    if (!broker_uri.starts_with("mqtts://")) return "";
    const testing::TlsIdentity id = identity ? *identity : testing::client_identity("nova-cloud");
    return "  tls_ca_file: " + id.ca.string() + "\n  tls_cert_file: " + id.cert.string() + "\n  tls_key_file: " +
           id.key.string() + "\n";
  }
  CloudProcess(const CloudProcess&) = delete;
  CloudProcess& operator=(const CloudProcess&) = delete;

  void start() {
    child_.start({NOVA_CLOUD_BIN, "--config", (dir_ / "cloud.yaml").string()}, log_file(), true);
    wait_ready();
  }

  // Sends `sig` and reaps the process; returns its wait status.
  int kill(int sig) { return child_.signal(sig); }

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return child_.pid(); }
  std::filesystem::path store_dir() const { return dir_ / "store"; }
  std::filesystem::path log_file() const { return dir_ / "cloud.log"; }
  std::filesystem::path tokens_file() const { return dir_ / "tokens"; }
  std::filesystem::path audit_file() const { return dir_ / "audit.log"; }
  const std::string& admin_token() const { return token_; }

  // Requests with the admin token.
  httplib::Result get(const std::string& path) const { return client().Get(path.c_str()); }
  httplib::Result post(const std::string& path, const std::string& body,
                       const std::string& content_type = "application/json") const {
    return client().Post(path.c_str(), body, content_type.c_str());
  }
  nlohmann::json get_json(const std::string& path) const {
    auto r = get(path);
    if (!r || r->status != 200) return nullptr;
    return nlohmann::json::parse(r->body, nullptr, false);
  }
  // Polls GET `path` (another process's state) until `pred` holds on its JSON.
  bool poll_json(const std::string& path, const std::function<bool(const nlohmann::json&)>& pred,
                 std::chrono::milliseconds timeout) const {
    return testing::poll_until(
        [&] {
          const nlohmann::json j = get_json(path);
          return !j.is_null() && !j.is_discarded() && pred(j);
        },
        timeout);
  }

 private:
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(std::chrono::seconds(2));
    c.set_read_timeout(std::chrono::seconds(10));
    c.set_bearer_token_auth(token_.c_str());
    return c;
  }
  void wait_ready() {
    for (int i = 0; i < 400; ++i) {
      if (auto r = get("/api/v1/health"); r && r->status == 200) return;
      if (!child_.running()) {
        throw std::runtime_error("nova-cloud exited at start; see " + log_file().string());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));  // nothing to wait on but the port
    }
    throw std::runtime_error("nova-cloud did not answer on its port within 10 s");
  }

  std::filesystem::path dir_;
  std::uint16_t port_;
  std::string token_;
  testing::ChildProcess child_;
};

}  // namespace nova::test
