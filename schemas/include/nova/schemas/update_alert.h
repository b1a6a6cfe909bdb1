// The alerts an agent sends up about an update (docs/agent.md, "Updates"): a warning on
// metric "update" whose message says what became of which bundle. The agent writes them
// and nova-cloud's rollouts read them, so the wording has this one home.
//
//   update to sha256 <sha256> rolled back by the launcher: <reason>
//   update to <version> (sha256 <sha256>) refused: <detail>
#pragma once

#include <optional>
#include <string>

#include "nova/schemas/messages.h"

namespace nova::schemas {

inline constexpr const char* kUpdateAlertMetric = "update";

std::string update_rolled_back_message(const std::string& sha256, const std::string& reason);
std::string update_refused_message(const std::string& version, const std::string& sha256, const std::string& detail);

// What an update alert says: the bundle it is about and why it did not take.
struct UpdateOutcome {
  enum class Kind { rolled_back, refused };
  Kind kind = Kind::rolled_back;
  std::string sha256;
  std::string reason;
};
// Nothing for an alert that is not about an update, or whose message has neither form.
std::optional<UpdateOutcome> parse_update_alert(const Alert& alert);

}  // namespace nova::schemas
