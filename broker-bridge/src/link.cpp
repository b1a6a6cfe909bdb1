#include "nova/bridge/link.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <mutex>

#include "mqtt_probe.h"
#include "nova/bridge/broker_process.h"
#include "nova/bridge/render.h"
#include "nova/security/layout.h"

namespace nova::bridge {
namespace {

using Clock = std::chrono::steady_clock;
using detail::MqttProbe;
using std::chrono::milliseconds;

std::string unique_client_id() {
  static std::atomic<unsigned> counter{0};
  return "nova-monitor-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

milliseconds left_until(Clock::time_point deadline) {
  return std::max(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()), milliseconds(0));
}

LinkState parse(const std::string& payload) {
  if (payload == "1") return LinkState::connected;
  if (payload == "0") return LinkState::disconnected;
  return LinkState::unknown;
}

// A site's state from two of its parents: the bridge is connected to at most one.
LinkState either(LinkState a, LinkState b) {
  if (a == LinkState::connected || b == LinkState::connected) return LinkState::connected;
  if (a == LinkState::disconnected || b == LinkState::disconnected) return LinkState::disconnected;
  return LinkState::unknown;
}

detail::ProbeTls probe_tls(const MonitorTls& tls) { return {tls.ca_file, tls.cert_file, tls.key_file}; }

// One TLS monitor connection per broker at a time in this process: the broker makes the
// certificate's CN the client id, so a second connection would close the first.
std::unique_lock<std::mutex> turn_at(const std::string& uri, const MonitorTls& tls) {
  if (!tls.enabled()) return {};
  static std::mutex registry_mu;
  static std::map<std::string, std::unique_ptr<std::mutex>> per_broker;
  std::mutex* mu = nullptr;
  {
    std::lock_guard lock(registry_mu);
    auto& slot = per_broker[uri];
    if (!slot) slot = std::make_unique<std::mutex>();
    mu = slot.get();
  }
  return std::unique_lock<std::mutex>(*mu);
}

}  // namespace

MonitorTls monitor_tls_in(const std::filesystem::path& pki_dir) {
  if (pki_dir.empty()) return {};
  const security::Layout pki(std::filesystem::absolute(pki_dir));
  return {pki.trust_ca(), pki.identity_cert(kMonitorIdentity), pki.identity_key(kMonitorIdentity)};
}

std::string_view to_string(LinkState state) {
  switch (state) {
    case LinkState::connected: return "connected";
    case LinkState::disconnected: return "disconnected";
    case LinkState::unknown: break;
  }
  return "unknown";
}

LinkState read_link_state(const std::string& uri, std::string_view site_id, milliseconds timeout,
                          const MonitorTls& tls) {
  const auto deadline = Clock::now() + timeout;
  const std::string topic = link_topic(site_id);
  const std::string id = unique_client_id();
  // The ACL's probe grant is per username: the client id in plaintext, the CN with TLS.
  const std::string probe = "nova-bridge/probe/" + (tls.enabled() ? std::string(kMonitorIdentity) : id);
  const auto turn = turn_at(uri, tls);
  MqttProbe client;
  if (!client.connect(uri, id, kMonitorUser, deadline, probe_tls(tls)) || !client.subscribe({topic, probe}, deadline) ||
      !client.publish(probe, "probe", deadline)) {
    return LinkState::unknown;
  }
  // Mosquitto queues a subscription's retained message while handling the SUBSCRIBE,
  // before our later PUBLISH, and delivers one client's messages in order.
  LinkState state = LinkState::unknown;
  while (auto message = client.next(deadline)) {
    if (message->topic == probe) return state;
    if (message->topic == topic) state = parse(message->payload);
  }
  return LinkState::unknown;
}

bool wait_link_connected(const std::string& uri, std::string_view site_id, milliseconds timeout,
                         const MonitorTls& tls) {
  const auto deadline = Clock::now() + timeout;
  const std::string topic = link_topic(site_id);
  milliseconds backoff(10);
  if (tls.enabled()) {
    while (Clock::now() < deadline) {
      if (read_link_state(uri, site_id, std::max(left_until(deadline), milliseconds(1)), tls) == LinkState::connected) {
        return true;
      }
      wait_readable({}, std::min(backoff, left_until(deadline)));
      backoff = std::min(backoff * 2, milliseconds(250));
    }
    return false;
  }
  while (Clock::now() < deadline) {
    MqttProbe client;
    if (client.connect(uri, unique_client_id(), kMonitorUser, deadline) && client.subscribe({topic}, deadline)) {
      backoff = milliseconds(10);
      // Retained and live notifications alike; nullopt: the broker went away, or timeout.
      while (auto message = client.next(deadline)) {
        if (message->topic == topic && parse(message->payload) == LinkState::connected) return true;
      }
    } else {
      // The broker is down or restarting: nothing to be notified by, so retry with a
      // bounded back-off.
      wait_readable({}, std::min(backoff, left_until(deadline)));
      backoff = std::min(backoff * 2, milliseconds(250));
    }
  }
  return false;
}

std::vector<LinkState> read_link_states(const std::vector<LinkProbe>& probes, milliseconds timeout) {
  std::vector<std::vector<std::future<LinkState>>> pending(probes.size());
  for (std::size_t i = 0; i < probes.size(); ++i) {
    for (const std::string& uri : probes[i].parent_uris) {
      pending[i].push_back(std::async(std::launch::async, [uri, site = probes[i].site_id, tls = probes[i].tls, timeout] {
        return read_link_state(uri, site, timeout, tls);
      }));
    }
  }
  std::vector<LinkState> out;
  for (auto& per_site : pending) {
    LinkState combined = LinkState::unknown;
    for (auto& f : per_site) combined = either(combined, f.get());
    out.push_back(combined);
  }
  return out;
}

bool wait_link_connected(const LinkProbe& probe, milliseconds timeout) {
  // One parent gets the whole time; with backups, each parent in turn for a bounded
  // slice (a bridge on a backup reports there, and a retained "1" shows at once).
  if (probe.parent_uris.size() == 1) {
    return wait_link_connected(probe.parent_uris.front(), probe.site_id, timeout, probe.tls);
  }
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    for (const std::string& uri : probe.parent_uris) {
      if (wait_link_connected(uri, probe.site_id, std::min(milliseconds(300), left_until(deadline)), probe.tls)) {
        return true;
      }
    }
  }
  return false;
}

std::vector<bool> wait_links_connected(const std::vector<LinkProbe>& probes, milliseconds timeout) {
  std::vector<std::future<bool>> pending;
  for (const LinkProbe& p : probes) {
    pending.push_back(std::async(std::launch::async, [p, timeout] { return wait_link_connected(p, timeout); }));
  }
  std::vector<bool> out;
  for (auto& f : pending) out.push_back(f.get());
  return out;
}

}  // namespace nova::bridge
