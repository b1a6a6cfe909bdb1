// Signed control messages: nova-cloud signs every downward message (task, config, model,
// ack, verdict, update offer, task cancel, erasure request) in a COSE_Sign1 envelope
// (nova/schemas/signed.h); an agent checks the signature against the keys it trusts and
// the claims against itself and its clock.
//
//   Bytes env = sign_control(key, {node, site, "task", mid, now, now + ttl}, task_cbor);
//   ControlCheck c = check_control(env, trusted, {node, site, "task", now_ms, skew_ms});
//   if (c.refusal) log(refusal_name(*c.refusal), c.reason); else use(c.envelope.message);
//
// What a check cannot know alone, whether the message id was seen before, is the
// receiver's (agent/src/control_gate.h keeps the ids it accepted).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nova/schemas/signed.h"
#include "nova/security/signing.h"

namespace nova::security {

// The claims of a message on the down topic `topic` (node, site and kind read from it),
// issued at `now_ms` and valid for `ttl`, with a random message id. Error when `topic`
// is not a down topic.
schemas::Result<schemas::SignedClaims> claims_for_topic(const std::string& topic,
                                                        schemas::Timestamp now_ms,
                                                        std::chrono::milliseconds ttl);
// 32 hex digits from OpenSSL's random generator: unique without coordination between
// signers (several nova-cloud instances, restarts).
std::string random_message_id();

// The whole envelope, ready to publish.
schemas::Bytes sign_control(const SigningKey& key, const schemas::SignedClaims& claims,
                            std::span<const std::uint8_t> message);

// Why a downward message is refused. One counter and one log reason each.
enum class Refusal {
  unsigned_message,  // not a well-formed COSE_Sign1 with our claims
  untrusted,         // no trusted key verifies the signature
  misaddressed,      // for another node, site or topic kind
  expired,           // now is past exp (+ skew)
  not_yet_valid,     // iat is ahead of now (+ skew)
  replayed,          // the receiver accepted this message id before
  stale,             // older than the retained message in force
};
std::string_view refusal_name(Refusal r);  // "unsigned", "untrusted_key", ...

// Who receives, and when.
struct ControlExpectation {
  std::string node;
  std::string site;
  std::string kind;  // the kind of the down topic it came on
  schemas::Timestamp now_ms = 0;
  // Clocks of signer and receiver differ: iat may be this far in the future and exp this
  // far in the past before the message is refused.
  std::uint64_t skew_ms = 0;
};

struct ControlCheck {
  std::optional<Refusal> refusal;  // none: signed by a trusted key, addressed here, valid now
  std::string reason;              // for the log: what exactly did not fit
  schemas::SignedEnvelope envelope;
};

// The signature is checked before any claim, so an unsigned sender learns nothing from
// which claim it got wrong.
ControlCheck check_control(std::span<const std::uint8_t> bytes, std::span<const VerifyKey> trusted,
                           const ControlExpectation& expected);

}  // namespace nova::security
