#include "nova/cloud/migration.h"

#include <charconv>

namespace nova::cloud {

void OverloadTracker::Gauge::observe(double value, Timestamp ts, const MigrationPolicy& policy) {
  last = value;
  if (overloaded) {
    if (value <= policy.low_pct) {
      overloaded = false;
      above_since.reset();
    }
    return;  // between the marks an overloaded node stays overloaded
  }
  if (value <= policy.high_pct) {
    above_since.reset();  // the run above the high mark is broken: start over
    return;
  }
  if (!above_since) above_since = ts;
  overloaded = ts - *above_since >= policy.sustain_ms;
}

void OverloadTracker::observe(const schemas::MetricSample& sample, const MigrationPolicy& policy) {
  if (seen_ && sample.ts <= newest_) return;
  seen_ = true;
  newest_ = sample.ts;
  high_pct_ = policy.high_pct;
  cpu_.observe(sample.cpu_pct, sample.ts, policy);
  mem_.observe(sample.mem_pct, sample.ts, policy);
}

std::optional<std::string> OverloadTracker::overloaded() const {
  for (const Gauge* g : {&cpu_, &mem_}) {
    if (!g->overloaded) continue;
    const Timestamp since = g->above_since ? newest_ - *g->above_since : 0;
    return std::string(g->name) + " above " + std::to_string(static_cast<int>(high_pct_)) + " % for " +
           std::to_string(since / 1000) + " s (last sample " + std::to_string(static_cast<int>(g->last)) + " %)";
  }
  return std::nullopt;
}

std::optional<std::string> migration_trigger(const NodeSignals& node) {
  if (node.overloaded) return node.overloaded;
  if (node.throttled) return std::string("thermal throttling");
  if (node.maintenance == tiers::Maintenance::now) return std::string("maintenance window open");
  if (node.maintenance == tiers::Maintenance::soon) return std::string("maintenance window opens within 30 min");
  if (node.liveness_changes_10min >= 3) {
    return "connectivity: " + std::to_string(node.liveness_changes_10min) + " liveness changes in 10 min";
  }
  return std::nullopt;
}

namespace {

// "HH:MM" -> minutes after midnight.
std::optional<int> minutes_of(std::string_view hhmm) {
  if (hhmm.size() != 5 || hhmm[2] != ':') return std::nullopt;
  int h = 0, m = 0;
  if (std::from_chars(hhmm.data(), hhmm.data() + 2, h).ptr != hhmm.data() + 2) return std::nullopt;
  if (std::from_chars(hhmm.data() + 3, hhmm.data() + 5, m).ptr != hhmm.data() + 5) return std::nullopt;
  if (h > 23 || m > 59) return std::nullopt;
  return h * 60 + m;
}

}  // namespace

schemas::Result<tiers::Maintenance> maintenance_at(std::string_view window, Timestamp now) {
  const std::size_t dash = window.find('-');
  const auto start = dash == std::string_view::npos ? std::nullopt : minutes_of(window.substr(0, dash));
  const auto end = dash == std::string_view::npos ? std::nullopt : minutes_of(window.substr(dash + 1));
  if (!start || !end || *start == *end) {
    return schemas::Error{"policies.maintenance_window", "expected \"HH:MM-HH:MM\" (UTC), got \"" + std::string(window) + "\""};
  }
  constexpr int kDay = 24 * 60;
  const int minute = static_cast<int>((now / 60'000) % kDay);
  // Minutes since the window opened, modulo a day; the window is open while that is
  // shorter than its length (this handles windows that wrap midnight).
  const int length = (*end - *start + kDay) % kDay;
  const int since_open = (minute - *start + kDay) % kDay;
  if (since_open < length) return tiers::Maintenance::now;
  const int until_open = (*start - minute + kDay) % kDay;
  return until_open <= 30 ? tiers::Maintenance::soon : tiers::Maintenance::none;
}

MigrationPlan plan_migration(const schemas::WorkloadSpec& spec, const schemas::Placement& current,
                             const schemas::Placement& target, std::string trigger, Timestamp now) {
  MigrationPlan plan;
  plan.from = current.node;
  plan.to = target.node;
  plan.trigger = std::move(trigger);
  plan.score_from = current.score;
  plan.score_to = target.score;
  plan.data_mb = spec.resources.storage_mb;
  plan.sync = plan.data_mb == 0 ? "restart" : "copy-then-switch";
  // 100 Mbit/s = 12.5 MB/s between sites: a deliberate round figure until links are measured.
  plan.estimated_transfer_ms = plan.data_mb * 1000 * 2 / 25;
  plan.rollback = current;
  plan.started_ts = now;
  return plan;
}

}  // namespace nova::cloud
