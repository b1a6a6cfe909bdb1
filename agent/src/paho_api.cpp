#include "paho_api.h"

#include <dlfcn.h>

#include <memory>
#include <mutex>
#include <stdexcept>

namespace nova::agent::detail {
namespace {

constexpr const char* kPlainLibrary = "libpaho-mqtt3a.so.1";
constexpr const char* kTlsLibrary = "libpaho-mqtt3as.so.1";

std::string loader_error() {
  const char* e = ::dlerror();
  return e != nullptr ? e : "unknown error";
}

// Where `symbol` is defined, as a file name ("" if unknown).
std::string library_of(void* symbol) {
  Dl_info info{};
  if (::dladdr(symbol, &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

template <class Api>
void bind_all(Api& api, void* handle, const std::string& library);

template <>
void bind_all(PahoApi& api, void* handle, const std::string& library) {
#define NOVA_BIND(f)                                                                                \
  api.f = reinterpret_cast<decltype(api.f)>(::dlsym(handle, #f));                                   \
  if (api.f == nullptr) throw std::runtime_error(library + ": no symbol " #f ": " + loader_error());
  NOVA_PAHO_FUNCTIONS(NOVA_BIND)
}

template <>
void bind_all(OpenSslApi& api, void* handle, const std::string& library) {
  NOVA_OPENSSL_FUNCTIONS(NOVA_BIND)
#undef NOVA_BIND
}

// The Paho this process links, if any: then it is the only one it may use.
void* linked_paho() { return ::dlsym(RTLD_DEFAULT, "MQTTAsync_createWithOptions"); }

void* open_library(const char* name) {
  void* handle = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    throw std::runtime_error(std::string("cannot load ") + name + " (Debian package libpaho-mqtt1.3): " +
                             loader_error());
  }
  return handle;  // never closed: Paho keeps threads and state for the process's life
}

struct Loaded {
  std::mutex mutex;
  void* tls_handle = nullptr;  // the TLS library (its dependencies hold libcrypto)
  std::unique_ptr<PahoApi> plain, tls;
  std::unique_ptr<OpenSslApi> openssl;
};
Loaded& loaded() {
  static Loaded l;
  return l;
}

// Caller holds loaded().mutex.
void* tls_handle_locked() {
  Loaded& l = loaded();
  if (l.tls_handle != nullptr) return l.tls_handle;
  if (void* linked = linked_paho()) {
    const std::string file = library_of(linked);
    if (file.find("mqtt3as") == std::string::npos) {
      throw std::runtime_error("TLS needs " + std::string(kTlsLibrary) + ", but this process links " +
                               (file.empty() ? std::string("another Paho C library") : file));
    }
    l.tls_handle = RTLD_DEFAULT;
  } else {
    l.tls_handle = open_library(kTlsLibrary);
  }
  return l.tls_handle;
}

}  // namespace

const PahoApi& paho_api(bool tls) {
  Loaded& l = loaded();
  std::lock_guard lock(l.mutex);
  std::unique_ptr<PahoApi>& slot = tls ? l.tls : l.plain;
  if (slot) return *slot;
  auto api = std::make_unique<PahoApi>();
  void* handle = nullptr;
  if (tls) {
    handle = tls_handle_locked();
  } else if (void* linked = linked_paho()) {
    handle = RTLD_DEFAULT;  // whichever Paho the process links also speaks plain MQTT
    api->library = library_of(linked);
  } else {
    handle = open_library(kPlainLibrary);
  }
  bind_all(*api, handle, tls ? kTlsLibrary : kPlainLibrary);
  if (api->library.empty()) api->library = library_of(reinterpret_cast<void*>(api->MQTTAsync_createWithOptions));
  api->tls = api->library.find("mqtt3as") != std::string::npos;
  slot = std::move(api);
  return *slot;
}

const OpenSslApi& openssl_api() {
  Loaded& l = loaded();
  std::lock_guard lock(l.mutex);
  if (l.openssl) return *l.openssl;
  auto api = std::make_unique<OpenSslApi>();
  bind_all(*api, tls_handle_locked(), std::string(kTlsLibrary) + "'s libcrypto");
  l.openssl = std::move(api);
  return *l.openssl;
}

}  // namespace nova::agent::detail
