// What every NovaCron daemon (nova-agent, nova-cloud) does the same way at start-up:
//   - the command line: -c/--config FILE, --check-config, --version, --help;
//   - loading the config: an invalid file is logged (event=config_invalid, naming the key)
//     and exits 2; --check-config prints "<file>: ok" and exits 0;
//   - signals: SIGTERM, SIGINT and SIGHUP are blocked in every thread and taken by one
//     thread (sigwait or signalfd), so a handler never runs in the middle of a library.
// Exit codes: 0 clean shutdown, 1 runtime failure, 2 usage or configuration error.
#pragma once

#include <signal.h>

#include <iostream>
#include <optional>
#include <string>

#include "nova/common/log.h"

namespace nova::common {

struct DaemonInfo {
  std::string name;            // "nova-agent"
  std::string summary;         // one line for --help
  std::string version;         // NOVA_VERSION
  std::string default_config;  // "/etc/nova/agent.yaml": the Debian package's conffile
  std::string example;         // "agent/examples/agent.yaml"
};

struct DaemonArgs {
  std::string config_path;
  bool check_only = false;
};

// Parses the shared command line. Returns the exit code when the process should stop now
// (0 after --help or --version, 2 on a usage error), else nullopt with `args` filled.
std::optional<int> parse_daemon_args(const DaemonInfo& info, int argc, char** argv, DaemonArgs& args);

// Loads the configuration with `load(path)` (a schemas::Result). Returns the exit code
// when the process should stop now (2 invalid, 0 after --check-config), else nullopt
// with `config` set.
template <class Config, class Load>
std::optional<int> load_daemon_config(const DaemonArgs& args, Load&& load, std::optional<Config>& config) {
  auto loaded = load(args.config_path);
  if (!loaded) {
    log_line("error", "config_invalid",
             "file=" + logfmt_quote(args.config_path) + " error=" + logfmt_quote(loaded.error().message()));
    return 2;
  }
  if (args.check_only) {
    std::cout << args.config_path << ": ok\n";
    return 0;
  }
  config = std::move(loaded).value();
  return std::nullopt;
}

// Blocks SIGTERM, SIGINT and SIGHUP in this thread and every thread started after it;
// returns that set for sigwait() or signalfd(). Call before starting any thread.
sigset_t block_daemon_signals();

}  // namespace nova::common
