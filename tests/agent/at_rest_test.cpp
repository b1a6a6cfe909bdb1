// Encryption at rest with a real agent, real LevelDB stores on disk and a real broker:
// a byte flipped in a stored record (written through LevelDB while the agent is stopped,
// as a disk error or an attacker with the files would leave it), and a record copied
// under another record's key, are reported, counted and deleted at the next start;
// nothing corrupt reaches the broker, and every other record is delivered.
#include <catch2/catch.hpp>
#include <leveldb/db.h>

#include <filesystem>
#include <mutex>
#include <thread>

#include "gateway_options.h"
#include "nova/agent/agent.h"
#include "nova/agent/inbox.h"
#include "nova/agent/tasks.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/broker.h"
#include "nova/testing/signer.h"
#include "nova/testing/test_pki.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

security::StorageKey test_key() { return security::derive_storage_key("at-rest test secret", "gw-1"); }

// Samples one second apart from a fixed start, as fast as the loop takes them.
class Samples final : public agent::SampleSource {
 public:
  explicit Samples(std::uint64_t count) : count_(count) {}
  const schemas::MetricSample* sample(schemas::Timestamp) override {
    if (next_ == count_) return nullptr;
    s_.ts = 1732650000000 + next_ * 1000;
    s_.cpu_pct = 20.0 + static_cast<double>(next_ % 50) / 10.0;
    ++next_;
    return &s_;
  }

 private:
  std::uint64_t count_;
  std::uint64_t next_ = 0;
  schemas::MetricSample s_;
};

// The log lines an agent or runner writes, for the test to read.
struct Log {
  std::mutex mutex;
  std::string text;
  void operator()(const char* level, const std::string& event, const std::string& fields) {
    std::lock_guard lock(mutex);
    text += std::string(level) + " " + event + " " + fields + "\n";
  }
  std::string get() {
    std::lock_guard lock(mutex);
    return text;
  }
};

agent::AgentOptions options_for(const std::string& uri, const fs::path& dir, Log& log,
                                std::optional<security::StorageKey> key) {
  agent::AgentOptions o = test::gateway_options(uri, dir);
  o.drain.jitter = 0ms;
  o.storage_key = std::move(key);
  o.log = [&log](const char* level, const std::string& event, const std::string& fields) { log(level, event, fields); };
  return o;
}

std::unique_ptr<leveldb::DB> open_raw(const fs::path& dir) {
  leveldb::DB* raw = nullptr;
  REQUIRE(leveldb::DB::Open(leveldb::Options(), dir.string(), &raw).ok());
  return std::unique_ptr<leveldb::DB>(raw);
}

std::string outbox_key(std::uint64_t seq) {
  std::string k = std::string("rmetrics") + '\0';
  for (int shift = 56; shift >= 0; shift -= 8) k.push_back(static_cast<char>((seq >> shift) & 0xffu));
  return k;
}

// Flips one bit of the value stored under `key`, in the middle of the ciphertext.
void flip_a_byte(leveldb::DB& db, const std::string& key) {
  std::string value;
  REQUIRE(db.Get(leveldb::ReadOptions(), key, &value).ok());
  value[value.size() / 2] = static_cast<char>(value[value.size() / 2] ^ 0x04);
  REQUIRE(db.Put(leveldb::WriteOptions(), key, value).ok());
}

// Runs an agent until `done`, then stops it.
void run_until(agent::Agent& a, const std::function<bool(const agent::AgentCounters&)>& done) {
  std::thread loop([&] { a.run(); });
  const bool reached = a.wait_for(done, 60s);
  INFO("batches " << a.counters().batches << " corrupt " << a.counters().corrupt_records << " published " << a.counters().published);
  a.stop();
  loop.join();
  REQUIRE(reached);
}

}  // namespace

TEST_CASE("outbox: a flipped byte and a moved record are reported and never sent", "[agent][at_rest]") {
  testing::Broker broker(testing::mutual_tls());
  const std::string uri = broker.uri();
  broker.stop();  // offline: the outbox fills
  const fs::path dir = broker.data_dir() / "agent";
  Log log;
  constexpr std::uint64_t kBatches = 8;
  {
    Samples samples(kBatches * 60 + 1);  // the last sample closes batch 8
    auto a = agent::Agent::create(options_for(uri, dir, log, test_key()), &samples);
    REQUIRE(a.ok());
    run_until(*a.value(), [](const agent::AgentCounters& c) { return c.batches == kBatches; });
  }
  {
    // Stored sealed: the batch's own bytes are nowhere in the files' values.
    auto db = open_raw(dir / "outbox");
    flip_a_byte(*db, outbox_key(3));
    std::string moved;
    REQUIRE(db->Get(leveldb::ReadOptions(), outbox_key(4), &moved).ok());
    REQUIRE(db->Put(leveldb::WriteOptions(), outbox_key(6), moved).ok());  // 4's record under 6's key
  }
  broker.restart();
  testing::AckConsumer consumer(broker.uri());
  Samples none(0);
  auto a = agent::Agent::create(options_for(broker.uri(), dir, log, test_key()), &none);
  REQUIRE(a.ok());
  std::thread loop([&] { a.value()->run(); });
  // Everything else arrives (batch 9 is the one stored at the first stop), the corrupt
  // records never do, and all that arrived decodes.
  const bool delivered = consumer.wait_for("gw-1", "metrics", kBatches + 1 - 2, 30s);
  const bool counted = a.value()->wait_for([](const agent::AgentCounters& n) { return n.corrupt_records == 2; }, 30s);
  a.value()->stop();
  loop.join();
  REQUIRE(delivered);
  REQUIRE(counted);
  const testing::StreamCount c = consumer.count("gw-1", "metrics");
  CHECK(c.seqs == std::set<std::uint64_t>{1, 2, 4, 5, 7, 8, 9});
  CHECK(consumer.undecodable() == 0);
  CHECK(a.value()->outbox().corrupt_records() == 2);
  const std::string lines = log.get();
  CHECK_THAT(lines, Catch::Contains("error corrupt_record store=outbox key=\"rmetrics\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00\\\\x03\" storage_key=" +
                                    test_key().id_hex() +
                                    " reason=\"authentication failed (a changed byte, or a record moved from another key)\""));
  CHECK_THAT(lines, Catch::Contains("key=\"rmetrics\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00\\\\x06\""));
}

TEST_CASE("outbox: a plaintext store is sealed at the first start with a key", "[agent][at_rest]") {
  testing::Broker broker(testing::mutual_tls());
  const std::string uri = broker.uri();
  broker.stop();
  const fs::path dir = broker.data_dir() / "agent";
  Log log;
  {
    Samples samples(3 * 60 + 1);
    auto a = agent::Agent::create(options_for(uri, dir, log, std::nullopt), &samples);
    REQUIRE(a.ok());
    run_until(*a.value(), [](const agent::AgentCounters& c) { return c.batches == 3; });
  }
  std::string plaintext;
  REQUIRE(open_raw(dir / "outbox")->Get(leveldb::ReadOptions(), outbox_key(1), &plaintext).ok());
  broker.restart();
  testing::AckConsumer consumer(broker.uri());
  Samples none(0);
  auto a = agent::Agent::create(options_for(broker.uri(), dir, log, test_key()), &none);
  REQUIRE(a.ok());
  std::thread loop([&] { a.value()->run(); });
  const bool delivered = consumer.wait_for("gw-1", "metrics", 3, 30s);
  a.value()->stop();
  loop.join();
  CHECK(delivered);
  CHECK(consumer.undecodable() == 0);
  CHECK(a.value()->counters().corrupt_records == 0);
  a.value().reset();
  // Sealed now, and one way: without the key the store does not open.
  auto without = agent::Agent::create(options_for(broker.uri(), dir, log, std::nullopt), &none);
  REQUIRE_FALSE(without.ok());
  CHECK(without.error().message() == "outbox: sealed with storage key " + test_key().id_hex() +
                                         ", and no storage key is configured (storage.key_file)");
}

TEST_CASE("inbox and task store: a flipped byte is reported, counted and deleted", "[agent][at_rest]") {
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir() / "stores";
  std::vector<agent::CorruptRecord> reported;
  agent::StorageOptions storage;
  storage.key = test_key();
  storage.on_corrupt = [&](const agent::CorruptRecord& r) { reported.push_back(r); };

  SECTION("inbox") {
    {
      auto inbox = agent::Inbox::open(dir / "inbox", storage);
      REQUIRE(inbox.ok());
      REQUIRE(inbox.value()->put("task one"));
      REQUIRE(inbox.value()->put("task two"));
    }
    flip_a_byte(*open_raw(dir / "inbox"), std::string("\0\0\0\0\0\0\0\x01", 8));
    auto inbox = agent::Inbox::open(dir / "inbox", storage);
    REQUIRE(inbox.ok());
    const auto pending = inbox.value()->pending();
    REQUIRE(pending.size() == 1);
    CHECK(pending[0].payload == "task two");
    REQUIRE(reported.size() == 1);
    CHECK(reported[0].store == "inbox");
    CHECK(reported[0].key == "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01");
    CHECK(reported[0].storage_key == test_key().id_hex());
    CHECK(inbox.value()->pending().size() == 1);  // deleted: reported once
    CHECK(reported.size() == 1);
    CHECK(inbox.value()->put("task three"));  // ids go on after the seal marker
    CHECK(inbox.value()->pending().size() == 2);
  }

  SECTION("outbox counters: not guessed, the outbox refuses to open") {
    agent::OutboxOptions o;
    o.dir = dir / "outbox";
    o.storage = storage;
    {
      auto box = agent::Outbox::open(o);
      REQUIRE(box.ok());
      REQUIRE(box.value()->append("metrics", agent::Priority::metrics, std::string("batch")).ok());
    }
    flip_a_byte(*open_raw(dir / "outbox"), "mmetrics");
    const auto box = agent::Outbox::open(o);
    REQUIRE_FALSE(box.ok());
    CHECK(box.error().message() ==
          "outbox: corrupt counters for stream 'metrics': authentication failed (a changed byte, or a record moved "
          "from another key)");
  }

  SECTION("task store") {
    agent::TaskRunnerOptions o;
    o.dir = dir / "tasks";
    o.total_memory_mb = 16384;
    o.cpu_cores = 4;
    o.allow = {"/bin/sh"};
    o.storage = storage;
    auto task = [](const std::string& id) {
      agent::Task t;
      t.task_id = id;
      t.argv = {"/bin/sh", "-c", "true"};
      t.timeout_ms = 10000;
      return t;
    };
    {
      auto runner = agent::TaskRunner::open(o, [](const schemas::TaskResult&) {});
      REQUIRE(runner.ok());
      REQUIRE(runner.value()->submit(task("job-a")).ok());
      REQUIRE(runner.value()->submit(task("job-b")).ok());
    }
    flip_a_byte(*open_raw(dir / "tasks"), "tjob-a");
    auto runner = agent::TaskRunner::open(o, [](const schemas::TaskResult&) {});
    REQUIRE(runner.ok());
    CHECK(runner.value()->counters().corrupt_records == 1);
    CHECK(runner.value()->counters().queued == 1);  // job-b
    REQUIRE(reported.size() == 1);
    CHECK(reported[0].store == "tasks");
    CHECK(reported[0].key == "tjob-a");
    CHECK(reported[0].reason == "authentication failed (a changed byte, or a record moved from another key)");
    // job-a is gone, so it is not a duplicate: the cloud may send it again.
    CHECK(runner.value()->submit(task("job-a")).value().outcome == agent::Admission::Outcome::queued);
  }
}
