#include "nova/bridge/render.h"

#include "nova/bridge/wireguard.h"
#include "nova/acl/rules.h"          // kDeniedCounterPrefix only
#include "nova/acl/tls_refusals.h"  // kTlsRefusedCounterPrefix only
#include "nova/security/layout.h"
#include "nova/tiers/residency.h"
#include "replace_file.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <system_error>

namespace nova::bridge {
namespace {

namespace fs = std::filesystem;
using schemas::Error;

constexpr const char* kTlsVersion = "tlsv1.2";

fs::path absolute_path(const fs::path& p) { return fs::absolute(p.empty() ? fs::path(".") : p).lexically_normal(); }

fs::path acl_plugin_path(const RenderOptions& options) {
  return options.acl_plugin.empty() ? find_acl_plugin() : absolute_path(options.acl_plugin);
}

// Where a bridge dials site `s`: its listener, or with links: wireguard its tunnel
// address (the listener for bridges, render_listeners).
std::string host_port(const tiers::Topology& topology, const tiers::Site& s) {
  const std::string& host = topology.wireguard() ? s.spec.tunnel.address : s.spec.listener.address;
  return host + ":" + std::to_string(s.spec.listener.port);
}

// Sites that bridge to `site`: its children, and every site naming it as a backup parent.
std::vector<const tiers::Site*> bridging_children(const tiers::Topology& topology,
                                                  const tiers::Site& site) {
  std::vector<const tiers::Site*> out;
  for (const tiers::Site& s : topology.sites()) {
    bool bridges = s.spec.parent == site.id();
    for (const std::string& b : s.spec.backup_parents) bridges = bridges || b == site.id();
    if (bridges) out.push_back(&s);
  }
  return out;
}

bool in_subtree(const tiers::Topology& topology, const tiers::Site& site, const tiers::Site& top) {
  if (&site == &top) return true;
  for (const tiers::Site* a : topology.ancestors(site)) {
    if (a == &top) return true;
  }
  return false;
}

// The broker's log: Mosquitto writes it, the nova_acl plugin reads it.
fs::path log_file(const fs::path& data_dir) { return data_dir / "mosquitto.log"; }

void render_globals(std::ostringstream& out, const tiers::Site& site, const fs::path& data_dir,
                    const fs::path& acl_file, const fs::path& acl_plugin, const RenderOptions& options) {
  if (!options.user.empty()) {
    out << "# Run as this user: started as root, Mosquitto otherwise switches to user\n"
           "# \"mosquitto\", which cannot write a root-owned data directory (no log, every\n"
           "# autosave fails while the broker keeps running).\n"
        << "user " << options.user << "\n\n";
  }
  out << "per_listener_settings false\n"
      << "allow_anonymous " << (options.insecure_plaintext ? "true" : "false") << "\n"
      << "# Re-send a retained message only if its publisher may still write it (2.0.11's\n"
         "# default is false, whatever the manual says). This keeps the bridge's own link\n"
         "# record, published here by the bridge itself, from being re-sent upward when the\n"
         "# bridge reconnects: that copy is queued before the connection and delivered after\n"
         "# the fresh \"1\", so a parent would keep a stale \"0\" (docs/broker-hierarchy.md).\n"
      << "check_retain_source true\n"
      << "# The ACL: the nova_acl plugin enforces the file below (Mosquitto's acl_file format)\n"
         "# and logs every denial at warning, counted on $SYS/broker/nova/acl/denied/<access>;\n"
         "# Mosquitto's own acl_file denies silently (docs/security.md).\n"
      ;
  if (options.mosquitto_acl_file) {
    out << "# Mosquitto's own acl_file instead (RenderOptions::mosquitto_acl_file): a benchmark's baseline.\n"
        << "acl_file " << acl_file.string() << "\n\n";
  } else {
    out << "plugin " << acl_plugin.string() << "\n"
        << "plugin_opt_acl_file " << acl_file.string() << "\n"
        << "# The plugin also follows this broker's log (log_dest below) and counts each refused\n"
           "# TLS handshake on $SYS/broker/nova/tls/refused/<reason>, with a warning line.\n"
        << "plugin_opt_log_file " << log_file(data_dir).string() << "\n\n";
  }

  out << "# Persistence: retained records, bridge sessions and queued QoS 1 messages survive\n"
         "# a restart. The default autosave (1800 s) would lose half an hour on a crash;\n"
         "# 2.0.11 saves once more than autosave_interval seconds have passed.\n"
      << "persistence true\n"
      << "persistence_location " << data_dir.string() << "/\n"
      << "persistence_file mosquitto.db\n"
      << "autosave_interval " << site.autosave_interval_s() << "\n"
      << "autosave_on_changes false\n\n";

  out << "# Queue caps. In 2.0.11 these are global: they cap the queue of every client,\n"
         "# including this site's bridge toward its parent and the sessions of the child\n"
         "# bridges below it, and the excess is dropped with only a log line (\"Outgoing\n"
         "# messages are being dropped\"). Sized for the tier's subtree over a 24 h partition\n"
         "# (docs/broker-hierarchy.md). 0 means no cap.\n";
  if (site.max_queued_messages() == 0) {
    out << "# This site has no upward bridge, so its profile sizes no upward queue: no cap on\n"
           "# the downward queues toward its children's bridges (small: tasks, configs, acks)\n"
           "# or on consumers' sessions. overrides.max_queued_messages in the topology caps it.\n";
  }
  out << "max_queued_messages " << site.max_queued_messages() << "\n"
      << "max_queued_bytes " << site.max_queued_bytes() << "\n"
      << "# QoS 0 is never queued for an offline session; NovaCron uses QoS 1 only.\n"
      << "queue_qos0_messages false\n"
      << "# Mosquitto's default; also the bridge's window of unacknowledged QoS 1 messages,\n"
         "# which bounds how fast a queue drains after a partition (window / round trip).\n"
      << "max_inflight_messages 20\n"
      << "# The codec refuses payloads over " << kMaxPayloadBytes / 1024
      << " KiB; every broker refuses the same at entry,\n"
         "# so no accepted message can be too large for a broker further up.\n"
      << "max_packet_size " << (kMaxPayloadBytes + kPacketOverheadBytes) << "\n"
      << "# Nagle's algorithm with delayed ACKs adds up to 40 ms per hop to small messages.\n"
      << "set_tcp_nodelay true\n\n";

  out << "# Logging. nova-bridge and the test harness detect start-up from the \"running\"\n"
         "# line (type information); autosaves log \"Saving in-memory database\".\n"
      << "log_dest file " << log_file(data_dir).string() << "\n"
      << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
      << "log_timestamp true\n"
      << "log_timestamp_format %Y-%m-%dT%H:%M:%S\n"
      << "connection_messages true\n\n";
}

// One listener: its address and, unless insecure, the mutual TLS every listener has.
void render_listener(std::ostringstream& out, const tiers::Site& site, const std::string& address,
                     const RenderOptions& options) {
  out << "listener " << site.spec.listener.port << " " << address << "\n";
  if (options.insecure_plaintext) return;
  const security::Layout pki(absolute_path(options.pki_dir));
  out << "# Mutual TLS: only certificates of our PKI, checked against its CRLs (SIGHUP re-reads\n"
         "# crlfile). The certificate's CN is the username the ACL is written against, and the\n"
         "# client id too, so no client can claim another identity's session.\n"
      << "cafile " << pki.trust_ca().string() << "\n"
      << "certfile " << pki.identity_cert(site.id()).string() << "\n"
      << "keyfile " << pki.identity_key(site.id()).string() << "\n"
      << "crlfile " << pki.trust_crl().string() << "\n"
      << "require_certificate true\n"
      << "use_identity_as_username true\n"
      << "use_username_as_clientid true\n"
      << "# The minimum version in 2.0.11: TLS 1.3 is accepted, 1.1 and older refused.\n"
      << "tls_version " << kTlsVersion << "\n";
}

// Resident data (nova/tiers/residency.h) climbs only between two sites of its region:
// a bridge gets the resident line when its site and its parent are in the same region
// (backup parents are in it too: the topology refuses any other). The region's top site
// has a parent outside the region, so its bridge has no such line and the data stops at
// its broker.
void render_resident_route(std::ostringstream& out, const tiers::Topology& topology, const tiers::Site& site) {
  const tiers::Site& parent = *topology.parent(site);
  if (!site.region || parent.region != site.region) return;
  out << "# Resident data of region " << *site.region << ": up to its top site '"
      << topology.region_top(*site.region)->id() << "', never beyond (docs/broker-hierarchy.md).\n"
      << "topic " << tiers::resident_filter(*site.region) << " out 1\n";
}

// The ACL lines for resident data at `site`: a node of the site writes only under its
// own id and the site's region; a child's bridge in the same region forwards the
// region's resident data. Empty outside any region.
// What the hierarchy's link monitor reads, in both modes: the link records, and the ACL
// plugin's denial and TLS refusal counters of this broker.
std::string monitor_grants() {
  return "topic read nova/v1/up/+/link\n"
         "topic read " + std::string(acl::kDeniedCounterPrefix) + "#\n"
         "topic read " + std::string(acl::kTlsRefusedCounterPrefix) + "#\n";
}

std::string resident_node_grant(const tiers::Site& site, const std::string& node) {
  if (!site.region) return "";
  return "topic write " + std::string(tiers::kResidentPrefix) + "/" + *site.region + "/" + node + "/#\n";
}

std::string resident_child_bridge_grant(const tiers::Site& site, const tiers::Site& child) {
  if (!site.region || child.region != site.region) return "";
  return "topic write " + tiers::resident_filter(*site.region) + "\n";
}

void render_listeners(std::ostringstream& out, const tiers::Topology& topology, const tiers::Site& site,
                      const RenderOptions& options) {
  render_listener(out, site, site.spec.listener.address, options);
  if (!topology.wireguard() || bridging_children(topology, site).empty()) return;
  out << "\n# links: wireguard. The bridges of the sites below arrive through the WireGuard tunnel,\n"
         "# on this site's tunnel address and nowhere else; TLS stays on inside the tunnel.\n"
         "# Start after the tunnel (wg-quick@wg-nova): the address must exist to be bound.\n";
  render_listener(out, site, site.spec.tunnel.address, options);
}

void render_bridge(std::ostringstream& out, const tiers::Topology& topology, const tiers::Site& site,
                   const RenderOptions& options) {
  const tiers::Site& parent = *topology.parent(site);
  const std::string id = site.id();
  out << "\n# Bridge to the parent '" << parent.id() << "'"
      << (site.spec.backup_parents.empty() ? "" : ", then the backup parents in order") << ".\n"
      << "connection " << id << "-to-" << parent.id() << "\n"
      << "address " << host_port(topology, parent);
  for (const std::string& b : site.spec.backup_parents) out << " " << host_port(topology, topology.site(b));
  out << "\n"
      << "# The first address is the primary: while on a backup, Mosquitto keeps probing it\n"
         "# and moves back once it answers.\n"
      << "round_robin false\n"
      << "start_type automatic\n"
      << "# MQTT v5 bridges do not keep their remote session in 2.0.11: use 3.1.1.\n"
      << "bridge_protocol_version mqttv311\n";
  out << "# The session on every parent persists: downward messages wait there while the\n"
         "# link is down. A site with backup parents may get a downward message twice (via\n"
         "# the backup, then again from the primary's session when it moves back): agents\n"
         "# drop a repeated task id, acks are cumulative, configs and models are retained\n"
         "# and versioned, so a repeat changes nothing, and nothing is lost.\n"
      << "cleansession false\n";
  out << "# The local session (the upward queue) always persists: queued QoS 1 messages\n"
         "# survive a broken link.\n"
      << "local_cleansession false\n"
      << "local_clientid " << bridge_username(site) << ".local\n"
      << "remote_clientid " << bridge_username(site) << "\n"
      << "remote_username " << bridge_username(site) << "\n";
  if (!options.insecure_plaintext) {
    const security::Layout pki(absolute_path(options.pki_dir));
    out << "# Mutual TLS to the parent: our bridge certificate (CN " << bridge_username(site)
        << ", the username\n# the parent's ACL knows), and the parent's certificate checked, host name included.\n"
        << "bridge_cafile " << pki.trust_ca().string() << "\n"
        << "bridge_certfile " << pki.identity_cert(bridge_username(site)).string() << "\n"
        << "bridge_keyfile " << pki.identity_key(bridge_username(site)).string() << "\n"
        << "bridge_insecure false\n"
        << "bridge_tls_version " << kTlsVersion << "\n";
  }
  out
      << "keepalive_interval " << site.keepalive_s() << "\n"
      << "# Reconnect back-off (base, cap) in seconds. The one-value form is ignored.\n"
      << "restart_timeout " << site.restart_base_s() << " " << site.restart_cap_s() << "\n"
      << "# \"1\"/\"0\" retained on this broker and the parent; \"0\" is also the bridge's will.\n"
      << "notifications true\n"
      << "notifications_local_only false\n"
      << "notification_topic " << link_topic(site) << "\n"
      << "try_private true\n"
      << "# QoS 1 explicitly (the default is 0). Up goes out only; down comes in only, and\n"
         "# only this site's subtree. Never \"both\": the one-way prefixes cannot loop.\n"
      << "topic nova/v1/up/# out 1\n";
  render_resident_route(out, topology, site);
  for (const std::string& filter : down_routes(topology, site)) out << "topic " << filter << " in 1\n";
  out << "# Update bundles (schemas/topics.md, Updates): retained, one copy per broker.\n"
      << "topic " << topics::bundle_all() << " in 1\n";
}

// The ACL lines of a site's own bridge (every site but the root), the same in both
// ACLs: it publishes on its broker what it brings down.
void render_own_bridge_grant(std::ostringstream& out, const tiers::Topology& topology, const tiers::Site& site) {
  if (site.is_root()) return;
  out << "\n# This site's own bridge, as the publisher of what it brings down. Bridges bypass\n"
         "# their own broker's ACL; this grant only lets check_retain_source re-send retained\n"
         "# downward records (configs, models) to later subscribers. Its own link record\n"
         "# is deliberately not granted, so that record is never re-sent upward.\n"
      << "user " << bridge_username(site) << "\n";
  for (const std::string& filter : down_routes(topology, site)) out << "topic write " << filter << "\n";
  out << "topic write " << topics::bundle_all() << "\n";
}

std::string render_plaintext_acl(const tiers::Topology& topology, const tiers::Site& site) {
  std::ostringstream out;
  out << "# Generated by nova-bridge for site '" << site.id() << "' (" << site.path.str()
      << ").\n# Mosquitto 2.0.11's acl_file semantics, which the nova_acl plugin enforces: `topic`\n"
         "# lines before the first `user` line apply to anonymous clients only, `pattern` lines\n"
         "# to every client (%c = client id). A denied publish is dropped and its client\n"
         "# disconnected; a subscription no read grant overlaps is refused. Each denial is\n"
         "# logged at warning and counted on $SYS/broker/nova/acl/denied/<access>.\n\n"
      << "# Anonymous clients: nodes (client id = node id) and sensors.\n"
      << "topic read nova/v1/down/#\n"
      << "topic read " << topics::bundle_all() << "\n"
      << "topic readwrite nova/v1/sensor/#\n"
      << "# Local consumers (actuators) read what agents publish for them (never bridged).\n"
      << "topic read nova/v1/local/#\n\n"
      << "# Every client: a node publishes upward, and locally, only under its own id.\n"
      << "pattern write nova/v1/up/%c/#\n"
      << "pattern write nova/v1/local/%c/#\n"
      << (site.region ? "pattern write " + std::string(tiers::kResidentPrefix) + "/" + *site.region + "/%c/#\n" : "")
      << "# Every client: its own probe topic, never bridged (read_link_state uses it).\n"
      << "pattern readwrite nova-bridge/probe/%c\n";
  render_own_bridge_grant(out, topology, site);
  for (const tiers::Site* child : bridging_children(topology, site)) {
    const bool backup = child->spec.parent != site.id();
    out << "\n# Bridge of " << (backup ? "backup child" : "child") << " '" << child->id() << "'.\n"
        << "user " << bridge_username(*child) << "\n"
        << "topic write nova/v1/up/#\n" << resident_child_bridge_grant(site, *child);
    for (const std::string& filter : down_routes(topology, *child)) out << "topic read " << filter << "\n";
    out << "topic read " << topics::bundle_all() << "\n";
  }
  out << "\n# Cloud services and operators.\n"
      << "user " << kCloudServiceUser << "\n"
      << "topic readwrite nova/v1/#\n"
      << "topic read $SYS/#\n"
      << "\n# The hierarchy's link monitor (nova-bridge status), and the ACL plugin's denial\n"
         "# and TLS refusal counters of this broker.\n"
      << "user " << kMonitorUser << "\n" << monitor_grants();
  return out.str();
}

const std::string kInsecureWarning =
    "# INSECURE: rendered with --insecure-plaintext. No TLS, anonymous clients allowed, and\n"
    "# the ACL trusts usernames and client ids that any client may claim. Development only.\n\n";

// The identities the PKI folder holds whose CN starts with `prefix`, as the rest of
// the CN, sorted. Sensors and operators are not in the topology: enrolling one is
// issuing its certificate, and a re-render (nova-bridge's SIGHUP) grants it its topics.
std::vector<std::string> enrolled_identities(const fs::path& pki_dir, const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(security::Layout(pki_dir).identities_dir(), ec)) {
    const std::string cn = entry.path().filename().string();
    if (cn.starts_with(prefix) && cn.size() > prefix.size()) out.push_back(cn.substr(prefix.size()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The ids whose up topics (nova/v1/up/<id>/#) a site's bridge forwards to the brokers it
// bridges to: the sites it carries (link_carriers) and their nodes, in topology order.
std::vector<std::string> carried_up_ids(const tiers::Topology& topology, const tiers::Site& bridging_site) {
  const std::vector<const tiers::Site*> carried = link_carriers(topology, bridging_site);
  std::vector<std::string> ids;
  for (const tiers::Site* s : carried) ids.push_back(s->id());
  for (const tiers::NodeSpec& node : topology.nodes()) {
    if (std::any_of(carried.begin(), carried.end(), [&](const tiers::Site* s) { return s->id() == node.site; })) {
      ids.push_back(node.id);
    }
  }
  return ids;
}

std::string render_identity_acl(const tiers::Topology& topology, const tiers::Site& site,
                                const fs::path& pki_dir) {
  std::ostringstream out;
  out << "# Generated by nova-bridge for site '" << site.id() << "' (" << site.path.str()
      << ").\n# Usernames are certificate CNs (use_identity_as_username). Enforced by the nova_acl\n"
         "# plugin with Mosquitto 2.0.11's acl_file semantics: a `deny` line refuses reading and\n"
         "# writing its topic whatever the section's other lines grant (they stand first here).\n"
         "# A denied publish is dropped and its client disconnected; a subscription no read\n"
         "# grant overlaps is refused. Each denial is logged at warning and counted on\n"
         "# $SYS/broker/nova/acl/denied/<access>. No grant names a client id.\n\n"
      << "# Every identity: its own probe topic, never bridged (read_link_state uses it).\n"
      << "pattern readwrite nova-bridge/probe/%u\n";
  for (const tiers::NodeSpec& node : topology.nodes()) {
    if (node.site != site.id()) continue;
    const std::string down = topics::down_subtree(site.path);  // nova/v1/down/<path>/#
    out << "\n# Node '" << node.id << "': its own up topics (never a link), its own down topics,\n"
           "# the update bundles (not secret: its signed update offer names the one to take),\n"
           "# its sensors' readings and the replies to them.\n"
        << "user " << node.id << "\n"
        << "topic deny " << link_topic(node.id) << "\n"
        << "topic write nova/v1/up/" << node.id << "/#\n"
        << "topic read " << down.substr(0, down.size() - 1) << node.id << "/#\n"
        << "topic read " << topics::bundle_all() << "\n"
        << "topic read nova/v1/sensor/" << node.id << "/+\n"
        << "topic write nova/v1/sensor/" << node.id << "/+/error\n"
        << "# What its pipelines publish for local actuators (never bridged).\n"
        << "topic write nova/v1/local/" << node.id << "/#\n"
        << resident_node_grant(site, node.id);
    for (const std::string& sensor : enrolled_identities(pki_dir, "sensor." + node.id + ".")) {
      const std::string topic = "nova/v1/sensor/" + node.id + "/" + sensor;
      out << "\n# Sensor '" << sensor << "' of node '" << node.id << "'.\n"
          << "user sensor." << node.id << "." << sensor << "\n"
          << "topic write " << topic << "\n"
          << "topic read " << topic << "/error\n"
          << "# A sensor may also be an actuator: it reads what its node publishes locally.\n"
          << "topic read nova/v1/local/" << node.id << "/#\n";
    }
  }
  render_own_bridge_grant(out, topology, site);
  for (const tiers::Site* child : bridging_children(topology, site)) {
    const bool backup = child->spec.parent != site.id();
    out << "\n# Bridge of " << (backup ? "backup child" : "child") << " '" << child->id()
        << "': the up topics of the sites and nodes it carries\n# (its subtree and those failing over into it), "
           "links included; the probes of a nova-cloud below.\n"
        << "user " << bridge_username(*child) << "\n";
    for (const std::string& id : carried_up_ids(topology, *child)) out << "topic write nova/v1/up/" << id << "/#\n";
    out << "topic write nova/v1/up/" << kCloudServiceUser << "/#\n" << resident_child_bridge_grant(site, *child);
    for (const std::string& filter : down_routes(topology, *child)) out << "topic read " << filter << "\n";
    out << "topic read " << topics::bundle_all() << "\n";
  }
  out << "\n# nova-cloud: reads everything upward, is the only writer of down and of the update\n"
         "# bundles. It writes up only under its own id: its subscription probes\n"
         "# (cloud/subscriptions.h), the one for\n"
         "# nova/v1/up/+/link on nova/v1/up/nova-cloud/link. No site can be called nova-cloud\n"
         "# (its broker would need that CN), so that is no site's link.\n"
      << "user " << kCloudServiceUser << "\n"
      << "topic write nova/v1/up/" << kCloudServiceUser << "/#\n"
      << "topic read nova/v1/up/#\n"
      << "topic readwrite nova/v1/down/#\n"
      << "topic readwrite " << topics::bundle_all() << "\n"
      << "topic readwrite nova/v1/cloud/#\n"
      << "topic read $SYS/#\n";
  if (site.region) {
    out << "# In the regional role (docs/cloud.md) it stores the region's resident data here,\n"
           "# and probes that subscription under its own name (never a node's topic).\n"
        << "topic read " << tiers::resident_filter(*site.region) << "\n"
        << "topic write " << tiers::kResidentPrefix << "/" << *site.region << "/probe/" << kCloudServiceUser << "\n";
  }
  out << "\n# The hierarchy's link monitor (nova-bridge status), and the ACL plugin's denial\n"
         "# and TLS refusal counters of this broker.\n"
      << "user " << kMonitorIdentity << "\n" << monitor_grants();
  for (const std::string& name : enrolled_identities(pki_dir, kOperatorPrefix)) {
    if (name == kMonitorOperatorName) continue;  // the monitor keeps its narrower grant
    out << "\n# Operator '" << name << "': watches what goes up (births, metrics, results, links);\n"
           "# writes nothing and reads nothing downward (tasks may carry secrets in their env).\n"
        << "user " << kOperatorPrefix << name << "\n"
        << "topic read nova/v1/up/#\n"
        << "# Resident data too, wherever it is: a broker outside its region has none to show.\n"
        << "topic read " << tiers::kResidentPrefix << "/#\n";
  }
  return out.str();
}

bool has_line_break(const fs::path& p) { return p.string().find_first_of("\r\n") != std::string::npos; }

}  // namespace

namespace {

// The tops of the subtrees a site's bridge carries: the site itself, then every subtree
// outside it that fails over into it (see down_routes).
std::vector<const tiers::Site*> carried_subtrees(const tiers::Topology& topology, const tiers::Site& site) {
  // Sites outside this subtree that may fail over into it: a site whose backup parent
  // is here (at this site or below) must be reachable through here too. Sites are in
  // parent-before-child order, so an outer subtree is listed before one nested in it,
  // which it already covers.
  std::vector<const tiers::Site*> taken{&site};
  for (const tiers::Site& s : topology.sites()) {
    if (in_subtree(topology, s, site)) continue;
    bool backup_here = false;
    for (const std::string& b : s.spec.backup_parents) backup_here = backup_here || in_subtree(topology, topology.site(b), site);
    if (!backup_here) continue;
    if (std::any_of(taken.begin(), taken.end(), [&](const tiers::Site* t) { return in_subtree(topology, s, *t); })) continue;
    taken.push_back(&s);
  }
  return taken;
}

}  // namespace

std::vector<std::string> down_routes(const tiers::Topology& topology, const tiers::Site& site) {
  std::vector<std::string> filters;
  for (const tiers::Site* top : carried_subtrees(topology, site)) filters.push_back(topics::down_subtree(top->path));
  return filters;
}

std::vector<const tiers::Site*> link_carriers(const tiers::Topology& topology, const tiers::Site& bridging_site) {
  const std::vector<const tiers::Site*> tops = carried_subtrees(topology, bridging_site);
  std::vector<const tiers::Site*> out;
  for (const tiers::Site& s : topology.sites()) {
    if (std::any_of(tops.begin(), tops.end(), [&](const tiers::Site* t) { return in_subtree(topology, s, *t); })) {
      out.push_back(&s);
    }
  }
  return out;
}

fs::path find_acl_plugin() {
  if (const char* env = std::getenv("NOVA_ACL_PLUGIN"); env != nullptr && *env != '\0') return absolute_path(env);
  std::error_code ec;
  const fs::path program = fs::read_symlink("/proc/self/exe", ec);
  return (program.parent_path().parent_path() / "lib" / "nova" / "nova_acl.so").lexically_normal();
}

std::string link_topic(std::string_view site_id) { return "nova/v1/up/" + std::string(site_id) + "/link"; }

std::string link_topic(const tiers::Site& site) { return link_topic(site.id()); }

std::string bridge_username(const tiers::Site& site) { return "bridge." + site.id(); }

RenderedSite render(const tiers::Topology& topology, const tiers::Site& site,
                    const RenderOptions& options) {
  const fs::path data_dir = fs::absolute(options.data_dir.empty() ? fs::path(".") : options.data_dir)
                                .lexically_normal();
  const fs::path acl_file =
      options.acl_file.empty() ? data_dir / "acl" : fs::absolute(options.acl_file).lexically_normal();
  std::ostringstream conf;
  const tiers::TierProfile& profile = *site.profile;
  if (options.insecure_plaintext) conf << kInsecureWarning;
  conf << "# Generated by nova-bridge for site '" << site.id() << "' (" << site.path.str() << "), level "
       << int{site.level()} << " (" << profile.name << "), of topology '" << topology.name()
       << "'.\n# Do not edit: change the topology and render again. Why each setting is here:\n"
          "# docs/broker-hierarchy.md.\n\n";
  render_globals(conf, site, data_dir, acl_file, acl_plugin_path(options), options);
  render_listeners(conf, topology, site, options);
  if (!site.is_root()) render_bridge(conf, topology, site, options);
  return RenderedSite{conf.str(), options.insecure_plaintext
                                      ? kInsecureWarning + render_plaintext_acl(topology, site)
                                      : render_identity_acl(topology, site, options.pki_dir)};
}

SiteTlsFiles site_tls_files(const fs::path& pki_dir, const tiers::Site& site) {
  const security::Layout pki(absolute_path(pki_dir));
  SiteTlsFiles files;
  files.listener = {pki.trust_ca(), pki.trust_crl(), pki.identity_cert(site.id()), pki.identity_key(site.id())};
  if (!site.is_root()) {
    files.bridge = {pki.trust_ca(), pki.identity_cert(bridge_username(site)), pki.identity_key(bridge_username(site))};
  }
  return files;
}

Status write_site(const tiers::Topology& topology, const tiers::Site& site, const fs::path& out_dir,
                  RenderOptions options) {
  const std::string where = "site '" + site.id() + "': ";
  if (topology.find(site.id()) == nullptr) return Error{"", where + "is not part of topology '" + topology.name() + "'"};
  if (site.spec.listener.port == 0) return Error{"", where + "has no port (0 is assigned only by `nova-bridge up`)"};
  if (const tiers::Site* parent = topology.parent(site)) {
    std::vector<const tiers::Site*> upstream{parent};
    for (const std::string& b : site.spec.backup_parents) upstream.push_back(&topology.site(b));
    for (const tiers::Site* p : upstream) {
      if (p->spec.listener.port == 0) {
        return Error{"", where + "cannot bridge to '" + p->id() + "', which has no port"};
      }
    }
  }
  if (!options.insecure_plaintext) {
    if (options.pki_dir.empty()) {
      return Error{"pki_dir", "required: a PKI folder for mutual TLS (or render with insecure plaintext)"};
    }
    const SiteTlsFiles files = site_tls_files(options.pki_dir, site);
    for (const auto* group : {&files.listener, &files.bridge}) {
      for (const fs::path& file : *group) {
        if (!fs::exists(file)) return Error{"pki_dir", where + "no " + file.string() + " (issue the topology's identities first)"};
      }
    }
    if (has_line_break(absolute_path(options.pki_dir))) {
      return Error{"pki_dir", "a path with a line break cannot be written into mosquitto.conf"};
    }
  }
  const fs::path acl_plugin = acl_plugin_path(options);
  if (!options.mosquitto_acl_file && !fs::exists(acl_plugin)) {
    return Error{"acl_plugin", "no Mosquitto ACL plugin at " + acl_plugin.string() +
                                   " (build or install nova_acl.so, or set NOVA_ACL_PLUGIN)"};
  }
  if (has_line_break(acl_plugin)) return Error{"acl_plugin", "a path with a line break cannot be written into mosquitto.conf"};
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return Error{"", "cannot create " + out_dir.string() + ": " + ec.message()};
  if (options.data_dir.empty()) options.data_dir = out_dir;
  fs::create_directories(options.data_dir, ec);
  if (ec) return Error{"", "cannot create " + options.data_dir.string() + ": " + ec.message()};
  options.acl_file = fs::absolute(out_dir / "acl");
  if (has_line_break(options.data_dir) || has_line_break(options.acl_file)) {
    return Error{"", "a path with a line break cannot be written into mosquitto.conf"};
  }
  // The WireGuard config first: when its keys cannot be made, nothing is written.
  if (topology.wireguard()) {
    if (auto written = write_wireguard(topology, site, options.pki_dir, out_dir); !written) return written;
  }
  const RenderedSite rendered = render(topology, site, options);
  for (const auto& [name, text] : {std::pair{"mosquitto.conf", &rendered.mosquitto_conf},
                                   std::pair{"acl", &rendered.acl}}) {
    if (auto written = replace_file(out_dir / name, *text); !written) return written;
  }
  return schemas::Ok{};
}

}  // namespace nova::bridge
