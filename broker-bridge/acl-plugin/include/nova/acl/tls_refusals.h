// TLS handshake refusals, counted by the nova_acl plugin (plugin.cpp). Mosquitto 2.0.11
// gives a plugin no TLS event: a refused handshake is only a line of the broker's own
// log ("OpenSSL Error[0]: error:0A0000C7:SSL routines::peer did not return a
// certificate"). So the plugin follows that log file (LogTail) on each MOSQ_EVT_TICK,
// classifies each new line (classify_tls_refusal), and for each refusal logs a warning
// (format_tls_refusal) and counts it on a retained $SYS topic.
//
// What the log can tell apart, with Mosquitto 2.0.11 and OpenSSL 3 (tls_acl_test.cpp
// runs each): no certificate, a protocol version below tls_version, and "certificate
// verify failed". The last is the same line for an expired, a revoked and a foreign
// certificate: OpenSSL's error text names no verify result, and Mosquitto's verify
// callback logs nothing. Those are counted together as verify_failed.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nova::acl {

// The plugin counts refusals per reason on retained topics of its broker: this prefix,
// then the reason (decimal, since the broker started).
inline constexpr std::string_view kTlsRefusedCounterPrefix = "$SYS/broker/nova/tls/refused/";

enum class TlsRefusal {
  no_certificate,    // the client sent no certificate (require_certificate)
  verify_failed,     // its chain did not verify: expired, revoked, or another CA's
  protocol_version,  // it offered only versions below tls_version (TLS 1.1 and older)
  other,             // any other OpenSSL error on a connection
};
inline constexpr std::array kTlsRefusals{TlsRefusal::no_certificate, TlsRefusal::verify_failed,
                                         TlsRefusal::protocol_version, TlsRefusal::other};
std::string_view to_string(TlsRefusal refusal);

// Mosquitto 2.0.11 logs a refused handshake in one of two forms, depending on whether
// the client's handshake had arrived when it accepted the connection:
//   "Client connection from 127.0.0.1 failed: error:0A000126:SSL routines::unexpected eof while reading."
//   "OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed"
// (the second names no peer). One refusal per line of either form, counting only the
// first error ([0]) of the second; any other line (the plugin's own lines included):
// nullopt. The reason comes from OpenSSL's error text: "peer did not return a
// certificate", "certificate verify failed", "unsupported protocol" / "no protocols
// available" / "alert protocol version"; anything else is other (plain MQTT sent to a
// TLS port, a client's alert). "unexpected eof while reading" is no refusal: the client
// closed the connection before its handshake (a TCP health check, a readiness probe).
struct TlsRefusalLine {
  TlsRefusal reason = TlsRefusal::other;
  std::string_view error;  // the OpenSSL error text, e.g. "error:0A000086:SSL routines::certificate verify failed"
  std::string_view peer;   // the client's address if the line names it, else empty
};
std::optional<TlsRefusalLine> classify_tls_refusal(std::string_view log_line);

// The plugin's warning: `nova-acl: refused tls reason=verify_failed peer=127.0.0.1
// error="error:0A000086:SSL routines::certificate verify failed"`; peer="" when
// Mosquitto's line names none (it logs the address on "New connection from", but
// connections interleave, so the plugin does not guess which one failed).
std::string format_tls_refusal(const TlsRefusalLine& refusal);

// Follows a growing file from a given offset, line by line. A file shorter than the
// offset, or another file at the path (logrotate moved it), is read again from its
// start; a line not yet ended is kept until its end is written.
class LogTail {
 public:
  // Starts at the file's current end (or at 0 if there is no file yet): what was logged
  // before the broker started is not counted again.
  explicit LogTail(std::filesystem::path path);
  // The complete lines written since the last call (no line breaks). A missing file
  // gives none.
  std::vector<std::string> read_new_lines();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::uintmax_t offset_ = 0;
  std::uintmax_t inode_ = 0;
  std::string partial_;
};

}  // namespace nova::acl
