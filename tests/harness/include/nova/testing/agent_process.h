// A real nova-agent process for integration tests (a ChildProcess whose log can be
// searched), and the config such a test agent runs with.
#pragma once

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "nova/testing/child_process.h"
#include "nova/testing/signer.h"
#include "nova/testing/test_pki.h"

namespace nova::testing {

// The programs the tests' tasks run (tasks.allow); tasks run as the default tasks.user.
inline constexpr const char* kTestTaskPrograms = "/bin/sh, /bin/true, /bin/echo, /bin/sleep";

// A config for a test agent: fast reconnect, admission limits at their loosest (tests
// must not depend on whatever else runs on the machine; the loosest CPU limit still
// defers a task while host CPU plus the task's cpu_millis share exceeds 100 %, so tests
// that need a task to run give it cpu_millis 0), state under `dir`. `extra` is appended
// (further YAML sections); `mqtt_extra` is appended inside the mqtt section
// (", tls_ca_file: /path, ..."). Trusts the test signer's key (signer.h) unless `extra`
// has a trust section of its own. Written to a temporary file and renamed, as config managers do.
// (", tls_ca_file: /path, ..."). A TLS uri (mqtts://, a Broker with tls) gets the node's
// identity of the test PKI (test_pki.h) unless `mqtt_extra` names TLS files itself.
// Written to a temporary file and renamed, as config managers do.
inline void write_agent_config(const std::filesystem::path& file, const std::string& node, const std::string& site,
                               int level, const std::string& uri, const std::filesystem::path& dir,
                               const std::string& extra = "", const std::string& mqtt_extra = "") {
  std::ofstream out(file.string() + ".tmp");
  out << "node: {id: " << node << ", site: " << site << ", level: " << level << "}\n"
      << "mqtt: {uri: \"" << uri << "\", reconnect_min_ms: 100, reconnect_max_ms: 1000" << mqtt_extra;
  if (uri.starts_with("mqtts://") && mqtt_extra.find("tls_") == std::string::npos) {
    const TlsIdentity id = client_identity(node);
    out << ", tls_ca_file: " << id.ca.string() << ", tls_cert_file: " << id.cert.string()
        << ", tls_key_file: " << id.key.string();
  }
  out << "}\n"
      << "outbox: {dir: " << (dir / "outbox").string() << "}\n"
      << "tasks: {dir: " << (dir / "tasks").string() << ", allow: [" << kTestTaskPrograms << "]}\n"
      << "limits: {max_cpu_pct: 100, max_memory_pct: 100, min_free_memory_mb: 0}\n"
      << (extra.find("trust:") == std::string::npos ? trust_test_signer_yaml() : "") << extra;
  out.close();
  std::filesystem::rename(file.string() + ".tmp", file);
}

class AgentProcess {
 public:
  AgentProcess(const std::string& binary, const std::filesystem::path& config, const std::filesystem::path& log_file)
      : log_(log_file) {
    child_.start({binary, "--config", config.string()}, log_file, false);
  }

  pid_t pid() const { return child_.pid(); }
  // False once the process exited, for whatever reason (a crash included).
  bool running() { return child_.running(); }
  // Sends `sig` and reaps the process; returns its wait status (0 if it was gone).
  int signal(int sig) { return child_.signal(sig); }
  // Waits for the agent to exit by itself; returns its wait status.
  int wait() { return child_.wait(); }
  std::string text() const {
    std::ifstream in(log_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  // The agent logs each event as one line; waits for `needle` to appear `n` times.
  bool wait_log(const std::string& needle, std::chrono::milliseconds timeout, std::size_t n = 1) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const std::string t = text();
      std::size_t count = 0;
      for (auto p = t.find(needle); p != std::string::npos; p = t.find(needle, p + 1)) ++count;
      if (count >= n) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a file another process writes
    }
  }

 private:
  ChildProcess child_;
  std::filesystem::path log_;
};

}  // namespace nova::testing
