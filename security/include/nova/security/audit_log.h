// The audit log: an append-only, hash-chained file of JSON lines, one per action, shared
// by nova-cloud (API writes, placements, tasks and other downward control messages) and
// nova-pki (certificate actions). docs/security.md, "Audit log".
//
// One entry a line, its keys always in this order:
//   {"seq":1,"ts":1764880000000,"actor":"ops-eu","action":"POST /api/v1/workloads",
//    "target":"/api/v1/workloads","outcome":"201","prev":"000…000","hash":"9f86…"}
// seq      1, 2, 3 … with no gaps: a removed or moved entry breaks the sequence
// ts       milliseconds since the Unix epoch (UTC)
// prev     the previous entry's hash; 64 zeros for the first entry
// hash     SHA-256 (hex) of the line's text before ,"hash": — so any changed byte of an
//          entry breaks that entry's own hash, and a replaced entry breaks its successor's prev
// Entries are appended with O_APPEND and fdatasync()ed before append() returns: an action
// acknowledged after append() is on disk in the log.
//
// What the chain cannot show: the loss of the newest entries (a truncated tail is a
// shorter valid log). Keep a copy of the last hash elsewhere to detect that.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "nova/schemas/result.h"

namespace nova::security {

struct AuditRecord {
  std::string actor;    // who: an API token's name, "nova-cloud", "nova-pki"
  std::string action;   // what, e.g. "POST /api/v1/workloads", "publish task", "issue"
  std::string target;   // on what: a path, a topic, a certificate's CN and serial
  std::string outcome;  // e.g. "201", "sent", "ok", or an error text
};

class AuditLog {
 public:
  // Opens (creating it, mode 0600) the log and resumes after its last entry (read from
  // the file's tail only: no full scan). A last line that is not a complete entry (a
  // crash mid-write) is an error: run `audit verify`, then move the file away.
  static schemas::Result<std::unique_ptr<AuditLog>> open(const std::filesystem::path& file);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one entry stamped now and syncs it. Thread-safe. Fields longer than 1 KiB are
  // cut (an audit line names an action; it does not carry payloads).
  schemas::Status append(const AuditRecord& record);
  std::uint64_t entries() const;

 private:
  AuditLog() = default;
  mutable std::mutex mutex_;
  int fd_ = -1;
  std::uint64_t last_seq_ = 0;
  std::string last_hash_;
};

struct AuditVerdict {
  std::uint64_t entries = 0;               // entries read that were intact, in order
  std::optional<std::uint64_t> broken_at;  // the first broken entry (its line number)
  std::string reason;                      // why, naming the field
};
// Reads the whole file and checks every entry's form, seq, prev and hash, in order.
AuditVerdict verify_audit_log(const std::filesystem::path& file);

}  // namespace nova::security
