// The audit log's chain: append, resume after reopening, and verify naming the first
// broken entry for a changed byte (anywhere in an entry), a removed entry, swapped
// entries and an incomplete last line.
#include "nova/security/audit_log.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

using namespace nova::security;
namespace fs = std::filesystem;

namespace {

struct TempLog {
  fs::path dir;
  fs::path file;
  explicit TempLog(const std::string& name = "a")
      : dir(fs::temp_directory_path() /
            ("nova-audit-test-" + std::to_string(::getpid()) + "-" + name)),
        file(dir / "audit.log") {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempLog() { fs::remove_all(dir); }
  std::vector<std::string> lines() const {
    std::ifstream in(file);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }
  void write(const std::vector<std::string>& lines) const {
    std::ofstream out(file, std::ios::trunc);
    for (const auto& l : lines) out << l << '\n';
  }
};

void append_five(const fs::path& file) {
  auto log = AuditLog::open(file);
  REQUIRE(log.ok());
  for (int i = 1; i <= 5; ++i) {
    REQUIRE(log.value()
                ->append({"ops-" + std::to_string(i), "POST /api/v1/workloads", "/api/v1/workloads",
                          "201"})
                .ok());
  }
}

}  // namespace

TEST_CASE("an intact audit log verifies and resumes its chain after reopening",
          "[security][audit]") {
  TempLog t;
  append_five(t.file);
  {
    auto log = AuditLog::open(t.file);
    REQUIRE(log.ok());
    CHECK(log.value()->entries() == 5);
    REQUIRE(log.value()
                ->append(
                    {"nova-cloud", "publish task", "nova/v1/down/cloud/n1/task", "sent \"quoted\""})
                .ok());
  }
  const AuditVerdict v = verify_audit_log(t.file);
  CHECK_FALSE(v.broken_at);
  CHECK(v.entries == 6);
  const auto lines = t.lines();
  REQUIRE(lines.size() == 6);
  CHECK(lines[0].rfind(R"({"seq":1,"ts":)", 0) == 0);
  CHECK(lines[0].find(
            R"("prev":"0000000000000000000000000000000000000000000000000000000000000000")") !=
        std::string::npos);
  CHECK((fs::status(t.file).permissions() & (fs::perms::group_all | fs::perms::others_all)) ==
        fs::perms::none);
}

TEST_CASE("changing any byte of an entry names that entry", "[security][audit]") {
  TempLog t;
  append_five(t.file);
  const auto original = t.lines();
  // Every byte of entry 3, each changed in turn: the verdict is always entry 3.
  for (std::size_t at = 0; at < original[2].size(); ++at) {
    auto lines = original;
    lines[2][at] = lines[2][at] == 'x' ? 'y' : 'x';
    t.write(lines);
    const AuditVerdict v = verify_audit_log(t.file);
    INFO("byte " << at << ": " << lines[2]);
    REQUIRE(v.broken_at);
    CHECK(*v.broken_at == 3);
    CHECK(v.entries == 2);
  }
}

TEST_CASE("a removed, reordered or cut entry is named", "[security][audit]") {
  TempLog t;
  append_five(t.file);
  const auto original = t.lines();

  auto removed = original;
  removed.erase(removed.begin() + 1);  // entry 2
  t.write(removed);
  AuditVerdict v = verify_audit_log(t.file);
  REQUIRE(v.broken_at);
  CHECK(*v.broken_at == 2);
  CHECK(v.reason ==
        "seq: 3, expected 2 (an entry before it was removed, or entries were reordered)");

  auto swapped = original;
  std::swap(swapped[3], swapped[4]);
  t.write(swapped);
  v = verify_audit_log(t.file);
  REQUIRE(v.broken_at);
  CHECK(*v.broken_at == 4);

  // Entry 2 rewritten whole and consistently (new text, a hash that fits it): its
  // successor's prev no longer matches.
  auto forged = original;
  {
    TempLog other("other");
    append_five(other.file);
    forged[1] = other.lines()[1];  // a valid entry 2 of another chain
  }
  t.write(forged);
  v = verify_audit_log(t.file);
  REQUIRE(v.broken_at);
  CHECK(*v.broken_at == 2);  // its prev is entry 1 of another chain
  CHECK(v.reason.rfind("prev:", 0) == 0);

  std::ofstream(t.file, std::ios::trunc) << original[0] << '\n' << original[1].substr(0, 40);
  v = verify_audit_log(t.file);
  REQUIRE(v.broken_at);
  CHECK(*v.broken_at == 2);
  CHECK_FALSE(AuditLog::open(t.file).ok());  // appending after a broken tail is refused
}
