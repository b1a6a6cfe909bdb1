// Broker hierarchy benchmark (issue 3): latency over 1-4 bridge hops, QoS 1 throughput
// through a 4-hop chain as a ratio to a single broker, and how fast a new node's retained
// birth becomes visible at the cloud. Starts its own hierarchies on free loopback ports;
// prints each figure next to its target with "met" or "MISSED".
//
//   hierarchy_bench [--latency-messages N] [--throughput-messages N] [--births N]
//                   [--window N] [--runs N] [--tls | --acl-cost]
//
// --tls: after the plaintext measurements, the same latency and throughput runs again on
// hierarchies rendered with mutual TLS (every client with its own certificate), in the
// same process, and a table puts the two side by side. Births are measured in plaintext
// only (200 nodes outside the topology have no ACL grant under TLS).
// --acl-cost: instead, the latency and throughput runs twice with mutual TLS, first with
// the brokers enforcing the ACL with Mosquitto's own acl_file, then with the nova_acl
// plugin nova-bridge renders (same ACL file), and a table of the plugin's cost.
//
// Method (docs/benchmarks.md, "Broker hierarchy", has the results):
// - Latency: one publisher at a site k bridges below the cloud, one subscriber at the
//   cloud, both in this process, QoS 1 both ways, 128-byte payloads carrying a
//   steady_clock timestamp. Ping-pong pacing: the next message is published only after
//   the previous one arrived and was PUBACKed, so no queue builds and each figure is one
//   message's trip. The hop counts take turns message by message. Hops 1-3 use the example topology (eu, par, par-a1 -> cloud); 4 hops
//   use a 5-broker chain built in code (c5 -> c4 -> c3 -> c2 -> c1). "0 hops" (publisher
//   and subscriber on the cloud broker) is the baseline of client and broker cost.
// - Throughput: N QoS 1 messages with at most `window` unacknowledged, publisher at the
//   chain's bottom broker and subscriber at its top, versus both on the top broker alone;
//   rate = N / (first publish .. N-th arrival). Median of `runs` alternating runs.
// - Birth visibility: `births` nodes (distinct client ids, all connected beforehand)
//   each publish a retained NodeState birth at access site par-a1; time until the cloud
//   subscriber has it.
// Every client is connected before anything is measured (a Paho client connecting late
// in a process with idle connections costs ~2.1 s: see mqtt_support.h). The 200 node
// clients connect after the throughput runs: Paho polls every connection of the process
// for every packet, and 200 idle ones halve a single client's QoS 1 throughput.
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "hierarchy_support.h"
#include "mqtt_support.h"
#include "nova/bridge/hierarchy.h"
#include "nova/bridge/render.h"
#include "nova/schemas/codec.h"
#include "nova/schemas/messages.h"
#include "nova/tiers/topology.h"

namespace {

using namespace nova::hiertest;
using Nanos = std::chrono::nanoseconds;

struct Options {
  std::size_t latency_messages = 2000;
  std::size_t latency_warmup = 200;
  std::size_t throughput_messages = 20000;
  std::size_t births = 200;
  std::size_t window = 100;
  std::size_t runs = 5;
  bool tls = false;
  // Two mutual TLS passes instead: Mosquitto's acl_file, then the nova_acl plugin.
  bool acl_cost = false;
};

// What one mode measured, for the side-by-side table of --tls.
struct ModeFigures {
  std::vector<double> p99_by_hops;  // index = hop count (0..4)
  double single_rate = 0;
  double chain_rate = 0;
};

constexpr std::size_t kPayloadBytes = 128;

std::string stamped_payload(std::uint64_t seq) {
  std::string payload(kPayloadBytes, '\0');
  const auto now = static_cast<std::uint64_t>(
      std::chrono::duration_cast<Nanos>(Clock::now().time_since_epoch()).count());
  std::memcpy(payload.data(), &seq, sizeof seq);
  std::memcpy(payload.data() + sizeof seq, &now, sizeof now);
  return payload;
}

std::uint64_t stamp_of(const std::string& payload) {
  std::uint64_t stamp = 0;
  if (payload.size() >= 2 * sizeof stamp) {
    std::memcpy(&stamp, payload.data() + sizeof stamp, sizeof stamp);
  }
  return stamp;
}

double ms(Nanos duration) { return static_cast<double>(duration.count()) / 1e6; }

struct Percentiles {
  double p50 = 0;
  double p99 = 0;
  double max = 0;
};

Percentiles percentiles(std::vector<double> values) {
  Percentiles result;
  if (values.empty()) return result;
  std::sort(values.begin(), values.end());
  auto at = [&](double q) {
    const auto index = static_cast<std::size_t>(q * static_cast<double>(values.size() - 1) + 0.5);
    return values[std::min(index, values.size() - 1)];
  };
  result.p50 = at(0.50);
  result.p99 = at(0.99);
  result.max = values.back();
  return result;
}

const char* verdict(bool met) { return met ? "met" : "MISSED"; }

// The latency (ms) of the last message a subscriber's hook saw: arrival minus stamp.
class LatencySink {
 public:
  void add(const Received& message) {
    const auto sent = static_cast<std::int64_t>(stamp_of(message.payload));
    const auto arrived = std::chrono::duration_cast<Nanos>(message.at.time_since_epoch()).count();
    std::lock_guard lock(mutex_);
    last_ = ms(Nanos(arrived - sent));
  }
  double last() {
    std::lock_guard lock(mutex_);
    return last_;
  }

 private:
  std::mutex mutex_;
  double last_ = 0;
};

struct LatencyPath {
  std::size_t hops;
  std::string path;
  Client* publisher;
  std::string topic;
  Client* subscriber;
  LatencySink* sink;
  std::vector<double> values;
};

// Ping-pong: publish, wait for arrival at the subscriber and for the PUBACK, repeat.
// Paths take turns message by message, so a burst of machine noise hits every hop
// count alike instead of whichever was being measured at the time.
void measure_latency(std::vector<LatencyPath>& paths, const Options& options) {
  std::uint64_t seq = 0;
  for (std::size_t i = 0; i < options.latency_warmup + options.latency_messages; ++i) {
    for (auto& path : paths) {
      const auto before = path.subscriber->count();
      auto token = path.publisher->paho().publish(
          mqtt::make_message(path.topic, stamped_payload(++seq), 1, false));
      if (!path.subscriber->wait_count(before + 1, std::chrono::seconds(10))) {
        throw std::runtime_error("latency: message " + std::to_string(seq) + " on " +
                                 path.topic + " did not arrive");
      }
      if (!token->wait_for(std::chrono::seconds(10))) throw std::runtime_error("no PUBACK");
      if (i >= options.latency_warmup) path.values.push_back(path.sink->last());
    }
  }
}

// Messages per second through publisher -> ... -> subscriber with a bounded window.
double measure_throughput(Client& publisher, const std::string& topic, Client& subscriber,
                          const Options& options) {
  subscriber.clear();
  WindowedPublisher window(publisher.paho(), options.window, std::chrono::seconds(60));
  const auto started = Clock::now();
  for (std::uint64_t seq = 1; seq <= options.throughput_messages; ++seq) {
    window.publish(topic, stamped_payload(seq));
  }
  window.drain();
  if (!subscriber.wait_count(options.throughput_messages, std::chrono::seconds(120))) {
    throw std::runtime_error("throughput: only " + std::to_string(subscriber.count()) + " of " +
                             std::to_string(options.throughput_messages) + " arrived");
  }
  const auto elapsed = Clock::now() - started;
  return static_cast<double>(options.throughput_messages) /
         std::chrono::duration<double>(elapsed).count();
}

// CPU time (user + system) a process has used so far, from /proc/<pid>/stat.
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + (pid > 0 ? std::to_string(pid) : std::string("self")) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  const auto close = text.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int index = 3; fields >> field && index <= 15; ++index) {
    if (index == 14 || index == 15) ticks += std::strtod(field.c_str(), nullptr);  // utime, stime
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Share of one core each process used while `work` ran: where the time goes.
template <class Work>
std::string cpu_profile(const std::vector<std::pair<std::string, pid_t>>& processes, Work work) {
  std::vector<double> before;
  for (const auto& process : processes) before.push_back(cpu_seconds(process.second));
  const auto started = Clock::now();
  work();
  const double wall = std::chrono::duration<double>(Clock::now() - started).count();
  std::string text;
  for (std::size_t i = 0; i < processes.size(); ++i) {
    char item[64];
    std::snprintf(item, sizeof item, "%s %.0f%%  ", processes[i].first.c_str(),
                  100.0 * (cpu_seconds(processes[i].second) - before[i]) / wall);
    text += item;
  }
  return text;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Five brokers in a line, levels 1..5. Every queue cap is raised to twice the
// throughput burst: the level-5 (device) profile caps a bridge queue at 2,500 messages,
// one device's day of traffic, and a 20,000-message burst published faster than the
// bridge drains it overflowed that cap ("Outgoing messages are being dropped for client
// bridge.c5.local") in 3 of 4 runs.
nova::tiers::Topology chain_topology(const Options& options) {
  nova::tiers::TopologySpec spec;
  spec.name = "bench-chain";
  const std::uint64_t cap = 2 * options.throughput_messages;
  for (std::uint8_t level = 1; level <= 5; ++level) {
    nova::tiers::SiteSpec site;
    site.id = "c" + std::to_string(level);
    site.level = level;
    if (level > 1) site.parent = "c" + std::to_string(level - 1);
    site.overrides.max_queued_messages = cap;
    site.overrides.max_queued_bytes = cap * nova::tiers::kDesignMessageBytes;
    spec.sites.push_back(site);
  }
  nova::tiers::NodeSpec node;
  node.id = "dev-c5";
  node.site = "c5";
  spec.nodes.push_back(node);
  node.id = "bench-single";  // the single-broker publisher: a node of c1 for the TLS ACL
  node.site = "c1";
  spec.nodes.push_back(node);
  auto topology = nova::tiers::Topology::build(std::move(spec));
  if (!topology.ok()) throw std::runtime_error("chain topology: " + topology.error().message());
  return std::move(topology).value();
}

std::size_t parse_count(const char* text) {
  char* end = nullptr;
  const auto value = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0' || value == 0) {
    std::fprintf(stderr, "hierarchy_bench: '%s' is not a positive count\n", text);
    std::exit(2);
  }
  return static_cast<std::size_t>(value);
}

Options parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--tls") {
      options.tls = true;
      continue;
    }
    if (arg == "--acl-cost") {
      options.acl_cost = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "hierarchy_bench: %s needs a value\n", argv[i]);
      std::exit(2);
    }
    const std::size_t value = parse_count(argv[++i]);
    if (arg == "--latency-messages") {
      options.latency_messages = value;
    } else if (arg == "--throughput-messages") {
      options.throughput_messages = value;
    } else if (arg == "--births") {
      options.births = value;
    } else if (arg == "--window") {
      options.window = value;
    } else if (arg == "--runs") {
      options.runs = value;
    } else {
      std::fprintf(stderr, "hierarchy_bench: unknown option %s\n", argv[i - 1]);
      std::exit(2);
    }
  }
  if (options.window > 100) {
    // Paho's maxBufferedMessages (default 100) also bounds queued publishes while
    // connected: a larger window fails with MQTT error -12 "No more messages can be
    // buffered".
    std::fprintf(stderr, "hierarchy_bench: --window must be at most 100 (Paho's buffer)\n");
    std::exit(2);
  }
  return options;
}

void print_header(const Options& options) {
  utsname host{};
  ::uname(&host);
  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M %Z", std::localtime(&now));
  std::ifstream loadavg("/proc/loadavg");
  std::string load1;
  std::string load5;
  loadavg >> load1 >> load5;
  std::printf("hierarchy_bench  %s  %s %s %s, %u hardware threads, load average %s %s\n",
              date, host.nodename, host.sysname, host.release,
              std::thread::hardware_concurrency(), load1.c_str(), load5.c_str());
  std::printf("latency: %zu messages (+%zu warm-up) per hop count, %zu-byte payload; "
              "throughput: %zu messages, window %zu, median of %zu runs; births: %zu\n\n",
              options.latency_messages, options.latency_warmup, kPayloadBytes,
              options.throughput_messages, options.window, options.runs, options.births);
}

// The example topology plus the 0-hop publisher as a node of the cloud site (the TLS
// ACL grants a node its own up topics only).
nova::tiers::Topology five_tier_topology() {
  auto spec = load_topology(NOVA_FIVE_TIER_YAML).spec();
  nova::tiers::NodeSpec local;
  local.id = "bench-cloud-local";
  local.site = "cloud";
  spec.nodes.push_back(local);
  auto topology = nova::tiers::Topology::build(std::move(spec));
  if (!topology.ok()) throw std::runtime_error("five-tier topology: " + topology.error().message());
  return std::move(topology).value();
}

ModeFigures run_mode(const Options& options, bool tls, bool mosquitto_acl_file = false) {
  std::printf("=== %s%s ===\n", tls ? "MUTUAL TLS (TLS 1.2+, client certificates, identity ACL)"
                                   : "PLAINTEXT (--insecure-plaintext rendering)",
              mosquitto_acl_file ? ", Mosquitto's acl_file" : ", nova_acl plugin");
  ModeFigures figures;
  // Plaintext on purpose: the named other half of the TLS/plaintext comparison.
  const Transport transport = tls ? Transport::mutual_tls : Transport::insecure_plaintext;
  auto example = start_hierarchy(five_tier_topology(), "nova-bench-five", transport, {}, {}, mosquitto_acl_file);
  auto chain = start_hierarchy(chain_topology(options), "nova-bench-chain", transport, {}, {}, mosquitto_acl_file);
  auto& five = **example;
  auto& line = **chain;
  // Clients connect as their identity (mqtt_support.h, endpoint()): a publisher as its
  // node (with TLS, its certificate), the subscribers as nova-cloud.

  // Every client, connected together before any measurement.
  LatencySink five_sink;
  LatencySink chain_sink;
  Client five_cloud(endpoint(*example, "cloud", nova::bridge::kCloudServiceUser));
  Client chain_top(endpoint(*chain, "c1", nova::bridge::kCloudServiceUser));
  std::vector<std::unique_ptr<Client>> hop_clients;
  std::vector<LatencyPath> paths;
  auto add_path = [&](std::size_t hops, const std::string& path, RunningHierarchy& h, const std::string& site,
                      const std::string& node, Client& subscriber, LatencySink& sink) {
    hop_clients.push_back(std::make_unique<Client>(endpoint(h, site, node)));
    paths.push_back(LatencyPath{hops, path, hop_clients.back().get(),
                                "nova/v1/up/" + node + "/metrics", &subscriber, &sink, {}});
  };
  add_path(0, "cloud (same broker)", *example, "cloud", "bench-cloud-local", five_cloud, five_sink);
  add_path(1, "eu -> cloud", *example, "eu", "agent-eu", five_cloud, five_sink);
  add_path(2, "par -> eu -> cloud", *example, "par", "agent-par", five_cloud, five_sink);
  add_path(3, "par-a1 -> par -> eu -> cloud", *example, "par-a1", "gw-par-a1", five_cloud, five_sink);
  add_path(4, "c5 -> c4 -> c3 -> c2 -> c1", *chain, "c5", "dev-c5", chain_top, chain_sink);
  Client single_publisher(endpoint(*chain, "c1", "bench-single"));

  std::vector<Client*> all{&five_cloud, &chain_top, &single_publisher};
  for (auto& client : hop_clients) all.push_back(client.get());
  const auto connect_started = Clock::now();
  connect_all(all, std::chrono::seconds(60));
  std::printf("connected %zu clients in %.1f ms (all connects issued at once)\n\n", all.size(),
              ms(Clock::now() - connect_started));

  five_cloud.record_payloads(false);
  chain_top.record_payloads(false);
  five_cloud.on_message([&](const Received& message) { five_sink.add(message); });
  chain_top.on_message([&](const Received& message) { chain_sink.add(message); });
  five_cloud.subscribe("nova/v1/up/+/metrics");
  chain_top.subscribe("nova/v1/up/+/metrics");

  // --- latency ---------------------------------------------------------------------
  std::printf("LATENCY, QoS 1, ping-pong pacing (ms)          p50     p99     max   p99/hop  "
              "target p99    \n");
  bool all_met = true;
  measure_latency(paths, options);
  for (const auto& hop : paths) {
    const auto p = percentiles(hop.values);
    figures.p99_by_hops.push_back(p.p99);
    if (hop.hops == 0) {
      std::printf("  0 hops  %-30s %7.3f %7.3f %7.3f         -  (baseline)\n", hop.path.c_str(),
                  p.p50, p.p99, p.max);
      continue;
    }
    const double target = static_cast<double>(hop.hops);  // 1 ms per hop
    const bool met = p.p99 <= target;
    all_met = all_met && met;
    std::printf("  %zu hop%s  %-30s %7.3f %7.3f %7.3f   %7.3f  <= %.0f ms  %s\n", hop.hops,
                hop.hops == 1 ? " " : "s", hop.path.c_str(), p.p50, p.p99, p.max,
                p.p99 / target, target, verdict(met));
  }

  // --- throughput ------------------------------------------------------------------
  std::vector<double> single_rates;
  std::vector<double> chain_rates;
  const auto& bottom = paths.back();
  std::vector<std::pair<std::string, pid_t>> processes{{"bench", -1}};
  for (const auto& site : line.topology().sites()) processes.emplace_back(site.id(), line.pid(site.id()));
  std::string single_cpu;
  std::string chain_cpu;
  for (std::size_t run = 0; run < options.runs; ++run) {
    single_cpu = cpu_profile(processes, [&] {
      single_rates.push_back(measure_throughput(single_publisher,
                                                "nova/v1/up/bench-single/metrics", chain_top,
                                                options));
    });
    chain_cpu = cpu_profile(processes, [&] {
      chain_rates.push_back(
          measure_throughput(*bottom.publisher, bottom.topic, chain_top, options));
    });
  }
  const double single_rate = median(single_rates);
  const double chain_rate = median(chain_rates);
  figures.single_rate = single_rate;
  figures.chain_rate = chain_rate;
  const double ratio = chain_rate / single_rate;
  const bool throughput_met = ratio >= 0.5;
  std::printf("\nTHROUGHPUT, QoS 1, window %zu, %zu x %zu-byte messages (msg/s, median of %zu)\n",
              options.window, options.throughput_messages, kPayloadBytes, options.runs);
  std::printf("  single broker (c1 -> c1)        %9.0f   runs:", single_rate);
  for (const double rate : single_rates) std::printf(" %.0f", rate);
  std::printf("\n  4-hop chain (c5 -> ... -> c1)   %9.0f   runs:", chain_rate);
  for (const double rate : chain_rates) std::printf(" %.0f", rate);
  std::printf("\n  chain / single                  %9.2f   target >= 0.50  %s\n", ratio,
              verdict(throughput_met));
  std::printf("  CPU, share of one core in the last run:\n    single: %s\n    chain:  %s\n",
              single_cpu.c_str(), chain_cpu.c_str());
  // Mosquitto drops what exceeds a queue cap with one log line and nothing else.
  for (const auto& site : line.topology().sites()) {
    if (chain->log_of(site.id()).find("dropped") != std::string::npos) {
      std::printf("  WARNING: broker %s logged dropped messages\n", site.id().c_str());
    }
  }

  if (tls) {
    std::printf("\nSUMMARY (TLS): latency %s, throughput %s\n\n", verdict(all_met), verdict(throughput_met));
    return figures;
  }

  // --- birth visibility --------------------------------------------------------------
  // The node clients connect only now: every connection a Paho process holds, idle or
  // not, is polled by its one receive thread for every packet, and 200 of them halved
  // the throughput figures above when they were connected first.
  std::vector<std::unique_ptr<Client>> nodes;
  for (std::size_t i = 0; i < options.births; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "bench-node-%04zu", i);
    nodes.push_back(std::make_unique<Client>(five.uri("par-a1"), id));
  }
  std::vector<Client*> node_clients;
  for (auto& node : nodes) node_clients.push_back(node.get());
  const auto nodes_started = Clock::now();
  connect_all(node_clients, std::chrono::seconds(60));
  std::printf("\nconnected %zu node clients in %.1f ms (all connects issued at once)\n",
              node_clients.size(), ms(Clock::now() - nodes_started));
  five_cloud.on_message(nullptr);
  five_cloud.record_payloads(true);
  five_cloud.clear();
  five_cloud.subscribe("nova/v1/up/+/state");
  const auto site_path = five.topology().site("par-a1").path.str();
  std::vector<double> birth_ms;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const auto node = nodes[i]->paho().get_client_id();
    nova::schemas::NodeState birth{node, nova::schemas::NodeStatus::online, 1, 1732650000000,
                                   nova::schemas::NodeDescription{5, site_path, "armv7l",
                                                                  "0.1.0", {}, {500, 256, 1024},
                                                                  std::nullopt},
                                   {}, {}, {}};
    const auto bytes = nova::schemas::encode_cbor(birth);
    const std::string topic = "nova/v1/up/" + node + "/state";
    const auto sent = Clock::now();
    auto token = nodes[i]->paho().publish(
        mqtt::make_message(topic, std::string(bytes.begin(), bytes.end()), 1, true));
    Clock::time_point seen{};
    const bool arrived = five_cloud.wait_until(
        [&](const std::vector<Received>& messages) {
          for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
            if (it->topic == topic) {
              seen = it->at;
              return true;
            }
          }
          return false;
        },
        std::chrono::seconds(10));
    if (!arrived) throw std::runtime_error("birth of " + node + " never reached the cloud");
    if (!token->wait_for(std::chrono::seconds(10))) throw std::runtime_error("no PUBACK");
    birth_ms.push_back(ms(seen - sent));
  }
  const auto births = percentiles(birth_ms);
  const bool births_met = births.p99 <= 50.0;
  std::printf("BIRTH VISIBILITY, retained birth at access par-a1 -> cloud subscriber (ms), "
              "%zu nodes\n",
              birth_ms.size());
  std::printf("  p50 %.3f  p99 %.3f  max %.3f   target p99 <= 50 ms  %s  (seed: < 5 s)\n",
              births.p50, births.p99, births.max, verdict(births_met));

  std::printf("\nSUMMARY: latency %s, throughput %s, birth visibility %s\n\n", verdict(all_met),
              verdict(throughput_met), verdict(births_met));
  return figures;
}

// Two modes' figures side by side, with the ratio b / a; `header` names the columns.
void print_side_by_side(const char* header, const ModeFigures& a, const ModeFigures& b) {
  std::printf("%s\n", header);
  for (std::size_t hops = 0; hops < a.p99_by_hops.size() && hops < b.p99_by_hops.size(); ++hops) {
    std::printf("  latency p99, %zu hop%s (ms)          %9.3f  %9.3f   %9.2f\n", hops, hops == 1 ? " " : "s",
                a.p99_by_hops[hops], b.p99_by_hops[hops], b.p99_by_hops[hops] / a.p99_by_hops[hops]);
  }
  std::printf("  throughput, single broker (msg/s)  %9.0f  %9.0f   %9.2f\n", a.single_rate, b.single_rate,
              b.single_rate / a.single_rate);
  std::printf("  throughput, 4-hop chain (msg/s)    %9.0f  %9.0f   %9.2f\n", a.chain_rate, b.chain_rate,
              b.chain_rate / a.chain_rate);
}

int run(const Options& options) {
  print_header(options);
  if (options.acl_cost) {
    // Mutual TLS with Mosquitto's acl_file, then with the nova_acl plugin (same ACL file).
    const ModeFigures file = run_mode(options, true, true);
    const ModeFigures plugin = run_mode(options, true, false);
    print_side_by_side("ACL PLUGIN COST, same run, mutual TLS   acl_file     plugin   plugin/file", file, plugin);
    return 0;
  }
  const ModeFigures plain = run_mode(options, false);
  if (!options.tls) return 0;
  const ModeFigures tls = run_mode(options, true);
  print_side_by_side("TLS COST, same run                     plaintext        TLS   TLS/plain", plain, tls);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  try {
    return run(options);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "hierarchy_bench: %s\n", error.what());
    return 1;
  }
}
