#include "ossl.h"

#include <openssl/err.h>
#include <openssl/pem.h>

namespace nova::security::ossl {

schemas::Error error(std::string path, std::string_view what) {
  std::string reason(what);
  while (const unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    reason += reason.size() == what.size() ? " (" : "; ";
    reason += buf;
  }
  if (reason.size() != what.size()) reason += ')';
  return {std::move(path), std::move(reason)};
}

namespace {

// Runs `write` into a memory BIO and returns what it wrote.
template <class Write>
std::string to_pem(Write write) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get()) != 1) return {};
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

Bio read_bio(std::string_view text) {
  return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

}  // namespace

std::string private_key_pem(EVP_PKEY* key) {
  return to_pem([&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
}
std::string public_key_pem(EVP_PKEY* key) {
  return to_pem([&](BIO* b) { return PEM_write_bio_PUBKEY(b, key); });
}
std::string cert_pem(X509* cert) {
  return to_pem([&](BIO* b) { return PEM_write_bio_X509(b, cert); });
}
std::string crl_pem(X509_CRL* crl) {
  return to_pem([&](BIO* b) { return PEM_write_bio_X509_CRL(b, crl); });
}

Pkey parse_private_key(std::string_view text) {
  auto bio = read_bio(text);
  return Pkey(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
}
Pkey parse_public_key(std::string_view text) {
  auto bio = read_bio(text);
  return Pkey(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr);
}
Cert parse_cert(std::string_view text) {
  auto bio = read_bio(text);
  return Cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
}

}  // namespace nova::security::ossl
