// A detached nova-cloud (no broker, no socket) with its REST routes and a tokens file of
// every role, for tests that call the handlers as httplib would (HttpRoutes::handle).
#pragma once

#include <httplib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "nova/cloud/auth.h"
#include "nova/cloud/http_api.h"
#include "nova/cloud/service.h"

namespace nova::testing {

namespace fs = std::filesystem;
using nlohmann::json;

// Tokens of every role, in the tokens file the Detached routes load.
struct Tokens {
  std::string admin, viewer, operator_eu, admin_eu;
};

struct Detached {
  fs::path dir;
  Tokens tokens;
  std::unique_ptr<nova::cloud::CloudService> service;
  std::unique_ptr<nova::cloud::HttpRoutes> routes;
  explicit Detached(const std::string& name, nova::cloud::HttpOptions http = {})
      : dir(fs::temp_directory_path() / ("nova-http-routes-" + name)) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    nova::cloud::CloudOptions options;
    options.store.dir = dir / "store";
    auto s = nova::cloud::CloudService::start_detached(std::move(options), [](auto&&...) {});
    REQUIRE(s.ok());
    service = std::move(s).value();
    auto admin = nova::cloud::create_token("root-admin", nova::cloud::Role::admin, "");
    auto viewer = nova::cloud::create_token("watcher", nova::cloud::Role::viewer, "");
    auto op = nova::cloud::create_token("ops-eu", nova::cloud::Role::operator_, "cloud/eu");
    auto admin_eu = nova::cloud::create_token("admin-eu", nova::cloud::Role::admin, "cloud/eu");
    REQUIRE((admin.ok() && viewer.ok() && op.ok() && admin_eu.ok()));
    tokens = {admin->token, viewer->token, op->token, admin_eu->token};
    std::ofstream(dir / "tokens") << "# test tokens\n" << admin->line << '\n' << viewer->line << '\n' << op->line << '\n'
                                  << admin_eu->line << '\n';
    auto store = nova::cloud::TokenStore::load(dir / "tokens");
    REQUIRE(store.ok());
    http.tokens = store.value();
    http.port = 8080;
    routes = std::make_unique<nova::cloud::HttpRoutes>(*service, http);
  }
  ~Detached() {
    routes.reset();
    service.reset();
    fs::remove_all(dir);
  }
  // A request as a browser or curl sends it to 127.0.0.1:8080, with `token` (if any).
  httplib::Response call(const std::string& method, const std::string& path, const std::string& token = "",
                         const std::string& body = "", httplib::Headers headers = {{"Host", "127.0.0.1:8080"}}) {
    httplib::Request req;
    req.method = method;
    req.path = path.substr(0, path.find('?'));
    // As httplib does: the query goes to params.
    if (path.find('?') != std::string::npos) httplib::detail::parse_query_text(path.substr(path.find('?') + 1), req.params);
    req.headers = std::move(headers);
    if (!token.empty()) req.headers.emplace("Authorization", "Bearer " + token);
    if (!body.empty() && !req.has_header("Content-Type")) req.headers.emplace("Content-Type", "application/json");
    req.body = body;
    httplib::Response res;
    routes->handle(req, res);
    return res;
  }
  std::string error_of(const httplib::Response& res) { return json::parse(res.body)["error"].get<std::string>(); }
};

}  // namespace nova::testing
