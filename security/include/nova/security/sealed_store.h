// Encryption at rest for one LevelDB store: the one place where the agent's stores
// (outbox, task store, inbox) and nova-cloud's store seal values on their way in and
// open them on their way out (sealed_records.h does the cryptography).
//
// A store knows whether it is sealed by one marker record, kMarkerKey, whose value is the
// id of the storage key that sealed it. The marker key starts with a zero byte and is
// longer than 8 bytes, so it never collides with the stores' own keys; a store that reads
// all its keys skips it (is_marker).
//
// Migration is one way: opening a plaintext store (no marker) with a key seals every
// record in one synced write together with the marker, so a crash leaves it all plaintext
// or all sealed. From then on every value must open; nothing is ever read as plaintext
// again, so a record cannot be "downgraded" by writing plaintext into the files. Opening a
// sealed store without a key, or with another key, is refused naming both key ids (key
// rotation: seal a new store, there is no re-keying in place yet).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "nova/schemas/result.h"
#include "nova/security/sealed_records.h"

namespace leveldb {
class DB;
class Slice;
}  // namespace leveldb

namespace nova::security {

inline constexpr std::string_view kMarkerKey{"\0nova.sealed-store", 18};

// A stored record that failed to open: which store, its key (printable_key), the
// storage key's id and the reason. Its owner deletes it; it is never decoded or sent.
struct CorruptRecord {
  std::string store;
  std::string key;
  std::string storage_key;
  std::string reason;
};
using CorruptRecordSink = std::function<void(const CorruptRecord&)>;

class StoreSeal {
 public:
  // `store` names the store in errors and in the associated data ("outbox", "tasks",
  // "inbox", "cloud"). Without a key the store stays plaintext and values pass through.
  // Errors: path "", message "<store>: ...", naming `key_setting` (the configuration key
  // of the key file) when the key is missing or another one.
  static schemas::Result<StoreSeal> attach(leveldb::DB& db, std::string store, const std::optional<StorageKey>& key,
                                           std::string_view key_setting);

  bool sealing() const { return sealer_.has_value(); }
  const std::string& store() const { return store_; }
  // Records sealed by the migration at attach() (0 when the store was sealed already).
  std::uint64_t migrated() const { return migrated_; }

  std::string seal(std::string_view key, std::string_view value) const;
  // The value, or an Error whose path is the record's key (printable_key) and whose
  // reason says why it does not open (sealed_records.h).
  schemas::Result<std::string> open(std::string_view key, std::string_view value) const;

  // The value, or nullopt after telling `sink` (may be empty) why it does not open.
  std::optional<std::string> open_or_report(std::string_view key, std::string_view value,
                                            const CorruptRecordSink& sink) const;

  static bool is_marker(std::string_view key) { return key == kMarkerKey; }

 private:
  StoreSeal(std::string store, std::optional<RecordSealer> sealer) : store_(std::move(store)), sealer_(std::move(sealer)) {}
  std::string associated(std::string_view key) const;

  std::string store_;
  std::optional<RecordSealer> sealer_;
  std::uint64_t migrated_ = 0;
};

// A database key as text for a log line: printable ASCII as is, other bytes as \xNN.
std::string printable_key(std::string_view key);

}  // namespace nova::security
