// Resident data: records that must stay in the region of the node that made them.
//
// A node whose site is in a region (topology.h) publishes the raw records of a stream
// marked resident on
//   nova/v1/resident/<region>/<node>/<kind>
// instead of nova/v1/up/<node>/<kind>. Bridges map nova/v1/resident/<region>/# upward only
// between two sites of that region (nova-bridge renders the line from the topology), so
// the records climb as far as the region's top site and stop there: no rule carries them
// to the cloud or into another region. A nova-cloud instance in the `regional` role at
// the top site stores and acknowledges them; what the cloud sees instead is up to the
// publisher (aggregates on its normal up topics, or nothing).
//
// A node that names a region its site is not in is refused at its own broker: the ACL
// grants a node the resident topics of its site's region only.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "nova/schemas/result.h"
#include "nova/schemas/topic.h"

namespace nova::tiers {

inline constexpr std::string_view kResidentPrefix = "nova/v1/resident";

// v1 carries metrics batches only (the agent's raw measurement stream).
struct ResidentTopic {
  topics::Id region;
  topics::Id node;
  topics::UpKind kind = topics::UpKind::metrics;
};

// nova/v1/resident/<region>/<node>/<kind>
std::string resident_topic(const topics::Id& region, const topics::Id& node, topics::UpKind kind);
// nova/v1/resident/<region>/#, the bridges' and the regional store's filter.
std::string resident_filter(std::string_view region);
// Refuses anything else, naming the level: "level 4 (region): ..." or
// "level 6 (kind): 'result' is not a resident kind (only metrics)".
schemas::Result<ResidentTopic> parse_resident_topic(std::string_view topic);

}  // namespace nova::tiers
