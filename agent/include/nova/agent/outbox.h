// The agent's durable outbox: everything the agent sends upward is written here first
// and stays until the cloud's end-to-end acknowledgement covers it.
//
// Records live in named streams ("metrics", "results", "decisions", "alerts"); within a
// stream each record gets the next sequence number, starting at 1, so (node, stream, seq)
// identifies it end to end. Guarantees:
//   - append() returns only after one synced LevelDB WriteBatch holds the records and
//     the stream's counters: a record whose append returned survives SIGKILL and power
//     loss (to the extent fsync does).
//   - ack(stream, w) deletes every record with seq <= w; nothing else deletes records
//     except eviction.
//   - The outbox is capped at max_bytes of payload. An append that would exceed it
//     evicts whole records, oldest first, from the lowest-priority stream that has any
//     (metrics before alerts before decisions before task results); evictions are
//     counted per stream and reported upward by the agent, so a consumer can tell a
//     gap caused by eviction from a loss. A record larger than the cap is refused.
//   - erase() deletes or rewrites records on request (an erasure of personal data,
//     docs/agent.md "Erasure"): a deleted record leaves a gap like an evicted one, a
//     rewritten one keeps its seq.
//   - Opening reads only the per-stream counter records (a handful of keys), never the
//     records themselves, so start-up time does not grow with the backlog.
// Not thread-safe: one owner thread (the agent's main loop) calls it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nova/agent/storage.h"
#include "nova/schemas/result.h"

namespace nova::agent {

using schemas::Result;
using schemas::Status;

// Eviction order: lower values go first.
enum class Priority : std::uint8_t { metrics = 0, alerts = 1, decisions = 2, results = 3 };

struct OutboxOptions {
  std::filesystem::path dir;
  std::uint64_t max_bytes = 64ull * 1024 * 1024;  // payload bytes across all streams
  bool sync = true;  // fsync every append and ack; tests of throughput may turn it off
  // LevelDB memory, kept small for devices.
  std::size_t write_buffer_bytes = 256 * 1024;
  std::size_t block_cache_bytes = 256 * 1024;
  int max_open_files = 32;
  // Encryption at rest (storage.h): records and counters sealed with this key.
  StorageOptions storage{};
};

// What an erasure does to one stored record.
struct ErasureEdit {
  enum class Action { keep, remove, replace };
  Action action = Action::keep;
  std::string replacement;  // replace: the record's new payload (same seq)
};
using ErasureFilter = std::function<ErasureEdit(std::string_view stream, std::string_view payload)>;
struct Erased {
  std::uint64_t removed = 0;    // records deleted (a record that does not open is deleted too)
  std::uint64_t rewritten = 0;  // records stored again without what was erased
};

struct OutboxRecord {
  std::uint64_t seq = 0;
  std::string payload;
};

struct StreamStats {
  Priority priority = Priority::metrics;
  std::uint64_t next_seq = 1;   // seq the next append gets
  std::uint64_t acked = 0;      // highest acknowledged watermark
  std::uint64_t first = 1;      // lowest seq still stored (== next_seq when empty)
  std::uint64_t count = 0;      // records stored
  std::uint64_t bytes = 0;      // payload bytes stored
  std::uint64_t evicted = 0;    // records dropped by the disk cap, ever
};

class Outbox {
 public:
  static Result<std::unique_ptr<Outbox>> open(const OutboxOptions& options);
  ~Outbox();

  // Appends payloads to `stream` as consecutive records; returns the first seq.
  // A stream's priority is fixed by its first append.
  Result<std::uint64_t> append(std::string_view stream, Priority priority,
                               std::span<const std::string> payloads);
  Result<std::uint64_t> append(std::string_view stream, Priority priority, std::string payload);

  // Deletes the records of `stream` with seq <= watermark. Watermarks only move
  // forward; an older or repeated ack is a no-op.
  Status ack(std::string_view stream, std::uint64_t watermark);

  // Applies `filter` to every stored record of every stream, in one synced write.
  // Removed records are not counted as evicted; stats() follows (count, bytes, first).
  Result<Erased> erase(const ErasureFilter& filter);

  // Up to `max` stored records of `stream` with seq > after, in seq order. A sealed
  // record that does not open (a changed byte, moved, another key) is reported to
  // options.storage.on_corrupt, deleted and skipped: never returned, so never sent. Its
  // seq is then a gap like an evicted one's (`first` in stats() moves past it once it is
  // the lowest held).
  Result<std::vector<OutboxRecord>> read(std::string_view stream, std::uint64_t after,
                                         std::size_t max) const;

  // The seq the next record appended to `stream` will get (1 for a new stream). Records
  // carry their own seq in their payload, so producers encode with this before appending.
  std::uint64_t next_seq(std::string_view stream) const;

  std::map<std::string, StreamStats> stats() const;
  std::uint64_t total_bytes() const;
  // Records deleted by read() because they did not open, since open().
  std::uint64_t corrupt_records() const;

  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

 private:
  struct Impl;
  explicit Outbox(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nova::agent
