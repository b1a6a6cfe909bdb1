// The agent's half of over-the-air updates (updater.h), on a real folder: what an offer
// leads to, how chunks are checked and staged, and how the launcher's rollback records are
// reported once. update_test.cpp runs the whole flow with real processes.
#include "nova/agent/updater.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "nova/security/digest.h"

namespace {

namespace fs = std::filesystem;
using nova::agent::Updater;

struct Folder {
  fs::path path;
  Folder() {
    std::string pattern = (fs::temp_directory_path() / "nova-updater.XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~Folder() { fs::remove_all(path); }
};

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

nova::schemas::UpdateOffer offer_of(const std::string& bytes, const std::string& version = "2.0.0") {
  return {version, nova::security::sha256_hex(bytes), bytes.size(), 1};
}

}  // namespace

TEST_CASE("an update offer is fetched, ignored when running, skipped after a rollback, refused without update.dir",
          "[update]") {
  Folder dir;
  Updater updater(dir.path, "1.0.0");
  const auto offer = offer_of("bundle");
  CHECK(updater.consider(offer).verdict == Updater::Verdict::fetch);
  CHECK(updater.consider(offer_of("bundle", "1.0.0")).verdict == Updater::Verdict::current);
  fs::create_directories(dir.path / "rolled-back");
  std::ofstream(dir.path / "rolled-back" / (offer.sha256 + ".reported")) << "exited with status 1 during its trial\n";
  CHECK(updater.consider(offer).verdict == Updater::Verdict::rolled_back);
  const Updater::Decision off = Updater("", "1.0.0").consider(offer);
  CHECK(off.verdict == Updater::Verdict::refuse);
  CHECK(off.reason == "updates are off on this node (update.dir is not set)");
}

TEST_CASE("a bundle's chunks are checked one by one, then as a whole, and staged for the launcher", "[update]") {
  Folder dir;
  Updater updater(dir.path, "1.0.0");
  // Two full chunks and a short last one.
  const std::string bytes = std::string(nova::schemas::kBundleChunkBytes, 'a') +
                            std::string(nova::schemas::kBundleChunkBytes, 'b') + "tail";
  const auto offer = offer_of(bytes);
  const auto chunk = [&](std::size_t i) {
    return bytes.substr(i * nova::schemas::kBundleChunkBytes, nova::schemas::kBundleChunkBytes);
  };

  SECTION("in any order") {
    updater.fetch(offer);
    CHECK(!updater.add_chunk("2", chunk(2)).staged);
    CHECK(!updater.add_chunk("0", chunk(0)).staged);
    const auto last = updater.add_chunk("1", chunk(1));
    CHECK(!last.error);
    CHECK(last.staged);
    CHECK(read(dir.path / "versions" / offer.sha256 / "nova-agent") == bytes);
    CHECK((fs::status(dir.path / "versions" / offer.sha256 / "nova-agent").permissions() & fs::perms::owner_exec) !=
          fs::perms::none);
    CHECK(read(dir.path / "pending") == offer.sha256 + "\n");
    CHECK(!updater.fetching());
  }
  SECTION("an index outside the bundle, or a chunk of the wrong size, ends the fetch") {
    updater.fetch(offer);
    CHECK(*updater.add_chunk("3", chunk(0)).error ==
          "bundle chunk '3' is not an index 0..2 of a bundle of 262148 bytes");
    CHECK(!updater.fetching());
    updater.fetch(offer);
    CHECK(*updater.add_chunk("01", chunk(1)).error ==
          "bundle chunk '01' is not an index 0..2 of a bundle of 262148 bytes");
    updater.fetch(offer);
    CHECK(*updater.add_chunk("2", "tai").error ==
          "bundle chunk 2 has 3 bytes, expected 4 for a bundle of 262148 bytes");
    CHECK(!fs::exists(dir.path / "pending"));
  }
  SECTION("a whole that is not the offered bundle is not staged") {
    auto wrong = offer;
    wrong.sha256 = nova::security::sha256_hex("something else");
    updater.fetch(wrong);
    updater.add_chunk("0", chunk(0));
    updater.add_chunk("1", chunk(1));
    const auto out = updater.add_chunk("2", chunk(2));
    CHECK(*out.error == "bundle sha256 is " + offer.sha256 + ", the offer says " + wrong.sha256);
    CHECK(!fs::exists(dir.path / "pending"));
    CHECK(!fs::exists(dir.path / "versions" / wrong.sha256 / "nova-agent"));
  }
}

TEST_CASE("the launcher's rollbacks are reported until marked reported", "[update]") {
  Folder dir;
  Updater updater(dir.path, "1.0.0");
  CHECK(updater.unreported_rollbacks().empty());  // no folder yet
  fs::create_directories(dir.path / "rolled-back");
  std::ofstream(dir.path / "rolled-back" / "abc") << "no acknowledged birth within 8s\n";
  const auto first = updater.unreported_rollbacks();
  REQUIRE(first.size() == 1);
  CHECK(first[0].sha256 == "abc");
  CHECK(first[0].reason == "no acknowledged birth within 8s");
  CHECK(updater.unreported_rollbacks().size() == 1);  // not reported yet: again
  updater.mark_reported("abc");
  CHECK(updater.unreported_rollbacks().empty());
  CHECK(fs::exists(dir.path / "rolled-back" / "abc.reported"));
}
