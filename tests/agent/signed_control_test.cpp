// Signed control messages against the real nova-agent on a real broker (issue 10): each
// attack is sent by an outside client (mosquitto_pub with a payload file), and each is
// refused with a log line naming the reason while the agent keeps serving.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "nova/schemas/codec.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/broker.h"
#include "nova/testing/signer.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kNode = "gw-signed";
constexpr const char* kSite = "cloud/eu/par/par-a1";

std::string down(const char* kind) {
  return std::string("nova/v1/down/") + kSite + "/" + kNode + "/" + kind;
}

std::string cbor(const auto& message) {
  const schemas::Bytes b = schemas::encode_cbor(message);
  return std::string(b.begin(), b.end());
}

// A task that appends a line to `file`: how often it ran is the file's line count.
std::string append_task(const std::string& id, const fs::path& file) {
  return cbor(schemas::Task{
      id, std::nullopt, {"/bin/sh", "-c", "echo ran >> " + file.string()}, {}, 10000, 0, 0, 1, 1, std::nullopt});
}

std::size_t lines_of(const fs::path& file) {
  std::ifstream in(file);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

// Waits until the task's file has `n` lines (written by the agent's task process).
bool wait_lines(const fs::path& file, std::size_t n, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (lines_of(file) < n) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);  // a file another process writes: nothing to wait on
  }
  return true;
}

// An outside client: mosquitto_pub of `payload` (from a file, byte for byte) with a
// certificate of the PKI that is not nova-cloud's (a compromised device's), as an attacker
// inside the network would be. It also claims the username nova-cloud, which the TLS
// broker ignores (use_identity_as_username): the test broker has no ACL, so only the
// agent's signature check stands between this client and the agent.
void outside_publish(const testing::Broker& broker, const std::string& topic,
                     const std::string& payload, bool retained = false) {
  static int n = 0;
  const fs::path file = broker.data_dir() / ("payload-" + std::to_string(++n));
  std::ofstream(file, std::ios::binary) << payload;
  const std::string cmd = "mosquitto_pub " + broker.mosquitto_client_args("outside-device") +
                          " -q 1 -u nova-cloud -i outside-" + std::to_string(n) + " -t '" + topic +
                          "' -f " + file.string() + (retained ? " -r" : "");
  REQUIRE(std::system(cmd.c_str()) == 0);
}

// Where a task may write what the test reads: tasks run as the unprivileged tasks.user
// (docs/agent.md), which cannot enter the test's own 0700 directories.
fs::path task_output(const std::string& name) {
  const fs::path out = fs::temp_directory_path() / ("nova-signed-" + std::to_string(::getpid()) + "-" + name);
  fs::remove(out);
  std::ofstream{out};
  fs::permissions(out, fs::perms::all & ~(fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec));
  return out;
}

struct SignedAgent {
  testing::Broker& broker;
  fs::path dir;
  std::unique_ptr<testing::AgentProcess> process;

  SignedAgent(testing::Broker& b, const std::string& name) : broker(b), dir(b.data_dir() / name) {
    fs::create_directories(dir);
    testing::write_agent_config(dir / "agent.yaml", kNode, kSite, 4, broker.uri(), dir,
                                "trust: {signing_keys: [" +
                                    testing::test_signer().public_file().string() +
                                    "], clock_skew_s: 30}\n");
    start();
  }
  void start() {
    process = std::make_unique<testing::AgentProcess>(NOVA_AGENT_BIN, dir / "agent.yaml",
                                                      dir / "agent.log");
    REQUIRE(process->wait_log("event=connected", 20s));
  }
  void kill_and_restart() {
    process->signal(SIGKILL);
    // A new log, counted from here. Removed first: the child truncates it only once it
    // runs, and until then a wait would read the old run's lines.
    fs::remove(dir / "agent.log");
    start();
  }
  bool refused(const std::string& reason, std::size_t n = 1) const {
    return process->wait_log("event=control_refused reason=" + reason, 10s, n);
  }
  std::size_t count(const std::string& needle) const {
    const std::string t = process->text();
    std::size_t c = 0;
    for (auto p = t.find(needle); p != std::string::npos; p = t.find(needle, p + 1)) ++c;
    return c;
  }
};

}  // namespace

TEST_CASE("unsigned, forged, misaddressed, expired and future tasks never run",
          "[agent][process][signing]") {
  testing::Broker broker(testing::mutual_tls());
  SignedAgent agent(broker, "agent");
  const fs::path ran = task_output("ran");
  const testing::TestSigner attacker(agent.dir / "attacker-key");  // a key the agent does not trust

  // Attack: claim username nova-cloud and publish a task on the node's down topic.
  outside_publish(broker, down("task"), append_task("evil-1", ran));
  REQUIRE(agent.refused("unsigned"));
  // The same task signed by a key the agent does not trust.
  outside_publish(broker, down("task"), attacker.sign(down("task"), append_task("evil-2", ran)));
  REQUIRE(agent.refused("untrusted_key"));
  // Signed by the trusted key, but for another node, replayed onto this node's topic.
  const std::string other_node = std::string("nova/v1/down/") + kSite + "/gw-other/task";
  outside_publish(broker, down("task"),
                  testing::test_signer().sign(other_node, append_task("evil-3", ran)));
  REQUIRE(agent.refused("misaddressed"));
  // Signed as a config and sent as a task.
  outside_publish(broker, down("task"),
                  testing::test_signer().sign(down("config"), append_task("evil-4", ran)));
  REQUIRE(agent.refused("misaddressed", 2));
  // Expired beyond the 30 s skew allowance, and issued beyond it in the future.
  auto claims = testing::TestSigner::claims_for(down("task"), 10min);
  claims.issued_ts -= 3'600'000;
  claims.expires_ts = claims.issued_ts + 60'000;
  outside_publish(broker, down("task"),
                  testing::test_signer().sign(claims, append_task("evil-5", ran)));
  REQUIRE(agent.refused("expired"));
  claims = testing::TestSigner::claims_for(down("task"), 10min);
  claims.issued_ts += 120'000;
  claims.expires_ts += 120'000;
  outside_publish(broker, down("task"),
                  testing::test_signer().sign(claims, append_task("evil-6", ran)));
  REQUIRE(agent.refused("not_yet_valid"));

  // The agent keeps serving: a task signed by the trusted key runs.
  outside_publish(broker, down("task"),
                  testing::test_signer().sign(down("task"), append_task("good-1", ran)));
  REQUIRE(wait_lines(ran, 1, 20s));
  CHECK(agent.count("event=control_refused") == 6);
  CHECK(agent.process->running());
}

TEST_CASE("a replayed signed task is refused, also after the agent restarts",
          "[agent][process][signing]") {
  testing::Broker broker(testing::mutual_tls());
  SignedAgent agent(broker, "agent");
  const fs::path ran = task_output("ran");
  const std::string task = testing::test_signer().sign(down("task"), append_task("once", ran));

  outside_publish(broker, down("task"), task);
  REQUIRE(wait_lines(ran, 1, 20s));
  outside_publish(broker, down("task"), task);  // the same bytes again
  REQUIRE(agent.refused("replayed"));

  // The accepted ids are on disk: SIGKILL and restart do not reopen the window.
  agent.kill_and_restart();
  outside_publish(broker, down("task"), task);
  REQUIRE(agent.refused("replayed"));
  CHECK(lines_of(ran) == 1);
}

TEST_CASE("a task cancel must be signed: a forged one stops nothing, a malformed one is named, a signed one stops the task",
          "[agent][process][signing][cancel]") {
  testing::Broker broker(testing::mutual_tls());
  SignedAgent agent(broker, "agent");
  const fs::path ran = task_output("ran");
  // Writes a line when it starts and another when SIGTERM reaches it.
  const std::string task = cbor(schemas::Task{"long-1", std::nullopt,
                                              {"/bin/sh", "-c",
                                               "echo ran >> " + ran.string() + "; trap 'echo stopped >> " +
                                                   ran.string() + "; exit 0' TERM; while :; do sleep 0.2; done"},
                                              {}, 600000, 0, 0, 1, 1, std::nullopt});
  outside_publish(broker, down("task"), testing::test_signer().sign(down("task"), task));
  REQUIRE(wait_lines(ran, 1, 20s));

  const std::string cancel = cbor(schemas::TaskCancel{"long-1", std::string("test"), 1});
  outside_publish(broker, down("cancel"), cancel);  // unsigned
  REQUIRE(agent.refused("unsigned"));
  outside_publish(broker, down("cancel"), testing::test_signer().sign(down("task"), cancel));  // signed as a task
  REQUIRE(agent.refused("misaddressed"));
  // Signed, but not a task cancel: a bad message naming the field; the agent goes on.
  outside_publish(broker, down("cancel"),
                  testing::test_signer().sign(down("cancel"), cbor(schemas::TaskCancel{"", std::nullopt, 1})));
  REQUIRE(agent.process->wait_log("event=bad_message topic=" + down("cancel") + " error=\"cancel.task_id", 10s));
  CHECK(lines_of(ran) == 1);  // still running, never stopped

  outside_publish(broker, down("cancel"), testing::test_signer().sign(down("cancel"), cancel));
  REQUIRE(agent.process->wait_log("event=task_cancel task_id=long-1 outcome=stopping", 10s));
  REQUIRE(wait_lines(ran, 2, 20s));
  CHECK(agent.process->running());
  fs::remove(ran);
}

TEST_CASE("a forged ack deletes nothing: the records are delivered and acked by the real cloud",
          "[agent][process][signing]") {
  testing::Broker broker(testing::mutual_tls());
  SignedAgent agent(broker, "agent");
  const fs::path ran = task_output("ran");
  {
    // A cloud that stores but does not acknowledge yet: the task's result is held.
    testing::AckConsumer silent(broker.uri(), "nova-cloud", false);
    outside_publish(broker, down("task"),
                    testing::test_signer().sign(down("task"), append_task("t", ran)));
    REQUIRE(silent.wait_for(kNode, "results", 1, 30s));
  }
  // Attack: an ack far ahead of what the cloud stored, unsigned and signed by another key.
  const std::string forged = cbor(schemas::Ack{kNode, 1, {{"results", 1000}, {"metrics", 1000}}});
  outside_publish(broker, down("ack"), forged);
  REQUIRE(agent.refused("unsigned"));
  const testing::TestSigner attacker(agent.dir / "attacker-key");
  outside_publish(broker, down("ack"), attacker.sign(down("ack"), forged));
  REQUIRE(agent.refused("untrusted_key"));

  // Had the forged ack deleted the result, a restarted agent would have nothing to send.
  // The real cloud listens before the restart, so it sees the restarted agent's drain.
  testing::AckConsumer cloud(broker.uri());
  agent.kill_and_restart();
  REQUIRE(cloud.wait_for(kNode, "results", 1, 30s));
  CHECK(cloud.count(kNode, "results").seqs.count(1) == 1);
  CHECK(cloud.acks_sent() >= 1);                     // signed with the trusted key: not refused
  CHECK(agent.count("event=control_refused") == 0);  // counted since the restart
  // Stopped before the consumer, so no ack is in flight when its client is destroyed
  // (Paho C++ 1.2 crashes destroying a client whose publish fails in its destructor).
  agent.process->signal(SIGKILL);
}

TEST_CASE(
    "retained configs: a forged one is never applied, a signed one once, an older one is refused",
    "[agent][process][signing]") {
  testing::Broker broker(testing::mutual_tls());
  SignedAgent agent(broker, "agent");

  schemas::Config config;
  config.revision = 1;
  config.values = {{"drain.rate_per_s", std::int64_t{7}}};
  // Attack: a retained forged config, and a retained forged model.
  outside_publish(broker, down("config"), cbor(config), true);
  REQUIRE(agent.refused("unsigned"));
  outside_publish(broker, down("model"),
                  cbor(schemas::Model{"m", 1, "zscore", {{"threshold", 1}}, {}, 1}), true);
  REQUIRE(agent.refused("unsigned", 2));
  // After a restart the broker delivers them again: refused again, never applied.
  agent.kill_and_restart();
  REQUIRE(agent.refused("unsigned", 2));
  CHECK(agent.count("source=remote") == 0);
  CHECK(agent.count("event=model_applied") == 0);

  // A signed config is applied; the broker's re-delivery on reconnect is the same
  // message and is not applied again.
  const std::string older = testing::test_signer().sign(down("config"), cbor(config));
  config.values = {{"drain.rate_per_s", std::int64_t{9}}};
  config.revision = 2;
  outside_publish(broker, down("config"), testing::test_signer().sign(down("config"), cbor(config)),
                  true);
  REQUIRE(agent.process->wait_log("source=remote", 10s));
  // An older signed config (issued before the one in force) is refused.
  outside_publish(broker, down("config"), older, true);
  REQUIRE(agent.refused("stale"));
  CHECK(agent.count("source=remote") == 1);

  // A signed remote config cannot change whom the agent trusts.
  config.revision = 3;
  config.values = {{"trust.signing_keys", std::string("/tmp/attacker.pub")}};
  outside_publish(broker, down("config"), testing::test_signer().sign(down("config"), cbor(config)),
                  true);
  REQUIRE(agent.process->wait_log("event=remote_config_refused", 10s));
  CHECK(agent.count("trust keys cannot be changed remotely") == 1);
  CHECK(agent.process->running());

  // The retained config in force after a restart is put in force again, once.
  config.revision = 4;
  config.values = {{"drain.rate_per_s", std::int64_t{11}}};
  outside_publish(broker, down("config"), testing::test_signer().sign(down("config"), cbor(config)),
                  true);
  REQUIRE(agent.process->wait_log("source=remote", 10s, 2));
  agent.kill_and_restart();
  REQUIRE(agent.process->wait_log("source=remote", 10s));
  REQUIRE(agent.refused("unsigned"));  // the forged model, still retained at the broker
  CHECK(agent.count("event=control_refused") == 1);
  CHECK(agent.count("source=remote") == 1);
}

TEST_CASE("nova-agent does not start without a trusted key unless insecure_unsigned says so",
          "[agent][process][signing]") {
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir() / "agent";
  fs::create_directories(dir);
  testing::write_agent_config(dir / "agent.yaml", kNode, kSite, 4, broker.uri(), dir,
                              "trust: {clock_skew_s: 30}\n");
  {
    testing::AgentProcess agent(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
    const int status = agent.wait();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 1);
    CHECK_THAT(agent.text(),
               Catch::Contains("event=trust_unavailable") && Catch::Contains("trust.signing_keys"));
  }
  // Explicitly insecure: it starts, warns, and runs an unsigned task.
  testing::write_agent_config(dir / "agent.yaml", kNode, kSite, 4, broker.uri(), dir,
                              "trust: {insecure_unsigned: true}\n");
  testing::AgentProcess agent(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  REQUIRE(agent.wait_log("event=connected", 20s));
  CHECK_THAT(agent.text(), Catch::Contains("level=warning event=insecure_unsigned"));
  const fs::path plain_ran = task_output("plain-ran");
  outside_publish(broker, down("task"), append_task("plain", plain_ran));
  REQUIRE(wait_lines(plain_ran, 1, 20s));
}

TEST_CASE("an operator signs a config with `nova-pki sign` and the agent applies it",
          "[agent][process][signing]") {
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir() / "agent";
  const fs::path pki = broker.data_dir() / "pki";
  fs::create_directories(dir);
  REQUIRE(std::system((std::string(NOVA_PKI_BIN) + " --dir " + pki.string() +
                       " signing-key --name ops >/dev/null")
                          .c_str()) == 0);
  testing::write_agent_config(
      dir / "agent.yaml", kNode, kSite, 4, broker.uri(), dir,
      "trust: {signing_keys: [" + (pki / "signing" / "ops.pub").string() + "]}\n");
  testing::AgentProcess agent(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  REQUIRE(agent.wait_log("event=connected", 20s));

  schemas::Config config;
  config.revision = 1;
  config.values = {{"drain.rate_per_s", std::int64_t{13}}};
  std::ofstream(dir / "config.cbor", std::ios::binary) << cbor(config);
  const std::string sign = std::string(NOVA_PKI_BIN) + " --dir " + pki.string() +
                           " sign --name ops --topic " + down("config") + " --ttl-s 3600 < " +
                           (dir / "config.cbor").string() + " > " +
                           (dir / "config.signed").string();
  REQUIRE(std::system(sign.c_str()) == 0);
  std::ifstream in(dir / "config.signed", std::ios::binary);
  const std::string envelope{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  outside_publish(broker, down("config"), envelope, true);
  REQUIRE(agent.wait_log("source=remote changes=\"drain.rate_per_s: 50 -> 13\"", 10s));
}
