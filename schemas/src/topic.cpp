#include "nova/schemas/topic.h"

#include <array>
#include <cstdio>
#include <optional>

namespace nova::topics {
namespace {

using schemas::Error;

constexpr std::array<std::pair<UpKind, std::string_view>, 7> kUpKinds{{
    {UpKind::state, "state"},
    {UpKind::metrics, "metrics"},
    {UpKind::result, "result"},
    {UpKind::decision, "decision"},
    {UpKind::alert, "alert"},
    {UpKind::link, "link"},
    {UpKind::erasure, "erasure"},
}};
constexpr std::array<std::pair<DownKind, std::string_view>, 8> kDownKinds{{
    {DownKind::task, "task"},
    {DownKind::config, "config"},
    {DownKind::model, "model"},
    {DownKind::ack, "ack"},
    {DownKind::verdict, "verdict"},
    {DownKind::update, "update"},
    {DownKind::cancel, "cancel"},
    {DownKind::erase, "erase"},
}};
constexpr std::array<std::pair<CloudKind, std::string_view>, 4> kCloudKinds{{
    {CloudKind::workload, "workload"},
    {CloudKind::placement, "placement"},
    {CloudKind::cluster, "cluster"},
    {CloudKind::instance, "instance"},
}};

template <class Kind, std::size_t N>
std::string_view name_of(const std::array<std::pair<Kind, std::string_view>, N>& table, Kind k) {
  for (const auto& [kind, name] : table) {
    if (kind == k) return name;
  }
  return "?";
}

template <class Kind, std::size_t N>
std::optional<Kind> kind_of(const std::array<std::pair<Kind, std::string_view>, N>& table,
                            std::string_view name) {
  for (const auto& [kind, n] : table) {
    if (n == name) return kind;
  }
  return std::nullopt;
}

std::string quoted_char(char c) {
  if (c >= 0x21 && c <= 0x7e) return std::string("'") + c + "'";
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", static_cast<unsigned char>(c));
  return buf;
}

bool allowed_in_id(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

std::optional<std::string> id_problem(std::string_view text) {
  if (text.empty()) return "empty id";
  if (text.size() > kMaxIdBytes) {
    return "id of " + std::to_string(text.size()) + " bytes is over the limit of " +
           std::to_string(kMaxIdBytes);
  }
  if (text.front() == '.' || text.front() == '-') {
    return "id must not start with " + quoted_char(text.front());
  }
  for (char c : text) {
    if (!allowed_in_id(c)) return quoted_char(c) + " is not allowed in an id";
  }
  return std::nullopt;
}

std::vector<std::string_view> split_levels(std::string_view topic) {
  std::vector<std::string_view> levels;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = topic.find('/', start);
    levels.push_back(topic.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) return levels;
    start = slash + 1;
  }
}

// Levels are numbered from 1 as an operator counts them in the topic string.
Result<Id> id_at(const std::vector<std::string_view>& levels, std::size_t i, std::string_view what) {
  auto id = Id::parse(levels[i]);
  if (!id) {
    return Error{"", "level " + std::to_string(i + 1) + " (" + std::string(what) + "): " +
                         id.error().reason};
  }
  return id;
}

Error bad_topic(std::string reason) { return Error{"", std::move(reason)}; }

}  // namespace

bool Id::valid(std::string_view text) {
  if (text.empty() || text.size() > kMaxIdBytes || text.front() == '.' || text.front() == '-') {
    return false;
  }
  for (char c : text) {
    if (!allowed_in_id(c)) return false;
  }
  return true;
}

Result<Id> Id::parse(std::string_view text) {
  if (auto problem = id_problem(text)) return Error{"", *problem};
  return Id(std::string(text));
}

Result<SitePath> SitePath::parse(std::string_view text) {
  if (text.empty()) return Error{"", "empty site path"};
  std::vector<Id> sites;
  for (std::string_view level : split_levels(text)) {
    auto id = Id::parse(level);
    if (!id) return Error{"", "site " + std::to_string(sites.size() + 1) + ": " + id.error().reason};
    sites.push_back(std::move(id).value());
  }
  if (sites.size() > kMaxSiteDepth) {
    return Error{"", "site path of " + std::to_string(sites.size()) + " levels is deeper than " +
                         std::to_string(kMaxSiteDepth)};
  }
  return SitePath(std::move(sites));
}

SitePath SitePath::child(Id site) const {
  std::vector<Id> sites = sites_;
  sites.push_back(std::move(site));
  return SitePath(std::move(sites));
}

std::string SitePath::str() const {
  std::string out;
  for (const Id& id : sites_) {
    if (!out.empty()) out += '/';
    out += id.str();
  }
  return out;
}

bool SitePath::within(const SitePath& other) const {
  if (other.sites_.size() > sites_.size()) return false;
  for (std::size_t i = 0; i < other.sites_.size(); ++i) {
    if (!(sites_[i] == other.sites_[i])) return false;
  }
  return true;
}

std::string_view to_string(UpKind kind) { return name_of(kUpKinds, kind); }
std::string_view to_string(DownKind kind) { return name_of(kDownKinds, kind); }
std::string_view to_string(CloudKind kind) { return name_of(kCloudKinds, kind); }

namespace {
std::string join(std::initializer_list<std::string_view> parts) {
  std::string out(kPrefix);
  for (std::string_view p : parts) {
    out += '/';
    out += p;
  }
  return out;
}
}  // namespace

std::string up(const Id& node, UpKind kind) { return join({"up", node.str(), to_string(kind)}); }
std::string up_sensor(const Id& node, const Id& s) {
  return join({"up", node.str(), "sensor", s.str()});
}
std::string down(const SitePath& site, const Id& node, DownKind kind) {
  return join({"down", site.str(), node.str(), to_string(kind)});
}
std::string sensor(const Id& node, const Id& s) { return join({"sensor", node.str(), s.str()}); }
std::string sensor_error(const Id& node, const Id& s) {
  return join({"sensor", node.str(), s.str(), "error"});
}
std::string cloud(CloudKind kind, const Id& id) { return join({"cloud", to_string(kind), id.str()}); }
std::string local(const Id& node, const Id& name) { return join({"local", node.str(), name.str()}); }
std::string bundle_chunk(const Id& sha256, std::uint64_t index) {
  return join({"bundle", sha256.str(), std::to_string(index)});
}

std::string up_all() { return join({"up", "#"}); }
std::string down_subtree(const SitePath& site) { return join({"down", site.str(), "#"}); }
std::string local(const Id& node, LocalKind kind, const Id& name) {
  return join({"local", node.str(), kind == LocalKind::actuator ? "actuator" : "pipeline", name.str()});
}
std::string sensor_all(const Id& node) { return join({"sensor", node.str(), "+"}); }
std::string cloud_all(CloudKind kind) { return join({"cloud", to_string(kind), "+"}); }
std::string bundle_all() { return join({"bundle", "#"}); }
std::string bundle_chunks(const Id& sha256) { return join({"bundle", sha256.str(), "+"}); }
std::string local_all(const Id& node) { return join({"local", node.str(), "#"}); }

Result<Topic> parse(std::string_view topic) {
  if (topic.size() > kMaxTopicBytes) {
    return bad_topic("topic of " + std::to_string(topic.size()) + " bytes is over the limit of " +
                     std::to_string(kMaxTopicBytes));
  }
  const std::vector<std::string_view> levels = split_levels(topic);
  if (levels.size() < 4 || levels[0] != "nova") {
    return bad_topic("not a NovaCron topic (expected nova/v1/...)");
  }
  if (levels[1] != "v1") {
    return bad_topic("unsupported topic version '" + std::string(levels[1]) + "' (expected v1)");
  }
  const std::string_view family = levels[2];
  const std::size_t n = levels.size();

  if (family == "up") {
    auto node = id_at(levels, 3, "node");
    if (!node) return node.error();
    if (n == 5) {
      auto kind = kind_of(kUpKinds, levels[4]);
      if (!kind) return bad_topic("level 5: unknown upward kind '" + std::string(levels[4]) + "'");
      return Topic(UpTopic{std::move(node).value(), *kind});
    }
    if (n == 6 && levels[4] == "sensor") {
      auto s = id_at(levels, 5, "sensor");
      if (!s) return s.error();
      return Topic(UpSensorTopic{std::move(node).value(), std::move(s).value()});
    }
    return bad_topic("upward topic must be nova/v1/up/<node>/<kind> or "
                     "nova/v1/up/<node>/sensor/<sensor>");
  }

  if (family == "down") {
    // nova/v1/down/<site>...<site>/<node>/<kind>: node and kind are read from the end.
    if (n < 6) return bad_topic("downward topic must be nova/v1/down/<site path>/<node>/<kind>");
    auto kind = kind_of(kDownKinds, levels[n - 1]);
    if (!kind) {
      return bad_topic("level " + std::to_string(n) + ": unknown downward kind '" +
                       std::string(levels[n - 1]) + "'");
    }
    auto node = id_at(levels, n - 2, "node");
    if (!node) return node.error();
    std::vector<Id> sites;
    for (std::size_t i = 3; i < n - 2; ++i) {
      auto s = id_at(levels, i, "site");
      if (!s) return s.error();
      sites.push_back(std::move(s).value());
    }
    if (sites.size() > kMaxSiteDepth) {
      return bad_topic("site path deeper than " + std::to_string(kMaxSiteDepth) + " levels");
    }
    std::string path;
    for (const Id& s : sites) path += (path.empty() ? "" : "/") + s.str();
    auto site = SitePath::parse(path);
    if (!site) return site.error();
    return Topic(DownTopic{std::move(site).value(), std::move(node).value(), *kind});
  }

  if (family == "sensor") {
    if (n != 5 && !(n == 6 && levels[5] == "error")) {
      return bad_topic("sensor topic must be nova/v1/sensor/<node>/<sensor>[/error]");
    }
    auto node = id_at(levels, 3, "node");
    if (!node) return node.error();
    auto s = id_at(levels, 4, "sensor");
    if (!s) return s.error();
    return Topic(SensorTopic{std::move(node).value(), std::move(s).value(), n == 6});
  }

  if (family == "cloud") {
    if (n != 5) return bad_topic("cloud topic must be nova/v1/cloud/<kind>/<id>");
    auto kind = kind_of(kCloudKinds, levels[3]);
    if (!kind) return bad_topic("level 4: unknown cloud kind '" + std::string(levels[3]) + "'");
    auto id = id_at(levels, 4, "id");
    if (!id) return id.error();
    return Topic(CloudTopic{*kind, std::move(id).value()});
  }

  return bad_topic("level 3: unknown family '" + std::string(family) +
                   "' (expected up, down, sensor or cloud)");
}

}  // namespace nova::topics
