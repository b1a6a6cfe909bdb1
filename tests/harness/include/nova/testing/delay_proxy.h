// A slow link for tests: a TCP proxy on a free loopback port that forwards every
// connection to 127.0.0.1:<upstream> and holds each byte for a set delay in each
// direction. Latency, not bandwidth: bytes keep their order and nothing is dropped.
//
// It forwards bytes only, so TLS passes through untouched (the client still verifies
// the broker's certificate for 127.0.0.1). set_delay() applies to bytes read from then
// on; what is already held keeps its due time, and a shorter delay never reorders bytes.
// One thread polls every socket; the destructor closes everything.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

namespace nova::testing {

class DelayProxy {
 public:
  explicit DelayProxy(std::uint16_t upstream_port, std::chrono::milliseconds one_way = std::chrono::milliseconds(0));
  ~DelayProxy();
  DelayProxy(const DelayProxy&) = delete;
  DelayProxy& operator=(const DelayProxy&) = delete;

  std::uint16_t port() const;
  void set_delay(std::chrono::milliseconds one_way);
  // Connections accepted so far.
  std::size_t accepted() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nova::testing
