// Opening the agent's LevelDB stores (outbox, task store, inbox) with device-sized
// memory: a small write buffer, a small block cache and few open files, so a gateway
// with little RAM is not dominated by database caches. With a storage key every value
// is sealed (encryption at rest, nova/security/sealed_store.h); a value that does not
// open is reported through the options' sink, deleted and never used.
#pragma once

#include <leveldb/cache.h>
#include <leveldb/db.h>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string_view>

#include "nova/agent/storage.h"
#include "nova/schemas/result.h"
#include "nova/security/sealed_store.h"

namespace nova::agent {

struct SmallDbOptions {
  std::size_t write_buffer_bytes = 64 * 1024;
  std::size_t block_cache_bytes = 64 * 1024;
  int max_open_files = 16;
  // Off for stores whose values are compressed already (zstd batches).
  bool snappy = true;
  StorageOptions storage{};
};

// The cache must outlive the database: members are destroyed in reverse order.
struct SmallDb {
  std::unique_ptr<leveldb::Cache> cache;
  std::unique_ptr<leveldb::DB> db;
  std::optional<security::StoreSeal> seal;  // set by open_small_db
  StorageOptions storage;

  // The value stored under `key`, or nullopt after reporting it to storage.on_corrupt
  // (the caller deletes it).
  std::optional<std::string> open_value(const leveldb::Slice& key, const leveldb::Slice& value) const;
};

// Creates `dir` if needed and opens (or creates) the database in it, sealing a plaintext
// store when a storage key is given. Errors read "<what>: open <dir>: <LevelDB status>"
// or "<what>: <why the seal refuses>".
schemas::Result<SmallDb> open_small_db(const std::filesystem::path& dir, const SmallDbOptions& options,
                                       std::string_view what);

}  // namespace nova::agent
