// The REST handlers through HttpRoutes::handle (what httplib calls), on a detached
// CloudService: no broker, no socket.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "nova/cloud/http_api.h"
#include "nova/cloud/service.h"

using namespace nova;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Detached {
  fs::path dir;
  std::unique_ptr<cloud::CloudService> service;
  std::unique_ptr<cloud::HttpRoutes> routes;
  explicit Detached(const std::string& name) : dir(fs::temp_directory_path() / ("nova-http-routes-" + name)) {
    fs::remove_all(dir);
    cloud::CloudOptions options;
    options.store.dir = dir / "store";
    auto s = cloud::CloudService::start_detached(std::move(options), [](auto&&...) {});
    REQUIRE(s.ok());
    service = std::move(s).value();
    routes = std::make_unique<cloud::HttpRoutes>(*service, cloud::HttpOptions{});
  }
  ~Detached() {
    routes.reset();
    service.reset();
    fs::remove_all(dir);
  }
  httplib::Response call(const std::string& method, const std::string& path) {
    httplib::Request req;
    req.method = method;
    req.path = path;
    httplib::Response res;
    routes->handle(req, res);
    return res;
  }
};

}  // namespace

TEST_CASE("an id with invalid UTF-8 in the path is a 404 naming it, not an exception", "[cloud][http]") {
  Detached d("utf8");
  // httplib decodes %F9 in the path to the byte 0xF9 before routing.
  const auto res = d.call("GET", std::string("/api/v1/workloads/w-\xf9"));
  CHECK(res.status == 404);
  const json body = json::parse(res.body);
  CHECK(body["error"].get<std::string>().find("is not known") != std::string::npos);
}

TEST_CASE("/readyz answers 503 with the reason while there is no broker", "[cloud][http]") {
  Detached d("readyz");
  const auto res = d.call("GET", "/readyz");
  CHECK(res.status == 503);
  const json body = json::parse(res.body);
  CHECK(body["error"].get<std::string>().find("mqtt: not connected") == 0);
}

TEST_CASE("an unknown route is a JSON 404", "[cloud][http]") {
  Detached d("unknown");
  const auto res = d.call("PUT", "/api/v1/nowhere");
  CHECK(res.status == 404);
  CHECK(json::parse(res.body)["error"] == "no such resource");
}
