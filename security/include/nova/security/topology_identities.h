// Everything a topology's PKI needs, in one call: what `nova-pki topology` and
// `nova-bridge up` (when it makes the PKI itself) both run.
//
// Makes the root and the intermediates if missing ("cloud", and one per level-2 site:
// a region is a level-2 site and its subtree), then issues, keeping what is already
// issued: a broker identity per site (with the listener's non-loopback address as a
// SAN, and with `links: wireguard` its tunnel address too: a certificate issued before
// the topology said so lacks it, so issue it again), a bridge identity per non-root site, a node identity per node, and nova-cloud.
// It refuses, before issuing anything, a topology in which two identities would share
// a CN (a node called "nova-cloud") or a level-2 site called "cloud" (error path
// "topology", naming both sides).
//
// Part of nova_security_topology, the one piece of security/ that reads topologies.
#pragma once

#include <cstddef>
#include <string>

#include "nova/security/pki.h"
#include "nova/tiers/topology.h"

namespace nova::security {

struct TopologyIdentitiesReport {
  std::size_t regions = 0;  // intermediates the topology uses
  std::size_t issued = 0;   // leaves issued by this call
  std::size_t kept = 0;     // leaves that were already there
};

// The region (intermediate CA) of a site: its level-2 ancestor (or itself), "cloud"
// for the root and for sites deeper than level 2 directly under the root.
std::string region_of(const tiers::Topology& topology, const tiers::Site& site);

Result<TopologyIdentitiesReport> issue_topology_identities(Pki& pki, const tiers::Topology& topology,
                                                           int days = 90);

}  // namespace nova::security
