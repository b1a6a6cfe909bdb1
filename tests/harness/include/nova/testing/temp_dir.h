// A fresh directory for one test under $TMPDIR (else /tmp), removed with everything in
// it when the TempDir goes, unless NOVA_KEEP_TEST_DIRS is set (then its path is printed).
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>

namespace nova::testing {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& prefix = "nova-test") {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        (std::filesystem::path(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") / (prefix + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
    path = pattern;
  }
  ~TempDir() {
    if (std::getenv("NOVA_KEEP_TEST_DIRS") != nullptr) {
      std::cerr << "kept test directory " << path << '\n';
      return;
    }
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace nova::testing
