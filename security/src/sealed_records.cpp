#include "nova/security/sealed_records.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "files.h"
#include "ossl.h"

namespace nova::security {
namespace {

constexpr std::size_t kIdBytes = 4;
constexpr std::size_t kNonceBytes = 12;
constexpr std::size_t kTagBytes = 16;
constexpr std::size_t kHeaderBytes = 1 + kIdBytes + kNonceBytes;

using CipherCtx = ossl::Handle<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;
using Kdf = ossl::Handle<EVP_KDF, EVP_KDF_free>;
using KdfCtx = ossl::Handle<EVP_KDF_CTX, EVP_KDF_CTX_free>;

const unsigned char* bytes_of(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
unsigned char* bytes_of(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

std::string hex8(std::uint32_t id) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", id);
  return buf;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The header is authenticated too: a changed key id or format byte fails like any byte.
bool crypt(bool encrypt, const StorageKey& key, std::string_view header, std::string_view associated,
           std::string_view in, std::string& out, unsigned char* tag) {
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  const auto* nonce = bytes_of(header.substr(1 + kIdBytes, kNonceBytes));
  int n = 0;
  if (!ctx || EVP_CipherInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.bytes.data(), nonce, encrypt) != 1) {
    return false;
  }
  if (!encrypt && EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag) != 1) return false;
  const std::string length = std::to_string(associated.size()) + ":";  // store|key cannot shift into each other
  for (std::string_view part : {header, std::string_view(length), associated}) {
    if (!part.empty() && EVP_CipherUpdate(ctx.get(), nullptr, &n, bytes_of(part), static_cast<int>(part.size())) != 1) {
      return false;
    }
  }
  out.resize(in.size());
  if (!in.empty() && EVP_CipherUpdate(ctx.get(), bytes_of(out), &n, bytes_of(in), static_cast<int>(in.size())) != 1) {
    return false;
  }
  if (EVP_CipherFinal_ex(ctx.get(), bytes_of(out) + n, &n) != 1) return false;
  return !encrypt || EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) == 1;
}

}  // namespace

StorageKey StorageKey::from_bytes(const std::array<unsigned char, kStorageKeyBytes>& bytes) {
  StorageKey k;
  k.bytes = bytes;
  std::string label = "nova-storage-key-id";
  label.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(label.data(), label.size(), digest, &size, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
  OPENSSL_cleanse(label.data(), label.size());
  k.id = static_cast<std::uint32_t>(digest[0]) << 24 | static_cast<std::uint32_t>(digest[1]) << 16 |
         static_cast<std::uint32_t>(digest[2]) << 8 | digest[3];
  return k;
}

std::string StorageKey::id_hex() const { return hex8(id); }

schemas::Result<StorageKey> load_storage_key(const std::filesystem::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return schemas::Error{file.string(), "not present"};
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return schemas::Error{file.string(), std::string("mode ") + mode +
                                             " lets group or others read the storage key: chmod 600 it"};
  }
  auto text = files::read(file);
  if (!text) return text.error();
  std::string& t = text.value();
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  std::array<unsigned char, kStorageKeyBytes> bytes{};
  bool ok = t.size() == 2 * kStorageKeyBytes;
  for (std::size_t i = 0; ok && i < kStorageKeyBytes; ++i) {
    const int hi = hex_digit(t[2 * i]), lo = hex_digit(t[2 * i + 1]);
    ok = hi >= 0 && lo >= 0;
    bytes[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  OPENSSL_cleanse(t.data(), t.size());
  if (!ok) return schemas::Error{file.string(), "expected 64 hex digits (a 256-bit key)"};
  StorageKey key = StorageKey::from_bytes(bytes);
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return key;
}

std::string new_storage_key_text() {
  std::array<unsigned char, kStorageKeyBytes> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    throw std::runtime_error("the random generator failed");
  }
  std::string out;
  for (unsigned char b : bytes) out += hex8(b).substr(6);
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return out + "\n";
}

StorageKey derive_storage_key(std::string_view device_secret, std::string_view node_id) {
  Kdf kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  KdfCtx ctx(kdf ? EVP_KDF_CTX_new(kdf.get()) : nullptr);
  static constexpr char kSalt[] = "nova-storage-v1";
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string("digest", digest, 0),
      OSSL_PARAM_construct_octet_string("key", const_cast<char*>(device_secret.data()), device_secret.size()),
      OSSL_PARAM_construct_octet_string("salt", const_cast<char*>(kSalt), sizeof kSalt - 1),
      OSSL_PARAM_construct_octet_string("info", const_cast<char*>(node_id.data()), node_id.size()),
      OSSL_PARAM_construct_end()};
  std::array<unsigned char, kStorageKeyBytes> bytes{};
  if (!ctx || EVP_KDF_derive(ctx.get(), bytes.data(), bytes.size(), params) != 1) {
    throw std::runtime_error("HKDF-SHA256 failed");
  }
  StorageKey key = StorageKey::from_bytes(bytes);
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return key;
}

std::string RecordSealer::seal(std::string_view associated, std::string_view plaintext) const {
  std::string header(kHeaderBytes, '\0');
  header[0] = static_cast<char>(kSealedFormat);
  for (std::size_t i = 0; i < kIdBytes; ++i) header[1 + i] = static_cast<char>(key_.id >> (24 - 8 * i) & 0xffu);
  if (RAND_bytes(bytes_of(header) + 1 + kIdBytes, static_cast<int>(kNonceBytes)) != 1) {
    throw std::runtime_error("the random generator failed");
  }
  std::string body;
  unsigned char tag[kTagBytes];
  if (!crypt(true, key_, header, associated, plaintext, body, tag)) throw std::runtime_error("AES-256-GCM failed");
  header += body;
  header.append(reinterpret_cast<const char*>(tag), kTagBytes);
  return header;
}

schemas::Result<std::string> RecordSealer::open(std::string_view associated, std::string_view sealed) const {
  if (sealed.size() < kSealOverhead) {
    return schemas::Error{"", "too short to be a sealed record (" + std::to_string(sealed.size()) + " bytes)"};
  }
  if (static_cast<std::uint8_t>(sealed[0]) != kSealedFormat) {
    return schemas::Error{"", "unknown format 0x" + hex8(static_cast<std::uint8_t>(sealed[0])).substr(6)};
  }
  std::uint32_t id = 0;
  for (std::size_t i = 0; i < kIdBytes; ++i) id = id << 8 | static_cast<std::uint8_t>(sealed[1 + i]);
  if (id != key_.id) return schemas::Error{"", "sealed under storage key " + hex8(id) + ", not " + key_.id_hex()};
  unsigned char tag[kTagBytes];
  const std::string_view body = sealed.substr(kHeaderBytes, sealed.size() - kHeaderBytes - kTagBytes);
  std::copy_n(bytes_of(sealed) + sealed.size() - kTagBytes, kTagBytes, tag);
  std::string plain;
  if (!crypt(false, key_, sealed.substr(0, kHeaderBytes), associated, body, plain, tag)) {
    OPENSSL_cleanse(plain.data(), plain.size());
    return schemas::Error{"", "authentication failed (a changed byte, or a record moved from another key)"};
  }
  return plain;
}

}  // namespace nova::security
