// Where the task cache fetches what it does not hold (cache.h): an HTTP origin at a
// base URL (cache.origin). Key `k` is `GET <base path>/<k>` with HTTP/1.0 (one
// connection per request, no chunked bodies): 200 is the value, 404 and 410 are "no
// such key" (nothing is stored), any other answer, a connection failure, a body over
// 4 MiB or a timeout is an error naming it. Bytes of a key other than letters, digits,
// '-', '.', '_', '~' and '/' are percent-encoded; '/' is kept so keys map to paths.
//
// Plain http:// only: the agent links no TLS library for this (docs/agent.md, Cache), so
// an origin should be on the site's own network (a gateway's file server, say).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "nova/agent/cache.h"
#include "nova/schemas/result.h"

namespace nova::agent {

class HttpOrigin {
 public:
  // "http://host[:port][/path]"; errors name cache.origin and the reason.
  static schemas::Result<HttpOrigin> parse(std::string_view url,
                                           std::chrono::milliseconds timeout = std::chrono::seconds(5));

  OriginReply fetch(std::string_view key) const;
  // The request path of `key` ("/base/tile%3F1"), for tests and logs.
  std::string path_of(std::string_view key) const;
  const std::string& host() const { return host_; }
  std::uint16_t port() const { return port_; }

 private:
  std::string host_;
  std::uint16_t port_ = 80;
  std::string base_;  // "" or "/path" without a trailing '/'
  std::chrono::milliseconds timeout_{5000};
};

}  // namespace nova::agent
