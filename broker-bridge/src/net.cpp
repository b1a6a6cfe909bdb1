#include "nova/bridge/net.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace nova::bridge {
namespace {

bool connect_to(const sockaddr* addr, socklen_t len, int family) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool ok = ::connect(fd, addr, len) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

sockaddr_in loopback_address(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

schemas::Result<std::uint16_t> free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return schemas::Error{"", std::string("free_loopback_port: socket: ") + std::strerror(errno)};
  sockaddr_in addr = loopback_address(0);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int saved = errno;
    ::close(fd);
    return schemas::Error{"", std::string("free_loopback_port: bind: ") + std::strerror(saved)};
  }
  ::close(fd);
  return std::uint16_t{ntohs(addr.sin_port)};
}

bool accepts_connections(const std::string& host, std::uint16_t port) {
  sockaddr_in v4 = loopback_address(port);
  if (host.empty() || host == "0.0.0.0" || ::inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1) {
    return connect_to(reinterpret_cast<const sockaddr*>(&v4), sizeof v4, AF_INET);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (::getaddrinfo(host.c_str(), service.c_str(), &hints, &found) != 0) return false;
  bool ok = false;
  for (const addrinfo* a = found; a != nullptr && !ok; a = a->ai_next) {
    ok = connect_to(a->ai_addr, a->ai_addrlen, a->ai_family);
  }
  ::freeaddrinfo(found);
  return ok;
}

bool accepts_connections_in(int netns_fd, const std::string& host, std::uint16_t port) {
  bool ok = false;
  std::thread probe([&] { ok = ::setns(netns_fd, CLONE_NEWNET) == 0 && accepts_connections(host, port); });
  probe.join();
  return ok;
}

}  // namespace nova::bridge
