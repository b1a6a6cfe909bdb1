// 24 hours offline, accelerated: the agent's real loop buffers a day of one-second
// samples while its broker is down, then drains them after the broker returns; the
// consumer must see every sample exactly once after dedup.
//
// Acceleration: a generator SampleSource hands the loop 86,400 samples stamped one
// second apart, and sample_interval is 0, so the loop takes them as fast as it can
// (batching on the samples' own timestamps). Everything else — outbox, batching,
// reconnect, drain rate, acks — runs as in production.
#include <catch2/catch.hpp>
#include <time.h>

#include <atomic>
#include <filesystem>
#include <optional>
#include <thread>

#include "gateway_options.h"
#include "nova/agent/agent.h"
#include "nova/schemas/codec.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/broker.h"
#include "nova/testing/signer.h"
#include "nova/testing/test_pki.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

class DayOfSamples final : public agent::SampleSource {
 public:
  explicit DayOfSamples(std::uint64_t count) : count_(count) {}
  const schemas::MetricSample* sample(schemas::Timestamp) override {
    if (next_ == count_) return nullptr;
    s_.ts = kStart + next_ * 1000;
    s_.cpu_pct = 20.0 + static_cast<double>(next_ % 50) / 10.0;
    s_.mem_pct = 41.5;
    s_.disk_pct = 63.2;
    s_.load1 = 0.5 + static_cast<double>(next_ % 20) / 100.0;
    s_.net_rx_bps = static_cast<double>(1000 + next_ % 300);
    s_.net_tx_bps = static_cast<double>(700 + next_ % 100);
    s_.temp_c = 45.0 + static_cast<double>(next_ % 10) / 2.0;
    ++next_;
    return &s_;
  }
  std::uint64_t produced() const { return next_; }

 private:
  static constexpr schemas::Timestamp kStart = 1732650000000;
  std::uint64_t count_;
  std::uint64_t next_ = 0;
  schemas::MetricSample s_;
};

std::uint64_t disk_usage(const fs::path& dir) {
  std::uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) total += e.file_size();
  }
  return total;
}

agent::AgentOptions options_for(const std::string& uri, const fs::path& dir) { return test::gateway_options(uri, dir); }

// What a day offline cost, for the encryption-at-rest comparison (docs/benchmarks.md).
struct DayFigures {
  double buffer_s = 0;    // wall time to take and store the day's samples
  double flush_s = 0;     // broker back -> every batch received
  double loop_cpu_s = 0;  // CPU time of the agent's loop thread, buffering and flush
};

double thread_cpu_s() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The day, with the outbox and inbox sealed under `storage_key` or in plaintext.
DayFigures day_offline(std::optional<security::StorageKey> storage_key) {
  DayFigures figures;
  testing::Broker broker(testing::mutual_tls());
  const std::string uri = broker.uri();
  broker.stop();  // the uplink is gone for the whole day

  const fs::path dir = broker.data_dir() / "agent";
  constexpr std::uint64_t kSamples = 86'400;
  DayOfSamples day(kSamples);
  agent::AgentOptions options = options_for(uri, dir);
  options.storage_key = storage_key;
  auto created = agent::Agent::create(options, &day);
  REQUIRE(created.ok());
  agent::Agent& a = *created.value();
  const auto start = std::chrono::steady_clock::now();
  std::thread loop([&] {
    a.run();
    figures.loop_cpu_s = thread_cpu_s();
  });

  // The loop samples as fast as it can; a batch closes every 60 samples of time.
  REQUIRE(a.wait_for([&](const agent::AgentCounters& c) { return c.samples == kSamples; }, 120s));
  figures.buffer_s = seconds_since(start);
  REQUIRE_FALSE(a.connected());
  const std::uint64_t batches = a.counters().batches;
  CHECK(batches == kSamples / 60 - 1);  // the last batch is still open
  const std::uint64_t bytes_on_disk = disk_usage(dir / "outbox");
  WARN("a day of 1 s samples: " << batches << " batches, " << a.outbox().total_bytes()
                                << " payload bytes, " << bytes_on_disk << " bytes on disk");
  CHECK(bytes_on_disk <= 10u * 1024 * 1024);

  // The uplink returns; a consumer acknowledges what it receives.
  broker.restart();
  testing::AckConsumer consumer(broker.uri());
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(consumer.wait_for("gw-1", "metrics", batches, 180s));
  figures.flush_s = seconds_since(t0);
  WARN("flush of " << batches << " batches after reconnect: " << static_cast<long>(figures.flush_s * 1000) << " ms");
  a.stop();
  loop.join();
  created.value().reset();  // releases the outbox (LevelDB allows one owner)
  {
    // Each sample reports the outbox's own state upward (backlog, evictions).
    agent::OutboxOptions o;
    o.dir = dir / "outbox";
    if (storage_key) o.storage.key = storage_key;
    auto box = agent::Outbox::open(o);
    REQUIRE(box.ok());
    auto pending = box.value()->read("metrics", 0, 1);
    REQUIRE(pending.ok());
    REQUIRE(pending->size() == 1);  // the batch stored at stop, not yet acknowledged
    auto batch = schemas::decode_cbor<schemas::MetricsBatch>(pending->front().payload);
    REQUIRE(batch.ok());
    const auto& extra = batch->samples.back().extra;
    CHECK(extra.count("agent.outbox_records") == 1);
    CHECK(extra.count("agent.outbox_bytes") == 1);
    CHECK(extra.at("agent.outbox_evicted") == 0);
  }

  // Restart the agent on the same outbox: the batch left open at stop was stored and
  // now goes up too, and nothing acknowledged is sent again.
  DayOfSamples none(0);
  auto again_options = options_for(broker.uri(), dir);
  again_options.storage_key = storage_key;
  auto again = agent::Agent::create(again_options, &none);
  REQUIRE(again.ok());
  std::thread loop2([&] { again.value()->run(); });
  REQUIRE(consumer.wait_for("gw-1", "metrics", batches + 1, 60s));
  again.value()->stop();
  loop2.join();

  const testing::StreamCount c = consumer.count("gw-1", "metrics");
  CHECK(c.seqs.size() == batches + 1);
  CHECK(c.samples == kSamples);
  CHECK(*c.seqs.begin() == 1);
  CHECK(*c.seqs.rbegin() == batches + 1);
  WARN("duplicates delivered (removed by dedup): " << c.duplicates);
  CHECK(consumer.undecodable() == 0);
  return figures;
}

}  // namespace

TEST_CASE("a day offline: 86,400 samples buffered, then delivered exactly once", "[agent][offline]") {
  day_offline(std::nullopt);
}

// The cost of encryption at rest, plaintext and sealed in one run (docs/benchmarks.md).
// Hidden: it repeats the day three times each; run it by its tag.
TEST_CASE("a day offline, plaintext and sealed", "[.][at_rest_bench]") {
  const security::StorageKey key = security::derive_storage_key("bench secret", "gw-1");
  for (int round = 1; round <= 3; ++round) {
    const DayFigures plain = day_offline(std::nullopt);
    const DayFigures sealed = day_offline(key);
    WARN("round " << round << ": buffer " << plain.buffer_s << " s plaintext, " << sealed.buffer_s
                  << " s sealed (x" << sealed.buffer_s / plain.buffer_s << "); flush " << plain.flush_s << " s, "
                  << sealed.flush_s << " s (x" << sealed.flush_s / plain.flush_s << "); loop CPU " << plain.loop_cpu_s
                  << " s, " << sealed.loop_cpu_s << " s (x" << sealed.loop_cpu_s / plain.loop_cpu_s << ")");
  }
}

namespace {

// One sample, then (once released) a sample a minute later that closes the first batch.
class GatedSamples final : public agent::SampleSource {
 public:
  const schemas::MetricSample* sample(schemas::Timestamp) override {
    if (calls_ == 0 || (calls_ == 1 && released_.load())) {
      s_.ts = 1732650000000 + calls_ * 60'000;
      s_.cpu_pct = 12.5;
      ++calls_;
      return &s_;
    }
    return nullptr;
  }
  void release() { released_.store(true); }

 private:
  std::atomic<bool> released_{false};
  std::uint64_t calls_ = 0;
  schemas::MetricSample s_;
};

}  // namespace

TEST_CASE("the go-back-N stall timer starts at the first unacknowledged send", "[agent][resend]") {
  // The session is older than resend_after when its first batch is sent; that batch
  // must still get resend_after to be acknowledged before it is sent again. Only lower
  // bounds on elapsed time are checked, so a slow machine cannot fail this test.
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir() / "agent-stall";
  GatedSamples source;
  agent::AgentOptions o = options_for(broker.uri(), dir);
  o.drain.jitter = 0ms;
  o.drain.resend_after = 2s;  // no consumer acks in this test
  auto created = agent::Agent::create(o, &source);
  REQUIRE(created.ok());
  agent::Agent& a = *created.value();
  std::thread loop([&] { a.run(); });

  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.connects >= 1 && c.published >= 1; }, 30s));
  std::this_thread::sleep_for(3s);  // the session is now older than resend_after
  const auto released = std::chrono::steady_clock::now();
  source.release();  // batch 1 closes at the next sample and is sent after `released`
  // published counts the birth (1) and batch 1 (2).
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.batches == 1 && c.published >= 2; }, 30s));
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.resends >= 1; }, 30s));
  const auto resent = std::chrono::steady_clock::now();
  CHECK(resent - released >= 2s);
  CHECK(a.counters().connects == 1);  // the resend came from the stall timer, not a reconnect
  a.stop();
  loop.join();
}
