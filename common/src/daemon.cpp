#include "nova/common/daemon.h"

#include <pthread.h>

#include <CLI/CLI.hpp>

namespace nova::common {

std::optional<int> parse_daemon_args(const DaemonInfo& info, int argc, char** argv, DaemonArgs& args) {
  CLI::App app{info.name + ": " + info.summary +
               "\nExit codes: 0 clean shutdown, 1 runtime failure, 2 usage or configuration error."};
  args.config_path = info.default_config;
  app.add_option("-c,--config", args.config_path, "configuration file (the default is the Debian package's conffile; every key: " + info.example + ")")
      ->capture_default_str();
  app.add_flag("--check-config", args.check_only, "validate the configuration file and exit");
  app.set_version_flag("--version", info.name + " " + info.version);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return std::nullopt;
}

sigset_t block_daemon_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

}  // namespace nova::common
