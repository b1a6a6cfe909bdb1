// The PKI's files judged by an outside client, the openssl CLI, and the nova-pki CLI
// itself: chains verify with CRLs checked along the whole chain, a foreign CA's leaf,
// an expired leaf and a revoked one are refused, renewal keeps the CN and verifies.
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>

#include "nova/security/audit_log.h"
#include "nova/security/layout.h"
#include "pki_fixture.h"

using nova::security::Layout;
using nova::security::testing::CommandResult;
using nova::security::testing::run;
using nova::security::testing::TempDir;
namespace fs = std::filesystem;

namespace {

CommandResult pki(const fs::path& dir, std::vector<std::string> args) {
  args.insert(args.begin(), {NOVA_PKI_EXE, "--dir", dir.string()});
  return run(args);
}

// `openssl verify` of a leaf's cert.pem (leaf + intermediate) against a PKI's trust
// anchor and CRL bundle, checking every certificate of the chain against its CRL.
CommandResult verify(const Layout& trust, const fs::path& cert, const std::string& purpose = "") {
  std::vector<std::string> args{
      "openssl",     "verify",         "-CAfile",  trust.trust_ca().string(), "-untrusted",
      cert.string(), "-crl_check_all", "-CRLfile", trust.trust_crl().string()};
  if (!purpose.empty()) args.insert(args.end(), {"-purpose", purpose});
  args.push_back(cert.string());
  return run(args);
}

std::string x509_text(const fs::path& cert) {
  return run({"openssl", "x509", "-in", cert.string(), "-noout", "-text"}).output;
}

// A PKI made by `nova-pki topology` over the five-tier example.
struct FiveTier {
  TempDir dir;
  Layout layout{dir.path() / "pki"};
  CommandResult made = pki(layout.dir(), {"topology", NOVA_FIVE_TIER_YAML});
};

}  // namespace

TEST_CASE("every identity of the five-tier topology verifies with openssl along the whole chain",
          "[security]") {
  FiveTier t;
  INFO(t.made.output);
  REQUIRE(t.made.exit_code == 0);
  // 15 brokers, 14 bridges, 30 nodes, nova-cloud; regions cloud, eu, us.
  CHECK_THAT(t.made.output, Catch::Contains("3 regions, 60 identities issued, 0 already issued"));

  std::size_t verified = 0;
  for (const auto& entry : fs::directory_iterator(t.layout.identities_dir())) {
    const auto result = verify(t.layout, entry.path() / "cert.pem");
    INFO(entry.path().filename().string() << ": " << result.output);
    CHECK(result.exit_code == 0);
    verified += result.exit_code == 0 ? 1 : 0;
  }
  CHECK(verified == 60);

  // A second run keeps what exists.
  const auto again = pki(t.layout.dir(), {"topology", NOVA_FIVE_TIER_YAML});
  CHECK(again.exit_code == 0);
  CHECK_THAT(again.output, Catch::Contains("0 identities issued, 60 already issued"));

  // Regions follow the tree: a device under par-a1 belongs to eu, a broker of nyc to us.
  CHECK_THAT(x509_text(t.layout.identity_cert("dev-par-a1-1")),
             Catch::Contains("Issuer: O = NovaCron Edge, OU = region eu, CN = nova-ca.eu"));
  CHECK_THAT(x509_text(t.layout.identity_cert("nyc")), Catch::Contains("CN = nova-ca.us"));
  CHECK_THAT(x509_text(t.layout.identity_cert("cloud")), Catch::Contains("CN = nova-ca.cloud"));
  CHECK_THAT(x509_text(t.layout.identity_cert("nova-cloud")),
             Catch::Contains("CN = nova-ca.cloud"));
}

TEST_CASE("openssl reads the extensions each role needs", "[security]") {
  FiveTier t;
  REQUIRE(t.made.exit_code == 0);
  const auto intermediate = x509_text(t.layout.ca_cert("eu"));
  CHECK_THAT(intermediate, Catch::Contains("CA:TRUE, pathlen:0"));
  CHECK_THAT(intermediate, Catch::Contains("Certificate Sign, CRL Sign"));
  CHECK_THAT(intermediate, Catch::Contains("X509v3 Authority Key Identifier"));
  CHECK_THAT(x509_text(t.layout.root_cert()),
             Catch::Contains("CA:TRUE") && Catch::Contains("NIST CURVE: P-256"));

  const auto broker = x509_text(t.layout.identity_cert("par"));
  CHECK_THAT(broker, Catch::Contains("Subject: O = NovaCron Edge, OU = broker, CN = par"));
  CHECK_THAT(broker, Catch::Contains("TLS Web Server Authentication"));
  CHECK_THAT(broker, Catch::Contains("DNS:par, DNS:localhost, IP Address:127.0.0.1"));
  CHECK_THAT(broker,
             Catch::Contains("CA:FALSE") && Catch::Contains("X509v3 Subject Key Identifier"));
  const auto bridge = x509_text(t.layout.identity_cert("bridge.par"));
  CHECK_THAT(bridge, Catch::Contains("CN = bridge.par") &&
                         Catch::Contains("TLS Web Client Authentication"));
  CHECK_THAT(bridge, !Catch::Contains("Server Authentication"));

  // The purpose each certificate may serve, as a TLS stack checks it.
  CHECK(verify(t.layout, t.layout.identity_cert("par"), "sslserver").exit_code == 0);
  CHECK(verify(t.layout, t.layout.identity_cert("gw-par-a1"), "sslclient").exit_code == 0);
  CHECK(verify(t.layout, t.layout.identity_cert("gw-par-a1"), "sslserver").exit_code != 0);
  CHECK(verify(t.layout, t.layout.identity_cert("par"), "sslclient").exit_code != 0);

  // The key in key.pem is the key the certificate names.
  const auto from_key =
      run({"openssl", "pkey", "-in", t.layout.identity_key("par").string(), "-pubout"});
  const auto from_cert =
      run({"openssl", "x509", "-in", t.layout.identity_cert("par").string(), "-noout", "-pubkey"});
  CHECK(from_key.output == from_cert.output);
}

TEST_CASE("a leaf from a foreign CA is refused", "[security]") {
  FiveTier ours;
  TempDir other;
  const Layout foreign(other.path() / "pki");
  REQUIRE(pki(foreign.dir(), {"topology", NOVA_FIVE_TIER_YAML}).exit_code == 0);
  // Same names, same shape, another root.
  const auto result = verify(ours.layout, foreign.identity_cert("dev-par-a1-1"));
  CHECK(result.exit_code != 0);
  CHECK_THAT(result.output, Catch::Contains("unable to get local issuer certificate"));
}

TEST_CASE("an expired leaf is refused", "[security]") {
  TempDir dir;
  const Layout layout(dir.path() / "pki");
  REQUIRE(pki(layout.dir(), {"init-root"}).exit_code == 0);
  REQUIRE(pki(layout.dir(), {"init-intermediate", "--region", "eu"}).exit_code == 0);
  const auto issued = pki(layout.dir(), {"issue", "--role", "node", "--name", "old", "--region",
                                         "eu", "--backdate", "10", "--days", "1"});
  INFO(issued.output);
  REQUIRE(issued.exit_code == 0);
  const auto result = verify(layout, layout.identity_cert("old"));
  CHECK(result.exit_code != 0);
  CHECK_THAT(result.output, Catch::Contains("certificate has expired"));
}

TEST_CASE("a revoked leaf and a revoked intermediate's leaves are refused", "[security]") {
  FiveTier t;
  REQUIRE(t.made.exit_code == 0);
  // Keep copies: revoking deletes the identity's folder.
  const fs::path victim = t.dir.path() / "victim.pem";
  const fs::path us_leaf = t.dir.path() / "agent-us.pem";
  fs::copy_file(t.layout.identity_cert("dev-par-a1-1"), victim);
  fs::copy_file(t.layout.identity_cert("agent-us"), us_leaf);
  REQUIRE(verify(t.layout, victim).exit_code == 0);

  const auto revoked = pki(t.layout.dir(), {"revoke", "--role", "node", "--name", "dev-par-a1-1"});
  INFO(revoked.output);
  REQUIRE(revoked.exit_code == 0);
  auto result = verify(t.layout, victim);
  CHECK(result.exit_code != 0);
  CHECK_THAT(result.output, Catch::Contains("certificate revoked"));
  CHECK(verify(t.layout, t.layout.identity_cert("dev-par-a1-2")).exit_code == 0);

  REQUIRE(pki(t.layout.dir(), {"revoke", "--region", "us"}).exit_code == 0);
  const auto root_crl =
      run({"openssl", "crl", "-in", t.layout.root_crl().string(), "-noout", "-text"}).output;
  CHECK_THAT(root_crl, Catch::Contains("Serial Number:"));
  result = verify(t.layout, us_leaf);
  CHECK(result.exit_code != 0);
  CHECK(verify(t.layout, t.layout.identity_cert("agent-eu")).exit_code == 0);

  // Recovery: a new intermediate for the region, and its leaves re-signed by it.
  REQUIRE(pki(t.layout.dir(), {"init-intermediate", "--region", "us"}).exit_code == 0);
  const auto renewed = pki(t.layout.dir(), {"renew", "--within", "0"});
  INFO(renewed.output);
  CHECK(renewed.exit_code == 0);
  CHECK_THAT(renewed.output,
             Catch::Contains("29 renewed, 0 failed"));  // us: 7 brokers, 7 bridges, 15 nodes
  CHECK(verify(t.layout, t.layout.identity_cert("agent-us")).exit_code == 0);
}

TEST_CASE("an intermediate whose folder was destroyed is revoked from a leaf's cert.pem and replaced",
          "[security]") {
  FiveTier t;
  REQUIRE(t.made.exit_code == 0);
  const fs::path kept = t.dir.path() / "agent-us.pem";  // a device's copy: leaf + intermediate
  fs::copy_file(t.layout.identity_cert("agent-us"), kept);
  const auto old_serial = run({"openssl", "x509", "-in", t.layout.ca_cert("us").string(), "-noout", "-serial"});
  fs::remove_all(t.layout.ca_dir("us"));

  const auto plain = pki(t.layout.dir(), {"revoke", "--region", "us"});
  CHECK(plain.exit_code == 2);
  CHECK_THAT(plain.output, Catch::Contains("--region: no intermediate CA for region 'us'"));
  const auto lost = pki(t.layout.dir(), {"revoke", "--region", "us", "--ca-cert", kept.string()});
  INFO(lost.output);
  REQUIRE(lost.exit_code == 0);
  // openssl prints "serial=<hex>"; the CRL lists "Serial Number: <hex>".
  const std::string serial = old_serial.output.substr(old_serial.output.find('=') + 1, 32);
  CHECK_THAT(run({"openssl", "crl", "-in", t.layout.root_crl().string(), "-noout", "-text"}).output,
             Catch::Contains("Serial Number: " + serial));
  CHECK(verify(t.layout, kept).exit_code != 0);

  REQUIRE(pki(t.layout.dir(), {"init-intermediate", "--region", "us"}).exit_code == 0);
  const auto renewed = pki(t.layout.dir(), {"renew", "--within", "0"});
  INFO(renewed.output);
  CHECK(renewed.exit_code == 0);
  CHECK_THAT(renewed.output, Catch::Contains("29 renewed, 0 failed"));
  CHECK(verify(t.layout, t.layout.identity_cert("agent-us")).exit_code == 0);
  CHECK(verify(t.layout, kept).exit_code != 0);
  const auto no_region = pki(t.layout.dir(), {"revoke", "--ca-cert", kept.string()});
  CHECK(no_region.exit_code == 2);
}

TEST_CASE("renew keeps the CN, and the renewed certificate verifies", "[security]") {
  TempDir dir;
  const Layout layout(dir.path() / "pki");
  REQUIRE(pki(layout.dir(), {"init-root"}).exit_code == 0);
  REQUIRE(pki(layout.dir(), {"init-intermediate", "--region", "eu"}).exit_code == 0);
  REQUIRE(pki(layout.dir(), {"issue", "--role", "broker", "--name", "par", "--region", "eu",
                             "--days", "3", "--san", "IP:10.1.2.3"})
              .exit_code == 0);
  REQUIRE(pki(layout.dir(), {"issue", "--role", "sensor", "--name", "dev-1.temp", "--region", "eu"})
              .exit_code == 0);
  const auto serial_before =
      run({"openssl", "x509", "-in", layout.identity_cert("par").string(), "-noout", "-serial"});

  const auto renewed = pki(layout.dir(), {"renew", "--within", "7"});
  INFO(renewed.output);
  CHECK(renewed.exit_code == 0);
  CHECK_THAT(renewed.output, Catch::Contains("1 renewed, 0 failed"));
  const auto text = x509_text(layout.identity_cert("par"));
  CHECK_THAT(text, Catch::Contains("CN = par") && Catch::Contains("IP Address:10.1.2.3"));
  CHECK(run({"openssl", "x509", "-in", layout.identity_cert("par").string(), "-noout", "-serial"})
            .output != serial_before.output);
  CHECK(verify(layout, layout.identity_cert("par"), "sslserver").exit_code == 0);
  CHECK(verify(layout, layout.identity_cert("sensor.dev-1.temp"), "sslclient").exit_code == 0);

  // renew --name: one identity now, far from its expiry (the sensor's 90 days).
  const auto sensor_serial = run({"openssl", "x509", "-in", layout.identity_cert("sensor.dev-1.temp").string(),
                                  "-noout", "-serial"});
  const auto par_serial =
      run({"openssl", "x509", "-in", layout.identity_cert("par").string(), "-noout", "-serial"});
  const auto one = pki(layout.dir(), {"renew", "--role", "sensor", "--name", "dev-1.temp"});
  INFO(one.output);
  CHECK(one.exit_code == 0);
  CHECK_THAT(one.output, Catch::StartsWith("sensor.dev-1.temp serial "));
  CHECK(run({"openssl", "x509", "-in", layout.identity_cert("sensor.dev-1.temp").string(), "-noout", "-serial"})
            .output != sensor_serial.output);
  CHECK(run({"openssl", "x509", "-in", layout.identity_cert("par").string(), "-noout", "-serial"}).output ==
        par_serial.output);
  CHECK(verify(layout, layout.identity_cert("sensor.dev-1.temp"), "sslclient").exit_code == 0);
  const auto unknown = pki(layout.dir(), {"renew", "--name", "nobody"});
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.output, Catch::Contains("--name: no identity 'nobody'"));
  const auto neither = pki(layout.dir(), {"renew"});
  CHECK(neither.exit_code == 2);
  CHECK_THAT(neither.output, Catch::Contains("renew: give --within or --name"));
}

TEST_CASE("nova-pki's exit codes and errors name the argument", "[security]") {
  TempDir dir;
  const fs::path d = dir.path() / "pki";
  auto help = pki(d, {"--help"});
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.output, Catch::Contains("init-intermediate") && Catch::Contains("Exit codes"));
  CHECK(pki(d, {"issue", "--bogus"}).exit_code == 2);

  REQUIRE(pki(d, {"init-root"}).exit_code == 0);
  auto twice = pki(d, {"init-root"});
  CHECK(twice.exit_code == 2);
  CHECK_THAT(twice.output, Catch::Contains("nova-pki: --dir: a root CA already exists"));

  auto role = pki(d, {"issue", "--role", "admin", "--name", "x", "--region", "eu"});
  CHECK(role.exit_code == 2);
  CHECK_THAT(role.output, Catch::Contains("nova-pki: --role: 'admin' is not one of"));
  auto region = pki(d, {"issue", "--role", "node", "--name", "x", "--region", "eu"});
  CHECK(region.exit_code == 2);
  CHECK_THAT(region.output,
             Catch::Contains("nova-pki: --region: no intermediate CA for region 'eu'"));
  auto name = pki(d, {"issue", "--role", "sensor", "--name", "x", "--region", "eu"});
  CHECK(name.exit_code == 2);
  CHECK_THAT(name.output, Catch::Contains("nova-pki: --name: 'x': a sensor is <node>.<sensor>"));

  // The root taken offline: making an intermediate needs it, and says so.
  fs::rename(d / "root" / "ca.key", dir.path() / "offline.key");
  auto offline = pki(d, {"init-intermediate", "--region", "eu"});
  CHECK(offline.exit_code == 1);
  CHECK_THAT(
      offline.output,
      Catch::Contains("root/ca.key: not present: the CA key is needed to make an intermediate"));

  auto bad_topology = pki(d, {"topology", (dir.path() / "absent.yaml").string()});
  CHECK(bad_topology.exit_code == 2);
  CHECK_THAT(bad_topology.output, Catch::Contains("invalid topology"));

  fs::rename(dir.path() / "offline.key", d / "root" / "ca.key");
  REQUIRE(pki(d, {"init-intermediate", "--region", "eu"}).exit_code == 0);
  REQUIRE(pki(d, {"issue", "--role", "operator", "--name", "alice", "--region", "eu"}).exit_code ==
          0);
  const fs::path device = dir.path() / "export";
  auto exported =
      pki(d, {"export", "--role", "operator", "--name", "alice", "--to", device.string()});
  CHECK(exported.exit_code == 0);
  CHECK(fs::exists(device / "key.pem"));
  CHECK(pki(d, {"export", "--name", "bob", "--to", device.string()}).exit_code == 2);
  CHECK(pki(d, {"signing-key", "--name", "nova-cloud"}).exit_code == 0);
  CHECK(pki(d, {"crl"}).exit_code == 0);
}

TEST_CASE("nova-pki topology refuses two identities with one CN", "[security]") {
  TempDir dir;
  const fs::path file = dir.path() / "clash.yaml";
  // A node named nova-cloud would share the cloud's CN, and with it the cloud's rights
  // under use_identity_as_username. (Site and node ids are unique already: tiers refuses
  // a node named like a site.)
  std::ofstream(file) << "name: clash\n"
                         "sites:\n"
                         "  - {id: cloud, level: 1, port: 18830}\n"
                         "  - {id: eu, level: 2, parent: cloud, port: 18831}\n"
                         "nodes:\n"
                         "  - {id: nova-cloud, site: eu}\n";
  const auto result = pki(dir.path() / "pki", {"topology", file.string()});
  CHECK(result.exit_code == 2);
  CHECK_THAT(
      result.output,
      Catch::Contains("invalid topology: the cloud service and node 'nova-cloud' would share "
                      "the certificate CN 'nova-cloud'"));
  CHECK_FALSE(fs::exists(dir.path() / "pki" / "identities"));
}

TEST_CASE("openssl refuses a leaf once its issuer's CRL has expired", "[security]") {
  FiveTier t;
  REQUIRE(t.made.exit_code == 0);
  // 40 days on: the 90-day leaf is still valid, the region's 30-day CRL is not.
  const auto later = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now() +
                                                          std::chrono::hours(24 * 40));
  const auto cert = t.layout.identity_cert("gw-par-a1").string();
  const auto result = run({"openssl", "verify", "-attime", std::to_string(later), "-CAfile",
                           t.layout.trust_ca().string(), "-untrusted", cert, "-crl_check_all",
                           "-CRLfile", t.layout.trust_crl().string(), cert});
  CHECK(result.exit_code != 0);
  CHECK_THAT(result.output, Catch::Contains("CRL has expired"));
}

TEST_CASE("nova-pki topology puts a broker's non-loopback listener address in its SAN",
          "[security]") {
  TempDir dir;
  const fs::path file = dir.path() / "lan.yaml";
  std::ofstream(file)
      << "sites:\n"
         "  - {id: cloud, level: 1, address: 192.0.2.10, port: 18830}\n"
         "  - {id: eu, level: 2, parent: cloud, address: broker-eu.example, port: 18831}\n";
  const Layout layout(dir.path() / "pki");
  const auto made = pki(layout.dir(), {"topology", file.string()});
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  CHECK_THAT(
      x509_text(layout.identity_cert("cloud")),
      Catch::Contains("DNS:cloud, DNS:localhost, IP Address:127.0.0.1, IP Address:192.0.2.10"));
  CHECK_THAT(x509_text(layout.identity_cert("eu")),
             Catch::Contains("IP Address:127.0.0.1, DNS:broker-eu.example"));
}

// Issue 10 item 9: nova-pki's certificate actions, done or refused, are in <dir>/audit.log,
// chained as nova-cloud's log is (security/audit_log.h).
TEST_CASE("nova-pki appends every certificate action to its audit log", "[security][audit]") {
  TempDir dir;
  const fs::path d = dir.path() / "pki";
  REQUIRE(pki(d, {"init-root"}).exit_code == 0);
  REQUIRE(pki(d, {"init-intermediate", "--region", "eu"}).exit_code == 0);
  REQUIRE(pki(d, {"issue", "--role", "node", "--name", "gw-1", "--region", "eu"}).exit_code == 0);
  CHECK(pki(d, {"issue", "--role", "node", "--name", "gw-2", "--region", "us"}).exit_code == 2);
  REQUIRE(pki(d, {"renew", "--within", "3650"}).exit_code == 0);
  REQUIRE(pki(d, {"revoke", "--role", "node", "--name", "gw-1"}).exit_code == 0);
  REQUIRE(pki(d, {"crl"}).exit_code == 0);

  std::ifstream in(d / "audit.log");
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  std::vector<std::string> actions;
  for (const auto& l : lines) {
    const std::size_t at = l.find(R"("action":")") + 10;
    actions.push_back(l.substr(at, l.find('"', at) - at));
  }
  CHECK(actions == std::vector<std::string>{"init-root", "init-intermediate", "issue", "issue",
                                            "renew", "revoke", "crl"});
  CHECK_THAT(lines[2],
             Catch::Contains(R"("actor":"nova-pki","action":"issue","target":"gw-1 serial )") &&
                 Catch::Contains(R"("outcome":"ok")"));
  CHECK_THAT(lines[3], Catch::Contains(R"("target":"node gw-2")") &&
                           Catch::Contains(
                               R"("outcome":"failed: region: no intermediate CA for region 'us')"));
  const auto verdict = nova::security::verify_audit_log(d / "audit.log");
  CHECK_FALSE(verdict.broken_at);
  CHECK(verdict.entries == lines.size());
}
