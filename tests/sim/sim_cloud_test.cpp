// nova-sim as the scale benchmark uses it, small: 200 simulated nodes on one broker and
// a real nova-cloud. Every node must be alive at the cloud (births with the site path,
// decoded by the cloud's codec), their metrics batches stored and acknowledged, and
// after a SIGKILL of the simulator every node must be dead: the brokers fired the wills
// the simulator registered, with the bdseq of the birth the cloud holds.
//
// On a mutual-TLS broker (broker.h) whose ACL denies what it does not grant: nova-cloud
// is granted everything, the simulator's one identity (CN nova-sim, every simulated node
// presents it) exactly the grant sim/README.md documents.
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "cloud_process.h"
#include "nova/testing/broker.h"
#include "nova/testing/test_pki.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kNodes = 200;
constexpr const char* kPrefix = "simt";
constexpr const char* kSite = "cloud/eu/par/par-a1";
constexpr const char* kSimIdentity = "nova-sim";

// The ACL of the site broker: nova-cloud may do anything; nova-sim gets the grant of
// sim/README.md for this site; nobody else anything. One file per test process (the
// broker reads it at start), removed at exit.
struct SiteAcl {
  fs::path file = fs::temp_directory_path() / ("nova-sim-acl-" + std::to_string(::getpid()));
  SiteAcl() {
    std::ofstream(file) << "user nova-cloud\ntopic readwrite #\n"
                        << "user " << kSimIdentity << "\n"
                        << "topic write nova/v1/up/+/state\n"
                        << "topic write nova/v1/up/+/metrics\n"
                        << "topic read nova/v1/down/" << kSite << "/+/ack\n";
  }
  ~SiteAcl() { fs::remove(file); }
};

testing::BrokerOptions site_broker_options() {
  static const SiteAcl acl;
  testing::BrokerOptions options = testing::mutual_tls();
  options.extra_config = "acl_file " + acl.file.string() + "\n";
  return options;
}

// nova-sim's arguments for `broker`, presenting the nova-sim identity.
std::vector<std::string> sim_args(const testing::Broker& broker, std::vector<std::string> more) {
  const testing::TlsIdentity id = testing::client_identity(kSimIdentity);
  std::vector<std::string> args = {"--broker", broker.uri() + "=" + kSite, "--tls-ca-file", id.ca.string(),
                                   "--tls-cert-file", id.cert.string(), "--tls-key-file", id.key.string()};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// nova-sim as a child process, its stdout on a pipe; dies with the test.
class SimProcess {
 public:
  explicit SimProcess(std::vector<std::string> args, const fs::path& log) {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    args.insert(args.begin(), NOVA_SIM_BIN);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::dup2(fds[1], STDOUT_FILENO);
      std::FILE* f = std::freopen(log.c_str(), "a", stderr);
      (void)f;
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(NOVA_SIM_BIN, argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = fds[0];
  }
  ~SimProcess() {
    kill(SIGKILL);
    ::close(out_);
  }

  // The next stdout line starting with `prefix`, waiting at most `timeout`; "" if none.
  std::string wait_line(const std::string& prefix, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      for (auto nl = buffer_.find('\n'); nl != std::string::npos; nl = buffer_.find('\n')) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        if (line.starts_with(prefix)) return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{out_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1) return "";
      char chunk[4096];
      const auto n = ::read(out_, chunk, sizeof chunk);
      if (n <= 0) return "";  // exited
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  // Sends `sig` and reaps; returns the wait status.
  int kill(int sig) {
    if (pid_ <= 0) return 0;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
    return status;
  }

 private:
  pid_t pid_ = 0;
  int out_ = -1;
  std::string buffer_;
};

// Liveness of each simulated node as the REST API reports it.
std::map<std::string, std::string> sim_nodes(const test::CloudProcess& cloud) {
  std::map<std::string, std::string> out;
  const auto nodes = cloud.get_json("/api/v1/nodes");
  if (!nodes.is_array()) return out;
  for (const auto& n : nodes) {
    const auto id = n.value("id", std::string());
    if (id.starts_with(std::string(kPrefix) + "-")) out[id] = n.value("liveness", std::string());
  }
  return out;
}

std::size_t count(const std::map<std::string, std::string>& nodes, const std::string& liveness) {
  return static_cast<std::size_t>(
      std::count_if(nodes.begin(), nodes.end(), [&](const auto& node) { return node.second == liveness; }));
}

// Polls the REST API (another process: nothing to wait on but its answers).
template <class Pred>
bool eventually(Pred pred, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return pred();
}

double metric(const test::CloudProcess& cloud, const std::string& name) {
  auto r = cloud.get("/metrics");
  if (!r || r->status != 200) return -1;
  const auto at = r->body.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(r->body.substr(at + name.size() + 2));
}

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

}  // namespace

TEST_CASE("nova-sim: 200 nodes are alive at nova-cloud, acked, and dead after a SIGKILL", "[sim]") {
  testing::Broker broker(site_broker_options());
  const fs::path dir = broker.data_dir() / "work";
  test::CloudProcess cloud(broker.uri(), dir / "cloud");

  SimProcess sim(sim_args(broker, {"-n", std::to_string(kNodes), "--prefix", kPrefix, "--connect-rate", "1000",
                                   "--metrics-interval-s", "1", "--births-timeout-s", "30", "--progress-s", "0"}),
                 dir / "sim.log");
  const std::string born = sim.wait_line("born: ", 30s);
  INFO("nova-sim log: " << (dir / "sim.log").string());
  REQUIRE(born.find("born=" + std::to_string(kNodes) + " ") != std::string::npos);

  // Every birth reached the cloud with its description.
  REQUIRE(eventually([&] { return count(sim_nodes(cloud), "alive") == kNodes; }, 20s));
  const auto one = cloud.get_json("/api/v1/nodes/" + std::string(kPrefix) + "-001");
  REQUIRE(one.is_object());
  CHECK(one.dump().find(kSite) != std::string::npos);

  // Each node's first metrics batch (1 s interval, spread over it) is stored and acked.
  REQUIRE(eventually([&] { return metric(cloud, "nova_cloud_records_stored_total") >= kNodes; }, 20s));
  CHECK(metric(cloud, "nova_cloud_records_rejected_total{reason=\"undecodable\"}") <= 0);
  REQUIRE(eventually([&] { return metric(cloud, "nova_cloud_acks_sent_total") >= kNodes; }, 20s));

  // SIGKILL: no goodbyes; the broker fires every will and the cloud marks all dead.
  sim.kill(SIGKILL);
  REQUIRE(eventually([&] { return count(sim_nodes(cloud), "dead") == kNodes; }, 20s));
}

TEST_CASE("nova-sim: SIGTERM says goodbye, usage errors exit 2", "[sim]") {
  testing::Broker broker(site_broker_options());
  const fs::path dir = broker.data_dir() / "work";
  test::CloudProcess cloud(broker.uri(), dir / "cloud");

  {
    SimProcess sim(sim_args(broker, {"-n", "20", "--prefix", kPrefix, "--progress-s", "0"}), dir / "sim.log");
    REQUIRE_FALSE(sim.wait_line("born: ", 30s).empty());
    REQUIRE(eventually([&] { return count(sim_nodes(cloud), "alive") == 20; }, 20s));
    CHECK(exit_code(sim.kill(SIGTERM)) == 0);
    REQUIRE(eventually([&] { return count(sim_nodes(cloud), "offline") == 20; }, 20s));
  }
  {
    SimProcess sim({"-n", "5"}, dir / "usage.log");  // no --broker
    CHECK(sim.wait_line("born: ", 10s).empty());
    CHECK(exit_code(sim.kill(0)) == 2);
  }
  {
    SimProcess sim({"--broker", "tcp://127.0.0.1:1=no-site-path-here/"}, dir / "usage.log");
    CHECK(sim.wait_line("born: ", 10s).empty());
    CHECK(exit_code(sim.kill(0)) == 2);
  }
}

// What nova-sim says about TLS it cannot do, and about plaintext.
TEST_CASE("nova-sim: unusable TLS files exit 2 naming the option, a foreign certificate is refused, plaintext warns",
          "[sim][tls]") {
  testing::Broker broker(site_broker_options());
  const fs::path dir = broker.data_dir() / "work";
  fs::create_directories(dir);
  const auto run_to_exit = [&](const std::vector<std::string>& args, const std::string& log_name) {
    SimProcess sim(args, dir / log_name);
    const int code = exit_code(sim.kill(0));
    std::ifstream in(dir / log_name);
    return std::pair{code, std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>())};
  };
  const testing::TlsIdentity id = testing::client_identity(kSimIdentity);
  const std::string tls_broker = broker.uri() + "=" + kSite;

  // An mqtts:// broker without TLS files, a missing key, a key of another certificate.
  auto [code, err] = run_to_exit({"--broker", tls_broker, "-n", "1"}, "no-files.log");
  CHECK(code == 2);
  CHECK_THAT(err, Catch::Contains("nova-sim: --tls-ca-file: required for a TLS uri"));
  std::tie(code, err) = run_to_exit({"--broker", tls_broker, "--tls-ca-file", id.ca.string(), "--tls-cert-file",
                                     id.cert.string(), "--tls-key-file", (dir / "absent.pem").string(), "-n", "1"},
                                    "absent-key.log");
  CHECK(code == 2);
  CHECK_THAT(err, Catch::Contains("nova-sim: --tls-key-file: ") && Catch::Contains("absent.pem"));
  const testing::TlsIdentity other = testing::client_identity("simt-other");
  std::tie(code, err) = run_to_exit({"--broker", tls_broker, "--tls-ca-file", id.ca.string(), "--tls-cert-file",
                                     id.cert.string(), "--tls-key-file", other.key.string(), "-n", "1"},
                                    "wrong-key.log");
  CHECK(code == 2);
  CHECK_THAT(err, Catch::Contains("nova-sim: --tls-key-file: ") && Catch::Contains("does not match"));
  // TLS files beside a plaintext broker only: they would be silently unused.
  std::tie(code, err) = run_to_exit({"--broker", "tcp://127.0.0.1:1=" + std::string(kSite), "--tls-ca-file",
                                     id.ca.string(), "--tls-cert-file", id.cert.string(), "--tls-key-file",
                                     id.key.string(), "-n", "1"},
                                    "plain-files.log");
  CHECK(code == 2);
  CHECK_THAT(err, Catch::Contains("--tls-ca-file: set, but every --broker is plaintext (use mqtts://)"));

  // A certificate of another PKI: the broker refuses the handshake; nova-sim counts and
  // logs the failed connects, keeps retrying, and fails when the births time out.
  const testing::TlsIdentity foreign = testing::foreign_identity(dir / "foreign-pki", kSimIdentity);
  std::tie(code, err) = run_to_exit({"--broker", tls_broker, "--tls-ca-file", id.ca.string(), "--tls-cert-file",
                                     foreign.cert.string(), "--tls-key-file", foreign.key.string(), "-n", "2",
                                     "--births-timeout-s", "2", "--reconnect-s", "0.2", "--progress-s", "0"},
                                    "foreign.log");
  CHECK(code == 1);
  CHECK_THAT(err, Catch::Contains("event=connect_failed") && Catch::Contains("TLS") &&
                      Catch::Contains("event=births_timeout"));

  // Plaintext is allowed and logged as such at start, as nova-agent and nova-cloud do.
  std::tie(code, err) = run_to_exit({"--broker", "tcp://127.0.0.1:1=" + std::string(kSite), "-n", "1",
                                     "--births-timeout-s", "1", "--progress-s", "0"},
                                    "plain.log");
  CHECK(code == 1);
  CHECK_THAT(err, Catch::Contains("level=warning event=plaintext_uplink brokers=\"127.0.0.1:1=" + std::string(kSite)));
}
