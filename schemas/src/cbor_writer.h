// Deterministic CBOR encoding of a Value tree (RFC 8949 section 4.2.1).
#pragma once

#include "value.h"

namespace nova::schemas::detail {

// Appends the encoding of `value` to `out`: definite lengths, shortest heads, map members
// sorted by encoded key (shorter key first, then bytewise), floats in the shortest of
// half/single/double precision that keeps the exact value.
void write_cbor(const Value& value, Bytes& out);

}  // namespace nova::schemas::detail
