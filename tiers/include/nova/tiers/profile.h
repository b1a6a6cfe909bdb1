// Tier profiles: what each of the five levels of the hierarchy promises and needs.
//
// The uptime SLOs are the customer's (99.99 / 99.95 / 99.9 / 99.5 / 95 %). Queue sizing
// follows docs/broker-hierarchy.md: a site's bridge must hold everything its subtree
// sends upward during a 24 h partition without dropping, so
//   max_queued_messages = design_nodes * kMessagesPerNodePerDay * 5/4 (headroom)
//   max_queued_bytes    = max_queued_messages * kDesignMessageBytes
// where design_nodes is how many nodes the tier's subtree is sized for. Sites larger
// than the design override both in the topology file.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

namespace nova::tiers {

inline constexpr std::uint8_t kMinLevel = 1;
inline constexpr std::uint8_t kMaxLevel = 5;

// Upward messages one node produces per day: a metrics batch every 60 s (1440) plus
// task results, decisions, alerts and state records (budgeted at 560).
inline constexpr std::uint64_t kMessagesPerNodePerDay = 2000;
// Average upward message size budgeted for byte caps (a 60-sample zstd batch is ~1.2 KB).
inline constexpr std::uint64_t kDesignMessageBytes = 2048;

struct TierProfile {
  std::uint8_t level;
  std::string_view name;            // "cloud", "regional", "metro", "access", "device"
  double uptime_slo_pct;            // the tier's availability objective
  std::string_view resource_class;  // "unlimited", "high", "medium", "limited", "minimal"
  std::chrono::seconds keepalive;   // MQTT keepalive of links from this tier upward
  std::uint64_t design_nodes;       // nodes in one site's subtree the sizing assumes
  std::uint64_t max_queued_messages;  // bridge queue toward the parent, per link
  std::uint64_t max_queued_bytes;
  // Bridge reconnect back-off, Mosquitto's two-value restart_timeout (base, cap).
  std::chrono::seconds restart_base;
  std::chrono::seconds restart_cap;
};

// Precondition: kMinLevel <= level <= kMaxLevel.
const TierProfile& profile(std::uint8_t level);

}  // namespace nova::tiers
