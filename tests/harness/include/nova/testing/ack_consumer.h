// A minimal cloud-side consumer for tests: it receives upward records (metrics, results,
// alerts, decisions) at one broker, counts them per (node, stream) with duplicates, and
// acknowledges end to end the way nova-cloud does (Ack with per-stream watermarks on the
// node's down topic), learning each node's site path from its retained birth. Like
// nova-cloud it acks a record that advances the watermark, and answers a repeated record
// with the current watermark: the sender repeats only what it holds unacknowledged, so it
// missed an ack, and silence would leave its go-back-N waiting for an ack that never comes.
//
// It keeps what it received in memory only, so its acks are not "after a durable
// write": it stands in for nova-cloud in agent tests, not in production.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "nova/schemas/messages.h"

#include "nova/testing/test_pki.h"

namespace mqtt {
class async_client;
}

namespace nova::testing {

struct StreamCount {
  std::set<std::uint64_t> seqs;   // distinct seqs received
  std::uint64_t duplicates = 0;   // deliveries of a seq already received
  std::uint64_t samples = 0;      // metric samples in distinct batches
  std::uint64_t watermark = 0;    // highest contiguous seq from the lowest received
  std::uint64_t acked = 0;        // highest watermark sent in an ack
};

class AckConsumer {
 public:
  // Connects as user `username` (the cloud service user when the broker has ACLs); for
  // an mqtts:// uri with `identity` when given (a broker of a test's own CA), else the
  // test PKI's certificate of that CN (paho_tls.h).
  explicit AckConsumer(const std::string& uri, const std::string& username = "nova-cloud",
                       bool send_acks = true, const std::optional<TlsIdentity>& identity = std::nullopt);
  ~AckConsumer();

  StreamCount count(const std::string& node, const std::string& stream) const;
  // Waits until `node`'s `stream` has `n` distinct seqs.
  bool wait_for(const std::string& node, const std::string& stream, std::size_t n,
                std::chrono::milliseconds timeout) const;
  std::uint64_t acks_sent() const;
  // Ignores the next delivery of `stream`'s record `seq` (of any node), as if the broker
  // had lost it after its PUBACK: it is neither counted nor acknowledged.
  void drop_next(const std::string& stream, std::uint64_t seq);
  // While on, every ack is worked out and recorded as sent but not published: as if each
  // were lost on its way down (a partition, or an agent that stopped before applying it).
  void lose_acks(bool on);
  std::uint64_t undecodable() const;
  // What `node` sent, as decoded: its last state record (birth; waits up to `timeout`
  // for one), and its task results in the order they arrived (repeats included, those
  // drop_next ignored left out).
  std::optional<schemas::NodeState> wait_state(const std::string& node, std::chrono::milliseconds timeout) const;
  std::vector<schemas::TaskResult> results(const std::string& node) const;
  // Its decision records, each seq once, in the order they first arrived.
  std::vector<schemas::DecisionRecord> decisions(const std::string& node) const;

 private:
  class Handler;
  void on_message(const std::string& topic, const std::string& payload);

  std::unique_ptr<mqtt::async_client> client_;
  std::unique_ptr<Handler> handler_;
  bool send_acks_;
  bool lose_acks_ = false;
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::map<std::string, std::string> site_of_;  // node -> site path, from births
  std::map<std::string, schemas::NodeState> states_;
  std::map<std::string, std::vector<schemas::TaskResult>> results_;
  std::map<std::string, std::vector<schemas::DecisionRecord>> decisions_;
  std::map<std::pair<std::string, std::string>, StreamCount> counts_;
  std::set<std::pair<std::string, std::uint64_t>> to_drop_;  // (stream, seq)
  std::uint64_t acks_sent_ = 0;
  std::uint64_t undecodable_ = 0;
};

}  // namespace nova::testing
