// The NovaCron PKI: an offline root CA, one intermediate CA per region, and the leaf
// certificates of every identity that speaks MQTT (brokers, bridges, nodes, sensors,
// nova-cloud, operators), with CRLs and renewal. Files live in the folder described by
// layout.h; nova-pki (security/tools) is the CLI over this class.
//
// Trust shape
//   root (CN "nova-root-ca", CA, no path length limit; signs only intermediates and
//   its own CRL)
//     -> intermediate per region (CN "nova-ca.<region>", CA pathlen 0; signs leaves and
//        its CRL). A region is a level-2 site and its subtree; the level-1 cloud site
//        and cloud-level identities use region "cloud". A region cut off from the rest
//        keeps enrolling and renewing its leaves with its own intermediate alone.
//       -> leaves: ECDSA P-256 keys, SHA-256 signatures, CA:FALSE, keyUsage
//          digitalSignature, SKI/AKI, and the extended key usage of the role.
//
// Common names (what Mosquitto's use_identity_as_username turns into the MQTT username):
//   role      --name            CN                    extended key usage
//   broker    <site>            <site>                serverAuth; SAN DNS:<site>,
//                                                     DNS:localhost, IP:127.0.0.1, extras
//   bridge    <site>            bridge.<site>         clientAuth
//   node      <node>            <node>                clientAuth
//   sensor    <node>.<sensor>   sensor.<node>.<sensor> clientAuth
//   cloud     nova-cloud[.<i>]  nova-cloud[.<i>]      clientAuth
//   operator  <name>            operator.<name>       clientAuth
// Names are 1..48 characters of [A-Za-z0-9_-], except that a sensor name is exactly
// two such parts joined by one '.', and a cloud name is "nova-cloud" or
// "nova-cloud.<part>". A CN names one identity in the whole PKI.
//
// Every operation returns an Error whose path names the argument or file at fault
// ("dir" for the PKI folder itself, e.g. when a root already exists there).
// A Pki holds an exclusive lock (flock on <pki>/.lock) for its lifetime: two nova-pki
// processes on one folder run one after the other, never interleaved.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nova/schemas/result.h"
#include "nova/security/layout.h"

namespace nova::security {

using schemas::Error;
using schemas::Result;
using schemas::Status;
using Clock = std::chrono::system_clock;

enum class Role { broker, bridge, node, sensor, cloud, operator_ };

std::string_view role_name(Role role);           // "broker", ..., "operator"
Result<Role> parse_role(std::string_view text);  // error path "role"

// The CN of `name` in `role` (table above); error path "name" with the rule broken.
Result<std::string> common_name(Role role, std::string_view name);

// Region names follow the same rule as node names; error path "region".
Status check_region(std::string_view region);

// What a certificate says, read back from a PEM file (its first certificate).
struct CertificateInfo {
  std::string common_name;
  std::string issuer_common_name;
  std::string serial_hex;  // upper-case hex, as `openssl x509 -serial` prints it
  Clock::time_point not_before;
  Clock::time_point not_after;
  std::vector<std::string> subject_alt_names;  // "DNS:localhost", "IP:127.0.0.1"
  bool is_ca = false;
};
Result<CertificateInfo> read_certificate(const std::filesystem::path& pem_file);

struct IssueRequest {
  Role role = Role::node;
  std::string name;    // see the table; the CN follows from role and name
  std::string region;  // whose intermediate signs
  // Extra subjectAltNames, "DNS:<name>" or "IP:<v4 or v6>"; brokers only.
  std::vector<std::string> subject_alt_names;
  int days = 90;          // validity length, >= 1
  int backdate_days = 0;  // starts this many days ago (>= 0): tests make expired leaves
};

struct RenewReport {
  std::vector<CertificateInfo> renewed;  // the new certificates
  std::vector<Error> failed;             // path: the identity's CN
};

class Pki {
 public:
  // Opens (creating if needed) the PKI folder and takes its lock. Nothing else is
  // created until an operation needs it.
  static Result<Pki> open(const std::filesystem::path& dir);

  Pki(Pki&&) noexcept;
  Pki& operator=(Pki&&) noexcept;
  Pki(const Pki&) = delete;
  Pki& operator=(const Pki&) = delete;
  ~Pki();

  const Layout& layout() const { return layout_; }

  // Makes the root key and self-signed certificate (valid `days`), its empty CRL, and
  // trust/ca.pem. Refuses when a root already exists.
  Result<CertificateInfo> init_root(int days = 7300);

  // Makes region's intermediate, signed by the root (needs root/ca.key), its empty CRL,
  // and rebuilds trust/crl.pem. Refuses when the region already has one.
  Result<CertificateInfo> init_intermediate(std::string_view region, int days = 1825);

  bool has_root() const;
  bool has_intermediate(std::string_view region) const;
  bool has_identity(std::string_view cn) const;
  std::vector<std::string> regions() const;     // sorted
  std::vector<std::string> identities() const;  // CNs, sorted

  // Makes a key and a certificate for the request, signed by region's intermediate
  // (needs ca/<region>/ca.key). Refuses a CN that is already issued: renew or revoke it.
  Result<CertificateInfo> issue(const IssueRequest& request);

  // Revokes a leaf: its serial goes on its issuer's CRL, the CRL and trust/crl.pem are
  // rewritten, and identities/<cn>/ is deleted (the CN may then be issued again, with a
  // new key). Needs the issuer's key.
  Status revoke_identity(std::string_view cn);

  // Revokes region's intermediate on the root's CRL (needs root/ca.key) and moves
  // ca/<region>/ aside to revoked/ca-<region>-<serial>/, so init-intermediate can give
  // the region a new one. Its CRL leaves trust/crl.pem, so its leaves fail even where
  // only the leaf's CRL is checked (Mosquitto 2.0.11): "unable to get certificate CRL".
  // Its leaves stay in identities/; `renew` re-signs them once the region has a new CA.
  Status revoke_intermediate(std::string_view region);

  // Recovery of an intermediate whose folder is lost (destroyed, or taken with its key):
  // puts the CA certificate named "nova-ca.<region>" found in `ca_cert_file` on the
  // root's CRL (needs root/ca.key) and rebuilds trust/crl.pem. Any leaf's cert.pem
  // carries its intermediate, so a device's copy or an export will do. The file's CA
  // must be signed by this root (error path "ca-cert" otherwise, and when the file holds
  // no such CA or it is already revoked). When ca/<region>/ holds that same CA, this is
  // revoke_intermediate; a different (replacement) CA there is left alone, so the old
  // one can also be revoked after init-intermediate made the new one.
  Status revoke_lost_intermediate(std::string_view region, const std::filesystem::path& ca_cert_file);

  // Re-signs the CRL of every CA whose key is present (a CRL is valid 30 days for an
  // intermediate and 365 for the root, so this must run before those run out), then
  // rebuilds trust/crl.pem from every CA's CRL file.
  Status regenerate_crls();

  // Re-issues every leaf whose certificate expires within `within` of `now`, and every
  // leaf its region's current intermediate did not sign (the region's CA was revoked and
  // replaced): same key, CN, SANs and extensions, new serial, same validity length
  // starting now. cert.pem is replaced atomically. Leaves whose intermediate key is
  // absent are reported as failed; the others are renewed all the same.
  RenewReport renew(std::chrono::seconds within, Clock::time_point now = Clock::now());

  // Re-issues one leaf now, whatever its expiry: a rotation on demand (a broker's or a
  // bridge's certificate before a planned change, a node's after a scare). As renew:
  // same key, CN, SANs and extensions, a new serial. Error path "name" for an unknown CN.
  // Re-signs with the region's current intermediate (needs its key). The old
  // certificate stays valid until it expires: revoke_identity and issue replace the key
  // and invalidate the old certificate at once.
  Result<CertificateInfo> renew_identity(std::string_view cn, Clock::time_point now = Clock::now());

  // Copies one identity's bundle into `to` (created 0700): key.pem (0600), cert.pem,
  // ca.pem (trust anchor), crl.pem (CRL bundle). The only way a key leaves its folder.
  Status export_identity(std::string_view cn, const std::filesystem::path& to);

  // Makes an Ed25519 signing key pair signing/<name>.key (0600) and .pub (see
  // signing.h). Refuses an existing name.
  Status create_signing_key(std::string_view name);

 private:
  Pki(Layout layout, int lock_fd) : layout_(std::move(layout)), lock_fd_(lock_fd) {}
  Status write_crl_bundle();

  Layout layout_;
  int lock_fd_ = -1;
};

}  // namespace nova::security
