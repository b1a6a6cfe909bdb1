// The durable outbox on real LevelDB in a temporary directory.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <random>

#include "nova/agent/outbox.h"
#include "nova/testing/kill_child.h"

using namespace nova::agent;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "nova-outbox-XXXXXX").string();
    path = ::mkdtemp(templ.data());
  }
  ~TempDir() { fs::remove_all(path); }
};

std::unique_ptr<Outbox> open_outbox(const fs::path& dir, std::uint64_t max_bytes = 1 << 20) {
  OutboxOptions o;
  o.dir = dir;
  o.max_bytes = max_bytes;
  auto r = Outbox::open(o);
  INFO((r ? "" : r.error().message()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

std::string payload(std::uint64_t i, std::size_t size = 100) {
  std::string p = std::to_string(i) + ":";
  p.resize(size, 'x');
  return p;
}

}  // namespace

TEST_CASE("records get consecutive seqs per stream and survive reopening", "[outbox]") {
  TempDir dir;
  {
    auto box = open_outbox(dir.path);
    CHECK(box->append("metrics", Priority::metrics, payload(1)).value() == 1);
    const std::vector<std::string> batch{payload(2), payload(3), payload(4)};
    CHECK(box->append("metrics", Priority::metrics, batch).value() == 2);
    CHECK(box->append("results", Priority::results, payload(1)).value() == 1);
  }
  auto box = open_outbox(dir.path);
  auto stats = box->stats();
  CHECK(stats["metrics"].next_seq == 5);
  CHECK(stats["metrics"].count == 4);
  CHECK(stats["results"].count == 1);
  CHECK(box->total_bytes() == 500);
  auto records = box->read("metrics", 0, 10).value();
  REQUIRE(records.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(records[i].seq == i + 1);
    CHECK(records[i].payload == payload(i + 1));
  }
  CHECK(box->read("metrics", 2, 1).value().at(0).seq == 3);
  CHECK(box->read("nothing", 0, 10).value().empty());
}

TEST_CASE("acks delete up to the watermark, only forward, never past what exists", "[outbox]") {
  TempDir dir;
  auto box = open_outbox(dir.path);
  for (int i = 1; i <= 10; ++i) REQUIRE(box->append("metrics", Priority::metrics, payload(static_cast<std::uint64_t>(i))).ok());
  REQUIRE(box->ack("metrics", 4).ok());
  CHECK(box->stats()["metrics"].count == 6);
  CHECK(box->stats()["metrics"].first == 5);
  CHECK(box->read("metrics", 0, 100).value().front().seq == 5);
  REQUIRE(box->ack("metrics", 2).ok());  // older: no-op
  CHECK(box->stats()["metrics"].count == 6);
  REQUIRE(box->ack("metrics", 1000).ok());  // beyond next_seq: clamps to 10
  CHECK(box->stats()["metrics"].count == 0);
  CHECK(box->stats()["metrics"].acked == 10);
  CHECK(box->total_bytes() == 0);
  CHECK(box->append("metrics", Priority::metrics, payload(11)).value() == 11);
  CHECK(box->stats()["metrics"].first == 11);
  REQUIRE(box->ack("unknown", 5).ok());
}

TEST_CASE("the disk cap evicts the oldest lowest-priority records and counts them", "[outbox]") {
  TempDir dir;
  auto box = open_outbox(dir.path, 1000);  // room for ten 100-byte records
  for (int i = 1; i <= 3; ++i) REQUIRE(box->append("results", Priority::results, payload(static_cast<std::uint64_t>(i))).ok());
  for (int i = 1; i <= 7; ++i) REQUIRE(box->append("metrics", Priority::metrics, payload(static_cast<std::uint64_t>(i))).ok());
  CHECK(box->total_bytes() == 1000);
  // Two more results: the two oldest metrics go, never a result.
  const std::vector<std::string> two{payload(4), payload(5)};
  REQUIRE(box->append("results", Priority::results, two).ok());
  auto stats = box->stats();
  CHECK(stats["metrics"].evicted == 2);
  CHECK(stats["metrics"].first == 3);
  CHECK(stats["results"].count == 5);
  CHECK(stats["results"].evicted == 0);
  CHECK(box->total_bytes() == 1000);
  // Once only results are left, the oldest results go.
  for (int i = 0; i < 5; ++i) REQUIRE(box->append("results", Priority::results, payload(9)).ok());
  stats = box->stats();
  CHECK(stats["metrics"].count == 0);
  CHECK(stats["metrics"].evicted == 7);
  CHECK(stats["results"].evicted == 0);
  REQUIRE(box->append("results", Priority::results, payload(9)).ok());
  CHECK(box->stats()["results"].evicted == 1);
  // A record larger than the whole cap is refused, and nothing is evicted for it.
  auto huge = box->append("results", Priority::results, std::string(2000, 'x'));
  REQUIRE_FALSE(huge.ok());
  CHECK_THAT(huge.error().message(), Catch::Contains("do not fit"));
  CHECK(box->stats()["results"].evicted == 1);
  // Counters survive a reopen.
  box.reset();
  box = open_outbox(dir.path, 1000);
  CHECK(box->stats()["metrics"].evicted == 7);
  CHECK(box->total_bytes() == 1000);
}

TEST_CASE("an append that returned survives SIGKILL at any moment (20 kills)", "[outbox][crash]") {
  TempDir dir;
  std::mt19937 rng(12345);
  std::uint64_t confirmed = 0;  // highest seq the child reported as appended
  for (int round = 0; round < 20; ++round) {
    // Appends the child finished after our last read still count as confirmed.
    confirmed = nova::testing::kill_after_reports<std::uint64_t>(
        [&](int report) {
          OutboxOptions o;
          o.dir = dir.path;
          o.max_bytes = 64 << 20;
          auto box = Outbox::open(o);
          if (!box.ok()) ::_exit(3);
          for (std::uint64_t i = 0;; ++i) {
            const std::uint64_t next = box.value()->stats()["metrics"].next_seq;
            auto seq = box.value()->append("metrics", Priority::metrics, payload(next, 300));
            if (!seq.ok()) ::_exit(4);
            if (i % 7 == 0) (void)box.value()->ack("metrics", seq.value() / 2);
            if (::write(report, &seq.value(), sizeof(std::uint64_t)) != sizeof(std::uint64_t)) ::_exit(5);
          }
        },
        std::uniform_int_distribution<int>(1, 200)(rng));

    auto box = open_outbox(dir.path, 64 << 20);
    const StreamStats s = box->stats()["metrics"];
    INFO("round " << round << ": confirmed " << confirmed << ", next_seq " << s.next_seq);
    REQUIRE(s.next_seq > confirmed);
    // Every unacknowledged record up to the confirmed one is present, in order, intact.
    auto records = box->read("metrics", s.acked, 1'000'000).value();
    REQUIRE(records.size() == s.count);
    std::uint64_t expect = s.acked + 1;
    for (const OutboxRecord& r : records) {
      REQUIRE(r.seq == expect);
      REQUIRE(r.payload == payload(r.seq, 300));
      ++expect;
    }
    REQUIRE(expect == s.next_seq);
  }
}

TEST_CASE("erase deletes and rewrites records, keeps seqs, and the counters follow", "[outbox][erasure]") {
  TempDir dir;
  {
    auto box = open_outbox(dir.path);
    for (std::uint64_t i = 1; i <= 4; ++i) REQUIRE(box->append("metrics", Priority::metrics, payload(i)).ok());
    REQUIRE(box->append("alerts", Priority::alerts, std::string("alert")).ok());
    // Removes metrics 1 and 2 and the alert, rewrites metrics 4, keeps metrics 3.
    auto erased = box->erase([](std::string_view stream, std::string_view p) -> ErasureEdit {
      if (stream == "alerts" || p.starts_with("1:") || p.starts_with("2:")) return {ErasureEdit::Action::remove, {}};
      if (p.starts_with("4:")) return {ErasureEdit::Action::replace, "4:short"};
      return {};
    });
    REQUIRE(erased.ok());
    CHECK(erased->removed == 3);
    CHECK(erased->rewritten == 1);
  }
  auto box = open_outbox(dir.path);  // what erase wrote is what a restart finds
  const auto stats = box->stats();
  CHECK(stats.at("metrics").count == 2);
  CHECK(stats.at("metrics").first == 3);  // the gap the drain declares
  CHECK(stats.at("metrics").bytes == 100 + 7);
  CHECK(stats.at("metrics").evicted == 0);
  CHECK(stats.at("alerts").count == 0);
  CHECK(box->total_bytes() == 107);
  auto records = box->read("metrics", 0, 10);
  REQUIRE(records.ok());
  REQUIRE(records->size() == 2);
  CHECK((*records)[0].seq == 3);
  CHECK((*records)[1].seq == 4);
  CHECK((*records)[1].payload == "4:short");
  CHECK(box->next_seq("metrics") == 5);
}
