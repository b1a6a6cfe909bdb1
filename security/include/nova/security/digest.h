// SHA-256 and secret random bytes (OpenSSL), for the places that store a digest instead
// of a secret (nova-cloud's API tokens) or chain entries by digest (the audit log).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace nova::security {

// Lower-case hex of the SHA-256 of `data` (64 characters).
std::string sha256_hex(std::string_view data);

// `bytes` bytes from OpenSSL's CSPRNG, as lower-case hex. Throws std::runtime_error when
// the generator fails (never a predictable value).
std::string random_hex(std::size_t bytes);

// Equality that takes the same time wherever the first difference is (digests of secrets).
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace nova::security
