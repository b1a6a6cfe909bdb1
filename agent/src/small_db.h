// Opening the agent's LevelDB stores (outbox, task store, inbox) with device-sized
// memory: a small write buffer, a small block cache and few open files, so a gateway
// with little RAM is not dominated by database caches.
#pragma once

#include <leveldb/cache.h>
#include <leveldb/db.h>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string_view>

#include "nova/schemas/result.h"

namespace nova::agent {

struct SmallDbOptions {
  std::size_t write_buffer_bytes = 64 * 1024;
  std::size_t block_cache_bytes = 64 * 1024;
  int max_open_files = 16;
  // Off for stores whose values are compressed already (zstd batches).
  bool snappy = true;
};

// The cache must outlive the database: members are destroyed in reverse order.
struct SmallDb {
  std::unique_ptr<leveldb::Cache> cache;
  std::unique_ptr<leveldb::DB> db;
};

// Creates `dir` if needed and opens (or creates) the database in it. Errors read
// "<what>: open <dir>: <LevelDB status>".
schemas::Result<SmallDb> open_small_db(const std::filesystem::path& dir, const SmallDbOptions& options,
                                       std::string_view what);

}  // namespace nova::agent
