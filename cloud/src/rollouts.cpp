#include "nova/cloud/rollouts.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "nova/cloud/auth.h"
#include "nova/schemas/codec.h"
#include "nova/schemas/topic.h"
#include "nova/schemas/update_alert.h"
#include "nova/security/digest.h"

namespace nova::cloud {

using nlohmann::json;
using schemas::Error;
using schemas::Timestamp;

namespace {

constexpr RolloutNodePhase kPhases[] = {RolloutNodePhase::waiting,     RolloutNodePhase::offered,
                                        RolloutNodePhase::installing,  RolloutNodePhase::updated,
                                        RolloutNodePhase::rolled_back, RolloutNodePhase::refused,
                                        RolloutNodePhase::timed_out};
constexpr RolloutState kStates[] = {RolloutState::running, RolloutState::succeeded, RolloutState::halted};

template <class Enum, std::size_t N>
std::optional<Enum> parse_enum(const Enum (&all)[N], const std::string& name) {
  for (Enum e : all) {
    if (to_string(e) == name) return e;
  }
  return std::nullopt;
}

// Offered and not yet at an end: the node still decides whether its wave is done.
bool pending(RolloutNodePhase p) { return p == RolloutNodePhase::offered || p == RolloutNodePhase::installing; }

bool failed(RolloutNodePhase p) {
  return p == RolloutNodePhase::rolled_back || p == RolloutNodePhase::refused || p == RolloutNodePhase::timed_out;
}

std::size_t wave_count(const Rollout& r) { return (r.nodes.size() + r.wave_size - 1) / r.wave_size; }

}  // namespace

std::string_view to_string(RolloutNodePhase phase) {
  switch (phase) {
    case RolloutNodePhase::waiting: return "waiting";
    case RolloutNodePhase::offered: return "offered";
    case RolloutNodePhase::installing: return "installing";
    case RolloutNodePhase::updated: return "updated";
    case RolloutNodePhase::rolled_back: return "rolled_back";
    case RolloutNodePhase::refused: return "refused";
    case RolloutNodePhase::timed_out: return "timed_out";
  }
  return "waiting";
}

std::string_view to_string(RolloutState state) {
  switch (state) {
    case RolloutState::running: return "running";
    case RolloutState::succeeded: return "succeeded";
    case RolloutState::halted: return "halted";
  }
  return "running";
}

schemas::Result<std::vector<TargetNode>> resolve_target(const std::string& kind, const std::string& value,
                                                        const std::vector<TargetNode>& known, const std::string& scope) {
  if (kind != "node" && kind != "site" && kind != "subtree") {
    return Error{"target", "expected exactly one of node, site or subtree"};
  }
  if (kind == "node" ? !topics::Id::parse(value) : !topics::SitePath::parse(value)) {
    return Error{kind, "'" + value + "' is not a valid " + (kind == "node" ? "node id" : "site path")};
  }
  std::vector<TargetNode> out;
  for (const TargetNode& n : known) {
    const bool named = kind == "node" ? n.node == value : kind == "site" ? n.site == value : in_scope(value, n.site);
    if (named && in_scope(scope, n.site)) out.push_back(n);
  }
  if (out.empty()) {
    return Error{kind, "'" + value + "' names no node known here" +
                           (scope.empty() ? std::string() : " within the token's scope '" + scope + "'")};
  }
  std::sort(out.begin(), out.end(), [](const TargetNode& a, const TargetNode& b) { return a.node < b.node; });
  return out;
}

std::optional<std::string> bundle_problem(std::string_view bundle) {
  if (bundle.empty()) return "body: empty; expected the new nova-agent binary";
  if (bundle.substr(0, 4) == "\x7f" "ELF" || bundle.substr(0, 2) == "#!") return std::nullopt;
  return "body: not an update bundle: expected an executable the launcher can run (an ELF file or a #! script), "
         "the file nova-device-bundle chunks takes";
}

std::string rollout_json(const Rollout& r) {
  json nodes = json::array();
  for (const RolloutNode& n : r.nodes) {
    json j = {{"node", n.node},       {"site", n.site},       {"wave", n.wave},
              {"phase", to_string(n.phase)}, {"running_version", n.running_version},
              {"offered_ts", n.offered_ts}, {"updated_ts", n.updated_ts}};
    if (!n.reason.empty()) j["reason"] = n.reason;
    nodes.push_back(std::move(j));
  }
  json j = {{"id", r.id},
            {"version", r.version},
            {"sha256", r.sha256},
            {"size", r.size},
            {"target", r.target},
            {"wave_size", r.wave_size},
            {"waves", wave_count(r)},
            {"deadline_s", r.deadline_ms / 1000},
            {"created_by", r.created_by},
            {"created_ts", r.created_ts},
            {"state", to_string(r.state)},
            {"wave", r.wave},
            {"wave_started_ts", r.wave_started_ts},
            {"nodes", std::move(nodes)}};
  if (!r.halt_reason.empty()) j["halt_reason"] = r.halt_reason;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

schemas::Result<Rollout> rollout_from_json(std::string_view text) {
  try {
    const json j = json::parse(text);
    Rollout r;
    r.id = j.at("id").get<std::string>();
    r.version = j.at("version").get<std::string>();
    r.sha256 = j.at("sha256").get<std::string>();
    r.size = j.at("size").get<std::uint64_t>();
    r.target = j.at("target").get<std::string>();
    r.wave_size = std::max<std::size_t>(1, j.at("wave_size").get<std::size_t>());
    r.deadline_ms = j.at("deadline_s").get<std::uint64_t>() * 1000;
    r.created_by = j.at("created_by").get<std::string>();
    r.created_ts = j.at("created_ts").get<Timestamp>();
    auto state = parse_enum(kStates, j.at("state").get<std::string>());
    if (!state) return Error{"rollout.state", "unknown state"};
    r.state = *state;
    r.halt_reason = j.value("halt_reason", "");
    r.wave = j.at("wave").get<std::size_t>();
    r.wave_started_ts = j.at("wave_started_ts").get<Timestamp>();
    for (const json& n : j.at("nodes")) {
      RolloutNode node;
      node.node = n.at("node").get<std::string>();
      node.site = n.at("site").get<std::string>();
      node.wave = n.at("wave").get<std::size_t>();
      auto phase = parse_enum(kPhases, n.at("phase").get<std::string>());
      if (!phase) return Error{"rollout.nodes.phase", "unknown phase"};
      node.phase = *phase;
      node.running_version = n.at("running_version").get<std::string>();
      node.reason = n.value("reason", "");
      node.offered_ts = n.at("offered_ts").get<Timestamp>();
      node.updated_ts = n.at("updated_ts").get<Timestamp>();
      r.nodes.push_back(std::move(node));
    }
    return r;
  } catch (const json::exception& e) {
    return Error{"rollout", e.what()};
  }
}

Rollouts::Rollouts(Hooks hooks) : hooks_(std::move(hooks)) {}

void Rollouts::restore(Rollout rollout) {
  std::lock_guard lock(mutex_);
  rollouts_[rollout.id] = std::move(rollout);
}

schemas::Result<Rollout> Rollouts::start(Request request, const std::string& bundle, Timestamp now) {
  if (auto problem = bundle_problem(bundle)) return Error{"", *problem};
  if (request.wave_size == 0) return Error{"wave_size", "expected an integer 1..10000"};
  Rollout r;
  r.sha256 = security::sha256_hex(bundle);
  r.size = bundle.size();
  r.version = std::move(request.version);
  r.target = std::move(request.target);
  r.wave_size = request.wave_size;
  r.deadline_ms = static_cast<std::uint64_t>(request.deadline.count());
  r.created_by = std::move(request.created_by);
  r.created_ts = now;
  for (std::size_t i = 0; i < request.nodes.size(); ++i) {
    const TargetNode& t = request.nodes[i];
    r.nodes.push_back({t.node, t.site, i / r.wave_size, RolloutNodePhase::waiting, t.version, "", 0, 0});
  }
  std::lock_guard lock(mutex_);
  // The bundle and the millisecond name a rollout; a second one of the same bundle within
  // the same millisecond (two quick requests) gets a counter after it.
  const std::string base_id = "ro-" + r.sha256.substr(0, 12) + "-" + std::to_string(now);
  r.id = base_id;
  for (unsigned n = 2; rollouts_.count(r.id) != 0; ++n) r.id = base_id + "-" + std::to_string(n);
  // The chunks before any offer: an agent that has its offer finds them retained.
  if (!chunks_published_[r.sha256]) {
    const auto sha = topics::Id::parse(r.sha256).value();
    for (std::uint64_t i = 0; i * schemas::kBundleChunkBytes < bundle.size(); ++i) {
      const std::string_view chunk = std::string_view(bundle).substr(i * schemas::kBundleChunkBytes, schemas::kBundleChunkBytes);
      if (!hooks_.publish(topics::bundle_chunk(sha, i), {chunk.begin(), chunk.end()}, true)) {
        return Error{"mqtt", "chunk " + std::to_string(i) + " of the bundle was not published (not connected?)"};
      }
      ++counters_.chunks;
    }
    chunks_published_[r.sha256] = true;
  }
  if (auto st = hooks_.persist(r.id, rollout_json(r)); !st) return Error{"store", st.error().message()};
  ++counters_.started;
  if (hooks_.log) {
    hooks_.log("info", "rollout_started", "rollout=" + r.id + " version=\"" + r.version + "\" sha256=" + r.sha256 +
                                              " target=\"" + r.target + "\" nodes=" + std::to_string(r.nodes.size()) +
                                              " waves=" + std::to_string(wave_count(r)) + " by=\"" + r.created_by + "\"");
  }
  offer_wave(r, now);
  rollouts_[r.id] = r;
  return r;
}

void Rollouts::offer_wave(Rollout& r, Timestamp now) {
  r.wave_started_ts = now;
  schemas::UpdateOffer offer;
  offer.version = r.version;
  offer.sha256 = r.sha256;
  offer.size = r.size;
  offer.ts = now;
  std::vector<const RolloutNode*> to_offer;
  for (RolloutNode& n : r.nodes) {
    if (n.wave != r.wave || n.phase != RolloutNodePhase::waiting) continue;
    if (n.running_version == r.version) {  // runs it already: nothing to install
      n.phase = RolloutNodePhase::updated;
      n.updated_ts = now;
      continue;
    }
    n.phase = RolloutNodePhase::offered;
    n.offered_ts = now;
    to_offer.push_back(&n);
  }
  keep(r);
  const std::vector<std::uint8_t> message = schemas::encode_cbor(offer);
  for (const RolloutNode* n : to_offer) {
    auto site = topics::SitePath::parse(n->site);
    auto node = topics::Id::parse(n->node);
    if (!site || !node) continue;  // taken from a birth: valid
    hooks_.publish(topics::down(*site, *node, topics::DownKind::update), message, true);
    ++counters_.offers;
  }
  if (hooks_.log) {
    hooks_.log("info", "rollout_wave", "rollout=" + r.id + " wave=" + std::to_string(r.wave) +
                                           " offered=" + std::to_string(to_offer.size()));
  }
  advance(r, now);  // a wave of nodes that all run the version already is done at once
}

// The current wave done: the next one, or the end.
void Rollouts::advance(Rollout& r, Timestamp now) {
  if (r.state != RolloutState::running) return;
  for (const RolloutNode& n : r.nodes) {
    if (n.wave == r.wave && n.phase != RolloutNodePhase::updated) return;
  }
  if (r.wave + 1 >= wave_count(r)) {
    r.state = RolloutState::succeeded;
    ++counters_.succeeded;
    keep(r);
    if (hooks_.log) hooks_.log("info", "rollout_succeeded", "rollout=" + r.id + " nodes=" + std::to_string(r.nodes.size()));
    return;
  }
  ++r.wave;
  offer_wave(r, now);
}

void Rollouts::halt(Rollout& r, const std::string& reason) {
  if (r.state != RolloutState::running) return;  // the first failure is the reason
  r.state = RolloutState::halted;
  r.halt_reason = reason;
  ++counters_.halted;
  if (hooks_.log) hooks_.log("warning", "rollout_halted", "rollout=" + r.id + " reason=\"" + reason + "\"");
}

void Rollouts::keep(const Rollout& r) {
  if (auto st = hooks_.persist(r.id, rollout_json(r)); !st && hooks_.log) {
    hooks_.log("error", "store_write_failed", "rollout=" + r.id + " error=\"" + st.error().message() + "\"");
  }
}

void Rollouts::on_state(const schemas::NodeState& state, Timestamp now) {
  std::lock_guard lock(mutex_);
  for (auto& [id, r] : rollouts_) {
    for (RolloutNode& n : r.nodes) {
      if (n.node != state.node) continue;
      bool changed = false;
      if (state.status == schemas::NodeStatus::online && state.description) {
        changed = n.running_version != state.description->version;
        n.running_version = state.description->version;
        if (pending(n.phase) && n.running_version == r.version) {
          n.phase = RolloutNodePhase::updated;
          n.updated_ts = now;
          changed = true;
        }
      } else if (state.status != schemas::NodeStatus::online && n.phase == RolloutNodePhase::offered) {
        n.phase = RolloutNodePhase::installing;
        changed = true;
      }
      if (!changed) continue;
      advance(r, now);
      keep(r);
    }
  }
}

void Rollouts::on_alert(const std::string& node, const schemas::Alert& alert, Timestamp now) {
  const auto outcome = schemas::parse_update_alert(alert);
  if (!outcome) return;
  std::lock_guard lock(mutex_);
  for (auto& [id, r] : rollouts_) {
    if (r.sha256 != outcome->sha256) continue;
    for (RolloutNode& n : r.nodes) {
      if (n.node != node || n.phase == RolloutNodePhase::waiting || failed(n.phase)) continue;
      const bool rolled_back = outcome->kind == schemas::UpdateOutcome::Kind::rolled_back;
      n.phase = rolled_back ? RolloutNodePhase::rolled_back : RolloutNodePhase::refused;
      n.reason = outcome->reason;
      n.updated_ts = now;
      halt(r, "node " + node + (rolled_back ? " rolled back: " : " refused the bundle: ") + outcome->reason);
      keep(r);
    }
  }
}

void Rollouts::tick(Timestamp now, bool topology_current) {
  std::lock_guard lock(mutex_);
  for (auto& [id, r] : rollouts_) {
    if (r.state != RolloutState::running) continue;
    advance(r, now);  // a wave whose last node was counted while restoring
    if (!topology_current || r.state != RolloutState::running || now < r.wave_started_ts + r.deadline_ms) continue;
    std::vector<std::string> late;
    for (RolloutNode& n : r.nodes) {
      if (n.wave != r.wave || !pending(n.phase)) continue;
      n.phase = RolloutNodePhase::timed_out;
      n.reason = "no birth reporting " + r.version + " within " + std::to_string(r.deadline_ms / 1000) + " s of its offer";
      late.push_back(n.node);
    }
    if (late.empty()) continue;
    std::string names;
    for (const auto& l : late) names += (names.empty() ? "" : ", ") + l;
    halt(r, "wave " + std::to_string(r.wave) + " timed out: " + names);
    keep(r);
  }
}

std::vector<Rollout> Rollouts::list() const {
  std::lock_guard lock(mutex_);
  std::vector<Rollout> out;
  for (const auto& [id, r] : rollouts_) out.push_back(r);
  return out;
}

std::optional<Rollout> Rollouts::get(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = rollouts_.find(id);
  if (it == rollouts_.end()) return std::nullopt;
  return it->second;
}

RolloutCounters Rollouts::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

}  // namespace nova::cloud
