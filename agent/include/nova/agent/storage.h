// Encryption at rest of the agent's stores (outbox, task store, inbox): the settings
// each store is opened with. docs/agent.md, "Encryption at rest".
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "nova/security/sealed_records.h"
#include "nova/security/sealed_store.h"

namespace nova::agent {

using security::CorruptRecord;

struct StorageOptions {
  // nullopt: values are stored in plaintext (storage.key_file unset, logged at start).
  std::optional<security::StorageKey> key{};
  // Called on the thread that read the record; none: only counted by the store's owner.
  std::function<void(const CorruptRecord&)> on_corrupt{};
};

// The agent's reporting of corrupt records, one shape for every store: an error line
// `event=corrupt_record store=... key=... storage_key=... reason="..."` through `log`
// (may be empty) and one more in `count`.
using StorageLog = std::function<void(const char* level, const std::string& event, const std::string& fields)>;
StorageOptions reported_storage(std::optional<security::StorageKey> key, StorageLog log,
                                std::shared_ptr<std::atomic<std::uint64_t>> count);

}  // namespace nova::agent
