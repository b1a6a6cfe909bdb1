// The cloud's durable record store: exactly-once ingest of upward records, the
// end-to-end ack watermarks, and metric history with retention and downsampling.
//
// Every upward record carries (node, stream, seq). admit() takes a group of records and
// writes everything they change -- the record itself, its dedup marker, the stream's
// watermark, the minute aggregates of a metrics batch -- in ONE synced LevelDB
// WriteBatch, and only then reports the new watermarks. The service publishes an Ack
// only from that report, so an ack never covers a record that is not on disk
// (the durability model's step 3). Grouping many records into one synced write is what
// lets a single disk keep up with thousands of agents (group commit).
//
// Watermark invariant: for each (node, stream), every seq <= watermark has been stored
// (or was stored and has since aged out of retention), or declared gone by the sender.
// Seqs above the watermark that arrived out of order are kept as "pending" markers until
// the gap closes; a record whose seq is <= the watermark or already pending is a
// duplicate and changes nothing else. A stream starts at watermark 0: agents number each
// stream from 1.
//
// Declared gone: a record whose position carries first = F (the lowest seq its sender
// still holds; every seq below F was acknowledged or evicted and will never be sent)
// with F > watermark + 1 closes the gap: the watermark moves to F - 1, pending markers
// at or below it are dropped, the seqs in between that were never stored are counted in
// `skipped`, and the record is then admitted as usual (even a duplicate carries this).
// Only what a record says is used; without "first" a gap waits for its seqs forever.
//
// Bounded ahead: a record whose seq (and so its first, which is never above it) lies more
// than `max_seq_ahead` beyond its stream's watermark is refused. It is not stored, moves
// no watermark and leaves no pending marker, so one forged record with a huge seq or
// first cannot make every later genuine record of that stream a "duplicate". Genuine
// gaps stay far below the window: an agent's eviction gap is at most the records its
// capped outbox produced while the cloud was away.
//
// Several instances (shared ingest): each stores the records the broker hands it, and
// learns the others' progress from their acks (observe_ack). The watermark invariant
// then reads "stored here or by the instance that acknowledged it". A record replayed
// to a second instance before the first one's ack is seen can be stored by both; the
// union of the stores is exactly once after dedup on (node, stream, seq).
//
// The cloud's own records: the workloads, placements and clusters an instance knows are
// kept here too (put_cloud_record), because the broker's retained copies are only a cache
// for subscribers: a broker that loses its retained store (in memory, a lost disk) must
// not make nova-cloud forget them. They are never swept.
//
// A corrupt watermark (it does not open, or is not 8 bytes) is never taken as 0, which
// would store every record the agent still resends a second time and leave its next one
// waiting behind a gap: it is rebuilt from the stream's stored records, as the highest
// seq stored and not pending (every such seq is <= the lost watermark), written back,
// and counted (watermarks_recovered). It can only come out lower than the lost one when
// the stream's newest records were swept by retention, declared gone, or stored by
// another instance; the records the agent holds above it then wait as pending until an
// ack of another instance or a record declaring "first" moves it (docs/cloud.md).
//
// Retention: raw metric batches are kept for `raw_retention`, per-minute aggregates
// (count/min/mean/max of the core gauges) for `downsampled_retention`; sweep() deletes
// what is older. Task results, decisions and alerts are kept until sweep()'s
// `record_retention`.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"
#include "nova/security/sealed_store.h"

namespace leveldb {
class DB;
class Cache;
class Slice;
class WriteBatch;
}  // namespace leveldb

namespace nova::cloud {

using schemas::Result;
using schemas::Timestamp;

struct StoreOptions {
  std::filesystem::path dir;
  std::chrono::hours raw_retention{24};
  std::chrono::hours downsampled_retention{24 * 30};
  std::chrono::hours record_retention{24 * 30};
  std::chrono::seconds downsample_bucket{60};
  std::size_t block_cache_bytes = 8 << 20;
  std::size_t write_buffer_bytes = 4 << 20;
  std::uint64_t max_seq_ahead = 1'000'000;  // records further ahead are refused (see above)
  // Encryption at rest (nova/security/sealed_store.h): every value sealed with this key;
  // nullopt: plaintext. A value that does not open is reported to on_corrupt, counted
  // (StoreCounters::corrupt), deleted, and never served or published.
  std::optional<security::StorageKey> storage_key{};
  security::CorruptRecordSink on_corrupt{};
};

// One decoded upward record, ready to store. `payload` is what arrived on the wire and is
// stored as is (the history keeps CBOR).
struct IngestRecord {
  // erasure: a node's report of an erasure (erasures.h); only its position is kept.
  enum class Kind { metrics, result, decision, alert, erasure };
  Kind kind = Kind::metrics;
  schemas::StreamPosition position;
  std::string payload;
  Timestamp received = 0;
  // Set for metrics (the aggregates are computed from it) and results (key: task id).
  const schemas::MetricsBatch* batch = nullptr;
  const schemas::TaskResult* result = nullptr;
};

struct Admission {
  bool duplicate = false;
  // Non-empty: the record was refused and nothing of it was stored; the reason names
  // the field, e.g. "position.seq: 5000000 is more than 1000000 ahead of watermark 12".
  std::string refused;
  std::uint64_t watermark = 0;  // the stream's watermark after this group
  bool advanced = false;        // the watermark moved because of this group
};

// Per-minute aggregate of the core gauges of a node.
struct GaugeStats {
  std::uint64_t count = 0;
  double min = 0, max = 0, sum = 0;
  double mean() const { return count == 0 ? 0 : sum / static_cast<double>(count); }
};
struct MinuteAggregate {
  Timestamp bucket = 0;  // bucket start, ms
  std::map<std::string, GaugeStats> gauges;  // "cpu", "mem", "disk", "load1", "net_rx", "net_tx", "temp"
};

// One of the cloud's own records, as published retained on nova/v1/cloud/<kind>/<id>.
struct CloudRecord {
  std::string kind;     // "workload", "placement", "cluster"
  std::string id;
  std::string payload;  // CBOR, as published
};

struct StoreCounters {
  std::uint64_t records = 0;     // distinct records stored
  std::uint64_t duplicates = 0;  // records refused as already stored
  std::uint64_t samples = 0;     // metric samples in distinct batches
  std::uint64_t writes = 0;      // synced writes (groups)
  std::uint64_t skipped = 0;     // seqs never stored that the sender declared gone ("first")
  std::uint64_t too_far_ahead = 0;  // records refused: seq beyond watermark + max_seq_ahead
  std::uint64_t corrupt = 0;        // stored values that did not open (sealed store), deleted
  std::uint64_t watermarks_recovered = 0;  // corrupt watermarks rebuilt from the stored records
};

// Thread-safe: one ingest thread admits while API threads query.
class IngestStore {
 public:
  static Result<std::unique_ptr<IngestStore>> open(const StoreOptions& options);
  ~IngestStore();
  IngestStore(const IngestStore&) = delete;
  IngestStore& operator=(const IngestStore&) = delete;

  // Stores the group with one synced write. Outcomes are in the order of `records`. On a
  // write error nothing of the group is stored and the in-memory state is unchanged.
  Result<std::vector<Admission>> admit(std::span<const IngestRecord> records);

  // An instance (maybe this one) acknowledged `node`'s `stream` up to `watermark`. Adopts
  // it if it is higher than ours, then advances through the seqs held pending here.
  // Returns the resulting watermark when it is above `watermark` (this instance has the
  // next records and should acknowledge them), else 0.
  Result<std::uint64_t> observe_ack(const std::string& node, const std::string& stream, std::uint64_t watermark);

  std::uint64_t watermark(const std::string& node, const std::string& stream);
  // Every stream of `node` with its watermark (for re-sending acks after a birth).
  std::map<std::string, std::uint64_t> watermarks(const std::string& node);

  // Raw samples of `node` with from <= ts < to, oldest first, at most `limit`.
  std::vector<schemas::MetricSample> samples(const std::string& node, Timestamp from, Timestamp to,
                                             std::size_t limit = 100000);
  std::vector<MinuteAggregate> aggregates(const std::string& node, Timestamp from, Timestamp to);
  std::optional<schemas::TaskResult> result(const std::string& node, const std::string& task_id);
  // Alerts stored with received >= `since`, of `node` (empty: of every node), newest
  // first, at most `limit`. Each with the time nova-cloud received it.
  struct StoredAlert {
    Timestamp received = 0;
    schemas::Alert alert;
  };
  std::vector<StoredAlert> alerts(const std::string& node, Timestamp since, std::size_t limit);

  // Keeps (or, with an empty payload, forgets) a cloud record. `sync`: wait for the disk
  // (what this instance decided) or not (a copy of what a peer published, which the
  // broker and the peer still hold).
  schemas::Status put_cloud_record(const std::string& kind, const std::string& id, const std::string& payload,
                                   bool sync);
  // Every cloud record kept, ordered by kind then id.
  std::vector<CloudRecord> cloud_records();

  // Erasure (erasures.h): deletes every raw batch, minute aggregate, task result,
  // decision and alert of `node` or, with `sensor`, rewrites each raw batch without the
  // gauges "sensor.<sensor>.*" and deletes the alerts about them (minute aggregates hold
  // only the core gauges, decisions the gauges they saw: rewritten likewise). Watermarks
  // and dedup markers stay: they hold sequence numbers, not data, and keep a resent
  // record a duplicate. Counts by part: raw, downsampled, results, decisions, alerts.
  Result<std::map<std::string, std::uint64_t>> erase(const std::string& node, const std::optional<std::string>& sensor);

  // Deletes history older than the retention periods, measured back from `now`.
  // Returns the number of entries deleted.
  std::uint64_t sweep(Timestamp now);

  StoreCounters counters() const;

 private:
  struct StreamState;
  explicit IngestStore(const StoreOptions& options);
  StreamState& stream(const std::string& node, const std::string& stream);
  // The highest seq of `stream` stored here and not in `pending` (0: none): what a lost
  // watermark is rebuilt from.
  std::uint64_t highest_stored(const std::string& node, const std::string& stream,
                               const std::set<std::uint64_t>& pending);
  void put_sealed(leveldb::WriteBatch& batch, const std::string& key, std::string_view value) const;
  // The value under `key`, or nullopt after reporting, counting and deleting it.
  std::optional<std::string> opened(const leveldb::Slice& key, const leveldb::Slice& value);

  StoreOptions options_;
  mutable std::mutex mutex_;  // admit() runs on the ingest thread, queries on HTTP threads
  std::unique_ptr<leveldb::Cache> cache_;
  std::unique_ptr<leveldb::DB> db_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<StreamState>> streams_;
  StoreCounters counters_;
  std::optional<security::StoreSeal> seal_;  // set by open()
  std::atomic<std::uint64_t> corrupt_{0};
};

}  // namespace nova::cloud
