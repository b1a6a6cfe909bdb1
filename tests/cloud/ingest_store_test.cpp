// IngestStore on a real LevelDB in a temporary directory: dedup, watermarks with gaps,
// persistence across reopen, history, downsampling and retention.
#include <catch2/catch.hpp>
#include <filesystem>
#include <optional>
#include <random>

#include "nova/cloud/ingest_store.h"
#include "nova/schemas/codec.h"
#include "nova/testing/temp_dir.h"

using namespace nova;
using namespace nova::cloud;
namespace fs = std::filesystem;

namespace {

using testing::TempDir;

// A batch of `n` one-second samples starting at `ts`, as an agent would send it.
struct Batch {
  schemas::MetricsBatch batch;
  std::string payload;
  Batch(const std::string& node, std::uint64_t seq, schemas::Timestamp ts, int n,
        std::optional<std::uint64_t> first = std::nullopt) {
    batch.position = {node, "metrics", seq, first};
    for (int i = 0; i < n; ++i) {
      schemas::MetricSample s;
      s.ts = ts + static_cast<schemas::Timestamp>(i) * 1000;
      s.cpu_pct = 10.0 + i;
      s.mem_pct = 50;
      batch.samples.push_back(s);
    }
    const auto bytes = schemas::encode_cbor(batch);
    payload.assign(bytes.begin(), bytes.end());
  }
  IngestRecord record() const {
    IngestRecord r;
    r.kind = IngestRecord::Kind::metrics;
    r.position = batch.position;
    r.payload = payload;
    r.received = batch.samples.front().ts;
    r.batch = &batch;
    return r;
  }
};

constexpr schemas::Timestamp kT0 = 1'732'650'000'000;

}  // namespace

TEST_CASE("in-order records advance the watermark and replays are duplicates", "[cloud][store]") {
  TempDir dir;
  auto store = IngestStore::open({dir.path});
  REQUIRE(store.ok());
  Batch b1("n1", 1, kT0, 3), b2("n1", 2, kT0 + 3000, 3);
  auto first = store.value()->admit(std::vector{b1.record(), b2.record()});
  REQUIRE(first.ok());
  CHECK_FALSE(first.value()[0].duplicate);
  CHECK(first.value()[1].watermark == 2);
  CHECK(first.value()[1].advanced);
  auto again = store.value()->admit(std::vector{b2.record(), b1.record()});
  REQUIRE(again.ok());
  CHECK(again.value()[0].duplicate);
  CHECK(again.value()[1].duplicate);
  CHECK_FALSE(again.value()[0].advanced);
  CHECK(store.value()->counters().records == 2);
  CHECK(store.value()->counters().duplicates == 2);
  CHECK(store.value()->samples("n1", 0, kT0 + 100000).size() == 6);
}

TEST_CASE("a gap holds the watermark until it closes across a reopen", "[cloud][store]") {
  TempDir dir;
  Batch b1("n1", 1, kT0, 1), b3("n1", 3, kT0 + 2000, 1), b4("n1", 4, kT0 + 3000, 1), b2("n1", 2, kT0 + 1000, 1);
  {
    auto store = IngestStore::open({dir.path});
    REQUIRE(store.ok());
    auto r = store.value()->admit(std::vector{b1.record(), b3.record(), b4.record()});
    REQUIRE(r.ok());
    CHECK(r.value()[2].watermark == 1);
  }
  auto store = IngestStore::open({dir.path});
  REQUIRE(store.ok());
  CHECK(store.value()->watermark("n1", "metrics") == 1);
  auto dup = store.value()->admit(std::vector{b3.record()});
  REQUIRE(dup.ok());
  CHECK(dup.value()[0].duplicate);  // the pending marker survived the reopen
  auto r = store.value()->admit(std::vector{b2.record()});
  REQUIRE(r.ok());
  CHECK(r.value()[0].watermark == 4);
  CHECK(store.value()->watermarks("n1") == std::map<std::string, std::uint64_t>{{"metrics", 4}});
  CHECK(store.value()->samples("n1", 0, kT0 + 100000).size() == 4);
}

TEST_CASE("a record's first declares the seqs below it gone and closes the gap", "[cloud][store]") {
  TempDir dir;
  Batch b1("n1", 1, kT0, 1), b2("n1", 2, kT0 + 1000, 1), b5("n1", 5, kT0 + 4000, 1), b9("n1", 9, kT0 + 8000, 1);
  Batch b10("n1", 10, kT0 + 9000, 1, 8);  // the sender holds nothing below 8
  Batch b8("n1", 8, kT0 + 7000, 1, 8);
  {
    auto store = IngestStore::open({dir.path});
    REQUIRE(store.ok());
    IngestStore& s = *store.value();
    auto r = s.admit(std::vector{b1.record(), b2.record(), b5.record(), b9.record()});
    REQUIRE(r.ok());
    CHECK(r.value()[3].watermark == 2);  // 3, 4, 6, 7, 8 missing: waits
    CHECK(s.counters().skipped == 0);

    // 10 says first 8: 3..7 are gone. 5 was stored here (pending), so 4 seqs are
    // skipped; the watermark stops at 7 because 8 itself has not arrived.
    r = s.admit(std::vector{b10.record()});
    REQUIRE(r.ok());
    CHECK_FALSE(r.value()[0].duplicate);
    CHECK(r.value()[0].advanced);
    CHECK(r.value()[0].watermark == 7);
    CHECK(s.counters().skipped == 4);

    r = s.admit(std::vector{b8.record()});  // closes up to the pending 9 and 10
    REQUIRE(r.ok());
    CHECK(r.value()[0].watermark == 10);
    CHECK(s.counters().skipped == 4);

    r = s.admit(std::vector{b10.record()});  // a replay changes nothing
    REQUIRE(r.ok());
    CHECK(r.value()[0].duplicate);
    CHECK_FALSE(r.value()[0].advanced);
    CHECK(s.counters().skipped == 4);
    CHECK(s.counters().records == 6);  // 1, 2, 5, 8, 9, 10
    // What was stored is all there, 5 included.
    CHECK(s.samples("n1", 0, kT0 + 100000).size() == 6);

    // first <= watermark + 1 says nothing new.
    Batch b11("n1", 11, kT0 + 10000, 1, 1), b13("n1", 13, kT0 + 12000, 1);
    r = s.admit(std::vector{b11.record(), b13.record()});
    REQUIRE(r.ok());
    CHECK(r.value()[1].watermark == 11);
    CHECK(s.counters().skipped == 4);

    // A replay of the pending 13 that now declares first 13 is a duplicate but still
    // closes the gap: 12 is skipped and the watermark reaches 13.
    Batch b13_first("n1", 13, kT0 + 12000, 1, 13);
    r = s.admit(std::vector{b13_first.record()});
    REQUIRE(r.ok());
    CHECK(r.value()[0].duplicate);
    CHECK(r.value()[0].advanced);
    CHECK(r.value()[0].watermark == 13);
    CHECK(s.counters().skipped == 5);
    CHECK(s.counters().records == 8);
  }
  // The skip is durable: the watermark and the dropped pending markers survive a reopen.
  auto store = IngestStore::open({dir.path});
  REQUIRE(store.ok());
  CHECK(store.value()->watermark("n1", "metrics") == 13);
  Batch b14("n1", 14, kT0 + 13000, 1);
  auto r = store.value()->admit(std::vector{b14.record()});
  REQUIRE(r.ok());
  CHECK(r.value()[0].watermark == 14);
  auto dup = store.value()->admit(std::vector{b5.record(), b9.record()});  // below the watermark
  REQUIRE(dup.ok());
  CHECK(dup.value()[0].duplicate);
  CHECK(dup.value()[1].duplicate);
}

// The attack of issue 10: one forged record with a huge seq (or first) would have moved
// the watermark so that every later genuine record of the node counted as a duplicate.
TEST_CASE("a record too far ahead of the watermark is refused and genuine records still land", "[cloud][store]") {
  TempDir dir;
  StoreOptions options{dir.path};
  options.max_seq_ahead = 1000;
  auto store = IngestStore::open(options);
  REQUIRE(store.ok());
  IngestStore& s = *store.value();
  Batch b1("n1", 1, kT0, 1), b2("n1", 2, kT0 + 1000, 1);
  REQUIRE(s.admit(std::vector{b1.record()}).ok());

  Batch forged_first("n1", 1'000'000'000, kT0 + 5000, 1, 999'999'999);
  Batch forged_seq("n1", 1002, kT0 + 6000, 1);      // 1001 ahead of watermark 1
  Batch edge("n1", 1001, kT0 + 7000, 1);            // exactly 1000 ahead: allowed
  auto r = s.admit(std::vector{forged_first.record(), forged_seq.record(), edge.record(), b2.record()});
  REQUIRE(r.ok());
  CHECK(r.value()[0].refused == "position.first: 999999999 is more than 1000 ahead of the stream's watermark 1");
  CHECK(r.value()[1].refused == "position.seq: 1002 is more than 1000 ahead of the stream's watermark 1");
  CHECK(r.value()[2].refused.empty());
  CHECK_FALSE(r.value()[3].duplicate);
  CHECK(r.value()[3].watermark == 2);  // the forged first moved nothing
  CHECK(s.counters().too_far_ahead == 2);
  CHECK(s.counters().skipped == 0);
  CHECK(s.counters().records == 3);  // 1, 1001 (pending), 2
  CHECK(s.samples("n1", 0, kT0 + 100000).size() == 3);

  // A genuine eviction gap inside the window still closes.
  Batch evicted_gap("n1", 900, kT0 + 8000, 1, 900);
  r = s.admit(std::vector{evicted_gap.record()});
  REQUIRE(r.ok());
  CHECK(r.value()[0].refused.empty());
  CHECK(r.value()[0].watermark == 900);
}

TEST_CASE("random replay and reordering never double counts", "[cloud][store]") {
  TempDir dir;
  auto store = IngestStore::open({dir.path});
  REQUIRE(store.ok());
  std::vector<Batch> batches;
  for (std::uint64_t seq = 1; seq <= 200; ++seq) batches.emplace_back("n1", seq, kT0 + seq * 10'000, 10);
  std::mt19937 rng(7);
  std::vector<IngestRecord> deliveries;
  for (const auto& b : batches) {
    deliveries.push_back(b.record());
    if (rng() % 3 == 0) deliveries.push_back(b.record());  // a replay
  }
  std::shuffle(deliveries.begin(), deliveries.end(), rng);
  for (std::size_t i = 0; i < deliveries.size(); i += 17) {
    const std::size_t end = std::min(deliveries.size(), i + 17);
    REQUIRE(store.value()->admit(std::span(deliveries).subspan(i, end - i)).ok());
  }
  CHECK(store.value()->watermark("n1", "metrics") == 200);
  CHECK(store.value()->counters().records == 200);
  CHECK(store.value()->counters().samples == 2000);
  const auto samples = store.value()->samples("n1", 0, kT0 + 10'000'000);
  REQUIRE(samples.size() == 2000);
  for (std::size_t i = 1; i < samples.size(); ++i) CHECK(samples[i - 1].ts < samples[i].ts);
}

TEST_CASE("minute aggregates and retention sweep", "[cloud][store]") {
  TempDir dir;
  StoreOptions o{dir.path};
  o.raw_retention = std::chrono::hours(1);
  o.downsampled_retention = std::chrono::hours(2);
  auto store = IngestStore::open(o);
  REQUIRE(store.ok());
  Batch old_batch("n1", 1, kT0, 60), new_batch("n1", 2, kT0 + 90 * 60'000, 60);
  REQUIRE(store.value()->admit(std::vector{old_batch.record(), new_batch.record()}).ok());
  auto minutes = store.value()->aggregates("n1", 0, kT0 + 10'000'000);
  REQUIRE(minutes.size() >= 2);
  const GaugeStats& cpu = minutes.front().gauges.at("cpu");
  CHECK(cpu.count == 60);  // kT0 is on a minute boundary
  CHECK(cpu.min == 10);
  CHECK(cpu.max == 69);
  CHECK(cpu.mean() == Approx(39.5));
  // 100 minutes after the first batch: its raw samples are gone, its aggregate stays.
  const std::uint64_t deleted = store.value()->sweep(kT0 + 100 * 60'000);
  CHECK(deleted == 1);
  CHECK(store.value()->samples("n1", 0, kT0 + 60'000).empty());
  CHECK(store.value()->samples("n1", kT0 + 90 * 60'000, kT0 + 200 * 60'000).size() == 60);
  CHECK(store.value()->aggregates("n1", 0, kT0 + 60'000).size() == 1);
}

TEST_CASE("erasing a sensor rewrites the raw batches without its gauges, erasing a node leaves nothing",
          "[cloud][store][erasure]") {
  TempDir dir;
  StoreOptions o;
  o.dir = dir.path;
  auto opened = IngestStore::open(o);
  REQUIRE(opened.ok());
  IngestStore& store = *opened.value();
  schemas::MetricsBatch batch;
  batch.position = {"n1", "metrics", 1, std::nullopt};
  schemas::MetricSample s;
  s.ts = 1'732'650'000'000;
  s.cpu_pct = 10;
  // cam10 is another sensor; cam1.x extends cam1's id with '.', so shares its gauge prefix.
  s.extra = {{"sensor.cam1.temp", 21.5}, {"sensor.cam1.x.temp", 7}, {"sensor.cam10.temp", 3}, {"load5", 1}};
  batch.samples = {s};
  const schemas::Bytes bytes = schemas::encode_cbor(batch);
  IngestRecord r;
  r.kind = IngestRecord::Kind::metrics;
  r.position = batch.position;
  r.payload.assign(bytes.begin(), bytes.end());
  r.received = s.ts;
  r.batch = &batch;
  REQUIRE(store.admit(std::vector<IngestRecord>{r}).ok());

  auto sensor = store.erase("n1", std::string("cam1"));
  REQUIRE(sensor.ok());
  CHECK(sensor->at("raw") == 1);
  CHECK(sensor->at("downsampled") == 0);  // minute aggregates hold core gauges only
  const auto kept = store.samples("n1", 0, s.ts + 1);
  REQUIRE(kept.size() == 1);
  CHECK(kept[0].extra == std::map<std::string, double>{{"sensor.cam10.temp", 3}, {"load5", 1}});
  CHECK(store.aggregates("n1", 0, s.ts + 1).size() == 1);

  auto node = store.erase("n1", std::nullopt);
  REQUIRE(node.ok());
  CHECK(node->at("raw") == 1);
  CHECK(node->at("downsampled") == 1);
  CHECK(store.samples("n1", 0, s.ts + 1).empty());
  CHECK(store.aggregates("n1", 0, s.ts + 1).empty());
  // The watermark stays: a resent record is still a duplicate, not stored again.
  CHECK(store.watermark("n1", "metrics") == 1);
  auto again = store.admit(std::vector<IngestRecord>{r});
  REQUIRE(again.ok());
  CHECK(again.value()[0].duplicate);
}
