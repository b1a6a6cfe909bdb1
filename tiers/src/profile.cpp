#include "nova/tiers/profile.h"

#include <array>

namespace nova::tiers {
namespace {

using std::chrono::seconds;

constexpr std::uint64_t queue_for(std::uint64_t design_nodes) {
  return design_nodes * kMessagesPerNodePerDay * 5 / 4;
}

constexpr TierProfile make(std::uint8_t level, std::string_view name, double slo,
                           std::string_view resources, seconds keepalive,
                           std::uint64_t design_nodes, seconds restart_base, seconds restart_cap) {
  return TierProfile{level,        name,
                     slo,          resources,
                     keepalive,    design_nodes,
                     queue_for(design_nodes), queue_for(design_nodes) * kDesignMessageBytes,
                     restart_base, restart_cap};
}

// Design subtree sizes: an access site serves 32 nodes, a metro 8 access sites (plus its
// own nodes), a regional 4 metros. The cloud has no parent, so no upward queue; a device
// site is a leaf whose only node is itself.
constexpr std::array<TierProfile, 5> kProfiles{{
    make(1, "cloud", 99.99, "unlimited", seconds(60), 0, seconds(1), seconds(10)),
    make(2, "regional", 99.95, "high", seconds(60), 1056, seconds(1), seconds(15)),
    make(3, "metro", 99.9, "medium", seconds(45), 264, seconds(2), seconds(30)),
    make(4, "access", 99.5, "limited", seconds(30), 32, seconds(2), seconds(30)),
    make(5, "device", 95.0, "minimal", seconds(30), 1, seconds(5), seconds(60)),
}};

}  // namespace

const TierProfile& profile(std::uint8_t level) {
  return kProfiles.at(static_cast<std::size_t>(level - kMinLevel));
}

}  // namespace nova::tiers
