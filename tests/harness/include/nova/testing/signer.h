// Signing downward control messages in tests, as nova-cloud does (security/control.h).
//
// test_signer() is the fixed test key (the seed of 32 bytes 0x4e, also the key of the golden
// vectors in schemas/vectors/signed.json), its files written to a temporary directory on
// first use. Being fixed, it is the same in a test and in the processes it starts (an
// in-process agent in a crash child, say). The acking consumer signs its acks with it,
// write_agent_config() makes test agents trust its public key file, and in-process agents get
// verify_key(). A test that needs a key the agent does not trust makes a TestSigner of its own.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "nova/schemas/codec.h"
#include "nova/schemas/signed.h"
#include "nova/security/signing.h"

namespace nova::testing {

class TestSigner {
 public:
  // A new key pair, its files in `dir` (created): signing.key and signing.pub.
  explicit TestSigner(const std::filesystem::path& dir);
  // `key`, its files written to `dir`.
  TestSigner(const std::filesystem::path& dir, security::SigningKey key);

  // `message` in a signed envelope for the down topic `topic` (node, site and kind are
  // read from it), issued now and valid for `ttl`, with a fresh message id.
  std::string sign(const std::string& topic, const std::string& message,
                   std::chrono::milliseconds ttl = std::chrono::minutes(10)) const;
  // The same with every claim given (for expired, future, misaddressed, replayed ones).
  std::string sign(const schemas::SignedClaims& claims, const std::string& message) const;
  // The claims sign(topic, ...) would use.
  static schemas::SignedClaims claims_for(const std::string& topic, std::chrono::milliseconds ttl);

  const security::SigningKey& key() const { return key_; }
  security::VerifyKey verify_key() const { return key_.verify_key(); }
  const std::filesystem::path& private_file() const { return private_file_; }
  const std::filesystem::path& public_file() const { return public_file_; }

 private:
  std::filesystem::path private_file_;
  std::filesystem::path public_file_;
  security::SigningKey key_;
};

// The process's shared test key (see above).
const TestSigner& test_signer();

// The agent YAML section that trusts test_signer().
std::string trust_test_signer_yaml();

}  // namespace nova::testing
