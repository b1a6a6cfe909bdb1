// The nova_acl plugin's TLS refusal counting (broker-bridge/acl-plugin/include/nova/acl/
// tls_refusals.h): the classification of Mosquitto 2.0.11's log lines (each line below
// as a real broker with OpenSSL 3 wrote it; tls_acl_test.cpp makes each refusal) and the
// log follower over a real file.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "nova/acl/tls_refusals.h"

namespace {

namespace fs = std::filesystem;
using nova::acl::classify_tls_refusal;
using nova::acl::LogTail;
using nova::acl::TlsRefusal;

std::optional<TlsRefusal> reason(const std::string& line) {
  const auto refusal = classify_tls_refusal(line);
  if (!refusal) return std::nullopt;
  return refusal->reason;
}

}  // namespace

TEST_CASE("TLS refusal lines of Mosquitto's log are classified by OpenSSL's error text", "[acl][tls_refusals]") {
  CHECK(reason("2026-12-05T03:52:36: OpenSSL Error[0]: error:0A0000C7:SSL routines::peer did not return a "
               "certificate") == TlsRefusal::no_certificate);
  // An expired, a revoked and a foreign certificate: the same line.
  CHECK(reason("2026-12-05T03:52:36: OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed") ==
        TlsRefusal::verify_failed);
  CHECK(reason("2026-12-05T03:52:36: OpenSSL Error[0]: error:0A000102:SSL routines::unsupported protocol") ==
        TlsRefusal::protocol_version);
  CHECK(reason("OpenSSL Error[0]: error:0A0000BF:SSL routines::no protocols available") ==
        TlsRefusal::protocol_version);
  CHECK(reason("OpenSSL Error[0]: error:0A00010B:SSL routines::wrong version number") == TlsRefusal::other);
  // Only the first error of a connection counts.
  CHECK_FALSE(reason("OpenSSL Error[1]: error:0A000086:SSL routines::certificate verify failed"));

  // The form logged when the handshake had arrived at accept: it names the peer.
  const auto accept = classify_tls_refusal(
      "2026-12-05T03:52:36: Client connection from 127.0.0.1 failed: error:0A000086:SSL routines::certificate "
      "verify failed.");
  REQUIRE(accept);
  CHECK(accept->reason == TlsRefusal::verify_failed);
  CHECK(accept->peer == "127.0.0.1");
  CHECK(accept->error == "error:0A000086:SSL routines::certificate verify failed");
  CHECK(nova::acl::format_tls_refusal(*accept) ==
        "nova-acl: refused tls reason=verify_failed peer=127.0.0.1 error=\"error:0A000086:SSL routines::certificate "
        "verify failed\"");
  const auto no_peer =
      classify_tls_refusal("OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed");
  REQUIRE(no_peer);
  CHECK(nova::acl::format_tls_refusal(*no_peer) ==
        "nova-acl: refused tls reason=verify_failed peer=\"\" error=\"error:0A000086:SSL routines::certificate "
        "verify failed\"");

  // Everything else, the plugin's own warning included (it reads its own lines back).
  for (const char* line : {
           "2026-12-05T03:52:36: New connection from 127.0.0.1:54794 on port 37035.",
           "2026-12-05T03:52:36: Client <unknown> disconnected: Protocol error.",
           "2026-12-05T03:52:36: Client connection from 127.0.0.1 denied access by tcpd.",
           // A client that hung up before its handshake (the test harness's readiness probe).
           "2026-12-05T03:52:36: Client connection from 127.0.0.1 failed: error:0A000126:SSL routines::unexpected "
           "eof while reading.",
           "OpenSSL Error[0]: error:0A000126:SSL routines::unexpected eof while reading",
           "2026-12-05T03:52:36: nova-acl: refused tls reason=verify_failed peer=\"\" error=\"error:0A000086:SSL "
           "routines::certificate verify failed\"",
           "",
       }) {
    INFO(line);
    CHECK_FALSE(classify_tls_refusal(line));
  }
}

TEST_CASE("the log follower reads each complete line once, and again from the start after truncation or rotation",
          "[acl][tls_refusals]") {
  std::string pattern = (fs::temp_directory_path() / "nova-logtail-XXXXXX").string();
  REQUIRE(::mkdtemp(pattern.data()) != nullptr);
  const fs::path dir = pattern;
  const fs::path log = dir / "mosquitto.log";
  const auto append = [&](const std::string& text) {
    std::ofstream out(log, std::ios::app | std::ios::binary);
    out << text;
  };

  LogTail missing(dir / "absent.log");
  CHECK(missing.read_new_lines().empty());

  append("before the start\n");
  LogTail tail(log);  // starts at the end: earlier lines are not read
  CHECK(tail.read_new_lines().empty());
  append("one\ntw");
  CHECK(tail.read_new_lines() == std::vector<std::string>{"one"});
  append("o\nthree\n");
  CHECK(tail.read_new_lines() == std::vector<std::string>{"two", "three"});
  CHECK(tail.read_new_lines().empty());

  // Truncated in place (copytruncate): read from the start.
  fs::resize_file(log, 0);
  append("after truncation\n");
  CHECK(tail.read_new_lines() == std::vector<std::string>{"after truncation"});

  // Rotated: the old file moved away, a new one (longer than the offset) at the path.
  fs::rename(log, dir / "mosquitto.log.1");
  append("a new file, longer than what was read of the old one\nsecond\n");
  CHECK(tail.read_new_lines() ==
        std::vector<std::string>{"a new file, longer than what was read of the old one", "second"});

  fs::remove_all(dir);
}
