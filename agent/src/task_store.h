// The task runner's LevelDB: one record per task it still owns, plus a bounded ring of
// finished task ids for duplicate detection. Internal to the agent library.
//
// Key layout:
//   "t" <task_id>      -> StoredTask (state, admission seq, task or result)
//   "f" <ring seq BE64> -> task_id of a finished task, oldest first
// Opening reads every record: both sets are bounded (max_queued + max_concurrent +
// undelivered results, and remembered_finished), so this stays small on any device.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nova/agent/tasks.h"
#include "nova/schemas/result.h"

namespace nova::agent::detail {

struct StoredTask {
  enum class State : std::uint8_t { queued = 0, running = 1, finished = 2 };
  State state = State::queued;
  std::uint64_t seq = 0;  // admission order, FIFO within a priority
  Task task;              // queued, running (finished: task_id and priority only)
  Timestamp started_ts = 0;  // running
  TaskResult result;         // finished: awaiting hand-over to the sink
};

struct StoreContents {
  std::vector<StoredTask> tasks;
  std::deque<std::pair<std::uint64_t, std::string>> finished;  // (ring seq, id), oldest first
  std::size_t corrupt = 0;  // records that did not decode; deleted
};

class TaskStore {
 public:
  static schemas::Result<std::unique_ptr<TaskStore>> open(const TaskRunnerOptions& options);
  ~TaskStore();

  schemas::Result<StoreContents> load();
  schemas::Status put(const StoredTask& record);
  // Replaces a task's record by ring entry `ring_seq`, deleting ring entries `evict`.
  schemas::Status retire(const std::string& task_id, std::uint64_t ring_seq,
                         const std::vector<std::uint64_t>& evict);

  TaskStore(const TaskStore&) = delete;
  TaskStore& operator=(const TaskStore&) = delete;

 private:
  struct Impl;
  explicit TaskStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Exposed for tests of the record format.
std::string encode_record(const StoredTask& record);
std::optional<StoredTask> decode_record(const std::string& raw);

}  // namespace nova::agent::detail
