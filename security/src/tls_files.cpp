#include "nova/security/tls_files.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <memory>
#include <utility>

namespace nova::security {

std::string_view tls_file_key(TlsFileProblem::File file) {
  switch (file) {
    case TlsFileProblem::File::ca:
      return "mqtt.tls_ca_file";
    case TlsFileProblem::File::cert:
      return "mqtt.tls_cert_file";
    case TlsFileProblem::File::key:
      return "mqtt.tls_key_file";
  }
  return "mqtt.tls_ca_file";
}

bool is_plaintext_uri(std::string_view uri) {
  static constexpr std::array<std::string_view, 3> kTlsSchemes{"ssl://", "mqtts://", "wss://"};
  return std::none_of(kTlsSchemes.begin(), kTlsSchemes.end(),
                      [&](std::string_view scheme) { return uri.starts_with(scheme); });
}

std::optional<TlsFileProblem> check_tls_files(const TlsFiles& files, const OpenSslCalls& ssl) {
  using File = TlsFileProblem::File;
  // Existence and readability first: they need no OpenSSL and give the plainest reason.
  for (const auto& [which, path] : {std::pair{File::ca, &files.ca_file}, std::pair{File::cert, &files.cert_file},
                                    std::pair{File::key, &files.key_file}}) {
    if (path->empty()) return TlsFileProblem{which, "required for a TLS uri (ssl://, mqtts://, wss://)"};
    std::error_code ec;
    if (!std::filesystem::exists(*path, ec)) return TlsFileProblem{which, "'" + *path + "' does not exist"};
    if (!std::ifstream(*path).good()) return TlsFileProblem{which, "'" + *path + "' is not readable"};
  }
  const auto bio = [&](const std::string& path) {
    return std::unique_ptr<BIO, decltype(ssl.BIO_free)>(ssl.BIO_new_file(path.c_str(), "r"), ssl.BIO_free);
  };
  const auto read_cert = [&](const std::string& path) {
    auto in = bio(path);
    return std::unique_ptr<X509, decltype(ssl.X509_free)>(
        in ? ssl.PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr) : nullptr, ssl.X509_free);
  };
  if (!read_cert(files.ca_file)) return TlsFileProblem{File::ca, "'" + files.ca_file + "' holds no PEM certificate"};
  const auto cert = read_cert(files.cert_file);
  if (!cert) return TlsFileProblem{File::cert, "'" + files.cert_file + "' holds no PEM certificate"};
  auto key_in = bio(files.key_file);
  const std::unique_ptr<EVP_PKEY, decltype(ssl.EVP_PKEY_free)> key(
      key_in ? ssl.PEM_read_bio_PrivateKey(key_in.get(), nullptr, nullptr, nullptr) : nullptr, ssl.EVP_PKEY_free);
  if (!key) {
    return TlsFileProblem{File::key, "'" + files.key_file + "' holds no PEM private key (or it is encrypted)"};
  }
  if (ssl.X509_check_private_key(cert.get(), key.get()) != 1) {
    return TlsFileProblem{File::key, "the key in '" + files.key_file + "' does not match the certificate in '" +
                                         files.cert_file + "'"};
  }
  return std::nullopt;
}

}  // namespace nova::security
