#include "nova/cloud/http_api.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <variant>

#include "dashboard.h"
#include "nova/cloud/remote_config.h"
#include "nova/cloud/rollouts.h"
#include "nova/cloud/workloads.h"
#include "nova/models/model_check.h"
#include "nova/schemas/codec.h"
#include "nova/cloud/erasures.h"
#include "nova/cloud/metric_series.h"
#include "nova/cloud/operator_view.h"
#include "nova/security/audit_log.h"

namespace nova::cloud {

using nlohmann::json;
using namespace nova::schemas;

namespace {

Timestamp now_ms() {
  return static_cast<Timestamp>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

template <class T>
json to_json(const T& message) {
  return json::parse(encode_json(message));
}

// Strings from a request (a path, a query) may hold invalid UTF-8, which nlohmann's
// dump() throws on: replaced by U+FFFD, the reply stays valid JSON with its status.
void reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void error(httplib::Response& res, int status, const std::string& message) { reply(res, status, {{"error", message}}); }

json node_json(const NodeView& n) {
  json j = {{"id", n.id},
            {"liveness", std::string(to_string(n.liveness))},
            {"bdseq", n.bdseq},
            {"last_seen", n.last_seen},
            {"status_since", n.status_since}};
  if (n.description) {
    const auto& d = *n.description;
    j["level"] = d.level;
    j["site"] = d.site;
    j["arch"] = d.arch;
    j["version"] = d.version;
    j["caps"] = d.capabilities;
    j["res"] = {{"cpu_millis", d.resources.cpu_millis},
                {"memory_mb", d.resources.memory_mb},
                {"storage_mb", d.resources.storage_mb}};
    if (d.region) j["region"] = *d.region;
  }
  return j;
}

// The measured values placement used (PlacementSignals); unmeasured ones are null.
json signals_json(const PlacementSignals& s) {
  auto or_null = [](const std::optional<double>& v) { return v ? json(*v) : json(nullptr); };
  return {{"rtt_ms", or_null(s.rtt_ms)},
          {"latency_ms", or_null(s.latency_ms)},
          {"stability", s.stability},
          {"reliability", or_null(s.reliability)},
          {"offline_hours", s.offline_hours},
          {"power", s.on_battery ? "battery" : "mains"},
          {"power_headroom", s.power_headroom},
          {"throttled", s.throttled}};
}

json workload_json(const WorkloadState& w) {
  json j = {{"workload_id", w.spec.workload_id},
            {"spec", to_json(w.spec)},
            {"phase", std::string(to_string(w.phase))},
            {"task_id", w.task_id},
            {"submitted_ts", w.submitted_ts}};
  if (w.placement) {
    j["placement"] = to_json(*w.placement);
    if (w.signals) j["placement"]["signals"] = signals_json(*w.signals);
  }
  if (!w.unplaced_reason.empty()) j["unplaced_reason"] = w.unplaced_reason;
  if (w.result) j["result"] = to_json(*w.result);
  json history = json::array();
  for (const auto& e : w.history) {
    json h = {{"ts", e.ts}, {"node", e.node}, {"revision", e.revision}, {"reason", e.reason}};
    if (e.detected_ts != 0) h["detected_ts"] = e.detected_ts;
    if (e.detected_ts != 0 && e.started_ts >= e.detected_ts) {
      h["started_ts"] = e.started_ts;
      h["recovery_ms"] = e.started_ts - e.detected_ts;  // loss seen -> replacement run started
    }
    history.push_back(std::move(h));
  }
  j["history"] = std::move(history);
  if (w.stopping) {
    const Fence& f = *w.stopping;
    j["stopping"] = {{"task_id", f.task_id}, {"node", f.node}, {"reason", f.reason}, {"since", f.since},
                     {"last_cancel_ts", f.last_sent}};
    if (f.next) j["stopping"]["next"] = {{"task_id", f.next->task_id}, {"node", f.next_node}};
  }
  if (w.spec.kind == WorkloadKind::service) {
    json replicas = json::array();
    for (const Replica& r : w.replicas) {
      json x = {{"index", r.index}, {"state", r.state}, {"task_id", r.task_id}, {"restarts", r.restarts},
                {"health", !w.spec.health_check ? "none" : r.health_failures > 0 ? "failing" : "passing"},
                {"health_failures", r.health_failures}, {"updated_ts", r.updated_ts}};
      if (r.placement) {
        x["node"] = r.placement->node;
        x["site"] = r.placement->site;
        x["revision"] = r.placement->revision;
      }
      if (r.last_exit) x["last_exit"] = *r.last_exit;
      if (!r.reason.empty()) x["reason"] = r.reason;
      if (r.stopping) x["stopping"] = {{"since", r.stopping->since}, {"last_cancel_ts", r.stopping->last_sent}};
      replicas.push_back(std::move(x));
    }
    j["replicas"] = std::move(replicas);
  }
  if (w.migration) {
    const MigrationPlan& m = *w.migration;
    j["migration"] = {{"from", m.from}, {"to", m.to}, {"trigger", m.trigger}, {"score_from", m.score_from},
                      {"score_to", m.score_to}, {"data_mb", m.data_mb}, {"sync", m.sync},
                      {"estimated_transfer_ms", m.estimated_transfer_ms}, {"started_ts", m.started_ts},
                      {"rollback_node", m.rollback.node}};
  }
  return j;
}

// The site tree from the site paths that births announced: every level of a path is a
// site; a site's link is "down" when its bridge reported 0.
json topology_json(const std::vector<NodeView>& nodes, const std::vector<std::string>& links_down) {
  struct SiteNode {
    std::map<std::string, SiteNode> children;
    json nodes = json::array();
  };
  SiteNode root;
  for (const auto& n : nodes) {
    if (!n.description) continue;
    SiteNode* at = &root;
    std::stringstream path(n.description->site);
    for (std::string level; std::getline(path, level, '/');) at = &at->children[level];
    at->nodes.push_back({{"id", n.id}, {"liveness", std::string(to_string(n.liveness))}, {"level", n.description->level}});
  }
  const std::set<std::string> down(links_down.begin(), links_down.end());
  std::function<json(const std::string&, const std::string&, const SiteNode&)> render =
      [&](const std::string& id, const std::string& path, const SiteNode& s) {
        json children = json::array();
        for (const auto& [cid, child] : s.children) children.push_back(render(cid, path + "/" + cid, child));
        return json{{"site", id}, {"path", path}, {"link", down.count(id) != 0 ? "down" : "up"},
                    {"nodes", s.nodes}, {"children", std::move(children)}};
      };
  json roots = json::array();
  for (const auto& [id, s] : root.children) roots.push_back(render(id, id, s));
  return roots;
}

std::string prometheus_text(const CloudService& service) {
  const CloudCounters c = service.counters();
  const WorkloadCounters w = const_cast<CloudService&>(service).workloads().counters();
  std::ostringstream out;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n' << name << ' ' << value << '\n';
  };
  metric("nova_cloud_messages_received_total", "counter", "MQTT messages received.", c.messages);
  metric("nova_cloud_records_stored_total", "counter", "Distinct upward records stored durably.", c.records_stored);
  metric("nova_cloud_records_duplicate_total", "counter", "Replayed records refused by deduplication.", c.duplicates);
  metric("nova_cloud_seqs_skipped_total", "counter", "Seqs the sender declared evicted (never coming).", const_cast<CloudService&>(service).store().counters().skipped);
  metric("nova_cloud_store_corrupt_records_total", "counter",
         "Stored values that did not open (sealed store): reported, deleted, never served.",
         const_cast<CloudService&>(service).store().counters().corrupt);
  metric("nova_cloud_store_watermarks_recovered_total", "counter",
         "Corrupt watermarks rebuilt from the stored records (never restarted at 0).",
         const_cast<CloudService&>(service).store().counters().watermarks_recovered);
  metric("nova_cloud_samples_stored_total", "counter", "Metric samples stored.", c.samples);
  metric("nova_cloud_acks_sent_total", "counter", "End-to-end acks published.", c.acks_sent);
  metric("nova_cloud_acks_deferred_total", "counter", "Acks waiting for the node's birth.", c.acks_deferred);
  metric("nova_cloud_store_writes_total", "counter", "Synced store writes (record groups).", c.store_writes);
  metric("nova_cloud_store_errors_total", "counter", "Failed store writes.", c.store_errors);
  out << "# HELP nova_cloud_records_rejected_total Upward messages refused, by reason.\n"
         "# TYPE nova_cloud_records_rejected_total counter\n";
  if (c.rejected.empty()) out << "nova_cloud_records_rejected_total{reason=\"undecodable\"} 0\n";
  for (const auto& [reason, n] : c.rejected) out << "nova_cloud_records_rejected_total{reason=\"" << reason << "\"} " << n << '\n';
  metric("nova_cloud_liveness_changes_total", "counter", "Node liveness transitions.", c.liveness_changes);
  metric("nova_cloud_births_region_ignored_total", "counter",
         "Births claiming a region other than their site's in the topology (the topology's is used).",
         c.region_ignored);
  metric("nova_cloud_subscriptions_refused_total", "counter",
         "Subscriptions refused by the broker or granted without delivering (each time).", c.subscriptions_refused);
  metric("nova_cloud_shared_subscription_fallbacks_total", "counter",
         "Shared subscriptions replaced by plain ones because nothing came through them.", c.shared_fallbacks);
  metric("nova_cloud_records_republished_total", "counter",
         "Own workload, placement and cluster records published again after a connect.", c.republished);
  metric("nova_cloud_connect_failures_total", "counter",
         "Connects to the broker refused or failed (a certificate refused, the broker down); each is retried.",
         c.connect_failures);
  metric("nova_cloud_ready", "gauge", "1 while GET /readyz answers 200.", service.readiness().empty() ? 1 : 0);
  metric("nova_cloud_ingest_queue_depth", "gauge", "Messages waiting for the ingest thread.", c.queue_depth);
  metric("nova_cloud_mqtt_connected", "gauge", "1 while the MQTT session is up.", c.connected ? 1 : 0);
  out << "# HELP nova_cloud_nodes Nodes by liveness.\n# TYPE nova_cloud_nodes gauge\n";
  std::map<std::string, int> by_liveness = {{"alive", 0}, {"offline", 0}, {"dead", 0}, {"unreachable", 0}, {"silent", 0}};
  for (const auto& [l, n] : service.liveness_counts()) by_liveness[std::string(to_string(l))] = static_cast<int>(n);
  for (const auto& [l, n] : by_liveness) out << "nova_cloud_nodes{liveness=\"" << l << "\"} " << n << '\n';
  metric("nova_cloud_workloads_submitted_total", "counter", "Workloads submitted.", w.submitted);
  metric("nova_cloud_placements_total", "counter", "Placement decisions published.", w.placements);
  metric("nova_cloud_workloads_unplaceable_total", "counter", "Placement attempts with no feasible node.", w.unplaceable);
  metric("nova_cloud_failovers_total", "counter", "Workloads placed again after losing their node.", w.failovers);
  metric("nova_cloud_replica_failovers_total", "counter", "Service replicas placed again after losing their node.",
         w.replica_failovers);
  metric("nova_cloud_service_reports_total", "counter", "State reports (status running) of service replicas.",
         w.service_reports);
  metric("nova_cloud_migrations_total", "counter", "Workloads moved by a migration plan.", w.migrations);
  metric("nova_cloud_migration_rollbacks_total", "counter", "Migrations rolled back to their source.", w.rollbacks);
  metric("nova_cloud_migration_requests_total", "counter", "Nodes' requests to move a workload off them, taken.",
         w.migration_requests);
  metric("nova_cloud_migration_requests_refused_total", "counter",
         "Nodes' requests to move a workload refused (unknown, a service, not running, not on that node).",
         w.migration_requests_refused);
  metric("nova_cloud_workload_batches_total", "counter", "Batch submissions placed together.", w.batches);
  metric("nova_cloud_reoptimiser_placed_total", "counter", "Pending workloads the re-optimiser placed.",
         w.reoptimiser_placed);
  metric("nova_cloud_reoptimiser_migrations_total", "counter", "Running workloads the re-optimiser moved.",
         w.reoptimiser_migrations);
  metric("nova_cloud_workloads_succeeded_total", "counter", "Workload runs that ended ok.", w.succeeded);
  metric("nova_cloud_workloads_failed_total", "counter", "Workload runs that ended failed.", w.failed);
  metric("nova_cloud_workloads_cancelled_total", "counter", "Workloads that ended cancelled.", w.cancelled);
  metric("nova_cloud_cancels_sent_total", "counter", "Task cancels published (fences and operators' cancels, repeats included).",
         w.cancels_sent);
  metric("nova_cloud_last_failover_recovery_ms", "gauge", "Loss seen to replacement run started, last failover.",
         w.last_failover_recovery_ms);
  const RolloutCounters r = const_cast<CloudService&>(service).rollouts().counters();
  metric("nova_cloud_rollouts_started_total", "counter", "Rollouts started through the API.", r.started);
  metric("nova_cloud_rollouts_succeeded_total", "counter", "Rollouts whose every wave reported the version.", r.succeeded);
  metric("nova_cloud_rollouts_halted_total", "counter", "Rollouts halted by a rollback, a refusal or a missed deadline.", r.halted);
  metric("nova_cloud_update_offers_total", "counter", "Signed update offers published.", r.offers);
  metric("nova_cloud_bundle_chunks_published_total", "counter", "Bundle chunks published (retained).", r.chunks);
  out << verdict_metrics(const_cast<CloudService&>(service).verdicts().counters());
  return out.str();
}

std::optional<std::uint64_t> uint_param(const httplib::Request& req, const char* name) {
  if (!req.has_param(name)) return std::nullopt;
  const std::string v = req.get_param_value(name);
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 19) return std::nullopt;
  return std::stoull(v);
}


std::string too_large(std::size_t limit) { return "body: larger than " + std::to_string(limit) + " bytes"; }

// Fills the body of an error the router or httplib itself produced (no route, a body
// over the limit, a malformed request), so every error reply is {"error": "..."}.
void error_handler(const httplib::Request&, httplib::Response& res, std::size_t max_body_bytes) {
  if (!res.body.empty()) return;
  switch (res.status) {
    case 404: return error(res, 404, "no such resource");
    case 413: return error(res, 413, too_large(max_body_bytes));
    default: return error(res, res.status, "request failed (HTTP " + std::to_string(res.status) + ")");
  }
}

// Who is calling: the token's entry, or the anonymous caller of an open route (or of
// every route in insecure mode).
struct Caller {
  std::string name = "anonymous";
  Role role = Role::viewer;
  std::string scope;  // empty: the whole hierarchy
};

// What a route needs from its caller.
enum class Access { open, view, operate, administer };

Role needed_role(Access access) {
  switch (access) {
    case Access::operate: return Role::operator_;
    case Access::administer: return Role::admin;
    default: return Role::viewer;
  }
}

// Refusals by reason, for /metrics; shared by the routes and the server's guard.
struct Refusals {
  static constexpr const char* kReasons[] = {"missing_host", "bad_host",  "missing_token", "bad_token",
                                             "bad_origin",   "role",      "content_type",  "scope",
                                             "audit_failed", "body_too_large", "bad_request", "unknown_target"};
  void count(const std::string& reason) {
    std::lock_guard lock(mutex);
    ++by_reason[reason];
  }
  std::map<std::string, std::uint64_t> snapshot() {
    std::lock_guard lock(mutex);
    std::map<std::string, std::uint64_t> out;
    for (const char* r : kReasons) out[r] = 0;
    for (const auto& [r, n] : by_reason) out[r] = n;
    return out;
  }
  std::mutex mutex;
  std::map<std::string, std::uint64_t> by_reason;
};

using Handler = std::function<void(const httplib::Request&, httplib::Response&, const Caller&)>;

// What a route takes as its body: JSON up to http's max_body_bytes (max 0), unless
// it says otherwise.
struct Body {
  std::string content_type = "application/json";
  std::size_t max = 0;
};

// The routes' registry. Named `s` where routes are added, as a server would be:
// tests/cloud/openapi_check.py reads the s.Get/s.Post/s.Delete calls.
struct Router {
  struct Route {
    std::string method;
    std::string pattern;
    std::string label;  // "DELETE /api/v1/workloads/{id}": the route as openapi.yaml names it
    std::regex regex;
    Access access;
    Handler handler;
    Body body;
    // EventSource cannot set headers: the token may also come as ?token= or the
    // nova_token cookie (docs/security.md says what that costs).
    bool browser_token = false;
  };
  void Get(const std::string& pattern, Access a, Handler h) { add("GET", pattern, a, std::move(h), {}); }
  void Post(const std::string& pattern, Access a, Handler h, Body body = {}) {
    add("POST", pattern, a, std::move(h), std::move(body));
  }
  void Delete(const std::string& pattern, Access a, Handler h) { add("DELETE", pattern, a, std::move(h), {}); }
  void add(const char* method, const std::string& pattern, Access a, Handler h, Body body) {
    static const std::regex capture(R"(\(\[\^/\]\+\))");  // ([^/]+)
    routes.push_back({method, pattern, method + std::string(" ") + std::regex_replace(pattern, capture, "{id}"),
                      std::regex(pattern), a, std::move(h), std::move(body), false});
  }
  // The route `req` goes to (method and whole path), or null.
  const Route* find(const httplib::Request& req, std::smatch& matches) const {
    for (const Route& route : routes) {
      if (route.method == req.method && std::regex_match(req.path, matches, route.regex)) return &route;
    }
    return nullptr;
  }
  std::vector<Route> routes;
};

// The dashboard may never be framed nor its replies sniffed into another type; its page
// loads nothing from elsewhere.
void set_security_headers(httplib::Response& res) {
  res.set_header("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'");
  res.set_header("X-Frame-Options", "DENY");
  res.set_header("X-Content-Type-Options", "nosniff");
}

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

bool listed(const std::vector<std::string>& allowed, const std::string& value) {
  const std::string v = lower(value);
  return std::any_of(allowed.begin(), allowed.end(), [&](const std::string& a) { return lower(a) == v; });
}

// The cluster names a scoped caller's workload must be confined to: every one in
// clusters_in, known, rooted by a site path (two levels or more, so it cannot match a
// bare site id elsewhere in the tree) at or below the scope.
std::optional<std::string> outside_scope(const WorkloadSpec& spec, const std::vector<ClusterRecord>& clusters,
                                         const std::string& scope) {
  if (scope.empty()) return std::nullopt;
  const std::string need = "scope: a token scoped to '" + scope +
                           "' may only name workloads confined by clusters_in to clusters whose root_site is at or below it";
  if (spec.clusters_include.empty()) return need + " (clusters_in is empty)";
  for (const auto& id : spec.clusters_include) {
    auto c = std::find_if(clusters.begin(), clusters.end(), [&](const ClusterRecord& r) { return r.cluster_id == id; });
    if (c == clusters.end() || !c->root_site || c->root_site->find('/') == std::string::npos ||
        !in_scope(scope, *c->root_site)) {
      return need + " (cluster '" + id + "' is not)";
    }
  }
  return std::nullopt;
}

// The built-in page is one file with an inline <style> and <script>; the CSP
// (default-src 'self') runs neither inline, so they are served as files of their own.
struct DashboardParts {
  std::string html, css, js;
};
DashboardParts split_dashboard(std::string html) {
  DashboardParts parts;
  const auto take = [&html](const std::string& open, const std::string& close, const std::string& link) {
    const std::size_t from = html.find(open);
    const std::size_t to = html.find(close, from);
    if (from == std::string::npos || to == std::string::npos) return std::string();
    std::string inner = html.substr(from + open.size(), to - from - open.size());
    html.replace(from, to + close.size() - from, link);
    return inner;
  };
  parts.css = take("<style>", "</style>", R"(<link rel="stylesheet" href="/dashboard.css">)");
  parts.js = take("<script>", "</script>", R"(<script src="/dashboard.js"></script>)");
  parts.html = std::move(html);
  return parts;
}

// A batch body, {"workloads": [spec, ...]} with 1..kMaxBatch specs; errors name the
// index ("workloads[2].resources.cpu_millis: ...").
constexpr std::size_t kMaxBatch = 1000;
Result<std::vector<WorkloadSpec>> decode_batch(const std::string& body) {
  const json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return Error{"", "expected a JSON object {\"workloads\": [...]}"};
  const auto list = doc.find("workloads");
  if (list == doc.end() || !list->is_array()) return Error{"workloads", "expected an array of workload specs"};
  if (list->empty() || list->size() > kMaxBatch) {
    return Error{"workloads", "expected 1.." + std::to_string(kMaxBatch) + " specs, got " + std::to_string(list->size())};
  }
  std::vector<WorkloadSpec> specs;
  for (std::size_t i = 0; i < list->size(); ++i) {
    auto spec = decode_json<WorkloadSpec>((*list)[i].dump());
    if (!spec) {
      const std::string at = "workloads[" + std::to_string(i) + "]";
      return Error{spec.error().path.empty() ? at : at + "." + spec.error().path, spec.error().reason};
    }
    specs.push_back(std::move(spec).value());
  }
  return specs;
}

// A write route's target: exactly one of ?node=, ?site=, ?subtree= (kind, value).
std::optional<std::pair<std::string, std::string>> target_param(const httplib::Request& req) {
  std::vector<std::string> kinds;
  for (const char* kind : {"node", "site", "subtree"}) {
    if (req.has_param(kind)) kinds.push_back(kind);
  }
  if (kinds.size() != 1) return std::nullopt;
  return std::pair{kinds.front(), req.get_param_value(kinds.front().c_str())};
}

// Why a target names no node the caller may reach: the refusal counter's reason, status, message.
struct TargetRefusal {
  const char* reason;
  int status;
  std::string message;
};

// The known nodes a target names, within the caller's scope.
std::variant<std::vector<TargetNode>, TargetRefusal> target_nodes(const CloudService& svc, const std::string& kind,
                                                                  const std::string& value, const Caller& caller) {
  if (kind != "node" && !in_scope(caller.scope, value)) {
    return TargetRefusal{"scope", 403, kind + ": '" + value + "' is outside the token's scope '" + caller.scope + "'"};
  }
  std::vector<TargetNode> known;
  for (const NodeView& n : svc.nodes()) {
    if (n.description) known.push_back({n.id, n.description->site, n.description->version});
  }
  auto nodes = resolve_target(kind, value, known, caller.scope);
  if (!nodes) {
    const bool malformed = nodes.error().reason.find("is not a valid") != std::string::npos;
    return TargetRefusal{malformed ? "bad_request" : "unknown_target", malformed ? 400 : 404, nodes.error().message()};
  }
  return std::move(nodes).value();
}

bool node_in_scope(const NodeView& n, const std::string& scope) {
  return scope.empty() || (n.description && in_scope(scope, n.description->site));
}

// A scoped token sees a rollout when every node of it is in its scope.
bool rollout_in_scope(const Rollout& r, const std::string& scope) {
  return std::all_of(r.nodes.begin(), r.nodes.end(), [&](const RolloutNode& n) { return in_scope(scope, n.site); });
}

// The parts of the operator's view the routes read: live events and liveness history.
struct Live {
  EventHub* hub;
  OperatorView* view;
  Refusals* refusals;  // a bad parameter is counted as bad_request
};

void add_operator_routes(Router& s, CloudService& service, const HttpOptions& options, Live live);
bool valid_gauge(const std::string& name);
bool at_or_below(const std::string& site, const std::string& path);
json points_json(const std::vector<SeriesPoint>& points);
std::vector<SeriesPoint> minute_series(IngestStore& store, const std::string& node, const std::string& gauge, Timestamp from,
                                       Timestamp to);

void add_routes(Router& s, CloudService& service, const HttpOptions& options, std::shared_ptr<Refusals> refusals, Live live) {
  CloudService* svc = &service;
  add_operator_routes(s, service, options, live);
  s.Get("/readyz", Access::open, [svc](const httplib::Request&, httplib::Response& res, const Caller&) {
    const std::vector<std::string> reasons = svc->readiness();
    if (reasons.empty()) return reply(res, 200, {{"status", "ready"}});
    reply(res, 503, {{"status", "not ready"}, {"error", reasons.front()}, {"reasons", reasons}});
  });

  s.Get("/api/v1/health", Access::open, [svc](const httplib::Request&, httplib::Response& res, const Caller&) {
    const CloudCounters c = svc->counters();
    reply(res, 200, {{"status", "ok"},
                     {"instance", svc->options().client_id},
                     {"instances", svc->instances()},
                     {"mqtt_connected", c.connected},
                     {"queue_depth", c.queue_depth}});
  });
  s.Get("/api/v1/nodes", Access::view, [svc](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
    const std::string subtree = req.has_param("site") ? req.get_param_value("site") : "";
    json out = json::array();
    for (const auto& n : svc->nodes()) {
      if (!node_in_scope(n, caller.scope)) continue;
      if (!subtree.empty() && (!n.description || !at_or_below(n.description->site, subtree))) continue;
      out.push_back(node_json(n));
    }
    reply(res, 200, out);
  });
  s.Get(R"(/api/v1/nodes/([^/]+))", Access::view, [svc](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
    auto n = svc->node(req.matches[1]);
    if (!n || !node_in_scope(*n, caller.scope)) return error(res, 404, "node '" + std::string(req.matches[1]) + "' is not known");
    json j = node_json(*n);
    j["watermarks"] = svc->store().watermarks(n->id);
    reply(res, 200, j);
  });
  s.Get(R"(/api/v1/nodes/([^/]+)/metrics)", Access::view, [svc](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
    const std::string node = req.matches[1];
    if (!caller.scope.empty()) {
      auto n = svc->node(node);
      if (!n || !node_in_scope(*n, caller.scope)) return error(res, 404, "node '" + node + "' is not known");
    }
    const Timestamp now = now_ms();
    const auto from = uint_param(req, "from");
    const auto to = uint_param(req, "to");
    if ((req.has_param("from") && !from) || (req.has_param("to") && !to)) {
      return error(res, 400, "from, to: expected milliseconds since the epoch");
    }
    const std::string resolution = req.has_param("resolution") ? req.get_param_value("resolution") : "raw";
    const Timestamp f = from.value_or(now - 3'600'000);
    const Timestamp t = to.value_or(now + 1);
    json out = json::array();
    if (req.has_param("gauge")) {
      // One gauge, any of them (metric_series.h): [{ts, value}] raw, minute buckets at 1m.
      const std::string gauge = req.get_param_value("gauge");
      if (!valid_gauge(gauge)) return error(res, 400, "gauge: expected a gauge name such as cpu or sensor.s1.temp");
      if (resolution == "raw") {
        for (const auto& sample : svc->store().samples(node, f, t, 10000)) {
          if (const auto v = gauge_value(sample, gauge)) out.push_back({{"ts", sample.ts}, {"value", *v}});
        }
      } else if (resolution == "1m") {
        out = points_json(minute_series(svc->store(), node, gauge, f, t));
      } else {
        return error(res, 400, "resolution: expected \"raw\" or \"1m\"");
      }
      return reply(res, 200, out);
    }
    if (resolution == "raw") {
      for (const auto& sample : svc->store().samples(node, f, t, 10000)) {
        json j = {{"ts", sample.ts}, {"cpu", sample.cpu_pct}, {"mem", sample.mem_pct}, {"disk", sample.disk_pct},
                  {"load1", sample.load1}, {"net_rx", sample.net_rx_bps}, {"net_tx", sample.net_tx_bps}};
        if (sample.temp_c) j["temp"] = *sample.temp_c;
        if (sample.power_w) j["power"] = *sample.power_w;
        if (!sample.extra.empty()) j["extra"] = sample.extra;  // sensor.* and agent.* gauges
        out.push_back(std::move(j));
      }
    } else if (resolution == "1m") {
      for (const auto& a : svc->store().aggregates(node, f, t)) {
        json j = {{"ts", a.bucket}};
        for (const auto& [name, g] : a.gauges) j[name] = {{"min", g.min}, {"mean", g.mean()}, {"max", g.max}, {"count", g.count}};
        out.push_back(std::move(j));
      }
    } else {
      return error(res, 400, "resolution: expected \"raw\" or \"1m\"");
    }
    reply(res, 200, out);
  });
  s.Get("/api/v1/topology", Access::view, [svc](const httplib::Request&, httplib::Response& res, const Caller& caller) {
    std::vector<NodeView> nodes = svc->nodes();
    std::erase_if(nodes, [&](const NodeView& n) { return !node_in_scope(n, caller.scope); });
    reply(res, 200, {{"sites", topology_json(nodes, svc->links_down())}, {"links_down", svc->links_down()}});
  });
  s.Get("/api/v1/workloads", Access::view, [svc](const httplib::Request&, httplib::Response& res, const Caller& caller) {
    json out = json::array();
    const auto clusters = svc->workloads().clusters();
    for (const auto& w : svc->workloads().list()) {
      if (!outside_scope(w.spec, clusters, caller.scope)) out.push_back(workload_json(w));
    }
    reply(res, 200, out);
  });
  s.Post("/api/v1/workloads", Access::operate, [svc, refusals](const httplib::Request& req, httplib::Response& res,
                                                                  const Caller& caller) {
    auto spec = decode_json<WorkloadSpec>(req.body);
    if (!spec) return error(res, 400, spec.error().message());
    if (auto outside = outside_scope(*spec, svc->workloads().clusters(), caller.scope)) {
      refusals->count("scope");
      return error(res, 403, *outside);
    }
    auto state = svc->workloads().submit(std::move(spec).value(), now_ms());
    if (!state) return error(res, state.error().reason.find("already exists") != std::string::npos ? 409 : 400, state.error().message());
    res.set_header("Location", "/api/v1/workloads/" + state->spec.workload_id);
    reply(res, 201, workload_json(*state));
  });
  // Many workloads placed together (Workloads::submit_batch): {"workloads": [spec, ...]}.
  s.Post("/api/v1/workloads:batch", Access::operate, [svc, refusals](const httplib::Request& req,
                                                                        httplib::Response& res, const Caller& caller) {
    auto specs = decode_batch(req.body);
    if (!specs) return error(res, 400, specs.error().message());
    const auto clusters = svc->workloads().clusters();
    for (std::size_t i = 0; i < specs->size(); ++i) {
      if (auto outside = outside_scope((*specs)[i], clusters, caller.scope)) {
        refusals->count("scope");
        return error(res, 403, "workloads[" + std::to_string(i) + "]: " + *outside);
      }
    }
    auto states = svc->workloads().submit_batch(std::move(specs).value(), now_ms());
    if (!states) return error(res, states.error().reason.find("already exists") != std::string::npos ? 409 : 400, states.error().message());
    json out = json::array();
    for (const auto& w : *states) out.push_back(workload_json(w));
    reply(res, 201, {{"workloads", std::move(out)}});
  });
  s.Get(R"(/api/v1/workloads/([^/]+))", Access::view, [svc](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
    auto w = svc->workloads().get(req.matches[1]);
    if (!w || outside_scope(w->spec, svc->workloads().clusters(), caller.scope)) return error(res, 404, "workload '" + std::string(req.matches[1]) + "' is not known");
    reply(res, 200, workload_json(*w));
  });
  // Body: optional, {"reason": "<1..1024 bytes>"}; the reason goes into the cancel and
  // the run's result. 202: the cancel is sent (or the workload, pending, ended at once).
  s.Post(R"(/api/v1/workloads/([^/]+)/cancel)", Access::operate, [svc](const httplib::Request& req, httplib::Response& res,
                                                                        const Caller& caller) {
    auto w = svc->workloads().get(req.matches[1]);
    if (!w || outside_scope(w->spec, svc->workloads().clusters(), caller.scope)) {
      return error(res, 404, "workload '" + std::string(req.matches[1]) + "' is not known");
    }
    std::string reason;
    if (!req.body.empty()) {
      const json body = json::parse(req.body, nullptr, false);
      if (!body.is_object()) return error(res, 400, "body: expected a JSON object");
      if (body.contains("reason")) {
        if (!body["reason"].is_string()) return error(res, 400, "reason: expected a string");
        reason = body["reason"].get<std::string>();
        if (reason.empty() || reason.size() > 1024) return error(res, 400, "reason: must be 1..1024 bytes");
      }
    }
    auto state = svc->workloads().cancel(req.matches[1], reason.empty() ? "cancelled by " + caller.name : reason, now_ms());
    if (!state) return error(res, 409, state.error().message());
    reply(res, 202, workload_json(*state));
  });
  s.Delete(R"(/api/v1/workloads/([^/]+))", Access::operate, [svc](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
    auto w = svc->workloads().get(req.matches[1]);
    const bool visible = w && !outside_scope(w->spec, svc->workloads().clusters(), caller.scope);
    if (!visible || !svc->workloads().remove(req.matches[1], now_ms())) {
      return error(res, 404, "workload '" + std::string(req.matches[1]) + "' is not known");
    }
    res.status = 204;
  });
  s.Get("/api/v1/placements", Access::view, [svc](const httplib::Request&, httplib::Response& res, const Caller& caller) {
    json out = json::array();
    for (const auto& w : svc->workloads().list()) {
      if (w.placement && w.phase != Phase::deleted && in_scope(caller.scope, w.placement->site)) {
        out.push_back(to_json(*w.placement));
      }
    }
    reply(res, 200, out);
  });
  s.Get("/api/v1/clusters", Access::view, [svc](const httplib::Request&, httplib::Response& res, const Caller& caller) {
    json out = json::array();
    for (const auto& c : svc->workloads().clusters()) {
      if (caller.scope.empty() || (c.root_site && in_scope(caller.scope, *c.root_site))) out.push_back(to_json(c));
    }
    reply(res, 200, out);
  });
  s.Post("/api/v1/clusters", Access::administer, [svc, refusals](const httplib::Request& req, httplib::Response& res,
                                                                   const Caller& caller) {
    auto cluster = decode_json<ClusterRecord>(req.body);
    if (!cluster) return error(res, 400, cluster.error().message());
    if (!caller.scope.empty() && (!cluster->root_site || cluster->root_site->find('/') == std::string::npos ||
                                  !in_scope(caller.scope, *cluster->root_site))) {
      refusals->count("scope");
      return error(res, 403, "scope: a token scoped to '" + caller.scope +
                                 "' may only register clusters whose root_site is a site path at or below it");
    }
    auto st = svc->workloads().register_cluster(*cluster);
    if (!st) return error(res, 400, st.error().message());
    reply(res, 201, to_json(*cluster));
  });
  s.Delete(R"(/api/v1/clusters/([^/]+))", Access::administer, [svc](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
    const auto clusters = svc->workloads().clusters();
    const bool visible = std::any_of(clusters.begin(), clusters.end(), [&](const ClusterRecord& c) {
      return c.cluster_id == req.matches[1] && (caller.scope.empty() || (c.root_site && in_scope(caller.scope, *c.root_site)));
    });
    if (!visible || !svc->workloads().remove_cluster(req.matches[1])) {
      return error(res, 404, "cluster '" + std::string(req.matches[1]) + "' is not known");
    }
    res.status = 204;
  });
  s.Post("/api/v1/edge/optimize", Access::operate, [svc, refusals](const httplib::Request& req, httplib::Response& res,
                                                                     const Caller& caller) {
    auto spec = decode_json<WorkloadSpec>(req.body);
    if (!spec) return error(res, 400, spec.error().message());
    if (auto outside = outside_scope(*spec, svc->workloads().clusters(), caller.scope)) {
      refusals->count("scope");
      return error(res, 403, *outside);
    }
    std::size_t k = 5;
    if (req.has_param("k")) {
      const auto v = uint_param(req, "k");
      if (!v || *v < 1 || *v > 100) return error(res, 400, "k: expected an integer 1..100");
      k = *v;
    }
    auto ranked = svc->workloads().optimize(*spec, k);
    if (!ranked) return error(res, 422, ranked.error().message());
    json out = json::array();
    for (const auto& r : ranked->recommendations) {
      const ScoreBreakdown& b = r.breakdown;
      json breakdown = {{"resource", b.resource}, {"latency", b.latency}, {"capability", b.capability},
                        {"level", b.level}, {"availability", b.availability}};
      out.push_back({{"node", r.node}, {"site", r.site}, {"score", r.score}, {"breakdown", std::move(breakdown)},
                     {"signals", signals_json(r.signals)}});
    }
    json rejected = json::array();
    for (const auto& r : ranked->rejected) {
      if (!in_scope(caller.scope, r.site)) continue;
      rejected.push_back({{"node", r.node}, {"site", r.site}, {"reason", r.reason}, {"signals", signals_json(r.signals)}});
    }
    reply(res, 200, {{"workload_id", spec->workload_id}, {"recommendations", out}, {"rejected", rejected}});
  });
  // Erasure of a node's or a sensor's data everywhere (erasures.h): admin, and only of a
  // node in the caller's scope. A node out of scope is "not known", as on every route.
  s.Post("/api/v1/erasures", Access::administer, [svc, refusals](const httplib::Request& req, httplib::Response& res,
                                                                   const Caller& caller) {
    const auto bad = [&](const std::string& message) {
      refusals->count("bad_request");
      error(res, 400, message);
    };
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) return bad("body: expected a JSON object {\"node\": ..., \"sensor\": ...}");
    for (const auto& [key, value] : body.items()) {
      if (key != "node" && key != "sensor") return bad(key + ": unknown field (expected node and optionally sensor)");
    }
    if (!body.contains("node") || !body["node"].is_string()) return bad("node: required, a node id");
    const std::string node = body["node"];
    if (auto id = topics::Id::parse(node); !id) return bad("node: " + id.error().reason);
    std::optional<std::string> sensor;
    if (body.contains("sensor")) {
      if (!body["sensor"].is_string()) return bad("sensor: expected a sensor id");
      sensor = body["sensor"].get<std::string>();
      if (auto id = topics::Id::parse(*sensor); !id) return bad("sensor: " + id.error().reason);
    }
    auto n = svc->node(node);
    if (!n || !node_in_scope(*n, caller.scope) || !n->description) {
      return error(res, 404, "node '" + node + "' is not known");
    }
    auto erasure = svc->erasures().request(node, n->description->site, sensor, caller.name, now_ms());
    if (!erasure) return error(res, 500, erasure.error().message());
    reply(res, 201, json::parse(erasure_json(*erasure)));
  });
  s.Get(R"(/api/v1/erasures/([^/]+))", Access::administer, [svc](const httplib::Request& req, httplib::Response& res,
                                                                   const Caller& caller) {
    auto e = svc->erasures().get(req.matches[1]);
    if (!e || (!caller.scope.empty() && !in_scope(caller.scope, e->site))) {
      return error(res, 404, "erasure '" + std::string(req.matches[1]) + "' is not known");
    }
    reply(res, 200, json::parse(erasure_json(*e)));
  });

  // Rollouts replace the agent on every node they reach: the most powerful write, admin.
  s.Get("/api/v1/rollouts", Access::view, [svc](const httplib::Request&, httplib::Response& res, const Caller& caller) {
    json out = json::array();
    for (const Rollout& r : svc->rollouts().list()) {
      if (rollout_in_scope(r, caller.scope)) out.push_back(json::parse(rollout_json(r)));
    }
    reply(res, 200, out);
  });
  s.Get(R"(/api/v1/rollouts/([^/]+))", Access::view, [svc](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
    auto r = svc->rollouts().get(req.matches[1]);
    if (!r || !rollout_in_scope(*r, caller.scope)) return error(res, 404, "rollout '" + std::string(req.matches[1]) + "' is not known");
    reply(res, 200, json::parse(rollout_json(*r)));
  });
  // Remote config and models (remote_config.h): the body is the message without its
  // version, revision and time, which nova-cloud sets; the codec checks the rest.
  const auto list_pushes = [svc](PushKind kind) -> Handler {
    return [svc, kind](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
      const std::string node = req.has_param("node") ? req.get_param_value("node") : "";
      json out = json::array();
      for (const PushState& p : svc->pushes().list(kind, [&](const PushState& st) {
             return (node.empty() || st.node == node) && in_scope(caller.scope, st.site);
           })) {
        out.push_back(json::parse(to_json(p)));
      }
      reply(res, 200, out);
    };
  };
  const auto push = [svc, refusals](PushKind kind) -> Handler {
    return [svc, refusals, kind](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
      const auto bad = [&](const char* reason, int status, const std::string& message) {
        refusals->count(reason);
        error(res, status, message);
      };
      const auto target = target_param(req);
      if (!target) return bad("bad_request", 400, "target: give exactly one of node, site or subtree");
      json body = json::parse(req.body, nullptr, false);
      if (!body.is_object()) return bad("bad_request", 400, "body: expected a JSON object");
      for (const char* set_here : {"v", "revision", "ts"}) {
        if (body.contains(set_here)) return bad("bad_request", 400, std::string(set_here) + ": set by nova-cloud, not by the caller");
      }
      const Timestamp now = now_ms();
      const std::uint64_t revision = svc->pushes().next_revision(now);
      body["v"] = 1;
      body["revision"] = revision;
      body["ts"] = now;
      const std::string text = body.dump(-1, ' ', false, json::error_handler_t::replace);
      std::vector<std::uint8_t> message;
      if (kind == PushKind::config) {
        auto config = decode_json<Config>(text);
        if (!config) return bad("bad_request", 400, config.error().message());
        message = encode_cbor(*config);
      } else {
        auto model = decode_json<Model>(text);
        if (!model) return bad("bad_request", 400, model.error().message());
        // A model every agent would refuse is not published: retained, it would replace
        // the good one, and an agent that restarts would then run none.
        if (auto runs = models::check_model(*model); !runs) return bad("bad_request", 400, runs.error().message());
        message = encode_cbor(*model);
      }
      auto nodes = target_nodes(*svc, target->first, target->second, caller);
      if (const auto* refused = std::get_if<TargetRefusal>(&nodes)) return bad(refused->reason, refused->status, refused->message);
      json out = json::array();
      for (const PushState& p : svc->pushes().push(kind, std::get<std::vector<TargetNode>>(nodes), revision, message, caller.name, now)) {
        out.push_back(json::parse(to_json(p)));
      }
      // As a submission: answered once the broker holds the retained messages.
      if (!svc->wait_delivered(std::chrono::seconds(30)) && svc->options().log) {
        svc->options().log("warning", "push_unconfirmed", "revision=" + std::to_string(revision) + " detail=\"the broker did not acknowledge within 30 s\"");
      }
      reply(res, 201, {{"revision", revision}, {"nodes", out}});
    };
  };
  s.Get("/api/v1/configs", Access::view, list_pushes(PushKind::config));
  s.Post("/api/v1/configs", Access::operate, push(PushKind::config));
  s.Get("/api/v1/models", Access::view, list_pushes(PushKind::model));
  s.Post("/api/v1/models", Access::operate, push(PushKind::model));
  s.Get("/api/v1/decisions", Access::view, [svc](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
    const auto limit = uint_param(req, "limit");
    if (req.has_param("limit") && (!limit || *limit == 0 || *limit > 1000)) {
      return error(res, 400, "limit: expected an integer 1..1000");
    }
    const std::string node = req.has_param("node") ? req.get_param_value("node") : "";
    json out = json::array();
    for (const DecisionEntry& e : svc->verdicts().list(limit.value_or(100), [&](const DecisionEntry& d) {
           return (node.empty() || d.record.position.node == node) && (caller.scope.empty() || (!d.site.empty() && in_scope(caller.scope, d.site)));
         })) {
      out.push_back(json::parse(to_json(e)));
    }
    reply(res, 200, out);
  });
  s.Post("/api/v1/rollouts", Access::administer, [svc, refusals](const httplib::Request& req, httplib::Response& res,
                                                                   const Caller& caller) {
    const auto bad = [&](const char* reason, int status, const std::string& message) {
      refusals->count(reason);
      error(res, status, message);
    };
    const std::string version = req.get_param_value("version");
    if (version.empty() || version.size() > 256) return bad("bad_request", 400, "version: expected 1..256 bytes, what the new agent's birth reports");
    const auto target = target_param(req);
    if (!target) return bad("bad_request", 400, "target: give exactly one of node, site or subtree");
    const auto& [kind, value] = *target;
    std::size_t wave_size = 1;
    if (req.has_param("wave_size")) {
      const auto v = uint_param(req, "wave_size");
      if (!v || *v < 1 || *v > 10000) return bad("bad_request", 400, "wave_size: expected an integer 1..10000");
      wave_size = *v;
    }
    std::uint64_t deadline_s = 600;
    if (req.has_param("deadline_s")) {
      const auto v = uint_param(req, "deadline_s");
      if (!v || *v < 1 || *v > 604800) return bad("bad_request", 400, "deadline_s: expected an integer 1..604800");
      deadline_s = *v;
    }
    if (auto problem = bundle_problem(req.body)) return bad("bad_request", 400, *problem);
    auto nodes = target_nodes(*svc, kind, value, caller);
    if (const auto* refused = std::get_if<TargetRefusal>(&nodes)) return bad(refused->reason, refused->status, refused->message);
    Rollouts::Request request{version, kind + ":" + value, std::get<std::vector<TargetNode>>(std::move(nodes)), wave_size,
                              std::chrono::seconds(deadline_s), caller.name};
    auto rollout = svc->rollouts().start(std::move(request), req.body, now_ms());
    if (!rollout) return error(res, 503, rollout.error().message());
    // As a submission: answered once the broker holds the chunks and the first offers, so
    // a nova-cloud killed right after the 201 resumes a rollout its nodes already have.
    if (!svc->wait_delivered(std::chrono::seconds(30)) && svc->options().log) {
      svc->options().log("warning", "rollout_unconfirmed", "rollout=" + rollout->id + " detail=\"the broker did not acknowledge within 30 s\"");
    }
    res.set_header("Location", "/api/v1/rollouts/" + rollout->id);
    reply(res, 201, json::parse(rollout_json(*rollout)));
  }, Body{"application/octet-stream", kMaxBundleBytes});
  s.Get("/metrics", options.protect_metrics ? Access::view : Access::open, [svc, refusals](const httplib::Request&, httplib::Response& res, const Caller&) {
    std::string text = prometheus_text(*svc);
    text += "# HELP nova_cloud_http_refused_total REST requests refused, by reason.\n"
            "# TYPE nova_cloud_http_refused_total counter\n";
    for (const auto& [reason, n] : refusals->snapshot()) {
      text += "nova_cloud_http_refused_total{reason=\"" + reason + "\"} " + std::to_string(n) + "\n";
    }
    res.set_content(text, "text/plain; version=0.0.4");
  });
  if (options.dashboard_dir.empty()) {
    auto page = std::make_shared<const DashboardParts>(split_dashboard(kDashboardHtml));
    s.Get("/", Access::open, [page](const httplib::Request&, httplib::Response& res, const Caller&) {
      res.set_content(page->html, "text/html");
    });
    s.Get("/dashboard.js", Access::open, [page](const httplib::Request&, httplib::Response& res, const Caller&) {
      res.set_content(page->js, "text/javascript");
    });
    s.Get("/dashboard.css", Access::open, [page](const httplib::Request&, httplib::Response& res, const Caller&) {
      res.set_content(page->css, "text/css");
    });
  }
}


// Time window of a read route: ?from= and ?to= (ms), by default the last hour. Nothing
// when one is given and not a number (the caller answers 400).
std::optional<std::pair<Timestamp, Timestamp>> window_param(const httplib::Request& req) {
  const auto from = uint_param(req, "from");
  const auto to = uint_param(req, "to");
  if ((req.has_param("from") && !from) || (req.has_param("to") && !to)) return std::nullopt;
  const Timestamp now = now_ms();
  return std::pair{from.value_or(now > 3'600'000 ? now - 3'600'000 : 0), to.value_or(now + 1)};
}

json points_json(const std::vector<SeriesPoint>& points) {
  json out = json::array();
  for (const SeriesPoint& p : points) {
    out.push_back({{"ts", p.ts}, {"count", p.count}, {"min", p.min}, {"mean", p.mean}, {"max", p.max}});
  }
  return out;
}

// A gauge name as the API takes it: a core gauge or an extra gauge's full name.
bool valid_gauge(const std::string& name) {
  return !name.empty() && name.size() <= 255 &&
         name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == std::string::npos;
}

// A core gauge's minute series from the stored aggregates; any other from raw batches.
std::vector<SeriesPoint> minute_series(IngestStore& store, const std::string& node, const std::string& gauge, Timestamp from,
                                       Timestamp to) {
  if (!is_core_gauge(gauge)) return bucket_series(store.samples(node, from, to, 100000), gauge, 60'000);
  std::vector<SeriesPoint> out;
  for (const MinuteAggregate& a : store.aggregates(node, from, to)) {
    const auto g = a.gauges.find(gauge);
    if (g != a.gauges.end() && g->second.count > 0) out.push_back({a.bucket, g->second.count, g->second.min, g->second.max, g->second.mean()});
  }
  return out;
}

// A 400 naming the parameter, counted as nova_cloud_http_refused_total{reason="bad_request"}.
void bad_request(const Live& live, httplib::Response& res, const std::string& message) {
  live.refusals->count("bad_request");
  error(res, 400, message);
}

// The site path `path` names (exactly) or holds below it.
bool at_or_below(const std::string& site, const std::string& path) { return path.empty() || in_scope(path, site); }

void add_operator_routes(Router& s, CloudService& service, const HttpOptions& options, Live live) {
  CloudService* svc = &service;
  // Per site path: its tier (depth), its link, its nodes by liveness. What the
  // dashboard draws first: a few hundred sites stand for 10,000 nodes.
  s.Get("/api/v1/sites", Access::view, [svc](const httplib::Request&, httplib::Response& res, const Caller& caller) {
    struct Site {
      std::map<std::string, std::uint64_t> counts;
      std::uint64_t nodes = 0;
    };
    std::map<std::string, Site> sites;
    for (const NodeView& n : svc->nodes()) {
      if (!n.description || !node_in_scope(n, caller.scope)) continue;
      // Every level of the path is a site, as in /api/v1/topology.
      const std::string& path = n.description->site;
      for (std::size_t at = path.find('/'); at != std::string::npos; at = path.find('/', at + 1)) sites[path.substr(0, at)];
      Site& site = sites[path];
      ++site.counts[std::string(to_string(n.liveness))];
      ++site.nodes;
    }
    const std::vector<std::string> down_list = svc->links_down();
    const std::set<std::string> down(down_list.begin(), down_list.end());
    json out = json::array();
    for (const auto& [path, site] : sites) {
      const std::size_t slash = path.rfind('/');
      const std::string id = slash == std::string::npos ? path : path.substr(slash + 1);
      json counts = json::object();
      for (const char* l : {"alive", "offline", "dead", "unreachable", "silent"}) {
        const auto c = site.counts.find(l);
        counts[l] = c == site.counts.end() ? 0 : c->second;
      }
      out.push_back({{"path", path}, {"site", id}, {"parent", slash == std::string::npos ? "" : path.substr(0, slash)},
                     {"tier", static_cast<int>(std::count(path.begin(), path.end(), '/')) + 1},
                     {"link", down.count(id) != 0 ? "down" : "up"}, {"nodes", site.nodes}, {"liveness", counts}});
    }
    reply(res, 200, {{"sites", out}, {"links_down", down_list}});
  });
  // One gauge's 1-minute means per site (the mean over its nodes) or per node of a
  // subtree. Reads every node's stored history in the window: meant for a dashboard's
  // sparklines, a few hours at most.
  s.Get("/api/v1/trends", Access::view, [svc, live](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
    const auto window = window_param(req);
    if (!window) return bad_request(live, res, "from, to: expected milliseconds since the epoch");
    const auto [from, to] = *window;
    if (to <= from || to - from > 24 * 3'600'000ULL) return bad_request(live, res, "to: expected after from, within 24 h of it");
    const std::string gauge = req.has_param("gauge") ? req.get_param_value("gauge") : "cpu";
    if (!valid_gauge(gauge)) return bad_request(live, res, "gauge: expected a gauge name such as cpu or sensor.s1.temp");
    const std::string by = req.has_param("by") ? req.get_param_value("by") : "site";
    if (by != "site" && by != "node") return bad_request(live, res, "by: expected \"site\" or \"node\"");
    const std::string subtree = req.has_param("site") ? req.get_param_value("site") : "";
    constexpr std::size_t kMaxNodes = 500;
    std::map<std::string, std::vector<std::vector<SeriesPoint>>> groups;
    std::size_t read = 0;
    for (const NodeView& n : svc->nodes()) {
      if (!n.description || !node_in_scope(n, caller.scope) || !at_or_below(n.description->site, subtree)) continue;
      if (by == "node" && ++read > kMaxNodes) {
        return bad_request(live, res, "site: the subtree holds more than " + std::to_string(kMaxNodes) + " nodes; name a smaller one");
      }
      auto series = minute_series(svc->store(), n.id, gauge, from, to);
      groups[by == "site" ? n.description->site : n.id].push_back(std::move(series));
    }
    json out = json::object();
    for (const auto& [key, series] : groups) out[key] = points_json(merge_series(series));
    reply(res, 200, {{"gauge", gauge}, {"by", by}, {"from", from}, {"to", to}, {"series", out}});
  });
  // Offline operation per node: time away from alive in the window (liveness history since
  // this nova-cloud started) and the outbox's backlog, drained and evicted records (its
  // gauges in the raw batches). Nodes ranked by time away, then by backlog.
  s.Get("/api/v1/offline", Access::view, [svc, live](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
    const auto window = window_param(req);
    if (!window) return bad_request(live, res, "from, to: expected milliseconds since the epoch");
    const auto [from, to] = *window;
    const auto limit = uint_param(req, "limit");
    if (req.has_param("limit") && (!limit || *limit == 0 || *limit > 1000)) return bad_request(live, res, "limit: expected an integer 1..1000");
    const std::string subtree = req.has_param("site") ? req.get_param_value("site") : "";
    struct Row {
      const NodeView* node;
      LivenessHistory::Offline offline;
    };
    const std::vector<NodeView> nodes = svc->nodes();
    std::vector<Row> rows;
    for (const NodeView& n : nodes) {
      if (!n.description || !node_in_scope(n, caller.scope) || !at_or_below(n.description->site, subtree)) continue;
      rows.push_back({&n, live.view->history().offline(n.id, from, to)});
    }
    // Only the first `limit` are read from the store: ranked by time away first.
    std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.offline.offline_ms > b.offline.offline_ms; });
    if (rows.size() > limit.value_or(200)) rows.resize(limit.value_or(200));
    json out = json::array();
    for (const Row& r : rows) {
      const OutboxStats o = outbox_stats(svc->store().samples(r.node->id, from, to, 100000));
      json j = {{"node", r.node->id}, {"site", r.node->description->site},
                {"liveness", std::string(to_string(r.node->liveness))}, {"offline_ms", r.offline.offline_ms},
                {"offline_periods", r.offline.periods}, {"seen_since", r.offline.first_seen}};
      if (o.samples_used > 0) {
        j["outbox"] = {{"backlog_records", o.backlog_records}, {"backlog_bytes", o.backlog_bytes},
                       {"peak_records", o.peak_records}, {"peak_bytes", o.peak_bytes}, {"drained", o.drained},
                       {"evicted", o.evicted}, {"last_ts", o.last_ts}};
      }
      out.push_back(std::move(j));
    }
    std::stable_sort(out.begin(), out.end(), [](const json& a, const json& b) {
      const auto backlog = [](const json& j) { return j.contains("outbox") ? j["outbox"]["backlog_records"].get<double>() : 0.0; };
      return a["offline_ms"] != b["offline_ms"] ? a["offline_ms"] > b["offline_ms"] : backlog(a) > backlog(b);
    });
    reply(res, 200, {{"from", from}, {"to", to}, {"nodes", out}});
  });
  s.Get("/api/v1/alerts", Access::view, [svc, live](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
    const auto limit = uint_param(req, "limit");
    if (req.has_param("limit") && (!limit || *limit == 0 || *limit > 1000)) return bad_request(live, res, "limit: expected an integer 1..1000");
    const auto since = uint_param(req, "since");
    if (req.has_param("since") && !since) return bad_request(live, res, "since: expected milliseconds since the epoch");
    const std::string node = req.has_param("node") ? req.get_param_value("node") : "";
    if (!node.empty() && !topics::Id::valid(node)) return bad_request(live, res, "node: not a valid node id");
    const std::string severity = req.has_param("severity") ? req.get_param_value("severity") : "";
    if (!severity.empty() && severity != "info" && severity != "warning" && severity != "critical") {
      return bad_request(live, res, "severity: expected info, warning or critical");
    }
    const Timestamp now = now_ms();
    json out = json::array();
    // Filtered after reading: read up to the largest limit, then keep the caller's.
    for (const auto& a : svc->store().alerts(node, since.value_or(now > 86'400'000 ? now - 86'400'000 : 0), 100000)) {
      if (out.size() >= limit.value_or(100)) break;
      json j = to_json(a.alert);
      if (!severity.empty() && j.value("severity", "") != severity) continue;
      const auto n = svc->node(a.alert.position.node);
      const std::string site = n && n->description ? n->description->site : "";
      if (!caller.scope.empty() && (site.empty() || !in_scope(caller.scope, site))) continue;
      j["node"] = a.alert.position.node;
      j["site"] = site;
      j["received"] = a.received;
      out.push_back(std::move(j));
    }
    reply(res, 200, out);
  });
  // Server-sent events (operator_view.h lists the types). Each holds one of the
  // server's threads until the client goes, it is dropped as slow, or the server stops.
  s.Get("/api/v1/events", Access::view, [live, keepalive = options.events_keepalive](const httplib::Request& req, httplib::Response& res,
                                                                                   const Caller& caller) {
    std::string last = req.get_header_value("Last-Event-ID");
    if (last.empty() && req.has_param("last_event_id")) last = req.get_param_value("last_event_id");
    std::uint64_t last_id = 0;
    if (!last.empty()) {
      if (last.size() > 19 || last.find_first_not_of("0123456789") != std::string::npos) {
        return bad_request(live, res, "Last-Event-ID: expected the id of an event");
      }
      last_id = std::stoull(last);
    }
    bool reset = false;
    std::shared_ptr<EventHub::Client> client = live.hub->subscribe(caller.scope, last_id, &reset);
    if (!client) return error(res, 503, "events: every event stream is taken; retry later");
    res.set_header("Cache-Control", "no-store");
    std::string greeting = "retry: 1000\n: nova-cloud live events\n\n";
    if (reset) greeting += "event: reset\ndata: {\"reason\":\"events after Last-Event-ID are no longer kept\"}\n\n";
    res.set_chunked_content_provider("text/event-stream", [client, greeting, keepalive](std::size_t, httplib::DataSink& sink) mutable {
      std::string out = std::move(greeting);
      greeting.clear();
      if (out.empty()) {
        const std::vector<LiveEvent> events = client->next(keepalive);
        if (client->closed()) {
          if (client->dropped()) {
            const std::string bye = "event: dropped\ndata: {\"reason\":\"too slow: the queue was full\"}\n\n";
            sink.write(bye.data(), bye.size());
          }
          sink.done();
          return true;
        }
        if (events.empty()) out = ": keep-alive\n\n";
        for (const LiveEvent& e : events) out += sse_frame(e);
      }
      return sink.write(out.data(), out.size());
    });
  });
  s.routes.back().browser_token = true;
}

}  // namespace

std::vector<std::string> default_allowed_hosts(const std::string& listen, std::uint16_t port) {
  const std::string p = ":" + std::to_string(port);
  std::vector<std::string> hosts = {"localhost" + p, "127.0.0.1" + p};
  const std::string bound = listen.find(':') != std::string::npos ? "[" + listen + "]" + p : listen + p;  // IPv6
  if (!listed(hosts, bound)) hosts.push_back(bound);
  return hosts;
}

struct HttpRoutes::Table {
  Table(CloudService& service, const HttpOptions& o)
      : options(o), hub(o.events), view(service, hub, o.events_interval) {}
  Router router;
  HttpOptions options;
  std::shared_ptr<Refusals> refusals = std::make_shared<Refusals>();
  EventHub hub;
  OperatorView view;  // after hub: stops (joins its watcher) before the hub goes

  std::size_t body_limit(const Router::Route& route) const {
    return route.body.max != 0 ? route.body.max : options.max_body_bytes;
  }
  // The largest body any route takes: what httplib may read at all.
  std::size_t largest_body() const {
    std::size_t largest = options.max_body_bytes;
    for (const auto& route : router.routes) largest = std::max(largest, body_limit(route));
    return largest;
  }
  // The token of "Authorization: Bearer <token>", if the header has that form.
  static std::optional<std::string> bearer_token(const httplib::Request& req) {
    const std::string authorization = req.get_header_value("Authorization");
    static constexpr std::string_view kBearer = "Bearer ";
    if (authorization.size() <= kBearer.size() || authorization.compare(0, kBearer.size(), kBearer) != 0) {
      return std::nullopt;
    }
    return authorization.substr(kBearer.size());
  }
  // For a route that takes it so (Route::browser_token), when no Authorization header came:
  // ?token=, else the nova_token cookie.
  static std::optional<std::string> browser_token(const httplib::Request& req) {
    if (req.has_param("token") && !req.get_param_value("token").empty()) return req.get_param_value("token");
    const std::string cookies = req.get_header_value("Cookie");
    static constexpr std::string_view kName = "nova_token=";
    for (std::size_t at = 0; at < cookies.size();) {
      while (at < cookies.size() && (cookies[at] == ' ' || cookies[at] == ';')) ++at;
      const std::size_t end = std::min(cookies.find(';', at), cookies.size());
      if (cookies.compare(at, kName.size(), kName) == 0 && end > at + kName.size()) {
        return cookies.substr(at + kName.size(), end - at - kName.size());
      }
      at = end;
    }
    return std::nullopt;
  }
  // Whether the body of `req`, declared `length` bytes, is refused before it is read: a
  // length over every route's limit always (httplib would only read and discard it), one
  // over its route's limit only from a caller without a valid token, who may not make
  // the server hold up to the largest limit in memory. A token holder's body is read and
  // refused by the guard: a client that does not expect an answer before it sent its
  // whole body (httplib's own: SIGPIPE) keeps getting its 413.
  bool refuse_unread(const httplib::Request& req, std::uint64_t length) const {
    if (length <= body_limit(req)) return false;
    if (length > largest_body()) return true;
    if (options.insecure_no_auth) return false;
    const std::optional<std::string> bearer = bearer_token(req);
    return !bearer || !options.tokens || !options.tokens->find(*bearer);
  }
  // The limit of the route `req` goes to (the JSON one when none does).
  std::size_t body_limit(const httplib::Request& req) const {
    std::smatch matches;
    const Router::Route* route = router.find(req, matches);
    return route != nullptr ? body_limit(*route) : options.max_body_bytes;
  }

  // Runs the route, then records a write in the audit log before the reply goes out.
  void serve(const Router::Route& route, const httplib::Request& req, httplib::Response& res) const {
    Caller caller;
    guard_and_run(route, req, res, caller);
    if (!options.audit || req.method == "GET" || req.method == "HEAD") return;
    const int status = res.status == -1 ? 200 : res.status;
    auto st = options.audit->append({caller.name, route.label, req.path, std::to_string(status)});
    if (!st) {
      // Not recorded: the action happened, but is not acknowledged as if it were audited.
      refusals->count("audit_failed");
      error(res, 500, "audit: " + st.error().message());
    }
  }

  // The route's guard (http_api.h lists the checks in order), then its handler.
  void guard_and_run(const Router::Route& route, const httplib::Request& req, httplib::Response& res,
                     Caller& caller) const {
    set_security_headers(res);
    const auto refuse = [&](const char* reason, int status, const std::string& message) {
      refusals->count(reason);
      error(res, status, message);
    };
    // DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends its own name.
    if (!req.has_header("Host")) return refuse("missing_host", 400, "Host: missing (HTTP/1.1 requires it)");
    const std::string host = req.get_header_value("Host");
    if (!listed(options.allowed_hosts, host)) {
      return refuse("bad_host", 421, "Host: '" + host + "' is not an allowed host (http.allowed_hosts)");
    }
    if (options.insecure_no_auth) {
      caller.role = Role::admin;
    } else if (route.access != Access::open) {
      std::optional<std::string> bearer = bearer_token(req);
      if (!bearer && route.browser_token) bearer = browser_token(req);
      if (!bearer) {
        res.set_header("WWW-Authenticate", "Bearer realm=\"nova-cloud\"");
        return refuse("missing_token", 401, "Authorization: expected \"Bearer <token>\"");
      }
      auto token = options.tokens ? options.tokens->find(*bearer) : std::nullopt;
      if (!token) {
        res.set_header("WWW-Authenticate", "Bearer realm=\"nova-cloud\", error=\"invalid_token\"");
        return refuse("bad_token", 401, "Authorization: the token is not in auth.tokens_file");
      }
      caller = {token->name, token->role, token->scope};
    }
    const bool write = req.method != "GET" && req.method != "HEAD";
    // A browser sends Origin on every cross-origin write: a page elsewhere is refused.
    if (write && req.has_header("Origin") && !listed(options.allowed_origins, req.get_header_value("Origin"))) {
      return refuse("bad_origin", 403, "Origin: '" + req.get_header_value("Origin") + "' is not an allowed origin");
    }
    if (route.access != Access::open && static_cast<int>(caller.role) < static_cast<int>(needed_role(route.access))) {
      const std::string_view role = to_string(caller.role);
      return refuse("role", 403, "role: '" + caller.name + "' is " + (role.front() == 'a' || role.front() == 'o' ? "an " : "a ") +
                                     std::string(role) + "; " + route.label + " needs " +
                                     std::string(to_string(needed_role(route.access))));
    }
    // A form or fetch() without preflight can send text/plain, never application/json
    // or application/octet-stream.
    if (req.method == "POST") {
      const std::string type = lower(req.get_header_value("Content-Type"));
      const std::string& want = route.body.content_type;
      if (type != want && type.rfind(want + ";", 0) != 0) {
        return refuse("content_type", 415, "Content-Type: expected " + want + ", got '" + type + "'");
      }
    }
    // The server refuses a declared length over the route's limit before reading the body
    // (install()); this catches a chunked one.
    if (req.body.size() > body_limit(route)) return refuse("body_too_large", 413, too_large(body_limit(route)));
    route.handler(req, res, caller);
  }
};

HttpRoutes::HttpRoutes(CloudService& service, const HttpOptions& options)
    : table_(std::make_unique<Table>(service, options)) {
  if (table_->options.allowed_hosts.empty()) {
    table_->options.allowed_hosts = default_allowed_hosts(options.listen, options.port);
  }
  if (table_->options.allowed_origins.empty()) {
    for (const auto& h : table_->options.allowed_hosts) table_->options.allowed_origins.push_back("http://" + h);
  }
  add_routes(table_->router, service, table_->options, table_->refusals, Live{&table_->hub, &table_->view, table_->refusals.get()});
}
HttpRoutes::~HttpRoutes() = default;

void HttpRoutes::close_events() { table_->hub.close(); }
EventHub& HttpRoutes::events() { return table_->hub; }
OperatorView& HttpRoutes::operator_view() { return table_->view; }

void HttpRoutes::handle(httplib::Request& req, httplib::Response& res) const {
  if (const Router::Route* route = table_->router.find(req, req.matches)) {
    table_->serve(*route, req, res);
  } else {
    res.status = 404;
  }
  if (res.status == -1) res.status = 200;  // as httplib: a handler that set no status
  if (res.status >= 400) error_handler(req, res, table_->body_limit(req));
}

void HttpRoutes::install(httplib::Server& server) const {
  for (const auto& route : table_->router.routes) {
    httplib::Server::Handler h = [table = table_.get(), &route](const httplib::Request& req, httplib::Response& res) {
      table->serve(route, req, res);
    };
    if (route.method == "GET") server.Get(route.pattern, h);
    if (route.method == "POST") server.Post(route.pattern, h);
    if (route.method == "DELETE") server.Delete(route.pattern, h);
  }
  server.set_error_handler([table = table_.get()](const httplib::Request& req, httplib::Response& res) {
    error_handler(req, res, table->body_limit(req));
  });
  server.set_payload_max_length(table_->largest_body());
  // Runs before httplib reads a body (Table::refuse_unread says which are refused so).
  server.set_pre_routing_handler([table = table_.get()](const httplib::Request& req, httplib::Response& res) {
    // httplib 0.11.4 picks Brotli whenever Accept-Encoding names it, at quality 11: 14 s
    // for the 2.4 MB node list of 10,000 nodes (gzip: 0.26 s, none: 0.2 s; measured on
    // loopback). Browsers always offer br: offer httplib gzip only. The request is httplib's
    // own, not const; its handlers merely see it so.
    auto& headers = const_cast<httplib::Request&>(req).headers;
    if (const auto accept = headers.find("Accept-Encoding"); accept != headers.end()) {
      if (accept->second.find("gzip") != std::string::npos) {
        accept->second = "gzip";
      } else {
        headers.erase(accept);
      }
    }
    if (!req.has_header("Content-Length") ||
        !table->refuse_unread(req, req.get_header_value<std::uint64_t>("Content-Length"))) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    set_security_headers(res);
    table->refusals->count("body_too_large");
    error(res, 413, too_large(table->body_limit(req)));
    res.set_header("Connection", "close");  // the body was not read
    return httplib::Server::HandlerResponse::Handled;
  });
  server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    error(res, 500, "internal error");
  });
}

schemas::Result<std::unique_ptr<HttpApi>> HttpApi::start(CloudService& service, const HttpOptions& options) {
  std::unique_ptr<HttpApi> api(new HttpApi());
  api->server_ = std::make_unique<httplib::Server>();
  httplib::Server& server = *api->server_;
  // Bound first: the default allowed Host values hold the port really bound.
  if (options.port == 0) {
    const int port = server.bind_to_any_port(options.listen);
    if (port <= 0) return Error{"http.listen", "cannot bind " + options.listen};
    api->port_ = static_cast<std::uint16_t>(port);
  } else {
    if (!server.bind_to_port(options.listen, options.port)) {
      return Error{"http.port", "cannot bind " + options.listen + ":" + std::to_string(options.port)};
    }
    api->port_ = options.port;
  }
  HttpOptions bound = options;
  bound.port = api->port_;
  api->routes_ = std::make_unique<HttpRoutes>(service, bound);
  api->routes_->install(server);
  // Each live event stream holds a thread for as long as it is open: room for every one
  // of them beside httplib's usual pool, so streams never starve the API.
  server.new_task_queue = [streams = options.events.max_clients] {
    return new httplib::ThreadPool(CPPHTTPLIB_THREAD_POOL_COUNT + streams);
  };
  if (!options.dashboard_dir.empty() && !server.set_mount_point("/", options.dashboard_dir)) {
    return Error{"http.dashboard_dir", "'" + options.dashboard_dir + "' is not a readable directory"};
  }
  server.set_file_request_handler([](const httplib::Request&, httplib::Response& res) { set_security_headers(res); });
  api->thread_ = std::thread([raw = api->server_.get()] { raw->listen_after_bind(); });
  return api;
}

HttpApi::~HttpApi() { stop(); }

void HttpApi::stop() {
  if (routes_) routes_->close_events();  // a stream waiting for events would hold stop() up
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace nova::cloud
