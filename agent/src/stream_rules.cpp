// StreamRule: which detector watches which gauges, as config spells it (decisions.h).
#include <charconv>
#include <cmath>

#include "nova/agent/decisions.h"
#include "nova/agent/glob.h"

namespace nova::agent {

namespace {

using schemas::Error;

std::vector<std::string_view> words(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != '\t') ++j;
    if (j > i) out.push_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

// A pattern is an id in which '*' may stand for any run of id characters.
bool valid_pattern(std::string_view p) {
  if (p.empty() || p.size() > 64) return false;
  for (char c : p) {
    const bool id_char = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                         c == '_' || c == '.' || c == '-';
    if (!id_char && c != '*') return false;
  }
  return true;
}

std::optional<double> number_of(std::string_view s) {
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<std::uint32_t> count_of(std::string_view s) {
  std::uint32_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

bool matches(std::string_view pattern, std::string_view name) { return glob_match(pattern, name); }

schemas::Result<StreamRule> parse_stream_rule(std::string_view text, const DetectorParams& defaults) {
  const std::vector<std::string_view> w = words(text);
  if (w.size() < 2) {
    return Error{"", "expected '<pattern> <kind> [threshold=<number>] [min_samples=<n>] [window=<n>] [season=<n>] "
                     "[persist=<k>/<n>]'"};
  }
  StreamRule r;
  r.match = std::string(w[0]);
  if (!valid_pattern(r.match)) {
    return Error{"match", "'" + r.match + "' is not a gauge name or pattern (1..64 of [A-Za-z0-9_.-*])"};
  }
  r.detector = defaults;
  r.detector.kind = std::string(w[1]);
  // A seasonal rule must say its season; the others have none.
  r.detector.season = 0;
  for (std::size_t i = 2; i < w.size(); ++i) {
    const std::size_t eq = w[i].find('=');
    const std::string field(w[i].substr(0, eq));
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : w[i].substr(eq + 1);
    if (eq == std::string_view::npos) return Error{field, "expected " + field + "=<value>"};
    if (field == "persist") {
      const std::size_t slash = value.find('/');
      // value_or, not *: GCC 12 at -Os (the firmware builds) warns that a disengaged
      // optional may be read, though the check above it returns first.
      const auto k = count_of(value.substr(0, slash));
      const auto n = slash == std::string_view::npos ? std::nullopt : count_of(value.substr(slash + 1));
      const std::uint32_t kv = k.value_or(0), nv = n.value_or(0);
      if (!k || !n || kv < 1 || nv > 64 || kv > nv) {
        return Error{field, "expected <k>/<n> with 1 <= k <= n <= 64, got '" + std::string(value) + "'"};
      }
      r.persist_k = static_cast<std::uint8_t>(kv);
      r.persist_n = static_cast<std::uint8_t>(nv);
      continue;
    }
    if (field == "threshold") {
      const auto v = number_of(value);
      if (!v) return Error{field, "expected a number, got '" + std::string(value) + "'"};
      r.detector.threshold = *v;
      continue;
    }
    std::uint32_t* target = field == "min_samples" ? &r.detector.min_samples
                            : field == "window"    ? &r.detector.window
                            : field == "season"    ? &r.detector.season
                                                   : nullptr;
    if (target == nullptr) return Error{field, "unknown field (threshold, min_samples, window, season, persist)"};
    const auto v = count_of(value);
    if (!v) return Error{field, "expected a whole number, got '" + std::string(value) + "'"};
    *target = *v;
  }
  if (auto checked = check_detector_params(r.detector); !checked) return checked.error();
  return r;
}

schemas::Result<std::vector<StreamRule>> parse_stream_rules(const std::vector<std::string>& lines,
                                                            const DetectorParams& defaults) {
  std::vector<StreamRule> out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    auto r = parse_stream_rule(lines[i], defaults);
    if (!r) return Error{"", "item " + std::to_string(i) + " ('" + lines[i] + "'): " + r.error().message()};
    out.push_back(std::move(r).value());
  }
  return out;
}

}  // namespace nova::agent
