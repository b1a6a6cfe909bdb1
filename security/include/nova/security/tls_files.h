// A TLS client identity on disk (trust anchor, certificate, key: PEM files) and the one
// check of whether such files can serve, shared by nova-agent and nova-cloud.
//
// The check runs on OpenSSL calls the caller supplies (OpenSslCalls): nova-cloud links
// libcrypto and passes linked_openssl(); nova-agent must not link it (3.6 MB of RSS for
// a plaintext uplink, docs/agent.md) and passes the functions it loaded at run time.
// Hence this part lives in its own library, nova_tls_files, which needs OpenSSL's
// headers only.
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <optional>
#include <string>
#include <string_view>

namespace nova::security {

// A TLS client's identity and trust: PEM files.
struct TlsFiles {
  std::string ca_file;    // CA certificates (chain) the broker's certificate must verify against
  std::string cert_file;  // the client's certificate (and intermediates), presented to the broker
  std::string key_file;   // its private key
  // Verify the broker's certificate and its name (host name or IP address of the URI
  // in its SAN). Off only through a config's insecure key.
  bool verify_server = true;
  friend bool operator==(const TlsFiles&, const TlsFiles&) = default;
};

// Why files cannot serve as a TLS identity: which file and why (missing, unreadable,
// not PEM, the key does not match the certificate). An expired certificate passes: the
// broker refuses it, the client logs why and keeps retrying, and a renewed file is used
// at the next attempt.
struct TlsFileProblem {
  enum class File { ca, cert, key } file;
  std::string reason;
};

// The config key naming `file`: "mqtt.tls_ca_file", "mqtt.tls_cert_file",
// "mqtt.tls_key_file" (both daemons use these names).
std::string_view tls_file_key(TlsFileProblem::File file);

// The OpenSSL functions the check needs.
struct OpenSslCalls {
  decltype(&::BIO_new_file) BIO_new_file = nullptr;
  decltype(&::BIO_free) BIO_free = nullptr;
  decltype(&::PEM_read_bio_X509) PEM_read_bio_X509 = nullptr;
  decltype(&::PEM_read_bio_PrivateKey) PEM_read_bio_PrivateKey = nullptr;
  decltype(&::X509_free) X509_free = nullptr;
  decltype(&::EVP_PKEY_free) EVP_PKEY_free = nullptr;
  decltype(&::X509_check_private_key) X509_check_private_key = nullptr;
};

// The first problem of `files`, or nullopt when they can serve. An empty path is a
// problem ("required for a TLS uri").
std::optional<TlsFileProblem> check_tls_files(const TlsFiles& files, const OpenSslCalls& ssl);

// The calls of the libcrypto a process links (in nova_security, which links it).
const OpenSslCalls& linked_openssl();

// Whether a broker URI is plaintext: everything but ssl://, mqtts:// and wss:// is.
bool is_plaintext_uri(std::string_view uri);

}  // namespace nova::security
