// The task cache's wire protocol on its Unix socket (cache_server.h; docs/agent.md,
// "Cache"). A request is one line ending in '\n' (at most kCacheMaxLine bytes), a PUT
// line is followed by exactly <length> value bytes; several requests may share a
// connection.
//
//   GET <key>\n              -> VALUE <length>\n<bytes> | MISS\n
//   PUT <key> <length>\n<bytes> -> OK\n
//   DEL <key>\n              -> OK\n | MISS\n
//   STATS\n                  -> STATS hits=<n> misses=<n> ... (logfmt, one line)\n
//   any error                -> ERR <field> <reason>\n
//
// A key is 1..256 bytes of printable ASCII without space (cache_key_problem); a value at
// most 4 MiB. <field> names what was wrong: command, key, length, value, origin, cache,
// line, connection. After an ERR for `line` or `length` the connection is closed (the
// framing is lost); after any other the next request is read.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "nova/agent/cache.h"
#include "nova/schemas/result.h"

namespace nova::agent {

inline constexpr std::size_t kCacheMaxLine = 512;

struct CacheRequest {
  enum class Op { get, put, del, stats } op = Op::get;
  std::string key;          // get, put, del
  std::size_t length = 0;   // put: value bytes that follow the line
};

// One request line without its '\n' (a trailing '\r' is accepted too).
schemas::Result<CacheRequest> parse_cache_request(std::string_view line);

// "ERR <path> <reason>\n" (the reason's line breaks become spaces).
std::string cache_error_reply(const schemas::Error& error);
// "STATS hits=... misses=... hit_pct=... ...\n".
std::string cache_stats_reply(const CacheStats& stats);

}  // namespace nova::agent
