// The test process's PKI: one folder made with the security library's Pki (docs/
// security.md) the first time a test asks for an identity, shared by every broker and
// client of the process, removed at exit (kept, and its path printed, when
// NOVA_KEEP_TEST_DIRS is set). Issuing is in-process OpenSSL (no openssl CLI), a few
// milliseconds per identity; each CN is issued once and then reused.
//
// Example:
//   nova::testing::Broker broker({.tls = true});  // mutual TLS (broker.h)
//   auto id = nova::testing::client_identity("gw-1");
//   // id.ca, id.cert, id.key: a node certificate with CN gw-1, chaining to id.ca
//
// Thread-safe. Every failure throws std::runtime_error naming the identity and why.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "nova/security/tls_files.h"

namespace nova::testing {

// A TLS identity's files: trust anchor, certificate (leaf + intermediate), key.
struct TlsIdentity {
  std::filesystem::path ca;
  std::filesystem::path cert;
  std::filesystem::path key;
};

// A client identity whose certificate CN is `cn` (what a TLS broker makes the MQTT
// username): the cloud role for "nova-cloud" and "nova-cloud.<i>", the node role
// otherwise (a name of [A-Za-z0-9_-], at most 48 characters).
TlsIdentity client_identity(const std::string& cn);

// The identity of every test broker: CN "test-broker", SAN IP:127.0.0.1 and
// DNS:localhost, so clients verify it against a 127.0.0.1 URI.
TlsIdentity broker_identity();

// A client identity `cn` of another PKI, made in `dir` (which must not hold one yet):
// the same names as the test PKI's, another root, so no test broker trusts it.
TlsIdentity foreign_identity(const std::filesystem::path& dir, const std::string& cn);

// The CRL bundle of the PKI (a broker's crlfile).
std::filesystem::path test_pki_crl();

// For an in-process client of `uri` (an agent's AgentOptions::tls): the identity of `cn`
// when `uri` is TLS (mqtts://), nullopt for a plaintext uri.
std::optional<security::TlsFiles> tls_files_for(const std::string& uri, const std::string& cn);

// For mosquitto_pub/mosquitto_sub as `cn`: " --cafile 'A' --cert 'B' --key 'C'" when
// `uri` is TLS (mqtts://), "" for a plaintext uri.
std::string mosquitto_tls_args(const std::string& uri, const std::string& cn);

}  // namespace nova::testing
