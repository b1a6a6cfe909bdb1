// The agent's door for downward control messages (tasks, configs, models, acks, verdicts,
// update offers, erasure requests).
//
// Each one must come in a COSE_Sign1 envelope (nova/schemas/signed.h) signed by a key the
// agent trusts, addressed to this node, this site and the topic's kind, and valid now
// (issue time and expiry, with a clock skew allowance). On top of what the signature
// tells (security/control.h), the gate remembers, in a LevelDB under the agent's state
// directory, what it let in, so that a restart does not reopen a replay:
//
//  - one-shot kinds (task, ack, verdict): every accepted message id until its expiry
//    (+ skew); the same id again is refused as replayed;
//  - retained kinds (config, model, update, erase): the issue time and id of the message in force. An
//    older one is refused as stale; the same one again (the broker re-sends retained
//    messages on every reconnect) is a duplicate, let in once per run of the agent so a
//    restarted agent puts it back in force, and ignored after that.
//
// Ids are written before the message is acted on: a crash in between loses that one
// message rather than running it twice (tasks are at most once).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nova/schemas/result.h"
#include "nova/security/control.h"

namespace leveldb {
class DB;
class Cache;
}  // namespace leveldb

namespace nova::agent {

struct ControlTrust {
  std::vector<security::VerifyKey> keys;  // several during a key rotation
  // Lets unsigned messages in (a message that is not an envelope passes as it is). Only
  // for setups without a signing nova-cloud; nova-agent logs a warning when it is on.
  bool insecure_unsigned = false;
  std::chrono::milliseconds skew{std::chrono::minutes(5)};
};

class ControlGate {
 public:
  static schemas::Result<std::unique_ptr<ControlGate>> open(const std::filesystem::path& dir,
                                                            ControlTrust trust, std::string node,
                                                            std::string site);
  ~ControlGate();

  struct Outcome {
    std::optional<std::string> message;        // admitted: the inner message to act on
    std::optional<security::Refusal> refusal;  // refused, and why
    bool duplicate = false;                    // neither: a retained message already in force
    std::string reason;                        // for the log
  };
  // `kind`: the down topic's kind ("task", "config", ...). `now_ms`: wall clock.
  Outcome admit(const std::string& kind, const std::string& payload, std::uint64_t now_ms);

 private:
  ControlGate(std::unique_ptr<leveldb::Cache> cache, std::unique_ptr<leveldb::DB> db,
              ControlTrust trust, std::string node, std::string site);
  void forget_expired(std::uint64_t now_ms);

  std::unique_ptr<leveldb::Cache> cache_;
  std::unique_ptr<leveldb::DB> db_;
  ControlTrust trust_;
  std::string node_;
  std::string site_;
  std::map<std::string, std::string> applied_this_run_;  // retained kind -> message id
};

}  // namespace nova::agent
