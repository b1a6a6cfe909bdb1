// nova_acl: the Mosquitto 2.0 (plugin API v5) plugin that is the ACL of every NovaCron
// broker. Mosquitto's own acl_file denies quietly ("Denied PUBLISH" is a debug line, a
// denied subscription is granted), and a plugin loaded beside it never sees its
// verdicts (the first callback that does not defer decides), so this plugin replaces
// acl_file: it loads the same file (plugin_opt_acl_file, rules.h), and for each denial
// logs one warning line (format_denial) and counts it on a retained $SYS topic.
//
//   plugin /usr/lib/nova/nova_acl.so
//   plugin_opt_acl_file /var/lib/nova-bridge/<site>/acl
//
// SIGHUP (MOSQ_EVT_RELOAD) reads the file again; a file it cannot read leaves the rules
// in force unchanged and logs an error naming the line. At start, an unreadable file
// stops the broker.
//
// It also counts refused TLS handshakes (tls_refusals.h), which Mosquitto only logs:
//
//   plugin_opt_log_file /var/lib/nova-bridge/<site>/mosquitto.log
//
// names the broker's own log file (its `log_dest file`), which the plugin follows on
// Mosquitto's tick. Without it, TLS refusals are not counted (logged once at start).
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "nova/acl/rules.h"
#include "nova/acl/tls_refusals.h"

namespace {

using nova::acl::Access;
using nova::acl::TlsRefusal;

// Mosquitto 2.0.11 calls the tick callback on every pass of its main loop, which waits
// at most 100 ms for a socket (mux_epoll.c, mux_poll.c): often under load. Reading the
// log at most this often keeps its cost to one stat() per interval.
// With per_listener_settings true, 2.0.11 calls no tick callback (plugin.c,
// plugin__handle_tick): nova-bridge renders it false.
constexpr std::chrono::milliseconds kLogReadInterval{100};

// The counters are retained on $SYS (nova::acl::kDeniedCounterPrefix + access) because
// they describe this broker (as Mosquitto's own $SYS/broker/...), no client may write
// there (Mosquitto refuses a client's write to $SYS before any ACL, except
// $SYS/broker/connection/+/state), and no bridge carries them.
struct Plugin {
  mosquitto_plugin_id_t* id = nullptr;
  std::string acl_file;
  nova::acl::Rules rules;
  std::array<std::uint64_t, nova::acl::kAccesses.size()> denied{};
  std::optional<nova::acl::LogTail> log;  // none: TLS refusals are not counted
  std::chrono::steady_clock::time_point next_log_read{};
  std::array<std::uint64_t, nova::acl::kTlsRefusals.size()> tls_refused{};
};

void publish_retained(const std::string& topic, std::uint64_t count) {
  const std::string value = std::to_string(count);
  mosquitto_broker_publish_copy(nullptr, topic.c_str(), static_cast<int>(value.size()), value.data(), 0, true, nullptr);
}

std::optional<nova::acl::Rules> load(const std::string& path, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot read " + path;
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::optional<nova::acl::Rules> rules = nova::acl::Rules::parse(text.str(), error);
  if (!rules) error = path + " " + error;
  return rules;
}

std::string option(const mosquitto_opt* options, int count, const std::string& key) {
  for (int i = 0; i < count; ++i) {
    if (options[i].key != nullptr && key == options[i].key && options[i].value != nullptr) return options[i].value;
  }
  return {};
}

void publish_counter(const Plugin& plugin, Access access) {
  publish_retained(std::string(nova::acl::kDeniedCounterPrefix) + std::string(nova::acl::to_string(access)),
                   plugin.denied[static_cast<std::size_t>(access)]);
}

void publish_counter(const Plugin& plugin, TlsRefusal refusal) {
  publish_retained(std::string(nova::acl::kTlsRefusedCounterPrefix) + std::string(nova::acl::to_string(refusal)),
                   plugin.tls_refused[static_cast<std::size_t>(refusal)]);
}

// The broker's log lines written since the last read: one warning and one count per
// refused handshake. The plugin's own lines come back too, and classify as none.
int on_tick(int, void*, void* userdata) {
  auto& plugin = *static_cast<Plugin*>(userdata);
  const auto now = std::chrono::steady_clock::now();
  if (!plugin.log || now < plugin.next_log_read) return MOSQ_ERR_SUCCESS;
  plugin.next_log_read = now + kLogReadInterval;
  for (const std::string& line : plugin.log->read_new_lines()) {
    const std::optional<nova::acl::TlsRefusalLine> refusal = nova::acl::classify_tls_refusal(line);
    if (!refusal) continue;
    mosquitto_log_printf(MOSQ_LOG_WARNING, "%s", nova::acl::format_tls_refusal(*refusal).c_str());
    ++plugin.tls_refused[static_cast<std::size_t>(refusal->reason)];
    publish_counter(plugin, refusal->reason);
  }
  return MOSQ_ERR_SUCCESS;
}

int on_acl_check(int, void* event_data, void* userdata) {
  auto& plugin = *static_cast<Plugin*>(userdata);
  const auto& event = *static_cast<const mosquitto_evt_acl_check*>(event_data);
  Access access = Access::read;
  switch (event.access) {
    case MOSQ_ACL_READ: access = Access::read; break;
    case MOSQ_ACL_WRITE: access = Access::write; break;
    case MOSQ_ACL_SUBSCRIBE: access = Access::subscribe; break;
    default: return MOSQ_ERR_SUCCESS;  // unsubscribing is always allowed
  }
  const char* id = mosquitto_client_id(event.client);
  const char* username = mosquitto_client_username(event.client);
  nova::acl::Client client{id != nullptr ? id : "", std::nullopt};
  if (username != nullptr) client.username = username;
  const nova::acl::Verdict verdict = plugin.rules.check(client, event.topic, access);
  if (verdict.allowed()) return MOSQ_ERR_SUCCESS;
  // check_retain_source re-checks the write of a retained message's original publisher,
  // with a stand-in client that has no address, before delivering it to a new
  // subscriber. Its refusals are by design (a bridge's own link record: render.h), not
  // anything a client tried: refused quietly, not counted.
  if (mosquitto_client_address(event.client) == nullptr) return MOSQ_ERR_ACL_DENIED;
  mosquitto_log_printf(MOSQ_LOG_WARNING, "%s",
                       nova::acl::format_denial(client, event.topic, access, verdict.reason).c_str());
  ++plugin.denied[static_cast<std::size_t>(access)];
  publish_counter(plugin, access);
  return MOSQ_ERR_ACL_DENIED;
}

// Mosquitto 2.0.11 passes no options with the reload event (src/security.c), so the
// file is the one named at start. Returns "defer" so that every other plugin's reload
// callback runs too (2.0.11 stops at the first callback that returns anything else).
int on_reload(int, void*, void* userdata) {
  auto& plugin = *static_cast<Plugin*>(userdata);
  std::string error;
  std::optional<nova::acl::Rules> rules = load(plugin.acl_file, error);
  if (!rules) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "nova-acl: reload refused, the previous ACL stays in force: %s", error.c_str());
    return MOSQ_ERR_PLUGIN_DEFER;
  }
  plugin.rules = std::move(*rules);
  mosquitto_log_printf(MOSQ_LOG_NOTICE, "nova-acl: reloaded %s", plugin.acl_file.c_str());
  return MOSQ_ERR_PLUGIN_DEFER;
}

}  // namespace

extern "C" {

int mosquitto_plugin_version(int supported_version_count, const int* supported_versions) {
  for (int i = 0; i < supported_version_count; ++i) {
    if (supported_versions[i] == 5) return 5;
  }
  return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier, void** userdata, mosquitto_opt* options,
                          int option_count) {
  auto plugin = std::make_unique<Plugin>();
  plugin->id = identifier;
  plugin->acl_file = option(options, option_count, "acl_file");
  if (plugin->acl_file.empty()) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "nova-acl: plugin_opt_acl_file is required (the ACL file to enforce)");
    return MOSQ_ERR_INVAL;
  }
  std::string error;
  std::optional<nova::acl::Rules> rules = load(plugin->acl_file, error);
  if (!rules) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "nova-acl: plugin_opt_acl_file: %s", error.c_str());
    return MOSQ_ERR_INVAL;
  }
  plugin->rules = std::move(*rules);
  const std::string log_file = option(options, option_count, "log_file");
  if (!log_file.empty()) plugin->log.emplace(log_file);
  if (mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, nullptr, plugin.get()) != MOSQ_ERR_SUCCESS ||
      mosquitto_callback_register(identifier, MOSQ_EVT_RELOAD, on_reload, nullptr, plugin.get()) != MOSQ_ERR_SUCCESS ||
      mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, nullptr, plugin.get()) != MOSQ_ERR_SUCCESS) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "nova-acl: cannot register its callbacks");
    return MOSQ_ERR_UNKNOWN;
  }
  for (const Access access : nova::acl::kAccesses) publish_counter(*plugin, access);
  mosquitto_log_printf(MOSQ_LOG_NOTICE, "nova-acl: enforcing %s", plugin->acl_file.c_str());
  if (plugin->log) {
    for (const TlsRefusal refusal : nova::acl::kTlsRefusals) publish_counter(*plugin, refusal);
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "nova-acl: counting TLS refusals from %s", log_file.c_str());
  } else {
    mosquitto_log_printf(MOSQ_LOG_WARNING,
                         "nova-acl: TLS refusal counting is off: no plugin_opt_log_file (the broker's log_dest file)");
  }
  *userdata = plugin.release();
  return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void* userdata, mosquitto_opt*, int) {
  auto* plugin = static_cast<Plugin*>(userdata);
  if (plugin != nullptr) {
    mosquitto_callback_unregister(plugin->id, MOSQ_EVT_ACL_CHECK, on_acl_check, nullptr);
    mosquitto_callback_unregister(plugin->id, MOSQ_EVT_RELOAD, on_reload, nullptr);
    mosquitto_callback_unregister(plugin->id, MOSQ_EVT_TICK, on_tick, nullptr);
  }
  delete plugin;
  return MOSQ_ERR_SUCCESS;
}

}  // extern "C"
