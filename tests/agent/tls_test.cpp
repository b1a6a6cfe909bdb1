// nova-agent over TLS with its client certificate, against a real Mosquitto whose
// listener requires one (require_certificate, use_identity_as_username), with
// certificates made by the openssl command line (nova/testing/test_ca.h).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <iostream>
#include <string>
#include <thread>

#include "nova/schemas/codec.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/broker.h"
#include "nova/testing/child_process.h"
#include "nova/testing/publish.h"
#include "nova/testing/test_ca.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kSite = "cloud/eu/par/par-a1";
constexpr const char* kNode = "gw-tls";

fs::path temp_dir() {
  std::string pattern = (fs::path(::getenv("TMPDIR") != nullptr ? ::getenv("TMPDIR") : "/tmp") / "nova-tls.XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return pattern;
}

// One site: a CA, a broker whose TLS listener requires a certificate of that CA (and
// honours its CRL). The test's own clients present certificates of that CA too.
struct TlsSite {
  fs::path dir = temp_dir();
  testing::TestCa ca{dir / "ca"};
  testing::CertFiles server = ca.issue_server();
  fs::path crl = ca.crl();
  testing::Broker broker{options()};

  ~TlsSite() {
    std::error_code ec;
    if (::getenv("NOVA_KEEP_TEST_DIRS") == nullptr) fs::remove_all(dir, ec);
  }
  testing::BrokerOptions options() const {
    testing::BrokerOptions o;
    o.extra_config = "cafile " + ca.cert().string() + "\ncertfile " + server.cert.string() + "\nkeyfile " +
                     server.key.string() + "\ncrlfile " + crl.string() +
                     "\nrequire_certificate true\nuse_identity_as_username true\ntls_version tlsv1.2\n";
    return o;
  }
  std::string tls_uri() const { return "mqtts://127.0.0.1:" + std::to_string(broker.port()); }
  // A client identity of this site's CA, for the test's own Paho clients.
  testing::TlsIdentity identity(const std::string& cn) {
    const testing::CertFiles files = ca.issue({cn, {}, 30});
    return {ca.cert(), files.cert, files.key};
  }

  // The agent's config: TLS with these files, a metrics batch every 10 s.
  fs::path agent_config(const fs::path& ca_file, const testing::CertFiles& identity) const {
    const fs::path file = dir / "agent.yaml";
    testing::write_agent_config(file, kNode, kSite, 4, tls_uri(), dir / "agent",
                                "metrics: {interval_ms: 100, batch_interval_s: 10}\n",
                                ", tls_ca_file: " + ca_file.string() + ", tls_cert_file: " + identity.cert.string() +
                                    ", tls_key_file: " + identity.key.string());
    return file;
  }
  // mosquitto_sub as an outside TLS client with `identity`; `args` are its other options.
  std::string sub_command(const testing::CertFiles& identity, const std::string& args) const {
    return "mosquitto_sub -h 127.0.0.1 -p " + std::to_string(broker.port()) + " --cafile " + ca.cert().string() +
           " --cert " + identity.cert.string() + " --key " + identity.key.string() + " " + args;
  }
};

bool alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

std::string read_file(const fs::path& file) {
  std::ifstream in(file);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Waits until `file` exists; another process (a task) makes it.
bool wait_file(const fs::path& file, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!fs::exists(file)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a file another process writes
  }
  return true;
}

// Replaces `to` by `from` in one rename, as a certificate manager does.
void install(const fs::path& from, const fs::path& to) {
  fs::copy_file(from, to.string() + ".new", fs::copy_options::overwrite_existing);
  fs::rename(to.string() + ".new", to);
}

// Waits until something accepts TCP connections on 127.0.0.1:`port`.
bool wait_listening(std::uint16_t port, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(20ms);  // another process's listen(); nothing to wait on
  }
  return false;
}

}  // namespace

TEST_CASE("nova-agent connects over TLS with its certificate: its birth and a metrics batch arrive, also after it released its start-up pages",
          "[agent][tls][integration]") {
  TlsSite site;
  const auto node = site.ca.issue({kNode, {}, 30});
  const auto outsider = site.ca.issue({"operator", {}, 30});
  // The outside client subscribes first; its output goes to a file (topics only).
  testing::ChildProcess sub;
  sub.start({"/bin/sh", "-c",
             "exec " + site.sub_command(outsider, "-F %t -t nova/v1/up/gw-tls/state -t nova/v1/up/gw-tls/metrics") +
                 " >&2"},
            site.dir / "sub.log", false);
  REQUIRE(site.broker.wait_for_log("u'operator'", 10s));
  testing::AgentProcess agent(NOVA_AGENT_BIN, site.agent_config(site.ca.cert(), node), site.dir / "agent.log");
  REQUIRE(agent.wait_log("event=connected", 20s));
  // It releases the pages only start-up used at connect (docs/agent.md, "Memory"), and
  // its TLS uplink goes on working: the batch below is sent afterwards.
  REQUIRE(agent.wait_log("event=startup_pages_released", 10s));
  std::string seen;
  const auto deadline = std::chrono::steady_clock::now() + 30s;  // one batch is due after 10 s
  while (seen.find("nova/v1/up/gw-tls/metrics") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);  // a file another process writes
    std::ifstream in(site.dir / "sub.log");
    seen.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  sub.signal(SIGTERM);
  INFO(seen << "\nagent log:\n" << agent.text());
  CHECK(seen.find("nova/v1/up/gw-tls/state") != std::string::npos);
  CHECK(seen.find("nova/v1/up/gw-tls/metrics") != std::string::npos);
  // The broker took the certificate's CN as the user name.
  CHECK(site.broker.log_count("u'gw-tls'") >= 1);
  CHECK(agent.text().find("plaintext_uplink") == std::string::npos);
}

TEST_CASE("nova-agent refused by TLS logs why, keeps retrying and stays up", "[agent][tls][integration]") {
  TlsSite site;
  const fs::path foreign_dir = site.dir / "foreign";
  testing::TestCa foreign(foreign_dir, "foreign-ca");
  struct Case {
    const char* name;
    fs::path ca_file;
    testing::CertFiles identity;
    const char* agent_reason;   // in the agent's disconnected line
    const char* broker_reason;  // in the broker's log
  };
  // The side that refuses logs OpenSSL's reason; Paho tells the agent only that the TLS
  // connect failed when the broker refuses.
  const Case cases[] = {
      {"certificate of a foreign CA", site.ca.cert(), foreign.issue({kNode, {}, 30}), "connect failed",
       "certificate verify failed"},
      {"expired certificate", site.ca.cert(), site.ca.issue({kNode, {}, -1}), "connect failed",
       "certificate verify failed"},
      {"broker not signed by the trusted CA", foreign.cert(), site.ca.issue({kNode, {}, 30}),
       "certificate verify failed", ""},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      const std::size_t before = site.broker.log_count("New connection from 127.0.0.1");
      testing::AgentProcess agent(NOVA_AGENT_BIN, site.agent_config(c.ca_file, c.identity), site.dir / "agent.log");
      INFO(agent.text() << "\nbroker log:\n" << site.broker.log_text());
      REQUIRE(agent.wait_log("event=disconnected", 20s));
      CHECK(agent.text().find(c.agent_reason) != std::string::npos);
      CHECK(site.broker.log_text().find(c.broker_reason) != std::string::npos);
      // Three more attempts reach the broker (reconnect back-off 100..1000 ms) ...
      CHECK(site.broker.wait_for_log("New connection from 127.0.0.1", 20s, before + 3));
      // ... none is let in, and the agent is still running.
      CHECK(agent.text().find("event=connected") == std::string::npos);
      CHECK(alive(agent.pid()));
    }
  }
}

TEST_CASE("a rotated certificate is used after SIGHUP without losing a record, and the old one can be revoked",
          "[agent][tls][integration]") {
  TlsSite site;
  const auto first = site.ca.issue({kNode, {}, 30});
  // The agent's identity lives at fixed paths, replaced on rotation.
  const testing::CertFiles live{site.dir / "node.crt", site.dir / "node.key", first.serial};
  install(first.cert, live.cert);
  install(first.key, live.key);
  testing::AckConsumer consumer(site.tls_uri(), "nova-cloud", true, site.identity("nova-cloud"));
  testing::AgentProcess agent(NOVA_AGENT_BIN, site.agent_config(site.ca.cert(), live), site.dir / "agent.log");
  INFO(agent.text());
  REQUIRE(agent.wait_log("event=connected", 20s));
  REQUIRE(consumer.wait_for(kNode, "metrics", 1, 30s));

  // A workload that runs across the rotation: it says it started, then waits for the
  // test's word (a file) that the rotation is over. In a folder of its own that the
  // task's user (tasks.user) can write.
  const fs::path work = temp_dir();
  fs::permissions(work, fs::perms::all);
  const schemas::Task task{"t-rotation", std::nullopt,
                           {"/bin/sh", "-c",
                            "echo started >> \"$1/started\"; while [ ! -e \"$1/go\" ]; do /bin/sleep 0.05; done; "
                            "echo finished > \"$1/finished\"",
                            "sh", work.string()},
                           {}, 60000, 0, 0, 1, 1, std::nullopt};
  const schemas::Bytes task_cbor = schemas::encode_cbor(task);
  testing::publish_as_cloud(site.tls_uri(), std::string("nova/v1/down/") + kSite + "/" + kNode + "/task",
                            std::string(task_cbor.begin(), task_cbor.end()), false, site.identity("nova-cloud"));
  REQUIRE(wait_file(work / "started", 30s));

  // Rotation: a new key and certificate, installed by rename; the old one revoked.
  const auto second = site.ca.issue({kNode, {}, 30});
  install(second.key, live.key);
  install(second.cert, live.cert);
  site.ca.revoke(first);
  site.ca.crl();
  const auto t0 = std::chrono::steady_clock::now();
  ::kill(agent.pid(), SIGHUP);
  REQUIRE(agent.wait_log("event=tls_renew", 10s));
  REQUIRE(agent.wait_log("event=connected", 10s, 2));
  const auto reconnect = std::chrono::steady_clock::now() - t0;

  // The broker now refuses the old certificate (its CRL is read at start) and lets the
  // agent in with the new one.
  site.broker.restart();
  REQUIRE(agent.wait_log("event=connected", 20s, 3));
  CHECK_THROWS(testing::run_command(site.sub_command(first, "-t x -C 1 -W 3")));

  // Nothing lost: every record up to one made after both reconnects arrives, no gap.
  const std::size_t before = consumer.count(kNode, "metrics").seqs.size();
  REQUIRE(consumer.wait_for(kNode, "metrics", before + 1, 30s));
  const auto count = consumer.count(kNode, "metrics");
  CHECK(*count.seqs.begin() == 1);
  CHECK(*count.seqs.rbegin() == count.seqs.size());
  CHECK(alive(agent.pid()));
  // Only the connection was renewed: the agent itself started once, and the workload
  // started before the rotation ran through it, once, and its result came up.
  const std::string log = agent.text();
  CHECK(log.find("event=started") == log.rfind("event=started"));
  CHECK_FALSE(fs::exists(work / "finished"));
  std::ofstream(work / "go").close();
  CHECK(consumer.wait_for(kNode, "results", 1, 30s));
  CHECK(read_file(work / "finished") == "finished\n");
  CHECK(read_file(work / "started") == "started\n");
  fs::remove_all(work);
  std::cout << "tls rotation: SIGHUP to reconnected " << std::chrono::duration_cast<std::chrono::milliseconds>(reconnect).count()
            << " ms; metrics records " << count.seqs.size() << " received, " << count.duplicates
            << " duplicates, none missing\n";
}

TEST_CASE("nova-agent refuses a broker that offers only TLS 1.1", "[agent][tls][integration]") {
  TlsSite site;  // its CA and server certificate; the broker is not used
  const std::uint16_t port = testing::free_loopback_port();
  std::string openssl = testing::run_command("command -v openssl");
  while (!openssl.empty() && openssl.back() == '\n') openssl.pop_back();
  testing::ChildProcess server;
  // Security level 0 lets this OpenSSL 3 serve TLS 1.1 at all.
  server.start({openssl, "s_server", "-quiet", "-accept", std::to_string(port), "-cert", site.server.cert.string(),
                "-key", site.server.key.string(), "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"},
               site.dir / "s_server.log", false);
  REQUIRE(wait_listening(port, 10s));
  const auto node = site.ca.issue({kNode, {}, 30});
  const fs::path file = site.dir / "agent.yaml";
  testing::write_agent_config(file, kNode, kSite, 4, "mqtts://127.0.0.1:" + std::to_string(port), site.dir / "agent", "",
                              ", tls_ca_file: " + site.ca.cert().string() + ", tls_cert_file: " + node.cert.string() +
                                  ", tls_key_file: " + node.key.string());
  testing::AgentProcess agent(NOVA_AGENT_BIN, file, site.dir / "agent.log");
  INFO(agent.text());
  REQUIRE(agent.wait_log("event=disconnected", 20s));
  CHECK(agent.text().find("tls: ") != std::string::npos);
  CHECK(agent.text().find("event=connected") == std::string::npos);
  CHECK(alive(agent.pid()));
  server.signal(SIGKILL);
}
