#include "nova/security/sealed_store.h"

#include <leveldb/db.h>
#include <leveldb/write_batch.h>

#include <cstdio>
#include <memory>

namespace nova::security {
namespace {

std::string id_bytes(std::uint32_t id) {
  std::string out(4, '\0');
  for (std::size_t i = 0; i < 4; ++i) out[i] = static_cast<char>(id >> (24 - 8 * i) & 0xffu);
  return out;
}

std::string id_hex_of(const std::string& bytes) {
  std::uint32_t id = 0;
  for (char c : bytes) id = id << 8 | static_cast<std::uint8_t>(c);
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", id);
  return buf;
}

}  // namespace

std::string printable_key(std::string_view key) {
  std::string out;
  for (char c : key) {
    const auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b < 0x7f && b != '\\') {
      out += c;
    } else {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", b);
      out += buf;
    }
  }
  return out;
}

schemas::Result<StoreSeal> StoreSeal::attach(leveldb::DB& db, std::string store, const std::optional<StorageKey>& key,
                                             std::string_view key_setting) {
  std::string marker;
  const leveldb::Status found = db.Get(leveldb::ReadOptions(), leveldb::Slice(kMarkerKey.data(), kMarkerKey.size()), &marker);
  if (!found.ok() && !found.IsNotFound()) return schemas::Error{"", store + ": read the seal marker: " + found.ToString()};
  const bool sealed = found.ok();
  if (sealed && marker.size() != 4) return schemas::Error{"", store + ": the seal marker is corrupt"};
  if (!key) {
    if (sealed) {
      return schemas::Error{"", store + ": sealed with storage key " + id_hex_of(marker) +
                                    ", and no storage key is configured (" + std::string(key_setting) + ")"};
    }
    return StoreSeal(std::move(store), std::nullopt);
  }
  StoreSeal out(std::move(store), RecordSealer(*key));
  if (sealed) {
    if (marker != id_bytes(key->id)) {
      return schemas::Error{"", out.store_ + ": sealed with storage key " + id_hex_of(marker) +
                                    ", not with the configured key " + key->id_hex() + " (" +
                                    std::string(key_setting) + ")"};
    }
    return out;
  }
  // One-way migration of a plaintext store: every value sealed, with the marker, at once.
  leveldb::WriteBatch batch;
  std::unique_ptr<leveldb::Iterator> it(db.NewIterator(leveldb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string_view k(it->key().data(), it->key().size());
    batch.Put(it->key(), out.seal(k, std::string_view(it->value().data(), it->value().size())));
    out.migrated_ += 1;
  }
  if (!it->status().ok()) return schemas::Error{"", out.store_ + ": read for sealing: " + it->status().ToString()};
  it.reset();
  batch.Put(leveldb::Slice(kMarkerKey.data(), kMarkerKey.size()), id_bytes(key->id));
  leveldb::WriteOptions sync;
  sync.sync = true;
  const leveldb::Status st = db.Write(sync, &batch);
  if (!st.ok()) return schemas::Error{"", out.store_ + ": seal the plaintext store: " + st.ToString()};
  return out;
}

std::string StoreSeal::associated(std::string_view key) const {
  std::string ad = store_;
  ad.push_back('\0');
  ad += key;
  return ad;
}

std::string StoreSeal::seal(std::string_view key, std::string_view value) const {
  if (!sealer_) return std::string(value);
  return sealer_->seal(associated(key), value);
}

schemas::Result<std::string> StoreSeal::open(std::string_view key, std::string_view value) const {
  if (!sealer_) return std::string(value);
  auto plain = sealer_->open(associated(key), value);
  if (!plain) return schemas::Error{printable_key(key), plain.error().reason};
  return plain;
}

std::optional<std::string> StoreSeal::open_or_report(std::string_view key, std::string_view value,
                                                     const CorruptRecordSink& sink) const {
  auto plain = open(key, value);
  if (plain) return std::move(plain).value();
  if (sink) sink(CorruptRecord{store_, plain.error().path, sealer_->key().id_hex(), plain.error().reason});
  return std::nullopt;
}

}  // namespace nova::security
