// Reading a bridge's link state.
//
// A site's bridge publishes "1" (connected) or "0" (not) retained on
// nova/v1/up/<site>/link on its own broker and on the parent it is connected to; "0" is
// also its will there. The parent's copy is the one everybody above reads (the parent's
// bridge carries it up to the cloud), so that is where these functions look: a site's
// link is read from the brokers it bridges to, its parent and then its backups.
// Its own broker's copy is not readable by later subscribers: every broker runs with
// check_retain_source, and the ACL does not let the bridge's own identity write its link
// topic, so that retained copy is never re-sent (to the bridge, which would carry a stale
// "0" upward after the fresh "1" on every reconnect, or to anyone else).
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

// Where to read one site's link: the brokers it bridges to (parent first, then backups).
// It reads connected if any of them says "1" (the bridge is on one of them), else
// disconnected if any says "0", else unknown.
struct LinkProbe {
  std::vector<std::string> parent_uris;
  std::string site_id;
};
// Waits until one of the probe's parents reports "1".
bool wait_link_connected(const LinkProbe& probe, std::chrono::milliseconds timeout);
// Many sites at once, each broker on its own connection, in parallel.
std::vector<LinkState> read_link_states(const std::vector<LinkProbe>& probes, std::chrono::milliseconds timeout);
std::vector<bool> wait_links_connected(const std::vector<LinkProbe>& probes, std::chrono::milliseconds timeout);

}  // namespace nova::bridge
