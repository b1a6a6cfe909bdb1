// Starting a private nova::bridge::Hierarchy for one test or benchmark: a fresh run
// directory, free loopback ports for every site, mutual TLS with a PKI of its own
// (unless plaintext is asked for by name), and a thread-safe record of the supervisor's
// events that can be awaited. Header-only (shared with the benchmark).
#pragma once

#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nova/bridge/hierarchy.h"
#include "nova/bridge/render.h"
#include "nova/security/layout.h"
#include "nova/security/pki.h"
#include "nova/testing/test_pki.h"
#include "nova/testing/transport.h"
#include "nova/tiers/topology.h"

namespace nova::hiertest {

// A fresh directory under $TMPDIR (else /tmp), removed on destruction unless
// NOVA_KEEP_TEST_DIRS is set (then its path is printed).
class RunDir {
 public:
  explicit RunDir(const std::string& prefix = "nova-hier") {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        (std::filesystem::path(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") /
         (prefix + "-XXXXXX"))
            .string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~RunDir() {
    if (std::getenv("NOVA_KEEP_TEST_DIRS") != nullptr) {
      std::cerr << "kept run directory " << path_ << '\n';
      return;
    }
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The supervisor's events, in order.
class EventLog {
 public:
  void add(const bridge::HierarchyEvent& event) {
    std::lock_guard lock(mutex_);
    events_.push_back(event);
    changed_.notify_all();
  }
  std::vector<bridge::HierarchyEvent> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return events_.size();
  }
  // Waits for an event of `site` of `kind` (e.g. "broker_restarted"), at index >= from.
  bool wait_for(const std::string& site, std::string_view kind, std::size_t from,
                std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
      for (std::size_t i = from; i < events_.size(); ++i) {
        if (events_[i].site == site && events_[i].kind == kind) return true;
      }
      return false;
    });
  }
  std::string text() const {
    std::lock_guard lock(mutex_);
    std::ostringstream out;
    for (const auto& event : events_) out << bridge::format_event(event) << '\n';
    return out.str();
  }

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::vector<bridge::HierarchyEvent> events_;
};

inline tiers::Topology load_topology(const std::filesystem::path& file) {
  auto topology = tiers::Topology::load(file);
  if (!topology.ok()) {
    throw std::runtime_error(file.string() + ": " + topology.error().message());
  }
  return std::move(topology).value();
}

// The smallest hierarchy with a device: the cloud's broker and one access site a1 below
// it, with the gateway gw-a1 (the privacy and erasure tests).
inline tiers::Topology gateway_topology(const std::string& name) {
  auto topology = tiers::Topology::parse_yaml("name: " + name + R"(
sites:
  - {id: cloud, level: 1, port: 18830}
  - {id: a1, level: 2, parent: cloud, port: 18831}
nodes:
  - {id: gw-a1, site: a1}
)");
  if (!topology.ok()) throw std::runtime_error("gateway_topology: " + topology.error().message());
  return std::move(topology).value();
}

// How the hierarchy's brokers listen and bridge, and how its clients connect: the
// harness's one Transport (mutual_tls is nova-bridge's default).
using testing::Transport;

// The CN of operator `name`: under TLS the ACL lets it read nova/v1/up/# at every
// broker and nothing else (docs/broker-hierarchy.md, "The ACL").
inline std::string operator_identity(const std::string& name) { return bridge::kOperatorPrefix + name; }

// Issues operator.<name> for each name not yet in the PKI folder `pki_dir`; a render
// after this grants each its read of nova/v1/up/#.
inline void enrol_operators(const std::filesystem::path& pki_dir, const std::vector<std::string>& names) {
  if (names.empty()) return;
  auto opened = security::Pki::open(pki_dir);
  if (!opened) throw std::runtime_error("Pki::open: " + opened.error().message());
  security::Pki pki = std::move(opened).value();
  for (const std::string& name : names) {
    if (pki.has_identity(operator_identity(name))) continue;
    security::IssueRequest request;
    request.role = security::Role::operator_;
    request.name = name;
    request.region = "cloud";
    if (auto issued = pki.issue(request); !issued) {
      throw std::runtime_error("issuing operator '" + name + "': " + issued.error().message());
    }
  }
}

// Issues sensor.<node>.<sensor> for each "<node>.<sensor>" of `names` not yet in the PKI
// folder `pki_dir`; a render after this lets each write its own sensor topic at its
// node's site (docs/broker-hierarchy.md, "The ACL").
inline void enrol_sensors(const std::filesystem::path& pki_dir, const std::vector<std::string>& names) {
  if (names.empty()) return;
  auto opened = security::Pki::open(pki_dir);
  if (!opened) throw std::runtime_error("Pki::open: " + opened.error().message());
  security::Pki pki = std::move(opened).value();
  for (const std::string& name : names) {
    if (pki.has_identity("sensor." + name)) continue;
    security::IssueRequest request;
    request.role = security::Role::sensor;
    request.name = name;
    request.region = "cloud";
    if (auto issued = pki.issue(request); !issued) {
      throw std::runtime_error("issuing sensor '" + name + "': " + issued.error().message());
    }
  }
}

// A running hierarchy with its run directory and event record. Members are destroyed in
// reverse order: the hierarchy (brokers stopped) before the directory is removed.
struct RunningHierarchy {
  RunningHierarchy(const std::string& prefix, Transport how) : dir(prefix), transport(how) {}

  RunDir dir;
  Transport transport;
  std::shared_ptr<EventLog> events = std::make_shared<EventLog>();
  std::unique_ptr<bridge::Hierarchy> hierarchy;

  bridge::Hierarchy& operator*() { return *hierarchy; }
  bridge::Hierarchy* operator->() { return hierarchy.get(); }

  // The PKI folder of a mutual TLS hierarchy: nova/security/layout.h names each
  // identity's files in it.
  std::filesystem::path pki_dir() const { return dir.path() / "pki"; }
  // The files of identity `cn` in that PKI (a node id, nova-cloud, or an enrolled
  // operator's operator_identity), for a client of mqtts:// URIs (tls_uri).
  testing::TlsIdentity identity(const std::string& cn) const {
    const security::Layout pki(pki_dir());
    return {pki.trust_ca(), pki.identity_cert(cn), pki.identity_key(cn)};
  }
  // The mqtt section's TLS keys for an agent of identity `cn` (testing::write_agent_config's
  // mqtt_extra): ", tls_ca_file: ..., tls_cert_file: ..., tls_key_file: ...".
  std::string agent_tls_keys(const std::string& cn) const {
    const testing::TlsIdentity id = identity(cn);
    return ", tls_ca_file: " + id.ca.string() + ", tls_cert_file: " + id.cert.string() +
           ", tls_key_file: " + id.key.string();
  }
  // A site broker's URI for a TLS client (the TLS listener is the site's one port).
  std::string tls_uri(const std::string& site) const {
    const std::string plain = hierarchy->uri(site);  // tcp://127.0.0.1:<port>
    return "mqtts://" + plain.substr(plain.find("://") + 3);
  }
  // A site broker's URI for a client of this hierarchy's transport.
  std::string client_uri(const std::string& site) const {
    return transport == Transport::mutual_tls ? tls_uri(site) : hierarchy->uri(site);
  }

  // The link monitor's certificate for nova::bridge::read_link_state and
  // wait_link_connected (link.h); empty (plaintext) in the insecure mode.
  bridge::MonitorTls monitor_tls() const {
    return transport == Transport::mutual_tls ? bridge::monitor_tls_in(pki_dir()) : bridge::MonitorTls{};
  }

  // The connection arguments of mosquitto_sub/mosquitto_pub as `identity` at `site`'s
  // broker (the same identities as mqtt_support.h's endpoint()): its certificate under
  // mutual TLS; in the plaintext mode anonymous for a node, else the cloud service user.
  std::string mosquitto_client_args(const std::string& site, const std::string& identity) const {
    std::string args = "-h 127.0.0.1 -p " + std::to_string(hierarchy->port(site));
    if (transport == Transport::mutual_tls) {
      const security::Layout pki(pki_dir());
      return args + " --cafile '" + pki.trust_ca().string() + "' --cert '" + pki.identity_cert(identity).string() +
             "' --key '" + pki.identity_key(identity).string() + "'";
    }
    if (hierarchy->topology().find_node(identity) != nullptr) return args + " -i '" + identity + "'";
    return args + " -u " + bridge::kCloudServiceUser;
  }

  // Every site's log file, or "" if the site wrote none.
  std::string log_of(const std::string& site) const {
    std::ifstream in(hierarchy->site_dir(site) / "mosquitto.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
};

// Starts `topology` with free loopback ports and supervision. With mutual TLS (what
// nova-bridge renders by default) it first makes the PKI in <run dir>/pki
// (bridge::prepare_pki: every identity of the topology, nova-cloud and the link monitor)
// and enrols `operators` there as operator.<name>, so the rendered ACLs let each of them
// read nova/v1/up/# at every broker, and `sensors` ("<node>.<sensor>") as
// sensor.<node>.<sensor>, each allowed to write its reading topic. `mosquitto_acl_file`: the
// brokers use Mosquitto's acl_file instead of the ACL plugin (the benchmark's baseline). Plaintext is the explicit insecure mode, kept for
// the benchmark's named TLS/plaintext comparison and for tests not converted yet.
inline std::unique_ptr<RunningHierarchy> start_hierarchy(const tiers::Topology& topology,
                                                         const std::string& prefix,
                                                         Transport transport = Transport::mutual_tls,
                                                         const std::vector<std::string>& operators = {},
                                                         const std::vector<std::string>& sensors = {},
                                                         bool mosquitto_acl_file = false) {
  auto running = std::make_unique<RunningHierarchy>(prefix, transport);
  bridge::HierarchyOptions options;
  options.run_dir = running->dir.path();
  options.ports = bridge::PortPolicy::free_for_all;
  options.supervise = true;
  options.insecure_plaintext = transport == Transport::insecure_plaintext;
  options.mosquitto_acl_file = mosquitto_acl_file;
  if (transport == Transport::mutual_tls) {
    options.pki_dir = running->pki_dir();
    if (auto made = bridge::prepare_pki(options.pki_dir, topology); !made) {
      throw std::runtime_error("prepare_pki: " + made.error().message());
    }
    enrol_operators(options.pki_dir, operators);
    enrol_sensors(options.pki_dir, sensors);
  }
  options.on_event = [events = running->events](const bridge::HierarchyEvent& event) {
    events->add(event);
  };
  auto started = bridge::Hierarchy::start(topology, std::move(options));
  if (!started.ok()) {
    throw std::runtime_error("Hierarchy::start: " + started.error().message());
  }
  running->hierarchy = std::move(started).value();
  return running;
}

}  // namespace nova::hiertest
