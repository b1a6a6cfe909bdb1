// nova-cloud's store sealed at rest, on a real LevelDB: a byte flipped in a stored
// metrics batch, task result or cloud record (written through LevelDB while the store is
// closed) is reported with its store, key and reason, counted, deleted and never served;
// everything else is served as before. A plaintext store is sealed at its first open
// with a key, and a sealed one does not open without it.
#include <catch2/catch.hpp>
#include <leveldb/db.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "nova/cloud/config.h"
#include "nova/cloud/ingest_store.h"
#include "nova/schemas/codec.h"
#include "nova/testing/temp_dir.h"

using namespace nova;
using namespace nova::cloud;
namespace fs = std::filesystem;

namespace {

using testing::TempDir;

constexpr schemas::Timestamp kT0 = 1'732'650'000'000;

security::StorageKey test_key() { return security::derive_storage_key("cloud at-rest test secret", "cloud-1"); }

struct Records {
  std::vector<schemas::MetricsBatch> batches;
  std::vector<std::string> payloads;
  schemas::TaskResult result;
  std::string result_payload;
  Records() {
    for (std::uint64_t seq = 1; seq <= 3; ++seq) {
      schemas::MetricsBatch b;
      b.position = {"n1", "metrics", seq, std::nullopt};
      for (int i = 0; i < 2; ++i) {
        schemas::MetricSample s;
        s.ts = kT0 + (seq * 10 + static_cast<std::uint64_t>(i)) * 1000;
        s.cpu_pct = 12.5;
        b.samples.push_back(s);
      }
      const auto bytes = schemas::encode_cbor(b);
      payloads.emplace_back(bytes.begin(), bytes.end());
      batches.push_back(std::move(b));
    }
    result.position = {"n1", "results", 1, std::nullopt};
    result.task_id = "job-1";
    result.status = schemas::TaskStatus::ok;
    result.exit_code = 0;
    result.finished_ts = kT0;
    const auto bytes = schemas::encode_cbor(result);
    result_payload.assign(bytes.begin(), bytes.end());
  }
  std::vector<IngestRecord> all() const {
    std::vector<IngestRecord> out;
    for (std::size_t i = 0; i < batches.size(); ++i) {
      IngestRecord r;
      r.kind = IngestRecord::Kind::metrics;
      r.position = batches[i].position;
      r.payload = payloads[i];
      r.received = kT0;
      r.batch = &batches[i];
      out.push_back(r);
    }
    IngestRecord r;
    r.kind = IngestRecord::Kind::result;
    r.position = result.position;
    r.payload = result_payload;
    r.received = kT0;
    r.result = &result;
    out.push_back(r);
    return out;
  }
};

StoreOptions options_for(const fs::path& dir, std::optional<security::StorageKey> key,
                         std::vector<security::CorruptRecord>* reported = nullptr) {
  StoreOptions o;
  o.dir = dir;
  o.storage_key = std::move(key);
  if (reported) o.on_corrupt = [reported](const security::CorruptRecord& r) { reported->push_back(r); };
  return o;
}

// The keys under `prefix`, in order.
std::vector<std::string> keys_under(leveldb::DB& db, const std::string& prefix) {
  std::vector<std::string> out;
  std::unique_ptr<leveldb::Iterator> it(db.NewIterator(leveldb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) out.push_back(it->key().ToString());
  return out;
}

void flip_a_byte(leveldb::DB& db, const std::string& key) {
  std::string value;
  REQUIRE(db.Get(leveldb::ReadOptions(), key, &value).ok());
  value[value.size() / 2] = static_cast<char>(value[value.size() / 2] ^ 0x10);
  REQUIRE(db.Put(leveldb::WriteOptions(), key, value).ok());
}

}  // namespace

TEST_CASE("a flipped byte in the sealed cloud store is reported, counted and never served", "[cloud][store][at_rest]") {
  TempDir dir;
  Records records;
  {
    auto store = IngestStore::open(options_for(dir.path, test_key()));
    REQUIRE(store.ok());
    REQUIRE(store.value()->admit(records.all()).ok());
    REQUIRE(store.value()->put_cloud_record("workload", "w1", "workload payload", true).ok());
  }
  std::string history_key;
  {
    leveldb::DB* raw = nullptr;
    REQUIRE(leveldb::DB::Open(leveldb::Options(), dir.path.string(), &raw).ok());
    std::unique_ptr<leveldb::DB> db(raw);
    const auto history = keys_under(*db, "h/n1/");
    REQUIRE(history.size() == 3);
    history_key = history[1];  // seq 2's batch
    std::string sealed;
    REQUIRE(db->Get(leveldb::ReadOptions(), history_key, &sealed).ok());
    CHECK(sealed.find(records.payloads[1]) == std::string::npos);  // not stored in the clear
    flip_a_byte(*db, history_key);
    flip_a_byte(*db, "r/n1/job-1");
    flip_a_byte(*db, "c/workload/w1");
  }
  std::vector<security::CorruptRecord> reported;
  auto store = IngestStore::open(options_for(dir.path, test_key(), &reported));
  REQUIRE(store.ok());
  IngestStore& s = *store.value();
  const auto samples = s.samples("n1", 0, kT0 + 1'000'000);
  CHECK(samples.size() == 4);  // batches 1 and 3
  for (const auto& sample : samples) CHECK((sample.ts < kT0 + 20'000 || sample.ts >= kT0 + 30'000));
  CHECK_FALSE(s.result("n1", "job-1"));
  CHECK(s.cloud_records().empty());
  CHECK(s.watermark("n1", "metrics") == 3);
  CHECK(s.counters().corrupt == 3);
  REQUIRE(reported.size() == 3);
  CHECK(reported[0].store == "cloud");
  CHECK(reported[0].key == security::printable_key(history_key));
  CHECK(reported[0].storage_key == test_key().id_hex());
  CHECK(reported[0].reason == "authentication failed (a changed byte, or a record moved from another key)");
  CHECK(reported[1].key == "r/n1/job-1");
  CHECK(reported[2].key == "c/workload/w1");
  // Deleted: reported once.
  CHECK(s.samples("n1", 0, kT0 + 1'000'000).size() == 4);
  CHECK(s.counters().corrupt == 3);
}

TEST_CASE("a corrupt watermark is recovered from the stored records, not restarted at 0",
          "[cloud][store][at_rest][watermark]") {
  TempDir dir;
  Records records;
  {
    auto store = IngestStore::open(options_for(dir.path, test_key()));
    REQUIRE(store.ok());
    REQUIRE(store.value()->admit(records.all()).ok());
    REQUIRE(store.value()->watermark("n1", "metrics") == 3);
  }
  {
    leveldb::DB* raw = nullptr;
    REQUIRE(leveldb::DB::Open(leveldb::Options(), dir.path.string(), &raw).ok());
    std::unique_ptr<leveldb::DB> db(raw);
    flip_a_byte(*db, "w/n1/metrics");
    flip_a_byte(*db, "w/n1/results");
  }
  std::vector<security::CorruptRecord> reported;
  {
    auto store = IngestStore::open(options_for(dir.path, test_key(), &reported));
    REQUIRE(store.ok());
    IngestStore& s = *store.value();
    // Both ways of reading a watermark (one stream; every stream of a node, for the acks
    // after a birth) recover it; at 0 the agent's next record (seq 4) would wait forever
    // behind a gap and seqs 1..3 sent again would be stored twice.
    CHECK(s.watermarks("n1") == std::map<std::string, std::uint64_t>{{"metrics", 3}, {"results", 1}});
    CHECK(s.watermark("n1", "metrics") == 3);
    CHECK(s.counters().watermarks_recovered == 2);
    CHECK(reported.size() == 2);
    // A replay is a duplicate, and the next record moves the watermark on.
    auto again = s.admit(std::vector<IngestRecord>{records.all()[2]});
    REQUIRE(again.ok());
    CHECK(again.value()[0].duplicate);
    schemas::MetricsBatch next = records.batches[2];
    next.position.seq = 4;
    IngestRecord r = records.all()[2];
    r.position = next.position;
    r.batch = &next;
    auto admitted = s.admit(std::vector<IngestRecord>{r});
    REQUIRE(admitted.ok());
    CHECK(admitted.value()[0].watermark == 4);
  }
  // Written back: the next open finds it without recovering.
  auto store = IngestStore::open(options_for(dir.path, test_key()));
  REQUIRE(store.ok());
  CHECK(store.value()->watermark("n1", "metrics") == 4);
  CHECK(store.value()->counters().watermarks_recovered == 0);
}

TEST_CASE("a plaintext cloud store is sealed at its first open with a key, one way", "[cloud][store][at_rest]") {
  TempDir dir;
  Records records;
  {
    auto store = IngestStore::open(options_for(dir.path, std::nullopt));
    REQUIRE(store.ok());
    REQUIRE(store.value()->admit(records.all()).ok());
  }
  {
    std::vector<security::CorruptRecord> reported;
    auto store = IngestStore::open(options_for(dir.path, test_key(), &reported));
    REQUIRE(store.ok());
    CHECK(store.value()->samples("n1", 0, kT0 + 1'000'000).size() == 6);
    CHECK(store.value()->result("n1", "job-1"));
    CHECK(store.value()->watermark("n1", "metrics") == 3);
    CHECK(reported.empty());
  }
  const auto without = IngestStore::open(options_for(dir.path, std::nullopt));
  REQUIRE_FALSE(without.ok());
  CHECK(without.error().message() == "cloud: sealed with storage key " + test_key().id_hex() +
                                         ", and no storage key is configured (store.key_file)");
}

TEST_CASE("store.key_file: a key that others may read is refused, naming the key", "[cloud][config][at_rest]") {
  TempDir dir;
  const fs::path file = dir.path / "storage.key";
  std::ofstream(file) << security::new_storage_key_text();
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  auto config = parse_config("store:\n  key_file: " + file.string() + "\n");
  REQUIRE(config.ok());
  CHECK(config.value().storage_key().error().message() ==
        "store.key_file: " + file.string() + ": mode 0644 lets group or others read the storage key: chmod 600 it");
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
  auto key = config.value().storage_key();
  REQUIRE(key.ok());
  CHECK(key.value().has_value());
  CHECK_FALSE(parse_config("").value().storage_key().value().has_value());  // plaintext, warned at start
}
