// WireGuard links (issue 12, item 2): two network namespaces joined by a veth pair play a
// parent host ("hub") and a child host ("edge"). Each runs wireguard-go brought up by
// wg-quick from the wg-nova.conf nova-bridge rendered, and a real Mosquitto with the
// mosquitto.conf nova-bridge rendered (mutual TLS), so the edge's bridge reaches the hub
// through the tunnel only. Outside clients (mosquitto_pub/sub in `ip netns exec`) check:
//   - QoS 1 messages published at the edge all arrive at the hub (count sent = received),
//     across a tunnel cut mid-stream (wireguard-go SIGKILLed, then brought up again);
//   - a TCP connect to the hub broker's veth (non-tunnel) address is refused.
// Needs root, /dev/net/tun, `ip netns`, wireguard-go, wireguard-tools and the Mosquitto
// clients. Without them it reports SKIPPED with the reason (ctest: Skipped, label netns).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "nova/bridge/broker_process.h"
#include "nova/bridge/hierarchy.h"
#include "nova/bridge/net.h"
#include "nova/bridge/render.h"
#include "nova/bridge/wireguard.h"
#include "nova/security/layout.h"
#include "nova/testing/child_process.h"
#include "nova/testing/poll.h"
#include "nova/testing/temp_dir.h"
#include "nova/tiers/topology.h"
#include "pki_fixture.h"  // run(): an outside command's exit code and output

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nova::security::testing::run;

constexpr const char* kHubVeth = "192.168.77.1";
constexpr const char* kEdgeVeth = "192.168.77.2";
constexpr std::uint16_t kHubPort = 18883;
constexpr std::uint16_t kEdgePort = 18884;

const std::string kTopology = std::string(R"(
name: wg-test
links: wireguard
wireguard: {network: 10.77.0.0/16}
sites:
  - {id: hub, level: 1, port: 18883, wireguard: {endpoint: )") + kHubVeth + R"(}}
  - {id: edge, level: 2, parent: hub, port: 18884, overrides: {keepalive: 5, restart_timeout: [1, 2]}}
nodes:
  - {id: gw-1, site: edge}
)";

bool on_path(const std::string& exe) { return run({"sh", "-c", "command -v \"$0\"", exe}).exit_code == 0; }

// What this machine lacks for the test, or "" when it has everything.
std::string missing_capability() {
  if (::geteuid() != 0) return "not root (ip netns and TUN devices need it)";
  if (!fs::exists("/dev/net/tun")) return "no /dev/net/tun";
  for (const char* exe : {"ip", "wg", "wg-quick", "wireguard-go", "mosquitto", "mosquitto_pub", "mosquitto_sub"}) {
    if (!on_path(exe)) return std::string("no ") + exe + " on PATH";
  }
  return "";
}

// The pids of processes whose command line is exactly `argv`.
std::vector<pid_t> pids_running(const std::vector<std::string>& argv) {
  std::string wanted;
  for (const auto& a : argv) wanted += a + '\0';
  std::vector<pid_t> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::stringstream cmdline;
    cmdline << in.rdbuf();
    if (cmdline.str() == wanted) out.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  return out;
}

// Two namespaces joined by a veth pair, each with its WireGuard interface once up().
// Everything it made goes when it goes, whatever the test did: wireguard-go processes
// (SIGKILL by pid), the namespaces (and with them the veth and TUN devices), the sockets.
class NetnsLab {
 public:
  struct Host {
    std::string ns;     // ip netns name
    std::string iface;  // WireGuard interface: wg-quick names it after the config file
    fs::path wg_conf;   // <iface>.conf, 0600
  };

  explicit NetnsLab(const fs::path& dir) {
    const std::string id = std::to_string(::getpid());
    hub_ = {"nova-wg-" + id + "-hub", "nwg" + id + "h", {}};
    edge_ = {"nova-wg-" + id + "-edge", "nwg" + id + "e", {}};
    hub_.wg_conf = dir / (hub_.iface + ".conf");
    edge_.wg_conf = dir / (edge_.iface + ".conf");
    const std::string veth_hub = "nwv" + id + "h", veth_edge = "nwv" + id + "e";
    for (const Host* h : {&hub_, &edge_}) {
      if (!ip({"netns", "add", h->ns})) return;
      made_.push_back(h->ns);
    }
    ok_ = ip({"link", "add", veth_hub, "type", "veth", "peer", "name", veth_edge}) &&
          ip({"link", "set", veth_hub, "netns", hub_.ns}) && ip({"link", "set", veth_edge, "netns", edge_.ns}) &&
          ip({"-n", hub_.ns, "addr", "add", std::string(kHubVeth) + "/24", "dev", veth_hub}) &&
          ip({"-n", edge_.ns, "addr", "add", std::string(kEdgeVeth) + "/24", "dev", veth_edge}) &&
          ip({"-n", hub_.ns, "link", "set", veth_hub, "up"}) && ip({"-n", edge_.ns, "link", "set", veth_edge, "up"}) &&
          ip({"-n", hub_.ns, "link", "set", "lo", "up"}) && ip({"-n", edge_.ns, "link", "set", "lo", "up"});
  }

  ~NetnsLab() {
    for (const Host* h : {&hub_, &edge_}) kill_wireguard_go(*h);
    for (const std::string& ns : made_) run({"ip", "netns", "del", ns});
    for (const Host* h : {&hub_, &edge_}) {
      std::error_code ignored;
      fs::remove("/var/run/wireguard/" + h->iface + ".sock", ignored);
    }
  }
  NetnsLab(const NetnsLab&) = delete;
  NetnsLab& operator=(const NetnsLab&) = delete;

  // "" when the namespaces and the veth pair are up, else what failed.
  const std::string& failure() const { return failure_; }
  bool ok() const { return ok_ && made_.size() == 2; }
  const Host& hub() const { return hub_; }
  const Host& edge() const { return edge_; }

  // wg-quick up from the host's config: no kernel module here, so it runs wireguard-go.
  bool up(const Host& h) {
    const auto r = run({"ip", "netns", "exec", h.ns, "env", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1",
                        "wg-quick", "up", h.wg_conf.string()});
    INFO(r.output);
    CHECK(r.exit_code == 0);
    return r.exit_code == 0;
  }

  // SIGKILL the host's wireguard-go: its TUN device, address and routes go with it.
  int kill_wireguard_go(const Host& h) {
    int killed = 0;
    for (const pid_t pid : pids_running({"wireguard-go", h.iface})) killed += ::kill(pid, SIGKILL) == 0 ? 1 : 0;
    return killed;
  }

  bool has_interface(const Host& h) { return run({"ip", "-n", h.ns, "link", "show", h.iface}).exit_code == 0; }

  static fs::path netns_file(const Host& h) { return fs::path("/run/netns") / h.ns; }

 private:
  bool ip(const std::vector<std::string>& args) {
    std::vector<std::string> argv{"ip"};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = run(argv);
    if (r.exit_code != 0 && failure_.empty()) failure_ = "ip " + args.front() + " ...: " + r.output;
    return r.exit_code == 0;
  }

  Host hub_, edge_;
  std::vector<std::string> made_;
  bool ok_ = false;
  std::string failure_;
};

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// The TLS options of a Mosquitto client presenting PKI identity `cn`.
std::vector<std::string> tls_args(const nova::security::Layout& pki, const std::string& cn) {
  return {"--cafile", pki.trust_ca().string(), "--cert", pki.identity_cert(cn).string(), "--key",
          pki.identity_key(cn).string()};
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The payloads on lines "<topic> <payload>" of `topic`.
std::vector<std::string> payloads(const std::string& text, const std::string& topic) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(topic + " ", 0) == 0) out.push_back(line.substr(topic.size() + 1));
  }
  return out;
}

}  // namespace

TEST_CASE("a bridge through a WireGuard tunnel between namespaces loses nothing, and plain TCP is refused",
          "[bridge][wireguard][netns]") {
  if (const std::string missing = missing_capability(); !missing.empty()) {
    std::cout << "SKIPPED: WireGuard netns test needs root, TUN and the tools: " << missing << std::endl;
    return;
  }
  nova::testing::TempDir dir("nova-wg-test");
  NetnsLab lab(dir.path);
  if (!lab.ok()) {
    std::cout << "SKIPPED: cannot make network namespaces (ip netns): " << lab.failure() << std::endl;
    return;
  }

  // Render both sites as nova-bridge does: PKI, keys, mosquitto.conf, acl, wg-nova.conf.
  auto topology = nova::tiers::Topology::parse_yaml(kTopology);
  REQUIRE(topology.ok());
  const fs::path pki_dir = dir.path / "pki";
  REQUIRE(nova::bridge::prepare_pki(pki_dir, *topology).ok());
  const nova::security::Layout pki(pki_dir);
  nova::bridge::RenderOptions options;
  options.pki_dir = pki_dir;
  options.user = "root";
  for (const auto& [site, host] : {std::pair{"hub", &lab.hub()}, std::pair{"edge", &lab.edge()}}) {
    const auto written = nova::bridge::write_site(*topology, topology->site(site), dir.path / site, options);
    INFO(site << ": " << (written.ok() ? "" : written.error().message()));
    REQUIRE(written.ok());
    // wg-quick names the interface after the file: one name per test run.
    fs::copy_file(dir.path / site / nova::bridge::kWireguardConfigFile, host->wg_conf);
    fs::permissions(host->wg_conf, fs::perms::owner_read | fs::perms::owner_write);
  }
  REQUIRE(lab.up(lab.hub()));
  REQUIRE(lab.up(lab.edge()));

  // The brokers, each in its namespace; the hub first (it binds its tunnel address).
  nova::bridge::BrokerProcess hub, edge;
  for (const auto& [site, port, host, broker] :
       {std::tuple{"hub", kHubPort, &lab.hub(), &hub}, std::tuple{"edge", kEdgePort, &lab.edge(), &edge}}) {
    nova::bridge::BrokerLaunch launch;
    launch.config = dir.path / site / "mosquitto.conf";
    launch.log = dir.path / site / "mosquitto.log";
    launch.stdio = dir.path / site / "stdio.log";
    launch.port = port;
    launch.netns = NetnsLab::netns_file(*host);
    const auto started = broker->start(launch);
    INFO(site << ": " << started.message << read_file(launch.stdio));
    REQUIRE(started.ok());
  }

  // nova-cloud's view at the hub, by an outside client: every upward topic, one line each.
  const fs::path seen_file = dir.path / "seen.txt";
  std::string sub_command = "exec ip netns exec " + lab.hub().ns + " mosquitto_sub -h 127.0.0.1 -p " +
                            std::to_string(kHubPort) + " -q 1 -v -t 'nova/v1/up/#'";
  for (const auto& a : tls_args(pki, "nova-cloud")) sub_command += " " + shell_quote(a);
  nova::testing::ChildProcess subscriber;
  subscriber.start({"/bin/sh", "-c", sub_command + " >" + shell_quote(seen_file.string())},
                   dir.path / "sub.err", false);
  const std::string link = nova::bridge::link_topic("edge");
  REQUIRE(nova::testing::poll_until(
      [&] {
        const auto states = payloads(read_file(seen_file), link);
        return !states.empty() && states.back() == "1";
      },
      30s));

  // gw-1 publishes at the edge (QoS 1, one message per line, numbered from `first`).
  const std::string metrics = "nova/v1/up/gw-1/metrics";
  auto publish_batch = [&](int first, int count) {
    const fs::path lines = dir.path / ("batch-" + std::to_string(first) + ".txt");
    {
      std::ofstream out(lines);
      for (int i = first; i < first + count; ++i) out << i << '\n';
    }
    std::vector<std::string> argv{"sh", "-c", "exec ip netns exec \"$@\" <" + shell_quote(lines.string()), "pub",
                                  lab.edge().ns, "mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(kEdgePort),
                                  "-q", "1", "-t", metrics, "-l"};
    for (const auto& a : tls_args(pki, "gw-1")) argv.push_back(a);
    const auto r = run(argv);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
  };
  auto distinct_received = [&] {
    const auto got = payloads(read_file(seen_file), metrics);
    return std::set<std::string>(got.begin(), got.end());
  };
  constexpr int kBatch = 200;

  publish_batch(1, kBatch);
  REQUIRE(nova::testing::poll_until([&] { return distinct_received().size() == kBatch; }, 30s));

  // Cut the tunnel at the edge: wireguard-go dies, and the hub is unreachable from there.
  const int edge_ns = ::open(NetnsLab::netns_file(lab.edge()).c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(edge_ns >= 0);
  struct CloseFd {
    int fd;
    ~CloseFd() { ::close(fd); }
  } close_edge_ns{edge_ns};
  REQUIRE(nova::bridge::accepts_connections_in(edge_ns, "10.77.0.1", kHubPort));
  REQUIRE(lab.kill_wireguard_go(lab.edge()) == 1);
  // Wait for the TUN device to go (a connect before that would hang in SYN retries).
  REQUIRE(nova::testing::poll_until([&] { return !lab.has_interface(lab.edge()); }, 10s));
  CHECK_FALSE(nova::bridge::accepts_connections_in(edge_ns, "10.77.0.1", kHubPort));  // no route
  publish_batch(kBatch + 1, kBatch);  // accepted by the edge's broker, queued for the hub
  CHECK(distinct_received().size() == kBatch);  // nothing can cross a cut tunnel

  // Restore it: the bridge reconnects and delivers the queue, then more traffic.
  REQUIRE(lab.up(lab.edge()));
  publish_batch(2 * kBatch + 1, kBatch);
  const bool all = nova::testing::poll_until([&] { return distinct_received().size() == 3 * kBatch; }, 45s);
  const auto received = distinct_received();
  const auto lines = payloads(read_file(seen_file), metrics);
  INFO("distinct received " << received.size() << " of " << 3 * kBatch << " sent; " << lines.size()
                            << " deliveries (QoS 1 may repeat)");
  CHECK(all);
  for (int i = 1; i <= 3 * kBatch; ++i) {
    if (received.count(std::to_string(i)) == 0) FAIL_CHECK("message " << i << " never arrived");
  }
  CHECK(received.size() == 3 * kBatch);

  // Outside the tunnel: the hub's broker is not there. A TCP connect to its veth address
  // is refused, and so is a real client with a valid certificate; through the tunnel the
  // same port answers.
  CHECK(nova::bridge::accepts_connections_in(edge_ns, "10.77.0.1", kHubPort));
  CHECK_FALSE(nova::bridge::accepts_connections_in(edge_ns, kHubVeth, kHubPort));
  std::vector<std::string> plain{"ip", "netns", "exec", lab.edge().ns, "mosquitto_pub", "-h", kHubVeth,
                                 "-p", std::to_string(kHubPort), "-q", "1", "-t", metrics, "-m", "bypass"};
  for (const auto& a : tls_args(pki, "gw-1")) plain.push_back(a);
  const auto refused = run(plain);
  INFO(refused.output);
  CHECK(refused.exit_code != 0);
  CHECK(refused.output.find("Connection refused") != std::string::npos);
}
