// Renders one site's Mosquitto configuration from the topology.
//
// The output handles each Mosquitto 2.0.11 pitfall of docs/broker-hierarchy.md with a
// setting: persistence with a short autosave (the default is 1800 s); max_queued_messages/
// bytes sized per tier (they are global, cap every client's queue including the bridge's,
// and the default of 1000 drops the excess with only a log line); an MQTT 3.1.1 bridge
// (a v5 bridge does not keep its remote session) with cleansession false and
// local_cleansession false (a site with backup parents may then receive a downward
// message twice, never zero times: docs/broker-hierarchy.md, Failover), the parent's address followed by the backups' addresses, and a two-value
// restart_timeout (the one-value form is ignored); QoS 1 on every topic map (the default
// is 0, and QoS 0 is dropped while a link is down); "up" mapped out only, "down" mapped
// in only and restricted to down_routes() (the default direction is out, and "both"
// would loop); resident data (nova/tiers/residency.h) mapped out only, as
// nova/v1/resident/<region>/#, and only on a bridge whose site and parent are both in
// that region, so it stops at the region's top site; bridge state notifications on
// nova/v1/up/<site>/link; and
// check_retain_source true (2.0.11's code defaults to false), which with the ACL below
// keeps the bridge's own retained link record from being re-sent upward, stale, after
// the fresh "1" of each reconnect.
//
// With `links: wireguard` in the topology (wireguard.h), every bridge dials its parents'
// tunnel addresses instead of their listener addresses, and a site that other sites
// bridge to has a second listener, same port and same TLS, on its tunnel address: the
// bridges below reach it only through the tunnel, while its own listener address
// (which the topology then refuses to be a wildcard) stays for local clients.
//
// Two modes (RenderOptions): mutual TLS (the default, needs a PKI folder, layout.h) and
// an explicit insecure plaintext mode kept for development, which the config says in a
// comment at its top.
//
// Mutual TLS: every listener has cafile trust/ca.pem, the site's broker certificate and
// key, crlfile trust/crl.pem, require_certificate, use_identity_as_username (the
// certificate's CN is the MQTT username, whatever the client sends), tls_version tlsv1.2
// (2.0.11 treats it as the minimum: TLS 1.3 is accepted, 1.1 refused), allow_anonymous
// false, and use_username_as_clientid (the client id is the CN too, so nobody can claim a
// bridge's or a node's client id and take over its session: one connection per
// identity). The bridge presents bridge.<site>'s certificate and checks the parent's
// (bridge_insecure false; the parent's certificate names 127.0.0.1/localhost/its id).
//
// The ACL is enforced by the nova_acl Mosquitto plugin (broker-bridge/acl-plugin), rendered
// as `plugin <acl_plugin>` and `plugin_opt_acl_file <acl>` in both modes, not by
// Mosquitto's acl_file: the file keeps acl_file's format and semantics (nova/acl/rules.h),
// and the plugin logs each denial at warning (client id, username, access, topic, reason)
// and counts it on $SYS/broker/nova/acl/denied/<read|write|subscribe>, retained. A
// subscription that no read grant overlaps is refused (acl_file granted it). Rendered
// `plugin_opt_log_file` names the broker's log_dest file, from which the plugin counts
// refused TLS handshakes on $SYS/broker/nova/tls/refused/<reason> (nova/acl/tls_refusals.h).
//
// The identity ACL (TLS mode), verified against a real broker by
// tests/broker-bridge-unit/tls_acl_test.cpp. Usernames are certificate CNs, never
// client ids: no %c anywhere. A `topic deny` line refuses reading and writing its topic
// whatever the section's other lines grant (rendered first, before the grants).
//   - node N of this site: write nova/v1/up/N/# except nova/v1/up/N/link; read
//     nova/v1/down/<site path>/N/#; read nova/v1/sensor/N/+ (its sensors' readings) and
//     write nova/v1/sensor/N/+/error (the replies); in a region R, write
//     nova/v1/resident/R/N/# (its resident data, under its own id and its site's region).
//   - sensor.N.S (a sensor certificate found in the PKI folder, for a node of this site):
//     write nova/v1/sensor/N/S, read nova/v1/sensor/N/S/error.
//   - bridge.<child> of every child and of every site naming this one as a backup parent:
//     write nova/v1/up/<id>/# for each site it carries (link_carriers(): its subtree and
//     the subtrees that fail over into it) and each node of those sites, and
//     nova/v1/up/nova-cloud/# (the probes of a nova-cloud below); read the child's
//     down_routes(); when the child and this site are in one region R, write
//     nova/v1/resident/R/# too.
//   - bridge.<this site>: write this site's down_routes() (check_retain_source, below).
//   - nova-cloud: read nova/v1/up/#, and write nova/v1/up/nova-cloud/# (the probes of
//     cloud/subscriptions.h publish there, nova/v1/up/nova-cloud/link included: a denied
//     publish disconnects, and nova-cloud probes its link subscription; no site can be
//     named nova-cloud, as its broker certificate would need that CN); read and write
//     nova/v1/down/# and nova/v1/cloud/#, read $SYS/#. Only it writes down. At a site
//     of region R it may read nova/v1/resident/R/# (the regional role's store) and
//     write nova/v1/resident/R/probe/nova-cloud (its subscription probe).
//   - operator.nova-monitor (kMonitorIdentity): read nova/v1/up/+/link and the denial
//     and TLS refusal counters; every identity may read and write its own probe topic
//     nova-bridge/probe/<CN>.
//   - every other operator.<name> certificate found in the PKI folder: read
//     nova/v1/up/# (births, metrics, results, links) and nova/v1/resident/#, at every
//     site (a broker outside a region has no resident data of it to show). Nothing
//     downward, nothing written: an operator watches; nova-cloud alone acts.
//   What remains: a child's bridge may write the up topics of any node or site it
//   carries, since Mosquitto cannot tell what it forwards from what it makes up; the
//   access broker's ACL is what binds a node's up topics to its certificate.
//
// The plaintext ACL (insecure mode), unchanged from before TLS:
//   - `topic` lines before the first `user` line apply to anonymous clients only, the
//     `topic` lines after a `user` line to that user only, and `pattern` lines to every
//     client. %c is the client id.
//   - Anonymous clients (nodes, sensors; client id = node id) may write
//     nova/v1/up/<own client id>/# (and nova/v1/resident/<region>/<own client id>/# in a
//     region), read nova/v1/down/#, read and write nova/v1/sensor/#.
//   - bridge_username(child) of every child and of every site that names this one as a
//     backup parent: write nova/v1/up/# (and the region's resident data when both are in
//     one region), read the child's down_routes().
//   - bridge_username(this site): write this site's down_routes(). Never used to
//     publish (a bridge bypasses its own broker's ACL); check_retain_source checks it
//     before re-sending a retained record the bridge brought in. It has no grant on the
//     site's link topic, so that record is never re-sent (to anyone).
//   - kCloudServiceUser: read and write nova/v1/# (and read $SYS/#).
//   - kMonitorUser: read nova/v1/up/+/link and the denial and TLS refusal counters.
//   - There are no passwords: the usernames are labels anybody may claim.
// In both modes: a denied publish is never delivered and the broker then closes the
// publisher's connection (a QoS 1 publisher gets its PUBACK first), after the plugin's
// warning line. Bridges bypass the ACL of their own (local) broker.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "nova/schemas/result.h"
#include "nova/tiers/topology.h"

namespace nova::bridge {

using schemas::Result;
using schemas::Status;

struct RenderOptions {
  // Where the broker keeps mosquitto.db and writes mosquitto.log. Rendered as absolute
  // paths. Default: the output directory.
  std::filesystem::path data_dir;
  // Added for supervisors running as root: rendered as `user <name>`. Mosquitto started
  // as root otherwise switches to user "mosquitto", which cannot write a root-owned data
  // directory: the log stays empty and every autosave fails while the broker keeps
  // running. Empty: no `user` line (Mosquitto's default).
  std::string user;
  // Added so write_site can name the ACL it writes; render() uses it for
  // `plugin_opt_acl_file`.
  // Default: <data_dir>/acl.
  std::filesystem::path acl_file;
  // The PKI folder (nova/security/layout.h) whose files the TLS listener and bridge
  // name, rendered as absolute paths. Required unless insecure_plaintext.
  std::filesystem::path pki_dir;
  // Renders the old plaintext listener and client-id ACL, with a warning comment at the
  // top of both files: anybody who can reach the port can claim any identity. For
  // development only; nova-bridge spells it --insecure-plaintext.
  bool insecure_plaintext = false;
  // The nova_acl Mosquitto plugin (broker-bridge/acl-plugin) that enforces the ACL,
  // rendered as `plugin` with `plugin_opt_acl_file` naming the ACL file. Empty:
  // find_acl_plugin(). write_site refuses a path with no file (error path "acl_plugin").
  std::filesystem::path acl_plugin;
  // Renders Mosquitto's own `acl_file` instead of the plugin, with the same file: no
  // denial is logged above debug or counted, and every subscription is granted. Kept
  // only to measure what the plugin costs (hierarchy_bench --acl-cost).
  bool mosquitto_acl_file = false;
};

struct RenderedSite {
  std::string mosquitto_conf;
  std::string acl;
};

// Precondition: `site` belongs to `topology`, and every site it bridges to (parent,
// backups) has a non-zero port; in TLS mode, pki_dir names the PKI (write_site checks
// its files; render() only writes the paths).
RenderedSite render(const tiers::Topology& topology, const tiers::Site& site,
                    const RenderOptions& options);

// Renders and writes <out_dir>/mosquitto.conf and <out_dir>/acl (creating out_dir and
// the data directory), and with `links: wireguard` <out_dir>/wg-nova.conf
// (write_wireguard: the keys live in pki_dir, which is then required even when
// insecure_plaintext). The config refers to the ACL file by absolute path. Fails on a
// path Mosquitto's config cannot express (a line break), a missing parent port, no ACL
// plugin file (error path "acl_plugin", naming the path), or (TLS mode) no pki_dir or a
// missing certificate or key of this site (error path "pki_dir", naming the file).
Status write_site(const tiers::Topology& topology, const tiers::Site& site,
                  const std::filesystem::path& out_dir, RenderOptions options = {});

// The PKI files a TLS site's broker reads, by when Mosquitto 2.0.11 reads them (its
// source at v2.0.11: src/loop.c, src/security_default.c, lib/net_mosq.c; measured by
// tests/broker-bridge/rotation_test.cpp):
// - `listener`: CA, CRL, the site's certificate and key, read at start and again on
//   SIGHUP. For a listener with crlfile and require_certificate, as rendered here, the
//   SIGHUP makes a whole new TLS context from all four, used by new connections;
//   connected clients keep theirs.
// - `bridge`: CA, the bridge's certificate and key, read each time the bridge connects.
//   SIGHUP never makes a running bridge reconnect, so a change reaches it by a restart.
// A root has no bridge files. Paths are absolute.
struct SiteTlsFiles {
  std::vector<std::filesystem::path> listener;
  std::vector<std::filesystem::path> bridge;
};
SiteTlsFiles site_tls_files(const std::filesystem::path& pki_dir, const tiers::Site& site);

// Where the ACL plugin is when RenderOptions::acl_plugin is empty: the file the
// environment variable NOVA_ACL_PLUGIN names, if set; else
// <the running program's directory>/../lib/nova/nova_acl.so, which is where both the
// install tree (/usr/bin/nova-bridge, /usr/lib/nova/nova_acl.so) and the build tree
// (<build>/broker-bridge/nova-bridge, <build>/lib/nova/nova_acl.so) keep it.
std::filesystem::path find_acl_plugin();

// The retained topic on which a site's bridge reports its link to the parent:
// "1" connected, "0" not (Mosquitto's notification payloads).
std::string link_topic(const tiers::Site& site);
// Added: the same from a bare site id (nova-bridge status reads ids from hierarchy.json).
std::string link_topic(std::string_view site_id);

// The down topic filters a site's bridge maps in (and its parents' ACLs let it read):
// its own subtree, nova/v1/down/<path>/#, then the subtree of every site outside it that
// names a site in it as a backup parent, so that a site which failed over to a backup
// still receives its downward traffic. A subtree inside one already listed is left out.
std::vector<std::string> down_routes(const tiers::Topology& topology, const tiers::Site& site);

// The MQTT username a site's bridge presents to its parent (and backup parents); the
// parent's ACL grants that user write on the up topics it carries (TLS mode; nova/v1/up/#
// in plaintext mode) and read on its down_routes() only. Also its client id there, so the prefix "bridge." is
// reserved: a node using such a client id would take over the bridge's session.
std::string bridge_username(const tiers::Site& site);

// The MQTT username of cloud services (nova-cloud, operators): read and write nova/v1/#.
inline constexpr const char* kCloudServiceUser = "nova-cloud";

// The certificate CN of the link monitor in TLS mode: the operator identity
// "nova-monitor" (nova-bridge up issues it next to the topology's identities).
inline constexpr const char* kMonitorOperatorName = "nova-monitor";
inline constexpr const char* kMonitorIdentity = "operator.nova-monitor";
// The CN prefix of operator identities (nova-pki issue --role operator --name <name>).
inline constexpr const char* kOperatorPrefix = "operator.";

// The sites whose link topic `bridging_site`'s bridge may write at the brokers it
// bridges to: its own and those it carries upward (its subtree, and the subtrees that
// fail over into it, as down_routes()).
std::vector<const tiers::Site*> link_carriers(const tiers::Topology& topology,
                                              const tiers::Site& bridging_site);

// Added: the MQTT username of the hierarchy's own monitor (Hierarchy, nova-bridge
// status): read nova/v1/up/+/link only. It also uses nova-bridge/probe/<client id>,
// which every client may read and write for itself and which is never bridged.
inline constexpr const char* kMonitorUser = "nova-monitor";

// The largest publish payload every broker accepts: the codec's message size limit
// (256 KiB). max_packet_size adds kPacketOverheadBytes for the topic (at most 1024
// bytes), MQTT v5 properties and headers.
inline constexpr std::uint32_t kMaxPayloadBytes = 256 * 1024;
inline constexpr std::uint32_t kPacketOverheadBytes = 4 * 1024;

}  // namespace nova::bridge
