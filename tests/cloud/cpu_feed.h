// A test publisher of the two devices' CPU (two_devices.h), and the cloud config that
// migrates on it quickly: the CPU nova-cloud judges is the test's, not the shared
// machine's. Used by the migration and fencing process tests.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include <mqtt/client.h>

#include "two_devices.h"
#include "nova/schemas/codec.h"
#include "nova/testing/paho_tls.h"

namespace nova::test {

constexpr schemas::Timestamp kDwellMs = 10'000;
constexpr schemas::Timestamp kSustainMs = 3'000;
constexpr const char* kMigrationYaml =
    "migration:\n  overload_high_pct: 90\n  overload_low_pct: 75\n  overload_sustain_s: 3\n  min_dwell_s: 10\n"
    "  max_per_node: 2\n  per_node_window_s: 600\n";

inline schemas::Timestamp wall_ms() {
  return static_cast<schemas::Timestamp>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

enum class Load { calm, around_90, full };

// Publishes each node's CPU every 250 ms until destroyed; remembers when each node's
// first sample at 100 % was stamped.
class CpuFeed {
 public:
  explicit CpuFeed(const std::string& uri) : client_(uri, "test-cpu-feed") {
    client_.connect(testing::connect_options(uri, "test-cpu-feed"));  // the test PKI's certificate for mqtts://
    for (const auto& n : kTwoDevices) load_[n] = Load::calm;
    thread_ = std::thread([this] { run(); });
  }
  ~CpuFeed() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
    client_.disconnect();
  }
  void set(const std::string& node, Load load) {
    std::lock_guard lock(mutex_);
    load_[node] = load;
    if (load != Load::full) first_full_.erase(node);
  }
  // The stamp of the first sample at 100 % since set(node, full); 0 before it is sent.
  schemas::Timestamp first_full(const std::string& node) {
    std::lock_guard lock(mutex_);
    auto it = first_full_.find(node);
    return it == first_full_.end() ? 0 : it->second;
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    std::uint64_t seq = 0;
    while (!stop_) {
      ++seq;
      for (const auto& node : kTwoDevices) {
        schemas::MetricsBatch batch;
        batch.position = {node, "cpu-feed", seq};
        schemas::MetricSample s;
        s.ts = wall_ms();
        switch (load_[node]) {
          case Load::calm: s.cpu_pct = 10; break;
          case Load::around_90: s.cpu_pct = seq % 2 == 0 ? 95 : 85; break;
          case Load::full:
            s.cpu_pct = 100;
            first_full_.try_emplace(node, s.ts);
            break;
        }
        s.mem_pct = 40;
        batch.samples = {s};
        const schemas::Bytes payload = schemas::encode_cbor(batch);
        client_.publish(mqtt::make_message("nova/v1/up/" + node + "/metrics", payload.data(), payload.size(), 1, false));
      }
      // The feed's rate, not a wait for a condition: stop_ ends it at once.
      wake_.wait_for(lock, 250ms, [this] { return stop_; });
    }
  }

  mqtt::client client_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::map<std::string, Load> load_;
  std::map<std::string, schemas::Timestamp> first_full_;
  std::thread thread_;
};

}  // namespace nova::test
