#include "nova/tiers/residency.h"

#include <vector>

namespace nova::tiers {
namespace {

using schemas::Error;

Error level_error(std::size_t level, std::string_view name, const std::string& reason) {
  return Error{"", "level " + std::to_string(level) + " (" + std::string(name) + "): " + reason};
}

}  // namespace

std::string resident_topic(const topics::Id& region, const topics::Id& node, topics::UpKind kind) {
  return std::string(kResidentPrefix) + "/" + region.str() + "/" + node.str() + "/" + std::string(topics::to_string(kind));
}

std::string resident_filter(std::string_view region) {
  return std::string(kResidentPrefix) + "/" + std::string(region) + "/#";
}

schemas::Result<ResidentTopic> parse_resident_topic(std::string_view topic) {
  if (topic.size() > topics::kMaxTopicBytes) return Error{"", "topic is longer than 1024 bytes"};
  if (!topic.starts_with(kResidentPrefix) || topic.size() == kResidentPrefix.size() ||
      topic[kResidentPrefix.size()] != '/') {
    return Error{"", "not a resident topic (" + std::string(kResidentPrefix) + "/<region>/<node>/<kind>)"};
  }
  std::vector<std::string_view> levels;
  std::string_view rest = topic.substr(kResidentPrefix.size() + 1);
  for (std::size_t slash; (slash = rest.find('/')) != std::string_view::npos; rest.remove_prefix(slash + 1)) {
    levels.push_back(rest.substr(0, slash));
  }
  levels.push_back(rest);
  if (levels.size() != 3) {
    return Error{"", "expected " + std::string(kResidentPrefix) + "/<region>/<node>/<kind>, got " +
                         std::to_string(levels.size()) + " levels after the prefix"};
  }
  auto region = topics::Id::parse(levels[0]);
  if (!region) return level_error(4, "region", region.error().reason);
  auto node = topics::Id::parse(levels[1]);
  if (!node) return level_error(5, "node", node.error().reason);
  if (levels[2] != topics::to_string(topics::UpKind::metrics)) {
    return level_error(6, "kind", "'" + std::string(levels[2]) + "' is not a resident kind (only metrics)");
  }
  return ResidentTopic{std::move(region).value(), std::move(node).value(), topics::UpKind::metrics};
}

}  // namespace nova::tiers
