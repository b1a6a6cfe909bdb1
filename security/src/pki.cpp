#include "nova/security/pki.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <sstream>

#include "files.h"
#include "nova/security/signing.h"
#include "ossl.h"

namespace nova::security {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kOrganization = "NovaCron Edge";
constexpr std::string_view kRootCommonName = "nova-root-ca";
constexpr std::string_view kIntermediatePrefix = "nova-ca.";
constexpr std::size_t kMaxNamePart = 48;
constexpr int kIntermediateCrlDays = 30;
constexpr int kRootCrlDays = 365;
constexpr auto kDay = std::chrono::hours(24);

// --- names ------------------------------------------------------------------------------

bool is_name_part(std::string_view s) {
  return !s.empty() && s.size() <= kMaxNamePart && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

const std::string kPartRule =
    "1.." + std::to_string(kMaxNamePart) + " characters of A-Z a-z 0-9 - _";

std::string in_quotes(std::string_view s) {
  return "'" + std::string(s) + "'";
}

// --- time -------------------------------------------------------------------------------

std::time_t to_time_t(Clock::time_point t) {
  return Clock::to_time_t(t);
}

Clock::time_point from_asn1(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return {};
  return Clock::from_time_t(::timegm(&tm));
}

// --- certificates -----------------------------------------------------------------------

struct Validity {
  Clock::time_point not_before;
  Clock::time_point not_after;
};

Validity days_from(Clock::time_point start, int days) {
  return {start, start + days * kDay};
}

// A CA loaded from its files: the certificate always, the key when it is present.
struct Ca {
  ossl::Cert cert;
  ossl::Pkey key;
  std::string cert_pem;
};

ossl::Ext extension(int nid, const std::string& value, X509V3_CTX* ctx = nullptr) {
  return ossl::Ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
}

ossl::Integer random_serial() {
  // 16 random bytes with the top bit clear: positive, unique without a serial file.
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return nullptr;
  bytes[0] &= 0x7f;
  ossl::Bignum bn(BN_bin2bn(bytes, sizeof bytes, nullptr));
  return ossl::Integer(bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
}

std::string serial_hex(const ASN1_INTEGER* serial) {
  ossl::Bignum bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (!bn) return {};
  char* hex = BN_bn2hex(bn.get());
  std::string out(hex);
  OPENSSL_free(hex);
  return out;
}

std::string common_name_of(const X509_NAME* name) {
  char buf[256] = {};
  X509_NAME_get_text_by_NID(name, NID_commonName, buf, sizeof buf);
  return buf;
}

ossl::Name subject_name(std::string_view cn, std::string_view unit) {
  ossl::Name name(X509_NAME_new());
  auto add = [&](const char* field, std::string_view value) {
    return X509_NAME_add_entry_by_txt(name.get(), field, MBSTRING_UTF8,
                                      reinterpret_cast<const unsigned char*>(value.data()),
                                      static_cast<int>(value.size()), -1, 0) == 1;
  };
  if (!name || !add("O", kOrganization) || !add("OU", unit) || !add("CN", cn)) return nullptr;
  return name;
}

// Signs a certificate for `public_key` with `subject`, adding `extensions` and the
// subject/authority key identifiers. A null issuer makes it self-signed.
schemas::Result<ossl::Cert> sign_certificate(const X509_NAME* subject, EVP_PKEY* public_key,
                                             const Ca* issuer, EVP_PKEY* signing_key,
                                             Validity validity,
                                             const std::vector<ossl::Ext>& extensions) {
  ossl::Cert cert(X509_new());
  ossl::Integer serial = random_serial();
  bool ok =
      cert && serial && X509_set_version(cert.get(), X509_VERSION_3) == 1 &&
      X509_set_serialNumber(cert.get(), serial.get()) == 1 &&
      ASN1_TIME_set(X509_getm_notBefore(cert.get()), to_time_t(validity.not_before)) != nullptr &&
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), to_time_t(validity.not_after)) != nullptr &&
      X509_set_subject_name(cert.get(), subject) == 1 &&
      X509_set_issuer_name(cert.get(),
                           issuer ? X509_get_subject_name(issuer->cert.get()) : subject) == 1 &&
      X509_set_pubkey(cert.get(), public_key) == 1;
  for (const auto& ext : extensions) ok = ok && ext && X509_add_ext(cert.get(), ext.get(), -1) == 1;
  if (ok) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer->cert.get() : cert.get(), cert.get(), nullptr, nullptr, 0);
    // SKI first: a self-signed certificate's AKI is taken from its own SKI.
    auto ski = extension(NID_subject_key_identifier, "hash", &ctx);
    ok = ski && X509_add_ext(cert.get(), ski.get(), -1) == 1;
    auto aki = extension(NID_authority_key_identifier, "keyid:always", &ctx);
    ok = ok && aki && X509_add_ext(cert.get(), aki.get(), -1) == 1;
  }
  ok = ok && X509_sign(cert.get(), signing_key, EVP_sha256()) > 0;
  if (!ok) return ossl::error(common_name_of(subject), "cannot make the certificate");
  return cert;
}

std::vector<ossl::Ext> ca_extensions(bool intermediate) {
  std::vector<ossl::Ext> out;
  out.push_back(extension(NID_basic_constraints,
                          intermediate ? "critical,CA:TRUE,pathlen:0" : "critical,CA:TRUE"));
  out.push_back(extension(NID_key_usage, "critical,keyCertSign,cRLSign"));
  return out;
}

CertificateInfo info_of(X509* cert) {
  CertificateInfo info;
  info.common_name = common_name_of(X509_get_subject_name(cert));
  info.issuer_common_name = common_name_of(X509_get_issuer_name(cert));
  info.serial_hex = serial_hex(X509_get0_serialNumber(cert));
  info.not_before = from_asn1(X509_get0_notBefore(cert));
  info.not_after = from_asn1(X509_get0_notAfter(cert));
  info.is_ca = X509_check_ca(cert) != 0;
  ossl::GeneralNames names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type == GEN_DNS) {
      const ASN1_IA5STRING* dns = name->d.dNSName;
      info.subject_alt_names.push_back("DNS:" +
                                       std::string(reinterpret_cast<const char*>(dns->data),
                                                   static_cast<std::size_t>(dns->length)));
    } else if (name->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      char text[INET6_ADDRSTRLEN] = {};
      const int family = ip->length == 4 ? AF_INET : AF_INET6;
      if (ip->length == 4 || ip->length == 16) ::inet_ntop(family, ip->data, text, sizeof text);
      info.subject_alt_names.push_back(std::string("IP:") + text);
    }
  }
  return info;
}

schemas::Result<ossl::Cert> load_cert(const fs::path& file) {
  auto text = files::read(file);
  if (!text) return text.error();
  ossl::Cert cert = ossl::parse_cert(*text);
  if (!cert) return ossl::error(file.string(), "not a PEM certificate");
  return cert;
}

schemas::Result<ossl::Pkey> load_key(const fs::path& file) {
  auto text = files::read(file);
  if (!text) return text.error();
  ossl::Pkey key = ossl::parse_private_key(*text);
  if (!key) return ossl::error(file.string(), "not a PEM private key");
  return key;
}

// Loads a CA; `why` ends the error when its key is absent (e.g. "to issue leaves").
schemas::Result<Ca> load_ca(const fs::path& cert_file, const fs::path& key_file,
                            std::string_view why) {
  auto cert = load_cert(cert_file);
  if (!cert) return cert.error();
  auto key = load_key(key_file);
  if (!key) {
    if (key.error().reason != "not present") return key.error();
    return schemas::Error{key_file.string(),
                          "not present: the CA key is needed " + std::string(why)};
  }
  Ca ca{std::move(cert).value(), std::move(key).value(), {}};
  ca.cert_pem = ossl::cert_pem(ca.cert.get());
  return ca;
}

// --- revocation lists -------------------------------------------------------------------

struct RevokedEntry {
  std::string serial_hex;
  std::int64_t when = 0;
  std::string name;
};

// revoked.tsv: one "serial<TAB>unix time<TAB>name" line per revoked certificate.
std::vector<RevokedEntry> read_revoked(const fs::path& file) {
  std::vector<RevokedEntry> out;
  auto text = files::read(file);
  if (!text) return out;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    RevokedEntry e;
    if (std::getline(fields, e.serial_hex, '\t') && fields >> e.when) {
      fields.ignore(1);
      std::getline(fields, e.name);
      out.push_back(std::move(e));
    }
  }
  return out;
}

schemas::Status append_revoked(const fs::path& file, const RevokedEntry& entry) {
  auto text = files::read(file);
  std::string content = text ? *text : std::string();
  content += entry.serial_hex + '\t' + std::to_string(entry.when) + '\t' + entry.name + '\n';
  return files::write_atomic(file, content, files::kPublic);
}

// The CRL number must grow with every CRL a CA issues: one more than the last, or the
// current time if that is larger (so a lost CRL file never makes it go backwards).
ossl::Integer next_crl_number(const fs::path& crl_file, std::time_t now) {
  std::int64_t number = now;
  if (auto text = files::read(crl_file)) {
    ossl::Bio bio(BIO_new_mem_buf(text->data(), static_cast<int>(text->size())));
    ossl::Crl old(bio ? PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (old) {
      ossl::Integer previous(static_cast<ASN1_INTEGER*>(
          X509_CRL_get_ext_d2i(old.get(), NID_crl_number, nullptr, nullptr)));
      std::int64_t value = 0;
      if (previous && ASN1_INTEGER_get_int64(&value, previous.get()) == 1)
        number = std::max(number, value + 1);
    }
  }
  ossl::Integer out(ASN1_INTEGER_new());
  if (out) ASN1_INTEGER_set_int64(out.get(), number);
  return out;
}

schemas::Status write_crl(const Ca& ca, const fs::path& revoked_file, const fs::path& crl_file,
                          int days) {
  const std::time_t now = to_time_t(Clock::now());
  ossl::Crl crl(X509_CRL_new());
  ossl::Time last(ASN1_TIME_set(nullptr, now));
  ossl::Time next(ASN1_TIME_set(nullptr, now + static_cast<std::time_t>(days) * 86400));
  ossl::Integer number = next_crl_number(crl_file, now);
  bool ok = crl && last && next && number &&
            X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) == 1 &&
            X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.cert.get())) == 1 &&
            X509_CRL_set1_lastUpdate(crl.get(), last.get()) == 1 &&
            X509_CRL_set1_nextUpdate(crl.get(), next.get()) == 1;
  for (const auto& entry : read_revoked(revoked_file)) {
    if (!ok) break;
    ossl::Revoked revoked(X509_REVOKED_new());
    BIGNUM* raw_bn = nullptr;
    const bool parsed = BN_hex2bn(&raw_bn, entry.serial_hex.c_str()) > 0;
    ossl::Bignum bn(raw_bn);
    ossl::Integer serial(parsed ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
    ossl::Time when(ASN1_TIME_set(nullptr, static_cast<std::time_t>(entry.when)));
    ok = revoked && serial && when &&
         X509_REVOKED_set_serialNumber(revoked.get(), serial.get()) == 1 &&
         X509_REVOKED_set_revocationDate(revoked.get(), when.get()) == 1 &&
         X509_CRL_add0_revoked(crl.get(), revoked.get()) == 1;
    if (ok) revoked.release();  // the CRL owns it now
  }
  if (ok) {
    X509_CRL_sort(crl.get());
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca.cert.get(), nullptr, nullptr, crl.get(), 0);
    auto aki = extension(NID_authority_key_identifier, "keyid:always", &ctx);
    ok = aki && X509_CRL_add_ext(crl.get(), aki.get(), -1) == 1 &&
         X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, 0) == 1 &&
         X509_CRL_sign(crl.get(), ca.key.get(), EVP_sha256()) > 0;
  }
  if (!ok) return ossl::error(crl_file.string(), "cannot make the CRL");
  return files::write_atomic(crl_file, ossl::crl_pem(crl.get()), files::kPublic);
}

// The region an intermediate's CN names, or empty.
std::string region_of_issuer(std::string_view issuer_cn) {
  if (!issuer_cn.starts_with(kIntermediatePrefix)) return {};
  return std::string(issuer_cn.substr(kIntermediatePrefix.size()));
}

schemas::Status check_subject_alt_name(std::string_view san) {
  const schemas::Error bad{"san", in_quotes(san) + ": expected DNS:<name> or IP:<address>"};
  if (san.starts_with("IP:")) {
    const std::string ip(san.substr(3));
    unsigned char buf[16];
    if (::inet_pton(AF_INET, ip.c_str(), buf) != 1 && ::inet_pton(AF_INET6, ip.c_str(), buf) != 1)
      return bad;
    return schemas::Ok{};
  }
  if (san.starts_with("DNS:")) {
    const auto name = san.substr(4);
    const bool ok =
        !name.empty() && name.size() <= 253 && std::all_of(name.begin(), name.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_' || c == '*';
        });
    return ok ? schemas::Status(schemas::Ok{}) : bad;
  }
  return bad;
}

std::vector<ossl::Ext> leaf_extensions(Role role, std::string_view name,
                                       const std::vector<std::string>& extra_sans) {
  std::vector<ossl::Ext> out;
  out.push_back(extension(NID_basic_constraints, "critical,CA:FALSE"));
  out.push_back(extension(NID_key_usage, "critical,digitalSignature"));
  out.push_back(extension(NID_ext_key_usage, role == Role::broker ? "serverAuth" : "clientAuth"));
  if (role == Role::broker) {
    std::vector<std::string> sans{"DNS:" + std::string(name), "DNS:localhost", "IP:127.0.0.1"};
    for (const auto& san : extra_sans) {
      if (std::find(sans.begin(), sans.end(), san) == sans.end()) sans.push_back(san);
    }
    std::string value;
    for (const auto& san : sans) value += (value.empty() ? "" : ",") + san;
    out.push_back(extension(NID_subject_alt_name, value));
  }
  return out;
}

// The leaf's cert.pem: the leaf, then its issuer, so a TLS peer gets the whole chain up
// to (not including) the trust anchor.
std::string leaf_file_content(X509* leaf, const Ca& issuer) {
  return ossl::cert_pem(leaf) + issuer.cert_pem;
}

}  // namespace

// --- names ------------------------------------------------------------------------------

std::string_view role_name(Role role) {
  switch (role) {
    case Role::broker:
      return "broker";
    case Role::bridge:
      return "bridge";
    case Role::node:
      return "node";
    case Role::sensor:
      return "sensor";
    case Role::cloud:
      return "cloud";
    case Role::operator_:
      return "operator";
  }
  return "?";
}

Result<Role> parse_role(std::string_view text) {
  for (Role r :
       {Role::broker, Role::bridge, Role::node, Role::sensor, Role::cloud, Role::operator_}) {
    if (role_name(r) == text) return r;
  }
  return Error{"role",
               in_quotes(text) + " is not one of broker, bridge, node, sensor, cloud, operator"};
}

Result<std::string> common_name(Role role, std::string_view name) {
  const std::string n(name);
  switch (role) {
    case Role::sensor: {
      const auto dot = name.find('.');
      if (dot == std::string_view::npos || !is_name_part(name.substr(0, dot)) ||
          !is_name_part(name.substr(dot + 1))) {
        return Error{"name", in_quotes(name) + ": a sensor is <node>.<sensor>, each " + kPartRule};
      }
      return "sensor." + n;
    }
    case Role::cloud: {
      constexpr std::string_view base = "nova-cloud";
      if (name == base ||
          (name.starts_with("nova-cloud.") && is_name_part(name.substr(base.size() + 1))))
        return n;
      return Error{"name",
                   in_quotes(name) +
                       ": a cloud identity is nova-cloud or nova-cloud.<instance>, the instance " +
                       kPartRule};
    }
    default:
      break;
  }
  if (!is_name_part(name)) return Error{"name", in_quotes(name) + ": expected " + kPartRule};
  if (role == Role::bridge) return "bridge." + n;
  if (role == Role::operator_) return "operator." + n;
  return n;
}

Status check_region(std::string_view region) {
  if (!is_name_part(region)) return Error{"region", in_quotes(region) + ": expected " + kPartRule};
  return schemas::Ok{};
}

Result<CertificateInfo> read_certificate(const fs::path& pem_file) {
  auto cert = load_cert(pem_file);
  if (!cert) return cert.error();
  return info_of(cert->get());
}

// --- Pki --------------------------------------------------------------------------------

Result<Pki> Pki::open(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Error{dir.string(), "cannot create directory: " + ec.message()};
  const fs::path lock = dir / ".lock";
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Error{lock.string(), std::string("cannot open: ") + std::strerror(errno)};
  while (::flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      const int saved = errno;
      ::close(fd);
      return Error{lock.string(), std::string("cannot lock: ") + std::strerror(saved)};
    }
  }
  return Pki(Layout(dir), fd);
}

Pki::Pki(Pki&& other) noexcept
    : layout_(std::move(other.layout_)), lock_fd_(std::exchange(other.lock_fd_, -1)) {}
Pki& Pki::operator=(Pki&& other) noexcept {
  if (this != &other) {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    layout_ = std::move(other.layout_);
    lock_fd_ = std::exchange(other.lock_fd_, -1);
  }
  return *this;
}
Pki::~Pki() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

bool Pki::has_root() const {
  return fs::exists(layout_.root_cert());
}
bool Pki::has_intermediate(std::string_view region) const {
  return fs::exists(layout_.ca_cert(region));
}
bool Pki::has_identity(std::string_view cn) const {
  return fs::exists(layout_.identity_cert(cn));
}

namespace {
std::vector<std::string> subdirectories(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_directory()) out.push_back(entry.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::vector<std::string> Pki::regions() const {
  return subdirectories(layout_.cas_dir());
}
std::vector<std::string> Pki::identities() const {
  return subdirectories(layout_.identities_dir());
}

Result<CertificateInfo> Pki::init_root(int days) {
  if (days < 1) return Error{"days", "must be at least 1"};
  if (has_root())
    return Error{"dir", "a root CA already exists (" + layout_.root_cert().string() + ")"};
  if (auto s = files::make_private_dir(layout_.root_dir()); !s) return s.error();
  std::error_code ec;
  fs::create_directories(layout_.trust_ca().parent_path(), ec);
  if (ec)
    return Error{layout_.trust_ca().parent_path().string(),
                 "cannot create directory: " + ec.message()};

  Ca root;
  root.key.reset(EVP_EC_gen("P-256"));
  if (!root.key) return ossl::error("root", "key generation failed");
  auto name = subject_name(kRootCommonName, "root");
  auto cert = sign_certificate(name.get(), root.key.get(), nullptr, root.key.get(),
                               days_from(Clock::now(), days), ca_extensions(false));
  if (!cert) return cert.error();
  root.cert = std::move(cert).value();
  const std::string pem = ossl::cert_pem(root.cert.get());
  // The key first: a root certificate without its key would be a dead end.
  if (auto s = files::write_atomic(layout_.root_key(), ossl::private_key_pem(root.key.get()),
                                   files::kPrivate);
      !s)
    return s.error();
  if (auto s = files::write_atomic(layout_.root_cert(), pem, files::kPublic); !s) return s.error();
  if (auto s = write_crl(root, layout_.root_revoked(), layout_.root_crl(), kRootCrlDays); !s)
    return s.error();
  if (auto s = files::write_atomic(layout_.trust_ca(), pem, files::kPublic); !s) return s.error();
  if (auto s = write_crl_bundle(); !s) return s.error();
  return info_of(root.cert.get());
}

Result<CertificateInfo> Pki::init_intermediate(std::string_view region, int days) {
  if (auto s = check_region(region); !s) return s.error();
  if (days < 1) return Error{"days", "must be at least 1"};
  if (has_intermediate(region)) {
    return Error{"region", in_quotes(region) + " already has an intermediate CA (" +
                               layout_.ca_cert(region).string() + ")"};
  }
  auto root = load_ca(layout_.root_cert(), layout_.root_key(),
                      "to make an intermediate (bring the offline root back)");
  if (!root) return root.error();
  if (auto s = files::make_private_dir(layout_.ca_dir(region)); !s) return s.error();

  Ca ca;
  ca.key.reset(EVP_EC_gen("P-256"));
  if (!ca.key) return ossl::error("region", "key generation failed");
  auto name = subject_name(std::string(kIntermediatePrefix) + std::string(region),
                           "region " + std::string(region));
  auto cert = sign_certificate(name.get(), ca.key.get(), &*root, root->key.get(),
                               days_from(Clock::now(), days), ca_extensions(true));
  if (!cert) return cert.error();
  ca.cert = std::move(cert).value();
  if (auto s = files::write_atomic(layout_.ca_key(region), ossl::private_key_pem(ca.key.get()),
                                   files::kPrivate);
      !s)
    return s.error();
  if (auto s = files::write_atomic(layout_.ca_cert(region), ossl::cert_pem(ca.cert.get()),
                                   files::kPublic);
      !s)
    return s.error();
  if (auto s =
          write_crl(ca, layout_.ca_revoked(region), layout_.ca_crl(region), kIntermediateCrlDays);
      !s)
    return s.error();
  if (auto s = write_crl_bundle(); !s) return s.error();
  return info_of(ca.cert.get());
}

Result<CertificateInfo> Pki::issue(const IssueRequest& request) {
  auto cn = common_name(request.role, request.name);
  if (!cn) return cn.error();
  if (auto s = check_region(request.region); !s) return s.error();
  if (request.days < 1)
    return Error{"days", "must be at least 1, got " + std::to_string(request.days)};
  if (request.backdate_days < 0) return Error{"backdate", "must not be negative"};
  if (!request.subject_alt_names.empty() && request.role != Role::broker) {
    return Error{"san", "only a broker certificate carries subjectAltNames"};
  }
  for (const auto& san : request.subject_alt_names) {
    if (auto s = check_subject_alt_name(san); !s) return s.error();
  }
  if (has_identity(*cn)) {
    return Error{"name",
                 "identity " + in_quotes(*cn) + " is already issued (renew or revoke it first)"};
  }
  if (!has_intermediate(request.region)) {
    return Error{"region", "no intermediate CA for region " + in_quotes(request.region) +
                               " (run init-intermediate --region " + request.region + ")"};
  }
  auto ca =
      load_ca(layout_.ca_cert(request.region), layout_.ca_key(request.region), "to issue leaves");
  if (!ca) return ca.error();

  ossl::Pkey key(EVP_EC_gen("P-256"));
  if (!key) return ossl::error(*cn, "key generation failed");
  auto name = subject_name(*cn, role_name(request.role));
  const auto start = Clock::now() - request.backdate_days * kDay;
  auto cert =
      sign_certificate(name.get(), key.get(), &*ca, ca->key.get(), days_from(start, request.days),
                       leaf_extensions(request.role, request.name, request.subject_alt_names));
  if (!cert) return cert.error();
  if (auto s = files::make_private_dir(layout_.identity_dir(*cn)); !s) return s.error();
  if (auto s = files::write_atomic(layout_.identity_key(*cn), ossl::private_key_pem(key.get()),
                                   files::kPrivate);
      !s)
    return s.error();
  if (auto s = files::write_atomic(layout_.identity_cert(*cn), leaf_file_content(cert->get(), *ca),
                                   files::kPublic);
      !s)
    return s.error();
  return info_of(cert->get());
}

Status Pki::revoke_identity(std::string_view cn) {
  if (!has_identity(cn))
    return Error{"name", "no identity " + in_quotes(cn) + " in " + layout_.dir().string()};
  auto cert = load_cert(layout_.identity_cert(cn));
  if (!cert) return cert.error();
  const auto info = info_of(cert->get());
  const std::string region = region_of_issuer(info.issuer_common_name);
  if (region.empty() || !has_intermediate(region)) {
    return Error{layout_.identity_cert(cn).string(),
                 "issuer " + in_quotes(info.issuer_common_name) + " is not a CA here"};
  }
  auto ca = load_ca(layout_.ca_cert(region), layout_.ca_key(region), "to revoke its leaves");
  if (!ca) return ca.error();
  const RevokedEntry entry{info.serial_hex, to_time_t(Clock::now()), std::string(cn)};
  if (auto s = append_revoked(layout_.ca_revoked(region), entry); !s) return s;
  if (auto s =
          write_crl(*ca, layout_.ca_revoked(region), layout_.ca_crl(region), kIntermediateCrlDays);
      !s)
    return s;
  if (auto s = write_crl_bundle(); !s) return s;
  std::error_code ec;
  fs::remove_all(layout_.identity_dir(cn), ec);
  if (ec)
    return Error{layout_.identity_dir(cn).string(), "revoked, but cannot delete: " + ec.message()};
  return schemas::Ok{};
}

Status Pki::revoke_intermediate(std::string_view region) {
  if (auto s = check_region(region); !s) return s;
  if (!has_intermediate(region))
    return Error{"region", "no intermediate CA for region " + in_quotes(region)};
  auto cert = load_cert(layout_.ca_cert(region));
  if (!cert) return cert.error();
  const auto info = info_of(cert->get());
  auto root = load_ca(layout_.root_cert(), layout_.root_key(),
                      "to revoke an intermediate (bring the offline root back)");
  if (!root) return root.error();
  const RevokedEntry entry{info.serial_hex, to_time_t(Clock::now()), std::string(region)};
  if (auto s = append_revoked(layout_.root_revoked(), entry); !s) return s;
  if (auto s = write_crl(*root, layout_.root_revoked(), layout_.root_crl(), kRootCrlDays); !s)
    return s;
  // The revoked CA's folder moves aside, so init-intermediate can make the region a new one.
  const fs::path aside =
      layout_.dir() / "revoked" / ("ca-" + std::string(region) + "-" + info.serial_hex);
  std::error_code ec;
  fs::create_directories(aside.parent_path(), ec);
  if (!ec) fs::rename(layout_.ca_dir(region), aside, ec);
  if (ec)
    return Error{layout_.ca_dir(region).string(),
                 "revoked, but cannot move aside: " + ec.message()};
  return write_crl_bundle();
}

Status Pki::regenerate_crls() {
  if (fs::exists(layout_.root_key())) {
    auto root = load_ca(layout_.root_cert(), layout_.root_key(), "");
    if (!root) return root.error();
    if (auto s = write_crl(*root, layout_.root_revoked(), layout_.root_crl(), kRootCrlDays); !s)
      return s;
  }
  for (const auto& region : regions()) {
    if (!fs::exists(layout_.ca_key(region))) continue;
    auto ca = load_ca(layout_.ca_cert(region), layout_.ca_key(region), "");
    if (!ca) return ca.error();
    if (auto s = write_crl(*ca, layout_.ca_revoked(region), layout_.ca_crl(region),
                           kIntermediateCrlDays);
        !s)
      return s;
  }
  return write_crl_bundle();
}

Status Pki::revoke_lost_intermediate(std::string_view region, const fs::path& ca_cert_file) {
  if (auto s = check_region(region); !s) return s;
  auto text = files::read(ca_cert_file);
  if (!text) return Error{"ca-cert", text.error().message()};
  // The file may be a leaf's cert.pem (leaf, then its intermediate) or the CA's own.
  const std::string cn = std::string(kIntermediatePrefix) + std::string(region);
  ossl::Cert found;
  ossl::Bio bio(BIO_new_mem_buf(text->data(), static_cast<int>(text->size())));
  while (bio) {
    ossl::Cert next(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!next) break;
    if (info_of(next.get()).is_ca && common_name_of(X509_get_subject_name(next.get())) == cn) {
      found = std::move(next);
      break;
    }
  }
  ERR_clear_error();  // the end of the file reads as an error
  if (!found) {
    return Error{"ca-cert", ca_cert_file.string() + " holds no CA certificate " + in_quotes(cn)};
  }
  auto root = load_ca(layout_.root_cert(), layout_.root_key(),
                      "to revoke an intermediate (bring the offline root back)");
  if (!root) return root.error();
  if (X509_verify(found.get(), X509_get0_pubkey(root->cert.get())) != 1) {
    ERR_clear_error();
    return Error{"ca-cert", in_quotes(cn) + " in " + ca_cert_file.string() + " was not signed by this PKI's root"};
  }
  const std::string serial = info_of(found.get()).serial_hex;
  if (has_intermediate(region)) {
    auto current = load_cert(layout_.ca_cert(region));
    if (current && info_of(current->get()).serial_hex == serial) return revoke_intermediate(region);
  }
  for (const auto& entry : read_revoked(layout_.root_revoked())) {
    if (entry.serial_hex == serial)
      return Error{"ca-cert", in_quotes(cn) + " serial " + serial + " is already on the root's CRL"};
  }
  const RevokedEntry entry{serial, to_time_t(Clock::now()), std::string(region)};
  if (auto s = append_revoked(layout_.root_revoked(), entry); !s) return s;
  if (auto s = write_crl(*root, layout_.root_revoked(), layout_.root_crl(), kRootCrlDays); !s)
    return s;
  return write_crl_bundle();
}

Status Pki::write_crl_bundle() {
  std::string bundle;
  auto add = [&](const fs::path& file) -> Status {
    auto text = files::read(file);
    if (!text) return text.error();
    bundle += *text;
    return schemas::Ok{};
  };
  if (auto s = add(layout_.root_crl()); !s) return s;
  for (const auto& region : regions()) {
    if (auto s = add(layout_.ca_crl(region)); !s) return s;
  }
  return files::write_atomic(layout_.trust_crl(), bundle, files::kPublic);
}

namespace {
// Re-signs the leaf `old` of `cn` with `ca`: same key, subject and extensions (the key
// identifiers are made afresh by sign_certificate), a new serial, the same validity
// length starting `now`. cert.pem is replaced atomically.
schemas::Result<CertificateInfo> reissue_leaf(const Layout& layout, std::string_view cn, X509* old,
                                              const Ca& ca, Clock::time_point now) {
  auto key = load_key(layout.identity_key(cn));
  if (!key) return key.error();
  std::vector<ossl::Ext> extensions;
  for (int i = 0; i < X509_get_ext_count(old); ++i) {
    X509_EXTENSION* ext = X509_get_ext(old, i);
    const int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
    if (nid != NID_subject_key_identifier && nid != NID_authority_key_identifier) {
      extensions.emplace_back(X509_EXTENSION_dup(ext));
    }
  }
  const auto info = info_of(old);
  const auto length = info.not_after - info.not_before;
  auto cert = sign_certificate(X509_get_subject_name(old), key->get(), &ca, ca.key.get(),
                               {now, now + length}, extensions);
  if (!cert) return cert.error();
  if (auto s = files::write_atomic(layout.identity_cert(cn), leaf_file_content(cert->get(), ca),
                                   files::kPublic);
      !s)
    return s.error();
  return info_of(cert->get());
}
}  // namespace

RenewReport Pki::renew(std::chrono::seconds within, Clock::time_point now) {
  RenewReport report;
  std::map<std::string, Ca, std::less<>> cas;  // loaded once per region
  for (const auto& cn : identities()) {
    auto fail = [&](const Error& e) { report.failed.push_back({cn, e.message()}); };
    auto old = load_cert(layout_.identity_cert(cn));
    if (!old) {
      fail(old.error());
      continue;
    }
    const auto info = info_of(old->get());
    const std::string region = region_of_issuer(info.issuer_common_name);
    if (region.empty() || !has_intermediate(region)) {
      fail({"", "issuer " + in_quotes(info.issuer_common_name) + " is not a CA here"});
      continue;
    }
    const bool expiring = info.not_after - now <= within;
    auto current = load_cert(layout_.ca_cert(region));
    if (!current) {
      fail(current.error());
      continue;
    }
    // X509_check_issued compares names and key identifiers: a replaced CA does not match.
    const bool orphaned = X509_check_issued(current->get(), old->get()) != X509_V_OK;
    if (!expiring && !orphaned) continue;
    auto ca_it = cas.find(region);
    if (ca_it == cas.end()) {
      auto ca = load_ca(layout_.ca_cert(region), layout_.ca_key(region), "to renew its leaves");
      if (!ca) {
        fail(ca.error());
        continue;
      }
      ca_it = cas.emplace(region, std::move(ca).value()).first;
    }
    auto renewed = reissue_leaf(layout_, cn, old->get(), ca_it->second, now);
    if (!renewed) {
      fail(renewed.error());
      continue;
    }
    report.renewed.push_back(std::move(renewed).value());
  }
  return report;
}

Result<CertificateInfo> Pki::renew_identity(std::string_view cn, Clock::time_point now) {
  if (!has_identity(cn))
    return Error{"name", "no identity " + in_quotes(cn) + " in " + layout_.dir().string()};
  auto old = load_cert(layout_.identity_cert(cn));
  if (!old) return old.error();
  const auto info = info_of(old->get());
  const std::string region = region_of_issuer(info.issuer_common_name);
  if (region.empty() || !has_intermediate(region)) {
    return Error{layout_.identity_cert(cn).string(),
                 "issuer " + in_quotes(info.issuer_common_name) + " is not a CA here"};
  }
  auto ca = load_ca(layout_.ca_cert(region), layout_.ca_key(region), "to renew its leaves");
  if (!ca) return ca.error();
  return reissue_leaf(layout_, cn, old->get(), *ca, now);
}

Status Pki::export_identity(std::string_view cn, const fs::path& to) {
  if (!has_identity(cn))
    return Error{"name", "no identity " + in_quotes(cn) + " in " + layout_.dir().string()};
  if (auto s = files::make_private_dir(to); !s) return s;
  struct Copy {
    fs::path from;
    std::string_view to;
    mode_t mode;
  };
  for (const Copy& c : {Copy{layout_.identity_key(cn), Layout::kExportKey, files::kPrivate},
                        Copy{layout_.identity_cert(cn), Layout::kExportCert, files::kPublic},
                        Copy{layout_.trust_ca(), Layout::kExportCa, files::kPublic},
                        Copy{layout_.trust_crl(), Layout::kExportCrl, files::kPublic}}) {
    auto text = files::read(c.from);
    if (!text) return text.error();
    if (auto s = files::write_atomic(to / c.to, *text, c.mode); !s) return s;
  }
  return schemas::Ok{};
}

Status Pki::create_signing_key(std::string_view name) {
  if (!is_name_part(name)) return Error{"name", in_quotes(name) + ": expected " + kPartRule};
  if (fs::exists(layout_.signing_key(name))) {
    return Error{"name", "signing key " + in_quotes(name) + " already exists (" +
                             layout_.signing_key(name).string() + ")"};
  }
  if (auto s = files::make_private_dir(layout_.signing_dir()); !s) return s;
  auto key = SigningKey::generate();
  if (!key) return key.error();
  return key->save(layout_.signing_key(name), layout_.signing_public_key(name));
}

}  // namespace nova::security
