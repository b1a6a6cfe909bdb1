// The restart suite for nova-agent, on every broker the suite runs against
// (nova/testing/test_broker.h): the real binary is stopped (SIGTERM) and killed
// (SIGKILL) and started again, and after each step the retained state record that every
// consumer reads -- checked with an outside client, mosquitto_sub -- must be true again
// within 5 s: "offline" after a stop, "dead" (its will) after a kill, "online" with a
// higher bdseq after each start. Across all of it, every metrics record the agent put
// in its outbox reaches the acking consumer, each seq once after dedup.
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <memory>

#include "nova/agent/outbox.h"
#include "nova/schemas/codec.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/retained.h"
#include "nova/testing/test_broker.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kNode = "gw-restart";
constexpr const char* kStateTopic = "nova/v1/up/gw-restart/state";
constexpr auto kTrueAgainWithin = 5s;

const char* status_name(schemas::NodeStatus s) {
  switch (s) {
    case schemas::NodeStatus::online: return "online";
    case schemas::NodeStatus::offline: return "offline";
    case schemas::NodeStatus::dead: return "dead";
  }
  return "?";
}

// The agent's retained state record as an outside client reads it; nullopt while
// there is none (or it does not decode).
std::optional<schemas::NodeState> read_state(const testing::RetainedMessages& retained) {
  auto it = retained.find(kStateTopic);
  if (it == retained.end()) return std::nullopt;
  auto state = schemas::decode_cbor<schemas::NodeState>(it->second);
  if (!state) return std::nullopt;
  return *state;
}

// Waits until the retained record has `status` and a bdseq that `bdseq_ok` accepts;
// returns it, and how long that took.
schemas::NodeState wait_state(const testing::TestBroker& broker, schemas::NodeStatus status,
                              const std::function<bool(std::uint64_t)>& bdseq_ok, const char* after) {
  std::optional<schemas::NodeState> seen;
  const auto began = std::chrono::steady_clock::now();
  const bool ok = testing::retained_until(broker.uri(), kStateTopic, 1, [&](const testing::RetainedMessages& r) {
    seen = read_state(r);
    return seen && seen->status == status && bdseq_ok(seen->bdseq);
  }, kTrueAgainWithin);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began);
  INFO("after " << after << ": retained state " << (seen ? status_name(seen->status) : "absent") << " bdseq "
                << (seen ? seen->bdseq : 0));
  REQUIRE(ok);
  WARN(testing::to_string(broker.kind()) << ": state true " << took.count() << " ms after " << after);
  return *seen;
}

void restart_agent_suite(testing::BrokerKind kind) {
  auto broker = testing::start_broker(kind, testing::Transport::mutual_tls);
  testing::AckConsumer consumer(broker->uri());
  const fs::path dir = broker->data_dir() / "agent";
  fs::create_directories(dir);
  const fs::path config = dir / "agent.yaml";
  const auto write_config = [&](const char* metrics) {
    testing::write_agent_config(config, kNode, "cloud/eu/par/par-a1", 4, broker->uri(), dir,
                                std::string("metrics: ") + metrics + "\ndrain: {jitter_ms: 0}\n");
  };
  write_config("{interval_ms: 100, batch_interval_s: 10}");
  auto start = [&] { return std::make_unique<testing::AgentProcess>(NOVA_AGENT_BIN, config, dir / "agent.log"); };
  auto any = [](std::uint64_t) { return true; };

  auto agent = start();
  const schemas::NodeState born = wait_state(*broker, schemas::NodeStatus::online, any, "first start");
  REQUIRE(consumer.wait_for(kNode, "metrics", 1, 30s));  // one batch acked before the faults

  const int status = agent->signal(SIGTERM);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  wait_state(*broker, schemas::NodeStatus::offline, [&](std::uint64_t b) { return b == born.bdseq; }, "SIGTERM");

  agent = start();
  const schemas::NodeState reborn = wait_state(
      *broker, schemas::NodeStatus::online, [&](std::uint64_t b) { return b > born.bdseq; }, "restart after SIGTERM");

  agent->signal(SIGKILL);
  wait_state(*broker, schemas::NodeStatus::dead, [&](std::uint64_t b) { return b == reborn.bdseq; }, "SIGKILL");

  agent = start();
  wait_state(*broker, schemas::NodeStatus::online, [&](std::uint64_t b) { return b > reborn.bdseq; },
             "restart after SIGKILL");

  // Count: stop the agent (it stores its open batch), read what its outbox ever created,
  // then let a restarted agent that makes no new batch for an hour drain the rest.
  agent->signal(SIGTERM);
  agent.reset();
  std::uint64_t created = 0;
  {
    agent::OutboxOptions options;
    options.dir = dir / "outbox";
    auto outbox = agent::Outbox::open(options);
    REQUIRE(outbox.ok());
    const agent::StreamStats metrics = outbox.value()->stats().at("metrics");
    created = metrics.next_seq - 1;
    CHECK(metrics.evicted == 0);
  }
  write_config("{interval_ms: 60000, batch_interval_s: 3600}");
  agent = start();
  const bool drained = consumer.wait_for(kNode, "metrics", created, 30s);
  const testing::StreamCount received = consumer.count(kNode, "metrics");
  INFO("created " << created << ", received " << received.seqs.size() << " up to seq "
                  << (received.seqs.empty() ? 0 : *received.seqs.rbegin()) << ", acked " << received.acked);
  REQUIRE(drained);
  CHECK(received.seqs.size() == created);   // sent = received after dedup
  CHECK(*received.seqs.rbegin() == created);  // and nothing the outbox never held
  CHECK(consumer.undecodable() == 0);
  WARN(testing::to_string(kind) << ": " << created << " metrics records sent across SIGTERM and SIGKILL, "
                                << received.seqs.size() << " received after dedup (" << received.duplicates
                                << " duplicates)");
  agent->signal(SIGTERM);
}

}  // namespace

TEST_CASE("nova-agent stopped and killed on Mosquitto: its retained state is true again within 5 s",
          "[agent][restart][mosquitto]") {
  restart_agent_suite(testing::BrokerKind::mosquitto);
}

TEST_CASE("nova-agent stopped and killed on nats-server: its retained state is true again within 5 s",
          "[agent][restart][nats]") {
  restart_agent_suite(testing::BrokerKind::nats);
}
