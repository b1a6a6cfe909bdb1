#include "nova/security/wireguard_keys.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <system_error>

#include "files.h"
#include "ossl.h"

namespace nova::security {
namespace {

using schemas::Error;
constexpr std::size_t kKeyBytes = 32;
using RawKey = std::array<unsigned char, kKeyBytes>;

std::string to_base64(const RawKey& raw) {
  std::string out(4 * ((kKeyBytes + 2) / 3), '\0');
  EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), raw.data(), static_cast<int>(raw.size()));
  return out;
}

// Exactly the 44-character form WireGuard prints (one '=' of padding), nothing else.
std::optional<RawKey> from_base64(std::string_view text) {
  if (text.size() != 44 || text[43] != '=' || text[42] == '=') return std::nullopt;
  std::array<unsigned char, 33> decoded{};  // 44 characters decode to 33 bytes, the last a pad
  const int n = EVP_DecodeBlock(decoded.data(), reinterpret_cast<const unsigned char*>(text.data()), 44);
  if (n != 33) return std::nullopt;
  RawKey raw{};
  std::copy_n(decoded.begin(), kKeyBytes, raw.begin());
  if (to_base64(raw) != text) return std::nullopt;  // non-canonical trailing bits
  return raw;
}

schemas::Result<std::string> public_of(EVP_PKEY* key) {
  RawKey raw{};
  std::size_t size = raw.size();
  if (EVP_PKEY_get_raw_public_key(key, raw.data(), &size) != 1 || size != raw.size()) {
    return ossl::error("private_key", "cannot derive the X25519 public key");
  }
  return to_base64(raw);
}

}  // namespace

schemas::Result<WireguardKeyPair> generate_wireguard_key() {
  ossl::Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519"));
  if (!key) return ossl::error("private_key", "cannot make an X25519 key");
  RawKey raw{};
  std::size_t size = raw.size();
  if (EVP_PKEY_get_raw_private_key(key.get(), raw.data(), &size) != 1 || size != raw.size()) {
    return ossl::error("private_key", "cannot read the X25519 private key");
  }
  auto pub = public_of(key.get());
  if (!pub) return pub.error();
  WireguardKeyPair pair{to_base64(raw), *pub};
  OPENSSL_cleanse(raw.data(), raw.size());
  return pair;
}

schemas::Result<std::string> wireguard_public_key(std::string_view private_key) {
  auto raw = from_base64(private_key);
  if (!raw) return Error{"private_key", "expected 32 bytes in base64 (44 characters), as `wg genkey` prints"};
  ossl::Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, raw->data(), raw->size()));
  OPENSSL_cleanse(raw->data(), raw->size());
  if (!key) return ossl::error("private_key", "not an X25519 private key");
  return public_of(key.get());
}

schemas::Result<WireguardKeyPair> ensure_wireguard_key(const Layout& layout, std::string_view site, bool* created) {
  const auto key_file = layout.wireguard_key(site);
  const auto pub_file = layout.wireguard_public_key(site);
  if (created != nullptr) *created = false;
  WireguardKeyPair pair;
  std::error_code ec;
  if (std::filesystem::exists(key_file, ec)) {
    auto text = files::read(key_file);
    if (!text) return text.error();
    std::string key = *text;
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
    auto pub = wireguard_public_key(key);
    if (!pub) return Error{key_file.string(), pub.error().message()};
    pair = {key, *pub};
  } else {
    auto made = generate_wireguard_key();
    if (!made) return made.error();
    pair = *made;
    if (auto s = files::make_private_dir(layout.wireguard_dir()); !s) return s.error();
    if (auto s = files::write_atomic(key_file, pair.private_key + "\n", files::kPrivate); !s) return s.error();
    if (created != nullptr) *created = true;
  }
  auto on_disk = files::read(pub_file);
  if (!on_disk || *on_disk != pair.public_key + "\n") {
    if (auto s = files::write_atomic(pub_file, pair.public_key + "\n", files::kPublic); !s) return s.error();
  }
  return pair;
}

}  // namespace nova::security
