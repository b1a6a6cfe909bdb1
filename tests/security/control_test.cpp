// Signed control messages (control.h, schemas/signed.h): the envelope round-trips, and
// every kind of refusal is told apart, with the signature checked before any claim.
#include "nova/security/control.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

using namespace nova::security;
using nova::schemas::Bytes;
using nova::schemas::SignedClaims;

namespace {

SigningKey fixed_key(std::uint8_t fill) {
  return SigningKey::from_seed(std::vector<std::uint8_t>(32, fill)).value();
}

const SignedClaims kClaims{"dev-1", "cloud/eu/par", "task", "m-1", 1'000'000, 1'060'000};
const Bytes kMessage{0xa1, 0x61, 0x76, 0x01};  // {"v": 1}
const ControlExpectation kHere{"dev-1", "cloud/eu/par", "task", 1'000'500, 30'000};

std::optional<Refusal> refusal_of(const Bytes& env, const std::vector<VerifyKey>& keys,
                                  const ControlExpectation& e = kHere) {
  return check_control(env, keys, e).refusal;
}

}  // namespace

TEST_CASE("a signed control message round-trips and is accepted where it is addressed",
          "[security][control]") {
  const SigningKey key = fixed_key(7);
  const Bytes env = sign_control(key, kClaims, kMessage);
  CHECK(env.front() == 0xd2);  // COSE_Sign1 tag 18
  const ControlCheck c = check_control(env, std::vector{key.verify_key()}, kHere);
  REQUIRE_FALSE(c.refusal);
  CHECK(c.envelope.claims == kClaims);
  CHECK(c.envelope.message == kMessage);
  // Ed25519 is deterministic: the same key, claims and message give the same bytes.
  CHECK(sign_control(key, kClaims, kMessage) == env);
}

TEST_CASE("each refusal reason of a control message", "[security][control]") {
  const SigningKey key = fixed_key(7);
  const std::vector trusted{fixed_key(9).verify_key(), key.verify_key()};  // rotation: two keys
  const Bytes env = sign_control(key, kClaims, kMessage);
  REQUIRE_FALSE(refusal_of(env, trusted));
  CHECK_FALSE(refusal_of(sign_control(fixed_key(9), kClaims, kMessage), trusted));  // either key

  CHECK(refusal_of(kMessage, trusted) == Refusal::unsigned_message);
  CHECK(refusal_of({}, trusted) == Refusal::unsigned_message);
  CHECK(refusal_of(env, {fixed_key(9).verify_key()}) == Refusal::untrusted);
  CHECK(refusal_of(env, {}) == Refusal::untrusted);
  // Any changed byte of the signed part breaks the signature (or the structure).
  for (std::size_t i = 5; i < env.size(); ++i) {
    Bytes changed = env;
    changed[i] ^= 0x01;
    const auto r = refusal_of(changed, trusted);
    CHECK((r == Refusal::untrusted || r == Refusal::unsigned_message));
  }

  auto other = kHere;
  other.node = "dev-2";
  CHECK(refusal_of(env, trusted, other) == Refusal::misaddressed);
  other = kHere;
  other.site = "cloud/eu/ber";
  CHECK(refusal_of(env, trusted, other) == Refusal::misaddressed);
  other = kHere;
  other.kind = "config";
  CHECK(refusal_of(env, trusted, other) == Refusal::misaddressed);

  other = kHere;
  other.now_ms = kClaims.expires_ts + kHere.skew_ms;  // the last valid moment
  CHECK_FALSE(refusal_of(env, trusted, other));
  other.now_ms += 1;
  CHECK(refusal_of(env, trusted, other) == Refusal::expired);
  other.now_ms = kClaims.issued_ts - kHere.skew_ms;  // the earliest valid moment
  CHECK_FALSE(refusal_of(env, trusted, other));
  other.now_ms -= 1;
  CHECK(refusal_of(env, trusted, other) == Refusal::not_yet_valid);
}

TEST_CASE("a forged envelope with a wrong signature is refused before its claims are judged",
          "[security][control]") {
  const SigningKey attacker = fixed_key(3);
  auto claims = kClaims;
  claims.node = "elsewhere";
  const Bytes forged = sign_control(attacker, claims, kMessage);
  const ControlCheck c = check_control(forged, std::vector{fixed_key(7).verify_key()}, kHere);
  CHECK(c.refusal == Refusal::untrusted);
  CHECK(c.reason.find("elsewhere") == std::string::npos);
}

TEST_CASE("the envelope decoder names the member at fault", "[security][control][schemas]") {
  using nova::schemas::decode_cose_sign1;
  const SigningKey key = fixed_key(7);
  auto reason_of = [](const Bytes& b) {
    auto r = decode_cose_sign1(b);
    REQUIRE_FALSE(r.ok());
    return r.error().message();
  };
  CHECK(reason_of({0xd2, 0x83, 0x40, 0xa0, 0x40}) ==
        "signed: not a COSE_Sign1 (expected an array of 4: protected, unprotected, payload, "
        "signature)");
  // alg ES256 (-7) instead of EdDSA (-8).
  Bytes es256 = sign_control(key, kClaims, kMessage);
  es256[4] = 0x26;
  CHECK(reason_of(es256) ==
        "signed.protected: expected the header {1: -8} (alg EdDSA), encoded a1 01 27");
  auto claims = kClaims;
  claims.expires_ts = claims.issued_ts;
  CHECK(reason_of(sign_control(key, claims, kMessage)) ==
        "signed.payload.exp: expires at or before it was issued (iat 1000000)");
  claims = kClaims;
  claims.kind = "command";
  CHECK(reason_of(sign_control(key, claims, kMessage)) ==
        "signed.payload.kind: unknown kind 'command' (expected one of: task, config, model, ack, "
        "verdict, update, cancel, erase)");
  claims = kClaims;
  claims.site = "cloud//x";
  CHECK(reason_of(sign_control(key, claims, kMessage)) ==
        "signed.payload.site: 'cloud//x' is not a site path");
  // A hostile count in the outer array is refused before anything is allocated.
  CHECK(reason_of({0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}).find("items") !=
        std::string::npos);
}

namespace {

Bytes from_hex(const std::string& hex) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

}  // namespace

TEST_CASE("the golden signed envelopes are what sign_control makes with the test key",
          "[security][control][vectors]") {
  std::ifstream in(NOVA_VECTORS_DIR "/signed/signed.json");
  REQUIRE(in);
  const auto doc = nlohmann::json::parse(in);
  const SigningKey key = SigningKey::from_seed(from_hex(doc["key"]["seed"])).value();
  CHECK(key.verify_key().raw() == from_hex(doc["key"]["public"]));
  REQUIRE(doc["vectors"].size() >= 3);
  for (const auto& v : doc["vectors"]) {
    INFO(v["name"].get<std::string>());
    const auto& c = v["claims"];
    const SignedClaims claims{c["node"], c["site"], c["kind"], c["mid"], c["iat"], c["exp"]};
    const Bytes message = from_hex(v["message_cbor"]);
    CHECK(nova::schemas::encode_signed_payload(claims, message) == from_hex(v["payload"]));
    CHECK(nova::schemas::cose_sig_structure(from_hex(v["payload"])) ==
          from_hex(v["sig_structure"]));
    CHECK(sign_control(key, claims, message) == from_hex(v["cose"]));
    const ControlCheck check =
        check_control(from_hex(v["cose"]), std::vector{key.verify_key()},
                      {claims.node, claims.site, claims.kind, claims.issued_ts, 0});
    CHECK_FALSE(check.refusal);
    CHECK(check.envelope.claims == claims);
    CHECK(check.envelope.message == message);
    CHECK(check.envelope.signature == from_hex(v["signature"]));
  }
}
