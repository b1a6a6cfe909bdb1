#include "nova/security/control.h"

namespace nova::security {

schemas::Bytes sign_control(const SigningKey& key, const schemas::SignedClaims& claims,
                            std::span<const std::uint8_t> message) {
  const schemas::Bytes payload = schemas::encode_signed_payload(claims, message);
  return schemas::encode_cose_sign1(payload, key.sign(schemas::cose_sig_structure(payload)));
}

std::string_view refusal_name(Refusal r) {
  switch (r) {
    case Refusal::unsigned_message: return "unsigned";
    case Refusal::untrusted: return "untrusted_key";
    case Refusal::misaddressed: return "misaddressed";
    case Refusal::expired: return "expired";
    case Refusal::not_yet_valid: return "not_yet_valid";
    case Refusal::replayed: return "replayed";
    case Refusal::stale: return "stale";
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
  if (!decoded) return refuse(Refusal::unsigned_message, "not a signed envelope: " + decoded.error().message());
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
    return refuse(Refusal::untrusted, "signature verifies with none of the " + std::to_string(trusted.size()) +
                                          " trusted keys");
  }
  const schemas::SignedClaims& c = out.envelope.claims;
  if (c.node != expected.node) return refuse(Refusal::misaddressed, "signed for node '" + c.node + "'");
  if (c.site != expected.site) return refuse(Refusal::misaddressed, "signed for site '" + c.site + "'");
  if (c.kind != expected.kind) {
    return refuse(Refusal::misaddressed, "signed as a " + c.kind + ", received on a " + expected.kind + " topic");
  }
  if (c.expires_ts + expected.skew_ms < expected.now_ms) {
    return refuse(Refusal::expired, "expired at " + std::to_string(c.expires_ts) + " (now " +
                                        std::to_string(expected.now_ms) + ", skew allowed " +
                                        std::to_string(expected.skew_ms) + " ms)");
  }
  if (c.issued_ts > expected.now_ms + expected.skew_ms) {
    return refuse(Refusal::not_yet_valid, "issued at " + std::to_string(c.issued_ts) + ", ahead of now " +
                                              std::to_string(expected.now_ms) + " by more than the " +
                                              std::to_string(expected.skew_ms) + " ms skew allowed");
  }
  return out;
}

}  // namespace nova::security
