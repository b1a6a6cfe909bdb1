// Acceptance (issue 3), "Broker crash": the metro broker `par` is SIGKILLed while 10,000
// QoS 1 records flow up from the access broker `par-a1` below it; the supervisor
// restarts it; the cloud counts what arrived.
//
// Phases: A, records flow normally; `par` is SIGKILLed once 3,000 are acknowledged by
// the access broker (3,100 sent: the publisher keeps 100 unacknowledged); B, publishing
// goes on until the supervisor reports `par` restarted (10-40 ms later); C, the rest.
//
// What must hold, and why:
// - Everything published after the kill (B and C) arrives. The access broker, which
//   acknowledged those records, stays up; its bridge holds them (persistent session,
//   QoS 1 queue) until `par` is back (or, meanwhile, its backup parent `ber` takes them).
// - Records published before the kill may be lost: `par` had acknowledged them to the
//   access bridge (so the access broker forgot them) but had neither forwarded them to
//   `eu` nor saved them in its database (autosave_interval 1: 2.0.11 saves every ~2 s,
//   not per message). That window is Mosquitto's, not ours to assert away: the test
//   prints it, and the agent's end-to-end acks (a later issue) close it over this same
//   scenario.
// - Duplicates only of records in flight at the crash: QoS 1 redelivery by the access
//   bridge of records `par` had received but not yet acknowledged, and records `par`
//   restored from its last autosave that it had already forwarded. A record published
//   after the restart has no reason to arrive twice, and none arrives three times.
//
// Measured on the 2-core development VM, 27 runs (2026-11-26): 20 runs lost nothing;
// 7 lost 4, 5, 9, 43, 69, 77 and 88 records (at most 0.9 % of the 10,000, 0.11 % of
// all records sent in the 27 runs), always one contiguous block just before the kill
// point (e.g. seqs 2900-2987) - what `par` held in memory toward `eu`. One run
// delivered one record of phase A twice. Records published after the kill: none lost,
// none duplicated, in every run. docs/benchmarks.md ("Broker hierarchy") has the table.

#include <catch2/catch.hpp>
#include <iostream>
#include <string>

#include "nova/bridge/render.h"
#include "test_common.h"

using namespace nova::hiertest;

TEST_CASE("SIGKILL of a metro broker mid-stream: what arrives at the cloud",
          "[hierarchy][crash]") {
  constexpr std::uint64_t kMessages = 10'000;
  constexpr std::uint64_t kKillAfter = 3000;    // acked by the access broker
  constexpr std::size_t kWindow = 100;

  auto running = start_example("crash", {"crash-cloud"});
  auto& hierarchy = **running;
  const auto& topology = hierarchy.topology();
  const std::string node = "gw-par-a1";
  const std::string metro = "par";
  const auto& site = topology.site(topology.find_node(node)->site);
  REQUIRE(topology.parent(site)->id() == metro);

  // The cloud consumer is connected before the first record and stays connected (the
  // cloud broker is never touched), so a clean session loses nothing here. It is an
  // operator (reads upward only); the publisher is the node with its own certificate.
  SeqTally tally;
  Client cloud(endpoint(*running, topology.root().id(), operator_identity("crash-cloud")));
  cloud.record_payloads(false);
  cloud.on_message([&tally](const Received& message) { tally.add_payload(message.payload); });
  Client publisher(endpoint(*running, site.id(), node));
  connect_all({&cloud, &publisher});
  cloud.subscribe("nova/v1/up/+/metrics");

  const auto topic = up_topic(node, "metrics");
  WindowedPublisher window(publisher.paho(), kWindow);
  std::uint64_t seq = 0;

  // Phase A: records flowing normally; kill once kKillAfter are acknowledged.
  while (window.acked() < kKillAfter) window.publish(topic, metrics_record(node, ++seq));
  const std::uint64_t last_before_kill = seq;  // every seq <= this was sent before the kill
  const auto arrived_before_kill = tally.distinct();
  const auto events_before = running->events->size();
  const pid_t old_pid = hierarchy.pid(metro);
  hierarchy.kill(metro);
  const auto killed_at = Clock::now();

  // Phase B: keep publishing until the supervisor reports `par` restarted.
  auto restarted = [&] {
    return running->events->wait_for(metro, "broker_restarted", events_before,
                                     std::chrono::milliseconds(0));
  };
  while (seq < kMessages && !restarted()) window.publish(topic, metrics_record(node, ++seq));
  if (!running->events->wait_for(metro, "broker_restarted", events_before,
                                 std::chrono::seconds(30))) {
    FAIL("no restart of '" << metro << "' reported; events:\n" << running->events->text());
  }
  const auto restart_seen = Clock::now();
  const pid_t new_pid = hierarchy.pid(metro);
  CHECK(new_pid > 0);
  CHECK(new_pid != old_pid);
  const std::uint64_t first_after_restart = seq + 1;
  REQUIRE(first_after_restart < kMessages);

  // Phase C: the rest, after the restart.
  while (seq < kMessages) window.publish(topic, metrics_record(node, ++seq));
  window.drain();
  REQUIRE(window.acked() == kMessages);

  // Everything published after the kill must arrive (generous timeout: the access bridge
  // reconnects with the tier's back-off).
  const bool complete = tally.wait_range(node, last_before_kill + 1, kMessages,
                                         std::chrono::seconds(90));
  // The one timed wait: stragglers and redeliveries of phase A come with the same
  // reconnects; 1 s of silence after the last record shows they are through.
  while (tally.arrives_within(std::chrono::milliseconds(1000))) {
  }

  const auto counts = tally.counts();
  const auto all = account(counts, node, 1, kMessages);
  const auto before = account(counts, node, 1, last_before_kill);
  const auto during = account(counts, node, last_before_kill + 1, first_after_restart - 1);
  const auto after = account(counts, node, first_after_restart, kMessages);
  std::cout << "crash: killed '" << metro << "' after " << last_before_kill
            << " records sent (" << kKillAfter << "+ acked by the access broker, "
            << arrived_before_kill << " already at the cloud)\n"
            << "crash: all:            " << all.summary() << '\n'
            << "crash: before kill:    " << before.summary() << '\n'
            << "crash: kill..restart:  " << during.summary() << '\n'
            << "crash: (the restart was reported " << whole_ms(restart_seen - killed_at)
            << " ms after the kill; the access bridge then reconnects with its back-off)\n"
            << "crash: after restart:  " << after.summary() << '\n'
            << "crash: lost seqs: " << (all.lost.empty() ? "none" : ranges(all.lost)) << '\n'
            << "crash: duplicated seqs: "
            << (all.duplicated.empty() ? "none" : ranges(all.duplicated)) << '\n'
            << "crash: supervisor events:\n"
            << running->events->text();

  REQUIRE(complete);
  CHECK(during.lost.empty());
  CHECK(after.lost.empty());
  CHECK(after.duplicated.empty());
  // Loss, if any, is confined to records `par` held when it died.
  for (const auto lost : all.lost) CHECK(lost <= last_before_kill);
  // No record arrives more than twice: one original, one redelivery.
  for (const auto& [key, count] : counts) {
    INFO("seq " << key.second);
    CHECK(count <= 2);
  }
  CHECK(tally.foreign() == 0);
}
