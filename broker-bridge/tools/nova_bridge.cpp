// nova-bridge: renders each site's Mosquitto configuration from a topology file, and
// starts, watches and stops a whole local hierarchy of bridged brokers.
//
// Exit codes: 0 ok; 1 runtime failure (a broker would not start, a link is down,
// something did not stop); 2 usage or configuration error (bad arguments, an invalid
// topology, an unknown site, no hierarchy.json in --run-dir).
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>

#include "nova/bridge/hierarchy.h"
#include "nova/bridge/net.h"
#include "nova/bridge/render.h"
#include "nova/bridge/wireguard.h"
#include "nova/bridge/state_file.h"

namespace {

namespace fs = std::filesystem;
using namespace nova;
using std::chrono::milliseconds;

constexpr int kOk = 0;
constexpr int kRuntimeFailure = 1;
constexpr int kUsageError = 2;

std::mutex log_mu;

// Structured log lines on stderr; the hierarchy's events use the same format.
void log_line(const std::string& line) {
  std::lock_guard lock(log_mu);
  std::cerr << line << std::endl;
}

void log_event(const std::string& kind, const std::string& what, const std::string& level = "info") {
  bridge::HierarchyEvent e;
  e.kind = kind;
  e.what = what;
  e.level = level;
  log_line(bridge::format_event(e));
}

int fail(int code, const std::string& message) {
  std::cerr << "nova-bridge: " << message << '\n';
  return code;
}

// Loads the topology or explains why not (Topology::load names the site and problem).
std::optional<tiers::Topology> load_topology(const fs::path& file) {
  auto topology = tiers::Topology::load(file);
  if (!topology) {
    fail(kUsageError, "invalid topology: " + topology.error().message());
    return std::nullopt;
  }
  return std::move(topology).value();
}

void warn_insecure() {
  std::cerr << "nova-bridge: WARNING: --insecure-plaintext: brokers without TLS, anonymous clients "
               "allowed, identities anybody may claim. Development only.\n";
}

// --- render ----------------------------------------------------------------------------

struct RenderArgs {
  fs::path topology;
  std::string site;
  fs::path out;
  fs::path data_dir;
  std::string user;
  fs::path pki;
  bool insecure_plaintext = false;
};

int cmd_render(const RenderArgs& args) {
  auto topology = load_topology(args.topology);
  if (!topology) return kUsageError;
  const tiers::Site* site = topology->find(args.site);
  if (site == nullptr) {
    return fail(kUsageError, "site '" + args.site + "': not defined in topology '" + topology->name() + "' (" +
                                 args.topology.string() + ")");
  }
  std::vector<const tiers::Site*> needs_port{site};
  if (const tiers::Site* parent = topology->parent(*site)) needs_port.push_back(parent);
  for (const std::string& b : site->spec.backup_parents) needs_port.push_back(&topology->site(b));
  for (const tiers::Site* s : needs_port) {
    if (s->spec.listener.port == 0) {
      return fail(kUsageError, "site '" + s->id() + "': has no port; render needs fixed ports for '" + args.site +
                                   "' and the sites it bridges to (only `up` assigns free ports)");
    }
  }
  bridge::RenderOptions options;
  options.data_dir = args.data_dir;
  options.user = args.user;
  options.pki_dir = args.pki;
  options.insecure_plaintext = args.insecure_plaintext;
  if (args.insecure_plaintext) warn_insecure();
  if (auto st = bridge::write_site(*topology, *site, args.out, options); !st) {
    return fail(kRuntimeFailure, st.error().message());
  }
  std::cout << "wrote " << (args.out / "mosquitto.conf").string() << " and " << (args.out / "acl").string();
  if (topology->wireguard()) std::cout << " and " << (args.out / bridge::kWireguardConfigFile).string();
  std::cout << '\n';
  return kOk;
}

// --- up --------------------------------------------------------------------------------

struct UpArgs {
  fs::path topology;
  fs::path run_dir;
  bool free_ports = false;
  int ready_timeout_s = 60;
  bool insecure_plaintext = false;
  fs::path pki;  // empty: <run-dir>/pki, made (or completed) for the topology
};

// The PKI of a TLS hierarchy, made or completed (bridge::prepare_pki).
std::optional<fs::path> prepare_pki(const tiers::Topology& topology, const fs::path& dir) {
  auto issued = bridge::prepare_pki(dir, topology);
  if (!issued) {
    fail(issued.error().path == "topology" ? kUsageError : kRuntimeFailure, "--pki: " + issued.error().message());
    return std::nullopt;
  }
  log_event("pki_ready", dir.string() + ": " + std::to_string(*issued) + " identities issued");
  return dir;
}

void print_table(const bridge::Hierarchy& h) {
  const tiers::Topology& t = h.topology();
  std::ostringstream out;
  out << std::left << std::setw(12) << "SITE" << std::setw(7) << "LEVEL" << std::setw(12) << "PARENT" << std::setw(8)
      << "PORT" << std::setw(9) << "PID" << "DIR\n";
  for (const tiers::Site& s : t.sites()) {
    out << std::setw(12) << s.id() << std::setw(7) << int{s.level()} << std::setw(12) << s.spec.parent.value_or("-")
        << std::setw(8) << h.port(s.id()) << std::setw(9) << h.pid(s.id()) << h.site_dir(s.id()).string() << '\n';
  }
  std::cout << out.str() << std::flush;
}

int cmd_up(const UpArgs& args) {
  // Signals are taken synchronously by this thread (sigwaitinfo); every thread started
  // from here on inherits the blocked mask. Brokers get a clean mask (BrokerProcess).
  sigset_t signals;
  sigemptyset(&signals);
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto topology = load_topology(args.topology);
  if (!topology) return kUsageError;
  const fs::path state_path = args.run_dir / bridge::kStateFileName;
  if (auto previous = bridge::read_state_file(state_path); previous && bridge::process_alive(previous->supervisor)) {
    return fail(kRuntimeFailure, "a hierarchy is already running in " + args.run_dir.string() + " (supervisor pid " +
                                     std::to_string(previous->supervisor.pid) + "); run `nova-bridge down --run-dir " +
                                     args.run_dir.string() + "` first");
  }

  bridge::HierarchyOptions options;
  options.run_dir = args.run_dir;
  options.ports = args.free_ports ? bridge::PortPolicy::free_for_all : bridge::PortPolicy::free_for_zero;
  options.ready_timeout = std::chrono::seconds(args.ready_timeout_s);
  options.on_event = [](const bridge::HierarchyEvent& e) { log_line(bridge::format_event(e)); };
  options.insecure_plaintext = args.insecure_plaintext;
  if (args.insecure_plaintext) {
    warn_insecure();
  } else {
    const auto pki = prepare_pki(*topology, args.pki.empty() ? args.run_dir / "pki" : args.pki);
    if (!pki) return kRuntimeFailure;
    options.pki_dir = *pki;
  }
  log_event("starting", "topology '" + topology->name() + "' (" + std::to_string(topology->sites().size()) +
                            " sites) in " + args.run_dir.string());
  auto started = bridge::Hierarchy::start(*topology, options);
  if (!started) return fail(kRuntimeFailure, "cannot start the hierarchy: " + started.error().message());
  std::unique_ptr<bridge::Hierarchy> hierarchy = std::move(started).value();
  hierarchy->write_state_file();
  const std::size_t links = hierarchy->topology().sites().size() - 1;
  log_event("hierarchy_up", std::to_string(links + 1) + " brokers running, " + std::to_string(links) +
                                " links connected; state in " + state_path.string());
  print_table(*hierarchy);
  // scripts/run.sh and tests wait for this line.
  std::cout << "ready: " << links + 1 << " brokers, " << links << " links connected" << std::endl;

  for (;;) {
    siginfo_t info{};
    const int sig = sigwaitinfo(&signals, &info);
    if (sig < 0) continue;  // EINTR
    if (sig != SIGHUP) {
      log_event("stopping", std::string("received SIG") + ::sigabbrev_np(sig) + "; stopping every broker, children first");
      break;
    }
    // SIGHUP: Mosquitto does not reload bridges on SIGHUP, so re-render every site and
    // restart the brokers whose config or bridge certificate changed; SIGHUP those whose
    // ACL or listener certificate alone changed (Hierarchy::reload).
    auto next = tiers::Topology::load(args.topology);
    if (!next) {
      log_event("reload_failed", "topology unchanged: " + next.error().message(), "error");
      continue;
    }
    auto summary = hierarchy->reload(*next);
    if (!summary) {
      log_event("reload_failed", summary.error().message(), "error");
      continue;
    }
    log_event("reloaded", std::to_string(summary->started.size()) + " started, " +
                              std::to_string(summary->restarted.size()) + " restarted, " +
                              std::to_string(summary->acl_reloaded.size()) + " ACLs reloaded, " +
                              std::to_string(summary->tls_reloaded.size()) + " listener certificates reloaded, " +
                              std::to_string(summary->removed.size()) + " removed");
    hierarchy->write_state_file();
  }
  hierarchy.reset();
  log_event("stopped", "every broker stopped");
  return kOk;
}

// --- status ----------------------------------------------------------------------------

int cmd_status(const fs::path& run_dir) {
  auto state = bridge::read_state_file(run_dir / bridge::kStateFileName);
  if (!state) return fail(kUsageError, state.error().message());
  const bool supervisor = bridge::process_alive(state->supervisor);
  std::cout << "hierarchy '" << state->name << "' in " << state->run_dir.string() << ": supervisor pid "
            << state->supervisor.pid << (supervisor ? " running" : " not running") << '\n';
  std::ostringstream out;
  out << std::left << std::setw(12) << "SITE" << std::setw(7) << "LEVEL" << std::setw(12) << "PARENT" << std::setw(8)
      << "PORT" << std::setw(9) << "PID" << std::setw(8) << "BROKER" << "LINK\n";
  // Brokers first (pid alive and accepting), then every link of a live broker at once.
  std::vector<bool> up;
  std::vector<bridge::LinkProbe> probes;
  std::vector<std::size_t> probed;
  for (std::size_t i = 0; i < state->sites.size(); ++i) {
    const bridge::SiteRecord& s = state->sites[i];
    up.push_back(bridge::process_alive(s.process) && bridge::accepts_connections(s.address, s.port));
    // A link is read at the parent's broker (link.h), which must be up: parents come
    // before children in the file.
    const auto parent = std::find_if(state->sites.begin(), state->sites.begin() + static_cast<std::ptrdiff_t>(i),
                                     [&](const bridge::SiteRecord& p) { return s.parent && p.id == *s.parent; });
    if (s.parent && parent != state->sites.begin() + static_cast<std::ptrdiff_t>(i) &&
        up[static_cast<std::size_t>(parent - state->sites.begin())]) {
      const std::string host = parent->address == "0.0.0.0" ? "127.0.0.1" : parent->address;
      probes.push_back({{"tcp://" + host + ":" + std::to_string(parent->port)}, s.id, bridge::monitor_tls_in(state->pki_dir)});
      probed.push_back(i);
    }
  }
  const std::vector<bridge::LinkState> states = bridge::read_link_states(probes, milliseconds(5000));
  std::vector<bridge::LinkState> links(state->sites.size(), bridge::LinkState::unknown);
  for (std::size_t k = 0; k < probed.size(); ++k) links[probed[k]] = states[k];

  bool all_green = true;
  for (std::size_t i = 0; i < state->sites.size(); ++i) {
    const bridge::SiteRecord& s = state->sites[i];
    std::string link = "-";
    if (s.parent) {
      link = std::string(bridge::to_string(links[i]));
      all_green = all_green && links[i] == bridge::LinkState::connected;
    }
    all_green = all_green && up[i];
    out << std::setw(12) << s.id << std::setw(7) << s.level << std::setw(12) << s.parent.value_or("-") << std::setw(8)
        << s.port << std::setw(9) << (up[i] ? std::to_string(s.process.pid) : "-") << std::setw(8)
        << (up[i] ? "up" : "down") << link << '\n';
  }
  std::cout << out.str() << (all_green ? "all brokers up, all links connected\n" : "NOT all green\n");
  return all_green ? kOk : kRuntimeFailure;
}

// --- down ------------------------------------------------------------------------------

// Waits for a process that need not be our child (pidfd works for any process).
bool wait_gone(const bridge::ProcessId& p, milliseconds timeout) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0));
  if (fd < 0) return !bridge::process_alive(p);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (bridge::process_alive(p)) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{fd, POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left.count(), 60'000)));
  }
  ::close(fd);
  return !bridge::process_alive(p);
}

int cmd_down(const fs::path& run_dir, int timeout_s) {
  auto state = bridge::read_state_file(run_dir / bridge::kStateFileName);
  if (!state) return fail(kUsageError, state.error().message());
  const milliseconds timeout = std::chrono::seconds(timeout_s);
  if (bridge::process_alive(state->supervisor)) {
    std::cout << "stopping supervisor pid " << state->supervisor.pid << " (it stops every broker)\n";
    ::kill(state->supervisor.pid, SIGTERM);
    if (!wait_gone(state->supervisor, timeout)) {
      return fail(kRuntimeFailure, "supervisor pid " + std::to_string(state->supervisor.pid) + " did not exit within " +
                                       std::to_string(timeout_s) + " s");
    }
  } else {
    // No supervisor: stop what is left, children before parents.
    for (auto it = state->sites.rbegin(); it != state->sites.rend(); ++it) {
      if (!bridge::process_alive(it->process)) continue;
      std::cout << "stopping broker of '" << it->id << "' pid " << it->process.pid << '\n';
      ::kill(it->process.pid, SIGTERM);
      wait_gone(it->process, timeout);
    }
  }
  int left = 0;
  for (const bridge::SiteRecord& s : state->sites) {
    if (bridge::process_alive(s.process)) {
      ++left;
      std::cerr << "nova-bridge: broker of '" << s.id << "' (pid " << s.process.pid << ") is still running\n";
    }
  }
  if (left > 0) return kRuntimeFailure;
  std::cout << "hierarchy '" << state->name << "' stopped\n";
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nova-bridge: renders per-site Mosquitto configuration from a NovaCron topology, and runs a "
               "local hierarchy of bridged brokers."};
  app.set_version_flag("--version", std::string("nova-bridge ") + NOVA_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 ok; 1 runtime failure (a broker would not start, a link is not connected, something did "
      "not stop); 2 usage or configuration error (bad arguments, invalid topology, unknown site, no "
      "hierarchy.json in --run-dir).\nSee docs/broker-hierarchy.md.");

  RenderArgs render_args;
  auto* render = app.add_subcommand("render", "write one site's mosquitto.conf and acl (and wg-nova.conf, its WireGuard config, with links: wireguard)");
  render->add_option("topology", render_args.topology, "topology file (YAML)")->required();
  render->add_option("--site", render_args.site, "site id")->required();
  render->add_option("--out", render_args.out, "output directory")->required();
  render->add_option("--data-dir", render_args.data_dir, "broker data directory (default: --out)");
  render->add_option("--user", render_args.user, "render `user NAME` (needed when mosquitto starts as root)");
  render->add_option("--pki", render_args.pki, "PKI folder (nova-pki) for mutual TLS; required unless --insecure-plaintext");
  render->add_flag("--insecure-plaintext", render_args.insecure_plaintext,
                   "render plaintext listeners and a client-id ACL anybody can bypass (development only)");

  UpArgs up_args;
  auto* up = app.add_subcommand(
      "up",
      "start every broker (parents first), wait for every link, then supervise in the foreground. SIGTERM/SIGINT: "
      "stop all and exit 0. SIGHUP: re-read the topology and the PKI files; restart the brokers whose config or "
      "bridge certificate changed (Mosquitto does not reload bridges on SIGHUP), send SIGHUP to those whose ACL or "
      "listener certificate, key or CRL alone changed.");
  up->add_option("topology", up_args.topology, "topology file (YAML)")->required();
  up->add_option("--run-dir", up_args.run_dir, "directory for the sites' configs, data, logs and hierarchy.json")
      ->required();
  up->add_flag("--free-ports", up_args.free_ports, "give every site a free loopback port (default: only port 0)");
  up->add_option("--ready-timeout", up_args.ready_timeout_s, "seconds to wait for every link (default 60)");
  up->add_option("--pki", up_args.pki,
                 "PKI folder (default <run-dir>/pki); identities the topology needs are issued where missing");
  up->add_flag("--insecure-plaintext", up_args.insecure_plaintext,
               "plaintext brokers and a client-id ACL anybody can bypass (development only)");

  fs::path status_dir;
  auto* status = app.add_subcommand(
      "status", "print each broker (pid alive and accepting) and link (from its parent broker's retained link topic); "
                "exit 0 only if all are up and connected");
  status->add_option("--run-dir", status_dir, "the run directory of `up`")->required();

  fs::path down_dir;
  int down_timeout = 30;
  auto* down = app.add_subcommand("down", "SIGTERM the supervisor of `up` and wait (or the brokers, if it is gone)");
  down->add_option("--run-dir", down_dir, "the run directory of `up`")->required();
  down->add_option("--timeout", down_timeout, "seconds to wait (default 30)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kOk : kUsageError;
  }
  try {
    if (render->parsed()) return cmd_render(render_args);
    if (up->parsed()) return cmd_up(up_args);
    if (status->parsed()) return cmd_status(status_dir);
    if (down->parsed()) return cmd_down(down_dir, down_timeout);
  } catch (const std::exception& e) {
    return fail(kRuntimeFailure, e.what());
  }
  return kUsageError;
}
