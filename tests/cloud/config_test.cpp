// nova-cloud's configuration: defaults, the example file, errors naming key and line.
#include <catch2/catch.hpp>

#include "nova/cloud/config.h"

using namespace nova::cloud;

TEST_CASE("an empty file gives every default", "[cloud][config]") {
  auto c = parse_config("");
  REQUIRE(c.ok());
  CHECK(c->mqtt.uri == "tcp://127.0.0.1:1883");
  CHECK(c->http.port == 8080);
  CHECK(c->liveness.heartbeat_timeout_s == 180);
}

TEST_CASE("the example configuration parses", "[cloud][config]") {
  auto c = load_config(NOVA_SOURCE_DIR "/cloud/examples/cloud.yaml");
  INFO((c.ok() ? "" : c.error().message()));
  REQUIRE(c.ok());
  CHECK(c->auth.tokens_file == "/etc/nova-cloud/tokens");
  CHECK_FALSE(c->auth.insecure_no_auth);
  CHECK(c->ingest.max_seq_ahead == 1'000'000);
}

TEST_CASE("auth, audit and the HTTP allow-lists", "[cloud][config]") {
  auto c = parse_config("http:\n  allowed_hosts: [\"cloud.example:8443\"]\nauth:\n  insecure_no_auth: true\n"
                        "audit:\n  file: /tmp/a.log\n");
  REQUIRE(c.ok());
  CHECK(c->http.allowed_hosts == std::vector<std::string>{"cloud.example:8443"});
  CHECK(c->auth.insecure_no_auth);
  CHECK(c->audit.file == "/tmp/a.log");
  CHECK(parse_config("auth:\n  insecure_no_auth: maybe\n").error().message() ==
        "line 2: auth.insecure_no_auth: expected true or false");
  CHECK(parse_config("http:\n  allowed_hosts: localhost\n").error().message() ==
        "line 2: http.allowed_hosts: expected a list of strings");
  CHECK(parse_config("ingest:\n  max_seq_ahead: 0\n").error().message().find("line 2: ingest.max_seq_ahead: value 0") == 0);
}

TEST_CASE("errors name the key and the line and the reason", "[cloud][config]") {
  auto unknown = parse_config("mqtt:\n  url: tcp://x:1\n");
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message() == "line 2: mqtt.url: unknown key");
  auto range = parse_config("http:\n  port: 70000\n");
  REQUIRE_FALSE(range.ok());
  CHECK(range.error().message() == "line 2: http.port: value 70000 is out of range 0..65535");
  auto type = parse_config("liveness:\n  heartbeat_timeout_s: soon\n");
  REQUIRE_FALSE(type.ok());
  CHECK(type.error().reason.find("expected an integer") != std::string::npos);
  auto section = parse_config("bogus:\n  x: 1\n");
  REQUIRE_FALSE(section.ok());
  CHECK(section.error().message() == "line 2: bogus.x: unknown key");
}

TEST_CASE("signing: a key file, or an explicit insecure_unsigned", "[cloud][config][signing]") {
  auto none = parse_config("mqtt:\n  uri: tcp://127.0.0.1:1883\n");
  REQUIRE(none.ok());
  auto refused = none->signing_key();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().path == "signing.key_file");
  CHECK(refused.error().reason.find("signing.insecure_unsigned: true") != std::string::npos);

  auto insecure = parse_config("signing:\n  insecure_unsigned: true\n");
  REQUIRE(insecure.ok());
  auto no_key = insecure->signing_key();
  REQUIRE(no_key.ok());
  CHECK_FALSE(no_key->has_value());

  auto missing = parse_config("signing:\n  key_file: /nonexistent/nova-cloud.key\n  ttl_s: 600\n");
  REQUIRE(missing.ok());
  CHECK(missing->service_options().control_ttl == std::chrono::seconds(600));
  auto unreadable = missing->signing_key();
  REQUIRE_FALSE(unreadable.ok());
  CHECK(unreadable.error().path == "signing.key_file");
  CHECK(parse_config("signing:\n  insecure_unsigned: yes\n").error().message() ==
        "line 2: signing.insecure_unsigned: expected true or false");
}

TEST_CASE("migration: watermarks, sustained window, dwell time and per-node cap", "[cloud][config][migration]") {
  auto defaults = parse_config("");
  REQUIRE(defaults.ok());
  const MigrationPolicy p = defaults->service_options().migration;
  CHECK(p.high_pct == 90);
  CHECK(p.low_pct == 75);
  CHECK(p.sustain_ms == 60'000);
  CHECK(p.min_dwell_ms == 300'000);
  CHECK(p.max_per_node == 2);
  CHECK(p.node_window_ms == 600'000);

  auto set = parse_config(
      "migration:\n  overload_high_pct: 95\n  overload_low_pct: 60\n  overload_sustain_s: 5\n  min_dwell_s: 10\n"
      "  max_per_node: 1\n  per_node_window_s: 30\n");
  REQUIRE(set.ok());
  const MigrationPolicy q = set->service_options().migration;
  CHECK(q.high_pct == 95);
  CHECK(q.low_pct == 60);
  CHECK(q.sustain_ms == 5000);
  CHECK(q.min_dwell_ms == 10'000);
  CHECK(q.max_per_node == 1);
  CHECK(q.node_window_ms == 30'000);

  auto no_gap = parse_config("migration:\n  overload_high_pct: 80\n  overload_low_pct: 80\n");
  REQUIRE_FALSE(no_gap.ok());
  CHECK(no_gap.error().message() == "migration.overload_low_pct: must be below migration.overload_high_pct (80), got 80");
  auto range = parse_config("migration:\n  max_per_node: 0\n");
  REQUIRE_FALSE(range.ok());
  CHECK(range.error().message() == "line 2: migration.max_per_node: value 0 is out of range 1..1000");
}
