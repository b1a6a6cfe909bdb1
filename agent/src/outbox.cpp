#include "nova/agent/outbox.h"

#include "small_db.h"

#include <leveldb/cache.h>
#include <leveldb/db.h>
#include <leveldb/write_batch.h>

#include <algorithm>
#include <cstring>
#include <set>

namespace nova::agent {
namespace {

using schemas::Error;
using schemas::Ok;

// Key layout:
//   "m" <stream>                 -> stream counters (StreamStats, fixed-width encoding)
//   "r" <stream> 0x00 <seq BE64> -> payload
// Big-endian seqs sort numerically, so a stream's records are contiguous and ordered.
void put_u64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xffu));
}

std::uint64_t get_u64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | static_cast<std::uint8_t>(p[i]);
  return v;
}

std::string meta_key(std::string_view stream) { return "m" + std::string(stream); }

std::string record_prefix(std::string_view stream) {
  std::string k = "r" + std::string(stream);
  k.push_back('\0');
  return k;
}

std::string record_key(std::string_view stream, std::uint64_t seq) {
  std::string k = record_prefix(stream);
  put_u64(k, seq);
  return k;
}

std::uint64_t seq_of(const leveldb::Slice& key) { return get_u64(key.data() + key.size() - 8); }

constexpr std::size_t kMetaBytes = 1 + 6 * 8;

std::string encode_meta(const StreamStats& s) {
  std::string out;
  out.push_back(static_cast<char>(s.priority));
  for (std::uint64_t v : {s.next_seq, s.acked, s.first, s.count, s.bytes, s.evicted}) put_u64(out, v);
  return out;
}

bool decode_meta(const std::string& raw, StreamStats& s) {
  if (raw.size() != kMetaBytes || static_cast<std::uint8_t>(raw[0]) > 3) return false;
  s.priority = static_cast<Priority>(raw[0]);
  const char* p = raw.data() + 1;
  s.next_seq = get_u64(p);
  s.acked = get_u64(p + 8);
  s.first = get_u64(p + 16);
  s.count = get_u64(p + 24);
  s.bytes = get_u64(p + 32);
  s.evicted = get_u64(p + 40);
  return true;
}

Error db_error(const leveldb::Status& st, std::string_view what) {
  return Error{"", "outbox: " + std::string(what) + ": " + st.ToString()};
}

}  // namespace

struct Outbox::Impl {
  OutboxOptions options;
  SmallDb store;
  leveldb::DB* db = nullptr;  // store.db
  std::map<std::string, StreamStats, std::less<>> streams;
  std::uint64_t total_bytes = 0;
  std::uint64_t corrupt = 0;

  // The cap and the counters count payload bytes, sealed or not.
  std::uint64_t payload_bytes(const leveldb::Slice& stored) const {
    const std::size_t overhead = store.seal->sealing() ? security::kSealOverhead : 0;
    return stored.size() > overhead ? stored.size() - overhead : 0;
  }

  void put_meta(leveldb::WriteBatch& batch, const std::string& name, const StreamStats& s) const {
    const std::string key = meta_key(name);
    batch.Put(key, store.seal->seal(key, encode_meta(s)));
  }

  // The lowest seq of `name` still stored at or after `from` (next_seq when none): after
  // a deletion the stream's `first` is what the drain declares, so it must be held.
  std::uint64_t first_held(const std::string& name, const StreamStats& s, std::uint64_t from) const {
    std::unique_ptr<leveldb::Iterator> it(db->NewIterator(leveldb::ReadOptions()));
    it->Seek(record_key(name, from));
    return it->Valid() && it->key().starts_with(record_prefix(name)) ? seq_of(it->key()) : s.next_seq;
  }

  leveldb::WriteOptions write_options() const {
    leveldb::WriteOptions w;
    w.sync = options.sync;
    return w;
  }

  // Deletes the stored records of `name` with seq <= last, updating the counters; the
  // deletions go into `batch`. Returns the bytes freed.
  std::uint64_t drop_through(const std::string& name, StreamStats& s, std::uint64_t last,
                             leveldb::WriteBatch& batch, bool count_as_evicted) {
    const std::string prefix = record_prefix(name);
    std::uint64_t freed = 0;
    std::unique_ptr<leveldb::Iterator> it(db->NewIterator(leveldb::ReadOptions()));
    for (it->Seek(record_key(name, s.first)); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      if (seq_of(it->key()) > last) break;
      batch.Delete(it->key());
      const std::uint64_t bytes = std::min(payload_bytes(it->value()), s.bytes);
      s.count -= 1;
      s.bytes -= bytes;
      freed += bytes;
      if (count_as_evicted) s.evicted += 1;
    }
    total_bytes -= freed;
    s.first = s.count == 0 ? s.next_seq : first_held(name, s, std::max(s.first, last + 1));
    return freed;
  }

  // Evicts the oldest records of the lowest-priority non-empty streams, one at a time,
  // until `needed` more bytes fit. False if they cannot fit even in an empty outbox.
  bool make_room(std::uint64_t needed, leveldb::WriteBatch& batch) {
    if (needed > options.max_bytes) return false;
    while (total_bytes + needed > options.max_bytes) {
      auto victim = streams.end();
      for (auto it = streams.begin(); it != streams.end(); ++it) {
        if (it->second.count > 0 && (victim == streams.end() || it->second.priority < victim->second.priority)) {
          victim = it;
        }
      }
      if (victim == streams.end()) return false;
      drop_through(victim->first, victim->second, victim->second.first, batch, true);
      put_meta(batch, victim->first, victim->second);
    }
    return true;
  }
};

Outbox::Outbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Outbox::~Outbox() = default;

Result<std::unique_ptr<Outbox>> Outbox::open(const OutboxOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  // Payloads are zstd-compressed already; snappy would only cost CPU.
  auto opened = open_small_db(
      options.dir,
      {options.write_buffer_bytes, options.block_cache_bytes, options.max_open_files, false, options.storage},
      "outbox");
  if (!opened) return opened.error();
  impl->store = std::move(opened).value();
  impl->db = impl->store.db.get();

  // Only the counter keys are read: they all sort under "m", before every record.
  std::unique_ptr<leveldb::Iterator> it(impl->db->NewIterator(leveldb::ReadOptions()));
  for (it->Seek("m"); it->Valid() && it->key().starts_with("m"); it->Next()) {
    StreamStats s;
    // Counters that do not open or decode stop the start: guessing them could resend
    // or skip records. The error names the stream (and, sealed, the reason).
    auto meta = impl->store.seal->open(std::string_view(it->key().data(), it->key().size()),
                                       std::string_view(it->value().data(), it->value().size()));
    if (!meta || !decode_meta(meta.value(), s)) {
      return Error{"", "outbox: corrupt counters for stream '" + it->key().ToString().substr(1) + "'" +
                           (meta ? std::string() : ": " + meta.error().reason)};
    }
    impl->total_bytes += s.bytes;
    impl->streams.emplace(it->key().ToString().substr(1), s);
  }
  if (!it->status().ok()) return db_error(it->status(), "read counters");
  return std::unique_ptr<Outbox>(new Outbox(std::move(impl)));
}

Result<std::uint64_t> Outbox::append(std::string_view stream, Priority priority,
                                     std::span<const std::string> payloads) {
  Impl& d = *impl_;
  auto found = d.streams.find(stream);
  if (found == d.streams.end()) {
    StreamStats fresh;
    fresh.priority = priority;
    found = d.streams.emplace(std::string(stream), fresh).first;
  }
  const std::string name = found->first;
  std::uint64_t needed = 0;
  for (const std::string& p : payloads) needed += p.size();

  // Work on copies so a failed write leaves the in-memory counters untouched.
  const auto saved_streams = d.streams;
  const std::uint64_t saved_total = d.total_bytes;
  leveldb::WriteBatch batch;
  if (!d.make_room(needed, batch)) {
    d.streams = saved_streams;
    d.total_bytes = saved_total;
    return Error{"", "outbox: " + std::to_string(needed) + " bytes do not fit in the cap of " +
                         std::to_string(d.options.max_bytes)};
  }
  StreamStats& s = d.streams.find(name)->second;
  const std::uint64_t first = s.next_seq;
  if (s.count == 0) s.first = first;
  for (const std::string& p : payloads) {
    const std::string key = record_key(name, s.next_seq);
    batch.Put(key, d.store.seal->seal(key, p));
    s.next_seq += 1;
    s.count += 1;
    s.bytes += p.size();
  }
  d.total_bytes += needed;
  d.put_meta(batch, name, s);
  leveldb::Status st = d.db->Write(d.write_options(), &batch);
  if (!st.ok()) {
    d.streams = saved_streams;
    d.total_bytes = saved_total;
    return db_error(st, "append");
  }
  return first;
}

Result<std::uint64_t> Outbox::append(std::string_view stream, Priority priority, std::string payload) {
  const std::string one[] = {std::move(payload)};
  return append(stream, priority, std::span<const std::string>(one));
}

Status Outbox::ack(std::string_view stream, std::uint64_t watermark) {
  Impl& d = *impl_;
  auto found = d.streams.find(stream);
  if (found == d.streams.end()) return Ok{};
  StreamStats& s = found->second;
  // Never beyond what was handed out: an ack for unsent seqs would delete future data.
  watermark = std::min(watermark, s.next_seq - 1);
  if (watermark <= s.acked) return Ok{};
  const StreamStats saved = s;
  const std::uint64_t saved_total = d.total_bytes;
  leveldb::WriteBatch batch;
  if (s.count > 0 && watermark >= s.first) d.drop_through(found->first, s, watermark, batch, false);
  s.acked = watermark;
  d.put_meta(batch, found->first, s);
  leveldb::Status st = d.db->Write(d.write_options(), &batch);
  if (!st.ok()) {
    s = saved;
    d.total_bytes = saved_total;
    return db_error(st, "ack");
  }
  return Ok{};
}

Result<std::vector<OutboxRecord>> Outbox::read(std::string_view stream, std::uint64_t after,
                                               std::size_t max) const {
  std::vector<OutboxRecord> out;
  Impl& d = *impl_;
  auto found = d.streams.find(stream);
  if (found == d.streams.end() || max == 0) return out;
  StreamStats& s = found->second;
  const std::string prefix = record_prefix(stream);
  leveldb::WriteBatch corrupt;
  std::uint64_t corrupt_bytes = 0;
  std::unique_ptr<leveldb::Iterator> it(d.db->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(record_key(stream, std::max(after + 1, s.first)));
       it->Valid() && out.size() < max && it->key().starts_with(prefix); it->Next()) {
    auto payload = d.store.open_value(it->key(), it->value());
    if (payload) {
      out.push_back(OutboxRecord{seq_of(it->key()), std::move(*payload)});
      continue;
    }
    // Reported by open_value; deleted so it is never sent. Its seq becomes a gap the
    // drain declares with `first` like an eviction's, once it is the lowest held.
    corrupt.Delete(it->key());
    corrupt_bytes += std::min(d.payload_bytes(it->value()), s.bytes - corrupt_bytes);
    s.count -= 1;
    d.corrupt += 1;
  }
  if (!it->status().ok()) return db_error(it->status(), "read");
  it.reset();
  if (corrupt.ApproximateSize() > leveldb::WriteBatch().ApproximateSize()) {
    // Rare, so two writes: the deletions, then the counters with the lowest seq held.
    const leveldb::Status st = d.db->Write(d.write_options(), &corrupt);
    if (!st.ok()) return db_error(st, "delete corrupt records");
    s.bytes -= corrupt_bytes;
    d.total_bytes -= corrupt_bytes;
    s.first = s.count == 0 ? s.next_seq : d.first_held(found->first, s, s.first);
    leveldb::WriteBatch meta;
    d.put_meta(meta, found->first, s);
    const leveldb::Status m = d.db->Write(d.write_options(), &meta);
    if (!m.ok()) return db_error(m, "write counters");
  }
  return out;
}

Result<Erased> Outbox::erase(const ErasureFilter& filter) {
  Impl& d = *impl_;
  Erased erased;
  const auto saved_streams = d.streams;
  const std::uint64_t saved_total = d.total_bytes;
  leveldb::WriteBatch batch;
  for (auto& [name, s] : d.streams) {
    if (s.count == 0) continue;
    const std::string prefix = record_prefix(name);
    bool changed = false;
    std::unique_ptr<leveldb::Iterator> it(d.db->NewIterator(leveldb::ReadOptions()));
    for (it->Seek(record_key(name, s.first)); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      const std::uint64_t stored = std::min(d.payload_bytes(it->value()), s.bytes);
      auto payload = d.store.open_value(it->key(), it->value());
      const ErasureEdit edit = payload ? filter(name, *payload) : ErasureEdit{ErasureEdit::Action::remove, {}};
      if (edit.action == ErasureEdit::Action::keep) continue;
      changed = true;
      s.bytes -= stored;
      d.total_bytes -= stored;
      if (edit.action == ErasureEdit::Action::remove) {
        batch.Delete(it->key());
        s.count -= 1;
        ++erased.removed;
        continue;
      }
      const std::string key = it->key().ToString();
      batch.Put(key, d.store.seal->seal(key, edit.replacement));
      s.bytes += edit.replacement.size();
      d.total_bytes += edit.replacement.size();
      ++erased.rewritten;
    }
    if (!it->status().ok()) {
      d.streams = saved_streams;
      d.total_bytes = saved_total;
      return db_error(it->status(), "erase");
    }
    if (!changed) continue;
    // The lowest seq held once the deletions are written: the batch is not applied yet,
    // so found by walking the stream with the batch's deletions in mind.
    if (s.count == 0) {
      s.first = s.next_seq;
    } else {
      std::uint64_t first = s.next_seq;
      std::unique_ptr<leveldb::Iterator> walk(d.db->NewIterator(leveldb::ReadOptions()));
      struct Deleted : leveldb::WriteBatch::Handler {
        std::set<std::string>* keys;
        void Put(const leveldb::Slice&, const leveldb::Slice&) override {}
        void Delete(const leveldb::Slice& key) override { keys->insert(key.ToString()); }
      } deleted;
      std::set<std::string> keys;
      deleted.keys = &keys;
      batch.Iterate(&deleted);
      for (walk->Seek(record_key(name, s.first)); walk->Valid() && walk->key().starts_with(prefix); walk->Next()) {
        if (keys.count(walk->key().ToString()) == 0) {
          first = seq_of(walk->key());
          break;
        }
      }
      s.first = first;
    }
    d.put_meta(batch, name, s);
  }
  const leveldb::Status st = d.db->Write(d.write_options(), &batch);
  if (!st.ok()) {
    d.streams = saved_streams;
    d.total_bytes = saved_total;
    return db_error(st, "erase");
  }
  return erased;
}

std::uint64_t Outbox::next_seq(std::string_view stream) const {
  auto found = impl_->streams.find(stream);
  return found == impl_->streams.end() ? 1 : found->second.next_seq;
}

std::map<std::string, StreamStats> Outbox::stats() const {
  return {impl_->streams.begin(), impl_->streams.end()};
}

std::uint64_t Outbox::total_bytes() const { return impl_->total_bytes; }

std::uint64_t Outbox::corrupt_records() const { return impl_->corrupt; }

}  // namespace nova::agent
