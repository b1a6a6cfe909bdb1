#include "nova/cloud/erasures.h"

#include <nlohmann/json.hpp>

#include "nova/schemas/codec.h"
#include "nova/schemas/topic.h"

namespace nova::cloud {

using nlohmann::json;
using schemas::Error;

std::string erasure_json(const Erasure& e) {
  json j = {{"erasure_id", e.id},
            {"node", e.node},
            {"site", e.site},
            {"requested_by", e.requested_by},
            {"requested_at", e.requested_at},
            {"state", e.state},
            {"cloud", e.cloud},
            {"node_counts", e.node_counts}};
  if (e.sensor) j["sensor"] = *e.sensor;
  if (e.confirmed_at) j["confirmed_at"] = *e.confirmed_at;
  return j.dump();
}

schemas::Result<Erasure> erasure_from_json(const std::string& text) {
  try {
    const json j = json::parse(text);
    Erasure e;
    e.id = j.at("erasure_id").get<std::string>();
    e.node = j.at("node").get<std::string>();
    e.site = j.at("site").get<std::string>();
    e.requested_by = j.at("requested_by").get<std::string>();
    e.requested_at = j.at("requested_at").get<schemas::Timestamp>();
    e.state = j.at("state").get<std::string>();
    e.cloud = j.at("cloud").get<ErasureCounts>();
    e.node_counts = j.at("node_counts").get<ErasureCounts>();
    if (j.contains("sensor")) e.sensor = j.at("sensor").get<std::string>();
    if (j.contains("confirmed_at")) e.confirmed_at = j.at("confirmed_at").get<schemas::Timestamp>();
    return e;
  } catch (const json::exception& ex) {
    return Error{"erasure", ex.what()};
  }
}

std::string Erasures::counts_text(const ErasureCounts& counts) const {
  std::string out;
  for (const auto& [part, n] : counts) out += (out.empty() ? "" : " ") + part + "=" + std::to_string(n);
  return out;
}

schemas::Result<Erasure> Erasures::request(const std::string& node, const std::string& site,
                                           const std::optional<std::string>& sensor, const std::string& caller,
                                           schemas::Timestamp now) {
  auto erased = hooks_.erase_store(node, sensor);
  if (!erased) return Error{"erasure", "store: " + erased.error().message()};
  std::lock_guard lock(mutex_);
  Erasure e;
  same_ms_ = now == last_id_ms_ ? same_ms_ + 1 : 0;
  last_id_ms_ = now;
  e.id = "erasure-" + std::to_string(now) + (same_ms_ == 0 ? "" : "-" + std::to_string(same_ms_));
  e.node = node;
  e.site = site;
  e.sensor = sensor;
  e.requested_by = caller;
  e.requested_at = now;
  e.cloud = std::move(erased).value();
  const bool another = std::any_of(erasures_.begin(), erasures_.end(), [&](const auto& kv) {
    return kv.second.node == node && kv.second.state == "pending";
  });
  e.state = another ? "queued" : "pending";
  // Recorded before the node is asked: the log holds every erasure that may have happened.
  const std::string target = "node=" + node + " sensor=" + sensor.value_or("*") + " erasure=" + e.id;
  if (auto st = hooks_.audit(caller, "erasure requested", target, "cloud " + counts_text(e.cloud)); !st) {
    return Error{"erasure", "audit: " + st.error().message()};
  }
  keep(e);
  erasures_[e.id] = e;
  if (!another) send(e);
  return e;
}

void Erasures::keep(const Erasure& e) {
  // The state in memory stays right; a restart would show the last state kept.
  if (auto st = hooks_.persist(e.id, erasure_json(e)); !st && hooks_.log) {
    hooks_.log("error", "erasure_not_kept", "erasure=" + e.id + " error=\"" + st.error().message() + "\"");
  }
}

void Erasures::send(const Erasure& e) {
  schemas::ErasureRequest m{e.id, e.node, e.sensor, e.requested_at};
  auto site = topics::SitePath::parse(e.site);
  auto node = topics::Id::parse(e.node);
  if (!site || !node) return;  // checked when requested
  const bool sent = hooks_.publish(topics::down(*site, *node, topics::DownKind::erase), schemas::encode_cbor(m), true);
  if (hooks_.log) hooks_.log(sent ? "info" : "warning", "erasure_sent", "erasure=" + e.id + " sent=" + (sent ? "true" : "false"));
}

void Erasures::on_report(const std::string& node, const schemas::ErasureReport& report, schemas::Timestamp now) {
  std::optional<Erasure> next;
  Erasure done;
  {
    std::lock_guard lock(mutex_);
    auto it = erasures_.find(report.erasure_id);
    if (it == erasures_.end() || it->second.node != node || it->second.state == "done") {
      if (hooks_.log) hooks_.log("warning", "erasure_report_unexpected", "node=" + node + " erasure=" + report.erasure_id);
      return;
    }
    Erasure& e = it->second;
    // Records the node sent before it erased may have been stored since the request.
    if (auto again = hooks_.erase_store(e.node, e.sensor)) {
      for (const auto& [part, n] : *again) e.cloud[part] += n;
    }
    e.state = "done";
    e.node_counts = report.counts;
    e.confirmed_at = now;
    done = e;
    for (auto& [id, other] : erasures_) {
      if (other.node == node && other.state == "queued" && (!next || other.requested_at < next->requested_at)) next = other;
    }
    if (next) erasures_[next->id].state = "pending";
  }
  const std::string target = "node=" + node + " sensor=" + done.sensor.value_or("*") + " erasure=" + done.id;
  if (auto st = hooks_.audit(node, "erasure confirmed", target, "node " + counts_text(done.node_counts) + "; cloud " +
                                                                   counts_text(done.cloud));
      !st && hooks_.log) {
    hooks_.log("error", "audit_failed", "error=\"" + st.error().message() + "\"");
  }
  keep(done);
  if (hooks_.log) hooks_.log("info", "erasure_done", "erasure=" + done.id + " node=" + node + " " + counts_text(done.node_counts));
  if (next) {
    next->state = "pending";
    keep(*next);
    send(*next);
  }
}

void Erasures::on_birth(const std::string& node) {
  std::optional<Erasure> pending;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, e] : erasures_) {
      if (e.node == node && e.state == "pending") pending = e;
    }
  }
  if (pending) send(*pending);
}

void Erasures::restore(Erasure e) {
  std::lock_guard lock(mutex_);
  erasures_[e.id] = std::move(e);
}

std::optional<Erasure> Erasures::get(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = erasures_.find(id);
  if (it == erasures_.end()) return std::nullopt;
  return it->second;
}

std::vector<Erasure> Erasures::list() const {
  std::lock_guard lock(mutex_);
  std::vector<Erasure> out;
  for (const auto& [id, e] : erasures_) out.push_back(e);
  return out;
}

}  // namespace nova::cloud
