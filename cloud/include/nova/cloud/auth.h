// Who may call nova-cloud's REST API: bearer tokens, stored hashed, each with a role and
// an optional subtree scope (docs/security.md, "The REST API").
//
// Tokens file (auth.tokens_file), one token a line; blank lines and lines starting with
// '#' are ignored; fields are separated by spaces:
//   <sha256 hex of the token> <name> <role> [<scope>]
//   9f86d081884c7d65...  ops-eu  operator  cloud/eu
// The token itself (64 hex digits of 32 random bytes) is shown once by
// `nova-cloud token create` and stored nowhere; its name is the actor in the audit log.
// Roles, each including the ones before it:
//   viewer    GET of every API route
//   operator  + workloads (submit, delete), placements (edge/optimize), configs and models (push)
//   admin     + cluster and federation writes, agent rollouts
// Scope: a site path ("cloud/eu"); the token sees only nodes, placements and workloads
// at or below it, and may submit only workloads confined to clusters at or below it.
// Errors name the line and the field: "line 3: role: expected viewer, operator or admin".
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nova/schemas/result.h"

namespace nova::cloud {

enum class Role { viewer = 0, operator_ = 1, admin = 2 };
std::string_view to_string(Role role);
std::optional<Role> parse_role(std::string_view name);

struct ApiToken {
  std::string hash;   // SHA-256 of the token, lower-case hex
  std::string name;   // who holds it (the audit log's actor)
  Role role = Role::viewer;
  std::string scope;  // site path; empty: the whole hierarchy
};

schemas::Result<std::vector<ApiToken>> parse_tokens(std::string_view text);

// True when `site_path` is `scope` or below it (an empty scope holds everything).
bool in_scope(std::string_view scope, std::string_view site_path);

// A new token and the line that stores its hash (what `nova-cloud token create` prints and
// appends). `scope` is checked as the file parser would.
struct NewToken {
  std::string token;
  std::string line;
};
schemas::Result<NewToken> create_token(const std::string& name, Role role, const std::string& scope);

// The tokens file, loaded at start and again on SIGHUP. Thread-safe.
class TokenStore {
 public:
  static schemas::Result<std::shared_ptr<TokenStore>> load(const std::filesystem::path& file);
  // Re-reads the file; an invalid file is refused and the tokens loaded before stay.
  schemas::Status reload();
  // The token's entry, or nothing when no line holds its hash.
  std::optional<ApiToken> find(std::string_view token) const;
  std::size_t size() const;

 private:
  explicit TokenStore(std::filesystem::path file) : file_(std::move(file)) {}
  std::filesystem::path file_;
  mutable std::mutex mutex_;
  std::vector<ApiToken> tokens_;
};

}  // namespace nova::cloud
