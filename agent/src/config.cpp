// AgentConfig: the key table and everything driven by it (YAML, remote apply, docs).
//
// Each key is one row of table(): its name is the C++ member path spelt as text (the
// NOVA_KEY macro writes both from one token sequence, so they cannot differ), its type
// and range, and when it applies. Reading, validating, printing and documenting are
// per type, never per key; the only per-key code is the short list of rules that
// involve two keys (cross_check).
#include "nova/agent/config.h"

#include <sys/utsname.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <type_traits>
#include <variant>

#include "nova/agent/cache_origin.h"
#include "nova/agent/pipelines.h"
#include "nova/agent/sensors.h"
#include "nova/schemas/topic.h"

namespace nova::agent {
namespace {

using schemas::Error;
using schemas::Result;

// --- the table -------------------------------------------------------------------------

// What a string (or each item of a list) must be.
enum class Check { none, id, site_path, uri, absolute_path, absolute_path_or_empty, personal_item, http_url, stream_rule, pipelines };

constexpr std::string_view accepts_text(Check c) {
  switch (c) {
    case Check::none:
      return "";
    case Check::id:
      return "an id: 1..64 of [A-Za-z0-9_.-], not starting with '.' or '-'";
    case Check::site_path:
      return "a site path: ids joined by '/', root first";
    case Check::uri:
      return "tcp://, mqtt:// or ws:// (plaintext); mqtts://, ssl:// or wss:// (TLS) host[:port]";
    case Check::absolute_path:
      return "an absolute path";
    case Check::absolute_path_or_empty:
      return "empty (the default), or an absolute path";
    case Check::personal_item:
      return "a sensor id (every value personal) or <sensor id>/<value name>";
    case Check::http_url:
      return "empty, or http://host[:port][/path]";
    case Check::stream_rule:
      return "a rule: <gauge pattern> <kind: zscore, mad or seasonal> [threshold=<number>] "
             "[min_samples=<n>] [window=<n>] [season=<n>] [persist=<k>/<n>]";
    case Check::pipelines:
      return "a list of pipelines (docs/agent.md, Pipelines); remotely, that list as a JSON or YAML flow string";
  }
  return "";
}

using FieldRef =
    std::variant<std::string*, std::vector<std::string>*, std::uint8_t*, std::uint32_t*,
                 std::uint64_t*, std::optional<std::uint32_t>*, LogLevel*, LogFormat*,
                 schemas::BatchEncoding*, bool*, Insecure*>;

struct KeyDef {
  ConfigKey key;
  std::string_view file_only_reason;
  Check check = Check::none;
  FieldRef (*field)(AgentConfig&) = nullptr;
};

struct Spec {
  KeyType type;
  std::int64_t min = 0, max = 0;
  std::span<const std::string_view> choices;
  Check check = Check::none;
};

Spec integer(std::int64_t min, std::int64_t max) {
  return {KeyType::integer, min, max, {}, Check::none};
}
Spec size(std::int64_t min, std::int64_t max) {
  return {KeyType::size, min, max, {}, Check::none};
}
Spec text(Check check) {
  return {KeyType::string, 0, 0, {}, check};
}
Spec list(Check check) {
  return {KeyType::string_list, 0, 0, {}, check};
}
Spec choice(std::span<const std::string_view> choices) {
  return {KeyType::choice, 0, 0, choices, Check::none};
}

struct Flags {
  bool required = false;
  bool remote = true;
  std::string_view default_note;
  std::string_view file_only_reason;  // remote == false: why, for the refusal
};

// The node's identity: required, and fixed for the node's life (downward messages are
// addressed by it), so only the file sets it.
Flags identity() {
  return Flags{true, false, "required",
               "identity keys cannot be changed remotely (the node is addressed by them); "
               "edit the agent's file and restart"};
}
// What tasks may run and as whom: a message that could change it could run anything,
// so only the agent's local file sets it (issue 10).
Flags task_policy() {
  return Flags{false, false, "",
               "only the agent's file sets what tasks may run and as whom; a remote config "
               "cannot change it"};
}
// Local trust: only the file sets it, so a message from the broker can never repoint
// the agent's trust or identity.
Flags local_only() {
  return Flags{false, false, "",
               "TLS trust and identity keys cannot be changed remotely (a message must never "
               "choose whom the agent trusts); edit the agent's file and restart"};
}
// Never set by a remote config: what decides whom the agent trusts.
Flags file_only() {
  return Flags{false, false, "",
               "trust keys cannot be changed remotely (a message must never choose whom the agent "
               "trusts); edit the agent's file and restart"};
}
// What is personal data: a remote config must not be able to send it upward raw.
Flags privacy_policy() {
  return Flags{false, false, "",
               "only the agent's file says which sensor data is personal; a remote config cannot "
               "change it"};
}
// What tasks read and whom they can reach: a message that could repoint the origin could
// feed every task its own values.
Flags cache_access(std::string_view default_note) {
  return Flags{false, false, default_note,
               "only the agent's file sets the cache's origin, folder and socket; a remote "
               "config cannot change them"};
}
// A default that depends on something else, described in words.
Flags computed(std::string_view note) {
  return Flags{false, true, note, ""};
}

KeyDef def(std::string_view name, FieldRef (*field)(AgentConfig&), Spec spec, Reload reload,
           std::string_view description, Flags flags = {}) {
  ConfigKey k;
  k.name = name;
  k.type = spec.type;
  k.min = spec.min;
  k.max = spec.max;
  k.choices = spec.choices;
  k.required = flags.required;
  k.remote = flags.remote;
  k.reload = reload;
  k.default_note = flags.default_note;
  k.accepts = accepts_text(spec.check);
  k.description = description;
  return KeyDef{k, flags.file_only_reason, spec.check, field};
}

// The name and the member it names, from one spelling.
// clang-format off
#define NOVA_KEY(path) #path, [](AgentConfig& c) -> FieldRef { return &c.path; }
// clang-format on

constexpr auto kLogLevels = common::kLogLevelNames;
constexpr auto kLogFormats = common::kLogFormatNames;
// In the order of schemas::BatchEncoding.
constexpr std::array<std::string_view, 3> kBatchEncodings{"plain", "zstd", "qdelta"};
// A yes/no key is a choice, in the order of bool.
constexpr std::array<std::string_view, 2> kBooleans{"false", "true"};
// In the order of Insecure.
constexpr std::array<std::string_view, 2> kSwitch{"false", "true"};

template <class E>
constexpr std::span<const std::string_view> names_of() {
  if constexpr (std::is_same_v<E, LogLevel>)
    return kLogLevels;
  else if constexpr (std::is_same_v<E, schemas::BatchEncoding>)
    return kBatchEncodings;
  else if constexpr (std::is_same_v<E, bool>)
    return kBooleans;
  else if constexpr (std::is_same_v<E, Insecure>)
    return kSwitch;
  else
    return kLogFormats;
}

constexpr std::int64_t kKiB = 1024;
constexpr std::int64_t kMiB = 1024 * kKiB;
constexpr std::int64_t kGiB = 1024 * kMiB;

const std::vector<KeyDef>& table() {
  static const std::vector<KeyDef> keys{
      def(NOVA_KEY(node.id), text(Check::id), Reload::restart,
          "This node's id: its MQTT client id and the node level of its topics.", identity()),
      def(NOVA_KEY(node.site), text(Check::site_path), Reload::restart,
          "Path of the site whose broker this node uses; downward messages to the node are "
          "addressed by it.",
          identity()),
      def(NOVA_KEY(node.level), integer(1, 5), Reload::restart,
          "The node's tier (1 cloud .. 5 device); not above its site's depth. Published in "
          "the birth record."),
      def(NOVA_KEY(node.arch), text(Check::id), Reload::restart,
          "Architecture published in the birth record, for placement.",
          computed("the machine's `uname -m`")),
      def(NOVA_KEY(node.capabilities), list(Check::id), Reload::restart,
          "Capabilities published in the birth record, for placement (e.g. gpu, arm64)."),

      def(NOVA_KEY(mqtt.uri), text(Check::uri), Reload::restart,
          "The local broker (the site's Mosquitto). A TLS uri needs mqtt.tls_ca_file, "
          "mqtt.tls_cert_file and mqtt.tls_key_file; a plaintext one is logged as "
          "plaintext_uplink at every start."),
      def(NOVA_KEY(mqtt.keepalive_s), integer(2, 65535), Reload::restart,
          "MQTT keepalive; the broker publishes the node's will (dead) once more than 1.5 times "
          "this has passed without a packet from it. Mosquitto 2.0.11 checks every 6 s, so at 2 "
          "a node that vanishes without closing its connection is dead within 10 s. Each idle "
          "interval costs a PINGREQ and a PINGRESP (docs/agent.md, Liveness).",
          computed("2, at every level")),
      def(NOVA_KEY(mqtt.reconnect_min_ms), integer(100, 60000), Reload::hot,
          "First reconnect delay; doubles per failed attempt, with jitter."),
      def(NOVA_KEY(mqtt.reconnect_max_ms), integer(1000, 3600000), Reload::hot,
          "Longest reconnect delay."),
      def(NOVA_KEY(mqtt.tls_ca_file), text(Check::absolute_path), Reload::restart,
          "PEM CA certificates (the chain) the broker's certificate must verify against; "
          "only these are trusted. TLS uri only.",
          local_only()),
      def(NOVA_KEY(mqtt.tls_cert_file), text(Check::absolute_path), Reload::restart,
          "PEM certificate (CN = node.id) presented to the broker. Read again at every "
          "connect: a rotated file is used from the next reconnect, or at once after SIGHUP.",
          local_only()),
      def(NOVA_KEY(mqtt.tls_key_file), text(Check::absolute_path), Reload::restart,
          "PEM private key of mqtt.tls_cert_file; must match it (checked at load).", local_only()),
      def(NOVA_KEY(mqtt.tls_insecure_skip_verify), choice(kBooleans), Reload::restart,
          "true: the broker's certificate and name are NOT verified (anyone on the path can "
          "pose as the broker); logged as a warning at every start. For lab use only.",
          local_only()),

      def(NOVA_KEY(metrics.interval_ms), integer(100, 60000), Reload::hot,
          "Sampling interval of the host metrics."),
      def(NOVA_KEY(metrics.batch_interval_s), integer(1, 3600), Reload::hot,
          "Samples are batched for this long into one outbox record (at most 4096 samples); "
          "each batch's ack is also a round-trip sample (agent.rtt_ms)."),
      def(NOVA_KEY(metrics.data_path), text(Check::absolute_path), Reload::hot,
          "disk_pct reports the filesystem holding this path."),
      def(NOVA_KEY(metrics.encoding), choice(kBatchEncodings), Reload::hot,
          "How batches are stored and sent: qdelta (each value rounded to its precision, "
          "columns of deltas, zstd; the smallest), zstd (exact values, zstd) or plain "
          "(exact values, uncompressed CBOR)."),

      def(NOVA_KEY(outbox.dir), text(Check::absolute_path), Reload::restart,
          "LevelDB directory of the durable outbox."),
      def(NOVA_KEY(outbox.max_bytes), size(kMiB, 64 * kGiB), Reload::restart,
          "Disk cap of the outbox; beyond it the oldest metrics are evicted first."),

      def(NOVA_KEY(drain.rate_per_s), integer(1, 100000), Reload::hot,
          "Messages per second sent from the outbox after a reconnect (token bucket rate)."),
      def(NOVA_KEY(drain.burst), integer(1, 100000), Reload::hot,
          "Token bucket size: messages sent at once before the rate applies."),
      def(NOVA_KEY(drain.jitter_ms), integer(0, 600000), Reload::hot,
          "Random delay, 0 up to this, before the drain starts, so agents that reconnect "
          "together spread out."),
      def(NOVA_KEY(drain.resend_after_s), integer(1, 3600), Reload::hot,
          "A stream whose end-to-end acks stop advancing for this long while it has records "
          "outstanding is sent again from its acknowledged seq (go-back-N); the wait doubles "
          "after each resend that brings no progress, up to 16 times this. From the first such "
          "resend until an ack advances, decisions are marked offline (docs/agent.md, Offline "
          "decisions)."),

      def(NOVA_KEY(limits.max_cpu_pct), integer(1, 100), Reload::hot,
          "A task is deferred while host CPU use is above this."),
      def(NOVA_KEY(limits.max_memory_pct), integer(1, 100), Reload::hot,
          "A task is deferred while memory use is above this."),
      def(NOVA_KEY(limits.max_disk_pct), integer(1, 100), Reload::hot,
          "A task is deferred while the data filesystem is fuller than this."),
      def(NOVA_KEY(limits.min_free_memory_mb), integer(0, 16 * 1024 * 1024), Reload::hot,
          "A task is deferred while less memory than this is available; a task whose "
          "memory limit exceeds what this leaves is refused. Lower it on small devices."),
      def(NOVA_KEY(limits.cache_size_mb), integer(0, 1024 * 1024), Reload::restart,
          "Byte budget of the task cache (keys plus values, MiB; docs/agent.md, Cache): least "
          "recently used entries are evicted to stay within it. 0 turns the cache and its "
          "socket off."),

      def(NOVA_KEY(cache.dir), text(Check::absolute_path_or_empty), Reload::restart,
          "LevelDB directory of the task cache.", cache_access("`cache` beside outbox.dir (in its parent)")),
      def(NOVA_KEY(cache.socket), text(Check::absolute_path_or_empty), Reload::restart,
          "Unix socket of the task cache (mode 0600, owned by the user tasks run as; at most "
          "107 bytes); every task gets its path as NOVA_CACHE_SOCKET.",
          cache_access("`cache.sock` beside outbox.dir (in its parent)")),
      def(NOVA_KEY(cache.origin), text(Check::http_url), Reload::restart,
          "Where a miss is fetched from (read-through) and what prefetch fetches: key k is GET "
          "<origin>/<k>. Empty: a miss is answered MISS, the task fetches and PUTs the value, "
          "and nothing is prefetched.",
          cache_access("")),
      def(NOVA_KEY(cache.prefetch), choice(kBooleans), Reload::restart,
          "After each GET, fetch from cache.origin the keys the predictor (stride and "
          "successor) expects next."),
      def(NOVA_KEY(cache.prefetch_depth), integer(1, 64), Reload::restart,
          "Keys predicted, and at most fetched, after each GET."),
      def(NOVA_KEY(cache.max_entries), integer(1, 10 * 1000 * 1000), Reload::restart,
          "Entries the cache holds at most (its in-memory index costs about 120 bytes per "
          "entry, more for keys over 15 bytes); least recently used ones are evicted beyond it."),

      def(NOVA_KEY(tasks.dir), text(Check::absolute_path), Reload::restart,
          "Where queued tasks are persisted and run."),
      def(NOVA_KEY(tasks.max_concurrent), integer(1, 64), Reload::hot, "Tasks running at once."),
      def(NOVA_KEY(tasks.output_tail_bytes), size(0, 4096), Reload::hot,
          "Bytes of a task's stdout+stderr tail kept in its result (the schema allows 4096)."),
      def(NOVA_KEY(tasks.allow), list(Check::absolute_path), Reload::restart,
          "Programs a task may run. A task's argv[0] must resolve (symlinks and .. "
          "followed) to one of them, or be the bare file name of one; empty refuses every "
          "task.",
          task_policy()),
      def(NOVA_KEY(tasks.user), text(Check::none), Reload::restart,
          "The user tasks run as when the agent runs as root; an agent that is not root "
          "runs tasks as itself.",
          task_policy()),
      def(NOVA_KEY(tasks.allow_root), choice(kBooleans), Reload::restart,
          "Whether tasks.user may be root (uid 0); false refuses to start with such a user.",
          task_policy()),

      def(NOVA_KEY(alerts.cpu_pct_warning), integer(0, 100), Reload::hot,
          "A warning alert (and decision) is raised when host CPU use reaches this; 0 = off."),
      def(NOVA_KEY(alerts.cpu_pct_critical), integer(0, 100), Reload::hot,
          "A critical alert is raised when host CPU use reaches this; 0 = off."),
      def(NOVA_KEY(alerts.mem_pct_warning), integer(0, 100), Reload::hot,
          "A warning alert is raised when memory use reaches this; 0 = off."),
      def(NOVA_KEY(alerts.mem_pct_critical), integer(0, 100), Reload::hot,
          "A critical alert is raised when memory use reaches this; 0 = off."),
      def(NOVA_KEY(alerts.disk_pct_warning), integer(0, 100), Reload::hot,
          "A warning alert is raised when the data filesystem is this full; 0 = off."),
      def(NOVA_KEY(alerts.disk_pct_critical), integer(0, 100), Reload::hot,
          "A critical alert is raised when the data filesystem is this full; 0 = off."),
      def(NOVA_KEY(alerts.temp_c_warning), integer(0, 250), Reload::hot,
          "A warning alert is raised when the hottest thermal zone reaches this, degC; 0 = off."),
      def(NOVA_KEY(alerts.temp_c_critical), integer(0, 250), Reload::hot,
          "A critical alert is raised when the hottest thermal zone reaches this, degC; 0 = off."),
      def(NOVA_KEY(alerts.repeat_s), integer(1, 86400), Reload::hot,
          "An alert condition that lasts is raised again at most this often (by sample time); "
          "it ends 5% below its level."),

      def(NOVA_KEY(anomaly.zscore), integer(0, 100), Reload::hot,
          "A gauge value this many standard deviations (robust ones for mad and seasonal) "
          "from its baseline is an anomaly (warning alert and decision), for each "
          "anomaly.streams rule that sets no threshold; 0 = off. A retained zscore model "
          "overrides it for z-score detectors."),
      def(NOVA_KEY(anomaly.min_samples), integer(2, 1000000), Reload::hot,
          "Values a gauge must have had before any of its values is judged (rules that set "
          "no min_samples)."),
      def(NOVA_KEY(anomaly.window), integer(1, 1000000), Reload::hot,
          "Memory of each gauge's baseline, in samples (rules that set no window): zscore "
          "weights exponentially after the first this many; mad and seasonal keep the last "
          "this many (at most 100000)."),
      def(NOVA_KEY(anomaly.streams), list(Check::stream_rule), Reload::hot,
          "Which anomaly detector watches which gauges: the first rule whose pattern ('*' "
          "matches any run of characters) matches a gauge's name; a gauge no rule matches "
          "is not watched (its threshold alerts, alerts.*, still apply). zscore: distance "
          "from a running mean; mad: robust, from the median of the last window values; "
          "seasonal: from the median of the same phase of the last seasons, season = "
          "period in samples; persist=k/n raises only when k of the last n values were "
          "anomalous (docs/agent.md, Local decisions). An empty list watches "
          "every gauge with a z-score detector. Default: sensor readings only, robust, at "
          "6 (docs/agent.md says why)."),

      def(NOVA_KEY(pipelines), text(Check::pipelines), Reload::hot,
          "Stream pipelines over sensor readings, host gauges and other pipelines: filters, "
          "a window, an anomaly detector, outputs and rules that act (docs/agent.md, "
          "Pipelines). A change restarts every pipeline's windows, baselines and rule states."),

      def(NOVA_KEY(trust.signing_keys), list(Check::absolute_path), Reload::restart,
          "Ed25519 public key files (PEM, from `nova-pki signing-key`) whose signatures the "
          "agent accepts on control messages (tasks, configs, models, acks, verdicts, update "
          "offers). List "
          "the new key next to the old one while a key is rotated. Required unless "
          "trust.insecure_unsigned is true.",
          file_only()),
      def(NOVA_KEY(trust.insecure_unsigned), choice(kSwitch), Reload::restart,
          "true accepts unsigned control messages (for a nova-cloud that does not sign); "
          "the agent logs a warning at start. Signed ones are still checked.",
          file_only()),
      def(NOVA_KEY(trust.clock_skew_s), integer(0, 86400), Reload::restart,
          "How far the signer's and the node's clocks may disagree: a control message is "
          "accepted this long before its issue time and after its expiry.",
          file_only()),

      def(NOVA_KEY(storage.key_file), text(Check::absolute_path), Reload::restart,
          "Storage key (64 hex digits, written by device provisioning; refused if group or "
          "others may read it): the outbox, task store and inbox are sealed with "
          "AES-256-GCM. Empty: they are stored in plaintext, logged as storage_plaintext at "
          "every start. A plaintext store is sealed at the first start with a key (one way).",
          file_only()),

      def(NOVA_KEY(residency.region), text(Check::id), Reload::restart,
          "The region of this node's site in the topology (nova-bridge renders the resident "
          "rules from the same file). Resident records go to nova/v1/resident/<region>/<node>/...; "
          "the broker's ACL grants the node its site's region only.",
          file_only()),
      def(NOVA_KEY(residency.streams), list(Check::id), Reload::restart,
          "Streams whose raw records never leave the region: metrics (the metrics batches, "
          "stored and acknowledged by the regional nova-cloud). The cloud gets one aggregate "
          "sample per batch instead, on the normal metrics topic (stream aggregates). Needs "
          "residency.region.",
          file_only()),
      def(NOVA_KEY(privacy.personal), list(Check::personal_item), Reload::restart,
          "Sensor values that are personal data: a sensor id marks every value of that "
          "sensor, <sensor>/<value> one value. Their readings never go upward as read: "
          "each window of privacy.window_s sends the count, mean, min and max of a "
          "personal value instead (docs/agent.md, Personal data).",
          privacy_policy()),
      def(NOVA_KEY(privacy.window_s), integer(1, 86400), Reload::restart,
          "The window of each personal value's aggregate, in seconds.", privacy_policy()),
      def(NOVA_KEY(privacy.min_readings), integer(1, 1000000), Reload::restart,
          "A window with fewer readings of a personal value sends only their count (the mean "
          "of one reading is that reading).",
          privacy_policy()),

      def(NOVA_KEY(update.dir), text(Check::absolute_path), Reload::restart,
          "Installation folder of over-the-air updates, as laid out by nova-agent-launch "
          "(versions/, current, pending); empty refuses every update offer.",
          file_only()),

      def(NOVA_KEY(log.level), choice(kLogLevels), Reload::hot,
          "Least severe level logged; lines below it are not written."),
      def(NOVA_KEY(log.format), choice(kLogFormats), Reload::hot,
          "logfmt (key=value) or json (one JSON object per line, for log shippers), on stderr."),
  };
  return keys;
}

#undef NOVA_KEY

const KeyDef* find_def(std::string_view name) {
  for (const KeyDef& d : table()) {
    if (d.key.name == name) return &d;
  }
  return nullptr;
}

FieldRef field_of(AgentConfig& c, const KeyDef& d) {
  return d.field(c);
}
FieldRef field_of(const AgentConfig& c, const KeyDef& d) {
  // Reading only: the accessors are written for the mutable case once.
  return d.field(const_cast<AgentConfig&>(c));
}

// --- values ----------------------------------------------------------------------------

// A value read from YAML or from the remote message, already of the key's type.
using Value = std::variant<std::int64_t, std::string, std::vector<std::string>>;

// Either a value or why not (the caller adds where).
template <class T>
using Parsed = std::variant<T, std::string>;

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

std::optional<std::int64_t> parse_int(std::string_view s) {
  std::int64_t v = 0;
  const char* end = s.data() + s.size();
  const auto [p, ec] = std::from_chars(s.data(), end, v);
  if (s.empty() || ec != std::errc() || p != end) return std::nullopt;
  return v;
}

constexpr std::array<std::pair<std::string_view, std::int64_t>, 7> kUnits{{
    {"B", 1},
    {"KiB", kKiB},
    {"MiB", kMiB},
    {"GiB", kGiB},
    {"kB", 1000},
    {"MB", 1000 * 1000},
    {"GB", 1000 * 1000 * 1000},
}};

Parsed<Value> parse_size(std::string_view s) {
  const std::string t = trim(s);
  std::size_t digits = 0;
  while (digits < t.size() && t[digits] >= '0' && t[digits] <= '9') ++digits;
  const auto number = parse_int(std::string_view(t).substr(0, digits));
  const std::string unit = trim(std::string_view(t).substr(digits));
  const std::string expected =
      "expected a size: an integer with an optional unit B, KiB, MiB, GiB, kB, MB or GB, got '" +
      std::string(s) + "'";
  if (!number) return expected;
  std::int64_t scale = 1;
  if (!unit.empty()) {
    const auto it = std::find_if(kUnits.begin(), kUnits.end(),
                                 [&unit](const auto& u) { return u.first == unit; });
    if (it == kUnits.end()) return expected;
    scale = it->second;
  }
  if (*number > std::numeric_limits<std::int64_t>::max() / scale) {
    return "value '" + std::string(s) + "' is too large";
  }
  return Value{*number * scale};
}

std::string format_size(std::int64_t v) {
  if (v != 0 && v % kGiB == 0) return std::to_string(v / kGiB) + " GiB";
  if (v != 0 && v % kMiB == 0) return std::to_string(v / kMiB) + " MiB";
  if (v != 0 && v % kKiB == 0) return std::to_string(v / kKiB) + " KiB";
  return std::to_string(v);
}

std::vector<std::string> split_list(std::string_view s) {
  std::vector<std::string> out;
  if (trim(s).empty()) return out;
  for (;;) {
    const std::size_t comma = s.find(',');
    out.push_back(trim(s.substr(0, comma)));
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

std::string_view kind_of(const schemas::ConfigValue& v) {
  switch (v.index()) {
    case 0:
      return "a boolean";
    case 1:
      return "an integer";
    case 2:
      return "a float";
    default:
      return "a string";
  }
}

std::string_view expected_of(KeyType t) {
  switch (t) {
    case KeyType::integer:
      return "an integer";
    case KeyType::size:
      return "a size";
    case KeyType::string:
      return "a string";
    case KeyType::string_list:
      return "a list";
    case KeyType::choice:
      return "a string";
  }
  return "";
}

// The remote message's scalar as a value of the key's type.
Parsed<Value> from_remote(const schemas::ConfigValue& v, const ConfigKey& key) {
  const auto* i = std::get_if<std::int64_t>(&v);
  const auto* s = std::get_if<std::string>(&v);
  switch (key.type) {
    case KeyType::integer:
      if (i != nullptr) return Value{*i};
      break;
    case KeyType::size:
      if (i != nullptr) return Value{*i};
      if (s != nullptr) return parse_size(*s);
      break;
    case KeyType::string:
    case KeyType::choice:
      if (s != nullptr) return Value{*s};
      break;
    case KeyType::string_list:
      if (s != nullptr) return Value{split_list(*s)};
      return std::string("expected a string of comma-separated items, got ") +
             std::string(kind_of(v));
  }
  return "expected " + std::string(expected_of(key.type)) + ", got " + std::string(kind_of(v));
}

// The YAML node as a value of the key's type.
Parsed<Value> from_yaml(const YAML::Node& n, const ConfigKey& key) {
  const bool scalar = n.IsScalar();
  const std::string got = scalar           ? "'" + n.Scalar() + "'"
                          : n.IsSequence() ? "a list"
                          : n.IsMap()      ? "a mapping"
                                           : "nothing";
  switch (key.type) {
    case KeyType::integer: {
      std::int64_t v = 0;
      if (scalar && YAML::convert<std::int64_t>::decode(n, v)) return Value{v};
      return "expected an integer, got " + got;
    }
    case KeyType::size:
      if (scalar) return parse_size(n.Scalar());
      return "expected a size, got " + got;
    case KeyType::string:
    case KeyType::choice:
      if (scalar) return Value{n.Scalar()};
      return "expected a string, got " + got;
    case KeyType::string_list: {
      if (!n.IsSequence()) return "expected a list, got " + got;
      std::vector<std::string> items;
      for (std::size_t k = 0; k < n.size(); ++k) {
        if (!n[k].IsScalar()) return "item " + std::to_string(k) + ": expected a string";
        items.push_back(n[k].Scalar());
      }
      return Value{std::move(items)};
    }
  }
  return std::string("unsupported type");
}

// Why `s` is not acceptable for `check`, if it is not.
std::optional<std::string> check_string(Check check, const std::string& s) {
  switch (check) {
    case Check::none:
      return std::nullopt;
    case Check::id:
      if (auto id = topics::Id::parse(s); !id) return "'" + s + "': " + id.error().reason;
      return std::nullopt;
    case Check::site_path:
      if (auto p = topics::SitePath::parse(s); !p) return "'" + s + "': " + p.error().reason;
      return std::nullopt;
    case Check::absolute_path:
      if (s.empty() || s.front() != '/') return "expected an absolute path, got '" + s + "'";
      return std::nullopt;
    case Check::absolute_path_or_empty:
      if (!s.empty() && s.front() != '/') return "expected an absolute path, got '" + s + "'";
      return std::nullopt;
    case Check::personal_item:
      return personal_item_problem(s);
    case Check::http_url:
      if (s.empty()) return std::nullopt;
      if (auto origin = HttpOrigin::parse(s); !origin) return origin.error().reason;
      return std::nullopt;
    case Check::stream_rule:
      return std::nullopt;  // with the other anomaly.* keys, in cross_check
    case Check::pipelines:
      if (auto specs = parse_pipelines(s); !specs) return specs.error().message();
      return std::nullopt;
    case Check::uri: {
      const std::size_t sep = s.find("://");
      static constexpr std::array<std::string_view, 6> kSchemes{"tcp",   "ssl", "mqtt",
                                                                "mqtts", "ws",  "wss"};
      const std::string bad = "expected a broker URI such as tcp://127.0.0.1:1883, got '" + s + "'";
      if (sep == std::string::npos ||
          std::find(kSchemes.begin(), kSchemes.end(), std::string_view(s).substr(0, sep)) ==
              kSchemes.end()) {
        return bad;
      }
      std::string_view rest = std::string_view(s).substr(sep + 3);
      const std::size_t slash = rest.find('/');
      std::string_view host_port = rest.substr(0, slash);
      if (slash != std::string_view::npos && s.compare(0, 2, "ws") != 0)
        return bad;  // paths: ws only
      // host, [v6]:port or host:port
      std::string_view host = host_port, port;
      if (!host_port.empty() && host_port.front() == '[') {
        const std::size_t close = host_port.find(']');
        if (close == std::string_view::npos) return bad;
        host = host_port.substr(0, close + 1);
        port = host_port.substr(close + 1);
        if (!port.empty() && port.front() != ':') return bad;
        if (!port.empty()) port.remove_prefix(1);
      } else if (const std::size_t colon = host_port.rfind(':'); colon != std::string_view::npos) {
        host = host_port.substr(0, colon);
        port = host_port.substr(colon + 1);
        if (port.empty()) return bad;
      }
      if (host.empty() || host.find_first_of(" \t@") != std::string_view::npos) return bad;
      if (!port.empty()) {
        const auto p = parse_int(port);
        if (!p || *p < 1 || *p > 65535)
          return "port '" + std::string(port) + "' is not in 1..65535";
      }
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::string range_text(const ConfigKey& key) {
  if (key.type == KeyType::size) return format_size(key.min) + ".." + format_size(key.max);
  return std::to_string(key.min) + ".." + std::to_string(key.max);
}

std::string join(std::span<const std::string_view> items, std::string_view sep) {
  std::string out;
  for (const auto& i : items) {
    if (!out.empty()) out += sep;
    out += i;
  }
  return out;
}

// Stores `value` into the key's field of `c`, or says why it is not acceptable.
std::optional<std::string> assign(AgentConfig& c, const KeyDef& d, Value value) {
  const ConfigKey& key = d.key;
  return std::visit(
      [&](auto* field) -> std::optional<std::string> {
        using T = std::remove_pointer_t<decltype(field)>;
        if constexpr (std::is_same_v<T, std::string>) {
          auto& s = std::get<std::string>(value);
          if (auto problem = check_string(d.check, s)) return problem;
          *field = std::move(s);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          auto& items = std::get<std::vector<std::string>>(value);
          for (std::size_t k = 0; k < items.size(); ++k) {
            if (auto problem = check_string(d.check, items[k])) {
              return "item " + std::to_string(k) + ": " + *problem;
            }
          }
          *field = std::move(items);
        } else if constexpr (std::is_same_v<T, LogLevel> || std::is_same_v<T, LogFormat> ||
                             std::is_same_v<T, schemas::BatchEncoding> || std::is_same_v<T, bool> ||
                             std::is_same_v<T, Insecure>) {
          const auto& s = std::get<std::string>(value);
          const auto names = names_of<T>();
          const auto it = std::find(names.begin(), names.end(), s);
          if (it == names.end()) {
            return "'" + s + "' is not one of " + join(names, ", ");
          }
          *field = static_cast<T>(it - names.begin());
        } else {
          const std::int64_t v = std::get<std::int64_t>(value);
          if (v < key.min || v > key.max) {
            const std::string shown =
                key.type == KeyType::size ? format_size(v) : std::to_string(v);
            return "value " + shown + " is out of range " + range_text(key);
          }
          if constexpr (std::is_same_v<T, std::optional<std::uint32_t>>) {
            *field = static_cast<std::uint32_t>(v);
          } else {
            *field = static_cast<T>(v);
          }
        }
        return std::nullopt;
      },
      field_of(c, d));
}

// --- rules between keys ----------------------------------------------------------------

// A broken rule, phrased for the key it is reported on.
struct Violation {
  std::string_view key;
  std::string reason;
};

// Each broken rule once per key it involves, so a remote update can be told about the
// key it changed rather than the one it left alone.
std::vector<Violation> cross_check(const AgentConfig& c) {
  std::vector<Violation> out;
  // TLS: a TLS uri needs a usable identity; TLS keys beside a plaintext uri would make
  // an operator believe the uplink is encrypted when it is not.
  if (const auto tls = c.tls()) {
    if (const auto problem = check_tls_files(*tls)) {
      out.push_back({tls_file_key(problem->file), problem->reason});
    }
  } else {
    const std::string why = "set, but mqtt.uri '" + c.mqtt.uri + "' is plaintext (use mqtts://)";
    if (!c.mqtt.tls_ca_file.empty()) out.push_back({"mqtt.tls_ca_file", why});
    if (!c.mqtt.tls_cert_file.empty()) out.push_back({"mqtt.tls_cert_file", why});
    if (!c.mqtt.tls_key_file.empty()) out.push_back({"mqtt.tls_key_file", why});
    if (c.mqtt.tls_insecure_skip_verify) out.push_back({"mqtt.tls_insecure_skip_verify", why});
  }
  if (c.mqtt.reconnect_min_ms > c.mqtt.reconnect_max_ms) {
    out.push_back({"mqtt.reconnect_min_ms", std::to_string(c.mqtt.reconnect_min_ms) +
                                                " is above mqtt.reconnect_max_ms (" +
                                                std::to_string(c.mqtt.reconnect_max_ms) + ")"});
    out.push_back({"mqtt.reconnect_max_ms", std::to_string(c.mqtt.reconnect_max_ms) +
                                                " is below mqtt.reconnect_min_ms (" +
                                                std::to_string(c.mqtt.reconnect_min_ms) + ")"});
  }
  // A batch must fit the schema's 4096 samples.
  const std::uint64_t per_batch = std::uint64_t{c.metrics.batch_interval_s} * 1000 /
                                  std::max<std::uint32_t>(c.metrics.interval_ms, 1);
  if (per_batch > 4096) {
    const std::string why = "batches of " + std::to_string(c.metrics.batch_interval_s) +
                            " s at metrics.interval_ms " + std::to_string(c.metrics.interval_ms) +
                            " hold " + std::to_string(per_batch) +
                            " samples; a batch holds at most 4096";
    out.push_back({"metrics.batch_interval_s", why});
    out.push_back({"metrics.interval_ms", why});
  }
  // A task may name an allowed program by its bare file name: two with one name would
  // make that name ambiguous.
  for (std::size_t i = 0; i < c.tasks.allow.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      const auto a = std::filesystem::path(c.tasks.allow[j]).filename();
      if (a == std::filesystem::path(c.tasks.allow[i]).filename()) {
        out.push_back({"tasks.allow", "items " + std::to_string(j) + " and " + std::to_string(i) +
                                          " share the name '" + a.string() +
                                          "', by which a task names the program"});
      }
    }
  }
  // Residency: only the metrics stream can be resident, and only with a region to stay in.
  for (const std::string& stream : c.residency.streams) {
    if (stream != kResidentMetricsStream) {
      out.push_back({"residency.streams", "'" + stream + "' cannot be resident (only " +
                                              std::string(kResidentMetricsStream) + ")"});
    }
  }
  if (!c.residency.streams.empty() && c.residency.region.empty()) {
    out.push_back({"residency.region", "required when residency.streams names a stream"});
  }
  // Anomaly rules take their unset fields from the other anomaly.* keys.
  if (auto rules = parse_stream_rules(c.anomaly.streams, c.anomaly_defaults()); !rules) {
    out.push_back({"anomaly.streams", rules.error().message()});
  }
  // A critical level below its warning level would never let the warning be seen.
  const struct {
    std::string_view warning, critical;
    std::uint32_t w, c;
  } levels[] = {
      {"alerts.cpu_pct_warning", "alerts.cpu_pct_critical", c.alerts.cpu_pct_warning, c.alerts.cpu_pct_critical},
      {"alerts.mem_pct_warning", "alerts.mem_pct_critical", c.alerts.mem_pct_warning, c.alerts.mem_pct_critical},
      {"alerts.disk_pct_warning", "alerts.disk_pct_critical", c.alerts.disk_pct_warning,
       c.alerts.disk_pct_critical},
      {"alerts.temp_c_warning", "alerts.temp_c_critical", c.alerts.temp_c_warning, c.alerts.temp_c_critical},
  };
  for (const auto& l : levels) {
    if (l.w != 0 && l.c != 0 && l.w > l.c) {
      out.push_back({l.warning, std::to_string(l.w) + " is above " + std::string(l.critical) + " (" +
                                    std::to_string(l.c) + ")"});
      out.push_back({l.critical, std::to_string(l.c) + " is below " + std::string(l.warning) + " (" +
                                     std::to_string(l.w) + ")"});
    }
  }
  // Levels strictly increase down the tree from the level-1 root, so a site at depth d
  // is on level d or deeper, and a node is never above its site.
  if (auto site = topics::SitePath::parse(c.node.site)) {
    const std::size_t depth = site->sites().size();
    if (c.node.level < depth) {
      const std::string why = "level " + std::to_string(c.node.level) + " is above its site '" +
                              c.node.site + "' (a site at depth " + std::to_string(depth) +
                              " is on level " + std::to_string(depth) + " or deeper)";
      out.push_back({"node.level", why});
      out.push_back({"node.site", why});
    }
  }
  return out;
}

// --- YAML ------------------------------------------------------------------------------

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0u : 1u)});
      diag = up;
    }
  }
  return row[b.size()];
}

// " (did you mean x?)" for the closest candidate within a few edits, else "".
template <class Range>
std::string suggestion(std::string_view wrong, const Range& candidates) {
  std::string_view best;
  // Within a few edits, more for long names ("max_cpu_percent" for "max_cpu_pct").
  std::size_t best_d = std::max<std::size_t>(2, wrong.size() / 5) + 1;
  for (std::string_view c : candidates) {
    // A prefix of the right name ("keepalive" for "keepalive_s") counts as close.
    const bool prefix = wrong.size() >= 4 && c.substr(0, wrong.size()) == wrong;
    const std::size_t d = prefix ? 1 : edit_distance(wrong, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best.empty() ? "" : " (did you mean " + std::string(best) + "?)";
}

std::string_view section_of(std::string_view key) {
  return key.substr(0, key.find('.'));
}

std::vector<std::string_view> key_names() {
  std::vector<std::string_view> out;
  for (const KeyDef& d : table()) out.push_back(d.key.name);
  return out;
}

std::vector<std::string_view> sections() {
  std::vector<std::string_view> out;
  for (const KeyDef& d : table()) {
    const auto s = section_of(d.key.name);
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

// A YAML node as one line of flow YAML ("[]" for nothing), the text a key of its own keeps.
std::string flow_text(const YAML::Node& n) {
  if (n.IsNull()) return "[]";
  if (n.IsScalar()) return n.Scalar();
  YAML::Emitter out;
  out.SetMapFormat(YAML::Flow);
  out.SetSeqFormat(YAML::Flow);
  out << n;
  return out.c_str();
}

struct YamlError {
  Error error;
};

// "line 7: key: reason" where the line is known, else path "key" and the reason.
[[noreturn]] void fail(const YAML::Mark& at, std::string_view key, const std::string& reason) {
  if (at.is_null()) throw YamlError{Error{std::string(key), reason}};
  throw YamlError{
      Error{"", "line " + std::to_string(at.line + 1) + ": " + std::string(key) + ": " + reason}};
}
[[noreturn]] void fail(const YAML::Node& at, std::string_view key, const std::string& reason) {
  fail(at.Mark(), key, reason);
}

AgentConfig read_yaml(std::string_view text) {
  const YAML::Node root = YAML::Load(std::string(text));
  AgentConfig c;
  std::map<std::string_view, YAML::Mark> seen;  // key -> where its value is
  if (!root.IsNull()) {
    if (!root.IsMap()) fail(root, "config", "expected a mapping of sections (node:, mqtt:, ...)");
    const auto all_sections = sections();
    std::vector<std::string> seen_sections;
    for (const auto& sec : root) {
      const std::string name = sec.first.Scalar();
      if (std::find(all_sections.begin(), all_sections.end(), name) == all_sections.end()) {
        fail(sec.first, name, "unknown section" + suggestion(name, all_sections));
      }
      if (std::find(seen_sections.begin(), seen_sections.end(), name) != seen_sections.end()) {
        fail(sec.first, name, "section given twice");
      }
      seen_sections.push_back(name);
      if (const KeyDef* whole = find_def(name)) {  // a key of its own (pipelines:), any YAML below it
        const YAML::Mark at = sec.second.IsNull() ? sec.first.Mark() : sec.second.Mark();
        seen[whole->key.name] = at;
        if (auto problem = assign(c, *whole, Value{flow_text(sec.second)})) fail(at, name, *problem);
        continue;
      }
      if (sec.second.IsNull()) continue;  // every key commented out
      if (!sec.second.IsMap()) fail(sec.second, name, "expected a mapping of keys");
      for (const auto& kv : sec.second) {
        const std::string full = name + "." + kv.first.Scalar();
        const KeyDef* d = find_def(full);
        if (d == nullptr) fail(kv.first, full, "unknown key" + suggestion(full, key_names()));
        if (const auto first = seen.find(d->key.name); first != seen.end()) {
          const YAML::Mark m = first->second;
          fail(kv.first, full,
               m.is_null() ? "given twice"
                           : "given twice (first on line " + std::to_string(m.line + 1) + ")");
        }
        // An empty value's mark is where the parser stopped (the next line): use the key's.
        const YAML::Mark at = kv.second.IsNull() ? kv.first.Mark() : kv.second.Mark();
        seen[d->key.name] = at;
        auto value = from_yaml(kv.second, d->key);
        if (auto* why = std::get_if<std::string>(&value)) fail(at, full, *why);
        if (auto problem = assign(c, *d, std::get<Value>(std::move(value))))
          fail(at, full, *problem);
      }
    }
  }
  for (const KeyDef& d : table()) {
    if (d.key.required && seen.count(d.key.name) == 0) {
      throw YamlError{Error{std::string(d.key.name), "required key is missing"}};
    }
  }
  const auto broken = cross_check(c);
  if (!broken.empty()) {
    const Violation& v = broken.front();
    const auto it = seen.find(v.key);
    if (it != seen.end()) fail(it->second, v.key, v.reason);
    throw YamlError{Error{std::string(v.key), v.reason}};
  }
  return c;
}

}  // namespace

// --- public ----------------------------------------------------------------------------

std::string host_arch() {
  struct utsname u {};
  if (::uname(&u) != 0) return "unknown";
  return u.machine;
}

DetectorParams AgentConfig::anomaly_defaults() const {
  DetectorParams p;
  p.threshold = anomaly.zscore;
  p.min_samples = anomaly.min_samples;
  p.window = anomaly.window;
  return p;
}

std::vector<StreamRule> AgentConfig::anomaly_rules() const {
  auto rules = parse_stream_rules(anomaly.streams, anomaly_defaults());
  return rules ? std::move(rules).value() : std::vector<StreamRule>{};
}

DecisionOptions AgentConfig::decision_options() const {
  const auto level = [](std::uint32_t v) { return static_cast<double>(v); };
  DecisionOptions o;
  o.cpu = {level(alerts.cpu_pct_warning), level(alerts.cpu_pct_critical)};
  o.mem = {level(alerts.mem_pct_warning), level(alerts.mem_pct_critical)};
  o.disk = {level(alerts.disk_pct_warning), level(alerts.disk_pct_critical)};
  o.temp = {level(alerts.temp_c_warning), level(alerts.temp_c_critical)};
  o.repeat = std::chrono::seconds(alerts.repeat_s);
  o.zscore = {level(anomaly.zscore), anomaly.min_samples, anomaly.window};
  o.streams = anomaly_rules();
  return o;
}

std::chrono::seconds AgentConfig::keepalive() const {
  return mqtt.keepalive_s ? std::chrono::seconds(*mqtt.keepalive_s) : kDefaultKeepalive;
}


std::filesystem::path AgentConfig::cache_dir() const {
  return cache.dir.empty() ? std::filesystem::path(outbox.dir).parent_path() / "cache" : std::filesystem::path(cache.dir);
}

std::filesystem::path AgentConfig::cache_socket() const {
  return cache.socket.empty() ? std::filesystem::path(outbox.dir).parent_path() / "cache.sock"
                              : std::filesystem::path(cache.socket);
}

std::optional<TlsFiles> AgentConfig::tls() const {
  if (is_plaintext_uri(mqtt.uri)) return std::nullopt;
  return TlsFiles{mqtt.tls_ca_file, mqtt.tls_cert_file, mqtt.tls_key_file, !mqtt.tls_insecure_skip_verify};
}

std::span<const ConfigKey> config_keys() {
  static const std::vector<ConfigKey> keys = [] {
    std::vector<ConfigKey> out;
    for (const KeyDef& d : table()) out.push_back(d.key);
    return out;
  }();
  return keys;
}

const ConfigKey* find_config_key(std::string_view name) {
  for (const ConfigKey& k : config_keys()) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

std::string format_value(const AgentConfig& config, const ConfigKey& key) {
  const KeyDef* d = find_def(key.name);
  if (d == nullptr) return "";
  return std::visit(
      [&](auto* field) -> std::string {
        using T = std::remove_pointer_t<decltype(field)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return field->empty() ? "\"\"" : *field;
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          std::string out = "[";
          for (const auto& s : *field) out += (out.size() > 1 ? ", " : "") + s;
          return out + "]";
        } else if constexpr (std::is_same_v<T, LogLevel> || std::is_same_v<T, LogFormat> ||
                             std::is_same_v<T, schemas::BatchEncoding> || std::is_same_v<T, bool> ||
                             std::is_same_v<T, Insecure>) {
          return std::string(names_of<T>()[static_cast<std::size_t>(*field)]);
        } else if constexpr (std::is_same_v<T, std::optional<std::uint32_t>>) {
          return *field ? std::to_string(**field) : "unset";
        } else {
          const auto v = static_cast<std::int64_t>(*field);
          return key.type == KeyType::size ? format_size(v) : std::to_string(v);
        }
      },
      field_of(config, *d));
}

Result<AgentConfig> parse_config(std::string_view yaml) {
  try {
    return read_yaml(yaml);
  } catch (const YamlError& e) {
    return e.error;
  } catch (const YAML::Exception& e) {
    const std::string where =
        e.mark.is_null() ? "" : "line " + std::to_string(e.mark.line + 1) + ": ";
    return Error{"", where + "invalid YAML: " + e.msg};
  }
}

Result<AgentConfig> load_config(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return Error{"", "cannot read config file " + path.string()};
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto c = parse_config(buffer.str());
  if (!c) return Error{"", path.string() + ": " + c.error().message()};
  return c;
}

Result<AgentConfig> apply_remote(const AgentConfig& current, const schemas::Config& remote) {
  AgentConfig next = current;
  const auto where = [](std::string_view key) { return "config.values." + std::string(key); };
  for (const auto& [name, raw] : remote.values) {
    const KeyDef* d = find_def(name);
    if (d == nullptr) return Error{where(name), "unknown key" + suggestion(name, key_names())};
    auto value = from_remote(raw, d->key);
    if (!d->key.remote) {
      // Repeating the current value (a cloud that publishes whole configs) is no change;
      // anything else is refused for what the key is, whatever its type.
      const auto* v = std::get_if<Value>(&value);
      const auto* s = v != nullptr ? std::get_if<std::string>(v) : nullptr;
      if (s != nullptr && *s == format_value(current, d->key)) continue;
      return Error{where(name), std::string(d->file_only_reason)};
    }
    if (auto* why = std::get_if<std::string>(&value)) return Error{where(name), *why};
    if (auto problem = assign(next, *d, std::get<Value>(std::move(value)))) {
      return Error{where(name), *problem};
    }
  }
  const auto broken = cross_check(next);
  if (!broken.empty()) {
    // Report the rule on a key this update set, if it set one of them.
    const Violation* pick = &broken.front();
    for (const Violation& v : broken) {
      if (remote.values.count(std::string(v.key)) != 0) {
        pick = &v;
        break;
      }
    }
    return Error{where(pick->key), pick->reason};
  }
  return next;
}

std::vector<const ConfigKey*> changed_keys(const AgentConfig& a, const AgentConfig& b) {
  std::vector<const ConfigKey*> out;
  for (const ConfigKey& k : config_keys()) {
    if (format_value(a, k) != format_value(b, k)) out.push_back(&k);
  }
  return out;
}

std::string describe_changes(const AgentConfig& a, const AgentConfig& b) {
  std::string out;
  for (const ConfigKey* k : changed_keys(a, b)) {
    if (!out.empty()) out += "; ";
    out += std::string(k->name) + ": " + format_value(a, *k) + " -> " + format_value(b, *k);
    if (k->reload == Reload::restart) out += " (restart)";
  }
  return out.empty() ? "no changes" : out;
}

std::string config_reference_markdown() {
  const AgentConfig defaults;
  std::string out =
      "| key | default | accepted | applies | description |\n"
      "|---|---|---|---|---|\n";
  for (const ConfigKey& k : config_keys()) {
    std::string dflt = k.default_note.empty() ? "`" + format_value(defaults, k) + "`"
                                              : std::string(k.default_note);
    std::string accepted;
    switch (k.type) {
      case KeyType::integer:
        accepted = "integer " + range_text(k);
        break;
      case KeyType::size:
        accepted = "size " + range_text(k);
        break;
      case KeyType::string:
        accepted = k.accepts.empty() ? "string" : std::string(k.accepts);
        break;
      case KeyType::string_list:
        accepted = k.accepts.empty() ? "list of strings" : "list, each " + std::string(k.accepts);
        break;
      case KeyType::choice:
        accepted = join(k.choices, ", ");
        break;
    }
    std::string applies = k.reload == Reload::hot ? "hot" : "restart";
    if (!k.remote) applies += ", file only";
    out += "| `" + std::string(k.name) + "` | " + dflt + " | " + accepted + " | " + applies +
           " | " + std::string(k.description) + " |\n";
  }
  return out;
}

}  // namespace nova::agent
