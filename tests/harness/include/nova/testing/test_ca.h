// A throw-away certificate authority for tests, made with the `openssl` command line
// (EC P-256 keys, SHA-256), until the project's PKI (nova-pki) can be used from tests.
//
// Example:
//   nova::testing::TestCa ca(dir / "ca");               // a self-signed root
//   auto server = ca.issue({.cn = "localhost", .sans = {"IP:127.0.0.1", "DNS:localhost"}});
//   auto node = ca.issue({.cn = "gw-1"});               // a client certificate
//   auto old = ca.issue({.cn = "gw-1", .days = -1});    // already expired
//   ca.revoke(node);
//   auto crl = ca.crl();                                // every certificate revoked so far
//
// Every file is written under the CA's directory; keys are unencrypted (tests only).
// Every failure throws std::runtime_error with the command and its output.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace nova::testing {

struct CertFiles {
  std::filesystem::path cert;  // PEM certificate
  std::filesystem::path key;   // PEM private key (unencrypted)
  std::string serial;          // hex, as `openssl x509 -serial` prints it
};

struct CertSpec {
  std::string cn;                  // subject CN (Mosquitto's use_identity_as_username takes it)
  std::vector<std::string> sans;   // subjectAltName entries: "IP:127.0.0.1", "DNS:localhost"
  int days = 30;                   // validity from now; negative: expired already
};

class TestCa {
 public:
  // Creates `dir` and a self-signed CA certificate and key in it.
  explicit TestCa(std::filesystem::path dir, std::string name = "nova-test-ca");

  const std::filesystem::path& cert() const { return cert_; }
  const std::filesystem::path& dir() const { return dir_; }

  // A new key and a certificate signed by this CA, with the next serial.
  CertFiles issue(const CertSpec& spec);
  // The usual test broker certificate: CN localhost, SAN IP 127.0.0.1 and DNS localhost.
  CertFiles issue_server() { return issue({"localhost", {"IP:127.0.0.1", "DNS:localhost"}, 30}); }

  // Marks `files` revoked; the next crl() lists it.
  void revoke(const CertFiles& files);
  // Writes the CA's CRL (dir/crl.pem, valid 30 days) and returns its path.
  std::filesystem::path crl();

 private:
  std::filesystem::path dir_;
  std::filesystem::path cert_, key_, config_;
  unsigned next_serial_ = 0x1000;
};

// Runs a shell command line; returns its output (stdout and stderr) or throws with it.
std::string run_command(const std::string& command_line);

}  // namespace nova::testing
