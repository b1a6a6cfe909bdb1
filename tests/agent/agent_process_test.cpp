// The real nova-agent binary against a real broker: birth, a task run end to end,
// malformed downward messages, hot reload of its config file, and clean shutdown.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <mqtt/async_client.h>
#include <sstream>
#include <thread>

#include "nova/schemas/codec.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/broker.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kSite = "cloud/eu/par/par-a1";

void write_config(const fs::path& file, const std::string& uri, const fs::path& dir,
                  const std::string& extra = "") {
  std::ofstream out(file.string() + ".tmp");
  out << "node: {id: gw-proc, site: " << kSite << ", level: 4}\n"
      << "mqtt: {uri: \"" << uri << "\", reconnect_min_ms: 100, reconnect_max_ms: 1000}\n"
      << "metrics: {interval_ms: 200, batch_interval_s: 10}\n"
      << "outbox: {dir: " << (dir / "outbox").string() << "}\n"
      << "tasks: {dir: " << (dir / "tasks").string() << "}\n"
      // Admission by host load would make the test depend on whatever else runs here.
      << "limits: {max_cpu_pct: 100, max_memory_pct: 100, min_free_memory_mb: 0}\n"
      << extra;
  out.close();
  fs::rename(file.string() + ".tmp", file);  // as config managers do
}

// The agent process, its stderr captured to a file we can search.
struct AgentProcess {
  pid_t pid = -1;
  fs::path log;

  AgentProcess(const fs::path& config, const fs::path& log_file) : log(log_file) {
    pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 2);
      ::execl(NOVA_AGENT_BIN, NOVA_AGENT_BIN, "--config", config.c_str(), nullptr);
      ::_exit(127);
    }
  }
  ~AgentProcess() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  std::string text() const {
    std::ifstream in(log);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  // The agent logs each event as one line; wait for `needle` to appear `n` times.
  bool wait_log(const std::string& needle, std::chrono::milliseconds timeout, std::size_t n = 1) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const std::string t = text();
      std::size_t count = 0;
      for (auto p = t.find(needle); p != std::string::npos; p = t.find(needle, p + 1)) ++count;
      if (count >= n) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(20ms);  // the log is a file written by another process
    }
  }
  int terminate() {
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
    return status;
  }
};

void publish(const std::string& uri, const std::string& topic, const std::string& payload, bool retained = false) {
  mqtt::async_client c(uri, "test-publisher", mqtt::create_options(MQTTVERSION_3_1_1));
  c.connect()->wait();
  c.publish(topic, payload.data(), payload.size(), 1, retained)->wait();
  c.disconnect()->wait();
}

std::string cbor(const auto& message) {
  const schemas::Bytes b = schemas::encode_cbor(message);
  return std::string(b.begin(), b.end());
}

std::string down_topic(const char* kind) { return std::string("nova/v1/down/") + kSite + "/gw-proc/" + kind; }

}  // namespace

TEST_CASE("nova-agent runs tasks, survives bad input, reloads config, stops cleanly", "[agent][process]") {
  testing::Broker broker;
  testing::AckConsumer consumer(broker.uri());
  const fs::path dir = broker.data_dir() / "agent";
  fs::create_directories(dir);
  const fs::path config = dir / "agent.yaml";
  write_config(config, broker.uri(), dir);
  AgentProcess agent(config, dir / "agent.log");
  REQUIRE(agent.wait_log("event=connected", 20s));

  // Malformed task, config and ack: logged with the reason, and the agent keeps serving.
  publish(broker.uri(), down_topic("task"), "\xa1\x61v\x02");
  publish(broker.uri(), down_topic("config"), "not cbor at all");
  publish(broker.uri(), down_topic("ack"), cbor(schemas::Ack{"someone-else", 1, {{"metrics", 1}}}));
  REQUIRE(agent.wait_log("event=bad_message", 10s, 3));
  const std::string log = agent.text();
  CHECK_THAT(log, Catch::Contains("task.v: unsupported schema version 2"));
  CHECK_THAT(log, Catch::Contains("ack for node 'someone-else'"));

  // A valid task runs and its result comes back up through the outbox.
  schemas::Task task{"t-1", std::nullopt, {"/bin/sh", "-c", "echo hello from task"}, {}, 10000, 0, 0, 1, 1};
  publish(broker.uri(), down_topic("task"), cbor(task));
  REQUIRE(consumer.wait_for("gw-proc", "results", 1, 30s));

  // Metrics batches arrive and are acknowledged (batch every 10 s of 200 ms samples).
  REQUIRE(consumer.wait_for("gw-proc", "metrics", 1, 30s));

  // Hot reload: a valid change applies without restart; an invalid one is refused
  // naming the key, and the agent keeps running on the old configuration.
  write_config(config, broker.uri(), dir, "drain: {rate_per_s: 25}\n");
  REQUIRE(agent.wait_log("event=config_applied", 10s));
  write_config(config, broker.uri(), dir, "drain: {burst: 0}\n");
  REQUIRE(agent.wait_log("event=reload_refused", 10s));
  CHECK_THAT(agent.text(), Catch::Contains("drain.burst"));
  ::kill(agent.pid, SIGHUP);
  REQUIRE(agent.wait_log("event=reload_refused", 10s, 2));

  const int status = agent.terminate();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_THAT(agent.text(), Catch::Contains("event=stopped"));
  CHECK(consumer.undecodable() == 0);
}

TEST_CASE("nova-agent refuses a bad config file with exit code 2 naming the key", "[agent][process]") {
  const fs::path dir = fs::temp_directory_path() / ("nova-agent-badcfg-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  write_config(dir / "agent.yaml", "tcp://127.0.0.1:1", dir, "metrics: {interval_ms: 5}\n");
  {
    AgentProcess agent(dir / "agent.yaml", dir / "agent.log");
    int status = 0;
    ::waitpid(agent.pid, &status, 0);
    agent.pid = -1;
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 2);
    CHECK_THAT(agent.text(), Catch::Contains("metrics"));
  }
  fs::remove_all(dir);
}
