#include "nova/cloud/ingest_store.h"

#include <leveldb/cache.h>
#include <leveldb/db.h>
#include <leveldb/write_batch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "nova/schemas/codec.h"
#include "nova/schemas/sensor_gauges.h"

namespace nova::cloud {

// Key layout (node and stream are topic Ids, so '/' never occurs inside them):
//   w/<node>/<stream>                 watermark, u64 big endian
//   p/<node>/<stream>/<seq>           a stored seq above the watermark (empty value)
//   h/<node>/<first ts><seq>          a raw metrics batch, as received
//   g/<node>/<bucket ts>              a MinuteAggregate
//   r/<node>/<task id>                a task result, as received (value: ts + payload)
//   d/<node>/<ts><seq>, a/<node>/<ts><seq>   decisions, alerts, as received
//   c/<kind>/<id>                     a cloud record (workload, placement, cluster), CBOR
// Fixed-width big-endian numbers keep each node's history in time order.
namespace {

void put_be64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

std::uint64_t get_be64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::string node_prefix(char tag, const std::string& node) { return std::string(1, tag) + "/" + node + "/"; }

std::string watermark_key(const std::string& node, const std::string& stream) {
  return node_prefix('w', node) + stream;
}

std::string pending_prefix(const std::string& node, const std::string& stream) {
  return node_prefix('p', node) + stream + "/";
}

std::string pending_key(const std::string& node, const std::string& stream, std::uint64_t seq) {
  std::string k = pending_prefix(node, stream);
  put_be64(k, seq);
  return k;
}

std::string timed_key(char tag, const std::string& node, Timestamp ts, std::uint64_t seq) {
  std::string k = node_prefix(tag, node);
  put_be64(k, ts);
  put_be64(k, seq);
  return k;
}

std::string bucket_key(const std::string& node, Timestamp bucket) {
  std::string k = node_prefix('g', node);
  put_be64(k, bucket);
  return k;
}

void put_f64(std::string& out, double d) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &d, sizeof bits);
  put_be64(out, bits);
}

double get_f64(const char* p) {
  const std::uint64_t bits = get_be64(p);
  double d = 0;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

// count(u64) then per gauge: name length (1 byte), name, count, min, max, sum.
std::string serialize(const MinuteAggregate& a) {
  std::string out;
  put_be64(out, a.gauges.size());
  for (const auto& [name, g] : a.gauges) {
    out.push_back(static_cast<char>(name.size()));
    out += name;
    put_be64(out, g.count);
    put_f64(out, g.min);
    put_f64(out, g.max);
    put_f64(out, g.sum);
  }
  return out;
}

// Our own format, but the disk can still hand back garbage: parse defensively.
MinuteAggregate deserialize(Timestamp bucket, const std::string& in) {
  MinuteAggregate a;
  a.bucket = bucket;
  if (in.size() < 8) return a;
  std::size_t pos = 8;
  for (std::uint64_t n = get_be64(in.data()); n > 0; --n) {
    if (pos >= in.size()) break;
    const std::size_t len = static_cast<unsigned char>(in[pos++]);
    if (pos + len + 32 > in.size()) break;
    GaugeStats& g = a.gauges[in.substr(pos, len)];
    pos += len;
    g.count = get_be64(in.data() + pos);
    g.min = get_f64(in.data() + pos + 8);
    g.max = get_f64(in.data() + pos + 16);
    g.sum = get_f64(in.data() + pos + 24);
    pos += 32;
  }
  return a;
}

void add(GaugeStats& g, double v) {
  if (!std::isfinite(v)) return;
  if (g.count == 0) {
    g.min = g.max = v;
  } else {
    g.min = std::min(g.min, v);
    g.max = std::max(g.max, v);
  }
  g.sum += v;
  ++g.count;
}

void add(MinuteAggregate& a, const schemas::MetricSample& s) {
  add(a.gauges["cpu"], s.cpu_pct);
  add(a.gauges["mem"], s.mem_pct);
  add(a.gauges["disk"], s.disk_pct);
  add(a.gauges["load1"], s.load1);
  add(a.gauges["net_rx"], s.net_rx_bps);
  add(a.gauges["net_tx"], s.net_tx_bps);
  if (s.temp_c) add(a.gauges["temp"], *s.temp_c);
  if (s.power_w) add(a.gauges["power"], *s.power_w);
}

bool starts_with(const leveldb::Slice& s, const std::string& prefix) {
  return s.size() >= prefix.size() && std::memcmp(s.data(), prefix.data(), prefix.size()) == 0;
}

}  // namespace

struct IngestStore::StreamState {
  std::uint64_t watermark = 0;
  std::set<std::uint64_t> pending;
};

IngestStore::IngestStore(const StoreOptions& options) : options_(options) {}
IngestStore::~IngestStore() = default;

Result<std::unique_ptr<IngestStore>> IngestStore::open(const StoreOptions& options) {
  std::unique_ptr<IngestStore> store(new IngestStore(options));
  store->cache_.reset(leveldb::NewLRUCache(options.block_cache_bytes));
  leveldb::Options o;
  o.create_if_missing = true;
  o.write_buffer_size = options.write_buffer_bytes;
  o.block_cache = store->cache_.get();
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  leveldb::DB* raw = nullptr;
  const leveldb::Status st = leveldb::DB::Open(o, options.dir.string(), &raw);
  if (!st.ok()) return schemas::Error{"store.dir", "open " + options.dir.string() + ": " + st.ToString()};
  store->db_.reset(raw);
  auto seal = security::StoreSeal::attach(*store->db_, "cloud", options.storage_key, "store.key_file");
  if (!seal) return seal.error();
  store->seal_ = std::move(seal).value();
  return store;
}

void IngestStore::put_sealed(leveldb::WriteBatch& batch, const std::string& key, std::string_view value) const {
  batch.Put(key, seal_->seal(key, value));
}

std::optional<std::string> IngestStore::opened(const leveldb::Slice& key, const leveldb::Slice& value) {
  auto plain = seal_->open_or_report(std::string_view(key.data(), key.size()),
                                     std::string_view(value.data(), value.size()), options_.on_corrupt);
  if (!plain) {
    // Reported once: deleted, so it is never served, re-published or counted again.
    corrupt_.fetch_add(1);
    db_->Delete(leveldb::WriteOptions(), key);
  }
  return plain;
}

// Loads a stream's state on first use: its watermark and its few pending markers.
IngestStore::StreamState& IngestStore::stream(const std::string& node, const std::string& stream) {
  auto& slot = streams_[{node, stream}];
  if (slot) return *slot;
  slot = std::make_unique<StreamState>();
  const std::string prefix = pending_prefix(node, stream);
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && starts_with(it->key(), prefix); it->Next()) {
    if (it->key().size() == prefix.size() + 8) slot->pending.insert(get_be64(it->key().data() + prefix.size()));
  }
  std::string value;
  const std::string key = watermark_key(node, stream);
  if (!db_->Get(leveldb::ReadOptions(), key, &value).ok()) return *slot;  // a new stream: 0
  if (auto plain = opened(key, value); plain && plain->size() == 8) {
    slot->watermark = get_be64(plain->data());
    return *slot;
  }
  // Corrupt (reported, and deleted if it did not open): rebuilt, never restarted at 0.
  slot->watermark = highest_stored(node, stream, slot->pending);
  std::string recovered;
  put_be64(recovered, slot->watermark);
  leveldb::WriteBatch batch;
  put_sealed(batch, key, recovered);
  leveldb::WriteOptions sync;
  sync.sync = true;
  db_->Write(sync, &batch);  // a failed write leaves it to be rebuilt again at the next open
  ++counters_.watermarks_recovered;
  return *slot;
}

std::uint64_t IngestStore::highest_stored(const std::string& node, const std::string& stream,
                                          const std::set<std::uint64_t>& pending) {
  std::uint64_t highest = 0;
  auto consider = [&](const schemas::StreamPosition& p) {
    if (p.stream == stream && p.seq > highest && pending.count(p.seq) == 0) highest = p.seq;
  };
  auto position_of = [](char tag, std::span<const std::uint8_t> cbor) -> std::optional<schemas::StreamPosition> {
    switch (tag) {
      case 'h': if (auto m = schemas::decode_cbor<schemas::MetricsBatch>(cbor)) return m->position; break;
      case 'r': if (auto m = schemas::decode_cbor<schemas::TaskResult>(cbor)) return m->position; break;
      case 'd': if (auto m = schemas::decode_cbor<schemas::DecisionRecord>(cbor)) return m->position; break;
      case 'a': if (auto m = schemas::decode_cbor<schemas::Alert>(cbor)) return m->position; break;
    }
    return std::nullopt;
  };
  // Records carry their own position; the stream a kind travels on is the sender's choice.
  for (const char tag : {'h', 'r', 'd', 'a'}) {
    const std::string prefix = node_prefix(tag, node);
    std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
    for (it->Seek(prefix); it->Valid() && starts_with(it->key(), prefix); it->Next()) {
      const auto plain = opened(it->key(), it->value());
      if (!plain) continue;
      const std::size_t skip = tag == 'r' ? 8 : 0;  // a result's value starts with its ts
      if (plain->size() < skip) continue;
      const auto* bytes = reinterpret_cast<const std::uint8_t*>(plain->data());
      if (auto p = position_of(tag, std::span(bytes + skip, plain->size() - skip))) consider(*p);
    }
  }
  return highest;
}

Result<std::vector<Admission>> IngestStore::admit(std::span<const IngestRecord> records) {
  std::lock_guard lock(mutex_);
  leveldb::WriteBatch batch;
  std::vector<Admission> out(records.size());
  // Copies of every touched stream's state, restored if the write fails.
  std::map<std::pair<std::string, std::string>, StreamState> before;
  std::map<std::pair<std::string, std::string>, std::uint64_t> initial_watermark;
  std::map<std::string, MinuteAggregate> buckets;  // by key, loaded on first touch
  StoreCounters added;

  for (std::size_t i = 0; i < records.size(); ++i) {
    const IngestRecord& r = records[i];
    const std::string& node = r.position.node;
    const std::string& name = r.position.stream;
    StreamState& s = stream(node, name);
    const auto id = std::make_pair(node, name);
    if (before.emplace(id, s).second) initial_watermark[id] = s.watermark;
    const std::uint64_t seq = r.position.seq;
    // Checked before `first` is used: a forged first would otherwise move the watermark.
    // The codec guarantees first <= seq, so bounding seq bounds first too.
    if (seq > s.watermark && seq - s.watermark > options_.max_seq_ahead) {
      const bool first_too = r.position.first && *r.position.first > s.watermark + options_.max_seq_ahead;
      out[i].refused = std::string(first_too ? "position.first: " + std::to_string(*r.position.first)
                                             : "position.seq: " + std::to_string(seq)) +
                       " is more than " + std::to_string(options_.max_seq_ahead) + " ahead of the stream's watermark " +
                       std::to_string(s.watermark);
      ++added.too_far_ahead;
      continue;
    }
    // The sender declares every seq below `first` gone (acknowledged or evicted): stop
    // waiting for the ones not stored. Only what this record says is used, and the codec
    // guarantees first <= seq; a duplicate may still carry news, so this comes first.
    if (const auto first = r.position.first; first && *first <= seq && *first > s.watermark + 1) {
      const std::uint64_t gone_to = *first - 1;
      std::uint64_t held = 0;  // seqs in (watermark, first) stored here out of order
      for (auto it = s.pending.begin(); it != s.pending.end() && *it <= gone_to;) {
        batch.Delete(pending_key(node, name, *it));
        it = s.pending.erase(it);
        ++held;
      }
      added.skipped += gone_to - s.watermark - held;
      s.watermark = gone_to;
      while (s.pending.erase(s.watermark + 1) != 0) {
        ++s.watermark;
        batch.Delete(pending_key(node, name, s.watermark));
      }
    }
    if (seq == 0 || seq <= s.watermark || s.pending.count(seq) != 0) {
      out[i].duplicate = true;
      ++added.duplicates;
      continue;
    }
    if (seq == s.watermark + 1) {
      s.watermark = seq;
      while (s.pending.erase(s.watermark + 1) != 0) {
        ++s.watermark;
        batch.Delete(pending_key(node, name, s.watermark));
      }
    } else {
      s.pending.insert(seq);
      put_sealed(batch, pending_key(node, name, seq), "");
    }
    ++added.records;

    switch (r.kind) {
      case IngestRecord::Kind::metrics: {
        const Timestamp first_ts = (r.batch != nullptr && !r.batch->samples.empty()) ? r.batch->samples.front().ts : r.received;
        put_sealed(batch, timed_key('h', node, first_ts, seq), r.payload);
        if (r.batch == nullptr) break;
        added.samples += r.batch->samples.size();
        const std::uint64_t width = static_cast<std::uint64_t>(options_.downsample_bucket.count()) * 1000;
        for (const auto& sample : r.batch->samples) {
          const Timestamp bucket = width == 0 ? sample.ts : sample.ts - sample.ts % width;
          const std::string key = bucket_key(node, bucket);
          auto it = buckets.find(key);
          if (it == buckets.end()) {
            std::string value;
            MinuteAggregate a;
            a.bucket = bucket;
            if (db_->Get(leveldb::ReadOptions(), key, &value).ok()) {
              if (auto plain = opened(key, value)) a = deserialize(bucket, *plain);
            }
            it = buckets.emplace(key, std::move(a)).first;
          }
          add(it->second, sample);
        }
        break;
      }
      case IngestRecord::Kind::result: {
        const std::string task = r.result != nullptr ? r.result->task_id : std::to_string(seq);
        std::string value;
        put_be64(value, r.received);
        value += r.payload;
        put_sealed(batch, node_prefix('r', node) + task, value);
        break;
      }
      case IngestRecord::Kind::decision: put_sealed(batch, timed_key('d', node, r.received, seq), r.payload); break;
      case IngestRecord::Kind::alert: put_sealed(batch, timed_key('a', node, r.received, seq), r.payload); break;
      case IngestRecord::Kind::erasure: break;  // its counts go to the erasure's record
    }
  }
  for (const auto& [key, aggregate] : buckets) put_sealed(batch, key, serialize(aggregate));
  for (const auto& [id, old_watermark] : initial_watermark) {
    const StreamState& s = *streams_[id];
    if (s.watermark == old_watermark) continue;
    std::string value;
    put_be64(value, s.watermark);
    put_sealed(batch, watermark_key(id.first, id.second), value);
  }

  leveldb::WriteOptions sync;
  sync.sync = true;
  const leveldb::Status st = db_->Write(sync, &batch);
  if (!st.ok()) {
    for (auto& [id, state] : before) *streams_[id] = state;
    return schemas::Error{"store", "write: " + st.ToString()};
  }
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto id = std::make_pair(records[i].position.node, records[i].position.stream);
    out[i].watermark = streams_[id]->watermark;
    out[i].advanced = out[i].watermark != initial_watermark[id];
  }
  counters_.records += added.records;
  counters_.duplicates += added.duplicates;
  counters_.samples += added.samples;
  counters_.skipped += added.skipped;
  counters_.too_far_ahead += added.too_far_ahead;
  counters_.writes += 1;
  return out;
}

Result<std::uint64_t> IngestStore::observe_ack(const std::string& node, const std::string& name,
                                               std::uint64_t acked) {
  std::lock_guard lock(mutex_);
  StreamState& s = stream(node, name);
  if (acked <= s.watermark) return s.watermark > acked ? s.watermark : 0;
  const StreamState before = s;
  leveldb::WriteBatch batch;
  for (auto it = s.pending.begin(); it != s.pending.end() && *it <= acked;) {
    batch.Delete(pending_key(node, name, *it));
    it = s.pending.erase(it);
  }
  s.watermark = acked;
  while (s.pending.erase(s.watermark + 1) != 0) {
    ++s.watermark;
    batch.Delete(pending_key(node, name, s.watermark));
  }
  std::string value;
  put_be64(value, s.watermark);
  put_sealed(batch, watermark_key(node, name), value);
  leveldb::WriteOptions sync;
  sync.sync = true;
  const leveldb::Status st = db_->Write(sync, &batch);
  if (!st.ok()) {
    s = before;
    return schemas::Error{"store", "write: " + st.ToString()};
  }
  return s.watermark > acked ? s.watermark : 0;
}

std::uint64_t IngestStore::watermark(const std::string& node, const std::string& name) {
  std::lock_guard lock(mutex_);
  return stream(node, name).watermark;
}

std::map<std::string, std::uint64_t> IngestStore::watermarks(const std::string& node) {
  std::lock_guard lock(mutex_);
  std::vector<std::string> names;
  const std::string prefix = node_prefix('w', node);
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && starts_with(it->key(), prefix); it->Next()) {
    names.push_back(it->key().ToString().substr(prefix.size()));
  }
  it.reset();
  // Loaded as one stream would be, so a corrupt one is rebuilt here too.
  for (const std::string& name : names) stream(node, name);
  std::map<std::string, std::uint64_t> out;
  // Streams admitted in this process but whose watermark is still 0 have no key yet.
  for (auto s = streams_.lower_bound({node, ""}); s != streams_.end() && s->first.first == node; ++s) {
    out[s->first.second] = s->second->watermark;
  }
  return out;
}

std::vector<schemas::MetricSample> IngestStore::samples(const std::string& node, Timestamp from, Timestamp to,
                                                        std::size_t limit) {
  std::vector<schemas::MetricSample> out;
  const std::string prefix = node_prefix('h', node);
  std::string start = prefix;
  // A batch starting up to a day before `from` can still hold samples at or after it.
  put_be64(start, from > 86'400'000 ? from - 86'400'000 : 0);
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(start); it->Valid() && starts_with(it->key(), prefix) && out.size() < limit; it->Next()) {
    if (it->key().size() != prefix.size() + 16) continue;
    if (get_be64(it->key().data() + prefix.size()) >= to) break;
    const auto plain = opened(it->key(), it->value());
    if (!plain) continue;
    auto batch = schemas::decode_cbor<schemas::MetricsBatch>(
        std::span(reinterpret_cast<const std::uint8_t*>(plain->data()), plain->size()));
    if (!batch) continue;
    for (auto& s : batch.value().samples) {
      if (s.ts >= from && s.ts < to && out.size() < limit) out.push_back(std::move(s));
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.ts < b.ts; });
  return out;
}

std::vector<MinuteAggregate> IngestStore::aggregates(const std::string& node, Timestamp from, Timestamp to) {
  std::vector<MinuteAggregate> out;
  const std::string prefix = node_prefix('g', node);
  std::string start = prefix;
  put_be64(start, from);
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(start); it->Valid() && starts_with(it->key(), prefix); it->Next()) {
    if (it->key().size() != prefix.size() + 8) continue;
    const Timestamp bucket = get_be64(it->key().data() + prefix.size());
    if (bucket >= to) break;
    if (auto plain = opened(it->key(), it->value())) out.push_back(deserialize(bucket, *plain));
  }
  return out;
}

std::optional<schemas::TaskResult> IngestStore::result(const std::string& node, const std::string& task_id) {
  std::string stored;
  const std::string key = node_prefix('r', node) + task_id;
  if (!db_->Get(leveldb::ReadOptions(), key, &stored).ok()) return std::nullopt;
  const auto plain = opened(key, stored);
  if (!plain || plain->size() < 8) return std::nullopt;
  const std::string& value = *plain;
  auto r = schemas::decode_cbor<schemas::TaskResult>(
      std::span(reinterpret_cast<const std::uint8_t*>(value.data()) + 8, value.size() - 8));
  if (!r) return std::nullopt;
  return std::move(r).value();
}

std::vector<IngestStore::StoredAlert> IngestStore::alerts(const std::string& node, Timestamp since, std::size_t limit) {
  std::vector<StoredAlert> out;
  const std::string all = "a/";
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  // Per node, keys are in received order: seek each node's range to `since`, read to its
  // end, then jump to the next node.
  std::string prefix = node.empty() ? all : node_prefix('a', node);
  it->Seek(prefix);
  while (it->Valid() && starts_with(it->key(), prefix)) {
    const std::string key = it->key().ToString();
    const std::size_t slash = key.find('/', 2);
    if (slash == std::string::npos || key.size() != slash + 17) {
      it->Next();
      continue;
    }
    const std::string this_node = key.substr(0, slash + 1);
    const Timestamp received = get_be64(key.data() + slash + 1);
    if (received < since) {
      std::string from = this_node;
      put_be64(from, since);
      it->Seek(from);
      continue;
    }
    if (const auto plain = opened(it->key(), it->value())) {
      auto alert = schemas::decode_cbor<schemas::Alert>(
          std::span(reinterpret_cast<const std::uint8_t*>(plain->data()), plain->size()));
      if (alert) out.push_back({received, std::move(alert).value()});
    }
    it->Next();
  }
  std::sort(out.begin(), out.end(), [](const StoredAlert& a, const StoredAlert& b) { return a.received > b.received; });
  if (out.size() > limit) out.resize(limit);
  return out;
}

Result<std::map<std::string, std::uint64_t>> IngestStore::erase(const std::string& node,
                                                                 const std::optional<std::string>& sensor) {
  std::lock_guard lock(mutex_);
  std::map<std::string, std::uint64_t> counts{{"raw", 0}, {"downsampled", 0}, {"results", 0}, {"decisions", 0}, {"alerts", 0}};
  const std::string prefix = sensor ? schemas::sensor_gauge_prefix(*sensor) : "";
  leveldb::WriteBatch batch;
  const struct {
    char tag;
    const char* part;
  } parts[] = {{'h', "raw"}, {'g', "downsampled"}, {'r', "results"}, {'d', "decisions"}, {'a', "alerts"}};
  for (const auto& [tag, part] : parts) {
    const std::string start = node_prefix(tag, node);
    std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
    for (it->Seek(start); it->Valid() && starts_with(it->key(), start); it->Next()) {
      const std::string key = it->key().ToString();
      if (!sensor) {
        batch.Delete(key);
        ++counts[part];
        continue;
      }
      if (tag != 'h' && tag != 'a' && tag != 'd') continue;  // no sensor gauge in aggregates or results
      const auto plain = opened(it->key(), it->value());
      if (!plain) continue;  // deleted there
      const auto* bytes = reinterpret_cast<const std::uint8_t*>(plain->data());
      const std::span<const std::uint8_t> cbor(bytes, plain->size());
      if (tag == 'a') {
        auto alert = schemas::decode_cbor<schemas::Alert>(cbor);
        if (alert && alert->metric.starts_with(prefix)) {
          batch.Delete(key);
          ++counts[part];
        }
        continue;
      }
      // A decision record or metrics batch stored again without the sensor's gauges.
      auto without = [&](auto decoded) -> std::optional<schemas::Bytes> {
        if (!decoded) return std::nullopt;
        auto m = std::move(decoded).value();
        if (schemas::drop_gauges(m, prefix) == 0) return std::nullopt;
        return schemas::encode_cbor(m);
      };
      const auto rewritten = tag == 'd' ? without(schemas::decode_cbor<schemas::DecisionRecord>(cbor))
                                        : without(schemas::decode_cbor<schemas::MetricsBatch>(cbor));
      if (!rewritten) continue;
      put_sealed(batch, key, std::string_view(reinterpret_cast<const char*>(rewritten->data()), rewritten->size()));
      ++counts[part];
    }
  }
  leveldb::WriteOptions sync;
  sync.sync = true;
  const leveldb::Status st = db_->Write(sync, &batch);
  if (!st.ok()) return schemas::Error{"store", "erase " + node + ": " + st.ToString()};
  return counts;
}

std::uint64_t IngestStore::sweep(Timestamp now) {
  auto cutoff = [now](std::chrono::hours keep) {
    const auto ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(keep).count());
    return now > ms ? now - ms : 0;
  };
  std::uint64_t deleted = 0;
  leveldb::WriteBatch batch;
  // Per node, entries are in time order: delete from the start of the node's range up to
  // the cutoff, then jump to the next node.
  auto sweep_tag = [&](char tag, Timestamp before, bool value_holds_ts) {
    const std::string prefix = std::string(1, tag) + "/";
    std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
    it->Seek(prefix);
    while (it->Valid() && starts_with(it->key(), prefix)) {
      const std::string key = it->key().ToString();
      const std::size_t slash = key.find('/', 2);
      if (slash == std::string::npos) {
        it->Next();
        continue;
      }
      Timestamp ts = 0;
      if (value_holds_ts) {
        const auto plain = opened(it->key(), it->value());  // a corrupt one is deleted there
        ts = plain && plain->size() >= 8 ? get_be64(plain->data()) : 0;
      } else if (key.size() >= slash + 9) {
        ts = get_be64(key.data() + slash + 1);
      }
      if (ts < before) {
        batch.Delete(key);
        ++deleted;
        it->Next();
      } else if (value_holds_ts) {
        it->Next();  // keyed by task id, not by time: look at every entry
      } else {
        it->Seek(key.substr(0, slash + 1) + "\xff");  // the rest of this node is newer
      }
    }
  };
  sweep_tag('h', cutoff(options_.raw_retention), false);
  sweep_tag('g', cutoff(options_.downsampled_retention), false);
  sweep_tag('d', cutoff(options_.record_retention), false);
  sweep_tag('a', cutoff(options_.record_retention), false);
  sweep_tag('r', cutoff(options_.record_retention), true);
  if (deleted > 0) db_->Write(leveldb::WriteOptions(), &batch);
  return deleted;
}

schemas::Status IngestStore::put_cloud_record(const std::string& kind, const std::string& id,
                                              const std::string& payload, bool sync) {
  const std::string key = "c/" + kind + "/" + id;
  leveldb::WriteOptions options;
  options.sync = sync;
  const leveldb::Status st =
      payload.empty() ? db_->Delete(options, key) : db_->Put(options, key, seal_->seal(key, payload));
  if (!st.ok()) return schemas::Error{"store", "write " + key + ": " + st.ToString()};
  return schemas::Ok{};
}

std::vector<CloudRecord> IngestStore::cloud_records() {
  std::vector<CloudRecord> out;
  const std::string prefix = "c/";
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && starts_with(it->key(), prefix); it->Next()) {
    const std::string key = it->key().ToString();
    const std::size_t slash = key.find('/', prefix.size());
    if (slash == std::string::npos) continue;
    if (auto plain = opened(it->key(), it->value())) {
      out.push_back({key.substr(prefix.size(), slash - prefix.size()), key.substr(slash + 1), std::move(*plain)});
    }
  }
  return out;
}

StoreCounters IngestStore::counters() const {
  std::lock_guard lock(mutex_);
  StoreCounters c = counters_;
  c.corrupt = corrupt_.load();
  return c;
}

}  // namespace nova::cloud
