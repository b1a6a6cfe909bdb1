// Glob patterns for gauge, sensor and value names: '*' matches any run of characters
// (empty included), every other character itself. Used by anomaly.streams rules and by
// pipeline inputs, so one pattern means the same thing in both.
#pragma once

#include <string_view>

namespace nova::agent {

bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace nova::agent
