#include "nova/security/tls_files.h"

namespace nova::security {

const OpenSslCalls& linked_openssl() {
  static const OpenSslCalls calls{&::BIO_new_file,           &::BIO_free,  &::PEM_read_bio_X509,
                                  &::PEM_read_bio_PrivateKey, &::X509_free, &::EVP_PKEY_free,
                                  &::X509_check_private_key};
  return calls;
}

}  // namespace nova::security
