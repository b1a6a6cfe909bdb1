// nova-cloud: NovaCron's cloud consumer service.
//
// Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 1 runtime failure (store or HTTP port
// unavailable), 2 usage or configuration error (TLS files included: a key that does not
// match its certificate names mqtt.tls_key_file). A broker that is down or refuses the
// certificate is not fatal: the connect is logged (connect_failed) and retried, and
// /readyz answers 503 until it succeeds.
// Signals: SIGTERM/SIGINT stop the API, store what is queued, ack it, and exit.
// SIGHUP re-reads the configuration file: an invalid file is refused naming the key;
// changed keys are listed, and those that only take effect at start are named.
#include <signal.h>


#include "nova/cloud/config.h"
#include "nova/cloud/http_api.h"
#include "nova/cloud/service.h"
#include "nova/common/daemon.h"
#include "nova/common/log.h"

namespace {

using namespace nova;
using namespace nova::cloud;
using common::log_line;
using common::logfmt_quote;

// Which keys differ between two configurations (for the SIGHUP report).
std::string changed_keys(const CloudConfig& a, const CloudConfig& b) {
  std::string out;
  auto check = [&](const char* key, bool differs) {
    if (differs) out += (out.empty() ? "" : ",") + std::string(key);
  };
  check("mqtt.uri", a.mqtt.uri != b.mqtt.uri);
  check("mqtt.username", a.mqtt.username != b.mqtt.username);
  check("mqtt.client_id", a.mqtt.client_id != b.mqtt.client_id);
  check("mqtt.shared_group", a.mqtt.shared_group != b.mqtt.shared_group);
  check("mqtt.tls_ca_file", a.mqtt.tls_ca_file != b.mqtt.tls_ca_file);
  check("mqtt.tls_cert_file", a.mqtt.tls_cert_file != b.mqtt.tls_cert_file);
  check("mqtt.tls_key_file", a.mqtt.tls_key_file != b.mqtt.tls_key_file);
  check("store.dir", a.store.dir != b.store.dir);
  check("store.raw_retention_h", a.store.raw_retention_h != b.store.raw_retention_h);
  check("store.downsampled_retention_d", a.store.downsampled_retention_d != b.store.downsampled_retention_d);
  check("store.record_retention_d", a.store.record_retention_d != b.store.record_retention_d);
  check("liveness.heartbeat_timeout_s", a.liveness.heartbeat_timeout_s != b.liveness.heartbeat_timeout_s);
  check("log.level", a.log.level != b.log.level);
  check("log.format", a.log.format != b.log.format);
  check("http.listen", a.http.listen != b.http.listen);
  check("http.port", a.http.port != b.http.port);
  check("http.dashboard_dir", a.http.dashboard_dir != b.http.dashboard_dir);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const common::DaemonInfo daemon{"nova-cloud", "NovaCron's cloud consumer service (ingest, topology, placement, REST API).",
                                NOVA_VERSION, "/etc/nova-cloud/cloud.yaml", "cloud/examples/cloud.yaml"};
  common::DaemonArgs args;
  if (auto exit_code = common::parse_daemon_args(daemon, argc, argv, args)) return *exit_code;
  std::optional<CloudConfig> config;
  if (auto exit_code = common::load_daemon_config(args, [](const std::string& p) { return load_config(p); }, config)) {
    return *exit_code;
  }
  const std::string& config_path = args.config_path;
  common::set_log_options(config->log.level, config->log.format);
  const sigset_t signals = common::block_daemon_signals();

  CloudOptions options = config->service_options();
  options.log = [](const char* level, const std::string& event, const std::string& fields) { log_line(level, event, fields); };
  auto service = CloudService::start(options);
  if (!service) {
    log_line("error", "start_failed", "error=" + logfmt_quote(service.error().message()));
    return 1;
  }
  HttpOptions http;
  http.listen = config->http.listen;
  http.port = config->http.port;
  http.dashboard_dir = config->http.dashboard_dir;
  auto api = HttpApi::start(*service.value(), http);
  if (!api) {
    log_line("error", "http_start_failed", "error=" + logfmt_quote(api.error().message()));
    return 1;
  }
  log_line("info", "started",
           "broker=" + logfmt_quote(config->mqtt.uri) + " client_id=" + config->mqtt.client_id +
               " http=" + config->http.listen + ":" + std::to_string(api.value()->port()) +
               " store=" + logfmt_quote(config->store.dir) +
               (config->mqtt.shared_group.empty() ? "" : " shared_group=" + config->mqtt.shared_group));

  for (;;) {
    int signo = 0;
    if (sigwait(&signals, &signo) != 0) continue;
    if (signo == SIGHUP) {
      auto next = load_config(config_path);
      if (!next) {
        log_line("warning", "reload_refused", "error=" + logfmt_quote(next.error().message()));
        continue;
      }
      // The log keys apply at once; every other key needs a restart.
      common::set_log_options(next->log.level, next->log.format);
      CloudConfig restart_view = *next;
      restart_view.log = config->log;
      const std::string changed = changed_keys(*config, *next);
      const std::string needs_restart = changed_keys(*config, restart_view);
      log_line("info", "reload", changed.empty() ? "changes=none"
                                                 : "changes=" + changed + (needs_restart.empty() ? "" : " needs_restart=" + needs_restart));
      config->log = next->log;
      continue;
    }
    log_line("info", "stopping", "signal=" + std::to_string(signo));
    break;
  }
  api.value()->stop();
  service.value()->stop();
  const CloudCounters c = service.value()->counters();
  log_line("info", "stopped", "records=" + std::to_string(c.records_stored) + " duplicates=" +
                                  std::to_string(c.duplicates) + " acks=" + std::to_string(c.acks_sent));
  return 0;
}
