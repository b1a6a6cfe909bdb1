// The harness's slow link (nova/testing/delay_proxy.h): bytes arrive intact and in order,
// each way no sooner than the delay set, and a changed delay applies to what is read next.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "nova/bridge/net.h"
#include "nova/testing/delay_proxy.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// An echo server on a free loopback port for one connection.
struct Echo {
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  std::uint16_t port = 0;
  std::thread thread;

  Echo() {
    sockaddr_in a = nova::bridge::loopback_address(0);
    socklen_t len = sizeof a;
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(listener, 1) == 0);
    REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
    thread = std::thread([this] {
      const int fd = ::accept(listener, nullptr, nullptr);
      char buf[4096];
      for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) {
        if (::write(fd, buf, static_cast<std::size_t>(n)) != n) break;
      }
      ::close(fd);
    });
  }
  ~Echo() {
    thread.join();
    ::close(listener);
  }
};

// Sends `text` and reads it back; the time it took.
Clock::duration round_trip(int fd, const std::string& text) {
  const auto start = Clock::now();
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  std::string back;
  char buf[4096];
  while (back.size() < text.size()) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    REQUIRE(n > 0);
    back.append(buf, static_cast<std::size_t>(n));
  }
  CHECK(back == text);
  return Clock::now() - start;
}

}  // namespace

TEST_CASE("the delay proxy holds bytes each way and keeps them intact", "[harness][proxy]") {
  Echo echo;
  nova::testing::DelayProxy proxy(echo.port, 60ms);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in a = nova::bridge::loopback_address(proxy.port());
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  CHECK(round_trip(fd, "hello") >= 120ms);  // 60 ms there and 60 ms back
  CHECK(proxy.accepted() == 1);
  // A longer message in pieces stays whole and in order.
  std::string big;
  for (int i = 0; i < 3000; ++i) big += std::to_string(i) + ",";
  CHECK(round_trip(fd, big) >= 120ms);
  // No delay: what is read from now on passes at once (no bound on how fast: a busy
  // machine may be slow, but never slower because of the proxy's old setting).
  proxy.set_delay(0ms);
  round_trip(fd, "again");
  ::close(fd);
}
