// The MQTT topic grammar of the NovaCron topic API (schemas/topics.md is its prose form).
//
//   nova/v1/up/<node>/<kind>                      upward, bridged toward the cloud only
//   nova/v1/up/<node>/sensor/<sensor>             reserved (sensor data goes up in metrics)
//   nova/v1/down/<site>/.../<site>/<node>/<kind>  downward, addressed by site path
//   nova/v1/sensor/<node>/<sensor>                third-party readings, never bridged
//   nova/v1/sensor/<node>/<sensor>/error          reply when a reading is refused
//   nova/v1/cloud/<kind>/<id>                     cloud-local records, never bridged
//
// Because "up" and "down" never share a prefix, a bridge maps each in one direction
// only and no message can loop. Because a downward topic spells out the target's site
// path, each broker subscribes to exactly its own subtree and a command travels only down
// the branch that holds its target.
//
// Builders take validated Ids and cannot fail; parse() and Id::parse() validate input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "nova/schemas/result.h"

namespace nova::topics {

using schemas::Result;

inline constexpr std::string_view kPrefix = "nova/v1";
inline constexpr std::size_t kMaxIdBytes = 64;
inline constexpr std::size_t kMaxSiteDepth = 8;
inline constexpr std::size_t kMaxTopicBytes = 1024;

// An identifier usable as one topic level: 1..64 bytes of [A-Za-z0-9_.-], not starting
// with '.' or '-'. This excludes MQTT wildcards ('+', '#'), the level separator, '$'
// (broker-reserved topics) and anything that needs escaping in a file name or URL.
class Id {
 public:
  static Result<Id> parse(std::string_view text);
  // The same rules as parse(), without building an Id or an error message.
  static bool valid(std::string_view text);
  const std::string& str() const { return text_; }
  friend bool operator==(const Id&, const Id&) = default;
  friend auto operator<=>(const Id&, const Id&) = default;

 private:
  explicit Id(std::string text) : text_(std::move(text)) {}
  std::string text_;
};

// The ids of the sites from the root (level 1) down to a site, e.g. cloud/eu/par/acc-01.
class SitePath {
 public:
  // Parses "a/b/c"; 1..kMaxSiteDepth valid ids.
  static Result<SitePath> parse(std::string_view text);
  static SitePath root(Id site) { return SitePath({std::move(site)}); }

  SitePath child(Id site) const;
  const std::vector<Id>& sites() const { return sites_; }
  const Id& leaf() const { return sites_.back(); }
  std::string str() const;  // "a/b/c"
  // True when this path equals `other` or lies below it.
  bool within(const SitePath& other) const;
  friend bool operator==(const SitePath&, const SitePath&) = default;

 private:
  explicit SitePath(std::vector<Id> sites) : sites_(std::move(sites)) {}
  std::vector<Id> sites_;
};

enum class UpKind { state, metrics, result, decision, alert, link, erasure };
enum class DownKind { task, config, model, ack, verdict, update, cancel, erase };
// instance: a running nova-cloud's presence (retained "1", cleared by its will).
enum class CloudKind { workload, placement, cluster, instance };

std::string_view to_string(UpKind kind);
std::string_view to_string(DownKind kind);
std::string_view to_string(CloudKind kind);

// --- builders --------------------------------------------------------------------------

std::string up(const Id& node, UpKind kind);
std::string up_sensor(const Id& node, const Id& sensor);
std::string down(const SitePath& site, const Id& node, DownKind kind);
std::string sensor(const Id& node, const Id& sensor);
std::string sensor_error(const Id& node, const Id& sensor);
// nova/v1/local/<node>/actuator/<name> and nova/v1/local/<node>/pipeline/<name>: what a
// node's agent publishes on its own broker for local consumers (actuators, displays);
// never bridged (schemas/topics.md, Local topics).
enum class LocalKind { actuator, pipeline };
std::string local(const Id& node, LocalKind kind, const Id& name);
std::string cloud(CloudKind kind, const Id& id);
// nova/v1/local/<node>/<name>: what a node's agent publishes for consumers on its own
// broker (local actuators), never bridged (schemas/topics.md, Local topics). "alert" is
// the agent's alerts. parse() does not take them: no NovaCron component receives them.
std::string local(const Id& node, const Id& name);
// nova/v1/bundle/<sha256>/<index>: chunk `index` (0, 1, ...) of an update bundle, retained,
// shared by every node of a broker (schemas/topics.md, Updates).
std::string bundle_chunk(const Id& sha256, std::uint64_t index);

// --- subscription filters --------------------------------------------------------------

std::string up_all();                              // nova/v1/up/#
std::string down_subtree(const SitePath& site);    // nova/v1/down/<site path>/#
std::string sensor_all(const Id& node);            // nova/v1/sensor/<node>/+
std::string cloud_all(CloudKind kind);             // nova/v1/cloud/<kind>/+
std::string bundle_all();                          // nova/v1/bundle/#
std::string bundle_chunks(const Id& sha256);       // nova/v1/bundle/<sha256>/+
std::string local_all(const Id& node);             // nova/v1/local/<node>/#

// --- parsing ---------------------------------------------------------------------------

struct UpTopic {
  Id node;
  UpKind kind;
};
struct UpSensorTopic {
  Id node;
  Id sensor;
};
struct DownTopic {
  SitePath site;
  Id node;
  DownKind kind;
};
struct SensorTopic {
  Id node;
  Id sensor;
  bool error_reply = false;
};
struct CloudTopic {
  CloudKind kind;
  Id id;
};

using Topic = std::variant<UpTopic, UpSensorTopic, DownTopic, SensorTopic, CloudTopic>;

// Parses a concrete topic (no wildcards). The error names the offending level, e.g.
// "level 4 (node): '+' is not allowed in an id".
Result<Topic> parse(std::string_view topic);

}  // namespace nova::topics
