#include "nova/cloud/operator_view.h"

#include <nlohmann/json.hpp>

#include "nova/cloud/service.h"
#include "nova/cloud/verdicts.h"
#include "nova/cloud/workloads.h"
#include "nova/schemas/codec.h"

namespace nova::cloud {

using nlohmann::json;

void LivenessHistory::record(const std::string& node, Liveness state, Timestamp ts) {
  std::lock_guard lock(mutex_);
  auto& spans = spans_[node];
  if (!spans.empty() && spans.back().state == state) return;
  spans.push_back({ts, state});
  if (spans.size() > kMaxTransitions) spans.erase(spans.begin());
}

LivenessHistory::Offline LivenessHistory::offline(const std::string& node, Timestamp from, Timestamp to) const {
  std::lock_guard lock(mutex_);
  Offline out;
  const auto it = spans_.find(node);
  if (it == spans_.end() || it->second.empty() || to <= from) return out;
  const auto& spans = it->second;
  out.first_seen = spans.front().since;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    if (spans[i].state == Liveness::alive) continue;
    const Timestamp start = std::max(spans[i].since, from);
    const Timestamp end = std::min(i + 1 < spans.size() ? spans[i + 1].since : to, to);
    if (end <= start) continue;
    out.offline_ms += end - start;
    // A period began in the window when this span starts in it after an alive one (or is
    // the first record: a node first seen away).
    const bool began = spans[i].since >= from && (i == 0 || spans[i - 1].state == Liveness::alive);
    if (began) ++out.periods;
  }
  return out;
}

std::vector<LivenessHistory::Span> LivenessHistory::spans(const std::string& node) const {
  std::lock_guard lock(mutex_);
  const auto it = spans_.find(node);
  return it == spans_.end() ? std::vector<Span>{} : it->second;
}

OperatorView::OperatorView(CloudService& service, EventHub& hub, std::chrono::milliseconds interval)
    : service_(service), hub_(hub) {
  if (interval.count() > 0) thread_ = std::thread([this, interval] { run(interval); });
}

OperatorView::~OperatorView() {
  {
    std::lock_guard lock(stop_mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void OperatorView::run(std::chrono::milliseconds interval) {
  std::unique_lock lock(stop_mutex_);
  while (!stopping_) {
    lock.unlock();
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now().time_since_epoch());
    try {
      tick(static_cast<Timestamp>(now.count()));
    } catch (const std::exception& e) {
      if (service_.options().log) service_.options().log("warning", "operator_view_failed", std::string("detail=\"") + e.what() + "\"");
    }
    lock.lock();
    stop_cv_.wait_for(lock, interval, [this] { return stopping_; });
  }
}

void OperatorView::tick(Timestamp now) {
  const bool announce = primed_;
  const auto publish = [&](const char* type, const json& data, const std::string& site) {
    if (announce) hub_.publish({0, type, data.dump(-1, ' ', false, json::error_handler_t::replace), site});
  };

  for (const NodeView& n : service_.nodes()) {
    const std::string site = n.description ? n.description->site : "";
    auto [it, fresh] = liveness_.try_emplace(n.id, n.liveness);
    if (!fresh && it->second == n.liveness) continue;
    json j = {{"id", n.id}, {"site", site}, {"liveness", std::string(to_string(n.liveness))}, {"ts", now}};
    if (!fresh) j["from"] = std::string(to_string(it->second));
    if (n.description) j["level"] = n.description->level;
    it->second = n.liveness;
    history_.record(n.id, n.liveness, fresh && !announce ? n.status_since : now);
    publish("node", j, site);
  }

  const std::vector<std::string> down_now = service_.links_down();
  const std::set<std::string> down(down_now.begin(), down_now.end());
  for (const auto& site : down) {
    if (links_down_.count(site) == 0) publish("link", {{"site", site}, {"state", "down"}, {"ts", now}}, "");
  }
  for (const auto& site : links_down_) {
    if (down.count(site) == 0) publish("link", {{"site", site}, {"state", "up"}, {"ts", now}}, "");
  }
  links_down_ = down;

  for (const WorkloadState& w : service_.workloads().list()) {
    const std::string& id = w.spec.workload_id;
    const std::string phase = std::string(to_string(w.phase)) + "|" + w.unplaced_reason;
    if (auto& seen = phases_[id]; seen != phase) {
      seen = phase;
      publish("workload", {{"workload_id", id}, {"phase", std::string(to_string(w.phase))},
                           {"unplaced_reason", w.unplaced_reason}, {"ts", now}}, "");
    }
    if (!w.placement) continue;
    const schemas::Placement& p = *w.placement;
    const std::string key = p.node + "@" + std::to_string(p.revision);
    if (auto& seen = placements_[id]; seen != key) {
      seen = key;
      json j = json::parse(schemas::encode_json(p));
      j["reason"] = w.history.empty() ? "" : w.history.back().reason;
      publish("placement", j, p.site);
    }
  }

  // The newest 200 (what a page shows); a decision that leaves them is forgotten.
  std::map<std::string, std::string> decisions;
  for (const DecisionEntry& d : service_.verdicts().list(200, [](const DecisionEntry&) { return true; })) {
    const auto& pos = d.record.position;
    const std::string key = pos.node + "/" + pos.stream + "/" + std::to_string(pos.seq);
    std::string body = to_json(d);
    const auto seen = decisions_.find(key);
    if (seen == decisions_.end() || seen->second != body) publish("decision", json::parse(body), d.site);
    decisions[key] = std::move(body);
  }
  decisions_ = std::move(decisions);

  // Newest first; everything received at or after the last round's newest.
  auto alerts = service_.store().alerts("", alerts_since_, 1000);
  std::set<std::string> at_newest;
  const Timestamp newest = alerts.empty() ? alerts_since_ : alerts.front().received;
  for (auto a = alerts.rbegin(); a != alerts.rend(); ++a) {
    const std::string key = a->alert.position.node + "/" + a->alert.alert_id + "/" + std::to_string(a->alert.position.seq);
    if (a->received == newest) at_newest.insert(key);
    if (a->received == alerts_since_ && alerts_seen_.count(key) != 0) continue;
    const auto node = service_.node(a->alert.position.node);
    const std::string site = node && node->description ? node->description->site : "";
    json j = json::parse(schemas::encode_json(a->alert));
    j["node"] = a->alert.position.node;
    j["site"] = site;
    j["received"] = a->received;
    publish("alert", j, site);
  }
  if (!alerts.empty() || !primed_) {
    alerts_since_ = alerts.empty() ? now : newest;
    alerts_seen_ = std::move(at_newest);
  }
  primed_ = true;
}

}  // namespace nova::cloud
