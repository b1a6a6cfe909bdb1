// curl (Debian's, a client we did not write) against nova-cloud's REST API from a test.
#pragma once

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

namespace nova::test {

struct CurlReply {
  int status = 0;
  std::string body;
};

// curl with `args` (each single-quoted for the shell): the status and the body.
inline CurlReply curl(const std::vector<std::string>& args) {
  std::string command = "curl -s -o - -w '\\n%{http_code}'";
  for (const auto& a : args) command += " '" + a + "'";
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
  REQUIRE(::pclose(pipe) == 0);
  const std::size_t nl = out.rfind('\n');
  return {std::stoi(out.substr(nl + 1)), out.substr(0, nl)};
}

}  // namespace nova::test
