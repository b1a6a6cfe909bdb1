// Certificate rotation in a running mutual-TLS hierarchy (issue 10): a chain
// top <- mid <- low, a QoS 1 publisher at low streaming metrics records of node-low to
// a consumer at top, and two rotations mid-stream, each made as an operator makes it
// (docs/security.md, "Rotate"): change the PKI files, then reload (what SIGHUP to
// `nova-bridge up` runs):
//
// 1. mid's broker certificate renewed (`nova-pki renew --name mid`: same key, new
//    serial). Mosquitto 2.0.11 reads a listener's certificate, key, CA and CRL again on
//    SIGHUP, so reload sends mid a SIGHUP: no client is disconnected, and a new TLS
//    connection to mid is served the new serial.
// 2. bridge.mid's key and certificate replaced, the old one revoked (`revoke` + `issue`).
//    A bridge reads its files only when it connects and SIGHUP does not reconnect it,
//    so reload restarts mid (SIGTERM: it saves its database, queued QoS 1 included) and
//    sends the others a SIGHUP (the CRL changed). The top then refuses the old
//    certificate, so the bridge that is back is using the new one.
//
// Then: every record sent arrives (duplicates are allowed: QoS 1 re-sends what was in
// flight; the consumer deduplicates by seq), both links read "1" at the top and both
// births are there. The test prints what each rotation cost.
//
// Before reload looked at the PKI files, it did nothing on either rotation: mid kept
// serving the old serial and the bridge kept its old certificate (this test fails).
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "nova/bridge/render.h"
#include "nova/security/pki.h"
#include "pki_fixture.h"  // tests/security: run()
#include "test_common.h"

using namespace nova::hiertest;
namespace fs = std::filesystem;
using nova::security::CertificateInfo;
using nova::security::Layout;
using nova::security::Pki;
using nova::security::testing::run;

namespace {

Pki open_pki(const fs::path& dir) {
  auto pki = Pki::open(dir);
  if (!pki) throw std::runtime_error(pki.error().message());
  return std::move(pki).value();
}

// The certificate a new TLS connection to `port` is served, as `openssl s_client` sees
// it (verified against the trust anchor, with the monitor's certificate as the client's:
// no MQTT is spoken, so no session is touched).
std::string served_serial(const Layout& pki, std::uint16_t port, const fs::path& scratch) {
  const auto hello = run({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port), "-CAfile",
                          pki.trust_ca().string(), "-cert", pki.identity_cert(nova::bridge::kMonitorIdentity).string(),
                          "-key", pki.identity_key(nova::bridge::kMonitorIdentity).string(), "-verify_return_error",
                          "-verify_ip", "127.0.0.1"});
  std::ofstream(scratch) << hello.output;  // read_certificate takes the first PEM block
  const auto info = nova::security::read_certificate(scratch);
  return info ? info->serial_hex : "none (" + hello.output + ")";
}

// A bridge's connections as its parent logged them ("... as bridge.mid (...").
std::size_t bridge_connections(RunningHierarchy& running, const std::string& parent, const std::string& child) {
  return count_in_file(running->site_dir(parent) / "mosquitto.log",
                       "as " + nova::bridge::bridge_username(running->topology().site(child)) + " ");
}

// Send and first-arrival times by seq, and what arrived during a window of seqs.
class Timing {
 public:
  void sent(std::uint64_t seq) {
    std::lock_guard lock(mu_);
    sent_[seq] = Clock::now();
  }
  void arrived(std::uint64_t seq) {
    std::lock_guard lock(mu_);
    arrived_.emplace(seq, Clock::now());  // the first copy counts
  }
  // The largest delay, and how many records took longer than `slow`, among seqs
  // [first, last].
  std::pair<Clock::duration, std::size_t> delays(std::uint64_t first, std::uint64_t last, Clock::duration slow) const {
    std::lock_guard lock(mu_);
    Clock::duration worst{};
    std::size_t delayed = 0;
    for (std::uint64_t seq = first; seq <= last; ++seq) {
      const auto s = sent_.find(seq);
      const auto a = arrived_.find(seq);
      if (s == sent_.end() || a == arrived_.end()) continue;
      const auto d = a->second - s->second;
      worst = std::max(worst, d);
      if (d > slow) ++delayed;
    }
    return {worst, delayed};
  }

 private:
  mutable std::mutex mu_;
  std::map<std::uint64_t, Clock::time_point> sent_;
  std::map<std::uint64_t, Clock::time_point> arrived_;
};

}  // namespace

TEST_CASE("rotating a broker's and a bridge's certificate mid-stream: nothing lost, the new certificates in use",
          "[hierarchy][tls][rotation]") {
  RunDir scratch("nova-rotation-scratch");
  auto running = start_hierarchy(chain_topology("rotation-chain"), "nova-hier-rotation", Transport::mutual_tls);
  auto& hierarchy = **running;
  const Layout pki(running->pki_dir());
  const std::string node = "node-low";

  // The consumer at the top (nova-cloud's certificate), the publisher at low and a birth
  // at mid, each with its own certificate.
  Client consumer(running->tls_uri("top"), "consumer", tls_client_options(pki.dir(), "nova-cloud"));
  Client publisher(running->tls_uri("low"), node, tls_client_options(pki.dir(), node));
  Client mid_node(running->tls_uri("mid"), "node-mid", tls_client_options(pki.dir(), "node-mid"));
  connect_all({&consumer, &publisher, &mid_node});
  SeqTally tally;
  Timing timing;
  consumer.record_payloads(false);
  consumer.on_message([&](const Received& r) {
    if (r.topic != up_topic(node, "metrics")) return;
    tally.add_payload(r.payload);
    if (auto batch = nova::schemas::decode_cbor<nova::schemas::MetricsBatch>(r.payload)) {
      timing.arrived(batch->position.seq);
    }
  });
  consumer.subscribe(up_topic(node, "metrics"));
  mid_node.publish_wait(up_topic("node-mid", "state"), "birth of node-mid", /*retained=*/true);
  publisher.publish_wait(up_topic(node, "state"), "birth of node-low", /*retained=*/true);

  // The stream: one record every 5 ms (a steady rate, so that what a rotation delays
  // shows), each waiting for its PUBACK from low.
  std::atomic<bool> streaming{true};
  std::atomic<std::uint64_t> last_sent{0};
  std::string stream_error;  // read after the join
  std::thread stream([&] {
    try {
      auto next = Clock::now();
      for (std::uint64_t seq = 1; streaming; ++seq) {
        timing.sent(seq);
        publisher.publish_wait(up_topic(node, "metrics"), metrics_record(node, seq), false);
        last_sent = seq;
        next += std::chrono::milliseconds(5);
        std::this_thread::sleep_until(next);  // pacing the stream, not waiting for a condition
      }
    } catch (const std::exception& e) {
      stream_error = e.what();
    }
  });
  struct StopStream {
    std::atomic<bool>& flag;
    std::thread& thread;
    ~StopStream() {
      flag = false;
      if (thread.joinable()) thread.join();
    }
  } stop_stream{streaming, stream};
  const auto records_flow = [&](std::size_t more) {
    return tally.wait_distinct(tally.distinct() + more, std::chrono::seconds(30));
  };
  REQUIRE(records_flow(200));
  const std::uint64_t baseline_end = last_sent;

  // 1. mid's broker certificate: renewed, then reload (SIGHUP to mid).
  const std::string old_mid_serial = served_serial(pki, hierarchy.port("mid"), scratch.path() / "hello.txt");
  REQUIRE(old_mid_serial == nova::security::read_certificate(pki.identity_cert("mid"))->serial_hex);
  CertificateInfo renewed;
  {
    Pki editor = open_pki(pki.dir());
    auto info = editor.renew_identity("mid");
    REQUIRE(info.ok());
    renewed = *info;
  }
  const std::size_t low_bridge_before = bridge_connections(*running, "mid", "low");
  const pid_t mid_pid = hierarchy.pid("mid");
  const std::uint64_t broker_rotation_first = last_sent + 1;
  const nova::tiers::Topology same = hierarchy.topology();
  auto summary = hierarchy.reload(same);
  REQUIRE(summary.ok());
  CHECK(summary->tls_reloaded == std::vector<std::string>{"mid"});
  CHECK(summary->restarted.empty());
  CHECK(running->events->wait_for("mid", "tls_reloaded", 0, std::chrono::seconds(5)));
  // SIGHUP is handled in Mosquitto's main loop: the log line says it is done.
  CHECK(wait_for_file_count(hierarchy.site_dir("mid") / "mosquitto.log", "Reloading config.", 1,
                              std::chrono::seconds(10)));
  const std::string new_mid_serial = served_serial(pki, hierarchy.port("mid"), scratch.path() / "hello.txt");
  CHECK(new_mid_serial == renewed.serial_hex);
  CHECK(new_mid_serial != old_mid_serial);
  REQUIRE(records_flow(200));
  const std::uint64_t broker_rotation_last = last_sent;
  // Nobody was disconnected: the same mid process, low's bridge still on its first
  // connection, the clients never lost theirs.
  CHECK(hierarchy.pid("mid") == mid_pid);
  CHECK(bridge_connections(*running, "mid", "low") == low_bridge_before);
  CHECK(publisher.connections_lost() == 0);
  CHECK(consumer.connections_lost() == 0);

  // 2. bridge.mid's key and certificate replaced, the old one revoked.
  const fs::path old_bridge = scratch.path() / "old-bridge.mid";
  fs::create_directories(old_bridge);
  fs::copy_file(pki.identity_cert("bridge.mid"), old_bridge / "cert.pem");
  fs::copy_file(pki.identity_key("bridge.mid"), old_bridge / "key.pem");
  {
    Pki editor = open_pki(pki.dir());
    const auto old = nova::security::read_certificate(pki.identity_cert("bridge.mid"));
    REQUIRE(old.ok());
    REQUIRE(editor.revoke_identity("bridge.mid").ok());
    nova::security::IssueRequest request;
    request.role = nova::security::Role::bridge;
    request.name = "mid";
    request.region = old->issuer_common_name.substr(std::string("nova-ca.").size());
    auto issued = editor.issue(request);
    REQUIRE(issued.ok());
  }
  const std::size_t mid_bridge_before = bridge_connections(*running, "top", "mid");
  const std::size_t low_bridge_before_restart = bridge_connections(*running, "mid", "low");
  const std::uint64_t bridge_rotation_first = last_sent + 1;
  const auto t0 = Clock::now();
  summary = hierarchy.reload(same);
  REQUIRE(summary.ok());
  CHECK(summary->restarted == std::vector<std::string>{"mid"});
  CHECK(summary->tls_reloaded == std::vector<std::string>{"top", "low"});  // the CRL
  REQUIRE(wait_for_file_count(hierarchy.site_dir("top") / "mosquitto.log", "as bridge.mid ", mid_bridge_before + 1,
                              std::chrono::seconds(30)));
  const auto mid_back = Clock::now() - t0;
  REQUIRE(wait_for_file_count(hierarchy.site_dir("mid") / "mosquitto.log", "as bridge.low ",
                              low_bridge_before_restart + 1, std::chrono::seconds(30)));
  const auto low_back = Clock::now() - t0;
  CHECK(hierarchy.pid("mid") != mid_pid);
  REQUIRE(records_flow(200));
  const std::uint64_t bridge_rotation_last = last_sent;
  // The top refuses the old certificate (it re-read the CRL on SIGHUP): the bridge that
  // is back presents the new one.
  const auto old_try = run({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(hierarchy.port("top")),
                            "--cafile", pki.trust_ca().string(), "--cert", (old_bridge / "cert.pem").string(),
                            "--key", (old_bridge / "key.pem").string(), "-t", "nova-bridge/probe/bridge.mid",
                            "-m", "old", "-q", "1"});
  INFO(old_try.output);
  CHECK(old_try.exit_code != 0);

  // The stream stops; every record sent arrives at the top.
  streaming = false;
  stream.join();
  CHECK(stream_error.empty());
  const std::uint64_t last = last_sent;
  CHECK(tally.wait_range(node, 1, last, std::chrono::seconds(30)));
  const Accounting accounting = account(tally.counts(), node, 1, last);
  INFO(accounting.summary() << "; lost: " << ranges(accounting.lost));
  CHECK(accounting.lost.empty());
  CHECK(accounting.received_distinct == last);
  CHECK(publisher.connections_lost() == 0);
  CHECK(consumer.connections_lost() == 0);

  // The retained state at the top is right again: both links "1", both births.
  CHECK(hierarchy.wait_link("mid", std::chrono::seconds(10)));
  CHECK(hierarchy.wait_link("low", std::chrono::seconds(10)));
  consumer.record_payloads(true);
  consumer.clear();
  consumer.subscribe("nova/v1/up/+/link");
  consumer.subscribe("nova/v1/up/+/state");
  const std::map<std::string, std::string> expected = {
      {"nova/v1/up/mid/link", "1"},
      {"nova/v1/up/low/link", "1"},
      {"nova/v1/up/node-mid/state", "birth of node-mid"},
      {"nova/v1/up/node-low/state", "birth of node-low"},
  };
  std::map<std::string, std::string> retained;
  CHECK(consumer.wait_until(
      [&](const std::vector<Received>& got) {
        retained.clear();
        for (const Received& r : got) {
          if (r.retained) retained[r.topic] = r.payload;
        }
        return retained.size() >= expected.size();
      },
      std::chrono::seconds(10)));
  CHECK(retained == expected);

  const auto slow = std::chrono::milliseconds(100);
  const auto base = timing.delays(1, baseline_end, slow);
  const auto broker = timing.delays(broker_rotation_first, broker_rotation_last, slow);
  const auto bridge = timing.delays(bridge_rotation_first, bridge_rotation_last, slow);
  std::cout << "rotation: " << accounting.summary() << "\n"
            << "rotation: before, records 1-" << baseline_end << ": worst delay " << whole_ms(base.first) << " ms, "
            << base.second << " over 100 ms\n"
            << "rotation: broker certificate (SIGHUP), records " << broker_rotation_first << "-"
            << broker_rotation_last << ": worst delay " << whole_ms(broker.first) << " ms, " << broker.second
            << " over 100 ms, 0 reconnects\n"
            << "rotation: bridge certificate (restart of mid), records " << bridge_rotation_first << "-"
            << bridge_rotation_last << ": worst delay " << whole_ms(bridge.first) << " ms, " << bridge.second
            << " over 100 ms; mid's bridge back at the top after " << whole_ms(mid_back) << " ms, low's at mid after "
            << whole_ms(low_back) << " ms\n";
}
