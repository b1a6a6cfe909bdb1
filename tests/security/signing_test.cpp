// Ed25519 signing keys (signing.h): sign, verify, refuse any change, and the key files.
#include "nova/security/signing.h"

#include <catch2/catch.hpp>

#include "nova/security/pki.h"
#include "pki_fixture.h"

using namespace nova::security;
using nova::security::testing::TempDir;

namespace {
std::vector<std::uint8_t> bytes(std::string_view s) {
  return {s.begin(), s.end()};
}
}  // namespace

TEST_CASE("an Ed25519 signature verifies, and fails for a flipped byte anywhere", "[security]") {
  auto key = SigningKey::generate();
  REQUIRE(key.ok());
  const auto message = bytes("node=dev-1 site=cloud/eu/par id=42 iat=1 exp=2");
  const auto signature = key->sign(message);
  REQUIRE(signature.size() == 64);
  const VerifyKey verifier = key->verify_key();
  CHECK(verifier.verify(message, signature));

  for (std::size_t i = 0; i < message.size(); ++i) {
    auto changed = message;
    changed[i] ^= 0x01;
    CHECK_FALSE(verifier.verify(changed, signature));
  }
  for (std::size_t i = 0; i < signature.size(); ++i) {
    auto changed = signature;
    changed[i] ^= 0x80;
    CHECK_FALSE(verifier.verify(message, changed));
  }
  CHECK_FALSE(
      verifier.verify(message, std::vector<std::uint8_t>(signature.begin(), signature.end() - 1)));
  // Another key's signature does not verify.
  CHECK_FALSE(SigningKey::generate()->verify_key().verify(message, signature));
}

TEST_CASE("signing keys round-trip through their files and raw bytes", "[security]") {
  TempDir dir;
  auto opened = Pki::open(dir.path());
  REQUIRE(opened.ok());
  Pki& pki = opened.value();
  REQUIRE(pki.create_signing_key("nova-cloud").ok());
  CHECK(pki.create_signing_key("nova-cloud").error().path == "name");
  CHECK(pki.create_signing_key("../x").error().path == "name");

  auto key = SigningKey::load(pki.layout().signing_key("nova-cloud"));
  REQUIRE(key.ok());
  auto trusted = VerifyKey::load(pki.layout().signing_public_key("nova-cloud"));
  REQUIRE(trusted.ok());
  const auto message = bytes("hello");
  CHECK(trusted->verify(message, key->sign(message)));
  CHECK(trusted->raw() == key->verify_key().raw());
  auto from_raw = VerifyKey::from_raw(trusted->raw());
  REQUIRE(from_raw.ok());
  CHECK(from_raw->verify(message, key->sign(message)));
  CHECK(from_raw->pem() == trusted->pem());

  CHECK(VerifyKey::from_raw(std::vector<std::uint8_t>(31)).error().message() ==
        "public key: expected 32 bytes, got 31");
  // A P-256 TLS key is not a signing key.
  REQUIRE(pki.init_root().ok());
  auto wrong = SigningKey::load(pki.layout().root_key());
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.error().message() == pki.layout().root_key().string() + ": not an Ed25519 key");
  CHECK(SigningKey::load(dir.path() / "absent.key").error().reason == "not present");
}
