// A nova-agent process as node gw-a1 at access site a1 (hiertest::gateway_topology, or a
// topology with a1 deeper down): the one home for the setup the process tests of such
// topologies share (erasure, pipelines).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "hierarchy_support.h"
#include "nova/testing/agent_process.h"

namespace nova::test {

// Writes <dir>/agent.yaml: mutual TLS to the access broker a1 with gw-a1's own
// certificate, test defaults, `extra` YAML sections appended. `site_path` and `level`
// are a1's.
inline void write_gateway_config(const hiertest::RunningHierarchy& h, const std::filesystem::path& dir,
                                 const std::string& extra, const std::string& site_path = "cloud/a1", int level = 2) {
  std::filesystem::create_directories(dir);
  const testing::TlsIdentity id = h.identity("gw-a1");
  testing::write_agent_config(dir / "agent.yaml", "gw-a1", site_path, level, h.tls_uri("a1"), dir, extra,
                              ", tls_ca_file: " + id.ca.string() + ", tls_cert_file: " + id.cert.string() +
                                  ", tls_key_file: " + id.key.string());
}

// write_gateway_config, then `binary` started with it, logging to <dir>/agent.log.
inline std::unique_ptr<testing::AgentProcess> start_gateway_agent(const hiertest::RunningHierarchy& h,
                                                                  const std::string& binary,
                                                                  const std::filesystem::path& dir,
                                                                  const std::string& extra,
                                                                  const std::string& site_path = "cloud/a1",
                                                                  int level = 2) {
  write_gateway_config(h, dir, extra, site_path, level);
  return std::make_unique<testing::AgentProcess>(binary, dir / "agent.yaml", dir / "agent.log");
}

}  // namespace nova::test
