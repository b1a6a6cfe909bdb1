// nova-agent: NovaCron's offline-first edge agent.
//
// Exit codes: 0 clean shutdown (SIGTERM/SIGINT, or an update staged for the launcher
// to start: docs/agent.md, Updates), 1 runtime failure (outbox, metrics or
// task store cannot be opened), 2 usage or configuration error (tasks.user included).
// Signals: SIGTERM/SIGINT store the open batch, publish "offline" and exit; SIGHUP, or
// any change of the config file, re-reads it and applies what can change at run time
// (an invalid file is refused, naming the key, and the running configuration stays);
// SIGHUP also reconnects at once when the TLS certificate or key files changed.
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <mutex>
#include <optional>
#include <thread>

#include "nova/agent/agent.h"
#include "nova/agent/cache_origin.h"
#include "nova/agent/cache_server.h"
#include "nova/agent/config.h"
#include "nova/agent/metrics.h"
#include "nova/agent/tasks.h"
#include "nova/common/daemon.h"
#include "nova/common/log.h"
#include "nova/security/sealed_records.h"

namespace {

using namespace nova;
using namespace nova::agent;

using common::log_line;
using common::logfmt_quote;

// Feeds the agent loop from the host collector. A new data path (hot config, set from
// the control thread) is handed over here and applied on the loop thread, which owns
// the collector.
class CollectorSource final : public SampleSource {
 public:
  explicit CollectorSource(MetricsCollector& c) : collector_(c) {}
  const schemas::MetricSample* sample(schemas::Timestamp now) override {
    {
      std::lock_guard lock(mutex_);
      if (pending_path_) {
        collector_.set_data_path(*pending_path_);
        pending_path_.reset();
      }
    }
    return &collector_.sample(now);
  }
  void set_data_path(const std::string& path) {
    std::lock_guard lock(mutex_);
    pending_path_ = path;
  }

 private:
  MetricsCollector& collector_;
  std::mutex mutex_;
  std::optional<std::string> pending_path_;
};

schemas::Resources host_resources(const std::string& data_path) {
  schemas::Resources r;
  const long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  r.cpu_millis = cores > 0 ? static_cast<std::uint64_t>(cores) * 1000 : 0;
  r.memory_mb = pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) >> 20 : 0;
  struct statvfs vfs {};
  if (::statvfs(data_path.c_str(), &vfs) == 0) r.storage_mb = (static_cast<std::uint64_t>(vfs.f_blocks) * vfs.f_frsize) >> 20;
  return r;
}

AgentTuning tuning_of(const AgentConfig& c) {
  AgentTuning t;
  t.sample_interval = std::chrono::milliseconds(c.metrics.interval_ms);
  t.batch_interval = std::chrono::seconds(c.metrics.batch_interval_s);
  t.batch_encoding = c.metrics.encoding;
  t.drain.rate_per_s = c.drain.rate_per_s;
  t.drain.burst = c.drain.burst;
  t.drain.jitter = std::chrono::milliseconds(c.drain.jitter_ms);
  t.drain.resend_after = std::chrono::seconds(c.drain.resend_after_s);
  t.task_limits = AdmissionLimits{static_cast<double>(c.limits.max_cpu_pct),
                                  static_cast<double>(c.limits.max_memory_pct),
                                  static_cast<double>(c.limits.max_disk_pct), c.limits.min_free_memory_mb};
  t.max_concurrent_tasks = c.tasks.max_concurrent;
  t.decisions = c.decision_options();
  auto pipelines = parse_pipelines(c.pipelines);  // checked when the config was read
  if (pipelines) t.pipelines = std::move(pipelines).value();
  return t;
}

AgentOptions agent_options(const AgentConfig& c) {
  AgentOptions o;
  o.birth.node = c.node.id;
  o.birth.description = schemas::NodeDescription{c.node.level,  c.node.site, c.node.arch, NOVA_VERSION,
                                                 c.node.capabilities, host_resources(c.metrics.data_path),
                                                 std::nullopt};
  o.broker_uri = c.mqtt.uri;
  o.tls = c.tls();
  o.keepalive = c.keepalive();
  o.reconnect_min = std::chrono::milliseconds(c.mqtt.reconnect_min_ms);
  o.reconnect_max = std::chrono::milliseconds(c.mqtt.reconnect_max_ms);
  const AgentTuning t = tuning_of(c);
  o.sample_interval = t.sample_interval;
  o.batch_interval = t.batch_interval;
  o.batch_encoding = t.batch_encoding;
  o.drain = t.drain;
  o.decisions = t.decisions;
  o.pipelines = t.pipelines;
  o.outbox.dir = c.outbox.dir;
  o.outbox.max_bytes = c.outbox.max_bytes;
  o.state_dir = std::filesystem::path(c.outbox.dir).parent_path() / "state";
  o.update_dir = c.update.dir;
  const auto& r = c.residency;
  if (std::find(r.streams.begin(), r.streams.end(), kResidentMetricsStream) != r.streams.end()) {
    o.resident_region = r.region;
  }
  // Items were checked when the file was read, so the policy parses.
  o.privacy =
      PrivacyPolicy::parse(c.privacy.personal, std::uint64_t{c.privacy.window_s} * 1000, c.privacy.min_readings).value();
  return o;
}

// The keys named by trust.signing_keys. Without any, the agent starts only when
// trust.insecure_unsigned says so: it would refuse every control message otherwise.
schemas::Result<ControlTrust> control_trust(const AgentConfig& c) {
  ControlTrust t;
  t.insecure_unsigned = c.trust.insecure_unsigned == Insecure::on;
  t.skew = std::chrono::seconds(c.trust.clock_skew_s);
  for (const std::string& file : c.trust.signing_keys) {
    auto key = security::VerifyKey::load(file);
    if (!key) return schemas::Error{"trust.signing_keys", key.error().message()};
    t.keys.push_back(std::move(key).value());
  }
  if (t.keys.empty() && !t.insecure_unsigned) {
    return schemas::Error{"trust.signing_keys",
                          "no key to check control messages with: name nova-cloud's public signing key "
                          "file(s), or set trust.insecure_unsigned: true to accept unsigned ones"};
  }
  return t;
}

// The running configuration, shared by the loop thread (remote config) and the signal
// thread (SIGHUP).
class LiveConfig {
 public:
  LiveConfig(AgentConfig c, CollectorSource& source) : current_(std::move(c)), source_(source) {}

  // Applies `next` if valid; logs which keys changed and which need a restart.
  void apply(Agent& agent, const AgentConfig& next, const char* source) {
    std::lock_guard lock(mutex_);
    // The new log options apply from this line on, so the change itself is logged (or
    // not) by the level and in the format it sets.
    common::set_log_options(next.log.level, next.log.format);
    std::string restart_keys;
    for (const ConfigKey* k : changed_keys(current_, next)) {
      if (k->reload == Reload::restart) restart_keys += (restart_keys.empty() ? "" : ",") + std::string(k->name);
    }
    log_line("info", "config_applied",
             "source=" + std::string(source) + " changes=" + logfmt_quote(describe_changes(current_, next)) +
                 (restart_keys.empty() ? "" : " needs_restart=" + restart_keys));
    if (next.metrics.data_path != current_.metrics.data_path) source_.set_data_path(next.metrics.data_path);
    current_ = next;
    agent.reconfigure(tuning_of(current_));
  }
  AgentConfig get() const {
    std::lock_guard lock(mutex_);
    return current_;
  }

 private:
  mutable std::mutex mutex_;
  AgentConfig current_;
  CollectorSource& source_;
};

// The TLS files' contents as the uplink last connected with them (rotation tools replace
// files by rename or rewrite them in place, so contents, not times, tell a change).
std::string tls_contents(const TlsFiles& files) {
  std::string all;
  for (const std::string* path : {&files.ca_file, &files.cert_file, &files.key_file}) {
    std::ifstream in(*path);
    std::ostringstream s;
    s << in.rdbuf();
    all += s.str();
    all += '\0';
  }
  return all;
}

// Warnings at every start for an uplink an attacker on the path could read or pose as
// the broker to: the lead may later forbid plaintext, and this is its one switch point
// (is_plaintext_uri).
void warn_insecure_uplink(const AgentConfig& c) {
  if (is_plaintext_uri(c.mqtt.uri)) {
    log_line("warning", "plaintext_uplink",
             "broker=" + logfmt_quote(c.mqtt.uri) + " reason=\"MQTT without TLS: readable and forgeable on the path\"");
  } else if (c.mqtt.tls_insecure_skip_verify) {
    log_line("warning", "tls_verification_off",
             "broker=" + logfmt_quote(c.mqtt.uri) +
                 " reason=\"mqtt.tls_insecure_skip_verify is true: the broker's certificate is not checked\"");
  }
}

// Binds every symbol of every library at start-up rather than at each function's first
// call: runs nova-agent again (exec, same pid and arguments) with LD_BIND_NOW set, unless
// it is set already. Why: the agent releases the pages only start-up used at connect
// (AgentOptions::release_memory); bound lazily, each library function called for the
// first time after that looks its name up through the symbol tables of every library
// and maps their pages again (about 1 MB of VmRSS with TLS, measured: docs/benchmarks.md,
// "Latest: RSS with TLS and a signing key"). Linking nova-agent with -z now binds only
// its own calls, not those between libraries (libstdc++ to libc, say). If the exec
// fails, the agent goes on, bound lazily.
void bind_symbols_now(char** argv) {
  constexpr const char* kMarker = "NOVA_AGENT_BIND_NOW";  // set by us: this is the second start
  if (::getenv(kMarker) != nullptr) {
    ::unsetenv(kMarker);
    ::unsetenv("LD_BIND_NOW");  // ours, not the operator's: nothing the agent starts inherits it
    return;
  }
  const char* bind_now = ::getenv("LD_BIND_NOW");
  if (bind_now != nullptr && *bind_now != '\0') return;  // the operator's, bound already
  ::setenv("LD_BIND_NOW", "1", 1);
  ::setenv(kMarker, "1", 1);
  ::execv("/proc/self/exe", argv);
  ::unsetenv("LD_BIND_NOW");
  ::unsetenv(kMarker);
}

// The task cache and its socket (docs/agent.md, Cache), when limits.cache_size_mb is
// not 0. A socket that cannot be made at its default path (beside outbox.dir; say, a
// folder too deep for the 107 bytes a socket path may have) leaves the agent running
// without a cache, warned; at a path cache.socket names, it is a configuration error.
struct TaskCache {
  std::unique_ptr<Cache> cache;
  std::unique_ptr<CacheServer> server;
  std::filesystem::path socket;
};

schemas::Result<TaskCache> start_task_cache(const AgentConfig& c, const StorageOptions& storage) {
  TaskCache out;
  if (c.limits.cache_size_mb == 0) return out;
  CacheOptions o;
  o.dir = c.cache_dir();
  o.budget_bytes = c.limits.cache_size_mb << 20;
  o.max_entries = c.cache.max_entries;
  o.prefetch = c.cache.prefetch;
  o.predictor.depth = c.cache.prefetch_depth;
  o.storage = storage;
  auto cache = Cache::open(std::move(o));
  if (!cache) return cache.error();
  CacheServerOptions so;
  so.socket = c.cache_socket();
  if (!c.cache.origin.empty()) {
    auto origin = HttpOrigin::parse(c.cache.origin);  // checked when the file was read
    if (!origin) return origin.error();
    so.origin = [o = std::move(origin).value()](std::string_view key) { return o.fetch(key); };
  }
  so.log = log_line;
  auto server = CacheServer::start(*cache.value(), so);
  if (!server) {
    if (!c.cache.socket.empty()) return server.error();
    log_line("warning", "cache_unavailable",
             "error=" + logfmt_quote(server.error().message()) +
                 " detail=\"running without the task cache: set cache.socket, or limits.cache_size_mb: 0\"");
    return out;
  }
  out.cache = std::move(cache).value();
  out.server = std::move(server).value();
  out.socket = so.socket;
  const CacheStats st = out.cache->stats();
  log_line("info", "cache_ready",
           "socket=" + logfmt_quote(out.socket.string()) + " budget_bytes=" + std::to_string(st.budget_bytes) +
               " entries=" + std::to_string(st.entries) + " bytes=" + std::to_string(st.bytes) +
               " origin=" + logfmt_quote(c.cache.origin) + " prefetch=" + (c.cache.prefetch ? "true" : "false"));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  bind_symbols_now(argv);
  const common::DaemonInfo daemon{"nova-agent", "NovaCron's offline-first edge agent.", NOVA_VERSION,
                                "/etc/nova/agent.yaml", "agent/examples/agent.yaml"};
  common::DaemonArgs args;
  if (auto exit_code = common::parse_daemon_args(daemon, argc, argv, args)) return *exit_code;
  std::optional<AgentConfig> config;
  if (auto exit_code = common::load_daemon_config(args, [](const std::string& p) { return load_config(p); }, config)) {
    return *exit_code;
  }
  const std::string& config_path = args.config_path;
  common::set_log_options(config->log.level, config->log.format);

  // Signals are handled by one thread (signalfd below); every other thread blocks them.
  const sigset_t signals = common::block_daemon_signals();

  CollectorOptions collector_options;
  collector_options.data_path = config->metrics.data_path;
  auto collector = MetricsCollector::open(collector_options);
  if (!collector) {
    log_line("error", "metrics_unavailable", "error=" + logfmt_quote(collector.error().message()));
    return 1;
  }
  CollectorSource source(*collector.value());

  // Encryption at rest: one key for the outbox, the task store and the inbox.
  std::optional<security::StorageKey> storage_key;
  if (!config->storage.key_file.empty()) {
    auto key = security::load_storage_key(config->storage.key_file);
    if (!key) {
      log_line("error", "storage_key_unavailable",
               "key=storage.key_file error=" + logfmt_quote(key.error().message()));
      return 1;
    }
    storage_key = std::move(key).value();
  } else {
    log_line("warning", "storage_plaintext",
             "detail=\"storage.key_file is not set: the outbox, task store and inbox are not encrypted at rest\"");
  }

  Agent* agent_ptr = nullptr;
  TaskRunnerOptions task_options;
  task_options.storage = reported_storage(storage_key, log_line, nullptr);
  task_options.dir = config->tasks.dir;
  task_options.max_concurrent = config->tasks.max_concurrent;
  task_options.output_tail_bytes = config->tasks.output_tail_bytes;
  task_options.limits = tuning_of(*config).task_limits;
  task_options.allow = config->tasks.allow;
  task_options.user = config->tasks.user;
  task_options.allow_root = config->tasks.allow_root;
  task_options.log = log_line;
  auto task_cache = start_task_cache(*config, reported_storage(storage_key, log_line, nullptr));
  if (!task_cache) {
    log_line("error", "cache_unavailable", "error=" + logfmt_quote(task_cache.error().message()));
    return 1;
  }
  if (task_cache.value().server) task_options.base_env["NOVA_CACHE_SOCKET"] = task_cache.value().socket.string();
  auto tasks = TaskRunner::open(task_options, [&](const schemas::TaskResult& r) {
    if (agent_ptr != nullptr) agent_ptr->record_result(r);
  });
  if (!tasks) {
    // tasks.user names no account, or root without tasks.allow_root: a configuration error.
    const bool bad_user = tasks.error().path == "tasks.user";
    log_line("error", bad_user ? "tasks_user_invalid" : "task_store_unavailable",
             "error=" + logfmt_quote(tasks.error().message()));
    return bad_user ? 2 : 1;
  }
  const TaskUser& task_user = tasks.value()->task_user();
  if (task_user.root) log_line("warning", "tasks_run_as_root", "detail=" + logfmt_quote(task_user.detail));
  if (config->tasks.allow.empty()) {
    log_line("warning", "tasks_none_allowed", "detail=\"tasks.allow is empty: every task is refused\"");
  }

  // The socket is the tasks' (mode 0600): theirs once their user is known.
  if (task_cache.value().server && task_user.switched &&
      ::chown(task_cache.value().socket.c_str(), task_user.uid, task_user.gid) != 0) {
    log_line("error", "cache_unavailable",
             "error=" + logfmt_quote("cache.socket: chown to " + task_user.name + ": " + std::strerror(errno)));
    return 1;
  }

  auto trust = control_trust(*config);
  if (!trust) {
    log_line("error", "trust_unavailable", "error=" + logfmt_quote(trust.error().message()));
    return 1;
  }
  if (config->trust.insecure_unsigned == Insecure::on) {
    log_line("warning", "insecure_unsigned",
             "detail=\"unsigned control messages are accepted: anyone who can publish on this node's down "
             "topics can run tasks and change its config (trust.insecure_unsigned)\"");
  }

  LiveConfig live(*config, source);
  AgentOptions options = agent_options(*config);
  options.control = std::move(trust).value();
  options.tasks = tasks.value().get();
  options.on_remote_config = [&](const schemas::Config& remote) {
    auto next = apply_remote(live.get(), remote);
    if (!next) {
      log_line("warning", "remote_config_refused", "revision=" + std::to_string(remote.revision) +
                                                       " error=" + logfmt_quote(next.error().message()));
      agent_ptr->report_remote(Agent::Remote::config, remote.revision, next.error().message());
      return;
    }
    live.apply(*agent_ptr, *next, "remote");
    agent_ptr->report_remote(Agent::Remote::config, remote.revision, std::nullopt);
  };
  options.log = log_line;
  if (Cache* cache = task_cache.value().cache.get()) {
    options.extra_gauges = [cache](std::map<std::string, double>& extra) { add_cache_gauges(cache->stats(), extra); };
    // A rule's evict_cache action (docs/agent.md, Pipelines); the cache is thread-safe.
    options.evict_cache = [cache](const std::string& prefix) { return static_cast<std::uint64_t>(cache->evict(prefix)); };
  }
  options.release_memory = true;  // VmRSS: docs/agent.md, "Memory"
  options.storage_key = storage_key;
  auto agent = Agent::create(std::move(options), &source);
  if (!agent) {
    log_line("error", "agent_start_failed", "error=" + logfmt_quote(agent.error().message()));
    return 1;
  }
  agent_ptr = agent.value().get();
  log_line("info", "started",
           "node=" + config->node.id + " site=" + config->node.site + " broker=" + logfmt_quote(config->mqtt.uri) +
               " metrics=" + logfmt_quote(collector.value()->describe()) +
               " tasks_limits=" + logfmt_quote(tasks.value()->limit_support().detail) +
               " tasks_user=" + logfmt_quote(task_user.detail));
  warn_insecure_uplink(*config);
  // The uplink keeps the TLS paths it started with (restart keys); SIGHUP reconnects
  // when their contents changed and still form a valid identity.
  const std::optional<TlsFiles> tls = config->tls();
  std::string tls_in_use = tls ? tls_contents(*tls) : std::string();
  auto renew_tls_if_rotated = [&] {
    if (!tls) return;
    std::string now = tls_contents(*tls);
    if (now == tls_in_use) return;
    if (const auto problem = check_tls_files(*tls)) {
      log_line("warning", "tls_renew_refused",
               "key=" + std::string(tls_file_key(problem->file)) + " error=" + logfmt_quote(problem->reason) + " keeps=current_connection");
      return;
    }
    tls_in_use = std::move(now);
    log_line("info", "tls_renew", "reason=\"TLS files changed\"");
    agent_ptr->renew_uplink();
  };

  // One control thread waits on the signals and on the config file's directory (editors
  // and config managers replace files by rename, so the directory is watched).
  const int sfd = ::signalfd(-1, &signals, SFD_CLOEXEC);
  const int ifd = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  const std::filesystem::path config_file = std::filesystem::absolute(config_path);
  if (ifd >= 0) {
    ::inotify_add_watch(ifd, config_file.parent_path().c_str(), IN_CLOSE_WRITE | IN_MOVED_TO);
  }
  auto reload = [&](const char* why) {
    auto next = load_config(config_path);
    if (!next) {
      log_line("warning", "reload_refused", std::string("trigger=") + why + " error=" + logfmt_quote(next.error().message()));
      return;
    }
    if (next.value() == live.get()) return;
    live.apply(*agent_ptr, *next, "file");
  };
  std::thread control_thread([&] {
    for (;;) {
      pollfd fds[2] = {{sfd, POLLIN, 0}, {ifd, POLLIN, 0}};
      if (::poll(fds, ifd >= 0 ? 2 : 1, -1) < 0) continue;
      if ((fds[1].revents & POLLIN) != 0) {
        alignas(inotify_event) char buf[4096];
        bool ours = false;
        for (ssize_t n; (n = ::read(ifd, buf, sizeof buf)) > 0;) {
          for (char* p = buf; p < buf + n;) {
            inotify_event ev;  // copied out: -Wcast-align on 32-bit ARM
            std::memcpy(&ev, p, sizeof ev);
            const char* name = p + sizeof ev;
            if (ev.len > 0 && config_file.filename() == name) ours = true;
            p += sizeof ev + ev.len;
          }
        }
        if (ours) reload("file_changed");
      }
      if ((fds[0].revents & POLLIN) != 0) {
        signalfd_siginfo info{};
        if (::read(sfd, &info, sizeof info) != sizeof info) continue;
        if (info.ssi_signo == SIGHUP) {
          reload("sighup");
          renew_tls_if_rotated();
          continue;
        }
        log_line("info", "stopping", "signal=" + std::to_string(info.ssi_signo));
        agent_ptr->stop();
        return;
      }
    }
  });

  agent_ptr->run();
  if (control_thread.joinable()) {
    // run() also returns when the loop fails; make sure the control thread ends too.
    ::kill(::getpid(), SIGTERM);
    control_thread.join();
  }
  const AgentCounters c = agent_ptr->counters();
  log_line("info", "stopped", "samples=" + std::to_string(c.samples) + " batches=" + std::to_string(c.batches) +
                                  " published=" + std::to_string(c.published) + " acks=" + std::to_string(c.acks) +
                                  (agent_ptr->update_staged() ? " reason=update_staged" : ""));
  return 0;
}
