// nova-sim: simulates many NovaCron nodes against real brokers (nova/sim/simulator.h).
//
// Exit codes: 0 every node was born (and the run ended as asked), 1 failure (the births
// did not complete within --births-timeout-s, not enough file descriptors, a broker
// host that does not resolve), 2 usage (TLS files that cannot serve included).
//
// TLS: an mqtts:// (or ssl://) --broker needs --tls-ca-file, --tls-cert-file and
// --tls-key-file, named like nova-agent's and nova-cloud's mqtt.tls_* keys and checked
// like theirs (nova/security/tls_files.h); every simulated node presents that one
// certificate (sim/README.md). A plaintext --broker is logged as plaintext_uplink at
// start, as the daemons do.
// Signals: SIGTERM/SIGINT stop the run: every node says goodbye ("offline") unless
// --no-goodbye. SIGKILL leaves the wills to the brokers ("dead").
//
// stdout carries two machine-readable lines (logfmt after the keyword), for benchmarks:
//   born: nodes=10000 first_connect_ms=... first_birth_ms=... last_birth_sent_ms=... all_born_ms=...
//   summary: nodes=10000 connects=... births_acked=... batches_sent=... acks_received=...
// (times are Unix epoch milliseconds). Progress and problems go to stderr, logfmt.
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <iostream>

#include "nova/common/log.h"
#include "nova/security/tls_files.h"
#include "nova/sim/simulator.h"

namespace {

using namespace nova;
using common::log_line;
using common::logfmt_quote;

std::string fields(const sim::SimStats& s) {
  auto kv = [](const char* k, auto v) { return std::string(k) + "=" + std::to_string(v) + " "; };
  std::string out = kv("nodes", s.nodes) + kv("online", s.online) + kv("born", s.nodes_born) + kv("connects", s.connects) +
                    kv("connect_failures", s.connect_failures) + kv("disconnects", s.disconnects) +
                    kv("births_sent", s.births_sent) + kv("births_acked", s.births_acked) +
                    kv("batches_sent", s.batches_sent) + kv("batches_acked", s.batches_acked) +
                    kv("acks_received", s.acks_received) + kv("nodes_fully_acked", s.nodes_fully_acked) +
                    kv("bad_acks", s.bad_acks) + kv("first_connect_ms", s.first_connect_ms) +
                    kv("first_birth_ms", s.first_birth_ms) + kv("last_birth_sent_ms", s.last_birth_sent_ms) +
                    kv("all_born_ms", s.all_born_ms);
  out.pop_back();
  return out;
}

std::string number(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", v);
  return buffer;
}

// One descriptor per node plus a few: raise the soft limit to the hard one (an
// unprivileged process may), and say how far short we are if even that is too low.
bool raise_fd_limit(std::size_t nodes) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return false;
  const rlim_t needed = nodes + 64;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < needed) {
    log_line("error", "fd_limit", "needed=" + std::to_string(needed) + " limit=" + std::to_string(lim.rlim_cur) +
                                      " hint=\"raise the hard limit (ulimit -Hn, as root) or simulate fewer nodes\"");
    return false;
  }
  return true;
}

// The --tls-* option that names `file`.
const char* tls_option(security::TlsFileProblem::File file) {
  switch (file) {
    case security::TlsFileProblem::File::ca: return "--tls-ca-file";
    case security::TlsFileProblem::File::cert: return "--tls-cert-file";
    case security::TlsFileProblem::File::key: return "--tls-key-file";
  }
  return "--tls-*";
}

// The TLS identity for the brokers that are TLS: nullopt and no error when none is;
// an error naming the option otherwise (files missing, unusable, or beside only
// plaintext brokers, where they would be silently unused).
schemas::Result<std::optional<security::TlsFiles>> tls_identity(const std::vector<sim::BrokerTarget>& brokers,
                                                                 const security::TlsFiles& files) {
  const bool any_tls = std::any_of(brokers.begin(), brokers.end(), [](const sim::BrokerTarget& b) { return b.tls; });
  const bool any_file = !files.ca_file.empty() || !files.cert_file.empty() || !files.key_file.empty();
  if (!any_tls) {
    if (any_file) return schemas::Error{"--tls-ca-file", "set, but every --broker is plaintext (use mqtts://)"};
    return std::optional<security::TlsFiles>{};
  }
  if (const auto problem = security::check_tls_files(files, security::linked_openssl())) {
    return schemas::Error{tls_option(problem->file), problem->reason};
  }
  return std::optional<security::TlsFiles>{files};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "nova-sim: simulates N NovaCron nodes, each its own MQTT connection (client id = node id),\n"
      "publishing a retained birth with a last will and optionally metrics batches, for scale\n"
      "tests of nova-cloud and the broker tree. All nodes run on one thread (epoll).\n"
      "Raises its open-files limit (RLIMIT_NOFILE) to the hard limit: one descriptor per node.\n"
      "Exit codes: 0 every node born, 1 failure, 2 usage."};
  sim::SimOptions o;
  std::vector<std::string> broker_specs;
  double metrics_interval_s = 0;
  double metrics_delay_s = 0;
  double duration_s = 0;
  double births_timeout_s = 120;
  double progress_s = 1;
  double reconnect_s = 1;
  bool no_acks = false;
  bool no_goodbye = false;
  security::TlsFiles tls_files;
  o.bdseq = static_cast<std::uint64_t>(std::time(nullptr));  // grows across runs without state

  app.add_option("-b,--broker", broker_specs,
                 "URI=SITE_PATH, e.g. mqtts://127.0.0.1:18837=cloud/eu/par/par-a1 (tcp:// for plaintext); "
                 "repeat it: nodes are spread round-robin over the brokers and their births carry that site path")
      ->required();
  app.add_option("--tls-ca-file", tls_files.ca_file,
                 "TLS brokers (mqtts://): PEM trust anchor the broker's certificate must chain to");
  app.add_option("--tls-cert-file", tls_files.cert_file,
                 "TLS brokers: the certificate (and intermediates, PEM) every simulated node presents");
  app.add_option("--tls-key-file", tls_files.key_file, "TLS brokers: its private key (PEM, unencrypted)");
  app.add_option("-n,--nodes", o.nodes, "simulated nodes")->capture_default_str()->check(CLI::Range(1, 1'000'000));
  app.add_option("--prefix", o.prefix, "node ids are <prefix>-<index> (index from 1, zero-padded); must not be a site id")
      ->capture_default_str();
  app.add_option("--connect-rate", o.connect_rate, "new connections per second, all brokers together")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--keepalive-s", o.keepalive_s, "MQTT keepalive (PINGREQ every half of it)")->capture_default_str();
  app.add_option("--bdseq", o.bdseq, "bdseq of each node's first connection (default: now, in Unix seconds)");
  app.add_option("--metrics-interval-s", metrics_interval_s,
                 "publish a MetricsBatch per node this often (0: none); nodes are spread over the interval")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--metrics-delay-s", metrics_delay_s, "wait this long after connecting before a node's first batch")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--samples-per-batch", o.samples_per_batch, "samples in each batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_flag("--no-acks", no_acks, "do not subscribe to the cloud's acks");
  app.add_flag("--no-goodbye", no_goodbye, "on stop, close the connections without \"offline\": the wills fire");
  app.add_option("--duration-s", duration_s, "stop this long after every node was born (0: run until SIGINT/SIGTERM)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--births-timeout-s", births_timeout_s, "fail (exit 1) if not every node is born by then (0: wait forever)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--reconnect-s", reconnect_s, "delay before reconnecting a lost node (plus up to as much jitter)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--progress-s", progress_s, "progress log line interval on stderr (0: none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  for (const std::string& spec : broker_specs) {
    auto b = sim::parse_broker(spec);
    if (!b) {
      std::cerr << "nova-sim: --broker " << spec << ": " << b.error().reason << "\n";
      return 2;
    }
    o.brokers.push_back(*b);
  }
  auto tls = tls_identity(o.brokers, tls_files);
  if (!tls) {
    std::cerr << "nova-sim: " << tls.error().path << ": " << tls.error().reason << "\n";
    return 2;
  }
  o.tls = *tls;
  auto ms = [](double s) { return std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000)); };
  o.metrics_interval = ms(metrics_interval_s);
  o.metrics_delay = ms(metrics_delay_s);
  o.births_timeout = ms(births_timeout_s);
  o.reconnect_delay = ms(reconnect_s);
  o.subscribe_acks = !no_acks;
  o.goodbye = !no_goodbye;

  if (!raise_fd_limit(o.nodes)) return 1;

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const int stop_fd = ::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (stop_fd < 0) {
    log_line("error", "signalfd_failed");
    return 1;
  }

  std::string targets;
  std::string plaintext;
  for (const auto& b : o.brokers) {
    const std::string target = b.host + ":" + std::to_string(b.port) + "=" + b.site_path;
    targets += (targets.empty() ? "" : ",") + target;
    if (!b.tls) plaintext += (plaintext.empty() ? "" : ",") + target;
  }
  if (!plaintext.empty()) {
    log_line("warning", "plaintext_uplink",
             "brokers=" + logfmt_quote(plaintext) + " reason=\"MQTT without TLS: readable and forgeable on the path\"");
  }
  log_line("info", "started", "nodes=" + std::to_string(o.nodes) + " prefix=" + o.prefix + " brokers=" +
                                  logfmt_quote(targets) + " connect_rate=" + number(o.connect_rate) + " tls=" + (o.tls ? "on" : "off") +
                                  " bdseq=" + std::to_string(o.bdseq));

  sim::Simulator simulator(o);
  const auto result = simulator.run(
      stop_fd, ms(duration_s),
      [](const sim::SimStats& s) {
        std::cout << "born: " << fields(s) << std::endl;
        log_line("info", "all_born", "nodes=" + std::to_string(s.nodes) + " connect_to_born_ms=" +
                                         std::to_string(s.all_born_ms - s.first_connect_ms));
      },
      [](const sim::SimStats& s) { log_line("info", "progress", fields(s)); }, ms(progress_s));
  ::close(stop_fd);
  if (!result) {
    log_line("error", "run_failed", "error=" + logfmt_quote(result.error().message()));
    return 1;
  }
  std::cout << "summary: " << fields(*result) << std::endl;
  log_line("info", "stopped", fields(*result));
  return result->nodes_born == result->nodes ? 0 : 1;
}
