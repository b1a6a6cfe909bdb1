// A durable queue for downward messages that must survive a crash between the broker's
// delivery and their processing (tasks).
//
// Paho acknowledges an incoming QoS 1 message (PUBACK) as soon as its callback returns,
// and it holds its client lock during the callback, so the callback can neither hand
// the message to the agent's loop and wait, nor be slow. Instead it put()s the message
// here — one synced LevelDB write, safe from any thread — and returns; the loop takes
// pending messages, processes them (the task runner persists tasks itself and ignores
// duplicates) and removes them. A crash in between leaves them here for the next start.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "nova/schemas/result.h"

namespace leveldb {
class Cache;
class DB;
}

namespace nova::agent {

class Inbox {
 public:
  static schemas::Result<std::unique_ptr<Inbox>> open(const std::filesystem::path& dir);
  ~Inbox();

  // Thread-safe. Returns false if the write failed (the message is then not acked
  // durably; the caller logs it).
  bool put(const std::string& payload);

  struct Entry {
    std::uint64_t id;
    std::string payload;
  };
  // Loop thread: everything pending, oldest first.
  std::vector<Entry> pending() const;
  void remove(std::uint64_t id);

 private:
  Inbox(std::unique_ptr<leveldb::Cache> cache, std::unique_ptr<leveldb::DB> db, std::uint64_t next_id);
  std::unique_ptr<leveldb::Cache> cache_;  // outlives db_ (destroyed after it)
  std::unique_ptr<leveldb::DB> db_;
  std::atomic<std::uint64_t> next_id_;
};

}  // namespace nova::agent
