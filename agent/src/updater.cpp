#include "nova/agent/updater.h"

#include <charconv>
#include <fstream>
#include <sstream>
#include <system_error>

#include "durable_file.h"
#include "nova/security/digest.h"

namespace nova::agent {
namespace {

namespace fs = std::filesystem;

constexpr const char* kBinaryName = "nova-agent";
constexpr const char* kReportedSuffix = ".reported";

std::string first_line(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

Updater::Updater(fs::path dir, std::string running_version)
    : dir_(std::move(dir)), running_version_(std::move(running_version)) {}

Updater::Decision Updater::consider(const schemas::UpdateOffer& offer) const {
  if (!enabled()) return {Verdict::refuse, "updates are off on this node (update.dir is not set)"};
  if (offer.version == running_version_) return {Verdict::current, "version " + offer.version + " runs already"};
  const fs::path rolled = dir_ / "rolled-back" / offer.sha256;
  std::error_code ec;
  if (fs::exists(rolled, ec) || fs::exists(rolled.string() + kReportedSuffix, ec)) {
    return {Verdict::rolled_back, "bundle " + offer.sha256 + " was rolled back on this node before"};
  }
  return {Verdict::fetch, ""};
}

void Updater::fetch(const schemas::UpdateOffer& offer) {
  offer_ = offer;
  chunks_.clear();
}

Updater::ChunkOutcome Updater::add_chunk(std::string_view index_text, std::string bytes) {
  ChunkOutcome out;
  if (!offer_) return out;
  const std::uint64_t size = offer_->size;
  const std::uint64_t count = (size + schemas::kBundleChunkBytes - 1) / schemas::kBundleChunkBytes;
  std::uint64_t index = 0;
  const auto [end, ec] = std::from_chars(index_text.data(), index_text.data() + index_text.size(), index);
  const bool canonical = !index_text.empty() && (index_text == "0" || index_text.front() != '0');
  if (ec != std::errc() || end != index_text.data() + index_text.size() || !canonical || index >= count) {
    out.error = "bundle chunk '" + std::string(index_text) + "' is not an index 0.." + std::to_string(count - 1) +
                " of a bundle of " + std::to_string(size) + " bytes";
  } else if (const std::uint64_t expected =
                 index + 1 < count ? schemas::kBundleChunkBytes : size - (count - 1) * schemas::kBundleChunkBytes;
             bytes.size() != expected) {
    out.error = "bundle chunk " + std::to_string(index) + " has " + std::to_string(bytes.size()) +
                " bytes, expected " + std::to_string(expected) + " for a bundle of " + std::to_string(size) + " bytes";
  } else {
    chunks_[index] = std::move(bytes);
    if (chunks_.size() < count) return out;
    std::string whole;
    whole.reserve(size);
    for (const auto& [i, chunk] : chunks_) whole += chunk;
    chunks_.clear();
    out.error = stage(whole);
    out.staged = !out.error;
  }
  cancel();
  return out;
}

std::optional<std::string> Updater::stage(const std::string& bytes) const {
  const schemas::UpdateOffer& offer = *offer_;
  if (bytes.size() != offer.size) {
    return "bundle has " + std::to_string(bytes.size()) + " bytes, the offer says " + std::to_string(offer.size);
  }
  const std::string digest = security::sha256_hex(bytes);
  if (digest != offer.sha256) return "bundle sha256 is " + digest + ", the offer says " + offer.sha256;
  const fs::path version_dir = dir_ / "versions" / offer.sha256;
  std::error_code ec;
  fs::create_directories(version_dir, ec);
  if (ec) return "cannot create " + version_dir.string() + ": " + ec.message();
  // The binary first, then the marker that names it: a crash in between leaves an unused
  // folder, never a pending version without its binary.
  if (!write_file_durably(version_dir / kBinaryName, bytes, 0755)) {
    return "cannot write " + (version_dir / kBinaryName).string();
  }
  if (!write_file_durably(dir_ / "pending", offer.sha256 + "\n")) return "cannot write " + (dir_ / "pending").string();
  return std::nullopt;
}

void Updater::mark_healthy() const {
  if (!enabled()) return;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return;
  const fs::path version_dir = exe.parent_path();
  if (fs::weakly_canonical(version_dir.parent_path(), ec) != fs::weakly_canonical(dir_ / "versions", ec)) return;
  write_file_durably(dir_ / "healthy", version_dir.filename().string() + "\n");
}

std::vector<Updater::Rollback> Updater::unreported_rollbacks() const {
  std::vector<Rollback> out;
  if (!enabled()) return out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_ / "rolled-back", ec)) {
    const fs::path file = entry.path();
    if (file.extension() == kReportedSuffix || file.extension() == ".tmp") continue;
    out.push_back({file.filename().string(), first_line(file)});
  }
  return out;
}

void Updater::mark_reported(const std::string& sha256) const {
  const fs::path file = dir_ / "rolled-back" / sha256;
  std::error_code ec;
  fs::rename(file, file.string() + kReportedSuffix, ec);
}

}  // namespace nova::agent
