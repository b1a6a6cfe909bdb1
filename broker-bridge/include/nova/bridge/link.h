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
// These functions connect as kMonitorUser (plaintext) or with kMonitorIdentity's
// certificate (MonitorTls) with a fresh clean session per call, so they are safe to call
// from any thread and from other processes (nova-bridge status; see MonitorTls for the
// one-connection-per-identity rule under TLS). They speak MQTT 3.1.1 over a socket of
// their own (OpenSSL for TLS) rather than through Paho: Paho C 1.3.12 makes a
// new connection wait up to two 1 s poll cycles of its shared receive thread whenever
// another client of the process is connected (2.1 s per read, measured).
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace nova::bridge {

enum class LinkState { connected, disconnected, unknown };

// The monitor's client certificate for brokers rendered with TLS (render.h): the CA,
// the certificate chain and the key of kMonitorIdentity. Empty: plaintext, as
// kMonitorUser. Mosquitto makes the CN the client id (use_username_as_clientid), so this
// process opens one connection per broker at a time (others wait their turn), and another
// process using the same certificate at the same moment may close one of ours: a read
// then says unknown, and a wait retries.
struct MonitorTls {
  std::filesystem::path ca_file;
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
  bool enabled() const { return !ca_file.empty(); }
};

// The monitor's files in a PKI folder (nova/security/layout.h); empty dir: plaintext.
MonitorTls monitor_tls_in(const std::filesystem::path& pki_dir);

std::string_view to_string(LinkState state);  // "connected", "disconnected", "unknown"

// The retained link state of `site_id` on the broker at `uri` (tcp://host:port).
// unknown when the broker cannot be reached or holds no link record. Never waits for a
// change: it subscribes, then round-trips a message on its own probe topic, so a
// retained record, if any, has been delivered once the probe comes back.
LinkState read_link_state(const std::string& uri, std::string_view site_id,
                          std::chrono::milliseconds timeout, const MonitorTls& tls = {});

// Waits until the broker at `uri` reports "1" for `site_id`, reconnecting while the
// broker is down or restarting. False on timeout.
// With TLS it re-reads the retained record with a bounded back-off instead of holding a
// connection open, since that connection would keep other reads of this broker waiting.
bool wait_link_connected(const std::string& uri, std::string_view site_id,
                         std::chrono::milliseconds timeout, const MonitorTls& tls = {});

// Where to read one site's link: the brokers it bridges to (parent first, then backups).
// It reads connected if any of them says "1" (the bridge is on one of them), else
// disconnected if any says "0", else unknown.
struct LinkProbe {
  std::vector<std::string> parent_uris;
  std::string site_id;
  MonitorTls tls;
};
// Waits until one of the probe's parents reports "1".
bool wait_link_connected(const LinkProbe& probe, std::chrono::milliseconds timeout);
// Many sites at once, each broker on its own connection, in parallel.
std::vector<LinkState> read_link_states(const std::vector<LinkProbe>& probes, std::chrono::milliseconds timeout);
std::vector<bool> wait_links_connected(const std::vector<LinkProbe>& probes, std::chrono::milliseconds timeout);

}  // namespace nova::bridge
