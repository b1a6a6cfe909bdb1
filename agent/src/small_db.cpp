#include "small_db.h"

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
  return out;
}

}  // namespace nova::agent
