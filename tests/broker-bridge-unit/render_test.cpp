// The rendered mosquitto.conf and ACL of the example topology: every Mosquitto 2.0.11
// pitfall has its setting (docs/broker-hierarchy.md), and the ACL grants what the
// topic API needs and nothing more. Pure text checks; acl_test.cpp runs the ACL on a
// real broker.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "nova/bridge/render.h"
#include "nova/bridge/hierarchy.h"
#include "nova/bridge/wireguard.h"
#include "nova/tiers/topology.h"

namespace {

namespace fs = std::filesystem;
using nova::bridge::render;
using nova::bridge::RenderOptions;
using nova::tiers::Topology;

Topology example() {
  auto t = Topology::load(NOVA_FIVE_TIER_YAML);
  REQUIRE(t.ok());
  return std::move(t).value();
}

// The config's directives (comments and blank lines dropped), in order.
std::vector<std::string> directives(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') out.push_back(line);
  }
  return out;
}

// Every value of `key` ("key value..." lines).
std::vector<std::string> values(const std::string& text, const std::string& key) {
  std::vector<std::string> out;
  for (const std::string& line : directives(text)) {
    if (line.rfind(key + " ", 0) == 0) out.push_back(line.substr(key.size() + 1));
  }
  return out;
}

std::string value(const std::string& text, const std::string& key) {
  const auto all = values(text, key);
  INFO("key " << key);
  REQUIRE(all.size() == 1);
  return all.front();
}

// ACL: lines per section; "" is the anonymous section (before the first `user`),
// "pattern" collects the pattern lines wherever they stand.
std::map<std::string, std::vector<std::string>> acl_sections(const std::string& acl) {
  std::map<std::string, std::vector<std::string>> out;
  std::string section;
  out[section];
  for (const std::string& line : directives(acl)) {
    if (line.rfind("user ", 0) == 0) {
      section = line.substr(5);
      REQUIRE(out.count(section) == 0);  // one section per user
      out[section];
    } else if (line.rfind("pattern ", 0) == 0) {
      out["pattern"].push_back(line);
    } else {
      out[section].push_back(line);
    }
  }
  return out;
}

std::string conf_of(const Topology& t, const std::string& site, RenderOptions options = {}) {
  if (options.data_dir.empty()) options.data_dir = "/srv/nova/" + site;
  if (options.pki_dir.empty()) options.pki_dir = "/srv/nova/pki";
  return render(t, t.site(site), options).mosquitto_conf;
}

}  // namespace

TEST_CASE("a metro site bridges to its parent with every pitfall handled", "[render]") {
  const Topology t = example();
  const std::string conf = conf_of(t, "par");

  CHECK(value(conf, "listener") == "18833 127.0.0.1");
  CHECK(values(conf, "connection") == std::vector<std::string>{"par-to-eu"});
  CHECK(value(conf, "address") == "127.0.0.1:18831");
  CHECK(value(conf, "round_robin") == "false");
  CHECK(value(conf, "bridge_protocol_version") == "mqttv311");
  CHECK(value(conf, "cleansession") == "false");
  CHECK(value(conf, "local_cleansession") == "false");
  CHECK(value(conf, "remote_clientid") == "bridge.par");
  CHECK(value(conf, "local_clientid") == "bridge.par.local");
  CHECK(value(conf, "remote_username") == "bridge.par");
  CHECK(value(conf, "keepalive_interval") == "45");
  // Two values: base and cap. The one-value form is ignored by 2.0.11.
  CHECK(value(conf, "restart_timeout") == "2 30");
  CHECK(value(conf, "notifications") == "true");
  CHECK(value(conf, "notification_topic") == "nova/v1/up/par/link");
  CHECK(value(conf, "try_private") == "true");

  // QoS 1 named on every map, up out only, down in only: this subtree, then the access
  // sites of ber that name par as their backup parent (they may fail over to par).
  CHECK(values(conf, "topic") ==
        std::vector<std::string>{"nova/v1/up/# out 1", "nova/v1/resident/eu-west/# out 1",
                                 "nova/v1/down/cloud/eu/par/# in 1", "nova/v1/down/cloud/eu/ber/ber-a1/# in 1",
                                 "nova/v1/down/cloud/eu/ber/ber-a2/# in 1", "nova/v1/bundle/# in 1"});
  for (const std::string& line : directives(conf)) CHECK(line.find(" both") == std::string::npos);

  // Persistence with a short autosave instead of 1800 s.
  CHECK(value(conf, "persistence") == "true");
  CHECK(value(conf, "persistence_location") == "/srv/nova/par/");
  CHECK(value(conf, "autosave_interval") == "1");
  CHECK(value(conf, "autosave_on_changes") == "false");
  CHECK(value(conf, "log_dest") == "file /srv/nova/par/mosquitto.log");
  CHECK(values(conf, "log_type") ==
        std::vector<std::string>{"error", "warning", "notice", "information"});

  // Metro queue caps: 264 design nodes x 2000 messages/day x 5/4, x 2048 bytes.
  CHECK(value(conf, "max_queued_messages") == "660000");
  CHECK(value(conf, "max_queued_bytes") == "1351680000");
  CHECK(value(conf, "queue_qos0_messages") == "false");
  CHECK(value(conf, "max_packet_size") == std::to_string(256 * 1024 + 4 * 1024));

  CHECK(value(conf, "allow_anonymous") == "false");
  // A retained record is re-sent only if its publisher may still write it: keeps the
  // bridge's own link record from going up stale on every reconnect (restart_test).
  CHECK(value(conf, "check_retain_source") == "true");
  // The ACL is the nova_acl plugin's (denials logged and counted), not acl_file's.
  CHECK(values(conf, "acl_file").empty());
  CHECK(value(conf, "plugin_opt_acl_file") == "/srv/nova/par/acl");
  // The plugin counts refused TLS handshakes from the broker's own log.
  CHECK(value(conf, "plugin_opt_log_file") == value(conf, "log_dest").substr(std::string("file ").size()));
  CHECK(fs::path(value(conf, "plugin")).filename() == "nova_acl.so");
  CHECK(values(conf, "user").empty());  // only when asked
}

TEST_CASE("bridge settings come after the global ones", "[render]") {
  // Everything after `connection` belongs to the bridge in mosquitto.conf.
  const Topology t = example();
  const auto lines = directives(conf_of(t, "par-a1"));
  const auto connection = std::find_if(lines.begin(), lines.end(),
                                       [](const std::string& l) { return l.rfind("connection ", 0) == 0; });
  REQUIRE(connection != lines.end());
  for (auto it = lines.begin(); it != connection; ++it) {
    INFO(*it);
    CHECK(it->rfind("topic ", 0) != 0);
    CHECK(it->rfind("address ", 0) != 0);
  }
  CHECK(std::find(connection, lines.end(), "listener 18837 127.0.0.1") == lines.end());
}

TEST_CASE("an access site lists its parent, then its backups in order", "[render]") {
  const Topology t = example();
  const std::string conf = conf_of(t, "par-a1");
  CHECK(value(conf, "address") == "127.0.0.1:18833 127.0.0.1:18834");
  CHECK(value(conf, "connection") == "par-a1-to-par");
  CHECK(values(conf, "topic") ==
        std::vector<std::string>{"nova/v1/up/# out 1", "nova/v1/resident/eu-west/# out 1",
                                 "nova/v1/down/cloud/eu/par/par-a1/# in 1", "nova/v1/bundle/# in 1"});
  CHECK(value(conf, "keepalive_interval") == "30");
  CHECK(value(conf, "restart_timeout") == "2 30");
  // Access caps: 32 x 2000 x 5/4 = 80,000 messages, x 2048 B = 164 MB.
  CHECK(value(conf, "max_queued_messages") == "80000");
  CHECK(value(conf, "max_queued_bytes") == "163840000");

  auto many = Topology::parse_yaml(R"(
name: backups
sites:
  - {id: root, level: 1, port: 1}
  - {id: a, level: 2, parent: root, port: 2}
  - {id: b, level: 2, parent: root, port: 3, address: 10.0.0.3}
  - {id: c, level: 2, parent: root, port: 4}
  - {id: leaf, level: 3, parent: b, backups: [c, a, root], port: 5}
)");
  REQUIRE(many.ok());
  CHECK(value(conf_of(*many, "leaf"), "address") == "10.0.0.3:3 127.0.0.1:4 127.0.0.1:2 127.0.0.1:1");
}

TEST_CASE("a regional site has the regional queue caps", "[render]") {
  const Topology t = example();
  const std::string conf = conf_of(t, "eu");
  // 1056 x 2000 x 5/4 = 2,640,000 messages; x 2048 B = 5.4 GB.
  CHECK(value(conf, "max_queued_messages") == "2640000");
  CHECK(value(conf, "max_queued_bytes") == "5406720000");
  CHECK(value(conf, "keepalive_interval") == "60");
  CHECK(value(conf, "restart_timeout") == "1 15");
  CHECK(value(conf, "address") == "127.0.0.1:18830");
  CHECK(values(conf, "topic") ==
        std::vector<std::string>{"nova/v1/up/# out 1", "nova/v1/down/cloud/eu/# in 1", "nova/v1/bundle/# in 1"});
}

TEST_CASE("the root has no bridge", "[render]") {
  const Topology t = example();
  const std::string conf = conf_of(t, "cloud");
  for (const char* key : {"connection", "address", "topic", "remote_username", "restart_timeout",
                          "notification_topic", "bridge_protocol_version"}) {
    INFO(key);
    CHECK(values(conf, key).empty());
  }
  CHECK(value(conf, "listener") == "18830 127.0.0.1");
  CHECK(value(conf, "persistence") == "true");
  // The cloud profile sizes no upward queue; 0 is Mosquitto's "no cap".
  CHECK(value(conf, "max_queued_messages") == "0");
}

TEST_CASE("per-site overrides replace the tier profile", "[render]") {
  auto t = Topology::parse_yaml(R"(
name: overrides
sites:
  - {id: root, level: 1, port: 1883}
  - id: gw
    level: 4
    parent: root
    port: 1884
    overrides: {max_queued_messages: 500000, max_queued_bytes: 1000000000, keepalive: 20,
                autosave_interval: 5, restart_timeout: [3, 90]}
)");
  REQUIRE(t.ok());
  const std::string conf = conf_of(*t, "gw");
  CHECK(value(conf, "max_queued_messages") == "500000");
  CHECK(value(conf, "max_queued_bytes") == "1000000000");
  CHECK(value(conf, "keepalive_interval") == "20");
  CHECK(value(conf, "autosave_interval") == "5");
  CHECK(value(conf, "restart_timeout") == "3 90");
}

TEST_CASE("RenderOptions::user renders the user line", "[render]") {
  const Topology t = example();
  RenderOptions options;
  options.data_dir = "/srv/nova/x";
  options.user = "root";
  CHECK(value(conf_of(t, "nyc", options), "user") == "root");
}

TEST_CASE("a site with backup parents keeps its session on them, and its routes cover it there", "[render]") {
  const Topology t = example();
  // par-a1 (parent par, backup ber): the parents keep its downward queue, so nothing sent
  // while it moves is lost; a repeat is dropped by the agent (failover_down_test).
  const std::string access = conf_of(t, "par-a1");
  CHECK(value(access, "cleansession") == "false");
  CHECK(value(access, "local_cleansession") == "false");  // the upward queue persists
  CHECK(values(access, "topic") ==
        std::vector<std::string>{"nova/v1/up/# out 1", "nova/v1/resident/eu-west/# out 1",
                                 "nova/v1/down/cloud/eu/par/par-a1/# in 1", "nova/v1/bundle/# in 1"});
  // Regional eu already covers both par and ber: no extra route, no overlap.
  CHECK(values(conf_of(t, "eu"), "topic") ==
        std::vector<std::string>{"nova/v1/up/# out 1", "nova/v1/down/cloud/eu/# in 1", "nova/v1/bundle/# in 1"});
}

// Plaintext on purpose: this case pins the ACL --insecure-plaintext renders; the TLS
// ACL's grants are pinned against real brokers by tls_acl_test.cpp.
TEST_CASE("the ACL grants nodes, child bridges, cloud and monitor what they need", "[render][acl]") {
  const Topology t = example();
  const auto acl = acl_sections(render(t, t.site("par"), {"/srv/nova/par", {}, {}, {}, /*insecure_plaintext=*/true, {}}).acl);

  // Anonymous clients: read down, bundles, sensors; no `topic` grant on up (only the pattern).
  CHECK(acl.at("") == std::vector<std::string>{"topic read nova/v1/down/#", "topic read nova/v1/bundle/#",
                                               "topic readwrite nova/v1/sensor/#", "topic read nova/v1/local/#"});
  CHECK(acl.at("pattern") ==
        std::vector<std::string>{"pattern write nova/v1/up/%c/#", "pattern write nova/v1/local/%c/#",
                                 "pattern write nova/v1/resident/eu-west/%c/#", "pattern readwrite nova-bridge/probe/%c"});

  // Children par-a1/par-a2, and ber-a1/ber-a2 which name par as their backup parent:
  // each reads only its own subtree (its path under its *primary* parent); no site
  // fails over into an access site, so none has a second route.
  const std::map<std::string, std::string> bridged{
      {"bridge.par-a1", "cloud/eu/par/par-a1"},
      {"bridge.par-a2", "cloud/eu/par/par-a2"},
      {"bridge.ber-a1", "cloud/eu/ber/ber-a1"},
      {"bridge.ber-a2", "cloud/eu/ber/ber-a2"},
  };
  for (const auto& [user, path] : bridged) {
    INFO(user);
    REQUIRE(acl.count(user) == 1);
    CHECK(acl.at(user) ==
          std::vector<std::string>{"topic write nova/v1/up/#", "topic write nova/v1/resident/eu-west/#",
                                   "topic read nova/v1/down/" + path + "/#", "topic read nova/v1/bundle/#"});
  }
  CHECK(acl.count("bridge.nyc-a1") == 0);
  // Its own bridge bypasses its local ACL; this grant is what check_retain_source checks
  // before re-sending a retained downward record the bridge brought in. Not its link.
  CHECK(acl.at("bridge.par") == std::vector<std::string>{"topic write nova/v1/down/cloud/eu/par/#",
                                                          "topic write nova/v1/down/cloud/eu/ber/ber-a1/#",
                                                          "topic write nova/v1/down/cloud/eu/ber/ber-a2/#",
                                                          "topic write nova/v1/bundle/#"});

  CHECK(acl.at(nova::bridge::kCloudServiceUser) ==
        std::vector<std::string>{"topic readwrite nova/v1/#", "topic read $SYS/#"});
  CHECK(acl.at(nova::bridge::kMonitorUser) ==
        std::vector<std::string>{"topic read nova/v1/up/+/link", "topic read $SYS/broker/nova/acl/denied/#",
                                 "topic read $SYS/broker/nova/tls/refused/#"});
  CHECK(acl.size() == 1 + 1 + 1 + bridged.size() + 2);
}

TEST_CASE("every bridge's down maps are what its parent's and backups' ACLs let it read", "[render][acl]") {
  const Topology t = example();
  for (const auto& site : t.sites()) {
    if (site.is_root()) continue;
    INFO(site.id());
    std::vector<const nova::tiers::Site*> parents{t.parent(site)};
    for (const std::string& b : site.spec.backup_parents) parents.push_back(&t.site(b));
    for (const std::string& map : values(conf_of(t, site.id()), "topic")) {
      if (map.find(" in ") == std::string::npos) continue;
      const std::string filter = map.substr(0, map.find(' '));
      for (const nova::tiers::Site* parent : parents) {
        INFO(filter << " at " << parent->id());
        // The plaintext ACL on purpose: its bridge sections hold grants only; in the TLS
        // ACL they also deny link topics, with the same read grants after them.
        const auto parent_acl = acl_sections(render(t, *parent, {"/x", {}, {}, {}, /*insecure_plaintext=*/true, {}}).acl);
        const auto& grants = parent_acl.at(nova::bridge::bridge_username(site));
        CHECK(std::find(grants.begin(), grants.end(), "topic read " + filter) != grants.end());
      }
    }
    CHECK(value(conf_of(t, site.id()), "remote_username") == nova::bridge::bridge_username(site));
  }
}

TEST_CASE("link topic and bridge username", "[render]") {
  const Topology t = example();
  CHECK(nova::bridge::link_topic(t.site("ber-a2")) == "nova/v1/up/ber-a2/link");
  CHECK(nova::bridge::link_topic(std::string_view("sfo")) == "nova/v1/up/sfo/link");
  CHECK(nova::bridge::bridge_username(t.site("sfo")) == "bridge.sfo");
}

TEST_CASE("write_site writes both files and refers to the ACL by absolute path", "[render]") {
  const Topology t = example();
  const fs::path dir = fs::temp_directory_path() / ("nova-render-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  // Paths do not depend on the mode; plaintext because a TLS write_site needs a PKI
  // folder on disk (it checks the CA, CRL and certificate files first).
  RenderOptions insecure;
  insecure.insecure_plaintext = true;
  REQUIRE(nova::bridge::write_site(t, t.site("sfo-a2"), dir, insecure).ok());
  std::ifstream conf_in(dir / "mosquitto.conf");
  std::stringstream conf;
  conf << conf_in.rdbuf();
  CHECK(value(conf.str(), "plugin_opt_acl_file") == fs::absolute(dir / "acl").string());
  CHECK(value(conf.str(), "plugin") == nova::bridge::find_acl_plugin().string());
  CHECK(value(conf.str(), "persistence_location") == fs::absolute(dir).string() + "/");
  CHECK(fs::file_size(dir / "acl") > 0);
  fs::remove_all(dir);
}

TEST_CASE("write_site refuses a site without a port, naming it", "[render]") {
  auto t = Topology::parse_yaml(R"(
sites:
  - {id: root, level: 1}
  - {id: gw, level: 4, parent: root, port: 1884}
)");
  REQUIRE(t.ok());
  const fs::path dir = fs::temp_directory_path() / ("nova-render-test0-" + std::to_string(::getpid()));
  // Port errors do not depend on the mode; plaintext needs no PKI folder on disk.
  RenderOptions insecure;
  insecure.insecure_plaintext = true;
  auto root = nova::bridge::write_site(*t, t->site("root"), dir, insecure);
  REQUIRE_FALSE(root.ok());
  CHECK(root.error().message().find("site 'root'") != std::string::npos);
  auto child = nova::bridge::write_site(*t, t->site("gw"), dir, insecure);
  REQUIRE_FALSE(child.ok());
  CHECK(child.error().message().find("cannot bridge to 'root'") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("TLS mode renders mutual TLS on the listener and on the bridge", "[render][tls]") {
  const Topology t = example();
  const std::string conf = conf_of(t, "par");
  CHECK(value(conf, "allow_anonymous") == "false");
  CHECK(value(conf, "cafile") == "/srv/nova/pki/trust/ca.pem");
  CHECK(value(conf, "certfile") == "/srv/nova/pki/identities/par/cert.pem");
  CHECK(value(conf, "keyfile") == "/srv/nova/pki/identities/par/key.pem");
  CHECK(value(conf, "crlfile") == "/srv/nova/pki/trust/crl.pem");
  CHECK(value(conf, "require_certificate") == "true");
  CHECK(value(conf, "use_identity_as_username") == "true");
  CHECK(value(conf, "use_username_as_clientid") == "true");
  CHECK(value(conf, "tls_version") == "tlsv1.2");
  CHECK(value(conf, "bridge_cafile") == "/srv/nova/pki/trust/ca.pem");
  CHECK(value(conf, "bridge_certfile") == "/srv/nova/pki/identities/bridge.par/cert.pem");
  CHECK(value(conf, "bridge_keyfile") == "/srv/nova/pki/identities/bridge.par/key.pem");
  CHECK(value(conf, "bridge_insecure") == "false");
  CHECK(value(conf, "bridge_tls_version") == "tlsv1.2");
  CHECK(conf.find("INSECURE") == std::string::npos);
  // The TLS settings belong to the listener: they follow its line.
  CHECK(conf.find("listener ") < conf.find("cafile "));
}

// Plaintext on purpose: what the explicit insecure mode renders, and that it says so.
TEST_CASE("insecure plaintext mode says so at the top of both files", "[render][tls]") {
  const Topology t = example();
  RenderOptions options;
  options.insecure_plaintext = true;
  const auto rendered = render(t, t.site("par"), options);
  CHECK(rendered.mosquitto_conf.rfind("# INSECURE: ", 0) == 0);
  CHECK(rendered.acl.rfind("# INSECURE: ", 0) == 0);
  CHECK(value(rendered.mosquitto_conf, "allow_anonymous") == "true");
  CHECK(values(rendered.mosquitto_conf, "cafile").empty());
  CHECK(values(rendered.mosquitto_conf, "bridge_certfile").empty());
}

TEST_CASE("the identity ACL binds every grant to a certificate CN", "[render][acl][tls]") {
  const Topology t = example();
  const std::string text = render(t, t.site("par"), {"/srv/nova/par", {}, {}, "/nonexistent-pki", false, {}}).acl;
  CHECK(text.find("%c") == std::string::npos);
  const auto acl = acl_sections(text);
  CHECK(acl.at("").empty());  // nothing for anonymous clients (and they are refused anyway)
  CHECK(acl.at("pattern") == std::vector<std::string>{"pattern readwrite nova-bridge/probe/%u"});
  // The site's node: its own up topics except a link, its own down topics, its sensors.
  CHECK(acl.at("agent-par") == std::vector<std::string>{"topic deny nova/v1/up/agent-par/link",
                                                          "topic write nova/v1/up/agent-par/#",
                                                          "topic read nova/v1/down/cloud/eu/par/agent-par/#",
                                                          "topic read nova/v1/bundle/#",
                                                          "topic read nova/v1/sensor/agent-par/+",
                                                          "topic write nova/v1/sensor/agent-par/+/error",
                                                          "topic write nova/v1/local/agent-par/#",
                                                          "topic write nova/v1/resident/eu-west/agent-par/#"});
  CHECK(acl.count("agent-eu") == 0);  // a node of another site has nothing here
  // A child's bridge: the up topics of its subtree only (issue 10: not nova/v1/up/#, so
  // it cannot forge another subtree's records). par-a1 is an access site with three nodes,
  // in par's region eu-west, so its bridge forwards the region's resident data too.
  CHECK(acl.at("bridge.par-a1") == std::vector<std::string>{"topic write nova/v1/up/par-a1/#",
                                                              "topic write nova/v1/up/gw-par-a1/#",
                                                              "topic write nova/v1/up/dev-par-a1-1/#",
                                                              "topic write nova/v1/up/dev-par-a1-2/#",
                                                              "topic write nova/v1/up/nova-cloud/#",
                                                              "topic write nova/v1/resident/eu-west/#",
                                                              "topic read nova/v1/down/cloud/eu/par/par-a1/#",
                                                              "topic read nova/v1/bundle/#"});
  CHECK(acl.at(nova::bridge::kCloudServiceUser) ==
        std::vector<std::string>{"topic write nova/v1/up/nova-cloud/#",
                                 "topic read nova/v1/up/#", "topic readwrite nova/v1/down/#",
                                 "topic readwrite nova/v1/bundle/#", "topic readwrite nova/v1/cloud/#",
                                 "topic read $SYS/#", "topic read nova/v1/resident/eu-west/#",
                                 "topic write nova/v1/resident/eu-west/probe/nova-cloud"});
  CHECK(acl.at(nova::bridge::kMonitorIdentity) ==
        std::vector<std::string>{"topic read nova/v1/up/+/link", "topic read $SYS/broker/nova/acl/denied/#",
                                 "topic read $SYS/broker/nova/tls/refused/#"});
}

TEST_CASE("an operator enrolled in the PKI folder reads everything upward and nothing else", "[render][acl][tls]") {
  const Topology t = example();
  // The renderer reads only the names of the identity folders.
  const fs::path pki = fs::temp_directory_path() / ("nova-render-operators-" + std::to_string(::getpid()));
  fs::remove_all(pki);
  for (const char* cn : {"operator.ops", "operator.nova-monitor", "dev-par-a1-1"}) fs::create_directories(pki / "identities" / cn);
  for (const char* site : {"cloud", "par-a1"}) {
    INFO("site " << site);
    const auto acl = acl_sections(render(t, t.site(site), {std::string("/srv/nova/") + site, {}, {}, pki, false, {}}).acl);
    CHECK(acl.at("operator.ops") == std::vector<std::string>{"topic read nova/v1/up/#", "topic read nova/v1/resident/#"});
    // The link monitor keeps its narrower grant.
    CHECK(acl.at(nova::bridge::kMonitorIdentity) ==
          std::vector<std::string>{"topic read nova/v1/up/+/link", "topic read $SYS/broker/nova/acl/denied/#",
                                 "topic read $SYS/broker/nova/tls/refused/#"});
  }
  fs::remove_all(pki);
}

TEST_CASE("a regional bridge carries the links of its subtree and of what fails over into it", "[render][acl][tls]") {
  const Topology t = example();
  std::vector<std::string> carried;
  for (const auto* s : nova::bridge::link_carriers(t, t.site("eu"))) carried.push_back(s->id());
  CHECK(carried == std::vector<std::string>{"eu", "par", "ber", "par-a1", "par-a2", "ber-a1", "ber-a2"});
}

TEST_CASE("mosquitto_acl_file renders Mosquitto's acl_file instead of the plugin (a benchmark's baseline)",
          "[render]") {
  const Topology t = example();
  RenderOptions options;
  options.data_dir = "/srv/nova/par";
  options.insecure_plaintext = true;
  options.mosquitto_acl_file = true;
  const std::string conf = render(t, t.site("par"), options).mosquitto_conf;
  CHECK(value(conf, "acl_file") == "/srv/nova/par/acl");
  CHECK(values(conf, "plugin").empty());
  CHECK(values(conf, "plugin_opt_acl_file").empty());
  CHECK(values(conf, "plugin_opt_log_file").empty());
}

TEST_CASE("write_site refuses an ACL plugin path with no file, naming the field", "[render]") {
  const Topology t = example();
  const fs::path dir = fs::temp_directory_path() / ("nova-render-plugin-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  RenderOptions options;
  options.insecure_plaintext = true;
  options.acl_plugin = dir / "no-such-plugin.so";
  const auto refused = nova::bridge::write_site(t, t.site("par"), dir, options);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().path == "acl_plugin");
  CHECK(refused.error().message().find("no-such-plugin.so") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "mosquitto.conf"));
  fs::remove_all(dir);
}

TEST_CASE("write_site in TLS mode needs the PKI's files and names the field", "[render][tls]") {
  const Topology t = example();
  const fs::path dir = fs::temp_directory_path() / ("nova-render-tls-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto none = nova::bridge::write_site(t, t.site("par"), dir);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().path == "pki_dir");
  RenderOptions options;
  options.pki_dir = dir / "no-pki";
  auto missing = nova::bridge::write_site(t, t.site("par"), dir, options);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().path == "pki_dir");
  CHECK(missing.error().message().find("trust/ca.pem") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("update bundles come down every bridge, nodes read them, only nova-cloud writes them",
          "[render][acl][tls]") {
  const Topology t = example();
  const std::vector<std::string> conf = directives(conf_of(t, "par-a1"));
  CHECK(std::count(conf.begin(), conf.end(), "topic nova/v1/bundle/# in 1") == 1);
  CHECK(conf_of(t, "cloud").find("nova/v1/bundle") == std::string::npos);  // the root has no bridge
  const auto acl = acl_sections(render(t, t.site("par"), {"/srv/nova/par", {}, {}, "/nonexistent-pki", false, {}}).acl);
  for (const auto& [user, lines] : acl) {
    INFO("user " << user);
    const bool reads = std::count(lines.begin(), lines.end(), "topic read nova/v1/bundle/#") == 1;
    const bool writes = std::count(lines.begin(), lines.end(), "topic write nova/v1/bundle/#") == 1 ||
                        std::count(lines.begin(), lines.end(), "topic readwrite nova/v1/bundle/#") == 1;
    // par's own bridge writes what it brings down (re-sent retained to later subscribers).
    const bool writer = user == nova::bridge::kCloudServiceUser || user == "bridge.par";
    CHECK(writes == writer);
    const bool reader = user == "agent-par" || user.rfind("bridge.par-", 0) == 0;
    if (reader) CHECK(reads);
  }
  // Plaintext (lab) mode: anonymous clients, the nodes there, read them too.
  const auto plain = acl_sections(render(t, t.site("par"), {"/srv/nova/par", {}, {}, {}, true, {}}).acl);
  CHECK(std::count(plain.at("").begin(), plain.at("").end(), "topic read nova/v1/bundle/#") == 1);
}

TEST_CASE("resident data is mapped up only inside its region and granted only there", "[render][acl][residency]") {
  const Topology t = example();
  const std::string resident_eu = "nova/v1/resident/eu-west/# out 1";
  // Inside eu-west every bridge carries it (access -> metro -> regional) ...
  for (const char* site : {"par-a1", "ber-a2", "par", "ber"}) {
    INFO("site " << site);
    const auto maps = values(conf_of(t, site), "topic");
    CHECK(std::count(maps.begin(), maps.end(), resident_eu) == 1);
  }
  // ... the region's top site eu keeps it (its parent, the cloud, is in no region) ...
  for (const std::string& map : values(conf_of(t, "eu"), "topic")) CHECK(map.find("resident") == std::string::npos);
  // ... and us-east's bridges carry only their own region's.
  CHECK(values(conf_of(t, "nyc-a1"), "topic").at(1) == "nova/v1/resident/us-east/# out 1");
  for (const std::string& map : values(conf_of(t, "us"), "topic")) CHECK(map.find("resident") == std::string::npos);

  // The cloud's ACL grants no resident write to anyone: no bridge may bring it there.
  const std::string cloud_acl = render(t, t.site("cloud"), {"/srv/nova/cloud", {}, {}, "/nonexistent-pki", false, {}, false}).acl;
  CHECK(cloud_acl.find("resident") == std::string::npos);
  // At eu, the metros' bridges write it and the regional store (nova-cloud) reads it.
  const auto eu = acl_sections(render(t, t.site("eu"), {"/srv/nova/eu", {}, {}, "/nonexistent-pki", false, {}, false}).acl);
  const auto& par_bridge = eu.at("bridge.par");
  CHECK(std::count(par_bridge.begin(), par_bridge.end(), "topic write nova/v1/resident/eu-west/#") == 1);
  const auto& store = eu.at(nova::bridge::kCloudServiceUser);
  CHECK(std::count(store.begin(), store.end(), "topic read nova/v1/resident/eu-west/#") == 1);
  // A site with no region (a topology without residency) renders no resident line at all.
  auto plain = Topology::parse_yaml(R"(
sites:
  - {id: c, level: 1, port: 1}
  - {id: r, level: 2, parent: c, port: 2}
nodes:
  - {id: n, site: r}
)");
  REQUIRE(plain.ok());
  CHECK(conf_of(*plain, "r").find("resident") == std::string::npos);
  CHECK(render(*plain, plain->site("r"), {"/srv/nova/r", {}, {}, "/nonexistent-pki", false, {}, false}).acl.find("resident") ==
        std::string::npos);
}

namespace {

constexpr const char* kTunnelled = R"(
name: tunnelled
links: wireguard
wireguard: {network: 10.77.0.0/16}
sites:
  - {id: cloud, level: 1, port: 8883, wireguard: {endpoint: 192.0.2.1}}
  - {id: eu, level: 2, parent: cloud, port: 8884, wireguard: {endpoint: "192.0.2.2:51000"}}
  - {id: par, level: 3, parent: eu, backups: [cloud], port: 8885}
)";

Topology tunnelled() {
  auto t = Topology::parse_yaml(kTunnelled);
  REQUIRE(t.ok());
  return std::move(t).value();
}

}  // namespace

TEST_CASE("links: wireguard: bridges dial tunnel addresses, parents take bridges on their tunnel address only",
          "[render][wireguard]") {
  const Topology t = tunnelled();
  // par dials eu, then its backup cloud, at their tunnel addresses.
  CHECK(value(conf_of(t, "par"), "address") == "10.77.0.2:8884 10.77.0.1:8883");
  // A leaf keeps one listener (local clients); eu adds one on its tunnel address, with TLS.
  CHECK(values(conf_of(t, "par"), "listener") == std::vector<std::string>{"8885 127.0.0.1"});
  const std::string eu = conf_of(t, "eu");
  CHECK(values(eu, "listener") == std::vector<std::string>{"8884 127.0.0.1", "8884 10.77.0.2"});
  CHECK(values(eu, "require_certificate") == std::vector<std::string>{"true", "true"});
  CHECK(values(eu, "certfile").size() == 2);
  // Direct links are unchanged: one listener, listener addresses dialled.
  CHECK(values(conf_of(example(), "sfo-a2"), "listener").size() == 1);
}

TEST_CASE("links: wireguard: one wg-quick peer per neighbour, keepalive where behind NAT", "[render][wireguard]") {
  const Topology t = tunnelled();
  const std::map<std::string, std::string> keys{{"cloud", "PUB-cloud"}, {"eu", "PUB-eu"}, {"par", "PUB-par"}};
  const std::string par = nova::bridge::render_wireguard(t, t.site("par"), "PRIV-par", keys);
  CHECK(par.find("[Interface]\nPrivateKey = PRIV-par\nAddress = 10.77.0.3/32\nListenPort = 51820\n") !=
        std::string::npos);
  CHECK(par.find("[Peer]\nPublicKey = PUB-eu\nAllowedIPs = 10.77.0.2/32\nEndpoint = 192.0.2.2:51000\n") !=
        std::string::npos);
  CHECK(par.find("[Peer]\nPublicKey = PUB-cloud\nAllowedIPs = 10.77.0.1/32\nEndpoint = 192.0.2.1:51820\n") !=
        std::string::npos);
  CHECK(values(par, "PersistentKeepalive =") == std::vector<std::string>{"25", "25"});  // par has no endpoint
  const std::string cloud = nova::bridge::render_wireguard(t, t.site("cloud"), "PRIV-cloud", keys);
  // cloud's peers: its child eu and its backup child par, which it cannot dial (no endpoint).
  CHECK(values(cloud, "PublicKey =") == std::vector<std::string>{"PUB-eu", "PUB-par"});
  CHECK(values(cloud, "Endpoint =") == std::vector<std::string>{"192.0.2.2:51000"});
  CHECK(values(cloud, "PersistentKeepalive =").empty());
}

TEST_CASE("links: wireguard: write_site writes wg-nova.conf 0600 and keeps the keys it made", "[render][wireguard]") {
  const Topology t = tunnelled();
  const fs::path dir = fs::temp_directory_path() / ("nova-render-wg-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  RenderOptions insecure;
  insecure.insecure_plaintext = true;
  CHECK(nova::bridge::write_site(t, t.site("par"), dir / "par", insecure).error().message().starts_with("pki_dir: "));
  CHECK_FALSE(fs::exists(dir / "par" / "mosquitto.conf"));  // refused before anything was written
  insecure.pki_dir = dir / "pki";
  REQUIRE(nova::bridge::write_site(t, t.site("par"), dir / "par", insecure).ok());
  const fs::path conf = dir / "par" / nova::bridge::kWireguardConfigFile;
  CHECK((fs::status(conf).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
  auto read = [](const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  };
  const std::string first = read(conf);
  REQUIRE(nova::bridge::write_site(t, t.site("eu"), dir / "eu", insecure).ok());
  REQUIRE(nova::bridge::write_site(t, t.site("par"), dir / "par", insecure).ok());
  CHECK(read(conf) == first);  // same keys: nothing regenerated
  CHECK(first.find("PublicKey = " + read(dir / "pki" / "wireguard" / "eu.pub").substr(0, 44)) != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("links: wireguard: nova-bridge up refuses it", "[render][wireguard]") {
  nova::bridge::HierarchyOptions options;
  options.run_dir = fs::temp_directory_path() / ("nova-render-wg-up-" + std::to_string(::getpid()));
  options.insecure_plaintext = true;
  const auto started = nova::bridge::Hierarchy::start(tunnelled(), options);
  REQUIRE_FALSE(started.ok());
  CHECK(started.error().path == "links");
  CHECK_FALSE(fs::exists(options.run_dir));  // refused before anything was made
}
