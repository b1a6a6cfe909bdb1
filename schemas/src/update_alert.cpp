#include "nova/schemas/update_alert.h"

namespace nova::schemas {

namespace {
constexpr std::string_view kRolledBackPrefix = "update to sha256 ";
constexpr std::string_view kRolledBackMiddle = " rolled back by the launcher: ";
constexpr std::string_view kRefusedSha = " (sha256 ";
constexpr std::string_view kRefusedMiddle = ") refused: ";
constexpr std::size_t kShaDigits = 64;
}  // namespace

std::string update_rolled_back_message(const std::string& sha256, const std::string& reason) {
  return std::string(kRolledBackPrefix) + sha256 + std::string(kRolledBackMiddle) + reason;
}

std::string update_refused_message(const std::string& version, const std::string& sha256, const std::string& detail) {
  return "update to " + version + std::string(kRefusedSha) + sha256 + std::string(kRefusedMiddle) + detail;
}

std::optional<UpdateOutcome> parse_update_alert(const Alert& alert) {
  if (alert.metric != kUpdateAlertMetric) return std::nullopt;
  const std::string& m = alert.message;
  if (m.rfind(kRolledBackPrefix, 0) == 0 && m.size() >= kRolledBackPrefix.size() + kShaDigits &&
      m.compare(kRolledBackPrefix.size() + kShaDigits, kRolledBackMiddle.size(), kRolledBackMiddle) == 0) {
    return UpdateOutcome{UpdateOutcome::Kind::rolled_back, m.substr(kRolledBackPrefix.size(), kShaDigits),
                         m.substr(kRolledBackPrefix.size() + kShaDigits + kRolledBackMiddle.size())};
  }
  // The version may hold anything: the first " (sha256 <64 digits>) refused: " ends it.
  if (m.rfind("update to ", 0) != 0) return std::nullopt;
  for (std::size_t at = m.find(kRefusedSha); at != std::string::npos; at = m.find(kRefusedSha, at + 1)) {
    const std::size_t middle = at + kRefusedSha.size() + kShaDigits;
    if (middle <= m.size() && m.compare(middle, kRefusedMiddle.size(), kRefusedMiddle) == 0) {
      return UpdateOutcome{UpdateOutcome::Kind::refused, m.substr(at + kRefusedSha.size(), kShaDigits),
                           m.substr(middle + kRefusedMiddle.size())};
    }
  }
  return std::nullopt;
}

}  // namespace nova::schemas
