// Shared by the agent's fuzz targets: one real Agent (LevelDB outbox, inbox and task
// store in a temporary directory, a broker URI it never reaches because run() is never
// called), messages handed to it with Agent::deliver exactly as the loop does, and the
// checks that turn a handler's exception or an undecodable record into a crash.
#pragma once

#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "nova/agent/agent.h"
#include "nova/agent/config.h"
#include "nova/agent/tasks.h"
#include "nova/schemas/codec.h"

namespace nova::fuzz {

inline constexpr const char* kNode = "gw-fuzz";
inline constexpr const char* kSite = "cloud/eu/par/acc-01";

struct AgentUnderFuzz {
  std::filesystem::path dir;
  std::unique_ptr<agent::TaskRunner> tasks;
  std::unique_ptr<agent::Agent> agent;
  agent::AgentConfig config;  // what a pushed config is applied over

  AgentUnderFuzz() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "nova-agent-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    dir = tmpl;
    auto parsed = agent::parse_config(std::string("node: {id: ") + kNode + ", site: " + kSite +
                                      ", level: 4}\nmqtt: {uri: \"tcp://127.0.0.1:1\"}\noutbox: {dir: " +
                                      (dir / "outbox").string() + "}\ntasks: {dir: " + (dir / "tasks").string() +
                                      "}\n");
    if (!parsed) {
      std::fprintf(stderr, "fuzz config: %s\n", parsed.error().message().c_str());
      std::abort();
    }
    config = parsed.value();
    agent::TaskRunnerOptions t;
    t.dir = dir / "tasks";
    t.sync = false;
    t.max_queued = 16;  // then refused: the refusal's result is encoded and stored
    auto runner = agent::TaskRunner::open(t, [this](const schemas::TaskResult& r) { agent->record_result(r); });
    if (!runner) std::abort();
    tasks = std::move(runner).value();  // never polled: no task ever runs

    agent::AgentOptions o;
    o.birth.node = kNode;
    o.birth.description = schemas::NodeDescription{4, kSite, "x86_64", "fuzz", {}, {1000, 512, 1024}, std::nullopt};
    o.broker_uri = "tcp://127.0.0.1:1";
    o.outbox.dir = dir / "outbox";
    o.outbox.sync = false;
    o.outbox.max_bytes = 1 << 20;
    o.state_dir = dir / "state";
    o.tasks = tasks.get();
    // Unsigned payloads pass the control gate, so the fuzzer reaches the decoders behind
    // it; a payload shaped like a signed envelope is decoded by the gate first (and then
    // refused: no key is trusted).
    o.control.insecure_unsigned = true;
    // As nova-agent does: apply, then report the outcome upward (Agent::report_remote).
    o.on_remote_config = [this](const schemas::Config& remote) {
      auto next = agent::apply_remote(config, remote);
      if (next) (void)agent::describe_changes(config, *next);
      this->agent->report_remote(agent::Agent::Remote::config, remote.revision,
                                 next ? std::nullopt : std::optional<std::string>(next.error().message()));
    };
    auto created = agent::Agent::create(std::move(o), nullptr);
    if (!created) {
      std::fprintf(stderr, "fuzz agent: %s\n", created.error().message().c_str());
      std::abort();
    }
    agent = std::move(created).value();
  }
  ~AgentUnderFuzz() {
    agent.reset();
    tasks.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  // Delivers one message; a handler that threw is a crash.
  void deliver(const std::string& topic, const std::string& payload) {
    const std::uint64_t before = agent->counters().handler_failures;
    agent->deliver(topic, payload);
    if (agent->counters().handler_failures != before) {
      std::fprintf(stderr, "a handler threw on topic %s\n", topic.c_str());
      std::abort();
    }
  }

  // Every record the agent stored on `stream` since `after` decodes as T.
  template <class T>
  void check_stored(const char* stream, std::uint64_t after) const {
    auto records = agent->outbox().read(stream, after, 64);
    if (!records) std::abort();
    for (const auto& r : *records) {
      if (!schemas::decode_cbor<T>(r.payload)) {
        std::fprintf(stderr, "stored %s record %llu does not decode: %s\n", stream,
                     static_cast<unsigned long long>(r.seq),
                     schemas::decode_cbor<T>(r.payload).error().message().c_str());
        std::abort();
      }
    }
  }
};

inline AgentUnderFuzz& agent_under_fuzz() {
  static AgentUnderFuzz instance;  // once per process: LevelDB opens are slow
  return instance;
}

}  // namespace nova::fuzz
