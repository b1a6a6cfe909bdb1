// paho_api.h for a build that links Paho C (libpaho-mqtt3as) and OpenSSL statically:
// the firmware builds (firmware/README.md), whose binary must not load libraries from
// the device's root file system. Every function is bound to the linked copy; plain and
// TLS URIs share it (the TLS library also speaks plain MQTT).
#include "paho_api.h"

#include <openssl/pem.h>
#include <openssl/x509.h>

namespace nova::agent::detail {
namespace {

PahoApi make_paho_api() {
  PahoApi api;
  api.tls = true;
  api.library = "libpaho-mqtt3as (linked statically)";
#define NOVA_BIND(f) api.f = &::f;
  NOVA_PAHO_FUNCTIONS(NOVA_BIND)
  return api;
}

OpenSslApi make_openssl_api() {
  OpenSslApi api;
  NOVA_OPENSSL_FUNCTIONS(NOVA_BIND)
#undef NOVA_BIND
  return api;
}

}  // namespace

const PahoApi& paho_api(bool /*tls*/) {
  static const PahoApi api = make_paho_api();
  return api;
}

const OpenSslApi& openssl_api() {
  static const OpenSslApi api = make_openssl_api();
  return api;
}

}  // namespace nova::agent::detail
