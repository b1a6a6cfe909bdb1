#include "nova/testing/test_pki.h"

#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <vector>

#include "nova/security/pki.h"

namespace nova::testing {
namespace {

constexpr const char* kRegion = "test";
constexpr const char* kBrokerName = "test-broker";

[[noreturn]] void fail(const std::string& what, const std::string& why) {
  throw std::runtime_error("test PKI: " + what + ": " + why);
}

security::Role client_role(const std::string& cn) {
  return cn == "nova-cloud" || cn.starts_with("nova-cloud.") ? security::Role::cloud : security::Role::node;
}

// A root and the test region's intermediate in `dir`.
security::Pki make_pki(const std::filesystem::path& dir) {
  auto opened = security::Pki::open(dir);
  if (!opened) fail("open " + dir.string(), opened.error().message());
  security::Pki pki = std::move(opened).value();
  if (auto root = pki.init_root(30); !root) fail("root", root.error().message());
  if (auto ca = pki.init_intermediate(kRegion, 30); !ca) fail("intermediate", ca.error().message());
  return pki;
}

TlsIdentity issue(security::Pki& pki, security::Role role, const std::string& name) {
  auto cn = security::common_name(role, name);
  if (!cn) fail(name, cn.error().message());
  if (!pki.has_identity(*cn)) {
    security::IssueRequest request;
    request.role = role;
    request.name = name;
    request.region = kRegion;
    request.days = 30;
    if (auto issued = pki.issue(request); !issued) fail(*cn, issued.error().message());
  }
  const security::Layout& l = pki.layout();
  return {l.trust_ca(), l.identity_cert(*cn), l.identity_key(*cn)};
}

class ProcessPki {
 public:
  ProcessPki() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
    pattern += "/nova-test-pki-XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (::mkdtemp(buffer.data()) == nullptr) throw std::runtime_error("test PKI: mkdtemp " + pattern + " failed");
    dir_ = buffer.data();
    pki_.emplace(make_pki(dir_ / "pki"));
  }
  ~ProcessPki() {
    pki_.reset();  // releases the folder's lock
    if (std::getenv("NOVA_KEEP_TEST_DIRS") != nullptr) {
      std::cerr << "nova::testing test PKI: kept " << dir_.string() << "\n";
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  TlsIdentity identity(security::Role role, const std::string& name) {
    std::lock_guard lock(mutex_);
    return issue(*pki_, role, name);
  }

  std::filesystem::path crl() const { return pki_->layout().trust_crl(); }

 private:
  std::mutex mutex_;
  std::filesystem::path dir_;
  std::optional<security::Pki> pki_;
};

ProcessPki& process_pki() {
  static ProcessPki pki;  // made on first use, removed at exit
  return pki;
}

}  // namespace

TlsIdentity client_identity(const std::string& cn) { return process_pki().identity(client_role(cn), cn); }

TlsIdentity foreign_identity(const std::filesystem::path& dir, const std::string& cn) {
  security::Pki pki = make_pki(dir);
  return issue(pki, client_role(cn), cn);
}

TlsIdentity broker_identity() { return process_pki().identity(security::Role::broker, kBrokerName); }

std::optional<security::TlsFiles> tls_files_for(const std::string& uri, const std::string& cn) {
  if (security::is_plaintext_uri(uri)) return std::nullopt;
  const TlsIdentity id = client_identity(cn);
  return security::TlsFiles{id.ca.string(), id.cert.string(), id.key.string()};
}

std::string mosquitto_tls_args(const std::string& uri, const std::string& cn) {
  const auto files = tls_files_for(uri, cn);
  if (!files) return "";
  return " --cafile '" + files->ca_file + "' --cert '" + files->cert_file + "' --key '" + files->key_file + "'";
}

std::filesystem::path test_pki_crl() {
  broker_identity();  // the CRL bundle exists once the PKI does
  return process_pki().crl();
}

}  // namespace nova::testing
