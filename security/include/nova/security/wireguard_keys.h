// WireGuard key pairs (Curve25519), made with OpenSSL's X25519 and written in the text
// form WireGuard's own tools use: 32 raw bytes in base64 (44 characters), the private
// key as `wg genkey` prints it, the public key as `wg pubkey` derives it. OpenSSL clamps
// an X25519 private key when it uses it, as WireGuard does, so a key made here and one
// made by `wg genkey` work alike (tests/security/wireguard_keys_test.cpp checks our
// public keys against `wg pubkey`).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "nova/schemas/result.h"
#include "nova/security/layout.h"

namespace nova::security {

struct WireguardKeyPair {
  std::string private_key;  // base64, secret
  std::string public_key;   // base64
};

schemas::Result<WireguardKeyPair> generate_wireguard_key();

// The public key of a base64 private key. Error path "private_key": not base64 of
// exactly 32 bytes.
schemas::Result<std::string> wireguard_public_key(std::string_view private_key);

// The key pair of `site` from layout.wireguard_key(site) (and its .pub), made and
// written (private key 0600 in a 0700 directory, atomically) only when the private key
// file does not exist: a key in use is never replaced. The public file is (re)written
// from the private key when it is missing or disagrees. `created` (if given) says
// whether a new key was made. Error path: the file.
schemas::Result<WireguardKeyPair> ensure_wireguard_key(const Layout& layout, std::string_view site,
                                                       bool* created = nullptr);

}  // namespace nova::security
