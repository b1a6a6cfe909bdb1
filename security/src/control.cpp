#include "nova/security/control.h"

#include <openssl/rand.h>

#include <new>
#include <variant>

#include "nova/schemas/topic.h"

namespace nova::security {

schemas::Result<schemas::SignedClaims> claims_for_topic(const std::string& topic,
                                                        schemas::Timestamp now_ms,
                                                        std::chrono::milliseconds ttl) {
  auto parsed = topics::parse(topic);
  const auto* down = parsed ? std::get_if<topics::DownTopic>(&*parsed) : nullptr;
  if (down == nullptr) return schemas::Error{"topic", "'" + topic + "' is not a down topic"};
  return schemas::SignedClaims{
      down->node.str(),    down->site.str(), std::string(topics::to_string(down->kind)),
      random_message_id(), now_ms,           now_ms + static_cast<schemas::Timestamp>(ttl.count())};
}

std::string random_message_id() {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1)
    throw std::bad_alloc();  // the generator failing is not recoverable
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (unsigned char b : raw) {
    id += kHex[b >> 4];
    id += kHex[b & 0xf];
  }
  return id;
}

schemas::Bytes sign_control(const SigningKey& key, const schemas::SignedClaims& claims,
                            std::span<const std::uint8_t> message) {
  const schemas::Bytes payload = schemas::encode_signed_payload(claims, message);
  return schemas::encode_cose_sign1(payload, key.sign(schemas::cose_sig_structure(payload)));
}

std::string_view refusal_name(Refusal r) {
  switch (r) {
    case Refusal::unsigned_message:
      return "unsigned";
    case Refusal::untrusted:
      return "untrusted_key";
    case Refusal::misaddressed:
      return "misaddressed";
    case Refusal::expired:
      return "expired";
    case Refusal::not_yet_valid:
      return "not_yet_valid";
    case Refusal::replayed:
      return "replayed";
    case Refusal::stale:
      return "stale";
  }
  return "unknown";
}

ControlCheck check_control(std::span<const std::uint8_t> bytes, std::span<const VerifyKey> trusted,
                           const ControlExpectation& expected) {
  ControlCheck out;
  auto refuse = [&](Refusal r, std::string reason) {
    out.refusal = r;
    out.reason = std::move(reason);
    return out;
  };
  auto decoded = schemas::decode_cose_sign1(bytes);
  if (!decoded)
    return refuse(Refusal::unsigned_message, "not a signed envelope: " + decoded.error().message());
  out.envelope = std::move(decoded).value();
  const schemas::Bytes signed_bytes = schemas::cose_sig_structure(out.envelope.payload);
  bool verified = false;
  for (const VerifyKey& k : trusted) {
    if (k.verify(signed_bytes, out.envelope.signature)) {
      verified = true;
      break;
    }
  }
  if (!verified) {
    return refuse(Refusal::untrusted, "signature verifies with none of the " +
                                          std::to_string(trusted.size()) + " trusted keys");
  }
  const schemas::SignedClaims& c = out.envelope.claims;
  if (c.node != expected.node)
    return refuse(Refusal::misaddressed, "signed for node '" + c.node + "'");
  if (c.site != expected.site)
    return refuse(Refusal::misaddressed, "signed for site '" + c.site + "'");
  if (c.kind != expected.kind) {
    return refuse(Refusal::misaddressed,
                  "signed as a " + c.kind + ", received on a " + expected.kind + " topic");
  }
  if (c.expires_ts + expected.skew_ms < expected.now_ms) {
    return refuse(Refusal::expired, "expired at " + std::to_string(c.expires_ts) + " (now " +
                                        std::to_string(expected.now_ms) + ", skew allowed " +
                                        std::to_string(expected.skew_ms) + " ms)");
  }
  if (c.issued_ts > expected.now_ms + expected.skew_ms) {
    return refuse(Refusal::not_yet_valid,
                  "issued at " + std::to_string(c.issued_ts) + ", ahead of now " +
                      std::to_string(expected.now_ms) + " by more than the " +
                      std::to_string(expected.skew_ms) + " ms skew allowed");
  }
  return out;
}

}  // namespace nova::security
