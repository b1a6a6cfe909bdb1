// The agent side of the cloud's ingest tests: the real agent loop, fed by a generator of
// one-second samples as fast as the loop takes them (sample_interval 0), with a fast
// drain and a 1 s stall timer so replays after a cloud's death come quickly.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>

#include "nova/agent/agent.h"
#include "nova/testing/signer.h"
#include "nova/testing/test_pki.h"

namespace nova::test {

inline constexpr schemas::Timestamp kGeneratorStart = 1'732'650'000'000;

// `count` samples stamped one second apart from kGeneratorStart; a short pause every 600
// so the stream spans the kills the tests make.
class Generator final : public agent::SampleSource {
 public:
  explicit Generator(std::uint64_t count) : count_(count) {}
  const schemas::MetricSample* sample(schemas::Timestamp) override {
    if (next_ == count_) return nullptr;
    if (next_ % 600 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    s_.ts = kGeneratorStart + next_ * 1000;
    s_.cpu_pct = static_cast<double>(next_ % 100);
    s_.mem_pct = 40;
    ++next_;
    return &s_;
  }

 private:
  std::uint64_t count_;
  std::uint64_t next_ = 0;
  schemas::MetricSample s_;
};

// outbox_max_bytes: the outbox's disk cap (0: the default).
inline agent::AgentOptions streaming_agent(const std::string& node, const std::string& uri,
                                           const std::filesystem::path& dir, std::uint64_t outbox_max_bytes = 0) {
  using namespace std::chrono_literals;
  agent::AgentOptions o;
  o.birth.node = node;
  o.birth.description =
      schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
  o.broker_uri = uri;
  o.tls = testing::tls_files_for(uri, node);
  o.reconnect_min = 100ms;
  o.reconnect_max = 500ms;
  o.sample_interval = 0ms;
  o.drain.rate_per_s = 400;
  o.drain.burst = 100;
  o.drain.jitter = 0ms;
  o.drain.resend_after = 1s;
  // These tests count records exactly; local decisions (alerts on the generator's cpu
  // values) would add records on other streams.
  o.decisions.cpu = o.decisions.mem = o.decisions.disk = o.decisions.temp = agent::ThresholdRule{0, 0};
  o.decisions.zscore.threshold = 0;
  o.outbox.dir = dir / "outbox";
  if (outbox_max_bytes != 0) o.outbox.max_bytes = outbox_max_bytes;
  o.state_dir = dir / "state";
  o.control.keys = {testing::test_signer().verify_key()};  // nova-cloud's key in these tests
  return o;
}

}  // namespace nova::test
