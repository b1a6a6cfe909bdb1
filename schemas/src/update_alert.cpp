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
  if (m.rfind(kRolledBackPrefix, 0) == 0 &&
      m.compare(kRolledBackPrefix.size() + kShaDigits, kRolledBackMiddle.size(), kRolledBackMiddle) == 0) {
    return UpdateOutcome{UpdateOutcome::Kind::rolled_back, m.substr(kRolledBackPrefix.size(), kShaDigits),
                         m.substr(kRolledBackPrefix.size() + kShaDigits + kRolledBackMiddle.size())};
  }
  // The version may hold anything but the sha256 and what follows it are fixed: search from the end.
  const std::size_t middle = m.rfind(kRefusedMiddle);
  if (m.rfind("update to ", 0) == 0 && middle != std::string::npos && middle >= kShaDigits + kRefusedSha.size() &&
      m.compare(middle - kShaDigits - kRefusedSha.size(), kRefusedSha.size(), kRefusedSha) == 0) {
    return UpdateOutcome{UpdateOutcome::Kind::refused, m.substr(middle - kShaDigits, kShaDigits),
                         m.substr(middle + kRefusedMiddle.size())};
  }
  return std::nullopt;
}

}  // namespace nova::schemas
