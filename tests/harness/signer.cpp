#include "nova/testing/signer.h"

#include <unistd.h>

#include <atomic>
#include <random>
#include <stdexcept>

#include "nova/security/control.h"

namespace nova::testing {
namespace {

security::SigningKey save_into(const std::filesystem::path& dir, const std::filesystem::path& priv,
                               const std::filesystem::path& pub, security::SigningKey key) {
  std::filesystem::create_directories(dir);
  if (auto s = key.save(priv, pub); !s) throw std::runtime_error(s.error().message());
  return key;
}

constexpr std::uint8_t kTestSeedByte = 0x4e;

schemas::Timestamp now_ms() {
  return static_cast<schemas::Timestamp>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
}

}  // namespace

TestSigner::TestSigner(const std::filesystem::path& dir)
    : TestSigner(dir, security::SigningKey::generate().value()) {}

TestSigner::TestSigner(const std::filesystem::path& dir, security::SigningKey key)
    : private_file_(dir / "signing.key"),
      public_file_(dir / "signing.pub"),
      key_(save_into(dir, private_file_, public_file_, std::move(key))) {}

schemas::SignedClaims TestSigner::claims_for(const std::string& topic,
                                             std::chrono::milliseconds ttl) {
  // Strictly increasing issue times: a retained kind's next message must be newer than
  // the one in force, even when both are signed within one millisecond.
  static std::atomic<schemas::Timestamp> last{0};
  const schemas::Timestamp now = now_ms();
  schemas::Timestamp prev = last.load();
  while (!last.compare_exchange_weak(prev, std::max(now, prev + 1))) {
  }
  auto claims = security::claims_for_topic(topic, std::max(now, prev + 1), ttl);
  if (!claims) throw std::invalid_argument(claims.error().message());
  return claims.value();
}

std::string TestSigner::sign(const std::string& topic, const std::string& message,
                             std::chrono::milliseconds ttl) const {
  return sign(claims_for(topic, ttl), message);
}

std::string TestSigner::sign(const schemas::SignedClaims& claims,
                             const std::string& message) const {
  const auto bytes = security::sign_control(
      key_, claims,
      std::span(reinterpret_cast<const std::uint8_t*>(message.data()), message.size()));
  return std::string(bytes.begin(), bytes.end());
}

const TestSigner& test_signer() {
  // Its files live as long as the test process: removed at exit.
  struct Shared {
    std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                ("nova-test-signer-" + std::to_string(::getpid()));
    TestSigner signer{
        dir, security::SigningKey::from_seed(std::vector<std::uint8_t>(32, kTestSeedByte)).value()};
    ~Shared() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  };
  static const Shared shared;
  return shared.signer;
}

std::string trust_test_signer_yaml() {
  return "trust: {signing_keys: [" + test_signer().public_file().string() + "]}\n";
}

}  // namespace nova::testing
