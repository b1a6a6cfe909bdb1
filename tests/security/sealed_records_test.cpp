// Encryption at rest (sealed_records.h, sealed_store.h): every byte of a sealed record is
// covered, a record moved to another key, store or storage key does not open, nonces do
// not repeat, key files are checked like ssh checks private keys, and a plaintext LevelDB
// store is sealed once and for all.
#include <catch2/catch.hpp>
#include <leveldb/db.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include "nova/security/sealed_records.h"
#include "nova/security/sealed_store.h"

namespace fs = std::filesystem;
using namespace std::literals;
using namespace nova::security;

namespace {

StorageKey key_of(unsigned char fill) {
  std::array<unsigned char, kStorageKeyBytes> bytes{};
  bytes.fill(fill);
  return StorageKey::from_bytes(bytes);
}

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/nova-sealed-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

fs::path write_file(const fs::path& file, const std::string& text, fs::perms mode) {
  std::ofstream(file) << text;
  fs::permissions(file, mode);
  return file;
}

std::unique_ptr<leveldb::DB> open_db(const fs::path& dir) {
  leveldb::Options o;
  o.create_if_missing = true;
  leveldb::DB* raw = nullptr;
  REQUIRE(leveldb::DB::Open(o, dir.string(), &raw).ok());
  return std::unique_ptr<leveldb::DB>(raw);
}

}  // namespace

TEST_CASE("a sealed record opens under its key and associated data only", "[sealed]") {
  const RecordSealer sealer(key_of(1));
  const std::string plain = "a metrics batch \x01\x02";
  const std::string sealed = sealer.seal("outbox\0rmetrics"sv, plain);
  REQUIRE(sealed.size() == plain.size() + kSealOverhead);
  CHECK(sealed.find("metrics batch") == std::string::npos);
  REQUIRE(sealer.open("outbox\0rmetrics"sv, sealed));
  CHECK(sealer.open("outbox\0rmetrics"sv, sealed).value() == plain);
  CHECK(RecordSealer(key_of(1)).open("outbox\0rmetrics"sv, sealer.seal("outbox\0rmetrics"sv, "")).value().empty());
}

TEST_CASE("a flipped bit at every byte position of a sealed record is detected", "[sealed]") {
  const RecordSealer sealer(key_of(2));
  const std::string sealed = sealer.seal("tasks\0tjob-1"sv, "a task record of some length");
  for (std::size_t i = 0; i < sealed.size(); ++i) {
    for (int bit : {0x01, 0x80}) {
      std::string tampered = sealed;
      tampered[i] = static_cast<char>(static_cast<unsigned char>(tampered[i]) ^ bit);
      INFO("byte " << i << " bit " << bit);
      CHECK_FALSE(sealer.open("tasks\0tjob-1"sv, tampered));
    }
  }
  // Truncated or extended records do not open either.
  CHECK_FALSE(sealer.open("tasks\0tjob-1"sv, sealed.substr(0, sealed.size() - 1)));
  CHECK_FALSE(sealer.open("tasks\0tjob-1"sv, sealed + "x"));
  CHECK_FALSE(sealer.open("tasks\0tjob-1"sv, sealed.substr(0, 10)));
}

TEST_CASE("the reasons name what is wrong", "[sealed]") {
  const RecordSealer sealer(key_of(3));
  const std::string sealed = sealer.seal("k", "v");
  CHECK(sealer.open("k", "short").error().message() == "too short to be a sealed record (5 bytes)");
  std::string other_format = sealed;
  other_format[0] = '\x7b';
  CHECK(sealer.open("k", other_format).error().message() == "unknown format 0x7b");
  const RecordSealer other(key_of(4));
  CHECK(other.open("k", sealed).error().message() ==
        "sealed under storage key " + sealer.key().id_hex() + ", not " + other.key().id_hex());
  CHECK(sealer.open("k2", sealed).error().message() ==
        "authentication failed (a changed byte, or a record moved from another key)");
}

TEST_CASE("a record moved to another key or store does not open", "[sealed]") {
  TempDir dir;
  auto db = open_db(dir.path);
  auto seal = StoreSeal::attach(*db, "outbox", key_of(5), "storage.key_file");
  REQUIRE(seal);
  const std::string at_seq_7 = seal.value().seal(std::string("rmetrics\0\0\0\0\0\0\0\0\x07", 17), "batch 7");
  const std::string seq_8(std::string("rmetrics\0\0\0\0\0\0\0\0\x08", 17));
  const auto moved = seal.value().open(seq_8, at_seq_7);
  REQUIRE_FALSE(moved);
  CHECK(moved.error().message() ==
        "rmetrics\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x08: authentication failed (a changed byte, "
        "or a record moved from another key)");
  TempDir other_dir;
  auto other_db = open_db(other_dir.path);
  auto inbox = StoreSeal::attach(*other_db, "inbox", key_of(5), "storage.key_file");
  REQUIRE(inbox);
  CHECK_FALSE(inbox.value().open(std::string("rmetrics\0\0\0\0\0\0\0\0\x07", 17), at_seq_7));
}

TEST_CASE("nonces do not repeat", "[sealed]") {
  const RecordSealer sealer(key_of(6));
  std::set<std::string> nonces;
  constexpr int kRecords = 100000;
  for (int i = 0; i < kRecords; ++i) nonces.insert(sealer.seal("k", "same plaintext").substr(5, 12));
  CHECK(nonces.size() == kRecords);
}

TEST_CASE("storage key files: 64 hex digits, never readable by others", "[sealed]") {
  TempDir dir;
  const std::string text = new_storage_key_text();
  REQUIRE(text.size() == 65);
  const fs::path good = write_file(dir.path / "storage.key", text, fs::perms::owner_read | fs::perms::owner_write);
  auto key = load_storage_key(good);
  REQUIRE(key);
  CHECK(key.value().id_hex().size() == 8);
  CHECK(load_storage_key(good).value().id == key.value().id);

  const fs::path open_to_all = write_file(dir.path / "world.key", text,
                                          fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
  CHECK(load_storage_key(open_to_all).error().message() ==
        open_to_all.string() + ": mode 0604 lets group or others read the storage key: chmod 600 it");
  const fs::path group = write_file(dir.path / "group.key", text, fs::perms::owner_read | fs::perms::group_read);
  CHECK_FALSE(load_storage_key(group));
  const fs::path short_key = write_file(dir.path / "short.key", "abcd\n", fs::perms::owner_read);
  CHECK(load_storage_key(short_key).error().message() ==
        short_key.string() + ": expected 64 hex digits (a 256-bit key)");
  CHECK(load_storage_key(dir.path / "absent.key").error().message() == (dir.path / "absent.key").string() + ": not present");
}

TEST_CASE("a key derived from a secure element's secret is stable per node", "[sealed]") {
  const StorageKey a = derive_storage_key("secret from the element", "dev-7");
  CHECK(derive_storage_key("secret from the element", "dev-7").bytes == a.bytes);
  CHECK(derive_storage_key("secret from the element", "dev-8").bytes != a.bytes);
  CHECK(derive_storage_key("another secret", "dev-7").bytes != a.bytes);
  const std::string sealed = RecordSealer(a).seal("k", "v");
  CHECK(RecordSealer(derive_storage_key("secret from the element", "dev-7")).open("k", sealed).value() == "v");
}

TEST_CASE("a plaintext store is sealed once, and a sealed one needs its key", "[sealed]") {
  TempDir dir;
  {
    auto db = open_db(dir.path);
    REQUIRE(db->Put(leveldb::WriteOptions(), "a", "plain a").ok());
    REQUIRE(db->Put(leveldb::WriteOptions(), "b", "plain b").ok());
    auto plain = StoreSeal::attach(*db, "tasks", std::nullopt, "storage.key_file");
    REQUIRE(plain);
    CHECK_FALSE(plain.value().sealing());
    CHECK(plain.value().open("a", "plain a").value() == "plain a");
  }
  {
    auto db = open_db(dir.path);
    auto seal = StoreSeal::attach(*db, "tasks", key_of(7), "storage.key_file");
    REQUIRE(seal);
    CHECK(seal.value().migrated() == 2);
    std::string raw;
    REQUIRE(db->Get(leveldb::ReadOptions(), "a", &raw).ok());
    CHECK(raw != "plain a");
    CHECK(seal.value().open("a", raw).value() == "plain a");
    // Plaintext written into a sealed store is corrupt, not read as plaintext.
    CHECK_FALSE(seal.value().open("b", "plain b"));
  }
  {
    auto db = open_db(dir.path);
    auto again = StoreSeal::attach(*db, "tasks", key_of(7), "storage.key_file");
    REQUIRE(again);
    CHECK(again.value().migrated() == 0);
    const auto without = StoreSeal::attach(*db, "tasks", std::nullopt, "storage.key_file");
    CHECK(without.error().message() == "tasks: sealed with storage key " + key_of(7).id_hex() +
                                           ", and no storage key is configured (storage.key_file)");
    const auto other = StoreSeal::attach(*db, "tasks", key_of(8), "storage.key_file");
    CHECK(other.error().message() == "tasks: sealed with storage key " + key_of(7).id_hex() +
                                         ", not with the configured key " + key_of(8).id_hex() + " (storage.key_file)");
  }
}
