// Encryption at rest: AES-256-GCM sealing of single store records (OpenSSL EVP).
//
// A sealed record is
//
//   0x01 (format) | key id (4 bytes) | nonce (12 random bytes) | ciphertext | tag (16 bytes)
//
// and is authenticated together with its associated data: the store's name and the
// record's own database key (which holds the record's sequence number where it has one).
// So a flipped byte anywhere, a record copied under another key or into another store,
// and a record sealed under another storage key all fail to open, with a reason; none is
// ever decoded. The nonce is drawn from OpenSSL's CSPRNG for every record: with 96 random
// bits the chance of a repeat stays below 2^-32 for the first 2^32 records of one key
// (NIST SP 800-38D, 8.3), far beyond what a device writes before its key is rotated.
//
// The key id is the first 4 bytes of SHA-256("nova-storage-key-id" | key): it names a
// key in log lines and tells "sealed under another key" from "tampered" without saying
// anything usable about the key.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "nova/schemas/result.h"

namespace nova::security {

inline constexpr std::size_t kStorageKeyBytes = 32;
inline constexpr std::size_t kSealOverhead = 1 + 4 + 12 + 16;
inline constexpr std::uint8_t kSealedFormat = 0x01;

struct StorageKey {
  std::array<unsigned char, kStorageKeyBytes> bytes{};
  std::uint32_t id = 0;  // see above

  static StorageKey from_bytes(const std::array<unsigned char, kStorageKeyBytes>& bytes);
  std::string id_hex() const;  // 8 lower-case hex digits, for log lines
};

// Reads a storage key file: 64 hex digits (a trailing newline is allowed), written by
// device provisioning (nova-device-bundle) or `nova-pki storage-key`. Like ssh with a
// private key, a file that group or others may read (or write) is refused. Errors:
// path = the file, message = the reason (e.g. "mode 0644 lets group or others read the
// storage key: chmod 600 it").
schemas::Result<StorageKey> load_storage_key(const std::filesystem::path& file);

// A fresh random key as the file's text (64 hex digits and a newline).
std::string new_storage_key_text();

// For devices with a secure element: the key is never stored, but derived at each start
// with HKDF-SHA256 from a secret the element releases (or computes) for this device,
// salt "nova-storage-v1", info = the node id. The same secret and node id give the same
// key; another node id gives an unrelated one.
StorageKey derive_storage_key(std::string_view device_secret, std::string_view node_id);

class RecordSealer {
 public:
  explicit RecordSealer(const StorageKey& key) : key_(key) {}

  // `plaintext` sealed under `associated` (store name and record key, see above).
  std::string seal(std::string_view associated, std::string_view plaintext) const;

  // The plaintext, or an Error whose message is the reason: "too short ...", "unknown
  // format ...", "sealed under storage key <id>, not <id>", or "authentication failed
  // (a changed byte, or a record moved from another key)".
  schemas::Result<std::string> open(std::string_view associated, std::string_view sealed) const;

  const StorageKey& key() const { return key_; }

 private:
  StorageKey key_;
};

}  // namespace nova::security
