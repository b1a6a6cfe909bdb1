#include "nova/schemas/signed.h"

#include <algorithm>
#include <array>
#include <string_view>

#include "cbor_reader.h"
#include "cbor_writer.h"
#include "fields.h"
#include "nova/schemas/topic.h"

namespace nova::schemas {
namespace {

using detail::DecodeContext;
using detail::Field;
using detail::MapReader;
using detail::PathNode;
using detail::Value;

// The protected header {1: -8}: alg EdDSA. The only one we write or accept, so it is
// compared as bytes and never parsed (COSE's header maps have integer keys, which the
// message codec refuses everywhere else).
constexpr std::array<std::uint8_t, 3> kProtected{0xa1, 0x01, 0x27};
constexpr std::uint8_t kCoseSign1Tag = 0xd2;  // tag 18, one byte head
constexpr std::size_t kEnvelopeOverhead = 1024;
constexpr std::size_t kSignatureBytes = 64;
constexpr std::array<std::string_view, 8> kKinds{"task", "config", "model", "ack", "verdict", "update", "cancel", "erase"};

Value bytes_value(std::span<const std::uint8_t> b) {
  return Value::bytes(Bytes(b.begin(), b.end()));
}

SignedClaims read_claims(const MapReader& r) {
  detail::check_version(r);
  SignedClaims c;
  c.node = r.field("node").id();
  const Field site = r.field("site");
  c.site = site.text(topics::kMaxTopicBytes);
  if (!topics::SitePath::parse(c.site)) site.reject("'" + c.site + "' is not a site path");
  const Field kind = r.field("kind");
  c.kind = kind.text(16);
  if (std::find(kKinds.begin(), kKinds.end(), c.kind) == kKinds.end()) {
    std::string expected;
    for (std::string_view k : kKinds) expected += (expected.empty() ? "" : ", ") + std::string(k);
    kind.reject("unknown kind '" + c.kind + "' (expected one of: " + expected + ")");
  }
  c.message_id = r.field("mid").id();
  c.issued_ts = r.field("iat").uint();
  const Field exp = r.field("exp");
  c.expires_ts = exp.uint();
  if (c.expires_ts <= c.issued_ts)
    exp.reject("expires at or before it was issued (iat " + std::to_string(c.issued_ts) + ")");
  return c;
}

}  // namespace

Bytes encode_signed_payload(const SignedClaims& claims, std::span<const std::uint8_t> message) {
  Value v = detail::versioned()
                .put("node", Value::text(claims.node))
                .put("site", Value::text(claims.site))
                .put("kind", Value::text(claims.kind))
                .put("mid", Value::text(claims.message_id))
                .put("iat", Value::uint(claims.issued_ts))
                .put("exp", Value::uint(claims.expires_ts))
                .put("msg", bytes_value(message))
                .done();
  Bytes out;
  detail::write_cbor(v, out);
  return out;
}

Bytes cose_sig_structure(std::span<const std::uint8_t> payload) {
  Bytes out;
  detail::write_cbor(Value::array({Value::text("Signature1"), bytes_value(kProtected),
                                   Value::bytes({}), bytes_value(payload)}),
                     out);
  return out;
}

Bytes encode_cose_sign1(std::span<const std::uint8_t> payload,
                        std::span<const std::uint8_t> signature) {
  Bytes out{kCoseSign1Tag};
  detail::write_cbor(Value::array({bytes_value(kProtected), Value::map({}), bytes_value(payload),
                                   bytes_value(signature)}),
                     out);
  return out;
}

Result<SignedEnvelope> decode_cose_sign1(std::span<const std::uint8_t> input,
                                         const Limits& limits) {
  // A whole message of the codec's size limit must fit in `msg`, inside the envelope.
  Limits outer = limits;
  outer.max_message_bytes = limits.max_message_bytes + kEnvelopeOverhead;
  outer.max_string_bytes = std::max(limits.max_string_bytes, outer.max_message_bytes);
  const PathNode root{nullptr, "signed", 0, false};
  try {
    // The tag is optional (RFC 9052 section 4.2: the context may imply it). Its one-byte
    // head is taken off here: libcbor 0.8's streaming decoder calls the heads d0..d4
    // (tags 16..20, COSE's among them) malformed, although they are well-formed CBOR.
    if (!input.empty() && input.front() == kCoseSign1Tag) input = input.subspan(1);
    const Value cose = detail::read_cbor(input, outer, root);
    if (!cose.is(Value::Kind::array) || cose.as_array().size() != 4) {
      detail::fail(
          root,
          "not a COSE_Sign1 (expected an array of 4: protected, unprotected, payload, signature)");
    }
    const detail::Array& parts = cose.as_array();
    const DecodeContext ctx{detail::Format::cbor, outer};
    const Bytes prot = Field(parts[0], root.member("protected"), ctx).bytes(kProtected.size());
    if (!std::equal(prot.begin(), prot.end(), kProtected.begin(), kProtected.end())) {
      detail::fail(root.member("protected"),
                   "expected the header {1: -8} (alg EdDSA), encoded a1 01 27");
    }
    if (!parts[1].is(Value::Kind::map) || !parts[1].as_map().empty()) {
      detail::fail(root.member("unprotected"), "expected an empty map");
    }
    SignedEnvelope e;
    e.payload = Field(parts[2], root.member("payload"), ctx).bytes(outer.max_string_bytes);
    e.signature = Field(parts[3], root.member("signature"), ctx).bytes(kSignatureBytes);
    if (e.signature.size() != kSignatureBytes) {
      detail::fail(root.member("signature"),
                   "is " + std::to_string(e.signature.size()) + " bytes, expected 64 (Ed25519)");
    }
    const PathNode claims_root = root.member("payload");
    const Value claims = detail::read_cbor(e.payload, outer, claims_root);
    const MapReader r(claims, claims_root, ctx);
    e.claims = read_claims(r);
    e.message = r.field("msg").bytes(limits.max_message_bytes);
    return e;
  } catch (const detail::DecodeFailure& f) {
    return f.error;
  }
}

}  // namespace nova::schemas
