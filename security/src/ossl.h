// The one home of OpenSSL ownership in nova_security: a unique_ptr per OpenSSL type,
// and the translation of OpenSSL's error queue into our Error. Private to the library:
// the public headers speak in files, strings and bytes, never in OpenSSL types.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <string_view>

#include "nova/schemas/result.h"

namespace nova::security::ossl {

template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
template <class T, void (*Free)(T*)>
using Handle = std::unique_ptr<T, Deleter<T, Free>>;

using Pkey = Handle<EVP_PKEY, EVP_PKEY_free>;
using PkeyCtx = Handle<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using MdCtx = Handle<EVP_MD_CTX, EVP_MD_CTX_free>;
using Cert = Handle<X509, X509_free>;
using Crl = Handle<X509_CRL, X509_CRL_free>;
using Revoked = Handle<X509_REVOKED, X509_REVOKED_free>;
using Name = Handle<X509_NAME, X509_NAME_free>;
using Ext = Handle<X509_EXTENSION, X509_EXTENSION_free>;
using Bio = Handle<BIO, BIO_free_all>;
using Bignum = Handle<BIGNUM, BN_clear_free>;
using Integer = Handle<ASN1_INTEGER, ASN1_INTEGER_free>;
using Time = Handle<ASN1_TIME, ASN1_TIME_free>;
using GeneralNames = Handle<GENERAL_NAMES, GENERAL_NAMES_free>;

// An Error at `path` whose reason is `what` followed by OpenSSL's queued reasons (the
// queue is drained, so a later error never reports a stale reason).
schemas::Error error(std::string path, std::string_view what);

// PEM text of a private key (PKCS#8, unencrypted: the file's 0600 mode protects it),
// of a public key, a certificate and a CRL.
std::string private_key_pem(EVP_PKEY* key);
std::string public_key_pem(EVP_PKEY* key);
std::string cert_pem(X509* cert);
std::string crl_pem(X509_CRL* crl);

// Parses the first PEM object of the kind from `text`; null when there is none.
Pkey parse_private_key(std::string_view text);
Pkey parse_public_key(std::string_view text);
Cert parse_cert(std::string_view text);

}  // namespace nova::security::ossl
