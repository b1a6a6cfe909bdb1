// WireGuard links between tiers (topology `links: wireguard`; docs/broker-hierarchy.md,
// WireGuard links): one wg-quick config per site, from the topology and the sites' key
// pairs in the PKI folder (nova/security/wireguard_keys.h).
//
// A site's config has one [Interface] (its private key, its tunnel address as a /32, its
// listen port) and one [Peer] per neighbour: its parent, its backup parents, its
// children and every site naming it as a backup parent. A peer's AllowedIPs is the
// neighbour's tunnel address alone, so a site can reach (and be reached by) its
// neighbours only, never route through them to the rest of the tree. A peer has an
// Endpoint when the neighbour has one; a site without an endpoint is behind NAT, so its
// peers toward its parents get PersistentKeepalive (kNatKeepaliveSeconds) to keep the
// NAT mapping and the parent's knowledge of its address alive.
//
// The rendered Mosquitto config (render.h) then has each bridge dial its parents'
// tunnel addresses, and a site that others bridge to listens for them on its tunnel
// address alone (a second listener, same TLS): mutual TLS still runs inside the tunnel.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "nova/schemas/result.h"
#include "nova/tiers/topology.h"

namespace nova::bridge {

// The file name nova-bridge renders: wg-quick names the interface after it (wg-nova),
// so it deploys as /etc/wireguard/wg-nova.conf and runs as wg-quick@wg-nova.
inline constexpr const char* kWireguardConfigFile = "wg-nova.conf";
inline constexpr std::uint32_t kNatKeepaliveSeconds = 25;

// The sites `site` has a WireGuard link with, parents first (parent, then backups in
// order), then the sites that bridge to it, in topology order.
std::vector<const tiers::Site*> wireguard_neighbours(const tiers::Topology& topology, const tiers::Site& site);

// "host:port" a neighbour dials: the endpoint, with the site's listen_port when it names
// none (an IPv6 literal is bracketed). Precondition: the endpoint is not empty.
std::string wireguard_endpoint(const tiers::Site& site);

// The wg-quick config of `site`. public_keys maps every neighbour's id to its public key.
// Precondition: topology.wireguard().
std::string render_wireguard(const tiers::Topology& topology, const tiers::Site& site,
                             const std::string& private_key,
                             const std::map<std::string, std::string>& public_keys);

// Makes the key pairs of `site` and its neighbours where missing (never replacing one:
// <pki>/wireguard/<site>.key) and writes <out_dir>/wg-nova.conf, 0600 (it holds the
// private key), atomically. Errors: path "links" when the topology is not
// `links: wireguard`, "pki_dir" when none is given, else the key file's.
schemas::Status write_wireguard(const tiers::Topology& topology, const tiers::Site& site,
                                const std::filesystem::path& pki_dir, const std::filesystem::path& out_dir);

}  // namespace nova::bridge
