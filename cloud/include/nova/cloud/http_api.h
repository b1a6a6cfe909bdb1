// nova-cloud's REST API, Prometheus endpoint and dashboard (cpp-httplib), described in
// cloud/openapi.yaml. JSON in and out; request bodies go through the schemas codec, so
// a bad body is a 400 whose "error" names the field:
//   {"error":"workload.res.cpu_millis: expected unsigned integer, got text string"}
//
//   GET    /api/v1/health                 liveness of the service and its MQTT session
//   GET    /readyz                        200 ready, 503 with the reasons (not connected,
//                                         a subscription that does not deliver)
//   GET    /api/v1/nodes                  every node with its liveness
//   GET    /api/v1/nodes/{id}             one node
//   GET    /api/v1/nodes/{id}/metrics     ?from=&to= (ms) &resolution=raw|1m
//   GET    /api/v1/topology               the site tree with nodes and link states
//   GET    /api/v1/workloads              POST: submit a WorkloadSpec
//   GET    /api/v1/workloads/{id}         DELETE: stop placing it
//   GET    /api/v1/placements             current placements with score breakdowns
//   GET    /api/v1/clusters               POST: register a ClusterRecord
//   DELETE /api/v1/clusters/{id}
//   POST   /api/v1/edge/optimize          ranked recommendations, nothing committed
//   GET    /metrics                       Prometheus text format 0.0.4
//   GET    /                              the dashboard
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "nova/cloud/service.h"
#include "nova/schemas/result.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace nova::cloud {

struct HttpOptions {
  std::string listen = "127.0.0.1";
  std::uint16_t port = 8080;  // 0: any free port
  std::string dashboard_dir;  // empty: the built-in dashboard
  std::size_t max_body_bytes = 1 << 20;
};

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
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

}  // namespace nova::cloud
