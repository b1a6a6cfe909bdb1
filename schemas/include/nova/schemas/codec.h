// Encoding and decoding of the topic API's payloads (messages.h) as CBOR and JSON.
//
// Encoding is deterministic (RFC 8949 section 4.2.1, "core deterministic encoding"):
// definite lengths, shortest integer heads, map keys sorted by their encoded bytes, and
// each float in the shortest of half/single/double precision that preserves its value.
// The golden vectors in schemas/vectors/ are byte-exact under these rules.
//
// Decoding is strict and never trusts a declared length: every array, map and string
// length is checked against the bytes that remain and against Limits before anything is
// allocated, nesting depth is bounded, text must be valid UTF-8, map keys must be unique
// text strings, and each field must have its schema's type and range. Fields a decoder
// does not know are skipped (forward compatibility: a v1.x producer may add fields),
// but they still count against the limits. A failure returns an Error whose path names
// the field, e.g. "batch.samples[3].cpu: expected float, got text string".
//
// Type mapping: integers are CBOR major types 0/1 and JSON integers; float fields also
// accept integers (some encoders emit 21 for 21.0); byte strings travel in JSON as
// base64 (RFC 4648, padded); the infinities a field allows travel in JSON as the strings
// "Infinity" and "-Infinity". CBOR tags are accepted and ignored; "undefined" and other
// simple values are refused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::schemas {

struct Limits {
  std::size_t max_message_bytes = 256 * 1024;  // whole input
  std::size_t max_depth = 16;                  // nested arrays/maps
  std::size_t max_string_bytes = 64 * 1024;    // one text or byte string
  std::size_t max_items = 8192;                // one array or map
  std::size_t max_unpacked_bytes = 4 * 1024 * 1024;  // a compressed batch, inflated
};

using Bytes = std::vector<std::uint8_t>;

// T is one of the message structs in messages.h; any other T fails to link.
template <class T>
Bytes encode_cbor(const T& message);
template <class T>
Result<T> decode_cbor(std::span<const std::uint8_t> input, const Limits& limits = {});

template <class T>
std::string encode_json(const T& message);
template <class T>
Result<T> decode_json(std::string_view input, const Limits& limits = {});

// What a batch becomes on the wire with BatchEncoding::qdelta, as the decoder returns it:
// values rounded to their precision, extra_decimals filled in, encoding qdelta (or zstd
// with the values unchanged when the batch cannot be quantized; see messages.h).
// decode_cbor(encode_cbor(b)) == quantize(b) for every valid qdelta batch b.
MetricsBatch quantize(const MetricsBatch& batch);

// `bytes` as valid UTF-8 text, for error reasons and logs that quote untrusted input:
// well-formed UTF-8 is kept, and each byte that is not part of it, or is a control byte,
// becomes the four characters "\xNN". Never throws on any input.
std::string printable_utf8(std::string_view bytes);

// The root name a message type's error paths start with ("batch", "reading", ...).
template <class T>
std::string_view root_name();

// Convenience for payloads held as text (e.g. MQTT payloads in std::string).
template <class T>
Result<T> decode_cbor(std::string_view input, const Limits& limits = {}) {
  return decode_cbor<T>(std::span(reinterpret_cast<const std::uint8_t*>(input.data()),
                                  input.size()),
                        limits);
}

}  // namespace nova::schemas
