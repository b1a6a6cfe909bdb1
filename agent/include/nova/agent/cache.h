// The agent's task cache: a key -> value store on LevelDB with a byte budget, least
// recently used entries evicted first, and prefetch of the keys a learned predictor
// (cache_predictor.h) expects next. docs/agent.md, "Cache".
//
// The model is a read-through cache of one origin. A task asks for a key (get_or_fetch);
// a stored key is a hit; on a miss the cache asks the origin (cache_origin.h: an HTTP
// base URL), stores what it answers and hands it over. After every read the predictor's
// next keys that are not stored are fetched from the same origin (prefetch), so a task
// walking a sequence finds the next keys stored. Without an origin a miss is answered as
// a miss: the task fetches the value itself and put()s it, and nothing is prefetched.
//
// Budget: an entry is charged its key plus value bytes; put() evicts least recently
// used entries until the new one fits, so bytes() never exceeds the budget, and the
// number of entries never exceeds max_entries (the in-memory index costs about 120
// bytes per entry: a list node and a hash node in libstdc++ on 64 bits, and the key's
// heap bytes beyond 15). A value larger than the budget is refused.
//
// Durability: entries and their recency (a sequence number, rewritten at each hit)
// are written to LevelDB without sync: they survive a crash or SIGKILL of the agent,
// not necessarily a power cut (it is a cache: a lost entry is fetched again). At open
// the index is rebuilt from the small recency records only (never the values), and
// entries beyond a smaller budget or max_entries are evicted, oldest first. With a
// storage key values are sealed like the agent's other stores (storage.h).
//
// Thread-safe: one mutex; the origin is called without it.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "nova/agent/cache_predictor.h"
#include "nova/agent/storage.h"
#include "nova/schemas/result.h"

namespace nova::agent {

struct SmallDb;

inline constexpr std::size_t kCacheMaxKeyBytes = 256;
inline constexpr std::size_t kCacheMaxValueBytes = 4u << 20;  // 4 MiB

struct CacheOptions {
  std::filesystem::path dir;                     // the cache's own LevelDB
  std::uint64_t budget_bytes = 100ull << 20;     // limits.cache_size_mb
  std::size_t max_entries = 16384;               // cache.max_entries
  bool prefetch = true;                          // cache.prefetch
  PredictorOptions predictor{};                  // depth: cache.prefetch_depth
  StorageOptions storage{};
};

// What an origin answered for a key.
struct OriginReply {
  enum class Kind { value, not_found, error } kind = Kind::error;
  std::string body;  // the value, or why it failed
};
using Origin = std::function<OriginReply(std::string_view key)>;

// Counters since open; entries, bytes and budget describe now.
struct CacheStats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t prefetches = 0;       // entries stored by prefetch
  std::uint64_t prefetch_hits = 0;    // hits on prefetched entries (their first use)
  std::uint64_t prefetch_unused = 0;  // prefetched entries evicted before any use
  std::uint64_t origin_fetches = 0;   // requests to the origin (misses and prefetches)
  std::uint64_t origin_errors = 0;
  std::uint64_t puts = 0;
  std::uint64_t evictions = 0;  // by the budget, max_entries or evict()
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;
  std::uint64_t budget_bytes = 0;
  // hits / (hits + misses), 0 before any read.
  double hit_ratio() const;
};

// The cache's gauges in a metrics sample: agent.cache.hit_pct (hits per read since the
// agent started, %), .hits, .misses, .bytes, .entries, .evictions, .prefetches,
// .prefetch_hits. Nothing until the cache was first read or written, so an agent whose
// tasks do not use it sends no more than before.
void add_cache_gauges(const CacheStats& stats, std::map<std::string, double>& extra);

// A key a client may use: 1..256 bytes of printable ASCII without space. Nullopt when
// valid, else why not (for "ERR key <reason>").
std::optional<std::string> cache_key_problem(std::string_view key);

class Cache {
 public:
  // Errors name the directory and LevelDB's reason, or the budget ("limits.cache_size_mb").
  static schemas::Result<std::unique_ptr<Cache>> open(CacheOptions options);
  ~Cache();

  // A read: the stored value (a hit), else nullopt (a miss). Counted, and learnt by the
  // predictor.
  std::optional<std::string> get(std::string_view key);
  // get(), and on a miss the origin's value (stored), nullopt when the origin has none,
  // or an Error with path "origin". No origin: get().
  schemas::Result<std::optional<std::string>> get_or_fetch(std::string_view key, const Origin& origin);
  // Fetches from `origin` the keys the predictor expects after `key` that are not
  // stored; returns how many were stored. Does nothing when prefetch is off.
  std::size_t prefetch(std::string_view key, const Origin& origin);

  // Stores `value` under `key`, evicting least recently used entries to make room.
  // Errors: path "key" or "value" with the reason (too long, larger than the budget),
  // or "cache" when LevelDB refuses the write.
  schemas::Status put(std::string_view key, std::string_view value);
  // Removes `key`; false when it was not stored.
  bool erase(std::string_view key);
  // Removes every key starting with `prefix` (the rule engine's "evict cache entries");
  // returns how many.
  std::size_t evict(std::string_view prefix);

  bool contains(std::string_view key) const;
  CacheStats stats() const;

 private:
  struct Entry {
    std::string key;
    std::uint64_t charge = 0;
    std::uint64_t seq = 0;
    bool prefetched = false;  // stored by prefetch and not read since
  };
  using Lru = std::list<Entry>;  // most recently used first

  Cache(CacheOptions options, std::unique_ptr<SmallDb> db);
  schemas::Status load_index();
  schemas::Status store(std::string_view key, std::string_view value, bool prefetched);
  void touch(Lru::iterator it);
  void drop(Lru::iterator it);           // from the index and the database
  void shrink(std::uint64_t room);       // evicts until `room` more bytes fit

  CacheOptions options_;
  std::unique_ptr<SmallDb> db_;
  mutable std::mutex mutex_;
  Lru lru_;
  std::unordered_map<std::string_view, Lru::iterator> index_;  // views into lru_'s keys
  Predictor predictor_;
  std::uint64_t next_seq_ = 1;
  std::uint64_t bytes_ = 0;
  CacheStats counters_;
};

}  // namespace nova::agent
