// WireGuard keys (wireguard_keys.h): X25519 through OpenSSL, in WireGuard's text form,
// checked against RFC 7748's test vector and against `wg pubkey` (wireguard-tools).
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "nova/security/wireguard_keys.h"
#include "pki_fixture.h"

using namespace nova::security;
using nova::security::testing::TempDir;

namespace {

std::string wg_pubkey(const std::string& private_key) {
  const auto out = nova::security::testing::run({"sh", "-c", "printf '%s\\n' \"$0\" | wg pubkey", private_key});
  REQUIRE(out.exit_code == 0);
  return out.output.substr(0, out.output.find('\n'));
}

mode_t mode_of(const std::filesystem::path& file) {
  struct stat st{};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

}  // namespace

TEST_CASE("an X25519 private key gives RFC 7748's public key, in base64 as wg prints it", "[security][wireguard]") {
  // RFC 7748 section 6.1, Alice: 77076d0a...2c2a -> 8520f009...4e6a, here in base64.
  CHECK(wireguard_public_key("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=").value() ==
        "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=");
  CHECK(wireguard_public_key("not a key").error().path == "private_key");
  CHECK(!wireguard_public_key("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LC==").ok());  // 31 bytes
}

TEST_CASE("generated keys are what wg pubkey derives, and each is new", "[security][wireguard]") {
  const auto a = generate_wireguard_key().value();
  const auto b = generate_wireguard_key().value();
  CHECK(a.private_key.size() == 44);
  CHECK(a.private_key != b.private_key);
  CHECK(wg_pubkey(a.private_key) == a.public_key);
  CHECK(wg_pubkey(b.private_key) == b.public_key);
  CHECK(wireguard_public_key(a.private_key).value() == a.public_key);
}

TEST_CASE("a site's key is written once, 0600, and never regenerated", "[security][wireguard]") {
  TempDir dir;
  const Layout layout(dir.path() / "pki");
  bool created = false;
  const auto first = ensure_wireguard_key(layout, "eu", &created).value();
  CHECK(created);
  CHECK(mode_of(layout.wireguard_key("eu")) == 0600);
  CHECK(mode_of(layout.wireguard_dir()) == 0700);
  const auto again = ensure_wireguard_key(layout, "eu", &created).value();
  CHECK_FALSE(created);
  CHECK(again.private_key == first.private_key);
  // A lost public file is derived again from the private key, never a new pair.
  std::filesystem::remove(layout.wireguard_public_key("eu"));
  CHECK(ensure_wireguard_key(layout, "eu").value().public_key == first.public_key);
  CHECK(wg_pubkey(first.private_key) == first.public_key);
}
