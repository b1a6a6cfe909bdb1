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

#include "nova/agent/storage.h"
#include "nova/schemas/result.h"

namespace nova::agent {

struct SmallDb;

class Inbox {
 public:
  // With storage.key the messages are sealed at rest (storage.h).
  static schemas::Result<std::unique_ptr<Inbox>> open(const std::filesystem::path& dir,
                                                      const StorageOptions& storage = {});
  ~Inbox();

  // Thread-safe. Returns false if the write failed (the message is then not acked
  // durably; the caller logs it).
  bool put(const std::string& payload);

  struct Entry {
    std::uint64_t id;
    std::string payload;
  };
  // Loop thread: everything pending, oldest first. A sealed message that does not open
  // is reported to storage.on_corrupt and removed, never returned.
  std::vector<Entry> pending();
  void remove(std::uint64_t id);

 private:
  Inbox(std::unique_ptr<SmallDb> db, std::uint64_t next_id);
  std::unique_ptr<SmallDb> db_;
  std::atomic<std::uint64_t> next_id_;
};

}  // namespace nova::agent
