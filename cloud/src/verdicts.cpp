#include "nova/cloud/verdicts.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "nova/schemas/codec.h"
#include "nova/schemas/topic.h"

namespace nova::cloud {

using nlohmann::json;
using namespace nova::schemas;

namespace {

// The kinds of decision the rules know by name (agent/include/nova/agent/decisions.h).
constexpr const char* kThresholdAlert = "threshold_alert";
// The inputs of a threshold decision that are not the gauge itself.
constexpr const char* kLevelInputs[] = {"threshold", "warning", "critical"};

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::optional<double> parse_number(std::string_view text) {
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// The gauge of a threshold decision: its one input that is not a level.
std::optional<std::string> threshold_gauge(const DecisionRecord& d) {
  for (const auto& [name, value] : d.inputs) {
    if (std::find(std::begin(kLevelInputs), std::end(kLevelInputs), name) == std::end(kLevelInputs)) return name;
  }
  return std::nullopt;
}

// A level within the bounds; 0 (the level is off) stays off.
double bounded(double level, const ThresholdBounds& b) { return level == 0 ? 0 : std::clamp(level, b.min, b.max); }

}  // namespace

Result<VerdictPolicy> parse_verdict_policy(bool enabled, std::uint32_t rate_limit, std::uint32_t rate_window_s,
                                           const std::vector<std::string>& allowed_actions,
                                           const std::vector<std::string>& threshold_bounds) {
  VerdictPolicy p;
  p.enabled = enabled;
  p.rate_limit = rate_limit;
  p.rate_window = std::chrono::seconds(rate_window_s);
  for (const std::string& entry : allowed_actions) {
    const auto bad = [&](const std::string& why) {
      return Error{"verdicts.allowed_actions", "\"" + entry + "\": " + why};
    };
    const auto colon = entry.find(':');
    if (colon == std::string::npos) return bad("expected <level>:<action>");
    const auto level = parse_number(std::string_view(entry).substr(0, colon));
    if (!level || *level < 1 || *level > 5 || *level != std::floor(*level)) return bad("level must be 1..5");
    const std::string action = entry.substr(colon + 1);
    if (action.empty() || action.size() > 256) return bad("action must be 1..256 bytes");
    p.allowed_actions[static_cast<std::uint32_t>(*level)].insert(action);
  }
  for (const std::string& entry : threshold_bounds) {
    const auto bad = [&](const std::string& why) {
      return Error{"verdicts.threshold_bounds", "\"" + entry + "\": " + why};
    };
    const auto colon = entry.find(':');
    const auto dots = entry.find("..");
    if (colon == std::string::npos || dots == std::string::npos || dots < colon) return bad("expected <gauge>:<min>..<max>");
    const std::string gauge = entry.substr(0, colon);
    if (!topics::Id::valid(gauge)) return bad("gauge must be an id");
    const auto min = parse_number(std::string_view(entry).substr(colon + 1, dots - colon - 1));
    const auto max = parse_number(std::string_view(entry).substr(dots + 2));
    if (!min || !max || *min < 0 || *max < *min) return bad("expected numbers 0 <= min <= max");
    p.threshold_bounds[gauge] = {*min, *max};
  }
  return p;
}

bool VerdictJudge::over_rate(const std::string& node, Timestamp ts) {
  if (policy_.rate_limit == 0) return false;
  const auto window = static_cast<Timestamp>(std::chrono::duration_cast<std::chrono::milliseconds>(policy_.rate_window).count());
  auto& seen = recent_[node];
  // Forget what no decision can still count: older than a window before the newest seen.
  if (!seen.empty() && *seen.rbegin() > window) seen.erase(seen.begin(), seen.lower_bound(*seen.rbegin() - window));
  const Timestamp from = ts > window ? ts - window : 0;
  const auto in_window = static_cast<std::size_t>(std::distance(seen.upper_bound(from), seen.upper_bound(ts)));
  seen.insert(ts);
  return in_window >= policy_.rate_limit;
}

DecisionVerdict VerdictJudge::judge(const std::string& node, std::uint32_t level, const DecisionRecord& d,
                                    Timestamp now) {
  DecisionVerdict v;
  v.decision_id = d.decision_id;
  v.node = node;
  v.ts = now;
  if (over_rate(node, d.ts)) {
    v.verdict = Verdict::rejected;
    v.reason = "rate limit: more than " + std::to_string(policy_.rate_limit) + " decisions of " + node + " within " +
               std::to_string(policy_.rate_window.count()) + " s (verdicts.rate_limit)";
    return v;
  }
  if (auto allowed = policy_.allowed_actions.find(level);
      allowed != policy_.allowed_actions.end() && allowed->second.count(d.action) == 0) {
    v.verdict = Verdict::rejected;
    std::string list;
    for (const std::string& a : allowed->second) list += (list.empty() ? "" : ", ") + a;
    v.reason = "action '" + d.action + "' is not allowed at tier level " + std::to_string(level) +
               " (verdicts.allowed_actions: " + list + ")";
    return v;
  }
  const auto gauge = d.kind == kThresholdAlert ? threshold_gauge(d) : std::nullopt;
  const auto bounds = gauge ? policy_.threshold_bounds.find(*gauge) : policy_.threshold_bounds.end();
  const auto warning = d.inputs.find("warning");
  const auto critical = d.inputs.find("critical");
  if (bounds != policy_.threshold_bounds.end() && warning != d.inputs.end() && critical != d.inputs.end()) {
    const double w = bounded(warning->second, bounds->second);
    const double c = bounded(critical->second, bounds->second);
    if (w != warning->second || c != critical->second) {
      v.verdict = Verdict::overridden;
      v.gauge = *gauge;
      v.warning = w;
      v.critical = c;
      v.reason = *gauge + " levels warning " + number(warning->second) + " critical " + number(critical->second) +
                 " outside verdicts.threshold_bounds " + number(bounds->second.min) + ".." +
                 number(bounds->second.max) + ": set to " + number(w) + " " + number(c);
      return v;
    }
  }
  v.verdict = Verdict::accepted;
  return v;
}

std::string to_json(const DecisionEntry& e) {
  json j = json::parse(encode_json(e.record));
  j["site"] = e.site;
  j["verdict"] = e.verdict ? json::parse(encode_json(*e.verdict)) : json(nullptr);
  j["applied"] = e.applied ? json::parse(encode_json(*e.applied)) : json(nullptr);
  return j.dump();
}

std::string verdict_metrics(const VerdictCounters& c) {
  std::string out =
      "# HELP nova_cloud_verdicts_total Verdicts sent on decision records, by verdict.\n"
      "# TYPE nova_cloud_verdicts_total counter\n";
  out += "nova_cloud_verdicts_total{verdict=\"accepted\"} " + std::to_string(c.accepted) + "\n";
  out += "nova_cloud_verdicts_total{verdict=\"overridden\"} " + std::to_string(c.overridden) + "\n";
  out += "nova_cloud_verdicts_total{verdict=\"rejected\"} " + std::to_string(c.rejected) + "\n";
  out += "# HELP nova_cloud_overrides_applied_total Overrides the agents recorded as put in force.\n"
         "# TYPE nova_cloud_overrides_applied_total counter\nnova_cloud_overrides_applied_total " +
         std::to_string(c.applied) + "\n";
  out += "# HELP nova_cloud_decisions_waiting Decisions waiting for their node's birth to be judged.\n"
         "# TYPE nova_cloud_decisions_waiting gauge\nnova_cloud_decisions_waiting " + std::to_string(c.waiting) + "\n";
  out += "# HELP nova_cloud_decisions_unjudged_total Decisions never judged: too many of their node waited.\n"
         "# TYPE nova_cloud_decisions_unjudged_total counter\nnova_cloud_decisions_unjudged_total " +
         std::to_string(c.dropped) + "\n";
  return out;
}

Verdicts::Verdicts(VerdictPolicy policy, Hooks hooks)
    : hooks_(std::move(hooks)), enabled_(policy.enabled), judge_(std::move(policy)) {}

void Verdicts::log(const char* level, const std::string& event, const std::string& fields) const {
  if (hooks_.log) hooks_.log(level, event, fields);
}

bool Verdicts::restore(const std::string& text) {
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("verdict") || !j.contains("applied")) return false;
  DecisionEntry e;
  json record = j;
  for (const char* k : {"site", "verdict", "applied"}) record.erase(k);
  auto r = decode_json<DecisionRecord>(record.dump());
  if (!r || !j["site"].is_string()) return false;
  e.record = std::move(r).value();
  e.site = j["site"];
  if (!j["verdict"].is_null()) {
    auto v = decode_json<DecisionVerdict>(j["verdict"].dump());
    if (!v) return false;
    e.verdict = std::move(v).value();
  }
  if (!j["applied"].is_null()) {
    auto a = decode_json<DecisionRecord>(j["applied"].dump());
    if (!a) return false;
    e.applied = std::move(a).value();
  }
  std::lock_guard lock(mutex_);
  const Key key{e.record.position.node, e.record.decision_id};
  if (entries_.emplace(key, std::move(e)).second) order_.push_back(key);
  return true;
}

void Verdicts::persist(const Key& key, const DecisionEntry* entry) {
  if (!hooks_.persist) return;
  auto st = hooks_.persist(key.first + "/" + key.second, entry ? to_json(*entry) : std::string());
  if (!st) log("error", "verdict_not_kept", "node=" + key.first + " decision=" + key.second + " error=\"" + st.error().message() + "\"");
}

void Verdicts::keep(const Key& key, DecisionEntry entry) {
  auto [it, added] = entries_.insert_or_assign(key, std::move(entry));
  if (added) order_.push_back(key);
  persist(key, &it->second);
  while (order_.size() > kMaxKept) {
    persist(order_.front(), nullptr);
    entries_.erase(order_.front());
    order_.pop_front();
  }
}

void Verdicts::judge_and_send(DecisionEntry& e, std::uint32_t level, Timestamp now) {
  const std::string& node = e.record.position.node;
  e.verdict = judge_.judge(node, level, e.record, now);
  const DecisionVerdict& v = *e.verdict;
  switch (v.verdict) {
    case Verdict::accepted: ++counters_.accepted; break;
    case Verdict::overridden: ++counters_.overridden; break;
    case Verdict::rejected: ++counters_.rejected; break;
  }
  const char* name = v.verdict == Verdict::accepted ? "accepted" : v.verdict == Verdict::overridden ? "overridden" : "rejected";
  auto site = topics::SitePath::parse(e.site);
  auto id = topics::Id::parse(node);
  const bool sent = site && id && hooks_.publish(topics::down(*site, *id, topics::DownKind::verdict), encode_cbor(v));
  log(v.verdict == Verdict::accepted ? "debug" : "info", "verdict",
      "node=" + node + " decision=" + v.decision_id + " verdict=" + name + " sent=" + (sent ? "true" : "false") +
          " reason=\"" + v.reason.value_or("") + "\"");
  if (v.verdict == Verdict::accepted && hooks_.accepted) hooks_.accepted(e.record, now);
}

void Verdicts::on_decision(const DecisionRecord& record, Timestamp now) {
  if (!enabled_) {
    if (hooks_.accepted && !record.applies) hooks_.accepted(record, now);
    return;
  }
  const std::string& node = record.position.node;
  std::lock_guard lock(mutex_);
  if (record.applies) {
    const Key original{node, *record.applies};
    auto it = entries_.find(original);
    if (it == entries_.end()) return;  // not judged here (another instance, or evicted)
    DecisionEntry e = it->second;
    e.applied = record;
    ++counters_.applied;
    keep(original, std::move(e));
    log("info", "override_applied", "node=" + node + " decision=" + *record.applies);
    return;
  }
  const auto placed = hooks_.placement_of(node);
  if (!placed) {
    auto& w = waiting_[node];
    if (w.size() >= kMaxWaiting) {
      ++counters_.dropped;
      log("warning", "verdict_dropped", "node=" + node + " decision=" + record.decision_id +
                                            " reason=\"" + std::to_string(kMaxWaiting) + " decisions already wait for its birth\"");
      return;
    }
    w.push_back(record);
    ++counters_.waiting;
    return;
  }
  DecisionEntry e;
  e.site = placed->second;
  e.record = record;
  judge_and_send(e, placed->first, now);
  keep({node, record.decision_id}, std::move(e));
}

void Verdicts::on_birth(const std::string& node, Timestamp now) {
  std::lock_guard lock(mutex_);
  auto w = waiting_.find(node);
  if (w == waiting_.end()) return;
  const auto placed = hooks_.placement_of(node);
  if (!placed) return;
  std::vector<DecisionRecord> records = std::move(w->second);
  waiting_.erase(w);
  counters_.waiting -= records.size();
  for (DecisionRecord& r : records) {
    DecisionEntry e;
    e.site = placed->second;
    e.record = std::move(r);
    judge_and_send(e, placed->first, now);
    const Key key{node, e.record.decision_id};
    keep(key, std::move(e));
  }
}

std::vector<DecisionEntry> Verdicts::list(std::size_t limit, const std::function<bool(const DecisionEntry&)>& keep_entry) const {
  std::lock_guard lock(mutex_);
  std::vector<DecisionEntry> out;
  for (auto it = order_.rbegin(); it != order_.rend() && out.size() < limit; ++it) {
    const DecisionEntry& e = entries_.at(*it);
    if (keep_entry(e)) out.push_back(e);
  }
  return out;
}

VerdictCounters Verdicts::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

}  // namespace nova::cloud
