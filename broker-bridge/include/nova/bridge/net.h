// Loopback networking helpers shared by the hierarchy, nova-bridge and the test harness.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <string>

#include "nova/schemas/result.h"

namespace nova::bridge {

// The IPv4 address 127.0.0.1:port.
sockaddr_in loopback_address(std::uint16_t port);

// A TCP port on 127.0.0.1 that was free when asked (bind to port 0, read it back, close).
// Another process may take it before the caller binds it, so callers must be ready to
// retry on "Address already in use", as BrokerProcess and Hierarchy are.
schemas::Result<std::uint16_t> free_loopback_port();

// True when a TCP connect to host:port succeeds right now (the connection is closed at
// once). `host` is an IPv4 literal or a name; the wildcard 0.0.0.0 is probed on loopback.
bool accepts_connections(const std::string& host, std::uint16_t port);

// The same from inside the network namespace of the open namespace file `netns_fd`
// (/run/netns/<name>). The connect runs on a short-lived thread that joins that
// namespace (setns changes only the calling thread's), so the caller's stays as it is.
// False also when the namespace cannot be joined.
bool accepts_connections_in(int netns_fd, const std::string& host, std::uint16_t port);

}  // namespace nova::bridge
