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

#include "crash_child_support.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/broker.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;


TEST_CASE("SIGKILL during buffering and draining loses nothing that was stored", "[agent][crash]") {
  testing::Broker broker(testing::mutual_tls());
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
    pid_t child = test::spawn_crash_child(uri, dir, false);
    const test::ChildGuard guard(child);
    REQUIRE(child > 0);
    // The kill moment is the variable under test, so this wait is deliberately random.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 600)(rng)));
    ::kill(child, SIGKILL);
    const int status = test::wait_exit(child);
    child = -1;
    REQUIRE(WIFSIGNALED(status));
    const agent::StreamStats s = test::metrics_stats(dir);
    INFO("round " << round << ": next_seq " << s.next_seq << ", acked " << s.acked);
    // Stored records are never lost: everything from the ack watermark on is present.
    REQUIRE(s.count == s.next_seq - 1 - s.acked);
  }

  // Final drain: broker up, agent without new samples, until everything is acknowledged.
  if (!broker_up) broker.restart();
  const agent::StreamStats before = test::metrics_stats(dir);
  const std::uint64_t stored = before.next_seq - 1;
  REQUIRE(stored > 0);
  pid_t drainer = test::spawn_crash_child(uri, dir, true);
  const test::ChildGuard guard(drainer);
  const bool all = consumer.wait_for("gw-crash", "metrics", stored, 120s);
  if (!all) ::kill(drainer, SIGTERM);
  const int drained = test::wait_exit(drainer);  // exits by itself once all is acknowledged
  drainer = -1;
  REQUIRE(all);
  CHECK(WIFEXITED(drained));

  const testing::StreamCount c = consumer.count("gw-crash", "metrics");
  CHECK(c.seqs.size() == stored);
  CHECK(*c.seqs.begin() == 1);
  CHECK(*c.seqs.rbegin() == stored);  // with size == stored: no gap anywhere
  CHECK(c.samples == stored * 60);
  WARN(stored << " batches stored across 20 SIGKILLs, all received; duplicates removed by dedup: "
              << c.duplicates);
  const agent::StreamStats after = test::metrics_stats(dir);
  CHECK(after.count == 0);  // every record acknowledged and deleted
}
