// Driving tests/agent/crash_child.cpp (a real agent process with a fast synthetic
// sample source) from a test: start it, wait for it, read the outbox it left behind.
#pragma once

#include <sys/prctl.h>
#include <sys/wait.h>

#include <csignal>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <optional>
#include <string>

#include "nova/agent/outbox.h"
#include "nova/testing/test_pki.h"

namespace nova::test {

// The node crash_child publishes as (its birth names site path cloud/eu/par/par-a1).
inline constexpr const char* kCrashChildNode = "gw-crash";

// Starts crash_child against `uri` with its state under `dir`; with drain_only it
// produces no samples and exits once its outbox is fully acknowledged. For a TLS uri
// its identity goes in NOVA_CRASH_TLS_CA, _CERT and _KEY (the child has no PKI of its
// own): `identity` when given (a hierarchy's PKI), else gw-crash of this process's test
// PKI.
inline pid_t spawn_crash_child(const std::string& uri, const std::filesystem::path& dir, bool drain_only,
                               const std::optional<testing::TlsIdentity>& identity = std::nullopt) {
  std::optional<security::TlsFiles> tls;
  if (identity) {
    tls = security::TlsFiles{identity->ca.string(), identity->cert.string(), identity->key.string()};
  } else {
    tls = testing::tls_files_for(uri, kCrashChildNode);
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a test that failed or crashed
    if (tls) {
      ::setenv("NOVA_CRASH_TLS_CA", tls->ca_file.c_str(), 1);
      ::setenv("NOVA_CRASH_TLS_CERT", tls->cert_file.c_str(), 1);
      ::setenv("NOVA_CRASH_TLS_KEY", tls->key_file.c_str(), 1);
    }
    const std::string d = dir.string();
    ::execl(NOVA_CRASH_CHILD, NOVA_CRASH_CHILD, uri.c_str(), d.c_str(), drain_only ? "--drain-only" : nullptr,
            nullptr);
    ::_exit(127);
  }
  return pid;
}

// Kills the child when a test leaves its scope early (a failed REQUIRE).
class ChildGuard {
 public:
  explicit ChildGuard(pid_t& pid) : pid_(pid) {}
  ~ChildGuard() {
    if (pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;

 private:
  pid_t& pid_;
};

inline int wait_exit(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

// The metrics stream's counters in the outbox under `dir` (the child must have exited:
// LevelDB allows one owner).
inline agent::StreamStats metrics_stats(const std::filesystem::path& dir) {
  agent::OutboxOptions o;
  o.dir = dir / "outbox";
  auto box = agent::Outbox::open(o);
  REQUIRE(box.ok());
  const auto stats = box.value()->stats();
  return stats.count("metrics") != 0 ? stats.at("metrics") : agent::StreamStats{};
}

}  // namespace nova::test
