// Crash safety: the agent process is SIGKILLed at random moments, 20 times, alternately
// while buffering (broker down) and while draining (broker up). After the last restart
// the consumer must have every batch the agent ever stored, with no gap in the seqs.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <random>
#include <thread>

#include "nova/agent/outbox.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/broker.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

pid_t spawn_child(const std::string& uri, const fs::path& dir, bool drain_only) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string d = dir.string();
    if (drain_only) {
      ::execl(NOVA_CRASH_CHILD, NOVA_CRASH_CHILD, uri.c_str(), d.c_str(), "--drain-only", nullptr);
    } else {
      ::execl(NOVA_CRASH_CHILD, NOVA_CRASH_CHILD, uri.c_str(), d.c_str(), nullptr);
    }
    ::_exit(127);
  }
  return pid;
}

int wait_child(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

agent::StreamStats outbox_stats(const fs::path& dir) {
  agent::OutboxOptions o;
  o.dir = dir / "outbox";
  auto box = agent::Outbox::open(o);
  REQUIRE(box.ok());
  auto stats = box.value()->stats();
  return stats.count("metrics") != 0 ? stats.at("metrics") : agent::StreamStats{};
}

}  // namespace

TEST_CASE("SIGKILL during buffering and draining loses nothing that was stored", "[agent][crash]") {
  testing::Broker broker;
  const std::string uri = broker.uri();
  testing::AckConsumer consumer(uri);
  const fs::path dir = broker.data_dir() / "agent";
  std::mt19937 rng(4242);
  bool broker_up = true;

  for (int round = 0; round < 20; ++round) {
    // Even rounds buffer with the broker down, odd rounds drain with it up.
    const bool want_up = round % 2 == 1;
    if (want_up != broker_up) {
      if (want_up) {
        broker.restart();
      } else {
        broker.stop();
      }
      broker_up = want_up;
    }
    const pid_t child = spawn_child(uri, dir, false);
    REQUIRE(child > 0);
    // The kill moment is the variable under test, so this wait is deliberately random.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 600)(rng)));
    ::kill(child, SIGKILL);
    const int status = wait_child(child);
    REQUIRE(WIFSIGNALED(status));
    const agent::StreamStats s = outbox_stats(dir);
    INFO("round " << round << ": next_seq " << s.next_seq << ", acked " << s.acked);
    // Stored records are never lost: everything from the ack watermark on is present.
    REQUIRE(s.count == s.next_seq - 1 - s.acked);
  }

  // Final drain: broker up, agent without new samples, until everything is acknowledged.
  if (!broker_up) broker.restart();
  const agent::StreamStats before = outbox_stats(dir);
  const std::uint64_t stored = before.next_seq - 1;
  REQUIRE(stored > 0);
  const pid_t drainer = spawn_child(uri, dir, true);
  const bool all = consumer.wait_for("gw-crash", "metrics", stored, 120s);
  if (!all) ::kill(drainer, SIGTERM);
  const int drained = wait_child(drainer);  // exits by itself once all is acknowledged
  REQUIRE(all);
  CHECK(WIFEXITED(drained));

  const testing::StreamCount c = consumer.count("gw-crash", "metrics");
  CHECK(c.seqs.size() == stored);
  CHECK(*c.seqs.begin() == 1);
  CHECK(*c.seqs.rbegin() == stored);  // with size == stored: no gap anywhere
  CHECK(c.samples == stored * 60);
  WARN(stored << " batches stored across 20 SIGKILLs, all received; duplicates removed by dedup: "
              << c.duplicates);
  const agent::StreamStats after = outbox_stats(dir);
  CHECK(after.count == 0);  // every record acknowledged and deleted
}
