#include "nova/security/signing.h"

#include <openssl/err.h>

#include <new>

#include "files.h"
#include "ossl.h"

namespace nova::security {

using schemas::Error;
using schemas::Result;

struct SigningKey::Impl {
  ossl::Pkey key;
};
struct VerifyKey::Impl {
  ossl::Pkey key;
};

namespace {

constexpr std::size_t kSignatureSize = 64;
constexpr std::size_t kPublicKeySize = 32;
constexpr std::size_t kSeedSize = 32;

bool is_ed25519(EVP_PKEY* key) {
  return EVP_PKEY_is_a(key, "ED25519") == 1;
}

}  // namespace

Result<SigningKey> SigningKey::generate() {
  ossl::Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!key) return ossl::error("signing key", "Ed25519 key generation failed");
  return SigningKey(std::make_shared<const Impl>(Impl{std::move(key)}));
}

Result<SigningKey> SigningKey::load(const std::filesystem::path& file) {
  auto text = files::read(file);
  if (!text) return text.error();
  ossl::Pkey key = ossl::parse_private_key(*text);
  if (!key) return ossl::error(file.string(), "not a PEM private key");
  if (!is_ed25519(key.get())) return Error{file.string(), "not an Ed25519 key"};
  return SigningKey(std::make_shared<const Impl>(Impl{std::move(key)}));
}

Result<SigningKey> SigningKey::from_seed(std::span<const std::uint8_t> seed) {
  if (seed.size() != kSeedSize) return Error{"seed", "expected 32 bytes, got " + std::to_string(seed.size())};
  ossl::Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()));
  if (!key) return ossl::error("seed", "not an Ed25519 seed");
  return SigningKey(std::make_shared<const Impl>(Impl{std::move(key)}));
}

schemas::Status SigningKey::save(const std::filesystem::path& private_file,
                                 const std::filesystem::path& public_file) const {
  if (auto s = files::write_atomic(private_file, ossl::private_key_pem(impl_->key.get()),
                                   files::kPrivate);
      !s)
    return s;
  return files::write_atomic(public_file, ossl::public_key_pem(impl_->key.get()), files::kPublic);
}

std::vector<std::uint8_t> SigningKey::sign(std::span<const std::uint8_t> message) const {
  std::vector<std::uint8_t> signature(kSignatureSize);
  std::size_t size = signature.size();
  ossl::MdCtx ctx(EVP_MD_CTX_new());
  // Ed25519 cannot fail to sign with a valid key; a failure here is memory exhaustion.
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, impl_->key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), signature.data(), &size, message.data(), message.size()) != 1) {
    throw std::bad_alloc();
  }
  signature.resize(size);
  return signature;
}

VerifyKey SigningKey::verify_key() const {
  // The public half, as a key object of its own (the private half never leaves Impl).
  auto pem = ossl::public_key_pem(impl_->key.get());
  return VerifyKey(
      std::make_shared<const VerifyKey::Impl>(VerifyKey::Impl{ossl::parse_public_key(pem)}));
}

Result<VerifyKey> VerifyKey::from_pem(const std::string& pem) {
  ossl::Pkey key = ossl::parse_public_key(pem);
  if (!key) return ossl::error("public key", "not a PEM public key");
  if (!is_ed25519(key.get())) return Error{"public key", "not an Ed25519 key"};
  return VerifyKey(std::make_shared<const Impl>(Impl{std::move(key)}));
}

Result<VerifyKey> VerifyKey::load(const std::filesystem::path& file) {
  auto text = files::read(file);
  if (!text) return text.error();
  auto key = from_pem(*text);
  if (!key) return Error{file.string(), key.error().reason};
  return key;
}

Result<VerifyKey> VerifyKey::from_raw(std::span<const std::uint8_t> raw) {
  if (raw.size() != kPublicKeySize) {
    return Error{"public key", "expected 32 bytes, got " + std::to_string(raw.size())};
  }
  ossl::Pkey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw.data(), raw.size()));
  if (!key) return ossl::error("public key", "not an Ed25519 public key");
  return VerifyKey(std::make_shared<const Impl>(Impl{std::move(key)}));
}

bool VerifyKey::verify(std::span<const std::uint8_t> message,
                       std::span<const std::uint8_t> signature) const {
  if (signature.size() != kSignatureSize) return false;
  ossl::MdCtx ctx(EVP_MD_CTX_new());
  const bool good =
      ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, impl_->key.get()) == 1 &&
      EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(),
                       message.size()) == 1;
  ERR_clear_error();  // a bad signature is an answer, not an error to report later
  return good;
}

std::vector<std::uint8_t> VerifyKey::raw() const {
  std::vector<std::uint8_t> out(kPublicKeySize);
  std::size_t size = out.size();
  EVP_PKEY_get_raw_public_key(impl_->key.get(), out.data(), &size);
  out.resize(size);
  return out;
}

std::string VerifyKey::pem() const {
  return ossl::public_key_pem(impl_->key.get());
}

}  // namespace nova::security
