// The task cache on real LevelDB in a temporary directory: LRU by bytes, the budget,
// the predictor, prefetch through an origin, restarts, the socket protocol.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>

#include "nova/agent/cache.h"
#include "nova/agent/cache_origin.h"
#include "nova/agent/cache_predictor.h"
#include "nova/agent/cache_protocol.h"
#include "nova/agent/cache_server.h"
#include "nova/testing/kill_child.h"
#include "nova/testing/temp_dir.h"

using namespace nova;
using namespace nova::agent;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<Cache> open_cache(const fs::path& dir, std::uint64_t budget, std::size_t max_entries = 1000,
                                  std::size_t depth = 4) {
  CacheOptions o;
  o.dir = dir;
  o.budget_bytes = budget;
  o.max_entries = max_entries;
  o.predictor.depth = depth;
  auto r = Cache::open(o);
  INFO((r ? "" : r.error().message()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

// A value whose charge (key + value bytes) is exactly `charge`.
std::string value_for(const std::string& key, std::size_t charge) { return std::string(charge - key.size(), 'v'); }

// An origin that answers "value of <key>" for keys under "seq/" and counts requests.
struct CountingOrigin {
  std::size_t calls = 0;
  Origin origin() {
    return [this](std::string_view key) {
      ++calls;
      if (!key.starts_with("seq/")) return OriginReply{OriginReply::Kind::not_found, ""};
      return OriginReply{OriginReply::Kind::value, "value of " + std::string(key)};
    };
  }
};

}  // namespace

TEST_CASE("the least recently used entry is evicted first and by bytes", "[cache]") {
  testing::TempDir dir("nova-cache");
  auto cache = open_cache(dir.path, 1000);
  REQUIRE(cache->put("a", value_for("a", 300)));
  REQUIRE(cache->put("b", value_for("b", 300)));
  REQUIRE(cache->put("c", value_for("c", 300)));
  REQUIRE(cache->get("a"));  // a is now more recent than b
  REQUIRE(cache->put("d", value_for("d", 300)));  // 1200 > 1000: one entry must go
  CHECK_FALSE(cache->contains("b"));
  CHECK(cache->contains("a"));
  CHECK(cache->contains("c"));
  CHECK(cache->contains("d"));
  // A big entry pushes out as many as it needs, oldest first (c, then a).
  REQUIRE(cache->put("e", value_for("e", 650)));
  CHECK_FALSE(cache->contains("c"));
  CHECK_FALSE(cache->contains("a"));
  CHECK(cache->contains("d"));
  const CacheStats s = cache->stats();
  CHECK(s.bytes == 950);
  CHECK(s.evictions == 3);
}

TEST_CASE("the byte budget and max entries are never exceeded", "[cache]") {
  testing::TempDir dir("nova-cache");
  constexpr std::uint64_t kBudget = 64 * 1024;
  auto cache = open_cache(dir.path, kBudget, 50);
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> key(0, 199), size(1, 4000);
  std::uint64_t puts = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::string k = "k" + std::to_string(key(rng));
    if (i % 3 == 0) {
      (void)cache->get(k);
    } else {
      REQUIRE(cache->put(k, std::string(static_cast<std::size_t>(size(rng)), 'x')));
      ++puts;
    }
    const CacheStats s = cache->stats();
    REQUIRE(s.bytes <= kBudget);
    REQUIRE(s.entries <= 50);
  }
  CHECK(cache->stats().puts == puts);
  // Too large for the budget, the 4 MiB limit, bad keys: refused, naming the field.
  auto big = cache->put("big", std::string(kBudget, 'x'));
  REQUIRE_FALSE(big);
  CHECK(big.error().path == "value");
  CHECK(big.error().reason.find("budget") != std::string::npos);
  CHECK(cache->put("huge", std::string(kCacheMaxValueBytes + 1, 'x')).error().path == "value");
  CHECK(cache->put("", "x").error().path == "key");
  CHECK(cache->put("has space", "x").error().path == "key");
  CHECK(cache->put(std::string(257, 'k'), "x").error().reason == "is 257 bytes, longer than 256");
}

TEST_CASE("the predictor learns successions and strides", "[cache][predictor]") {
  SECTION("successor chains") {
    Predictor p(PredictorOptions{3, 100, 4});
    for (int i = 0; i < 3; ++i) {
      for (const char* k : {"config", "model", "labels", "other"}) p.observe(k);
    }
    CHECK(p.predict("config") == std::vector<std::string>{"model", "labels", "other"});
    // A succession seen more often wins.
    p.observe("config");
    p.observe("weights");
    CHECK(p.predict("config").front() == "model");
    for (int i = 0; i < 3; ++i) {
      p.observe("config");
      p.observe("weights");
    }
    CHECK(p.predict("config").front() == "weights");
  }
  SECTION("strides, with zero padding, from the second key on") {
    Predictor p(PredictorOptions{3, 100, 4});
    p.observe("tile/0041");
    CHECK(p.predict("tile/0041").empty());  // nothing learnt yet
    p.observe("tile/0043");
    CHECK(p.predict("tile/0043") == std::vector<std::string>{"tile/0045", "tile/0047", "tile/0049"});
    p.observe("img/7");  // another prefix: no stride
    CHECK(p.predict("img/7").empty());
  }
  SECTION("bounded memory") {
    Predictor p(PredictorOptions{2, 10, 2});
    for (int i = 0; i < 1000; ++i) p.observe("k" + std::to_string(i * 7919 % 1000) + "x");
    CHECK(p.tracked() == 10);
  }
  CHECK(split_number("a/b12")->number == 12);
  CHECK_FALSE(split_number("a/b"));
}

TEST_CASE("read-through fetches misses and prefetches the predicted keys", "[cache][prefetch]") {
  testing::TempDir dir("nova-cache");
  auto cache = open_cache(dir.path, 1 << 20);
  CountingOrigin counting;
  const Origin origin = counting.origin();
  auto first = cache->get_or_fetch("seq/001", origin);
  REQUIRE(first);
  CHECK(first.value() == "value of seq/001");
  CHECK(cache->prefetch("seq/001", origin) == 0);  // one key: no stride yet
  REQUIRE(cache->get_or_fetch("seq/002", origin).value());
  CHECK(cache->prefetch("seq/002", origin) == 4);  // seq/003 .. seq/006
  for (const char* k : {"seq/003", "seq/004", "seq/005", "seq/006"}) CHECK(cache->get(k) == "value of " + std::string(k));
  CacheStats s = cache->stats();
  CHECK(s.hits == 4);
  CHECK(s.misses == 2);
  CHECK(s.prefetches == 4);
  CHECK(s.prefetch_hits == 4);
  CHECK(s.origin_fetches == 6);
  // The origin has no such key: a miss, nothing stored; an origin error names "origin".
  auto none = cache->get_or_fetch("other", origin);
  REQUIRE(none);
  CHECK_FALSE(none.value());
  CHECK_FALSE(cache->contains("other"));
  auto failed = cache->get_or_fetch("down", [](std::string_view) {
    return OriginReply{OriginReply::Kind::error, "connect 127.0.0.1:1: refused or timed out"};
  });
  REQUIRE_FALSE(failed);
  CHECK(failed.error().path == "origin");
  // Without an origin a miss is a miss.
  auto plain = cache->get_or_fetch("seq/100", Origin{});
  REQUIRE(plain);
  CHECK_FALSE(plain.value());
}

TEST_CASE("a restart keeps the entries their recency and the budget", "[cache][restart]") {
  testing::TempDir dir("nova-cache");
  {
    auto cache = open_cache(dir.path, 1000);
    for (const char* k : {"a", "b", "c"}) REQUIRE(cache->put(k, value_for(k, 300)));
    REQUIRE(cache->get("a"));  // order, least recent first: b, c, a
  }
  {
    auto cache = open_cache(dir.path, 1000);
    CacheStats s = cache->stats();
    CHECK(s.entries == 3);
    CHECK(s.bytes == 900);
    CHECK(cache->get("c") == value_for("c", 300));  // order: b, a, c
    REQUIRE(cache->put("d", value_for("d", 300)));
    CHECK_FALSE(cache->contains("b"));
  }
  // A smaller budget: the least recent go at open (a, then c), so d stays.
  auto cache = open_cache(dir.path, 400);
  const CacheStats s = cache->stats();
  CHECK(s.entries == 1);
  CHECK(s.bytes == 300);
  CHECK(cache->contains("d"));
}

TEST_CASE("a put that returned survives SIGKILL at any moment and the budget holds (10 kills)", "[cache][crash]") {
  testing::TempDir dir("nova-cache");
  constexpr std::uint64_t kBudget = 256 * 1024;  // about 200 entries: evictions in every round
  std::mt19937 rng(14);
  std::uint32_t next = 0;  // keys are "k<n>", n counting up across rounds
  for (int round = 0; round < 10; ++round) {
    const std::uint32_t first = next;
    const auto n = testing::kill_after_reports<std::uint32_t>(
        [&](int report) {
          CacheOptions o;
          o.dir = dir.path;
          o.budget_bytes = kBudget;
          auto cache = Cache::open(o);
          if (!cache) ::_exit(3);
          for (std::uint32_t k = first;; ++k) {
            if (!cache.value()->put("k" + std::to_string(k), std::string(1000 + k % 300, 'v'))) ::_exit(4);
            if (::write(report, &k, sizeof k) != sizeof k) ::_exit(5);
          }
        },
        std::uniform_int_distribution<int>(1, 400)(rng));
    // The newest confirmed puts are all there (LRU keeps the most recent), intact, and
    // the budget holds.
    auto cache = open_cache(dir.path, kBudget);
    const CacheStats s = cache->stats();
    INFO("round " << round << ": last confirmed k" << n << ", entries " << s.entries);
    REQUIRE(s.bytes <= kBudget);
    REQUIRE(s.entries >= std::min<std::uint64_t>(100, n + 1));  // the budget holds about 200
    for (std::uint32_t k = n; k + 100 > n && k >= first; --k) {
      REQUIRE(cache->get("k" + std::to_string(k)) == std::string(1000 + k % 300, 'v'));
      if (k == 0) break;
    }
    next = n + 1;
  }
}

TEST_CASE("evict removes every key under a prefix", "[cache]") {
  testing::TempDir dir("nova-cache");
  auto cache = open_cache(dir.path, 1 << 20);
  for (const char* k : {"cam/1", "cam/2", "camera", "map/1"}) REQUIRE(cache->put(k, "x"));
  CHECK(cache->evict("cam/") == 2);
  CHECK(cache->contains("camera"));
  CHECK(cache->contains("map/1"));
  CHECK(cache->erase("map/1"));
  CHECK_FALSE(cache->erase("map/1"));
}

TEST_CASE("request lines are parsed and bad ones name the field", "[cache][protocol]") {
  auto put = parse_cache_request("PUT tile/1 42");
  REQUIRE(put);
  CHECK(put->op == CacheRequest::Op::put);
  CHECK(put->key == "tile/1");
  CHECK(put->length == 42);
  CHECK(parse_cache_request("GET a\r")->key == "a");
  CHECK(parse_cache_request("STATS")->op == CacheRequest::Op::stats);
  CHECK(parse_cache_request("FETCH a").error().path == "command");
  CHECK(parse_cache_request("").error().path == "command");
  CHECK(parse_cache_request("GET").error().path == "command");
  CHECK(parse_cache_request("GET a b").error().path == "command");
  CHECK(parse_cache_request("PUT a x1").error().path == "length");
  CHECK(parse_cache_request("PUT a 4194305").error().path == "length");
  CHECK(parse_cache_request("GET " + std::string(300, 'k')).error().path == "key");
  CHECK(cache_error_reply(schemas::Error{"key", "is empty"}) == "ERR key is empty\n");
}

TEST_CASE("an origin URL is parsed and keys become paths", "[cache][origin]") {
  auto o = HttpOrigin::parse("http://127.0.0.1:8080/tiles/");
  REQUIRE(o);
  CHECK(o->host() == "127.0.0.1");
  CHECK(o->port() == 8080);
  CHECK(o->path_of("z/1?x") == "/tiles/z/1%3Fx");
  CHECK(HttpOrigin::parse("http://files")->port() == 80);
  CHECK(HttpOrigin::parse("https://files").error().path == "cache.origin");
  CHECK(HttpOrigin::parse("http://files:0").error().reason == "port '0' is not 1..65535");
  CHECK(HttpOrigin::parse("http://:80").error().path == "cache.origin");
  // Nothing listens on port 1: an error naming the origin, not a crash or a hang.
  auto dead = HttpOrigin::parse("http://127.0.0.1:1", std::chrono::milliseconds(500));
  const OriginReply r = dead->fetch("k");
  CHECK(r.kind == OriginReply::Kind::error);
  CHECK(r.body.find("127.0.0.1:1") != std::string::npos);
}

namespace {

// A client of the socket, as a task would be (raw bytes; the integration test uses python3).
struct Client {
  int fd = -1;
  explicit Client(const fs::path& socket) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket.c_str());
    REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~Client() { ::close(fd); }
  // Sends `request` (nothing when empty: a server that answers on accept and closes may
  // already be gone, and a send then fails with EPIPE) and reads until the answer holds
  // `reply_bytes` bytes or the server closes.
  std::string ask(const std::string& request, std::size_t reply_bytes) {
    if (!request.empty()) {
      REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
    }
    std::string in;
    char buf[4096];
    while (in.size() < reply_bytes) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<std::size_t>(n));
    }
    return in;
  }
};

}  // namespace

TEST_CASE("the socket serves GET PUT DEL and STATS and names bad requests", "[cache][socket]") {
  testing::TempDir dir("nova-cache");
  auto cache = open_cache(dir.path / "db", 1 << 20);
  CacheServerOptions o;
  o.socket = dir.path / "run" / "cache.sock";
  auto server = CacheServer::start(*cache, o);
  INFO((server ? "" : server.error().message()));
  REQUIRE(server);
  CHECK((fs::status(o.socket).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
  Client c(o.socket);
  CHECK(c.ask("GET k1\n", 5) == "MISS\n");
  CHECK(c.ask("PUT k1 5\nhel", 0).empty());  // the value may come in pieces
  CHECK(c.ask("lo", 3) == "OK\n");
  CHECK(c.ask("GET k1\n", 13) == "VALUE 5\nhello");
  CHECK(c.ask("BOGUS\n", 10).starts_with("ERR command unknown command 'BOGUS'"));
  CHECK(c.ask("GET bad\x01key\n", 10).starts_with("ERR key byte 3"));
  CHECK(c.ask("DEL k1\n", 3) == "OK\n");
  CHECK(c.ask("DEL k1\n", 5) == "MISS\n");
  CHECK(c.ask("STATS\n", 20).starts_with("STATS hits=1 misses=1 hit_pct=50.0 entries=0 bytes=0"));
  // A bad length loses the framing: answered, then closed.
  CHECK(c.ask("PUT k 12x\n", 100) == "ERR length '12x' is not a byte count\n");
  CHECK(server.value()->bad_requests() == 3);
  // A line without an end is refused once it is too long.
  Client d(o.socket);
  CHECK(d.ask(std::string(600, 'G'), 100).starts_with("ERR line longer than 512 bytes"));
  // A connection without a request for idle_timeout is closed (the read sees its end).
  CacheServerOptions quick = o;
  quick.socket = dir.path / "run" / "quick.sock";
  quick.idle_timeout = std::chrono::milliseconds(300);
  quick.max_connections = 1;
  auto quick_server = CacheServer::start(*cache, quick);
  REQUIRE(quick_server);
  Client idle(quick.socket);
  const auto began = std::chrono::steady_clock::now();  // its idle time starts after this
  CHECK(idle.ask("STATS\n", 6).starts_with("STATS "));  // served: it holds the one slot
  Client extra(quick.socket);  // one connection too many: told so, and closed
  CHECK(extra.ask("", 100) == "ERR connection too many connections (1 open)\n");
  CHECK(idle.ask("", 1).empty());
  CHECK(std::chrono::steady_clock::now() - began >= std::chrono::milliseconds(250));
  // A socket another server still serves is not taken over.
  auto second = CacheServer::start(*cache, o);
  REQUIRE_FALSE(second);
  CHECK(second.error().message() == "cache.socket: '" + o.socket.string() + "' is served by another process");
  // Another file at the socket's path is never removed.
  server.value().reset();
  CHECK_FALSE(fs::exists(o.socket));
  std::ofstream(o.socket) << "precious";
  auto refused = CacheServer::start(*cache, o);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message() == "cache.socket: '" + o.socket.string() + "' exists and is not a socket");
}
