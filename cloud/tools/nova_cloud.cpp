// nova-cloud: NovaCron's cloud consumer service.
//
// Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 1 runtime failure (store or HTTP port
// unavailable), 2 usage or configuration error (TLS files included: a key that does not
// match its certificate names mqtt.tls_key_file). A broker that is down or refuses the
// certificate is not fatal: the connect is logged (connect_failed) and retried, and
// /readyz answers 503 until it succeeds.
// Signals: SIGTERM/SIGINT stop the API, store what is queued, ack it, and exit.
// SIGHUP re-reads the configuration file: an invalid file is refused naming the key;
// changed keys are listed, and those that only take effect at start are named. It also
// re-reads auth.tokens_file (an invalid one is refused and the loaded tokens stay).
//
// Subcommands (no daemon):
//   nova-cloud token create --name N --role viewer|operator|admin [--scope SITE_PATH]
//                           --tokens-file F
//     prints a new token once on stdout and appends its hash line to F (mode 0600).
//   nova-cloud audit verify FILE
//     checks the audit log's chain: exit 0 "FILE: N entries, chain intact", exit 1
//     "FILE: entry K is broken: <reason>" naming the first broken entry, 2 usage error.
#include <signal.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>

#include "nova/cloud/auth.h"
#include "nova/security/audit_log.h"

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
  check("ingest.max_seq_ahead", a.ingest.max_seq_ahead != b.ingest.max_seq_ahead);
  check("liveness.heartbeat_timeout_s", a.liveness.heartbeat_timeout_s != b.liveness.heartbeat_timeout_s);
  check("migration.overload_high_pct", a.migration.overload_high_pct != b.migration.overload_high_pct);
  check("migration.overload_low_pct", a.migration.overload_low_pct != b.migration.overload_low_pct);
  check("migration.overload_sustain_s", a.migration.overload_sustain_s != b.migration.overload_sustain_s);
  check("migration.min_dwell_s", a.migration.min_dwell_s != b.migration.min_dwell_s);
  check("migration.max_per_node", a.migration.max_per_node != b.migration.max_per_node);
  check("migration.per_node_window_s", a.migration.per_node_window_s != b.migration.per_node_window_s);
  check("log.level", a.log.level != b.log.level);
  check("log.format", a.log.format != b.log.format);
  check("http.listen", a.http.listen != b.http.listen);
  check("http.port", a.http.port != b.http.port);
  check("http.dashboard_dir", a.http.dashboard_dir != b.http.dashboard_dir);
  check("http.allowed_hosts", a.http.allowed_hosts != b.http.allowed_hosts);
  check("http.allowed_origins", a.http.allowed_origins != b.http.allowed_origins);
  check("auth.tokens_file", a.auth.tokens_file != b.auth.tokens_file);
  check("auth.insecure_no_auth", a.auth.insecure_no_auth != b.auth.insecure_no_auth);
  check("auth.protect_metrics", a.auth.protect_metrics != b.auth.protect_metrics);
  check("audit.file", a.audit.file != b.audit.file);
  return out;
}

// `nova-cloud token create`: exit 0 and the token on stdout, 2 on a usage error, 1 when
// the file cannot be written.
int token_command(int argc, char** argv) {
  CLI::App app{"Manage nova-cloud's REST API tokens.", "nova-cloud token"};
  app.require_subcommand(1);
  auto* create = app.add_subcommand("create", "Print a new token once and append its SHA-256 to the tokens file.");
  std::string name, role_name, scope, file;
  create->add_option("--name", name, "who holds it (the audit log's actor)")->required();
  create->add_option("--role", role_name, "viewer, operator or admin")->required();
  create->add_option("--scope", scope, "site path the token is confined to, e.g. cloud/eu");
  create->add_option("--tokens-file", file, "auth.tokens_file of nova-cloud")->required();
  try {
    app.parse(argc - 1, argv + 1);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const auto role = parse_role(role_name);
  if (!role) {
    std::cerr << "--role: expected viewer, operator or admin\n";
    return 2;
  }
  auto token = create_token(name, *role, scope);
  if (!token) {
    std::cerr << token.error().message() << "\n";
    return 2;
  }
  const mode_t old_mask = ::umask(077);  // the file lists who may do what: owner only
  std::ofstream out(file, std::ios::app);
  ::umask(old_mask);
  out << token->line << '\n';
  out.flush();
  if (!out) {
    std::cerr << "--tokens-file: cannot append to " << file << "\n";
    return 1;
  }
  std::cout << token->token << '\n';
  return 0;
}

int audit_command(int argc, char** argv) {
  CLI::App app{"Check nova-cloud's (or nova-pki's) audit log.", "nova-cloud audit"};
  app.require_subcommand(1);
  auto* verify = app.add_subcommand("verify", "Check the chain; name the first broken entry.");
  std::string file;
  verify->add_option("FILE", file, "the audit log")->required();
  try {
    app.parse(argc - 1, argv + 1);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const security::AuditVerdict v = security::verify_audit_log(file);
  if (v.broken_at) {
    std::cout << file << ": entry " << *v.broken_at << " is broken: " << v.reason << " (" << v.entries
              << " entries before it are intact)\n";
    return 1;
  }
  std::cout << file << ": " << v.entries << " entries, chain intact\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "token") return token_command(argc, argv);
  if (argc > 1 && std::string_view(argv[1]) == "audit") return audit_command(argc, argv);
  const common::DaemonInfo daemon{"nova-cloud", "NovaCron's cloud consumer service (ingest, topology, placement, REST API).",
                                NOVA_VERSION, "/etc/nova/cloud.yaml", "cloud/examples/cloud.yaml"};
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
  auto signing_key = config->signing_key();
  if (!signing_key) {
    log_line("error", "start_failed", "error=" + logfmt_quote(signing_key.error().message()));
    return 1;
  }
  options.signing_key = std::move(signing_key).value();
  if (!options.signing_key) {
    log_line("warning", "insecure_unsigned",
             "detail=\"control messages are sent unsigned (signing.insecure_unsigned); agents that check "
             "signatures refuse them\"");
  }
  auto storage_key = config->storage_key();
  if (!storage_key) {
    log_line("error", "start_failed", "error=" + logfmt_quote(storage_key.error().message()));
    return 1;
  }
  options.store.storage_key = std::move(storage_key).value();
  if (!options.store.storage_key) {
    log_line("warning", "storage_plaintext", "detail=\"store.key_file is not set: the store is not encrypted at rest\"");
  }
  auto topology = config->topology();
  if (!topology) {
    log_line("error", "start_failed", "error=" + logfmt_quote(topology.error().message()));
    return 1;
  }
  options.topology = std::move(topology).value();
  if (!options.topology) {
    log_line("warning", "no_topology",
             "detail=\"residency.topology_file is not set: no node has a region, region-bound workloads stay pending\"");
  }
  options.store.on_corrupt = [](const security::CorruptRecord& r) {
    log_line("error", "corrupt_record",
             "store=" + r.store + " key=" + logfmt_quote(r.key) + " storage_key=" + r.storage_key +
                 " reason=" + logfmt_quote(r.reason) + " action=deleted");
  };
  options.log = [](const char* level, const std::string& event, const std::string& fields) { log_line(level, event, fields); };
  auto audit = security::AuditLog::open(config->audit.file);
  if (!audit) {
    log_line("error", "start_failed", "error=" + logfmt_quote("audit.file: " + audit.error().message()));
    return 1;
  }
  std::shared_ptr<security::AuditLog> audit_log = std::move(audit).value();
  options.audit = audit_log;
  auto service = CloudService::start(options);
  if (!service) {
    log_line("error", "start_failed", "error=" + logfmt_quote(service.error().message()));
    return 1;
  }
  HttpOptions http;
  http.listen = config->http.listen;
  http.port = config->http.port;
  http.dashboard_dir = config->http.dashboard_dir;
  http.allowed_hosts = config->http.allowed_hosts;
  http.allowed_origins = config->http.allowed_origins;
  http.insecure_no_auth = config->auth.insecure_no_auth;
  http.protect_metrics = config->auth.protect_metrics;
  http.audit = audit_log;
  std::shared_ptr<TokenStore> tokens;
  if (config->auth.insecure_no_auth) {
    log_line("warning", "insecure_no_auth",
             "detail=\"auth.insecure_no_auth is true: every REST caller is an unscoped admin\"");
  } else {
    if (config->auth.tokens_file.empty()) {
      log_line("error", "config_invalid", "error=\"auth.tokens_file: required unless auth.insecure_no_auth is true\"");
      return 2;
    }
    auto loaded = TokenStore::load(config->auth.tokens_file);
    if (!loaded) {
      log_line("error", "config_invalid", "error=" + logfmt_quote(loaded.error().message()));
      return 2;
    }
    tokens = std::move(loaded).value();
    http.tokens = tokens;
  }
  auto api = HttpApi::start(*service.value(), http);
  if (!api) {
    log_line("error", "http_start_failed", "error=" + logfmt_quote(api.error().message()));
    return 1;
  }
  log_line("info", "started",
           "broker=" + logfmt_quote(config->mqtt.uri) + " client_id=" + config->mqtt.client_id +
               " auth=" + std::string(tokens ? "tokens" : "none") + " http=" + config->http.listen + ":" + std::to_string(api.value()->port()) +
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
      if (tokens) {
        if (auto st = tokens->reload(); !st) {
          log_line("warning", "tokens_reload_refused", "error=" + logfmt_quote(st.error().message()));
        } else {
          log_line("info", "tokens_reloaded", "tokens=" + std::to_string(tokens->size()));
        }
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
