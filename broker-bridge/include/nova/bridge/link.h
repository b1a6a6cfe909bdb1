// Reading a bridge's link state from its own broker.
//
// A site's bridge publishes "1" (connected) or "0" (not) retained on
// nova/v1/up/<site>/link on its *own* broker and on its parent's; "0" is also its will
// on the parent. The site's own broker is the one to ask: Mosquitto 2.0.11 publishes the
// local "0" before it accepts its first client after a (re)start, so a "1" restored from
// the persistence database is never visible there, whereas a parent restarted from its
// database serves whatever it saved until the child reconnects.
//
// These functions connect as kMonitorUser with a fresh clean session per call, so they
// are safe to call from any thread and from other processes (nova-bridge status). They
// speak MQTT 3.1.1 over a plain socket rather than through Paho: Paho C 1.3.12 makes a
// new connection wait up to two 1 s poll cycles of its shared receive thread whenever
// another client of the process is connected (2.1 s per read, measured).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace nova::bridge {

enum class LinkState { connected, disconnected, unknown };

std::string_view to_string(LinkState state);  // "connected", "disconnected", "unknown"

// The retained link state of `site_id` on the broker at `uri` (tcp://host:port).
// unknown when the broker cannot be reached or holds no link record. Never waits for a
// change: it subscribes, then round-trips a message on its own probe topic, so a
// retained record, if any, has been delivered once the probe comes back.
LinkState read_link_state(const std::string& uri, std::string_view site_id,
                          std::chrono::milliseconds timeout);

// Waits until the broker at `uri` reports "1" for `site_id`, reconnecting while the
// broker is down or restarting. False on timeout.
bool wait_link_connected(const std::string& uri, std::string_view site_id,
                         std::chrono::milliseconds timeout);

// The same for many sites at once, each on its own connection, in parallel.
struct LinkProbe {
  std::string uri;
  std::string site_id;
};
std::vector<LinkState> read_link_states(const std::vector<LinkProbe>& probes, std::chrono::milliseconds timeout);
std::vector<bool> wait_links_connected(const std::vector<LinkProbe>& probes, std::chrono::milliseconds timeout);

}  // namespace nova::bridge
