// Shared pieces of the broker-hierarchy acceptance tests: the example topology and a
// three-broker chain, payloads
// built with the codec, a per-(node, seq) tally that can be awaited, and a child process
// that can be SIGKILLed.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mqtt_support.h"
#include "hierarchy_support.h"
#include "nova/schemas/codec.h"
#include "nova/schemas/messages.h"
#include "nova/security/layout.h"

namespace nova::hiertest {

// Set by CMake: the example topology every test starts from.
inline tiers::Topology example_topology() { return load_topology(NOVA_FIVE_TIER_YAML); }

// A chain of three brokers, top (level 1) <- mid (2) <- low (3), named `name`, with a node
// at mid and one at low. mid's and low's bridges retry after 1-2 s (restart_timeout), so
// tests that restart or rotate a broker see its bridges back quickly.
inline tiers::Topology chain_topology(const std::string& name) {
  const std::string yaml = "name: " + name + R"(
sites:
  - {id: top, level: 1}
  - {id: mid, level: 2, parent: top, overrides: {restart_timeout: [1, 2]}}
  - {id: low, level: 3, parent: mid, overrides: {restart_timeout: [1, 2]}}
nodes:
  - {id: node-mid, site: mid}
  - {id: node-low, site: low}
)";
  auto topology = tiers::Topology::parse_yaml(yaml);
  if (!topology.ok()) throw std::runtime_error(name + ": " + topology.error().message());
  return std::move(topology).value();
}

// A duration in whole milliseconds, for the figures tests print.
inline long long whole_ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// The example over mutual TLS, with `operators` enrolled (start_hierarchy).
inline std::unique_ptr<RunningHierarchy> start_example(const std::string& test_name,
                                                       const std::vector<std::string>& operators = {}) {
  return start_hierarchy(example_topology(), "nova-hier-" + test_name, Transport::mutual_tls, operators);
}

inline std::string as_string(const schemas::Bytes& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

inline std::string to_hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    hex.push_back(kDigits[byte >> 4]);
    hex.push_back(kDigits[byte & 0xf]);
  }
  return hex;
}

inline std::string up_topic(const std::string& node, std::string_view kind) {
  return "nova/v1/up/" + node + "/" + std::string(kind);
}

// A one-sample metrics batch at stream position (node, "metrics", seq), CBOR.
inline std::string metrics_record(const std::string& node, std::uint64_t seq) {
  schemas::MetricsBatch batch;
  batch.position = {node, "metrics", seq};
  schemas::MetricSample sample;
  sample.ts = 1732650000000 + seq;
  sample.cpu_pct = 12.5;
  sample.mem_pct = 41.25;
  sample.disk_pct = 63.0;
  sample.load1 = 0.5;
  sample.net_rx_bps = 1200.0;
  sample.net_tx_bps = 800.0;
  batch.samples.push_back(sample);
  return as_string(schemas::encode_cbor(batch));
}

// Counts arrivals per (node, seq) of metrics records; hook it into a Client.
class SeqTally {
 public:
  using Key = std::pair<std::string, std::uint64_t>;

  // Decodes one payload; anything that is not a metrics batch is counted as foreign.
  void add_payload(const std::string& payload) {
    auto batch = schemas::decode_cbor<schemas::MetricsBatch>(payload);
    std::lock_guard lock(mutex_);
    if (!batch.ok()) {
      ++foreign_;
    } else {
      ++counts_[{batch->position.node, batch->position.seq}];
      ++total_;
    }
    changed_.notify_all();
  }

  // Waits until `n` distinct (node, seq) pairs have arrived.
  bool wait_distinct(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return counts_.size() >= n; });
  }
  // Waits until every seq in [first, last] of `node` has arrived.
  bool wait_range(const std::string& node, std::uint64_t first, std::uint64_t last,
                  std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
      for (std::uint64_t seq = first; seq <= last; ++seq) {
        if (counts_.find({node, seq}) == counts_.end()) return false;
      }
      return true;
    });
  }
  // True if anything arrives within `period` (a bounded quiet period).
  bool arrives_within(std::chrono::milliseconds period) {
    std::unique_lock lock(mutex_);
    const auto before = total_ + foreign_;
    return changed_.wait_for(lock, period, [&] { return total_ + foreign_ != before; });
  }

  std::map<Key, std::size_t> counts() const {
    std::lock_guard lock(mutex_);
    return counts_;
  }
  std::size_t distinct() const {
    std::lock_guard lock(mutex_);
    return counts_.size();
  }
  std::size_t total() const {
    std::lock_guard lock(mutex_);
    return total_;
  }
  std::size_t foreign() const {
    std::lock_guard lock(mutex_);
    return foreign_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<Key, std::size_t> counts_;
  std::size_t total_ = 0;
  std::size_t foreign_ = 0;
};

// What a tally says about node's seqs [first, last].
struct Accounting {
  std::size_t sent = 0;
  std::size_t received_distinct = 0;
  std::size_t deliveries = 0;   // including duplicates
  std::vector<std::uint64_t> lost;
  std::vector<std::uint64_t> duplicated;  // seqs that arrived more than once
  std::size_t extra_copies = 0;           // deliveries - received_distinct

  std::string summary() const {
    std::ostringstream out;
    out << "sent " << sent << ", received " << received_distinct << " distinct in "
        << deliveries << " deliveries, lost " << lost.size() << ", duplicated seqs "
        << duplicated.size() << " (" << extra_copies << " extra copies)";
    return out.str();
  }
};

inline Accounting account(const std::map<SeqTally::Key, std::size_t>& counts,
                          const std::string& node, std::uint64_t first, std::uint64_t last) {
  Accounting result;
  for (std::uint64_t seq = first; seq <= last; ++seq) {
    ++result.sent;
    const auto it = counts.find({node, seq});
    if (it == counts.end()) {
      result.lost.push_back(seq);
      continue;
    }
    ++result.received_distinct;
    result.deliveries += it->second;
    if (it->second > 1) {
      result.duplicated.push_back(seq);
      result.extra_copies += it->second - 1;
    }
  }
  return result;
}

// Compresses a sorted list of seqs into ranges: "12-19, 25".
inline std::string ranges(const std::vector<std::uint64_t>& seqs) {
  std::ostringstream out;
  for (std::size_t i = 0; i < seqs.size();) {
    std::size_t j = i;
    while (j + 1 < seqs.size() && seqs[j + 1] == seqs[j] + 1) ++j;
    if (i != 0) out << ", ";
    out << seqs[i];
    if (j != i) out << '-' << seqs[j];
    i = j + 1;
  }
  return out.str();
}

// How many times `needle` occurs in the file (0 if it does not exist).
inline std::size_t count_in_file(const std::filesystem::path& file, std::string_view needle) {
  std::ifstream in(file);
  const std::string text(std::istreambuf_iterator<char>(in), {});
  std::size_t count = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    ++count;
  }
  return count;
}

// Waits until `needle` occurs at least `min_count` times in `file` (e.g. a broker log).
// Wakes on writes to the file (inotify), not on a timer.
inline bool wait_for_file_count(const std::filesystem::path& file, std::string_view needle,
                                std::size_t min_count, std::chrono::milliseconds timeout) {
  const int fd = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) throw std::runtime_error("inotify_init1 failed");
  const bool watched = ::inotify_add_watch(fd, file.c_str(), IN_MODIFY) >= 0;
  const auto deadline = Clock::now() + timeout;
  bool found = false;
  while (watched) {
    if (count_in_file(file, needle) >= min_count) {
      found = true;
      break;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    pollfd event{fd, POLLIN, 0};
    if (::poll(&event, 1, static_cast<int>(left.count())) < 0) break;
    char drain[4096];
    while (::read(fd, drain, sizeof drain) > 0) {
    }
  }
  ::close(fd);
  return found;
}

// A child process (fork + exec) whose stdout the test reads line by line. Killed with
// SIGKILL on destruction if still running.
class ChildProcess {
 public:
  explicit ChildProcess(const std::vector<std::string>& argv) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::dup2(fds[1], STDOUT_FILENO);  // dup2 clears O_CLOEXEC on the copy
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = fds[0];
  }
  ~ChildProcess() {
    kill_and_reap();
    if (out_ >= 0) ::close(out_);
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Reads stdout until a line equal to `line` or EOF/timeout; false unless it came.
  bool wait_for_line(const std::string& line, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    std::string buffer;
    for (;;) {
      const auto pos = buffer.find('\n');
      if (pos != std::string::npos) {
        if (buffer.substr(0, pos) == line) return true;
        buffer.erase(0, pos + 1);
        continue;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd fd{out_, POLLIN, 0};
      if (::poll(&fd, 1, static_cast<int>(left.count())) <= 0) return false;
      char chunk[256];
      const auto n = ::read(out_, chunk, sizeof chunk);
      if (n <= 0) return false;
      buffer.append(chunk, static_cast<std::size_t>(n));
    }
  }

  pid_t pid() const { return pid_; }

  // SIGKILL and wait; returns the wait status (or -1 if it had already been reaped).
  int kill_and_reap() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

// The command line of will_publisher (NOVA_WILL_PUBLISHER) as node `node` at `site`'s
// broker, with the node's certificate under mutual TLS: a birth and a last will on
// `topic`.
inline std::vector<std::string> will_publisher_argv(const RunningHierarchy& running, const std::string& site,
                                                    const std::string& node, const std::string& topic,
                                                    const std::string& will, const std::string& birth) {
  std::vector<std::string> argv{NOVA_WILL_PUBLISHER, running.client_uri(site), node, topic, to_hex(will),
                                to_hex(birth)};
  if (running.transport == Transport::mutual_tls) {
    const security::Layout pki(running.pki_dir());
    argv.insert(argv.end(), {pki.trust_ca().string(), pki.identity_cert(node).string(), pki.identity_key(node).string()});
  }
  return argv;
}

}  // namespace nova::hiertest
