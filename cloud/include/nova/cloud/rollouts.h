// Over-the-air rollouts of nova-agent, driven by nova-cloud (docs/cloud.md, "Rollouts").
//
// A rollout takes one update bundle (the new nova-agent binary, what `nova-device-bundle
// chunks` cuts) and a target: one node, the nodes of one site, or every node of a subtree.
// It publishes the bundle's chunks once, retained, on nova/v1/bundle/<sha256>/<index>, then
// offers the version (a signed, retained update offer on each node's
// nova/v1/down/<site path>/<node>/update) to one wave of `wave_size` nodes at a time, the
// nodes in the order of their ids:
//
//   a node is done        when a birth of it reports the offered version
//   the next wave starts  when every node of the current wave is done
//   the rollout halts     when a node of it reports a rollback or a refusal of this
//                         bundle (its agent's alert, schemas/update_alert.h), or a node of
//                         the current wave is not done within `deadline` of its wave's
//                         start: the waves after it are never offered (a canary). Nodes of
//                         the current wave that were offered keep their offer.
//
// The rollout is kept in the store (key c/rollout/<id>, JSON, a synced write) once its
// chunks are published, and every change before the offers it makes; it is loaded at start: a restarted nova-cloud goes on with the
// rollout where it stood. Deadlines are wall-clock times kept with it; they are checked
// only while the service says the topology is current (connected, retained births
// received), so the births a node sent while nova-cloud was away count first.
//
// Thread-safe: the HTTP threads start and read rollouts, the ingest thread feeds births,
// alerts and the clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::cloud {

// The largest bundle a rollout takes (the request body of POST /api/v1/rollouts).
inline constexpr std::size_t kMaxBundleBytes = 64 << 20;

// What a node of a rollout is doing, in the order a good update goes through.
enum class RolloutNodePhase {
  waiting,      // in a later wave, not offered yet
  offered,      // its offer is published
  installing,   // it went offline after its offer (the agent stops for the launcher)
  updated,      // a birth reported the offered version: done
  rolled_back,  // its launcher rolled the version back (reason from the agent's alert)
  refused,      // its agent refused the bundle (reason from the alert)
  timed_out,    // not updated within the deadline of its wave
};
std::string_view to_string(RolloutNodePhase phase);

enum class RolloutState { running, succeeded, halted };
std::string_view to_string(RolloutState state);

struct RolloutNode {
  std::string node;
  std::string site;
  std::size_t wave = 0;
  RolloutNodePhase phase = RolloutNodePhase::waiting;
  std::string running_version;  // from its latest birth
  std::string reason;           // rolled_back, refused, timed_out: why
  schemas::Timestamp offered_ts = 0;
  schemas::Timestamp updated_ts = 0;
};

struct Rollout {
  std::string id;
  std::string version;
  std::string sha256;
  std::uint64_t size = 0;
  std::string target;  // "node:<id>", "site:<path>" or "subtree:<path>"
  std::size_t wave_size = 1;
  std::uint64_t deadline_ms = 0;
  std::string created_by;
  schemas::Timestamp created_ts = 0;
  RolloutState state = RolloutState::running;
  std::string halt_reason;
  std::size_t wave = 0;                 // the current wave
  schemas::Timestamp wave_started_ts = 0;
  std::vector<RolloutNode> nodes;       // by id; wave = index / wave_size
};

// A node a target can name: its id, site and the version its latest birth reports.
struct TargetNode {
  std::string node;
  std::string site;
  std::string version;
};

// The nodes of `target` ("node"|"site"|"subtree", value) among `known`, by id; an error
// naming the field when the target names nothing, or lies outside `scope` (a site path;
// empty: everything), as every scoped route hides what it may not see.
schemas::Result<std::vector<TargetNode>> resolve_target(const std::string& kind, const std::string& value,
                                                        const std::vector<TargetNode>& known, const std::string& scope);

// Why `bundle` cannot be one (empty, or not something the launcher can execute: an ELF
// file or a #! script); nothing when it can.
std::optional<std::string> bundle_problem(std::string_view bundle);

std::string rollout_json(const Rollout& rollout);
schemas::Result<Rollout> rollout_from_json(std::string_view text);

struct RolloutCounters {
  std::uint64_t started = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t halted = 0;
  std::uint64_t offers = 0;
  std::uint64_t chunks = 0;
};

class Rollouts {
 public:
  struct Hooks {
    // QoS 1; a down topic is signed by the service.
    std::function<bool(const std::string& topic, const std::vector<std::uint8_t>& payload, bool retained)> publish;
    // Keeps the rollout's JSON (synced); an error refuses the change.
    std::function<schemas::Status(const std::string& id, const std::string& json)> persist;
    std::function<void(const char* level, const std::string& event, const std::string& fields)> log;
  };
  explicit Rollouts(Hooks hooks);

  // A rollout loaded from the store at start.
  void restore(Rollout rollout);

  struct Request {
    std::string version;
    std::string target;  // as Rollout::target
    std::vector<TargetNode> nodes;
    std::size_t wave_size = 1;
    std::chrono::milliseconds deadline{0};
    std::string created_by;
  };
  // Kept, its chunks published (once per bundle and instance run), its first wave offered.
  schemas::Result<Rollout> start(Request request, const std::string& bundle, schemas::Timestamp now);

  void on_state(const schemas::NodeState& state, schemas::Timestamp now);
  void on_alert(const std::string& node, const schemas::Alert& alert, schemas::Timestamp now);
  // Starts waves and enforces deadlines; `topology_current` false: deadlines wait.
  void tick(schemas::Timestamp now, bool topology_current);

  std::vector<Rollout> list() const;
  std::optional<Rollout> get(const std::string& id) const;
  RolloutCounters counters() const;

 private:
  void offer_wave(Rollout& r, schemas::Timestamp now);
  void advance(Rollout& r, schemas::Timestamp now);
  void halt(Rollout& r, const std::string& reason);
  void keep(const Rollout& r);

  Hooks hooks_;
  mutable std::mutex mutex_;
  std::map<std::string, Rollout> rollouts_;
  std::map<std::string, bool> chunks_published_;  // by sha256, this run
  RolloutCounters counters_;
};

}  // namespace nova::cloud
