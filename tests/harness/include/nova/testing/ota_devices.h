// Devices for over-the-air update tests (docs/agent.md, "Device bundles" and "Updates"):
// each provisioned by firmware/nova-device-bundle into its own tree and run by the real
// launcher (as systemd's ExecStart does) or through the init script, on a mutual-TLS
// test broker; the births every consumer sees; the bundles. Shared by
// tests/agent/update_test.cpp (the test drives the waves) and
// tests/cloud/rollout_test.cpp (nova-cloud does).
//
// The including test defines NOVA_DEVICE_BUNDLE (the tool's path) and links nova::agent
// (Device::batches_made reads the device's outbox), Paho and the test harness.
#pragma once

#include <mqtt/async_client.h>
#include <signal.h>
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "nova/agent/outbox.h"
#include "nova/schemas/codec.h"
#include "nova/security/digest.h"
#include "nova/security/sealed_records.h"
#include "nova/testing/broker.h"
#include "nova/testing/child_process.h"
#include "nova/testing/paho_tls.h"
#include "nova/testing/signer.h"
#include "nova/testing/test_pki.h"

#ifndef NOVA_DEVICE_BUNDLE
#error "define NOVA_DEVICE_BUNDLE: the path of firmware/nova-device-bundle"
#endif

namespace nova::testing::ota {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

inline constexpr const char* kOtaSite = "cloud/ota";
inline constexpr int kOtaTrialS = 5;  // seconds a new version has to come up healthy

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_file(const fs::path& p, const std::string& text, fs::perms perms = fs::perms::owner_read | fs::perms::owner_write) {
  std::ofstream(p, std::ios::binary) << text;
  fs::permissions(p, perms);
}

inline void run(const std::string& command) {
  INFO(command);
  REQUIRE(std::system(command.c_str()) == 0);
}

inline std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

// A test folder, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "nova-update.XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    if (std::getenv("NOVA_KEEP_TEST_DIRS") == nullptr) fs::remove_all(path, ec);
  }
};

// The latest birth of every node, as any consumer of nova/v1/up/+/state sees it.
class Births {
 public:
  explicit Births(const std::string& uri)
      : client_(uri, "ota-test-births", mqtt::create_options(MQTTVERSION_3_1_1)) {
    client_.set_message_callback([this](mqtt::const_message_ptr m) {
      auto s = nova::schemas::decode_cbor<nova::schemas::NodeState>(m->get_payload_str());
      if (!s || s->status != nova::schemas::NodeStatus::online) return;
      std::lock_guard lock(mutex_);
      latest_[s->node] = *s;
      cv_.notify_all();
    });
    client_.connect(nova::testing::connect_options(uri, "nova-cloud"))->wait();
    client_.subscribe("nova/v1/up/+/state", 1)->wait();
  }
  ~Births() { client_.disconnect()->wait(); }

  // Waits for a birth of `node` reporting `version` with a bdseq above `after`; its bdseq.
  std::optional<std::uint64_t> wait_version(const std::string& node, const std::string& version,
                                            std::uint64_t after = 0, std::chrono::milliseconds timeout = 60s) {
    std::unique_lock lock(mutex_);
    std::optional<std::uint64_t> seen;
    cv_.wait_for(lock, timeout, [&] {
      auto it = latest_.find(node);
      if (it == latest_.end() || it->second.bdseq <= after || it->second.description->version != version) return false;
      seen = it->second.bdseq;
      return true;
    });
    return seen;
  }

 private:
  mqtt::async_client client_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::string, nova::schemas::NodeState> latest_;
};

// One device: its tree provisioned from the bundle (prefix = the tree itself), run by the
// launcher directly (as systemd's ExecStart does) or through the init script.
class Device {
 public:
  Device(const std::string& node, const fs::path& root, const fs::path& bundle, const Broker& broker, bool init_script,
         const std::string& site = kOtaSite, int trial_s = kOtaTrialS)
      : node_(node), site_(site), root_(root / node), init_script_(init_script), trial_s_(trial_s) {
    const nova::testing::TlsIdentity id = nova::testing::client_identity(node);
    const fs::path tls = root / (node + "-tls");
    fs::create_directories(tls);
    fs::copy_file(id.ca, tls / "ca.pem");
    fs::copy_file(id.cert, tls / "cert.pem");
    fs::copy_file(id.key, tls / "key.pem");
    run(std::string(NOVA_DEVICE_BUNDLE) + " provision --bundle " + quoted(bundle) + " --out " + quoted(root_) +
        " --prefix " + quoted(root_) + " --node " + node + " --site " + site_ + " --level 5 --broker " +
        broker.uri() + " --tls-dir " + quoted(tls) + " --signing-key " +
        quoted(nova::testing::test_signer().public_file()) + " --trial-s " + std::to_string(trial_s_) +
        " --config-extra 'metrics: {interval_ms: 500, batch_interval_s: 10}\ndrain: {jitter_ms: 0}' >/dev/null");
    start();
  }
  ~Device() { stop(); }

  void start() {
    if (init_script_) {
      run(quoted(root_ / "etc/init.d/nova-agent") + " start >/dev/null");
    } else {
      launcher_ = std::make_unique<nova::testing::ChildProcess>();
      launcher_->start({(root_ / "opt/nova-agent/bin/nova-agent-launch").string(), (root_ / "opt/nova-agent").string(),
                        (root_ / "etc/nova-agent/agent.yaml").string(), std::to_string(trial_s_)},
                       log_file(), true);
    }
  }
  void stop() {
    if (init_script_) {
      std::system((quoted(root_ / "etc/init.d/nova-agent") + " stop >/dev/null").c_str());
    } else if (launcher_) {
      launcher_->signal(SIGTERM);  // the launcher stops the agent, then itself
      launcher_.reset();
    }
  }
  fs::path log_file() const { return init_script_ ? root_ / "var/log/nova-agent.log" : root_ / "launch.log"; }
  std::string log() const { return read_file(log_file()); }
  std::size_t count(const std::string& needle) const {
    const std::string t = log();
    std::size_t n = 0;
    for (auto p = t.find(needle); p != std::string::npos; p = t.find(needle, p + 1)) ++n;
    return n;
  }
  // Waits for the log (launcher and agent lines) to hold `needle` `n` times.
  bool wait_log(const std::string& needle, std::size_t n = 1, std::chrono::milliseconds timeout = 60s) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (count(needle) < n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(50ms);  // a file other processes write
    }
    return true;
  }
  // Metrics batches this device made, every version and run of it: the last seq its
  // outbox gave. Only while stopped (LevelDB admits one process).
  std::uint64_t batches_made() const {
    // Sealed with the storage key provisioning wrote (docs/security.md, Encryption at rest).
    nova::agent::OutboxOptions options;
    options.dir = root_ / "var/lib/nova-agent/outbox";
    auto key = nova::security::load_storage_key(root_ / "etc/nova-agent/storage.key");
    REQUIRE(key);
    options.storage.key = key.value();
    auto outbox = nova::agent::Outbox::open(options);
    INFO((outbox ? "" : outbox.error().message()));
    REQUIRE(outbox);
    return outbox.value()->next_seq("metrics") - 1;
  }
  // The agent the launcher runs now (the launcher's only child), or -1.
  pid_t agent_pid() const { return launcher_ ? only_child_of(launcher_->pid()) : -1; }
  fs::path versions() const { return root_ / "opt/nova-agent/versions"; }
  const std::string& node() const { return node_; }
  std::string update_topic() const { return "nova/v1/down/" + site_ + "/" + node_ + "/update"; }

 private:
  std::string node_;
  std::string site_;
  fs::path root_;
  bool init_script_;
  int trial_s_;
  std::unique_ptr<nova::testing::ChildProcess> launcher_;
};

// Stops every device, reads how many metrics batches each made (node -> count), and
// starts them again so that their last batches drain: what each must have delivered by
// the end of a test.
inline std::map<std::string, std::uint64_t> batches_made_then_restart(
    const std::vector<std::unique_ptr<Device>>& devices) {
  std::map<std::string, std::uint64_t> made;
  for (const auto& d : devices) d->stop();
  for (const auto& d : devices) {
    made[d->node()] = d->batches_made();
    d->start();
  }
  return made;
}

// An update bundle: the new nova-agent binary (what nova-device-bundle chunks cuts).
struct Bundle {
  std::string bytes;
  std::string sha256;
  fs::path file;
};

inline Bundle bundle_of(const fs::path& file) { return {read_file(file), nova::security::sha256_hex(read_file(file)), file}; }

}  // namespace nova::testing::ota
