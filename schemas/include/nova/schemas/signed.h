// The signed envelope of every downward control message (schemas/cddl/signed.cddl).
//
// A COSE_Sign1 structure (RFC 9052 section 4.2, tag 18) with algorithm EdDSA (-8):
//
//   18([ h'a10127',            protected header {1: -8}, always these three bytes
//        {},                   unprotected header, empty
//        payload: bstr,        the claims map below, deterministic CBOR
//        signature: bstr ])    64 bytes of Ed25519 over the Sig_structure
//
// The payload is a claims map saying to whom and when the message applies, with the
// message itself (a task, config, model, ack or verdict, encoded as on an unsigned
// topic) in `msg`. Signing and checking a signature are in nova/security/control.h: this
// header only builds and takes apart the bytes, so codecs and fuzzers need no crypto.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "nova/schemas/codec.h"
#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::schemas {

// What the signer vouches for besides the message. Every member is required.
struct SignedClaims {
  std::string node;          // "node": the target node id
  std::string site;          // "site": the target's site path, as in its down topic
  std::string kind;          // "kind": the down topic kind: task, config, model, ack, verdict
  std::string message_id;    // "mid": an id unique to this message (replay detection)
  Timestamp issued_ts = 0;   // "iat": when it was signed, ms since the epoch
  Timestamp expires_ts = 0;  // "exp": when it stops being valid, ms; after iat

  bool operator==(const SignedClaims&) const = default;
};

struct SignedEnvelope {
  SignedClaims claims;
  Bytes message;    // the inner message (claims "msg"), not yet decoded
  Bytes payload;    // the COSE payload: the claims map as it was signed
  Bytes signature;  // 64 bytes

  bool operator==(const SignedEnvelope&) const = default;
};

// The claims map (the COSE payload), deterministic CBOR.
Bytes encode_signed_payload(const SignedClaims& claims, std::span<const std::uint8_t> message);

// The bytes Ed25519 signs (RFC 9052 section 4.4):
// ["Signature1", h'a10127', h'', payload].
Bytes cose_sig_structure(std::span<const std::uint8_t> payload);

// The tagged COSE_Sign1 around `payload` and its signature.
Bytes encode_cose_sign1(std::span<const std::uint8_t> payload,
                        std::span<const std::uint8_t> signature);

// Takes a COSE_Sign1 apart (tagged or not) and decodes its claims under the streaming
// decoder's rules. Checks the structure only: whether the signature is good and the claims
// fit the receiver is for nova/security/control.h. Errors are at path "signed...".
// The envelope may be up to `limits.max_message_bytes` + 1 KiB, so that any message the
// codec accepts fits in one.
Result<SignedEnvelope> decode_cose_sign1(std::span<const std::uint8_t> input,
                                         const Limits& limits = {});

}  // namespace nova::schemas
