#include "nova/agent/cache.h"

#include <leveldb/write_batch.h>

#include <algorithm>

#include "small_db.h"

namespace nova::agent {
namespace {

using schemas::Error;

// Record keys: 'm' + key -> recency (seq, charge: 16 bytes little-endian), 'v' + key ->
// the value (sealed with a storage key). The seal's marker starts with a zero byte, so
// it sorts before both ranges.
constexpr char kMeta = 'm';
constexpr char kValue = 'v';

std::string record_key(char kind, std::string_view key) {
  std::string out(1, kind);
  out.append(key);
  return out;
}

std::string encode_meta(std::uint64_t seq, std::uint64_t charge) {
  std::string out(16, '\0');
  for (int i = 0; i < 8; ++i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>((seq >> (8 * i)) & 0xff);
    out[static_cast<std::size_t>(8 + i)] = static_cast<char>((charge >> (8 * i)) & 0xff);
  }
  return out;
}

std::uint64_t decode_u64(std::string_view b) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[static_cast<std::size_t>(i)]);
  return v;
}

}  // namespace

double CacheStats::hit_ratio() const {
  const std::uint64_t reads = hits + misses;
  return reads == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(reads);
}

void add_cache_gauges(const CacheStats& s, std::map<std::string, double>& extra) {
  if (s.hits + s.misses + s.puts == 0) return;
  extra["agent.cache.hit_pct"] = 100.0 * s.hit_ratio();
  extra["agent.cache.hits"] = static_cast<double>(s.hits);
  extra["agent.cache.misses"] = static_cast<double>(s.misses);
  extra["agent.cache.bytes"] = static_cast<double>(s.bytes);
  extra["agent.cache.entries"] = static_cast<double>(s.entries);
  extra["agent.cache.evictions"] = static_cast<double>(s.evictions);
  extra["agent.cache.prefetches"] = static_cast<double>(s.prefetches);
  extra["agent.cache.prefetch_hits"] = static_cast<double>(s.prefetch_hits);
}

std::optional<std::string> cache_key_problem(std::string_view key) {
  if (key.empty()) return "is empty";
  if (key.size() > kCacheMaxKeyBytes) {
    return "is " + std::to_string(key.size()) + " bytes, longer than " + std::to_string(kCacheMaxKeyBytes);
  }
  for (std::size_t i = 0; i < key.size(); ++i) {
    const auto c = static_cast<unsigned char>(key[i]);
    if (c <= 0x20 || c >= 0x7f) {
      return "byte " + std::to_string(i) + " is not printable ASCII (space and control bytes are not allowed)";
    }
  }
  return std::nullopt;
}

schemas::Result<std::unique_ptr<Cache>> Cache::open(CacheOptions options) {
  if (options.budget_bytes == 0) return Error{"limits.cache_size_mb", "is 0: the cache is off"};
  if (options.max_entries == 0) return Error{"cache.max_entries", "must be at least 1"};
  SmallDbOptions o;
  o.write_buffer_bytes = 1 << 20;  // values up to 4 MiB: a 64 KiB buffer would flush at every put
  o.storage = options.storage;
  auto db = open_small_db(options.dir, o, "cache");
  if (!db) return db.error();
  std::unique_ptr<Cache> cache(new Cache(std::move(options), std::make_unique<SmallDb>(std::move(db).value())));
  if (auto loaded = cache->load_index(); !loaded) return loaded.error();
  return cache;
}

Cache::Cache(CacheOptions options, std::unique_ptr<SmallDb> db)
    : options_(std::move(options)), db_(std::move(db)), predictor_(options_.predictor) {}

Cache::~Cache() = default;

schemas::Status Cache::load_index() {
  std::vector<Entry> found;
  std::vector<std::string> broken;
  std::unique_ptr<leveldb::Iterator> it(db_->db->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(std::string(1, kMeta)); it->Valid() && it->key()[0] == kMeta; it->Next()) {
    std::string key(it->key().data() + 1, it->key().size() - 1);
    if (it->value().size() != 16) {
      broken.push_back(std::move(key));
      continue;
    }
    const std::string_view v(it->value().data(), it->value().size());
    found.push_back(Entry{std::move(key), decode_u64(v.substr(8)), decode_u64(v.substr(0, 8)), false});
  }
  if (!it->status().ok()) return Error{"cache", "scan " + options_.dir.string() + ": " + it->status().ToString()};
  it.reset();
  for (const std::string& key : broken) {
    leveldb::WriteBatch b;
    b.Delete(record_key(kMeta, key));
    b.Delete(record_key(kValue, key));
    db_->db->Write(leveldb::WriteOptions(), &b);
  }
  std::sort(found.begin(), found.end(), [](const Entry& a, const Entry& b) { return a.seq < b.seq; });
  for (Entry& e : found) {  // oldest first, so the newest ends at the front
    next_seq_ = std::max(next_seq_, e.seq + 1);
    bytes_ += e.charge;
    lru_.push_front(std::move(e));
    index_.emplace(lru_.front().key, lru_.begin());
  }
  // A smaller budget or max_entries than the last run's: the oldest go now.
  const std::lock_guard lock(mutex_);
  shrink(0);
  return schemas::Ok{};
}

void Cache::touch(Lru::iterator it) {
  it->seq = next_seq_++;
  lru_.splice(lru_.begin(), lru_, it);
  // Recency survives a restart; unsynced, like every write here.
  db_->db->Put(leveldb::WriteOptions(), record_key(kMeta, it->key), encode_meta(it->seq, it->charge));
}

void Cache::drop(Lru::iterator it) {
  leveldb::WriteBatch b;
  b.Delete(record_key(kMeta, it->key));
  b.Delete(record_key(kValue, it->key));
  db_->db->Write(leveldb::WriteOptions(), &b);
  if (it->prefetched) ++counters_.prefetch_unused;
  bytes_ -= it->charge;
  index_.erase(it->key);
  lru_.erase(it);
}

void Cache::shrink(std::uint64_t room) {
  const std::size_t slots = room > 0 ? 1 : 0;
  while (!lru_.empty() &&
         (bytes_ + room > options_.budget_bytes || lru_.size() + slots > options_.max_entries)) {
    drop(std::prev(lru_.end()));
    ++counters_.evictions;
  }
}

std::optional<std::string> Cache::get(std::string_view key) {
  const std::lock_guard lock(mutex_);
  predictor_.observe(key);
  const auto found = index_.find(key);
  if (found != index_.end()) {
    const Lru::iterator it = found->second;
    const std::string vkey = record_key(kValue, key);
    std::string raw;
    std::optional<std::string> value;
    if (db_->db->Get(leveldb::ReadOptions(), vkey, &raw).ok()) value = db_->open_value(vkey, raw);
    if (value) {
      ++counters_.hits;
      if (it->prefetched) ++counters_.prefetch_hits;
      it->prefetched = false;
      touch(it);
      return value;
    }
    drop(it);  // unreadable (reported through storage.on_corrupt): a miss, fetched again
  }
  ++counters_.misses;
  return std::nullopt;
}

schemas::Result<std::optional<std::string>> Cache::get_or_fetch(std::string_view key, const Origin& origin) {
  if (auto hit = get(key)) return hit;
  if (!origin) return std::optional<std::string>{};
  OriginReply reply = origin(key);
  const std::lock_guard lock(mutex_);
  ++counters_.origin_fetches;
  switch (reply.kind) {
    case OriginReply::Kind::value:
      break;
    case OriginReply::Kind::not_found:
      return std::optional<std::string>{};
    case OriginReply::Kind::error:
      ++counters_.origin_errors;
      return Error{"origin", std::move(reply.body)};
  }
  // A value the budget cannot hold is still handed over, just not kept.
  if (reply.body.size() <= kCacheMaxValueBytes && key.size() + reply.body.size() <= options_.budget_bytes) {
    if (auto stored = store(key, reply.body, false); !stored) return stored.error();
  }
  return std::optional<std::string>(std::move(reply.body));
}

std::size_t Cache::prefetch(std::string_view key, const Origin& origin) {
  if (!options_.prefetch || !origin) return 0;
  std::vector<std::string> wanted;
  {
    const std::lock_guard lock(mutex_);
    for (std::string& k : predictor_.predict(key)) {
      if (!index_.contains(k) && !cache_key_problem(k)) wanted.push_back(std::move(k));
    }
  }
  std::size_t stored = 0;
  for (const std::string& k : wanted) {
    OriginReply reply = origin(k);
    const std::lock_guard lock(mutex_);
    ++counters_.origin_fetches;
    if (reply.kind == OriginReply::Kind::error) ++counters_.origin_errors;
    if (reply.kind != OriginReply::Kind::value || index_.contains(k)) continue;
    if (reply.body.size() > kCacheMaxValueBytes || k.size() + reply.body.size() > options_.budget_bytes) continue;
    if (store(k, reply.body, true)) {
      ++counters_.prefetches;
      ++stored;
    }
  }
  return stored;
}

schemas::Status Cache::put(std::string_view key, std::string_view value) {
  if (auto problem = cache_key_problem(key)) return Error{"key", *problem};
  if (value.size() > kCacheMaxValueBytes) {
    return Error{"value", "is " + std::to_string(value.size()) + " bytes, larger than " +
                              std::to_string(kCacheMaxValueBytes)};
  }
  if (key.size() + value.size() > options_.budget_bytes) {
    return Error{"value", "key and value are " + std::to_string(key.size() + value.size()) +
                              " bytes, more than the cache's budget of " + std::to_string(options_.budget_bytes)};
  }
  const std::lock_guard lock(mutex_);
  return store(key, value, false);
}

// Under mutex_; key and value were checked.
schemas::Status Cache::store(std::string_view key, std::string_view value, bool prefetched) {
  if (const auto old = index_.find(key); old != index_.end()) drop(old->second);
  const std::uint64_t charge = key.size() + value.size();
  shrink(charge);
  const std::uint64_t seq = next_seq_++;
  const std::string vkey = record_key(kValue, key);
  leveldb::WriteBatch b;
  b.Put(record_key(kMeta, key), encode_meta(seq, charge));
  b.Put(vkey, db_->seal->seal(vkey, value));
  if (const leveldb::Status st = db_->db->Write(leveldb::WriteOptions(), &b); !st.ok()) {
    return Error{"cache", "write " + options_.dir.string() + ": " + st.ToString()};
  }
  lru_.push_front(Entry{std::string(key), charge, seq, prefetched});
  index_.emplace(lru_.front().key, lru_.begin());
  bytes_ += charge;
  if (!prefetched) ++counters_.puts;
  return schemas::Ok{};
}

bool Cache::erase(std::string_view key) {
  const std::lock_guard lock(mutex_);
  const auto it = index_.find(key);
  if (it == index_.end()) return false;
  drop(it->second);
  return true;
}

std::size_t Cache::evict(std::string_view prefix) {
  const std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (auto it = lru_.begin(); it != lru_.end();) {
    const auto next = std::next(it);
    if (std::string_view(it->key).starts_with(prefix)) {
      drop(it);
      ++n;
    }
    it = next;
  }
  counters_.evictions += n;
  return n;
}

bool Cache::contains(std::string_view key) const {
  const std::lock_guard lock(mutex_);
  return index_.contains(key);
}

CacheStats Cache::stats() const {
  const std::lock_guard lock(mutex_);
  CacheStats s = counters_;
  s.entries = lru_.size();
  s.bytes = bytes_;
  s.budget_bytes = options_.budget_bytes;
  return s;
}

}  // namespace nova::agent
