// The deployment several cloud process tests share: two device agents (tier 5) at one
// access site, below one broker and one nova-cloud, so that work placed on one can fail
// over or migrate to the other.
#pragma once

#include <array>
#include <string>

namespace nova::test {

// The access site both devices hang off (the example topology's par-a1).
inline constexpr const char* kDeviceSite = "cloud/eu/par/par-a1";

inline const std::array<std::string, 2> kTwoDevices = {"dev-a", "dev-b"};

// The device that is not `node` (the one work fails over or migrates to).
inline const std::string& other_device(const std::string& node) {
  return node == kTwoDevices[0] ? kTwoDevices[1] : kTwoDevices[0];
}

}  // namespace nova::test
