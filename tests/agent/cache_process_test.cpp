// The task cache against the real nova-agent (issue 14, item 5; docs/agent.md, Cache):
// tasks with a client we did not write (python3's socket module, cache_client.py) put
// and get through the agent's socket, misses are read through from a real HTTP origin
// (python3 -m http.server) and the next keys of a sequence are prefetched; the hit ratio
// arrives upward in the metrics (read with mosquitto_sub); after SIGKILL and a restart
// the entries are still there and the budget holds. Mutual TLS and signed tasks, as the
// agent's other process tests run.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "nova/agent/cache_origin.h"
#include "nova/schemas/codec.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/broker.h"
#include "nova/testing/child_process.h"
#include "nova/testing/retained.h"
#include "nova/testing/signer.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kNode = "gw-cache";
constexpr const char* kSite = "cloud/eu/par/par-a1";
constexpr std::uint64_t kBudget = 1 << 20;  // limits.cache_size_mb: 1

std::string read_all(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Where tasks (running as the unprivileged tasks.user) can read the client and write
// their output, and the socket's folder they can enter: not the test's 0700 directories.
struct SharedDir {
  fs::path path = fs::temp_directory_path() / ("nova-cache-" + std::to_string(::getpid()));
  SharedDir() {
    fs::remove_all(path);
    fs::create_directories(path / "run");
    fs::permissions(path, fs::perms::all & ~(fs::perms::group_write | fs::perms::others_write));
    fs::permissions(path / "run", fs::perms::all & ~(fs::perms::group_write | fs::perms::others_write));
    fs::copy_file(NOVA_SOURCE_DIR "/tests/agent/cache_client.py", path / "cache_client.py");
  }
  ~SharedDir() { fs::remove_all(path); }
  fs::path output(const std::string& name) const {
    const fs::path out = path / name;
    std::ofstream{out};
    fs::permissions(out, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                             fs::perms::group_write | fs::perms::others_read | fs::perms::others_write);
    return out;
  }
};

// python3's own HTTP server over a folder of keys seq/0000 .. seq/0019.
struct Origin {
  fs::path root;
  std::uint16_t port = testing::free_loopback_port();
  testing::ChildProcess server;
  explicit Origin(const fs::path& dir) : root(dir) {
    fs::create_directories(root / "data" / "seq");
    for (int i = 0; i < 20; ++i) {
      char name[8];
      std::snprintf(name, sizeof name, "%04d", i);
      std::ofstream(root / "data" / "seq" / name) << "seq-value-" << i;
    }
    server.start({"/usr/bin/python3", "-m", "http.server", std::to_string(port), "--bind", "127.0.0.1", "--directory",
                  root.string()},
                 root / "http.log", false);
    auto probe = agent::HttpOrigin::parse(url(), 500ms);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (probe->fetch("seq/0000").kind != agent::OriginReply::Kind::value) {
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      std::this_thread::sleep_for(50ms);  // another process starting: nothing to wait on
    }
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/data"; }
  // Requests the origin logged for `path` (http.server logs each to stderr).
  std::size_t requests(const std::string& path) const {
    const std::string log = read_all(root / "http.log");
    std::size_t n = 0;
    for (auto p = log.find("GET " + path + " "); p != std::string::npos; p = log.find("GET " + path + " ", p + 1)) ++n;
    return n;
  }
};

// A signed task that runs `script` with /bin/sh, published by mosquitto_pub with the
// test PKI's nova-cloud identity.
void run_task(const testing::Broker& broker, const std::string& script) {
  static int n = 0;
  const std::string topic = std::string("nova/v1/down/") + kSite + "/" + kNode + "/task";
  const schemas::Task task{"cache-" + std::to_string(++n), std::nullopt, {"/bin/sh", "-c", script}, {}, 20000, 0, 0, 1, 1, std::nullopt};
  const schemas::Bytes b = schemas::encode_cbor(task);
  const fs::path file = broker.data_dir() / ("task-" + std::to_string(n));
  std::ofstream(file, std::ios::binary) << testing::test_signer().sign(topic, std::string(b.begin(), b.end()));
  const std::string cmd = "mosquitto_pub " + broker.mosquitto_client_args("nova-cloud") + " -q 1 -i cache-pub-" +
                          std::to_string(n) + " -t '" + topic + "' -f " + file.string();
  REQUIRE(std::system(cmd.c_str()) == 0);
}

// The python3 client in `phase`, its output to `out`.
void run_client(const testing::Broker& broker, const SharedDir& shared, const std::string& phase,
                const fs::path& out) {
  run_task(broker, "/usr/bin/python3 " + (shared.path / "cache_client.py").string() + " " + phase + " > " +
                       out.string() + " 2>&1");
}

// The client's output once it printed its stats line, as step -> answers in order.
std::multimap<std::string, std::string> wait_output(const fs::path& out) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  std::string text;
  while ((text = read_all(out)).find("stats ") == std::string::npos) {
    INFO(text);
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(50ms);  // a file the task writes: nothing to wait on
  }
  INFO(text);
  std::multimap<std::string, std::string> steps;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto sp = line.find(' ');
    steps.emplace(line.substr(0, sp), sp == std::string::npos ? "" : line.substr(sp + 1));
  }
  return steps;
}

// The bdseq of the agent's retained state record once an outside client (mosquitto_sub)
// reads it online with a bdseq above `after`.
std::uint64_t wait_online(const testing::Broker& broker, std::uint64_t after) {
  const std::string topic = std::string("nova/v1/up/") + kNode + "/state";
  std::uint64_t bdseq = 0;
  const bool online = testing::retained_until(broker.uri(), topic, 1, [&](const testing::RetainedMessages& r) {
    const auto it = r.find(topic);
    if (it == r.end()) return false;
    const auto state = schemas::decode_cbor<schemas::NodeState>(it->second);
    if (!state || state->status != schemas::NodeStatus::online || state->bdseq <= after) return false;
    bdseq = state->bdseq;
    return true;
  }, 10s);
  REQUIRE(online);
  return bdseq;
}

std::uint64_t stat_of(const std::string& stats, const std::string& name) {
  const auto p = stats.find(name + "=");
  REQUIRE(p != std::string::npos);
  return std::stoull(stats.substr(p + name.size() + 1));
}

// The next metrics batch the agent sends up, as an outside subscriber receives it.
schemas::MetricsBatch next_batch(const testing::Broker& broker) {
  const fs::path hex = broker.data_dir() / "batch.hex";
  const std::string cmd = "mosquitto_sub " + broker.mosquitto_client_args("cache-watch") + " -i cache-watch -t 'nova/v1/up/" +
                          kNode + "/metrics' -C 1 -W 30 -F %x > " + hex.string();
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::string text = read_all(hex);
  while (!text.empty() && (text.back() == '\n')) text.pop_back();
  std::string bytes;
  for (std::size_t i = 0; i + 1 < text.size(); i += 2) bytes += static_cast<char>(std::stoi(text.substr(i, 2), nullptr, 16));
  auto batch = schemas::decode_cbor<schemas::MetricsBatch>(bytes);
  INFO((batch ? "" : batch.error().message()));
  REQUIRE(batch);
  return batch.value();
}

}  // namespace

TEST_CASE("tasks use the cache through its socket and it survives SIGKILL within its budget",
          "[agent][process][cache]") {
  testing::Broker broker(testing::mutual_tls());
  SharedDir shared;
  Origin origin(broker.data_dir() / "origin");
  const fs::path dir = broker.data_dir() / "agent";
  fs::create_directories(dir);
  testing::write_agent_config(dir / "agent.yaml", kNode, kSite, 4, broker.uri(), dir,
                              "metrics: {interval_ms: 200, batch_interval_s: 10}\n"
                              "cache: {dir: " + (dir / "cache").string() + ", socket: " +
                                  (shared.path / "run" / "cache.sock").string() + ", origin: \"" + origin.url() +
                                  "\"}\n");
  // The harness writes the limits section; the budget joins it (a second section would be refused).
  std::string yaml = read_all(dir / "agent.yaml");
  yaml.replace(yaml.find("min_free_memory_mb: 0}"), 22, "min_free_memory_mb: 0, cache_size_mb: 1}");
  std::ofstream(dir / "agent.yaml") << yaml;

  auto agent = std::make_unique<testing::AgentProcess>(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  REQUIRE(agent->wait_log("event=connected", 20s));
  REQUIRE(agent->wait_log("event=cache_ready", 1s));

  const fs::path first = shared.output("fill.out");
  run_client(broker, shared, "fill", first);
  const auto fill = wait_output(first);
  CHECK(fill.find("first")->second == "VALUE seq-value-0");  // read through
  CHECK(fill.find("second")->second == "VALUE seq-value-1");
  std::vector<std::string> next;
  for (auto [it, end] = fill.equal_range("next"); it != end; ++it) next.push_back(it->second);
  CHECK(next == std::vector<std::string>{"VALUE seq-value-2", "VALUE seq-value-3", "VALUE seq-value-4",
                                         "VALUE seq-value-5"});
  CHECK(fill.find("absent")->second == "MISS");  // the origin's 404
  CHECK(fill.find("bad")->second == "ERR command GET takes a key separated by single spaces");
  CHECK(fill.find("put")->second == "OK");
  CHECK(fill.find("own")->second == "VALUE alpha");
  const std::string stats = fill.find("stats")->second;
  INFO(stats);
  // The four next keys were prefetched, so they were hits; the origin saw each key once.
  CHECK(stat_of(stats, "prefetch_hits") == 4);
  CHECK(stat_of(stats, "hits") == 5);
  CHECK(stat_of(stats, "misses") == 3);
  CHECK(origin.requests("/data/seq/0003") == 1);  // prefetched, never asked for again
  CHECK(stat_of(stats, "bytes") <= kBudget);
  CHECK(stat_of(stats, "evictions") >= 25);  // 40 values of 64 KiB through 1 MiB
  CHECK(agent->wait_log("event=cache_bad_request field=command", 1s));

  // The hit ratio arrives upward: 5 hits of 8 reads, as the cache's own STATS said.
  auto has_gauge = [](const schemas::MetricsBatch& b) { return b.samples.back().extra.contains("agent.cache.hit_pct"); };
  schemas::MetricsBatch batch = next_batch(broker);
  if (!has_gauge(batch)) batch = next_batch(broker);  // one closed while the task ran
  REQUIRE(has_gauge(batch));
  const auto& extra = batch.samples.back().extra;
  CHECK(extra.at("agent.cache.hit_pct") == Approx(62.5).margin(0.05));
  CHECK(extra.at("agent.cache.hits") == 5);
  // Prefetch goes on after the last GET (seq/0006 ..), so bytes may have grown: within the budget.
  CHECK(extra.at("agent.cache.bytes") <= static_cast<double>(kBudget));
  CHECK(extra.at("agent.cache.prefetch_hits") == 4);

  // SIGKILL: nothing is flushed. The entries, their bytes and the budget are back, and
  // the retained state others read is online again, with a new bdseq.
  const std::uint64_t before = wait_online(broker, 0);
  agent->signal(SIGKILL);
  fs::remove(dir / "agent.log");
  agent = std::make_unique<testing::AgentProcess>(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  REQUIRE(agent->wait_log("event=connected", 20s));
  REQUIRE(agent->wait_log("event=cache_ready", 1s));
  wait_online(broker, before);
  const std::string log = agent->text();
  const std::string ready = log.substr(log.find("event=cache_ready"));
  CHECK(stat_of(ready, "entries") >= stat_of(stats, "entries"));  // and what prefetch added since
  CHECK(stat_of(ready, "bytes") <= kBudget);
  const fs::path second = shared.output("after.out");
  run_client(broker, shared, "after", second);
  const auto after = wait_output(second);
  CHECK(after.find("own")->second == "VALUE alpha");
  CHECK(after.find("next")->second == "VALUE seq-value-5");
  CHECK(origin.requests("/data/seq/0005") == 1);  // prefetched before the kill, not fetched again
  const std::string restarted = after.find("stats")->second;
  CHECK(stat_of(restarted, "hits") == 2);
  CHECK(stat_of(restarted, "bytes") <= kBudget);

  // The shell examples of docs/agent.md, with socat.
  const fs::path shell = shared.output("shell.out");
  run_task(broker, "{ printf 'PUT tile/1 5\\nhello' | socat - UNIX-CONNECT:\"$NOVA_CACHE_SOCKET\"; "
                   "printf 'GET tile/1\\n' | socat - UNIX-CONNECT:\"$NOVA_CACHE_SOCKET\"; echo; echo stats end; } > " +
                       shell.string() + " 2>&1");
  wait_output(shell);
  CHECK(read_all(shell) == "OK\nVALUE 5\nhello\nstats end\n");
  CHECK(agent->running());
}

TEST_CASE("a cache socket that cannot be made stops the agent only when cache.socket names it",
          "[agent][process][cache]") {
  testing::Broker broker(testing::mutual_tls());
  // Folders deeper than the 107 bytes a socket path may have.
  const fs::path deep = broker.data_dir() / std::string(60, 'd') / std::string(60, 'e');
  fs::create_directories(deep);
  testing::write_agent_config(deep / "agent.yaml", kNode, kSite, 4, broker.uri(), deep);
  testing::AgentProcess by_default(NOVA_AGENT_BIN, deep / "agent.yaml", deep / "agent.log");
  REQUIRE(by_default.wait_log("event=connected", 20s));
  CHECK(by_default.text().find("level=warning event=cache_unavailable") != std::string::npos);
  by_default.signal(SIGTERM);

  const std::string named = (deep / "cache.sock").string();
  testing::write_agent_config(deep / "named.yaml", kNode, kSite, 4, broker.uri(), deep, "cache: {socket: " + named + "}\n");
  testing::AgentProcess configured(NOVA_AGENT_BIN, deep / "named.yaml", deep / "named.log");
  const int status = configured.wait();
  CHECK(WEXITSTATUS(status) == 1);
  CHECK(configured.text().find("event=cache_unavailable error=\"cache.socket: '" + named + "' must be 1..107 bytes\"") !=
        std::string::npos);
}

// A rule's evict_cache action against the real cache (docs/agent.md, Pipelines), with the
// cache's values sealed by the storage key (docs/security.md, Encryption at rest): tasks
// put through the socket with socat, a reading from mosquitto_pub crosses the rule, and
// the evicted prefix answers MISS while other keys stay. The cache's LevelDB files hold
// the keys (they are not sealed) but never a value's plaintext.
TEST_CASE("a rule's evict_cache empties its prefix of the real cache and values on disk are sealed",
          "[agent][process][cache][pipelines]") {
  testing::Broker broker(testing::mutual_tls());
  SharedDir shared;
  const fs::path dir = broker.data_dir() / "agent";
  fs::create_directories(dir);
  const fs::path key = dir / "storage.key";
  {
    std::ofstream out(key);
    for (int i = 0; i < 32; ++i) out << "5a";
  }
  fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write);
  const fs::path cache_dir = dir / "cache";
  testing::write_agent_config(dir / "agent.yaml", kNode, kSite, 4, broker.uri(), dir,
                              "storage: {key_file: " + key.string() + "}\n"
                              "cache: {dir: " + cache_dir.string() + ", socket: " +
                                  (shared.path / "run" / "cache.sock").string() + "}\n"
                              "pipelines:\n"
                              "  - name: purge\n"
                              "    input: {sensor: cam, value: level}\n"
                              "    rules:\n"
                              "      - {name: flush, when: \"value > 80\", action: {do: evict_cache, target: img.}}\n");
  testing::AgentProcess agent(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  const bool connected = agent.wait_log("event=connected", 20s);
  INFO(agent.text());
  REQUIRE(connected);
  REQUIRE(agent.wait_log("event=cache_ready", 1s));

  const std::string marker = "PLAINTEXT-MARKER-0123456789";
  const fs::path filled = shared.output("filled.out");
  std::string puts;
  for (const char* k : {"img.1", "img.2", "keep.1"}) {
    puts += "printf 'PUT " + std::string(k) + " " + std::to_string(marker.size()) + "\\n" + marker +
            "' | socat - UNIX-CONNECT:\"$NOVA_CACHE_SOCKET\"; ";
  }
  run_task(broker, "{ " + puts + "printf 'STATS\\n' | socat - UNIX-CONNECT:\"$NOVA_CACHE_SOCKET\" | sed 's/^STATS/stats/'; } > " +
                       filled.string() + " 2>&1");
  const auto before = wait_output(filled);
  CHECK(before.count("OK") == 3);
  CHECK(stat_of(before.find("stats")->second, "entries") == 3);

  // On disk: every key is there to find, no value is.
  std::string on_disk;
  for (const auto& f : fs::recursive_directory_iterator(cache_dir)) {
    if (f.is_regular_file()) on_disk += read_all(f.path());
  }
  CHECK(on_disk.find("keep.1") != std::string::npos);  // the files were read: the keys are in them
  CHECK(on_disk.find(marker) == std::string::npos);
  CHECK(on_disk.find("PLAINTEXT-MARKER") == std::string::npos);

  // A reading over the rule's threshold evicts img. and nothing else.
  REQUIRE(std::system(("mosquitto_pub " + broker.mosquitto_client_args("cam-pub") + " -q 1 -i cam-pub -t nova/v1/sensor/" +
                       kNode + "/cam -m '{\"v\":1,\"ts\":1732650000000,\"values\":{\"level\":95}}'")
                          .c_str()) == 0);
  REQUIRE(agent.wait_log("event=rule_action rule=purge/flush", 10s));
  const std::string log = agent.text();
  std::string line = log.substr(log.find("event=rule_action rule=purge/flush"));
  line = line.substr(0, line.find('\n'));
  INFO(line);
  CHECK(line.find("action=evict_cache target=\"img.\"") != std::string::npos);
  CHECK(line.find("evicted=2") != std::string::npos);
  CHECK(line.find("error=") == std::string::npos);

  const fs::path after = shared.output("after-evict.out");
  run_task(broker, "{ for k in img.1 img.2 keep.1; do printf \"GET $k\\n\" | socat - UNIX-CONNECT:\"$NOVA_CACHE_SOCKET\"; "
                   "echo; done; echo stats end; } > " + after.string() + " 2>&1");
  wait_output(after);
  CHECK(read_all(after) == "MISS\n\nMISS\n\nVALUE " + std::to_string(marker.size()) + "\n" + marker + "\nstats end\n");
  CHECK(agent.running());
}
