// The Paho C asynchronous API (MQTTAsync), bound at run time, and the few OpenSSL calls
// the agent needs to check its TLS identity.
//
// Why not link it: Debian ships the API twice with the same symbols, libpaho-mqtt3a
// (plain) and libpaho-mqtt3as (TLS, which links libssl and libcrypto). Linking the TLS
// one costs about 3.6 MB of RSS even for a plain tcp:// uplink (1.7 MB only to map and
// relocate OpenSSL, the rest its initialisation; docs/agent.md, "Paho C loaded at run
// time"), so the agent loads the plain library for a plaintext URI and the TLS one
// only when TLS is configured. A process that already links Paho (a test or a tool that also uses Paho
// C++, which needs the TLS library) keeps using that copy: loading a second library
// with the same symbols into one process would mix their internal state.
#pragma once

#include <MQTTAsync.h>

#include "nova/security/tls_files.h"

#include <string>

namespace nova::agent::detail {

// clang-format off
#define NOVA_PAHO_FUNCTIONS(X) \
  X(MQTTAsync_createWithOptions) X(MQTTAsync_setCallbacks) X(MQTTAsync_setConnected) \
  X(MQTTAsync_connect) X(MQTTAsync_disconnect) X(MQTTAsync_isConnected) X(MQTTAsync_destroy) \
  X(MQTTAsync_subscribeMany) X(MQTTAsync_sendMessage) X(MQTTAsync_freeMessage) X(MQTTAsync_free) \
  X(MQTTAsync_strerror)
// Found through the TLS library's dependencies (libcrypto), never linked by the agent.
#define NOVA_OPENSSL_FUNCTIONS(X) \
  X(BIO_new_file) X(BIO_free) X(PEM_read_bio_X509) X(PEM_read_bio_PrivateKey) X(X509_free) \
  X(EVP_PKEY_free) X(X509_check_private_key)
// clang-format on

struct PahoApi {
  bool tls = false;      // the library is libpaho-mqtt3as: ssl:// and mqtts:// work
  std::string library;   // which file provides it, for logs and errors
#define NOVA_DECLARE(f) decltype(&::f) f = nullptr;
  NOVA_PAHO_FUNCTIONS(NOVA_DECLARE)
};

#undef NOVA_DECLARE

// The calls security::check_tls_files needs, bound by NOVA_OPENSSL_FUNCTIONS' names.
using OpenSslApi = security::OpenSslCalls;

// The API for a plaintext (tls == false) or TLS uplink, loaded once per process and kept
// for its life. Throws std::runtime_error naming the library and the loader's reason.
const PahoApi& paho_api(bool tls);

// libcrypto's functions, from the TLS library's dependencies (loads it if needed).
const OpenSslApi& openssl_api();

}  // namespace nova::agent::detail
