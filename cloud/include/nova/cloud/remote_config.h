// Remote config and models: what an operator pushes through the REST API
// (POST /api/v1/configs, /api/v1/models; docs/cloud.md "Remote config and models") to a
// node, a site or a subtree, and what each node says it did with it.
//
// A push gives the message a revision (the push's time in ms, or one more than the last
// revision this instance gave, whichever is larger: revisions only grow, also across a
// restart) and publishes it, signed, retained, on the down config or model topic of every
// node the target names now (a node that joins the target later gets nothing). Each node
// answers with a record on its decisions stream (agent.h, report_remote): kind
// "<config|model>_applied" or "<config|model>_refused" with inputs {revision} and, when
// refused, the reason as its action; and its birth names the revisions it runs
// (config_revision, model_revision). Per node and kind the newest push is kept with its
// state:
//   pending  published, nothing heard yet
//   running  the node reported it in force (a record, or its birth)
//   refused  the node refused it; `reason` is what it said
//   not_sent the MQTT client refused the publish (not connected): push again
// A report of another revision than the newest push changes nothing.
//
// Kept in the store (cloud records "push", synced) and listed by GET /api/v1/configs and
// /api/v1/models. Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "nova/cloud/rollouts.h"
#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::cloud {

enum class PushKind { config, model };
std::string_view to_string(PushKind kind);

struct PushState {
  PushKind kind = PushKind::config;
  std::string node;
  std::string site;
  std::uint64_t revision = 0;
  std::string state = "pending";  // pending, running, refused
  std::string reason;             // refused: the node's reason
  std::string pushed_by;          // the API token's name
  schemas::Timestamp pushed_ts = 0;
  schemas::Timestamp updated_ts = 0;  // when the state last changed
};

std::string to_json(const PushState& state);

class RemotePushes {
 public:
  struct Hooks {
    // QoS 1; the service signs down topics.
    std::function<bool(const std::string& topic, const std::vector<std::uint8_t>& payload, bool retained)> publish;
    // Keeps a state's JSON under `id`, synced.
    std::function<schemas::Status(const std::string& id, const std::string& json)> persist;
    std::function<void(const char* level, const std::string& event, const std::string& fields)> log;
  };
  explicit RemotePushes(Hooks hooks);

  bool restore(const std::string& json);  // a state kept by an earlier run; false if unreadable

  // The revision for a new push at `now`.
  std::uint64_t next_revision(schemas::Timestamp now);
  // Publishes `message` (CBOR of a Config or Model carrying `revision`) to each node;
  // returns their new states.
  std::vector<PushState> push(PushKind kind, const std::vector<TargetNode>& nodes, std::uint64_t revision,
                              const std::vector<std::uint8_t>& message, const std::string& actor, schemas::Timestamp now);

  // A decision record of one of the four report kinds: applied to its state; true. Any
  // other record: false (it is a decision to judge).
  bool on_report(const schemas::DecisionRecord& record, schemas::Timestamp now);
  // A birth: the revisions it names are running.
  void on_birth(const schemas::NodeState& birth, schemas::Timestamp now);

  // Every kept state of `kind` that `keep` accepts, by node.
  std::vector<PushState> list(PushKind kind, const std::function<bool(const PushState&)>& keep) const;

 private:
  void set_state(PushState& s, const std::string& state, const std::string& reason, schemas::Timestamp now);

  Hooks hooks_;
  mutable std::mutex mutex_;
  std::uint64_t last_revision_ = 0;
  std::map<std::pair<PushKind, std::string>, PushState> states_;  // by kind and node
};

}  // namespace nova::cloud
