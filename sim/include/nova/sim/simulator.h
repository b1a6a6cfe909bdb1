// The node simulator behind nova-sim: many NovaCron nodes, each its own MQTT connection,
// for demos and scale tests of the cloud side (nova-cloud, the broker tree).
//
// Each simulated node behaves like a nova-agent as the topic API sees it
// (schemas/topics.md):
//   - connects to its site's broker with client id = node id, clean session, without a
//     username; over TLS (an mqtts:// broker) every node presents the simulator's one
//     client certificate, so a broker that makes the certificate's CN the username
//     (use_identity_as_username) sees every node as that one identity and needs a grant
//     for it (sim/README.md); a plaintext broker's ACL may key on the client id instead;
//   - registers its last will: NodeState "dead" with this connection's bdseq, QoS 1,
//     retained, on nova/v1/up/<node>/state;
//   - subscribes to its ack topic nova/v1/down/<site path>/<node>/ack (when asked);
//   - publishes its birth on the same state topic, QoS 1, retained: NodeState "online",
//     same bdseq, with a NodeDescription (level 5, the broker's site path, arch, caps,
//     resources; varied per node but deterministic, so runs are comparable);
//   - every `metrics_interval`, if set, publishes a MetricsBatch (node, "metrics", seq)
//     on nova/v1/up/<node>/metrics, QoS 1, the first `metrics_delay` after connecting
//     (so a benchmark can measure a mass birth alone, then the ingest load); nodes are
//     spread evenly over the interval so the load is flat, not a burst per period;
//   - on stop, publishes NodeState "offline" (same bdseq) and disconnects cleanly, which
//     discards the will; with `goodbye` false it just closes its sockets, so the brokers
//     fire the wills -- the same as the process being killed.
// A lost connection is retried after `reconnect_delay` (with jitter) with bdseq + 1.
//
// What it does not do: persist anything (no outbox; seqs start at 1 in every run, so use
// a fresh node prefix or a fresh cloud store per run), resend batches lost with a
// connection, or run tasks.
//
// Why its own MQTT client: Paho C 1.3.12 shares one 1 s poll loop between the clients of
// a process and each extra connect waits ~2 s for it, and a thread per client does not
// scale to 10,000. One thread runs every connection over non-blocking sockets and epoll,
// speaking the few MQTT 3.1.1 packets it needs (nova/bridge/mqtt_wire.h). Connects are
// paced at `connect_rate` per second so a mass start does not flood the brokers' accept
// queues. The caller must allow enough open files: one descriptor per node (nova-sim
// raises RLIMIT_NOFILE to its hard limit).
//
// TLS (OpenSSL, nova/bridge/tls_client.h): TLS 1.2 or later, the broker's certificate
// verified against the trust anchor and required to name the host dialled; the
// handshake runs non-blocking on the same loop, within connect_timeout. One context
// (the files loaded once per run) serves every connection, with SSL_MODE_RELEASE_BUFFERS
// so idle connections hold no record buffers. While run() runs, SIGPIPE is blocked in
// its thread (SSL_write raises it on a closed connection).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "nova/schemas/result.h"
#include "nova/security/tls_files.h"

namespace nova::sim {

// One broker the nodes connect to, and the site path their births carry.
struct BrokerTarget {
  std::string host = "127.0.0.1";
  std::uint16_t port = 1883;
  std::string site_path;  // e.g. "cloud/eu/par/par-a1"
  bool tls = false;       // mqtts:// or ssl://
};

// "tcp://127.0.0.1:18837=cloud/eu/par/par-a1" -> BrokerTarget; errors name the part.
// Schemes: tcp:// or mqtt:// (plaintext, also without a scheme), mqtts:// or ssl:// (TLS).
schemas::Result<BrokerTarget> parse_broker(const std::string& spec);

struct SimOptions {
  std::vector<BrokerTarget> brokers;  // nodes are spread over them round-robin
  // The client identity every node presents to a TLS broker; required when one is TLS.
  // verify_server is always on: the simulator has no switch to turn it off.
  std::optional<security::TlsFiles> tls;
  std::size_t nodes = 1000;
  std::string prefix = "sim";         // node ids: <prefix>-<index>, index from 1, zero-padded
  double connect_rate = 2000;         // new TCP connects per second, all brokers together
  std::uint16_t keepalive_s = 60;
  std::uint64_t bdseq = 1;            // of each node's first connection in this run
  std::chrono::milliseconds metrics_interval{0};  // 0: no metrics
  std::chrono::milliseconds metrics_delay{0};     // before a node's first batch, after its CONNACK
  std::size_t samples_per_batch = 10;
  bool subscribe_acks = true;
  bool goodbye = true;
  std::chrono::milliseconds reconnect_delay{1000};
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds births_timeout{0};  // give up (run() returns) if not all born by then; 0: never
};

// Counters since start. Times are Unix epoch milliseconds (0: not yet), so other
// processes (a benchmark polling nova-cloud) can compare them with their own clock.
struct SimStats {
  std::size_t nodes = 0;
  std::size_t online = 0;            // connected (CONNACK accepted) right now
  std::uint64_t connects = 0;        // accepted connections, reconnects included
  std::uint64_t connect_failures = 0;
  std::uint64_t disconnects = 0;     // connections lost after CONNACK
  std::uint64_t births_sent = 0;
  std::uint64_t births_acked = 0;    // PUBACKs for births
  std::size_t nodes_born = 0;        // nodes whose first birth was PUBACKed
  std::uint64_t batches_sent = 0;
  std::uint64_t batches_acked = 0;   // PUBACKs (the broker has it), not the cloud's ack
  std::uint64_t acks_received = 0;   // the cloud's end-to-end Acks
  std::size_t nodes_fully_acked = 0; // nodes whose metrics watermark covers every batch sent
  std::uint64_t bad_acks = 0;        // undecodable Acks, or for another node
  std::int64_t first_connect_ms = 0;    // first TCP connect started
  std::int64_t first_birth_ms = 0;      // first birth written to a socket
  std::int64_t last_birth_sent_ms = 0;  // latest first-birth written
  std::int64_t all_born_ms = 0;         // every node's first birth PUBACKed
};

class Simulator {
 public:
  using StatsFn = std::function<void(const SimStats&)>;

  explicit Simulator(SimOptions options);
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  // Runs the nodes on the calling thread until `stop_fd` becomes readable (e.g. a
  // signalfd; -1: none), `run_for` has passed since every node was born (zero: no
  // limit) or `births_timeout` passed first, then says goodbye (or not, per options)
  // and returns the final counters (nodes_born < nodes: the births did not complete).
  // `on_born` runs once, when every node's first birth is PUBACKed; `on_progress` about
  // once per `progress_every`. Fails only when it cannot start (no brokers, a host that
  // does not resolve, a TLS broker without usable TLS files, an epoll error); unreachable
  // brokers and failed handshakes are retried and counted, not errors.
  schemas::Result<SimStats> run(int stop_fd, std::chrono::milliseconds run_for, const StatsFn& on_born,
                                const StatsFn& on_progress, std::chrono::milliseconds progress_every);

  // Node ids as run() names them, for tests and tools.
  static std::string node_id(const std::string& prefix, std::size_t index, std::size_t nodes);

 private:
  struct Impl;
  SimOptions options_;
};

}  // namespace nova::sim
