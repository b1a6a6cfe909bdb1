// What the PKI tests share: a fresh temporary directory per test, a PKI made in it, and
// running an outside command (openssl, mosquitto_pub, nova-pki) to capture its exit
// code and output.
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "nova/security/pki.h"

namespace nova::security::testing {

// mkdtemp under $TMPDIR (else /tmp); removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/nova-pki-test-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp " + pattern);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;  // -1 when it did not exit normally
  std::string output;  // stdout and stderr together
};

// Runs argv through the shell with every argument single-quoted; stdin is /dev/null.
inline CommandResult run(const std::vector<std::string>& argv) {
  std::string command;
  for (const auto& arg : argv) {
    std::string quoted = "'";
    for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    command += quoted + "' ";
  }
  command += "</dev/null 2>&1";
  CommandResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("popen " + command);
  char buf[4096];
  while (const std::size_t n = std::fread(buf, 1, sizeof buf, pipe)) result.output.append(buf, n);
  const int status = ::pclose(pipe);
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

// A PKI with a root and intermediates for regions "cloud" and "eu".
struct TestPki {
  TempDir dir;
  Pki pki = open(dir.path() / "pki");

  static Pki open(const std::filesystem::path& path) {
    auto pki = Pki::open(path);
    if (!pki) throw std::runtime_error(pki.error().message());
    auto made = std::move(pki).value();
    for (const bool made_ok : {made.init_root().ok(), made.init_intermediate("cloud").ok(),
                        made.init_intermediate("eu").ok()}) {
      if (!made_ok) throw std::runtime_error("cannot make the test PKI");
    }
    return made;
  }

  const Layout& layout() const { return pki.layout(); }

  // The request for `role` `name` in `region`, valid for `days` from `backdate_days` ago:
  // tests that expect a refusal change a field and pass it to pki.issue themselves.
  static IssueRequest request_for(Role role, const std::string& name, const std::string& region = "eu",
                                  int days = 90, int backdate_days = 0) {
    IssueRequest request;
    request.role = role;
    request.name = name;
    request.region = region;
    request.days = days;
    request.backdate_days = backdate_days;
    return request;
  }

  // Issues `request`; throws with the refusal's message.
  CertificateInfo issue(const IssueRequest& request) {
    auto info = pki.issue(request);
    if (!info) throw std::runtime_error(info.error().message());
    return *info;
  }
  CertificateInfo issue(Role role, const std::string& name, const std::string& region = "eu",
                        int days = 90, int backdate_days = 0) {
    return issue(request_for(role, name, region, days, backdate_days));
  }
  // The broker certificate of site `name` (region eu) carrying `sans`.
  CertificateInfo issue_broker(const std::string& name, const std::vector<std::string>& sans, int days = 90,
                               int backdate_days = 0) {
    IssueRequest request = request_for(Role::broker, name, "eu", days, backdate_days);
    request.subject_alt_names = sans;
    return issue(request);
  }
};

}  // namespace nova::security::testing
