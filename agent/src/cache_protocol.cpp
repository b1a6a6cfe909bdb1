#include "nova/agent/cache_protocol.h"

#include <charconv>
#include <cstdio>
#include <vector>

namespace nova::agent {
namespace {

using schemas::Error;

// `line` split at single spaces.
std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  while (!line.empty()) {
    const auto sp = line.find(' ');
    out.push_back(line.substr(0, sp));
    if (sp == std::string_view::npos) break;
    line.remove_prefix(sp + 1);
  }
  return out;
}

}  // namespace

schemas::Result<CacheRequest> parse_cache_request(std::string_view line) {
  if (line.ends_with('\r')) line.remove_suffix(1);
  const auto w = words(line);
  if (w.empty() || w[0].empty()) return Error{"command", "empty line: expected GET, PUT, DEL or STATS"};
  CacheRequest r;
  std::size_t args = 1;
  if (w[0] == "GET") {
    r.op = CacheRequest::Op::get;
  } else if (w[0] == "PUT") {
    r.op = CacheRequest::Op::put;
    args = 2;
  } else if (w[0] == "DEL") {
    r.op = CacheRequest::Op::del;
  } else if (w[0] == "STATS") {
    if (w.size() != 1) return Error{"command", "STATS takes no argument"};
    r.op = CacheRequest::Op::stats;
    return r;
  } else {
    return Error{"command", "unknown command '" + std::string(w[0].substr(0, 16)) + "': expected GET, PUT, DEL or STATS"};
  }
  if (w.size() != 1 + args) {
    return Error{"command", std::string(w[0]) + (args == 1 ? " takes a key" : " takes a key and a length") +
                                " separated by single spaces"};
  }
  if (auto problem = cache_key_problem(w[1])) return Error{"key", *problem};
  r.key = std::string(w[1]);
  if (r.op == CacheRequest::Op::put) {
    const std::string_view n = w[2];
    const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), r.length);
    if (n.empty() || ec != std::errc() || end != n.data() + n.size()) {
      return Error{"length", "'" + std::string(n.substr(0, 20)) + "' is not a byte count"};
    }
    if (r.length > kCacheMaxValueBytes) {
      return Error{"length", std::to_string(r.length) + " is larger than " + std::to_string(kCacheMaxValueBytes)};
    }
  }
  return r;
}

std::string cache_error_reply(const Error& error) {
  std::string reason = error.reason;
  for (char& c : reason) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return "ERR " + (error.path.empty() ? std::string("request") : error.path) + " " + reason + "\n";
}

std::string cache_stats_reply(const CacheStats& s) {
  char pct[32];
  std::snprintf(pct, sizeof pct, "%.1f", 100.0 * s.hit_ratio());
  return "STATS hits=" + std::to_string(s.hits) + " misses=" + std::to_string(s.misses) + " hit_pct=" + pct +
         " entries=" + std::to_string(s.entries) + " bytes=" + std::to_string(s.bytes) +
         " budget_bytes=" + std::to_string(s.budget_bytes) + " evictions=" + std::to_string(s.evictions) +
         " prefetches=" + std::to_string(s.prefetches) + " prefetch_hits=" + std::to_string(s.prefetch_hits) +
         " origin_fetches=" + std::to_string(s.origin_fetches) + " origin_errors=" + std::to_string(s.origin_errors) +
         "\n";
}

}  // namespace nova::agent
