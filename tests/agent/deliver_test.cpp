// Agent::deliver, the agent's handling of one incoming message, without a broker: a
// handler that throws is a counted bad message and the agent goes on.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <stdexcept>

#include "nova/agent/agent.h"
#include "nova/schemas/codec.h"

using namespace nova;
namespace fs = std::filesystem;

TEST_CASE("a message whose handler throws is counted as a bad message and the agent goes on", "[agent][deliver]") {
  const fs::path dir = fs::temp_directory_path() / ("nova-deliver-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  {
    agent::AgentOptions o;
    o.birth.node = "gw-1";
    o.birth.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
    o.broker_uri = "tcp://127.0.0.1:1";  // never reached: run() is not called
    o.outbox.dir = dir / "outbox";
    o.state_dir = dir / "state";
    int configs = 0;
    o.on_remote_config = [&](const schemas::Config&) {
      if (++configs == 1) throw std::runtime_error("boom");
    };
    auto created = agent::Agent::create(std::move(o), nullptr);
    REQUIRE(created.ok());
    agent::Agent& a = *created.value();

    schemas::Config config;
    config.revision = 1;
    config.values = {{"drain.rate_per_s", std::int64_t{25}}};
    const schemas::Bytes b = schemas::encode_cbor(config);
    const std::string topic = "nova/v1/down/cloud/eu/par/par-a1/gw-1/config";
    REQUIRE_NOTHROW(a.deliver(topic, std::string(b.begin(), b.end())));
    CHECK(a.counters().handler_failures == 1);
    CHECK(a.counters().bad_messages == 1);
    a.deliver(topic, std::string(b.begin(), b.end()));  // the next one is handled
    CHECK(configs == 2);
    CHECK(a.counters().configs_received == 2);
    CHECK(a.counters().handler_failures == 1);
  }
  fs::remove_all(dir);
}
