// Field paths for error messages, built only when an error is reported.
//
// Decoding walks the tree with a PathNode on the stack per level; the string
// "batch.samples[3].cpu" is rendered from the chain only on failure, so the
// success path pays nothing for good error messages.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "nova/schemas/result.h"

namespace nova::schemas::detail {

struct PathNode {
  const PathNode* parent = nullptr;
  std::string_view key;   // member name, or the root name at the top
  std::size_t index = 0;  // array index when is_index
  bool is_index = false;

  PathNode member(std::string_view k) const { return PathNode{this, k, 0, false}; }
  PathNode element(std::size_t i) const { return PathNode{this, {}, i, true}; }
  std::string render() const;
};

// Thrown inside the decoders and turned into Result<T> at the public boundary, so deep
// recursion does not have to thread error returns through every level.
struct DecodeFailure {
  Error error;
};

[[noreturn]] void fail(const PathNode& at, std::string reason);
// For input that is not a well-formed document (Error::whole_input).
[[noreturn]] void fail_input(const PathNode& at, std::string reason);

}  // namespace nova::schemas::detail
