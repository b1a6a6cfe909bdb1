// The task cache (issue 14, item 5): hit ratio of LRU alone beside LRU + prefetch (the
// stride and successor predictor, cache_predictor.h) on a Zipf trace with sequential
// runs, at a byte budget of 10 % of the key space; the best static cache for the same
// trace (the most requested keys that fit the budget, knowing the whole trace in
// advance) as the peer; and operations per second through the real LevelDB cache.
//
// The trace (seeded, so every run sees the same one): N keys "obj/00000".. with values
// of 512..1535 bytes (fixed per key). Each step draws a start key by Zipf(s) over the
// keys (rank r has weight 1/r^s; ranks are assigned to keys by a fixed random
// permutation, so popular keys are not neighbours); with probability p_run it then reads
// a run of the following keys (start, start+1, ... a length uniform in 4..16), else the
// start key alone: a task that mostly walks sequences (tiles, log segments, model
// shards) from popular starting points.
//
// The origin is in-process and answers at once, and prefetch runs inline after each
// read: the agent's socket prefetches on its own thread, so a task that reads faster
// than the origin answers sees fewer prefetch hits than this. Not a pass/fail test.
//
//   build/bench/cache_bench [requests]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "nova/agent/cache.h"

using namespace nova::agent;
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kKeys = 10000;

std::string key_of(std::size_t id) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "obj/%05zu", id);
  return buf;
}

std::size_t value_size(std::size_t id) { return 512 + (id * 2654435761u) % 1024; }

struct Trace {
  std::vector<std::size_t> ids;
};

Trace make_trace(std::size_t requests, double zipf_s, double p_run, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> weights(kKeys);
  for (std::size_t r = 0; r < kKeys; ++r) weights[r] = 1.0 / std::pow(static_cast<double>(r + 1), zipf_s);
  std::discrete_distribution<std::size_t> zipf(weights.begin(), weights.end());
  std::vector<std::size_t> key_of_rank(kKeys);
  std::iota(key_of_rank.begin(), key_of_rank.end(), std::size_t{0});
  std::shuffle(key_of_rank.begin(), key_of_rank.end(), rng);
  std::bernoulli_distribution run(p_run);
  std::uniform_int_distribution<std::size_t> length(4, 16);
  Trace t;
  while (t.ids.size() < requests) {
    const std::size_t start = key_of_rank[zipf(rng)];
    const std::size_t n = run(rng) ? length(rng) : 1;
    for (std::size_t i = 0; i < n && t.ids.size() < requests; ++i) t.ids.push_back((start + i) % kKeys);
  }
  return t;
}

std::uint64_t key_space_bytes() {
  std::uint64_t total = 0;
  for (std::size_t id = 0; id < kKeys; ++id) total += key_of(id).size() + value_size(id);
  return total;
}

// The most requested keys that fit `budget`, chosen knowing the whole trace: the hit
// ratio a cache that never changes its contents could reach at best (by count per byte).
double best_static(const Trace& t, std::uint64_t budget) {
  std::vector<std::uint64_t> count(kKeys, 0);
  for (std::size_t id : t.ids) ++count[id];
  std::vector<std::size_t> order(kKeys);
  std::iota(order.begin(), order.end(), std::size_t{0});
  auto charge = [](std::size_t id) { return static_cast<double>(key_of(id).size() + value_size(id)); };
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return static_cast<double>(count[a]) / charge(a) > static_cast<double>(count[b]) / charge(b); });
  std::uint64_t used = 0, hits = 0;
  for (std::size_t id : order) {
    const auto c = static_cast<std::uint64_t>(charge(id));
    if (used + c > budget) continue;
    used += c;
    hits += count[id];
  }
  return static_cast<double>(hits) / static_cast<double>(t.ids.size());
}

struct Run {
  CacheStats stats;
  double ops_per_s = 0;
};

Run replay(const Trace& t, std::uint64_t budget, bool prefetch, std::size_t depth) {
  char tmpl[] = "/tmp/nova-cache-bench-XXXXXX";
  const fs::path dir = ::mkdtemp(tmpl);
  Run out;
  {
    CacheOptions o;
    o.dir = dir;
    o.budget_bytes = budget;
    o.max_entries = kKeys;
    o.prefetch = prefetch;
    o.predictor.depth = depth;
    auto cache = Cache::open(o);
    if (!cache) {
      std::fprintf(stderr, "%s\n", cache.error().message().c_str());
      std::exit(1);
    }
    const Origin origin = [](std::string_view key) {
      const std::size_t id = std::strtoul(std::string(key.substr(4)).c_str(), nullptr, 10);
      return OriginReply{OriginReply::Kind::value, std::string(value_size(id), static_cast<char>('a' + id % 26))};
    };
    std::vector<std::string> keys(kKeys);
    for (std::size_t id = 0; id < kKeys; ++id) keys[id] = key_of(id);
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t id : t.ids) {
      auto v = cache.value()->get_or_fetch(keys[id], origin);
      if (!v || !v.value()) std::abort();  // the origin has every key
      if (prefetch) cache.value()->prefetch(keys[id], origin);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out.stats = cache.value()->stats();
    out.ops_per_s = static_cast<double>(t.ids.size()) / s;
  }
  fs::remove_all(dir);
  return out;
}

void report(const char* name, const Run& r, std::size_t requests) {
  std::printf("  %-22s hit %5.1f %%  prefetch hits %6llu  origin fetches/request %.2f  evictions %7llu  %8.0f req/s\n",
              name, 100.0 * r.stats.hit_ratio(), static_cast<unsigned long long>(r.stats.prefetch_hits),
              static_cast<double>(r.stats.origin_fetches) / static_cast<double>(requests),
              static_cast<unsigned long long>(r.stats.evictions), r.ops_per_s);
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t requests = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 200000;
  const std::uint64_t space = key_space_bytes();
  const std::uint64_t budget = space / 10;
  std::printf("task cache: %zu keys, %llu bytes of keys and values; budget %llu bytes (10 %%); %zu requests\n",
              kKeys, static_cast<unsigned long long>(space), static_cast<unsigned long long>(budget), requests);
  for (const double p_run : {0.5, 0.25, 0.0}) {
    const Trace t = make_trace(requests, 1.0, p_run, 14);
    std::printf("Zipf s=1.0, p_run=%.2f (runs of 4..16 keys):\n", p_run);
    std::printf("  %-22s hit %5.1f %%  (knows the whole trace; never changes)\n", "best static",
                100.0 * best_static(t, budget));
    report("LRU", replay(t, budget, false, 4), requests);
    report("LRU + prefetch d=4", replay(t, budget, true, 4), requests);
    report("LRU + prefetch d=8", replay(t, budget, true, 8), requests);
  }
  return 0;
}
