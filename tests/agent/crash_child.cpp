// A real agent process for the crash tests: the production Agent loop (outbox, uplink,
// drain, acks) fed by a fast synthetic sample source, so batches accumulate in
// milliseconds instead of minutes.
//   crash_child <broker uri> <dir> [--drain-only]
// With NOVA_CRASH_CHILD_LOG set in the environment it writes the agent's log to stderr,
// each line stamped with the wall clock in ms (to line up with the brokers' logs that
// NOVA_KEEP_TEST_DIRS keeps).
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "nova/agent/agent.h"
#include "nova/testing/signer.h"

namespace {

nova::agent::Agent* g_agent = nullptr;

class Counter final : public nova::agent::SampleSource {
 public:
  explicit Counter(bool enabled) : enabled_(enabled) {}
  const nova::schemas::MetricSample* sample(nova::schemas::Timestamp now) override {
    if (!enabled_) return nullptr;
    if (base_ == 0) base_ = now;
    s_.ts = base_ + 1000 * n_++;  // one "second" per sample: a batch closes every 60
    s_.cpu_pct = static_cast<double>(n_ % 100);
    return &s_;
  }

 private:
  bool enabled_;
  nova::schemas::Timestamp base_ = 0;
  std::uint64_t n_ = 0;
  nova::schemas::MetricSample s_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: crash_child <broker uri> <dir> [--drain-only]\n");
    return 2;
  }
  const bool drain_only = argc > 3 && std::strcmp(argv[3], "--drain-only") == 0;
  nova::agent::AgentOptions o;
  o.birth.node = "gw-crash";
  o.birth.description = nova::schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
  o.broker_uri = argv[1];
  if (const char* ca = std::getenv("NOVA_CRASH_TLS_CA")) {  // set for a TLS uri (crash_child_support.h)
    o.tls = nova::agent::TlsFiles{ca, std::getenv("NOVA_CRASH_TLS_CERT"), std::getenv("NOVA_CRASH_TLS_KEY")};
  }
  o.reconnect_min = std::chrono::milliseconds(50);
  o.reconnect_max = std::chrono::milliseconds(200);
  o.sample_interval = std::chrono::milliseconds(1);
  o.batch_interval = std::chrono::seconds(60);  // of sample time: 60 samples per batch
  o.drain.rate_per_s = 2000;
  o.drain.burst = 200;
  o.drain.jitter = std::chrono::milliseconds(20);
  o.drain.resend_after = std::chrono::seconds(2);
  o.outbox.dir = std::string(argv[2]) + "/outbox";
  o.state_dir = std::string(argv[2]) + "/state";
  o.control.keys = {nova::testing::test_signer().verify_key()};  // the acking consumer's key
  if (std::getenv("NOVA_CRASH_CHILD_LOG") != nullptr) {
    const char* role = drain_only ? "drainer" : "generator";
    o.log = [role](const char* level, const std::string& event, const std::string& fields) {
      using namespace std::chrono;
      const auto ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
      std::fprintf(stderr, "%lld.%03lld crash_child %s %s %s %s\n",
                   static_cast<long long>(ms / 1000), static_cast<long long>(ms % 1000), role,
                   level, event.c_str(), fields.c_str());
    };
  }
  Counter source(!drain_only);
  auto agent = nova::agent::Agent::create(o, &source);
  if (!agent) {
    std::fprintf(stderr, "crash_child: %s\n", agent.error().message().c_str());
    return 1;
  }
  g_agent = agent.value().get();
  std::signal(SIGTERM, [](int) { g_agent->stop(); });
  std::thread watcher;
  if (drain_only) {
    // Exit once every stored record is acknowledged end to end.
    watcher = std::thread([] {
      g_agent->wait_for([](const nova::agent::AgentCounters& c) { return c.acks > 0 && c.outbox_records == 0; },
                        std::chrono::minutes(5));
      g_agent->stop();
    });
  }
  g_agent->run();
  if (watcher.joinable()) watcher.join();
  return 0;
}
