#include "small_db.h"

#include "nova/common/log.h"

namespace nova::agent {

schemas::Result<SmallDb> open_small_db(const std::filesystem::path& dir, const SmallDbOptions& options,
                                       std::string_view what) {
  SmallDb out;
  out.cache.reset(leveldb::NewLRUCache(options.block_cache_bytes));
  leveldb::Options o;
  o.create_if_missing = true;
  o.write_buffer_size = options.write_buffer_bytes;
  o.max_open_files = options.max_open_files;
  o.block_cache = out.cache.get();
  if (!options.snappy) o.compression = leveldb::kNoCompression;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  leveldb::DB* raw = nullptr;
  const leveldb::Status st = leveldb::DB::Open(o, dir.string(), &raw);
  if (!st.ok()) return schemas::Error{"", std::string(what) + ": open " + dir.string() + ": " + st.ToString()};
  out.db.reset(raw);
  auto seal = security::StoreSeal::attach(*out.db, std::string(what), options.storage.key, "storage.key_file");
  if (!seal) return seal.error();
  out.seal = std::move(seal).value();
  out.storage = options.storage;
  return out;
}

std::optional<std::string> SmallDb::open_value(const leveldb::Slice& key, const leveldb::Slice& value) const {
  return seal->open_or_report(std::string_view(key.data(), key.size()), std::string_view(value.data(), value.size()),
                              storage.on_corrupt);
}

StorageOptions reported_storage(std::optional<security::StorageKey> key, StorageLog log,
                                std::shared_ptr<std::atomic<std::uint64_t>> count) {
  StorageOptions out;
  out.key = std::move(key);
  out.on_corrupt = [log = std::move(log), count = std::move(count)](const CorruptRecord& r) {
    if (count) count->fetch_add(1);
    if (log) {
      log("error", "corrupt_record",
          "store=" + r.store + " key=" + common::logfmt_quote(r.key) + " storage_key=" + r.storage_key +
              " reason=" + common::logfmt_quote(r.reason) + " action=deleted");
    }
  };
  return out;
}

}  // namespace nova::agent
