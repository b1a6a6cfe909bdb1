// Starting a private nova::bridge::Hierarchy for one test or benchmark: a fresh run
// directory, free loopback ports for every site, and a thread-safe record of the
// supervisor's events that can be awaited. Header-only (shared with the benchmark).
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

// A running hierarchy with its run directory and event record. Members are destroyed in
// reverse order: the hierarchy (brokers stopped) before the directory is removed.
struct RunningHierarchy {
  explicit RunningHierarchy(const std::string& prefix) : dir(prefix) {}

  RunDir dir;
  std::shared_ptr<EventLog> events = std::make_shared<EventLog>();
  std::unique_ptr<bridge::Hierarchy> hierarchy;

  bridge::Hierarchy& operator*() { return *hierarchy; }
  bridge::Hierarchy* operator->() { return hierarchy.get(); }

  // The PKI folder of a TLS hierarchy (start_hierarchy with tls): nova/security/layout.h
  // names each identity's files in it.
  std::filesystem::path pki_dir() const { return dir.path() / "pki"; }
  // A site broker's URI for a TLS client (the TLS listener is the site's one port).
  std::string tls_uri(const std::string& site) const {
    const std::string plain = hierarchy->uri(site);  // tcp://127.0.0.1:<port>
    return "mqtts://" + plain.substr(plain.find("://") + 3);
  }

  // Every site's log file, or "" if the site wrote none.
  std::string log_of(const std::string& site) const {
    std::ifstream in(hierarchy->site_dir(site) / "mosquitto.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
};

// With `tls`, the hierarchy runs with mutual TLS and a PKI made in <run dir>/pki
// (bridge::prepare_pki); clients then need certificates (pki_dir()). Without it, the
// explicit insecure plaintext mode: the tests' Paho clients are not converted to TLS yet.
inline std::unique_ptr<RunningHierarchy> start_hierarchy(const tiers::Topology& topology,
                                                         const std::string& prefix, bool tls = false) {
  auto running = std::make_unique<RunningHierarchy>(prefix);
  bridge::HierarchyOptions options;
  options.run_dir = running->dir.path();
  options.ports = bridge::PortPolicy::free_for_all;
  options.supervise = true;
  options.insecure_plaintext = !tls;
  if (tls) {
    options.pki_dir = running->pki_dir();
    if (auto made = bridge::prepare_pki(options.pki_dir, topology); !made) {
      throw std::runtime_error("prepare_pki: " + made.error().message());
    }
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
