// Strict CBOR decoding into a Value tree, on libcbor's streaming decoder.
//
// libcbor's cbor_load() pre-allocates arrays and maps from the count the input declares,
// so 8 hostile bytes can demand gigabytes. We never call it: cbor_stream_decode() reports
// one data item head at a time and this reader checks every declared count and length
// against the bytes that remain and against Limits before allocating anything.
#pragma once

#include <cstdint>
#include <span>

#include "path.h"
#include "value.h"

namespace nova::schemas::detail {

// Decodes exactly one data item filling all of `input`. Errors are thrown as
// DecodeFailure with paths below `root`.
Value read_cbor(std::span<const std::uint8_t> input, const Limits& limits, const PathNode& root);

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points past
// U+10FFFF), as RFC 8949 requires of text strings.
bool valid_utf8(std::string_view text);

}  // namespace nova::schemas::detail
