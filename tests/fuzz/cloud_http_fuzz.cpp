// libFuzzer target: nova-cloud's REST API, every route, through HttpRoutes::handle --
// the table of handlers HttpApi installs into httplib -- without a socket. A handler's
// exception is a crash here (the server would answer 500 "internal error").
//
// Input, HTTP-like: "<METHOD> <path>[?<query>]\n", header lines "<name>: <value>\n", an
// empty line, then the body. The query is parsed by httplib's own parser. A few nodes
// are born first, so submissions, placements and recommendations have somewhere to go.
//
// Authentication is off (insecure_no_auth) and a request without Host or Content-Type
// gets the allowed ones, so the seeds reach the handlers; the guard itself is tested in
// tests/cloud/http_routes_test.cpp.
//
// Invariants: the status is 1xx..5xx; a JSON reply parses, and an error reply (>= 400)
// is an object whose "error" is a non-empty string.
#include <httplib.h>

#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <chrono>
#include <string>

#include "cloud_fuzz.h"
#include "nova/cloud/http_api.h"

namespace {

struct Api {
  nova::fuzz::FuzzedCloud cloud;
  nova::cloud::HttpRoutes routes{cloud.service(), options()};
  static nova::cloud::HttpOptions options() {
    nova::cloud::HttpOptions o;
    o.insecure_no_auth = true;
    o.events_interval = std::chrono::milliseconds(0);  // no watcher thread: runs stay repeatable
    return o;
  }
  Api() {
    using namespace nova::schemas;
    const char* const sites[] = {"cloud", "cloud/eu", "cloud/eu/par", "cloud/eu/par/par-a1"};
    for (std::uint8_t level = 1; level <= 4; ++level) {
      NodeState s;
      s.node = "node-" + std::to_string(level);
      s.status = NodeStatus::online;
      s.bdseq = 1;
      s.description = NodeDescription{level, sites[level - 1], "x86_64", "fuzz", {"gpu"}, {4000, 4096, 10000}, std::nullopt};
      const auto bytes = encode_cbor(s);
      cloud.service().deliver("nova/v1/up/" + s.node + "/state", std::string(bytes.begin(), bytes.end()), true);
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Api api;
  const std::string input(reinterpret_cast<const char*>(data), size);
  httplib::Request req;
  httplib::Response res;
  std::size_t at = input.find('\n');
  const std::string first = input.substr(0, at);
  const std::size_t space = first.find(' ');
  req.method = first.substr(0, space);
  std::string target = space == std::string::npos ? std::string() : first.substr(space + 1);
  if (const std::size_t q = target.find('?'); q != std::string::npos) {
    httplib::detail::parse_query_text(target.substr(q + 1), req.params);
    target.resize(q);
  }
  req.path = httplib::detail::decode_url(target, false);
  while (at != std::string::npos) {
    const std::size_t next = input.find('\n', at + 1);
    const std::string line = input.substr(at + 1, next == std::string::npos ? std::string::npos : next - at - 1);
    at = next;
    if (line.empty()) break;
    const std::size_t colon = line.find(':');
    req.headers.emplace(line.substr(0, colon), colon == std::string::npos ? std::string() : line.substr(colon + 1));
  }
  if (at != std::string::npos) req.body = input.substr(at + 1);
  if (!req.has_header("Host")) req.headers.emplace("Host", "127.0.0.1:8080");
  if (!req.has_header("Content-Type")) req.headers.emplace("Content-Type", "application/json");

  api.routes.handle(req, res);

  if (res.status < 100 || res.status > 599) std::abort();
  if (res.get_header_value("Content-Type") == "application/json") {
    const auto body = nlohmann::json::parse(res.body, nullptr, false);
    if (body.is_discarded()) std::abort();
    if (res.status >= 400 && (!body.is_object() || !body.contains("error") || !body["error"].is_string() ||
                              body["error"].get<std::string>().empty())) {
      std::abort();
    }
  }
  return 0;
}
