// Starts, watches and stops a whole local hierarchy of bridged Mosquitto brokers: the
// engine behind `nova-bridge up|status|down`, and what integration tests drive.
//
// Each site gets <run_dir>/<site id>/ with its rendered mosquitto.conf, acl,
// mosquitto.db and mosquitto.log. Brokers run as child processes (they die with this
// process). A supervisor thread restarts a broker that exits unexpectedly and reports
// the event; stop(site) holds a site down until start(site), which is how tests cut a
// link for a sustained period.
//
// Clients of these brokers must follow the rendered ACL (render.h). With TLS (pki_dir),
// each presents its certificate from the PKI folder (its CN is its identity); in insecure
// plaintext mode a node publishes anonymously with its node id as client id, and cloud
// services and tests that read upward traffic connect with username kCloudServiceUser.
//
// Threading: every broker is forked, signalled and reaped by the Hierarchy's own
// supervisor thread, which lives as long as the Hierarchy. (A broker's parent-death
// signal fires when the *thread* that forked it exits, so brokers started from a
// short-lived caller thread would die with it.) kill/stop/start_site/reload hand their
// work to that thread and return once it is done. All methods may be called from any
// thread, concurrently, and from on_event (which runs on the supervisor thread) except
// wait_link, which waits for that thread. The destructor must not race with other
// calls. topology() returns a reference that stays valid until the next reload().
//
// Restarts back off exponentially: the first restart after a broker ran for a while is
// immediate, then 250 ms, 500 ms, ... up to 15 s while it keeps failing; 10 s of
// uptime resets the back-off. Every event also goes, as one structured line (see
// format_event), to <run_dir>/hierarchy.log.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nova/bridge/link.h"  // LinkState
#include "nova/schemas/result.h"
#include "nova/tiers/topology.h"

namespace nova::bridge {

using schemas::Result;

enum class PortPolicy {
  as_configured,  // every site must have a port in the topology
  free_for_zero,  // sites with port 0 get a free loopback port
  free_for_all,   // every site gets a free loopback port (parallel tests)
};

struct HierarchyEvent {
  std::string site;
  std::string what;  // e.g. "broker exited (killed by signal Killed)"
  // Added for structured logs (`nova-bridge up` prints format_event lines):
  // broker_started, broker_exited, broker_restarted, restart_failed, broker_killed,
  // broker_stopped, config_changed, bridge_tls_changed, acl_reloaded, tls_reloaded,
  // site_removed.
  std::string kind;
  pid_t pid = -1;             // the broker's pid the event is about, -1 if none
  std::string level = "info";  // "info", "warn" or "error"
  std::chrono::system_clock::time_point time = std::chrono::system_clock::now();
};

// One line: ts=2025-11-26T21:14:03.123Z level=warn event=broker_exited site=par
// pid=4242 msg="broker exited (killed by signal Killed)"
std::string format_event(const HierarchyEvent& event);

struct HierarchyOptions {
  std::filesystem::path run_dir;
  PortPolicy ports = PortPolicy::free_for_zero;
  bool supervise = true;  // restart brokers that exit without stop()
  std::chrono::milliseconds ready_timeout{30'000};
  std::function<void(const HierarchyEvent&)> on_event;  // called from the supervisor thread
  // Passed to every site's RenderOptions: mutual TLS with this PKI folder, which must
  // hold the topology's identities and the monitor's (kMonitorIdentity, which the link
  // reads use), or else insecure_plaintext. Neither: start() fails (error path "pki_dir").
  std::filesystem::path pki_dir;
  bool insecure_plaintext = false;
  // Passed to every site's RenderOptions: Mosquitto's acl_file instead of the ACL plugin
  // (a benchmark's baseline only).
  bool mosquitto_acl_file = false;
};

// What reload() changed, by site id.
struct ReloadSummary {
  std::vector<std::string> started;    // new sites
  // mosquitto.conf changed, or the bridge's certificate, key or CA (a bridge reads them
  // only when it connects, and is not reloaded on SIGHUP): SIGTERM, then started again
  // on the same port and database (queued QoS 1 messages survive).
  std::vector<std::string> restarted;
  // Nothing that needs a restart changed, but the ACL (acl_reloaded) or the listener's
  // certificate, key, CA or CRL (tls_reloaded) did: SIGHUP, no client disconnected.
  std::vector<std::string> acl_reloaded;
  std::vector<std::string> tls_reloaded;
  std::vector<std::string> removed;    // stopped and forgotten (their directories stay)
};

// Makes or completes the PKI folder of a TLS hierarchy: every identity the topology
// needs (security::issue_topology_identities, what `nova-pki topology` runs) and the
// link monitor's (kMonitorIdentity), each issued only where missing. Returns how many
// were issued. Errors: path "topology" for a topology the PKI refuses (two identities
// with one CN), else the PKI's own (a missing CA key, a file it cannot write).
Result<std::size_t> prepare_pki(const std::filesystem::path& dir, const tiers::Topology& topology);

class Hierarchy {
 public:
  // Renders every site, starts every broker (parents first), and returns once each
  // broker accepts connections and each bridge reports "1" on its link topic.
  // A `links: wireguard` topology is refused (error path "links"): its brokers listen on
  // tunnel addresses of other hosts.
  static Result<std::unique_ptr<Hierarchy>> start(const tiers::Topology& topology,
                                                  HierarchyOptions options);
  // Stops every broker with SIGTERM (children before parents).
  ~Hierarchy();

  Hierarchy(const Hierarchy&) = delete;
  Hierarchy& operator=(const Hierarchy&) = delete;

  // The topology with the ports actually used.
  const tiers::Topology& topology() const;
  std::uint16_t port(const std::string& site) const;
  std::string uri(const std::string& site) const;  // tcp://127.0.0.1:<port>
  std::filesystem::path site_dir(const std::string& site) const;
  pid_t pid(const std::string& site) const;  // -1 while down

  // SIGKILL: a crash. With supervise, the supervisor restarts the broker.
  void kill(const std::string& site);
  // SIGTERM and hold the site down (the supervisor leaves it alone).
  void stop(const std::string& site);
  // Start a held site again, same port and data directory. Does not wait for links.
  void start_site(const std::string& site);

  // Waits until the site's bridge reports connected at its parent or a backup parent
  // (link.h: a parent restarted after SIGKILL may serve a saved "1" until the bridge is
  // back).
  bool wait_link(const std::string& site, std::chrono::milliseconds timeout) const;
  // Each non-root site's link state, read from the retained link topic at its parent and
  // backup parents (connected if any says "1").
  std::map<std::string, LinkState> link_states() const;

  // Writes <run_dir>/hierarchy.json: sites, ports, pids, run_dir; used by
  // `nova-bridge status` and `nova-bridge down` from another process. Once called, the
  // file is kept current: the supervisor rewrites it after every start, exit and stop.
  void write_state_file() const;

  // Added for `nova-bridge up` on SIGHUP: adopts a changed topology and rotated PKI
  // files (certificate rotation: docs/security.md). Mosquitto does not reload bridges on
  // SIGHUP, so every broker whose rendered mosquitto.conf or bridge files
  // (site_tls_files) changed is restarted (parents first); one whose ACL or listener
  // files alone changed gets SIGHUP; new sites are started and removed ones stopped.
  // Sites keep their ports unless the topology names a different non-zero port (and the
  // policy is not free_for_all). Does not wait for links. Refuses a `links: wireguard`
  // topology as start() does, changing nothing.
  Result<ReloadSummary> reload(const tiers::Topology& topology);

 private:
  struct Impl;
  explicit Hierarchy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nova::bridge
