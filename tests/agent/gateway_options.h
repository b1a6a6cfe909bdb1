// The in-process agent the offline and at-rest tests run: node gw-1 at an access site,
// fast reconnects, samples only when the test feeds them, its outbox and state under
// `dir`, trusting the test signer's key (the acking consumer signs its acks with it).
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "nova/agent/agent.h"
#include "nova/testing/signer.h"
#include "nova/testing/test_pki.h"

namespace nova::test {

inline agent::AgentOptions gateway_options(const std::string& uri, const std::filesystem::path& dir) {
  using namespace std::chrono_literals;
  agent::AgentOptions o;
  o.birth.node = "gw-1";
  o.birth.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
  o.broker_uri = uri;
  o.tls = testing::tls_files_for(uri, "gw-1");
  o.reconnect_min = 100ms;
  o.reconnect_max = 500ms;
  o.sample_interval = 0ms;
  o.outbox.dir = dir / "outbox";
  o.state_dir = dir / "state";
  o.control.keys = {testing::test_signer().verify_key()};
  return o;
}

}  // namespace nova::test
