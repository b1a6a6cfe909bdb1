#include "nova/cloud/remote_config.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "nova/schemas/topic.h"

namespace nova::cloud {

using nlohmann::json;
using namespace nova::schemas;

namespace {

// A report's kind ("config_applied", ...) as the push kind and whether it was applied.
std::optional<std::pair<PushKind, bool>> report_kind(const std::string& kind) {
  if (kind == "config_applied") return std::pair{PushKind::config, true};
  if (kind == "config_refused") return std::pair{PushKind::config, false};
  if (kind == "model_applied") return std::pair{PushKind::model, true};
  if (kind == "model_refused") return std::pair{PushKind::model, false};
  return std::nullopt;
}

std::string store_id(PushKind kind, const std::string& node) { return std::string(to_string(kind)) + "/" + node; }

}  // namespace

std::string_view to_string(PushKind kind) { return kind == PushKind::config ? "config" : "model"; }

std::string to_json(const PushState& s) {
  return json{{"kind", std::string(to_string(s.kind))},
              {"node", s.node},
              {"site", s.site},
              {"revision", s.revision},
              {"state", s.state},
              {"reason", s.reason},
              {"pushed_by", s.pushed_by},
              {"pushed_ts", s.pushed_ts},
              {"updated_ts", s.updated_ts}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

RemotePushes::RemotePushes(Hooks hooks) : hooks_(std::move(hooks)) {}

bool RemotePushes::restore(const std::string& text) {
  const json j = json::parse(text, nullptr, false);
  try {
    PushState s;
    const std::string kind = j.at("kind");
    if (kind != "config" && kind != "model") return false;
    s.kind = kind == "config" ? PushKind::config : PushKind::model;
    s.node = j.at("node");
    s.site = j.at("site");
    s.revision = j.at("revision");
    s.state = j.at("state");
    s.reason = j.at("reason");
    s.pushed_by = j.at("pushed_by");
    s.pushed_ts = j.at("pushed_ts");
    s.updated_ts = j.at("updated_ts");
    std::lock_guard lock(mutex_);
    last_revision_ = std::max(last_revision_, s.revision);
    states_[{s.kind, s.node}] = std::move(s);
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

std::uint64_t RemotePushes::next_revision(Timestamp now) {
  std::lock_guard lock(mutex_);
  last_revision_ = std::max<std::uint64_t>(now, last_revision_ + 1);
  return last_revision_;
}

std::vector<PushState> RemotePushes::push(PushKind kind, const std::vector<TargetNode>& nodes, std::uint64_t revision,
                                          const std::vector<std::uint8_t>& message, const std::string& actor,
                                          Timestamp now) {
  const topics::DownKind down = kind == PushKind::config ? topics::DownKind::config : topics::DownKind::model;
  std::vector<PushState> out;
  for (const TargetNode& n : nodes) {
    auto site = topics::SitePath::parse(n.site);
    auto id = topics::Id::parse(n.node);
    if (!site || !id) continue;  // resolve_target gives known nodes only: never the case
    const bool sent = hooks_.publish(topics::down(*site, *id, down), message, true);
    PushState s{kind, n.node, n.site, revision, sent ? "pending" : "not_sent", "", actor, now, now};
    {
      std::lock_guard lock(mutex_);
      states_[{kind, n.node}] = s;
    }
    if (hooks_.persist) {
      if (auto st = hooks_.persist(store_id(kind, n.node), to_json(s)); !st && hooks_.log) {
        hooks_.log("error", "push_not_kept", "node=" + n.node + " error=\"" + st.error().message() + "\"");
      }
    }
    if (hooks_.log) {
      hooks_.log("info", "pushed", "kind=" + std::string(to_string(kind)) + " node=" + n.node +
                                       " revision=" + std::to_string(revision) + " sent=" + (sent ? "true" : "false"));
    }
    out.push_back(std::move(s));
  }
  return out;
}

void RemotePushes::set_state(PushState& s, const std::string& state, const std::string& reason, Timestamp now) {
  if (s.state == state && s.reason == reason) return;
  s.state = state;
  s.reason = reason;
  s.updated_ts = now;
  if (hooks_.persist) (void)hooks_.persist(store_id(s.kind, s.node), to_json(s));  // the next report retries
  if (hooks_.log) {
    hooks_.log(state == "refused" ? "warning" : "info", "push_" + state,
               "kind=" + std::string(to_string(s.kind)) + " node=" + s.node + " revision=" + std::to_string(s.revision) +
                   (reason.empty() ? "" : " reason=" + json(reason).dump(-1, ' ', false, json::error_handler_t::replace)));
  }
}

bool RemotePushes::on_report(const DecisionRecord& record, Timestamp now) {
  const auto kind = report_kind(record.kind);
  if (!kind) return false;
  const auto revision = record.inputs.find("revision");
  std::lock_guard lock(mutex_);
  auto it = states_.find({kind->first, record.position.node});
  if (revision == record.inputs.end() || it == states_.end() ||
      static_cast<double>(it->second.revision) != revision->second) {
    return true;  // a report of another push: nothing to change
  }
  set_state(it->second, kind->second ? "running" : "refused", kind->second ? "" : record.action, now);
  return true;
}

void RemotePushes::on_birth(const NodeState& birth, Timestamp now) {
  std::lock_guard lock(mutex_);
  for (const auto& [kind, revision] : {std::pair{PushKind::config, birth.config_revision},
                                       std::pair{PushKind::model, birth.model_revision}}) {
    auto it = states_.find({kind, birth.node});
    if (revision && it != states_.end() && it->second.revision == *revision) set_state(it->second, "running", "", now);
  }
}

std::vector<PushState> RemotePushes::list(PushKind kind, const std::function<bool(const PushState&)>& keep) const {
  std::lock_guard lock(mutex_);
  std::vector<PushState> out;
  for (const auto& [key, s] : states_) {
    if (key.first == kind && keep(s)) out.push_back(s);
  }
  return out;
}

}  // namespace nova::cloud
