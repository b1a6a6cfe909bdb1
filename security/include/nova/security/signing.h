// Ed25519 signing keys: nova-cloud signs control messages with a SigningKey, agents
// verify them with the VerifyKey of a public key file they hold locally.
//
//   auto key = SigningKey::load(layout.signing_key("nova-cloud"));
//   std::vector<std::uint8_t> sig = key->sign(bytes);                 // 64 bytes
//   auto trusted = VerifyKey::load(layout.signing_public_key("nova-cloud"));
//   bool good = trusted->verify(bytes, sig);    // false for any changed byte
//
// Ed25519 signs the message itself (no separate digest): sign/verify take the exact
// bytes, so whatever a caller signs must be a canonical encoding of what it means.
// Keys and signatures are immutable; sign() and verify() are safe to call concurrently.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "nova/schemas/result.h"

namespace nova::security {

class VerifyKey;

class SigningKey {
 public:
  static schemas::Result<SigningKey> generate();
  // PKCS#8 PEM private key, as save() writes; error path is the file.
  static schemas::Result<SigningKey> load(const std::filesystem::path& file);
  // The key of a 32-byte RFC 8032 seed. For fixed test keys (golden vectors): a real
  // key comes from generate().
  static schemas::Result<SigningKey> from_seed(std::span<const std::uint8_t> seed);

  // Writes the private key (PEM, 0600) and the public key (PEM) atomically.
  schemas::Status save(const std::filesystem::path& private_file,
                       const std::filesystem::path& public_file) const;

  std::vector<std::uint8_t> sign(std::span<const std::uint8_t> message) const;  // 64 bytes
  VerifyKey verify_key() const;

  struct Impl;
  explicit SigningKey(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

 private:
  std::shared_ptr<const Impl> impl_;
};

class VerifyKey {
 public:
  // SubjectPublicKeyInfo PEM of an Ed25519 key; refuses other key types.
  static schemas::Result<VerifyKey> load(const std::filesystem::path& file);
  static schemas::Result<VerifyKey> from_pem(const std::string& pem);
  // The 32 raw public key bytes (RFC 8032).
  static schemas::Result<VerifyKey> from_raw(std::span<const std::uint8_t> raw);

  bool verify(std::span<const std::uint8_t> message, std::span<const std::uint8_t> signature) const;
  std::vector<std::uint8_t> raw() const;  // 32 bytes
  std::string pem() const;

  struct Impl;
  explicit VerifyKey(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

 private:
  std::shared_ptr<const Impl> impl_;
};

}  // namespace nova::security
