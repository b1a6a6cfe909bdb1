// The PKI library's own logic, on files in a temporary directory: identity names and
// their errors, what a certificate says, file modes, refusals, revocation bookkeeping
// and renewal. What outside tools make of the files is in openssl_test.cpp.
#include "nova/security/pki.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>

#include "pki_fixture.h"

using namespace nova::security;
using nova::security::testing::TestPki;
namespace fs = std::filesystem;

namespace {

unsigned mode_of(const fs::path& file) {
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

std::string contents(const fs::path& file) {
  std::ifstream in(file);
  return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace

TEST_CASE("common names follow the role", "[security]") {
  CHECK(*common_name(Role::broker, "eu") == "eu");
  CHECK(*common_name(Role::bridge, "par-a1") == "bridge.par-a1");
  CHECK(*common_name(Role::node, "dev-par-a1-1") == "dev-par-a1-1");
  CHECK(*common_name(Role::sensor, "dev-1.temp_2") == "sensor.dev-1.temp_2");
  CHECK(*common_name(Role::cloud, "nova-cloud") == "nova-cloud");
  CHECK(*common_name(Role::cloud, "nova-cloud.2") == "nova-cloud.2");
  CHECK(*common_name(Role::operator_, "alice") == "operator.alice");
}

TEST_CASE("bad names and roles are refused naming the field and the rule", "[security]") {
  auto check = [](Result<std::string> r, const std::string& reason_part) {
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().path == "name");
    CHECK_THAT(r.error().reason, Catch::Contains(reason_part));
  };
  check(common_name(Role::node, ""), "1..48 characters");
  check(common_name(Role::node, "a/b"), "'a/b'");
  check(common_name(Role::node, "a.b"), "'a.b'");  // a dot would let a node pose as a sensor
  check(common_name(Role::node, std::string(49, 'x')), "1..48");
  check(common_name(Role::sensor, "dev-1"), "<node>.<sensor>");
  check(common_name(Role::sensor, "dev-1.a.b"), "<node>.<sensor>");
  check(common_name(Role::cloud, "cloud-2"), "nova-cloud or nova-cloud.<instance>");
  auto role = parse_role("admin");
  REQUIRE_FALSE(role.ok());
  CHECK(role.error().message() ==
        "role: 'admin' is not one of broker, bridge, node, sensor, cloud, operator");
  CHECK(*parse_role("operator") == Role::operator_);
  CHECK(check_region("eu").ok());
  CHECK(check_region("../x").error().path == "region");
}

TEST_CASE("a broker certificate names its site and loopback, and chains to its region",
          "[security]") {
  TestPki t;
  const auto info = t.issue_broker("par", {"DNS:broker.example", "IP:10.0.0.7", "DNS:localhost"});
  CHECK(info.common_name == "par");
  CHECK(info.issuer_common_name == "nova-ca.eu");
  CHECK_FALSE(info.is_ca);
  CHECK(info.subject_alt_names == std::vector<std::string>{"DNS:par", "DNS:localhost",
                                                            "IP:127.0.0.1", "DNS:broker.example",
                                                            "IP:10.0.0.7"});
  CHECK(info.not_after - info.not_before == std::chrono::hours(24 * 90));

  // cert.pem holds the leaf, then the intermediate that issued it.
  const std::string pem = contents(t.layout().identity_cert("par"));
  CHECK(pem.find("BEGIN CERTIFICATE") != pem.rfind("BEGIN CERTIFICATE"));
  CHECK(pem.substr(pem.find("-----END CERTIFICATE-----\n") + 26) ==
        contents(t.layout().ca_cert("eu")));
  auto read_back = read_certificate(t.layout().identity_cert("par"));
  REQUIRE(read_back.ok());
  CHECK(read_back->serial_hex == info.serial_hex);

  auto root = read_certificate(t.layout().root_cert());
  REQUIRE(root.ok());
  CHECK(root->is_ca);
  CHECK(root->common_name == "nova-root-ca");
  CHECK(contents(t.layout().trust_ca()) == contents(t.layout().root_cert()));
}

TEST_CASE("private keys are 0600 in 0700 folders, public files 0644", "[security]") {
  TestPki t;
  t.issue(Role::node, "n1");
  REQUIRE(t.pki.create_signing_key("nova-cloud").ok());
  for (const auto& key :
       {t.layout().root_key(), t.layout().ca_key("eu"), t.layout().ca_key("cloud"),
        t.layout().identity_key("n1"), t.layout().signing_key("nova-cloud")}) {
    INFO(key);
    CHECK(mode_of(key) == 0600);
    CHECK(mode_of(key.parent_path()) == 0700);
  }
  for (const auto& pub : {t.layout().root_cert(), t.layout().identity_cert("n1"),
                          t.layout().trust_crl(), t.layout().signing_public_key("nova-cloud")}) {
    INFO(pub);
    CHECK(mode_of(pub) == 0644);
  }
  // Exported on purpose: the key keeps its mode in the target folder.
  const fs::path to = t.dir.path() / "device";
  REQUIRE(t.pki.export_identity("n1", to).ok());
  CHECK(mode_of(to) == 0700);
  CHECK(mode_of(to / "key.pem") == 0600);
  CHECK(contents(to / "key.pem") == contents(t.layout().identity_key("n1")));
  CHECK(contents(to / "cert.pem") == contents(t.layout().identity_cert("n1")));
  CHECK(contents(to / "ca.pem") == contents(t.layout().trust_ca()));
  CHECK(contents(to / "crl.pem") == contents(t.layout().trust_crl()));
  // No temporary file is left behind by the atomic writes.
  for (const auto& entry : fs::recursive_directory_iterator(t.layout().dir())) {
    CHECK(entry.path().string().find(".tmp.") == std::string::npos);
  }
}

TEST_CASE("issuing refuses what it cannot do, naming the argument", "[security]") {
  TestPki t;
  t.issue(Role::node, "n1");
  IssueRequest request = TestPki::request_for(Role::node, "n1");
  auto again = t.pki.issue(request);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().message() ==
        "name: identity 'n1' is already issued (renew or revoke it first)");

  request.name = "n2";
  request.region = "asia";
  auto no_ca = t.pki.issue(request);
  REQUIRE_FALSE(no_ca.ok());
  CHECK(no_ca.error().path == "region");
  CHECK_THAT(no_ca.error().reason, Catch::Contains("init-intermediate --region asia"));

  request.region = "eu";
  request.days = 0;
  CHECK(t.pki.issue(request).error().path == "days");
  request.days = 90;
  request.subject_alt_names = {"DNS:x"};
  CHECK(t.pki.issue(request).error().message() ==
        "san: only a broker certificate carries subjectAltNames");
  request.role = Role::broker;
  request.subject_alt_names = {"IP:999.1.1.1"};
  CHECK(t.pki.issue(request).error().message() ==
        "san: 'IP:999.1.1.1': expected DNS:<name> or IP:<address>");
  CHECK_FALSE(t.pki.has_identity("n2"));
}

TEST_CASE("leaves are issued with the intermediate alone: the root key may be offline",
          "[security]") {
  TestPki t;
  fs::remove(t.layout().root_key());
  CHECK(t.issue(Role::node, "n1").issuer_common_name == "nova-ca.eu");
  REQUIRE(t.pki.revoke_identity("n1").ok());
  REQUIRE(t.pki.regenerate_crls().ok());  // the root's CRL file is kept as it was
  auto region = t.pki.init_intermediate("us");
  REQUIRE_FALSE(region.ok());
  CHECK_THAT(region.error().message(),
             Catch::Contains("root/ca.key: not present: the CA key is needed to make an "
                             "intermediate"));
}

TEST_CASE("revoking a leaf lists its serial on its intermediate's CRL and frees its name",
          "[security]") {
  TestPki t;
  const auto victim = t.issue(Role::node, "victim");
  const auto before = contents(t.layout().trust_crl());
  REQUIRE(t.pki.revoke_identity("victim").ok());
  CHECK_FALSE(t.pki.has_identity("victim"));
  CHECK_THAT(contents(t.layout().ca_revoked("eu")), Catch::StartsWith(victim.serial_hex + "\t"));
  CHECK(contents(t.layout().trust_crl()) != before);
  CHECK(t.pki.revoke_identity("victim").error().path == "name");
  // The name may be enrolled again, with a new key and serial.
  CHECK(t.issue(Role::node, "victim").serial_hex != victim.serial_hex);
}

TEST_CASE("revoking an intermediate moves it aside so the region can get a new one", "[security]") {
  TestPki t;
  const auto old_ca = read_certificate(t.layout().ca_cert("eu"));
  REQUIRE(old_ca.ok());
  REQUIRE(t.pki.revoke_intermediate("eu").ok());
  CHECK_FALSE(t.pki.has_intermediate("eu"));
  CHECK(t.pki.regions() == std::vector<std::string>{"cloud"});
  CHECK_THAT(contents(t.layout().root_revoked()),
             Catch::StartsWith(old_ca->serial_hex + "\t") && Catch::EndsWith("\teu\n"));
  auto fresh = t.pki.init_intermediate("eu");
  REQUIRE(fresh.ok());
  CHECK(fresh->serial_hex != old_ca->serial_hex);
}

TEST_CASE("renew re-issues what expires within the window, keeping CN, key and SANs",
          "[security]") {
  TestPki t;
  const auto old_broker = t.issue_broker("par", {"IP:10.0.0.7"}, 5, 1);  // 4 days left
  const auto far = t.issue(Role::node, "far", "eu", 365);
  const std::string key_before = contents(t.layout().identity_key("par"));

  auto report = t.pki.renew(std::chrono::hours(24 * 30));
  CHECK(report.failed.empty());
  REQUIRE(report.renewed.size() == 1);
  const auto& renewed = report.renewed.front();
  CHECK(renewed.common_name == "par");
  CHECK(renewed.serial_hex != old_broker.serial_hex);
  CHECK(renewed.subject_alt_names == old_broker.subject_alt_names);
  CHECK(renewed.not_after > old_broker.not_after);
  CHECK(renewed.not_after - renewed.not_before == std::chrono::hours(24 * 5));
  CHECK(contents(t.layout().identity_key("par")) == key_before);
  CHECK(read_certificate(t.layout().identity_cert("par"))->serial_hex == renewed.serial_hex);
  CHECK(read_certificate(t.layout().identity_cert("far"))->serial_hex == far.serial_hex);
}

TEST_CASE("renew_identity re-issues one leaf now, whatever its expiry, and nothing else",
          "[security]") {
  TestPki t;
  // 90 days, far from expiry: renew --within 30 would leave it alone.
  const auto old_broker = t.issue_broker("par", {"IP:10.0.0.7"}, 90);
  const auto other = t.issue(Role::node, "n1", "eu", 90);
  const std::string key_before = contents(t.layout().identity_key("par"));

  auto renewed = t.pki.renew_identity("par");
  REQUIRE(renewed.ok());
  CHECK(renewed->common_name == "par");
  CHECK(renewed->serial_hex != old_broker.serial_hex);
  CHECK(renewed->subject_alt_names == old_broker.subject_alt_names);
  CHECK(renewed->not_after - renewed->not_before == std::chrono::hours(24 * 90));
  CHECK(contents(t.layout().identity_key("par")) == key_before);
  CHECK(read_certificate(t.layout().identity_cert("par"))->serial_hex == renewed->serial_hex);
  CHECK(read_certificate(t.layout().identity_cert("n1"))->serial_hex == other.serial_hex);

  auto unknown = t.pki.renew_identity("nobody");
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().path == "name");
  fs::remove(t.layout().ca_key("eu"));
  auto no_ca = t.pki.renew_identity("n1");
  REQUIRE_FALSE(no_ca.ok());
  CHECK_THAT(no_ca.error().message(), Catch::Contains("ca.key: not present"));
}

TEST_CASE("renew reports a leaf whose intermediate key is absent and renews the others",
          "[security]") {
  TestPki t;
  t.issue(Role::node, "in-eu", "eu", 1);
  t.issue(Role::node, "in-cloud", "cloud", 1);
  fs::remove(t.layout().ca_key("eu"));
  auto report = t.pki.renew(std::chrono::hours(48));
  REQUIRE(report.renewed.size() == 1);
  CHECK(report.renewed.front().common_name == "in-cloud");
  REQUIRE(report.failed.size() == 1);
  CHECK(report.failed.front().path == "in-eu");
  CHECK_THAT(report.failed.front().reason, Catch::Contains("ca.key: not present"));
}

TEST_CASE("after a region's intermediate is replaced, renew re-signs its leaves with the new one",
          "[security]") {
  TestPki t;
  const auto leaf = t.issue(Role::node, "n1", "eu", 365);
  const auto other = t.issue(Role::node, "n2", "cloud", 365);
  REQUIRE(t.pki.revoke_intermediate("eu").ok());
  auto none = t.pki.renew(std::chrono::hours(24));
  REQUIRE(none.failed.size() == 1);  // no CA for eu yet: said, not skipped
  CHECK(none.failed.front().path == "n1");
  REQUIRE(t.pki.init_intermediate("eu").ok());

  auto report = t.pki.renew(std::chrono::hours(24));
  CHECK(report.failed.empty());
  REQUIRE(report.renewed.size() == 1);
  CHECK(report.renewed.front().common_name == "n1");
  CHECK(report.renewed.front().serial_hex != leaf.serial_hex);
  CHECK(read_certificate(t.layout().identity_cert("n2"))->serial_hex == other.serial_hex);
  CHECK(t.pki.renew(std::chrono::hours(24)).renewed.empty());  // now current: nothing to do
}

TEST_CASE("an intermediate whose folder is lost is revoked from a leaf's certificate file, then replaced",
          "[security]") {
  TestPki t;
  t.issue(Role::node, "n1", "eu", 365);
  const fs::path kept = t.dir.path() / "n1-cert.pem";  // a device's copy: leaf + intermediate
  fs::copy_file(t.layout().identity_cert("n1"), kept);
  const auto old_ca = read_certificate(t.layout().ca_cert("eu"));
  REQUIRE(old_ca.ok());
  fs::remove_all(t.layout().ca_dir("eu"));  // destroyed, or taken
  auto plain = t.pki.revoke_intermediate("eu");
  REQUIRE_FALSE(plain.ok());
  CHECK(plain.error().path == "region");  // its certificate went with the folder

  // Refusals name the file: another region's CA, another PKI's CA.
  auto wrong_region = t.pki.revoke_lost_intermediate("cloud", kept);
  REQUIRE_FALSE(wrong_region.ok());
  CHECK(wrong_region.error().path == "ca-cert");
  CHECK_THAT(wrong_region.error().reason, Catch::Contains("holds no CA certificate 'nova-ca.cloud'"));
  TestPki other;
  auto foreign = t.pki.revoke_lost_intermediate("eu", other.layout().ca_cert("eu"));
  REQUIRE_FALSE(foreign.ok());
  CHECK(foreign.error().path == "ca-cert");
  CHECK_THAT(foreign.error().reason, Catch::Contains("was not signed by this PKI's root"));

  REQUIRE(t.pki.revoke_lost_intermediate("eu", kept).ok());
  CHECK_THAT(contents(t.layout().root_revoked()), Catch::StartsWith(old_ca->serial_hex + "\t"));
  auto again = t.pki.revoke_lost_intermediate("eu", kept);
  REQUIRE_FALSE(again.ok());
  CHECK_THAT(again.error().reason, Catch::Contains("already on the root's CRL"));

  // The region gets a new CA and its leaves are re-signed by it, keys kept.
  REQUIRE(t.pki.init_intermediate("eu").ok());
  auto report = t.pki.renew(std::chrono::hours(24));
  CHECK(report.failed.empty());
  REQUIRE(report.renewed.size() == 1);
  CHECK(report.renewed.front().issuer_common_name == "nova-ca.eu");
  CHECK(read_certificate(t.layout().ca_cert("eu"))->serial_hex != old_ca->serial_hex);
}

TEST_CASE("a Pki holds the folder's lock for its lifetime", "[security]") {
  nova::security::testing::TempDir dir;
  auto try_lock = [&] {
    const int fd = ::open((dir.path() / ".lock").c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    const bool locked = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    ::close(fd);
    return locked;
  };
  {
    auto pki = Pki::open(dir.path());
    REQUIRE(pki.ok());
    CHECK_FALSE(try_lock());  // another nova-pki would wait here
    Pki moved = std::move(pki).value();
    CHECK_FALSE(try_lock());
  }
  CHECK(try_lock());
}
