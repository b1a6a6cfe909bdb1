// AgentConfig: defaults, the example file, the docs table, every kind of bad input (each
// error names its key), and remote updates.
#include "nova/agent/config.h"
#include "nova/agent/pipelines.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "nova/testing/test_ca.h"

using namespace nova::agent;
using nova::schemas::Config;
using nova::schemas::ConfigValue;

namespace {

const std::string kIdentity =
    "node:\n"
    "  id: gw-1\n"
    "  site: cloud/eu/par/par-a1\n";

AgentConfig parse_ok(const std::string& yaml) {
  auto c = parse_config(yaml);
  INFO((c ? "" : c.error().message()));
  REQUIRE(c.ok());
  return c.value();
}

std::string parse_error(const std::string& yaml) {
  auto c = parse_config(yaml);
  REQUIRE_FALSE(c.ok());
  return c.error().message();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

AgentConfig with_identity(const std::string& id, const std::string& site) {
  AgentConfig c;
  c.node.id = id;
  c.node.site = site;
  return c;
}

Config remote(std::map<std::string, ConfigValue> values) {
  Config c;
  c.revision = 7;
  c.values = std::move(values);
  return c;
}

std::string remote_error(const AgentConfig& current, std::map<std::string, ConfigValue> values) {
  auto r = apply_remote(current, remote(std::move(values)));
  REQUIRE_FALSE(r.ok());
  return r.error().message();
}

}  // namespace

TEST_CASE("defaults are the documented ones", "[config]") {
  const AgentConfig c;
  CHECK(c.node.level == 5);
  CHECK(c.node.arch == host_arch());
  CHECK_FALSE(c.node.arch.empty());
  CHECK(c.mqtt.uri == "tcp://127.0.0.1:1883");
  CHECK_FALSE(c.mqtt.keepalive_s.has_value());
  CHECK(c.keepalive() == std::chrono::seconds(2));
  CHECK(c.mqtt.reconnect_min_ms == 500);
  CHECK(c.mqtt.reconnect_max_ms == 30000);
  CHECK(c.metrics.interval_ms == 1000);
  CHECK(c.metrics.batch_interval_s == 60);
  CHECK(c.metrics.data_path == "/");
  CHECK(c.outbox.dir == "/var/lib/nova-agent/outbox");
  CHECK(c.outbox.max_bytes == 64u * 1024 * 1024);
  CHECK(c.drain.rate_per_s == 50);
  CHECK(c.drain.burst == 100);
  CHECK(c.drain.jitter_ms == 2000);
  // The seed's EdgeAgentConfig.
  CHECK(c.limits.max_cpu_pct == 80);
  CHECK(c.limits.max_memory_pct == 85);
  CHECK(c.limits.max_disk_pct == 90);
  CHECK(c.limits.min_free_memory_mb == 1024);
  CHECK(c.limits.cache_size_mb == 100);
  CHECK(c.tasks.dir == "/var/lib/nova-agent/tasks");
  CHECK(c.tasks.max_concurrent == 2);
  CHECK(c.tasks.output_tail_bytes == 4096);
  CHECK(c.log.level == LogLevel::info);
  CHECK(c.log.format == LogFormat::logfmt);

  // A file with only the identity gives exactly these.
  CHECK(parse_ok(kIdentity) == with_identity("gw-1", "cloud/eu/par/par-a1"));
}

TEST_CASE("every default is inside its key's own range", "[config]") {
  // Re-applying each default through the table must pass its own validation.
  const AgentConfig base = with_identity("gw-1", "cloud/eu/par/par-a1");
  std::map<std::string, ConfigValue> all;
  for (const ConfigKey& k : config_keys()) {
    if (!k.remote) continue;
    const std::string v = format_value(base, k);
    if (k.type == KeyType::integer) {
      if (v == "unset") continue;
      all[std::string(k.name)] = std::int64_t{std::stoll(v)};
    } else if (k.type == KeyType::string_list) {
      all[std::string(k.name)] = v.substr(1, v.size() - 2);  // "[a, b]" -> "a, b"
    } else {
      all[std::string(k.name)] = v;
    }
  }
  auto r = apply_remote(base, remote(all));
  INFO((r ? "" : r.error().message()));
  REQUIRE(r.ok());
  CHECK(r.value() == base);
}

TEST_CASE("the example file loads and holds the defaults", "[config]") {
  const std::string path = NOVA_SOURCE_DIR "/agent/examples/agent.yaml";
  auto c = load_config(path);
  INFO((c ? "" : c.error().message()));
  REQUIRE(c.ok());
  // Defaults everywhere but the trusted key file: nova-agent does not start without one.
  AgentConfig expected = with_identity(c->node.id, c->node.site);
  expected.trust.signing_keys = {"/etc/nova-agent/nova-cloud-signing.pub"};
  CHECK(c.value() == expected);
  CHECK_FALSE(c->node.id.empty());

  // Every key is documented there (set, or commented out with its default).
  const std::string text = read_file(path);
  for (const ConfigKey& k : config_keys()) {
    const std::string leaf(k.name.substr(k.name.find('.') + 1));
    INFO(k.name);
    CHECK(text.find(leaf + ":") != std::string::npos);
  }
}

TEST_CASE("docs/agent.md holds the table the key table renders", "[config]") {
  const std::string doc = read_file(NOVA_SOURCE_DIR "/docs/agent.md");
  const std::string table = config_reference_markdown();
  INFO("paste this into docs/agent.md, section Configuration:\n" << table);
  CHECK(doc.find(table) != std::string::npos);
  for (const ConfigKey& k : config_keys())
    CHECK(table.find("`" + std::string(k.name) + "`") != std::string::npos);
}

TEST_CASE("every kind of bad input is refused with the key and the reason", "[config]") {
  SECTION("unknown key, with a suggestion") {
    CHECK(parse_error(kIdentity + "mqtt:\n  keepalive: 30\n") ==
          "line 5: mqtt.keepalive: unknown key (did you mean mqtt.keepalive_s?)");
    CHECK(parse_error(kIdentity + "limits:\n  max_cpu_percent: 70\n") ==
          "line 5: limits.max_cpu_percent: unknown key (did you mean limits.max_cpu_pct?)");
    CHECK(parse_error(kIdentity + "limits:\n  frobnicate: 1\n") ==
          "line 5: limits.frobnicate: unknown key");
  }
  SECTION("unknown section") {
    CHECK(parse_error(kIdentity + "metric:\n  interval_ms: 500\n") ==
          "line 4: metric: unknown section (did you mean metrics?)");
  }
  SECTION("the task cache's keys") {
    CHECK(parse_error(kIdentity + "cache:\n  origin: https://files.local\n") ==
          "line 5: cache.origin: 'https://files.local' is not an http:// URL (https is not supported)");
    CHECK(parse_error(kIdentity + "cache:\n  origin: http://files.local:99999/tiles\n") ==
          "line 5: cache.origin: port '99999' is not 1..65535");
    CHECK(parse_error(kIdentity + "cache:\n  prefetch_depth: 0\n") ==
          "line 5: cache.prefetch_depth: value 0 is out of range 1..64");
    CHECK(parse_error(kIdentity + "cache:\n  socket: run/cache.sock\n") ==
          "line 5: cache.socket: expected an absolute path, got 'run/cache.sock'");
    CHECK(parse_error(kIdentity + "limits:\n  cache_size_mb: -1\n") ==
          "line 5: limits.cache_size_mb: value -1 is out of range 0..1048576");
  }
  SECTION("wrong type") {
    CHECK(parse_error(kIdentity + "mqtt:\n  keepalive_s: thirty\n") ==
          "line 5: mqtt.keepalive_s: expected an integer, got 'thirty'");
    CHECK(parse_error(kIdentity + "mqtt:\n  keepalive_s: [30]\n") ==
          "line 5: mqtt.keepalive_s: expected an integer, got a list");
    CHECK(parse_error(kIdentity + "mqtt:\n  uri:\n") ==
          "line 5: mqtt.uri: expected a string, got nothing");
    CHECK(parse_error(kIdentity + "  capabilities: gpu\n") ==
          "line 4: node.capabilities: expected a list, got 'gpu'");
    CHECK(parse_error(kIdentity + "drain: 5\n") == "line 4: drain: expected a mapping of keys");
    CHECK(parse_error("just text\n") ==
          "line 1: config: expected a mapping of sections (node:, mqtt:, ...)");
  }
  SECTION("out of range") {
    CHECK(parse_error(kIdentity + "limits:\n  max_cpu_pct: 150\n") ==
          "line 5: limits.max_cpu_pct: value 150 is out of range 1..100");
    CHECK(parse_error(kIdentity + "metrics:\n  batch_interval_s: 0\n") ==
          "line 5: metrics.batch_interval_s: value 0 is out of range 1..3600");
    CHECK(parse_error(kIdentity + "outbox:\n  max_bytes: 100 GiB\n") ==
          "line 5: outbox.max_bytes: value 100 GiB is out of range 1 MiB..64 GiB");
    CHECK(parse_error(kIdentity + "mqtt:\n  keepalive_s: -1\n") ==
          "line 5: mqtt.keepalive_s: value -1 is out of range 2..65535");
  }
  SECTION("values that are not what a string key needs") {
    CHECK(parse_error("node:\n  id: gw/1\n  site: cloud\n") ==
          "line 2: node.id: 'gw/1': '/' is not allowed in an id");
    CHECK(parse_error("node:\n  id: gw-1\n  site: cloud//par\n") ==
          "line 3: node.site: 'cloud//par': site 2: empty id");
    CHECK(parse_error(kIdentity + "mqtt:\n  uri: 127.0.0.1:1883\n") ==
          "line 5: mqtt.uri: expected a broker URI such as tcp://127.0.0.1:1883, got "
          "'127.0.0.1:1883'");
    CHECK(parse_error(kIdentity + "mqtt:\n  uri: tcp://broker:99999\n") ==
          "line 5: mqtt.uri: port '99999' is not in 1..65535");
    // A TLS uri needs its files; the first missing one is named.
    CHECK(parse_error(kIdentity + "mqtt:\n  uri: ssl://broker:8883\n") ==
          "mqtt.tls_ca_file: required for a TLS uri (ssl://, mqtts://, wss://)");
    CHECK(parse_error(kIdentity + "outbox:\n  dir: var/outbox\n") ==
          "line 5: outbox.dir: expected an absolute path, got 'var/outbox'");
    CHECK(parse_error(kIdentity + "log:\n  level: verbose\n") ==
          "line 5: log.level: 'verbose' is not one of debug, info, warning, error");
    CHECK(parse_error(kIdentity + "  capabilities: [gpu, 'has space']\n") ==
          "line 4: node.capabilities: item 1: 'has space': 0x20 is not allowed in an id");
    CHECK(parse_error(kIdentity + "tasks:\n  output_tail_bytes: 4 KB/s\n") ==
          "line 5: tasks.output_tail_bytes: expected a size: an integer with an optional unit "
          "B, KiB, MiB, GiB, kB, MB or GB, got '4 KB/s'");
  }
  SECTION("missing required key") {
    CHECK(parse_error("node:\n  site: cloud/eu\n") == "node.id: required key is missing");
    CHECK(parse_error("node:\n  id: gw-1\n") == "node.site: required key is missing");
    CHECK(parse_error("") == "node.id: required key is missing");
  }
  SECTION("bad YAML") {
    const std::string msg = parse_error(kIdentity + "mqtt:\n  uri: [tcp://x\n");
    CHECK_THAT(msg, Catch::StartsWith("line "));
    CHECK_THAT(msg, Catch::Contains("invalid YAML"));
    CHECK(parse_error(kIdentity + "mqtt:\n  uri: tcp://a\n  uri: tcp://b\n") ==
          "line 6: mqtt.uri: given twice (first on line 5)");
  }
  SECTION("rules between keys") {
    CHECK(parse_error(kIdentity + "mqtt:\n  reconnect_min_ms: 5000\n  reconnect_max_ms: 2000\n") ==
          "line 5: mqtt.reconnect_min_ms: 5000 is above mqtt.reconnect_max_ms (2000)");
    CHECK(parse_error(kIdentity + "metrics:\n  interval_ms: 100\n  batch_interval_s: 600\n") ==
          "line 6: metrics.batch_interval_s: batches of 600 s at metrics.interval_ms 100 hold "
          "6000 samples; a batch holds at most 4096");
    CHECK(parse_error(kIdentity + "  level: 3\n") ==
          "line 4: node.level: level 3 is above its site 'cloud/eu/par/par-a1' (a site at "
          "depth 4 is on level 4 or deeper)");
  }
}

TEST_CASE("sizes take units, and keepalive is 2 s at every level unless set", "[config]") {
  CHECK(parse_ok(kIdentity + "outbox:\n  max_bytes: 32MiB\n").outbox.max_bytes == 32u << 20);
  CHECK(parse_ok(kIdentity + "outbox:\n  max_bytes: 2 GB\n").outbox.max_bytes == 2'000'000'000u);
  CHECK(parse_ok(kIdentity + "outbox:\n  max_bytes: 1048576\n").outbox.max_bytes == 1u << 20);
  CHECK(parse_ok(kIdentity + "tasks:\n  output_tail_bytes: 512 B\n").tasks.output_tail_bytes ==
        512);

  const AgentConfig access =
      parse_ok("node:\n  id: gw-1\n  site: cloud/eu/par/par-a1\n  level: 4\n");
  CHECK(access.keepalive() == std::chrono::seconds(2));  // not the bridges' 30 s
  CHECK(parse_ok(kIdentity + "mqtt:\n  keepalive_s: 90\n").keepalive() == std::chrono::seconds(90));
  const AgentConfig full = parse_ok(kIdentity +
                                    "  capabilities: [gpu, arm64]\n  arch: riscv64\n"
                                    "log:\n  format: json\n  level: debug\n");
  CHECK(full.node.capabilities == std::vector<std::string>{"gpu", "arm64"});
  CHECK(full.node.arch == "riscv64");
  CHECK(full.log.format == LogFormat::json);
  CHECK(full.log.level == LogLevel::debug);
}

TEST_CASE("load_config names the file", "[config]") {
  auto missing = load_config("no/such/agent.yaml");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message() == "cannot read config file no/such/agent.yaml");
}

TEST_CASE("a remote config applies over the current one", "[config]") {
  const AgentConfig current = parse_ok(kIdentity);
  auto r = apply_remote(current, remote({{"limits.max_cpu_pct", std::int64_t{70}},
                                         {"drain.rate_per_s", std::int64_t{20}},
                                         {"outbox.max_bytes", std::string("128 MiB")},
                                         {"node.capabilities", std::string("gpu, arm64")},
                                         {"log.level", std::string("debug")},
                                         {"mqtt.uri", std::string("tcp://10.0.0.1:1883")},
                                         // The identity repeated unchanged is no change.
                                         {"node.id", std::string("gw-1")}}));
  INFO((r ? "" : r.error().message()));
  REQUIRE(r.ok());
  const AgentConfig& next = r.value();
  CHECK(next.limits.max_cpu_pct == 70);
  CHECK(next.drain.rate_per_s == 20);
  CHECK(next.outbox.max_bytes == 128u << 20);
  CHECK(next.node.capabilities == std::vector<std::string>{"gpu", "arm64"});
  CHECK(next.log.level == LogLevel::debug);
  CHECK(next.node.id == "gw-1");

  CHECK(describe_changes(current, next) ==
        "node.capabilities: [] -> [gpu, arm64] (restart); mqtt.uri: tcp://127.0.0.1:1883 -> "
        "tcp://10.0.0.1:1883 (restart); outbox.max_bytes: 64 MiB -> 128 MiB (restart); "
        "drain.rate_per_s: 50 -> 20; limits.max_cpu_pct: 80 -> 70; log.level: info -> debug");
  CHECK(describe_changes(current, current) == "no changes");
  const auto changed = changed_keys(current, next);
  REQUIRE(changed.size() == 6);
  CHECK(changed[0]->name == "node.capabilities");
  CHECK(changed[0]->reload == Reload::restart);
  CHECK(changed[4]->name == "limits.max_cpu_pct");
  CHECK(changed[4]->reload == Reload::hot);
}

TEST_CASE("a bad remote config is refused whole, naming the key", "[config]") {
  const AgentConfig current = parse_ok(kIdentity);
  // The good key beside the bad one is not applied either: the result is an error only.
  CHECK(remote_error(current, {{"limits.max_cpu_pct", std::int64_t{150}},
                               {"drain.rate_per_s", std::int64_t{20}}}) ==
        "config.values.limits.max_cpu_pct: value 150 is out of range 1..100");
  CHECK(remote_error(current, {{"mqtt.keepalive_s", std::string("30")}}) ==
        "config.values.mqtt.keepalive_s: expected an integer, got a string");
  CHECK(remote_error(current, {{"limits.max_cpu_pct", 70.5}}) ==
        "config.values.limits.max_cpu_pct: expected an integer, got a float");
  CHECK(remote_error(current, {{"log.level", true}}) ==
        "config.values.log.level: expected a string, got a boolean");
  CHECK(remote_error(current, {{"drain.rate", std::int64_t{20}}}) ==
        "config.values.drain.rate: unknown key (did you mean drain.rate_per_s?)");
  CHECK(remote_error(current, {{"outbox.dir", std::string("relative")}}) ==
        "config.values.outbox.dir: expected an absolute path, got 'relative'");
  // A rule between keys is reported on the key the update set.
  CHECK(remote_error(current, {{"mqtt.reconnect_min_ms", std::int64_t{40000}}}) ==
        "config.values.mqtt.reconnect_min_ms: 40000 is above mqtt.reconnect_max_ms (30000)");
  CHECK(remote_error(current, {{"mqtt.reconnect_max_ms", std::int64_t{1000}},
                               {"mqtt.reconnect_min_ms", std::int64_t{2000}}}) ==
        "config.values.mqtt.reconnect_min_ms: 2000 is above mqtt.reconnect_max_ms (1000)");
  CHECK(remote_error(current, {{"mqtt.reconnect_max_ms", std::int64_t{400}}}) ==
        "config.values.mqtt.reconnect_max_ms: value 400 is out of range 1000..3600000");
  const AgentConfig long_batches = parse_ok(kIdentity + "metrics:\n  batch_interval_s: 600\n");
  CHECK(remote_error(long_batches, {{"metrics.interval_ms", std::int64_t{100}}}) ==
        "config.values.metrics.interval_ms: batches of 600 s at metrics.interval_ms 100 hold "
        "6000 samples; a batch holds at most 4096");
}

TEST_CASE("identity keys cannot be changed remotely", "[config]") {
  const AgentConfig current = parse_ok(kIdentity);
  CHECK(remote_error(current, {{"node.id", std::string("gw-2")}}) ==
        "config.values.node.id: identity keys cannot be changed remotely (the node is "
        "addressed by them); edit the agent's file and restart");
  CHECK_THAT(remote_error(current, {{"node.site", std::string("cloud/us")},
                                    {"limits.max_cpu_pct", std::int64_t{70}}}),
             Catch::StartsWith("config.values.node.site: identity keys cannot be changed"));
  for (const ConfigKey& k : config_keys()) {
    INFO(k.name);
    const bool identity = k.name == "node.id" || k.name == "node.site";
    const bool task_policy = k.name == "tasks.allow" || k.name == "tasks.user" || k.name == "tasks.allow_root";
    // Identity, task policy, TLS trust, the storage key, the update folder, what stays in
    // the region, what is personal data and where the task cache's values come from and
    // who reaches it (file only) cannot come from a message.
    const bool cache_access = k.name == "cache.origin" || k.name == "cache.socket" || k.name == "cache.dir";
    CHECK(k.remote == !(identity || task_policy || k.name.starts_with("mqtt.tls_") || k.name.starts_with("trust.") ||
                        k.name.starts_with("storage.") || k.name == "update.dir" || k.name.starts_with("residency.") ||
                        k.name.starts_with("privacy.") || cache_access));
    CHECK(k.required == identity);
  }
}

TEST_CASE("what tasks may run, and as whom, is set only by the agent's file", "[config]") {
  const AgentConfig current = parse_ok(kIdentity + "tasks:\n  allow: [/bin/sh]\n  user: nobody\n");
  CHECK(current.tasks.allow == std::vector<std::string>{"/bin/sh"});
  CHECK_FALSE(current.tasks.allow_root);
  const std::string why =
      "only the agent's file sets what tasks may run and as whom; a remote config cannot change it";
  CHECK(remote_error(current, {{"tasks.allow", std::string("/bin/sh,/usr/bin/id")}}) == "config.values.tasks.allow: " + why);
  CHECK(remote_error(current, {{"tasks.allow", std::int64_t{1}}}) == "config.values.tasks.allow: " + why);
  CHECK(remote_error(current, {{"tasks.user", std::string("root")}}) == "config.values.tasks.user: " + why);
  CHECK(remote_error(current, {{"tasks.allow_root", true}}) == "config.values.tasks.allow_root: " + why);
  CHECK(remote_error(current, {{"tasks.allow_root", std::string("true")}}) ==
        "config.values.tasks.allow_root: " + why);
  // Refused whole: a harmless key beside it does not apply either.
  CHECK(remote_error(current, {{"tasks.max_concurrent", std::int64_t{3}}, {"tasks.allow", std::string("/usr/bin/id")}}) ==
        "config.values.tasks.allow: " + why);

  // In the file: absolute paths, one program per name; allow_root is true or false.
  CHECK(parse_error(kIdentity + "tasks: {allow: [sh]}\n") ==
        "line 4: tasks.allow: item 0: expected an absolute path, got 'sh'");
  CHECK(parse_error(kIdentity + "tasks: {allow: [/bin/sh, /usr/bin/sh]}\n") ==
        "line 4: tasks.allow: items 0 and 1 share the name 'sh', by which a task names the program");
  CHECK(parse_error(kIdentity + "tasks: {allow_root: yes}\n") ==
        "line 4: tasks.allow_root: 'yes' is not one of false, true");
  CHECK(parse_ok(kIdentity + "tasks: {user: root, allow_root: true}\n").tasks.allow_root);
}

TEST_CASE("TLS: the uri decides, and the files are checked at load naming the key", "[config][tls]") {
  CHECK(is_plaintext_uri("tcp://a:1883"));
  CHECK(is_plaintext_uri("mqtt://a"));
  CHECK(is_plaintext_uri("ws://a/mqtt"));
  CHECK_FALSE(is_plaintext_uri("ssl://a:8883"));
  CHECK_FALSE(is_plaintext_uri("mqtts://a"));
  CHECK_FALSE(is_plaintext_uri("wss://a/mqtt"));

  char pattern[] = "/tmp/nova-config-tls.XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const std::filesystem::path dir = pattern;
  nova::testing::TestCa ca(dir / "ca");
  const auto node = ca.issue({"gw-1", {}, 30});
  const auto other = ca.issue({"gw-1", {}, 30});
  const auto tls = [&](const std::string& uri, const std::filesystem::path& ca_file, const std::filesystem::path& cert,
                       const std::filesystem::path& key) {
    return kIdentity + "mqtt:\n  uri: " + uri + "\n  tls_ca_file: " + ca_file.string() +
           "\n  tls_cert_file: " + cert.string() + "\n  tls_key_file: " + key.string() + "\n";
  };

  const AgentConfig good = parse_ok(tls("mqtts://127.0.0.1:8883", ca.cert(), node.cert, node.key));
  REQUIRE(good.tls());
  CHECK(good.tls()->cert_file == node.cert.string());
  CHECK(good.tls()->verify_server);
  CHECK_FALSE(parse_ok(kIdentity).tls());

  CHECK(parse_error(tls("mqtts://h", ca.cert(), dir / "missing.crt", node.key)) ==
        "line 7: mqtt.tls_cert_file: '" + (dir / "missing.crt").string() + "' does not exist");
  CHECK(parse_error(tls("mqtts://h", node.key, node.cert, node.key)) ==
        "line 6: mqtt.tls_ca_file: '" + node.key.string() + "' holds no PEM certificate");
  CHECK(parse_error(tls("mqtts://h", ca.cert(), node.cert, other.key)) ==
        "line 8: mqtt.tls_key_file: the key in '" + other.key.string() + "' does not match the certificate in '" +
            node.cert.string() + "'");
  CHECK(parse_error(tls("tcp://h:1883", ca.cert(), node.cert, node.key)) ==
        "line 6: mqtt.tls_ca_file: set, but mqtt.uri 'tcp://h:1883' is plaintext (use mqtts://)");
  CHECK(parse_error(kIdentity + "mqtt:\n  uri: mqtts://h\n  tls_insecure_skip_verify: maybe\n") ==
        "line 6: mqtt.tls_insecure_skip_verify: 'maybe' is not one of false, true");
  const AgentConfig insecure =
      parse_ok(tls("mqtts://h", ca.cert(), node.cert, node.key) + "  tls_insecure_skip_verify: true\n");
  CHECK_FALSE(insecure.tls()->verify_server);

  // A message from the broker can never choose whom the agent trusts.
  CHECK(remote_error(good, {{"mqtt.tls_ca_file", other.cert.string()}}) ==
        "config.values.mqtt.tls_ca_file: TLS trust and identity keys cannot be changed remotely (a message "
        "must never choose whom the agent trusts); edit the agent's file and restart");
  CHECK_THAT(remote_error(good, {{"mqtt.tls_insecure_skip_verify", std::string("true")}}),
             Catch::StartsWith("config.values.mqtt.tls_insecure_skip_verify: TLS trust and identity keys"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("a remote config cannot change whom the agent trusts", "[config][trust]") {
  const AgentConfig current = parse_ok(kIdentity);
  const std::string why =
      "trust keys cannot be changed remotely (a message must never choose whom the agent trusts); "
      "edit the agent's file and restart";
  CHECK(remote_error(current, {{"trust.signing_keys", std::string("/tmp/attacker.pub")}}) ==
        "config.values.trust.signing_keys: " + why);
  CHECK(remote_error(current, {{"trust.insecure_unsigned", std::string("true")}}) ==
        "config.values.trust.insecure_unsigned: " + why);
  CHECK(remote_error(current, {{"trust.clock_skew_s", std::int64_t{86400}}}) ==
        "config.values.trust.clock_skew_s: " + why);
  // The file sets them.
  const AgentConfig c = parse_ok(kIdentity + "trust:\n  signing_keys: [/etc/nova/a.pub, /etc/nova/b.pub]\n"
                                             "  insecure_unsigned: true\n  clock_skew_s: 60\n");
  CHECK(c.trust.signing_keys == std::vector<std::string>{"/etc/nova/a.pub", "/etc/nova/b.pub"});
  CHECK(c.trust.insecure_unsigned == Insecure::on);
  CHECK(c.trust.clock_skew_s == 60);
  CHECK(parse_error(kIdentity + "trust:\n  signing_keys: [keys/a.pub]\n") ==
        "line 5: trust.signing_keys: item 0: expected an absolute path, got 'keys/a.pub'");
}

TEST_CASE("residency: only the metrics stream can be resident, and only with a region", "[config][residency]") {
  const AgentConfig ok = parse_ok(kIdentity + "residency:\n  region: eu-west\n  streams: [metrics]\n");
  CHECK(ok.residency.region == "eu-west");
  CHECK(ok.residency.streams == std::vector<std::string>{"metrics"});
  CHECK_THAT(parse_error(kIdentity + "residency:\n  region: eu-west\n  streams: [alerts]\n"),
             Catch::EndsWith("residency.streams: 'alerts' cannot be resident (only metrics)"));
  CHECK_THAT(parse_error(kIdentity + "residency:\n  streams: [metrics]\n"),
             Catch::EndsWith("residency.region: required when residency.streams names a stream"));
  CHECK_THAT(parse_error(kIdentity + "residency:\n  region: eu/west\n"), Catch::Contains("residency.region: 'eu/west'"));
}

TEST_CASE("privacy.personal takes sensors and sensor/value items and names a bad one", "[config][privacy]") {
  const AgentConfig c = parse_ok(kIdentity + "privacy:\n  personal: [cam1/face_count, badge]\n  window_s: 300\n");
  CHECK(c.privacy.personal == std::vector<std::string>{"cam1/face_count", "badge"});
  CHECK(c.privacy.window_s == 300);
  CHECK(parse_error(kIdentity + "privacy:\n  personal: [cam1, cam1/face count]\n") ==
        "line 5: privacy.personal: item 1: 'cam1/face count': value 'face count': 0x20 is not allowed in an id "
        "(expected <sensor> or <sensor>/<value>)");
  CHECK(parse_error(kIdentity + "privacy:\n  window_s: 0\n") ==
        "line 5: privacy.window_s: value 0 is out of range 1..86400");
}

TEST_CASE("anomaly.streams chooses detectors per gauge and names a bad rule", "[config][anomaly]") {
  // The default: sensor readings only, robust.
  const AgentConfig d = parse_ok(kIdentity);
  REQUIRE(d.anomaly_rules().size() == 1);
  CHECK(d.anomaly_rules()[0].match == "sensor.*");
  CHECK(d.anomaly_rules()[0].detector.kind == "mad");
  CHECK(d.anomaly_rules()[0].detector.threshold == 6);
  CHECK(d.anomaly_rules()[0].detector.window == 600);

  // Unset fields come from the other anomaly.* keys.
  const AgentConfig c = parse_ok(kIdentity +
                                 "anomaly:\n  streams: [\"sensor.*.power seasonal season=1440\", \"mem mad threshold=8\"]\n"
                                 "  zscore: 5\n  window: 3000\n");
  const auto rules = c.anomaly_rules();
  REQUIRE(rules.size() == 2);
  CHECK(rules[0].detector.kind == "seasonal");
  CHECK(rules[0].detector.season == 1440);
  CHECK(rules[0].detector.threshold == 5);
  CHECK(rules[0].detector.window == 3000);
  CHECK(rules[1].match == "mem");
  CHECK(rules[1].detector.threshold == 8);
  CHECK(parse_ok(kIdentity + "anomaly:\n  streams: []\n").anomaly_rules().empty());

  CHECK(parse_error(kIdentity + "anomaly:\n  streams: [\"sensor.* seasonal\"]\n") ==
        "line 5: anomaly.streams: item 0 ('sensor.* seasonal'): season: a seasonal detector needs a period of at "
        "least 2 values");
  CHECK(parse_error(kIdentity + "anomaly:\n  streams: [\"sensor.* mad\"]\n  window: 200000\n") ==
        "line 5: anomaly.streams: item 0 ('sensor.* mad'): window: at most 100000 for mad (it holds every value)");

  // Remotely: one string of comma-separated rules, refused whole naming the key.
  auto r = apply_remote(c, remote({{"anomaly.streams", std::string("sensor.* zscore threshold=3, cpu mad")}}));
  REQUIRE(r.ok());
  CHECK(r->anomaly.streams == std::vector<std::string>{"sensor.* zscore threshold=3", "cpu mad"});
  CHECK(remote_error(c, {{"anomaly.streams", std::string("sensor.* lstm")}}) ==
        "config.values.anomaly.streams: item 0 ('sensor.* lstm'): kind: unknown detector 'lstm' (zscore, mad, seasonal)");
}

TEST_CASE("pipelines is a list in the file and a flow string remotely and a bad one names the item and key",
          "[config][pipelines]") {
  const AgentConfig c = parse_ok(std::string(kIdentity) +
                                 "pipelines:\n"
                                 "  - name: boiler\n"
                                 "    input: {sensor: boiler, value: temp}\n"
                                 "    window: {kind: tumbling, size_ms: 5000}\n");
  auto specs = parse_pipelines(c.pipelines);
  REQUIRE(specs.ok());
  REQUIRE(specs->size() == 1);
  CHECK(specs->front().name == "boiler");
  CHECK(specs->front().window.size_ms == 5000);
  CHECK(parse_error(std::string(kIdentity) + "pipelines:\n  - name: boiler\n    input: {sensor: b}\n    window: {kind: rolling}\n") ==
        "line 5: pipelines: pipelines[0].window.kind: expected tumbling, hopping or sliding");
  CHECK(parse_ok(kIdentity).pipelines == "[]");

  // Remotely: the same list as a JSON (or YAML flow) string, hot; a bad one refused whole.
  auto r = apply_remote(c, remote({{"pipelines", std::string(R"([{"name": "cpu", "input": {"gauge": "cpu"}}])")}}));
  REQUIRE(r.ok());
  CHECK(parse_pipelines(r->pipelines).value().front().input.gauge == "cpu");
  CHECK(describe_changes(c, *r).find("pipelines: ") != std::string::npos);
  CHECK(remote_error(c, {{"pipelines", std::string(R"([{"name": "cpu", "input": {"pipeline": "nope"}}])")}}) ==
        "config.values.pipelines: pipelines[0].input.pipeline: 'nope' is not a pipeline declared before this one");
}
