// The OpenSSL client side of our own MQTT clients: the link monitor's probe
// (broker-bridge/src/mqtt_probe.h) and nova-sim (sim/). One home for what both must do
// alike: TLS 1.2 or later, a client certificate presented, the broker's certificate
// verified against the trust anchor and required to name the address dialled, and no
// SIGPIPE from SSL_write.
#pragma once

#include <signal.h>

#include <memory>
#include <string>

struct ssl_st;
struct ssl_ctx_st;

namespace nova::bridge {

struct SslCtxFree {
  void operator()(ssl_ctx_st* ctx) const;
};
using SslCtxPtr = std::unique_ptr<ssl_ctx_st, SslCtxFree>;

// A client context: TLS 1.2 or later, SSL_VERIFY_PEER against `ca_file`, presenting
// `cert_file` (leaf, then intermediates) and `key_file` (PEM). nullptr when a file
// cannot be loaded or does not match (OpenSSL's error queue is cleared).
SslCtxPtr client_tls_context(const std::string& ca_file, const std::string& cert_file, const std::string& key_file);

// Makes the handshake of `ssl` require the broker's certificate to name `host`: its IP
// address SAN when `host` is an address, its DNS SAN otherwise (our brokers carry
// IP:127.0.0.1 and DNS:localhost, docs/security.md). False if OpenSSL refuses the name.
bool expect_broker_name(ssl_st* ssl, const std::string& host);

// SSL_write writes with write(2), which raises SIGPIPE when the broker has closed the
// connection (plaintext sends use MSG_NOSIGNAL instead). While a guard lives, SIGPIPE is
// blocked in this thread; one it raised is consumed before the old mask comes back.
class SigpipeGuard {
 public:
  SigpipeGuard();
  ~SigpipeGuard();
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_{};
  sigset_t old_{};
  bool was_pending_ = false;
};

}  // namespace nova::bridge
