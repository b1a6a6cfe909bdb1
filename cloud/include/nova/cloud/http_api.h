// nova-cloud's REST API, Prometheus endpoint and dashboard (cpp-httplib), described in
// cloud/openapi.yaml. JSON in and out; request bodies go through the schemas codec, so
// a bad body is a 400 whose "error" names the field:
//   {"error":"workload.res.cpu_millis: expected unsigned integer, got text string"}
//
//   GET    /api/v1/health                 liveness of the service and its MQTT session
//   GET    /readyz                        200 ready, 503 with the reasons (not connected,
//                                         a subscription that does not deliver)
//   GET    /api/v1/nodes                  every node with its liveness (?site=: a subtree)
//   GET    /api/v1/nodes/{id}             one node
//   GET    /api/v1/nodes/{id}/metrics     ?from=&to= (ms) &resolution=raw|1m &gauge=<name>
//                                         (any gauge, sensor.* and agent.* too: metric_series.h)
//   GET    /api/v1/topology               the site tree with nodes and link states
//   GET    /api/v1/sites                  per site: tier, link, node counts by liveness
//   GET    /api/v1/trends                 ?gauge= &by=site|node &site= &from= &to=: 1-minute
//                                         means per site (or per node of a subtree)
//   GET    /api/v1/offline                ?site= &from= &to= &limit=: per node, time away from
//                                         alive and what its outbox held, drained, evicted
//   GET    /api/v1/alerts                 ?node= &severity= &since= &limit=, newest first
//   GET    /api/v1/events                 server-sent events (operator_view.h); the token may
//                                         also come as ?token= or the nova_token cookie
//   GET    /api/v1/workloads              POST: submit a WorkloadSpec
//   GET    /api/v1/workloads/{id}         DELETE: stop placing it
//   GET    /api/v1/placements             current placements with score breakdowns
//   GET    /api/v1/clusters               POST: register a ClusterRecord
//   DELETE /api/v1/clusters/{id}
//   POST   /api/v1/edge/optimize          ranked recommendations, nothing committed
//   GET    /api/v1/rollouts               POST: a new agent (the body) to a target in waves
//   GET    /api/v1/rollouts/{id}          a rollout with each node's phase (rollouts.h)
//   GET    /api/v1/decisions              decisions with their verdicts (verdicts.h)
//   GET    /api/v1/configs, /api/v1/models  each node's newest push and its state
//   POST   /api/v1/configs, /api/v1/models  ?node=|site=|subtree=: push, retained (remote_config.h)
//   GET    /metrics                       Prometheus text format 0.0.4
//   GET    /                              the dashboard
//
// Every request passes, in this order (docs/security.md, "The REST API"):
//   Host header in allowed_hosts                   else 400 (missing) / 421 (DNS rebinding)
//   bearer token (routes other than /api/v1/health, /readyz, /metrics, /)
//                                                  else 401 + WWW-Authenticate: Bearer
//   on a write: Origin, when present, in allowed_origins              else 403
//   the token's role allows the route (viewer GET, operator workloads, placements,
//   configs and models, admin clusters and rollouts)                                      else 403
//   on a POST: Content-Type application/json (kills text/plain CSRF)  else 415
//     (application/octet-stream for a rollout's bundle)
//   the body within the route's limit (max_body_bytes; kMaxBundleBytes for a
//     rollout), refused unread when declared over every limit or by a caller
//     without a valid token                                          else 413
//   the token's scope holds what the request names                    else 403 / 404
// Each refusal is counted on /metrics: nova_cloud_http_refused_total{reason}. Every
// request to a write route, served or refused, is appended to the audit log.
// Every reply carries Content-Security-Policy, X-Frame-Options and X-Content-Type-Options.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nova/cloud/auth.h"
#include "nova/cloud/event_hub.h"
#include "nova/cloud/service.h"
#include "nova/schemas/result.h"

namespace nova::security {
class AuditLog;
}  // namespace nova::security

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace nova::cloud {

class OperatorView;

struct HttpOptions {
  std::string listen = "127.0.0.1";
  std::uint16_t port = 8080;  // 0: any free port
  std::string dashboard_dir;  // empty: the built-in dashboard
  std::size_t max_body_bytes = 1 << 20;
  // Host header values accepted (host:port, compared case-insensitively). Empty: the
  // listen address, localhost and 127.0.0.1, each with the bound port.
  std::vector<std::string> allowed_hosts;
  // Origin header values accepted on a write. Empty: "http://" + each allowed host.
  std::vector<std::string> allowed_origins;
  // The tokens file. Null (and not insecure_no_auth): every protected route is a 401.
  std::shared_ptr<const TokenStore> tokens;
  bool insecure_no_auth = false;  // every caller is an unscoped admin named "anonymous"
  bool protect_metrics = false;   // /metrics needs a viewer token too
  // Every request to a write route (POST, DELETE), served or refused, is appended here
  // (actor, "METHOD route", path, status) and synced before the reply is sent. Null: none.
  std::shared_ptr<security::AuditLog> audit;
  // Live events (GET /api/v1/events): how often the watcher compares state (0: no watcher,
  // tests tick it), and how long a quiet stream waits before a keep-alive comment.
  std::chrono::milliseconds events_interval{250};
  std::chrono::milliseconds events_keepalive{15'000};
  EventHub::Limits events{};
};

// The Host values accepted by default for a server on `listen`:`port`.
std::vector<std::string> default_allowed_hosts(const std::string& listen, std::uint16_t port);

// Every route and its handler, as a table: HttpApi installs them into httplib, and a
// fuzzer (or a test) can call handle() with a request and no socket.
class HttpRoutes {
 public:
  HttpRoutes(CloudService& service, const HttpOptions& options);
  ~HttpRoutes();
  // What the server does with a parsed request: the first route whose method matches and
  // whose pattern matches the whole path (req.matches is set, as httplib does), else 404;
  // 200 when the handler set no status; then the error handler fills the body of an error left without one. A handler's
  // exception propagates (the server answers 500; a fuzzer reports a crash).
  void handle(httplib::Request& req, httplib::Response& res) const;
  void install(httplib::Server& server) const;
  // Ends every live event stream (before the server stops: a stream waits for events).
  void close_events();
  EventHub& events();
  OperatorView& operator_view();

 private:
  struct Table;
  std::unique_ptr<Table> table_;
};

class HttpApi {
 public:
  // Binds and starts serving on a background thread.
  static schemas::Result<std::unique_ptr<HttpApi>> start(CloudService& service, const HttpOptions& options);
  ~HttpApi();  // stops
  void stop();
  std::uint16_t port() const { return port_; }

 private:
  HttpApi() = default;
  std::unique_ptr<HttpRoutes> routes_;  // the server's handlers point into it
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

}  // namespace nova::cloud
