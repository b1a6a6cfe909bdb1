// Where a NovaCron PKI folder keeps each file. Every component that reads PKI files
// (nova-bridge's rendered broker configs, nova-agent, nova-cloud) takes the paths from
// here, so the layout has exactly one definition. docs/security.md shows it as a tree.
//
//   <pki>/root/ca.key            root CA key (0600): the offline root; move it away after
//                                 init-intermediate, bring it back only to make or revoke
//                                 an intermediate
//   <pki>/root/ca.crt            root CA certificate
//   <pki>/root/crl.pem           the root's CRL (revoked intermediates)
//   <pki>/root/revoked.tsv       what the root revoked: serial, unix time, region
//   <pki>/ca/<region>/ca.key     the region's intermediate CA key (0600)
//   <pki>/ca/<region>/ca.crt     the region's intermediate CA certificate
//   <pki>/ca/<region>/crl.pem    the region's CRL (revoked leaves it issued)
//   <pki>/ca/<region>/revoked.tsv  serial, unix time, common name
//   <pki>/trust/ca.pem           the trust anchor (root certificate): a broker's cafile,
//                                 a bridge's bridge_cafile, an agent's CA file
//   <pki>/trust/crl.pem          every CA's CRL in one file: a broker's crlfile
//   <pki>/identities/<cn>/key.pem   a leaf's private key (0600)
//   <pki>/identities/<cn>/cert.pem  the leaf certificate followed by its issuing
//                                 intermediate: a broker's certfile, a bridge's
//                                 bridge_certfile, an agent's client certificate
//   <pki>/revoked/ca-<region>-<serial>/  a revoked intermediate's folder, moved aside
//   <pki>/signing/<name>.key     an Ed25519 signing key (0600)
//   <pki>/signing/<name>.pub     its public key (PEM): what a verifier trusts
//   <pki>/wireguard/<site>.key   a site's WireGuard private key (0600), base64 as
//                                 `wg genkey` prints it (wireguard_keys.h)
//   <pki>/wireguard/<site>.pub   its public key, base64 as `wg pubkey` prints it
//
// Directories holding keys are 0700. Files are replaced atomically (write, fsync,
// rename): a reader sees the old file or the new one, never half of one.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace nova::security {

class Layout {
 public:
  explicit Layout(std::filesystem::path dir) : dir_(std::move(dir)) {}

  const std::filesystem::path& dir() const { return dir_; }

  std::filesystem::path root_dir() const { return dir_ / "root"; }
  std::filesystem::path root_key() const { return root_dir() / "ca.key"; }
  std::filesystem::path root_cert() const { return root_dir() / "ca.crt"; }
  std::filesystem::path root_crl() const { return root_dir() / "crl.pem"; }
  std::filesystem::path root_revoked() const { return root_dir() / "revoked.tsv"; }

  std::filesystem::path cas_dir() const { return dir_ / "ca"; }
  std::filesystem::path ca_dir(std::string_view region) const { return cas_dir() / region; }
  std::filesystem::path ca_key(std::string_view region) const { return ca_dir(region) / "ca.key"; }
  std::filesystem::path ca_cert(std::string_view region) const { return ca_dir(region) / "ca.crt"; }
  std::filesystem::path ca_crl(std::string_view region) const { return ca_dir(region) / "crl.pem"; }
  std::filesystem::path ca_revoked(std::string_view region) const {
    return ca_dir(region) / "revoked.tsv";
  }

  std::filesystem::path trust_ca() const { return dir_ / "trust" / "ca.pem"; }
  std::filesystem::path trust_crl() const { return dir_ / "trust" / "crl.pem"; }

  std::filesystem::path identities_dir() const { return dir_ / "identities"; }
  std::filesystem::path identity_dir(std::string_view cn) const { return identities_dir() / cn; }
  std::filesystem::path identity_key(std::string_view cn) const {
    return identity_dir(cn) / "key.pem";
  }
  std::filesystem::path identity_cert(std::string_view cn) const {
    return identity_dir(cn) / "cert.pem";
  }

  std::filesystem::path signing_dir() const { return dir_ / "signing"; }
  std::filesystem::path signing_key(std::string_view name) const {
    return signing_dir() / (std::string(name) + ".key");
  }
  std::filesystem::path signing_public_key(std::string_view name) const {
    return signing_dir() / (std::string(name) + ".pub");
  }

  std::filesystem::path wireguard_dir() const { return dir_ / "wireguard"; }
  std::filesystem::path wireguard_key(std::string_view site) const {
    return wireguard_dir() / (std::string(site) + ".key");
  }
  std::filesystem::path wireguard_public_key(std::string_view site) const {
    return wireguard_dir() / (std::string(site) + ".pub");
  }

  // The files `export` writes into its target directory (a device's bundle).
  static constexpr std::string_view kExportKey = "key.pem";    // 0600
  static constexpr std::string_view kExportCert = "cert.pem";  // leaf + intermediate
  static constexpr std::string_view kExportCa = "ca.pem";      // trust anchor
  static constexpr std::string_view kExportCrl = "crl.pem";    // CRL bundle

 private:
  std::filesystem::path dir_;
};

}  // namespace nova::security
