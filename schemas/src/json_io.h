// JSON decoding into a Value tree and encoding from one.
//
// Parsing uses nlohmann-json's SAX interface, never its DOM, so the same Limits as for
// CBOR (depth, items, string size) apply while parsing, before anything large is built.
// JSON has no byte strings or infinities: the writer emits base64 text and the strings
// "Infinity"/"-Infinity", and the typed layer accepts them where a field allows.
#pragma once

#include <string>
#include <string_view>

#include "path.h"
#include "value.h"

namespace nova::schemas::detail {

Value read_json(std::string_view input, const Limits& limits, const PathNode& root);
std::string write_json(const Value& value);

std::string base64_encode(const Bytes& bytes);
// Strict RFC 4648 section 4 (standard alphabet, padding required). False on bad input.
bool base64_decode(std::string_view text, Bytes& out);

}  // namespace nova::schemas::detail
