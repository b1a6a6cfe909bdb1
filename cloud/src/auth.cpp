#include "nova/cloud/auth.h"

#include <fstream>
#include <sstream>

#include "nova/schemas/topic.h"
#include "nova/security/digest.h"

namespace nova::cloud {

using schemas::Error;

namespace {

constexpr std::string_view kRoleNames[] = {"viewer", "operator", "admin"};

bool is_hex_digest(std::string_view s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// A name is what the audit log and the logs print: no spaces, nothing to quote.
std::optional<std::string> check_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return "expected 1..64 characters";
  if (name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-@") !=
      std::string_view::npos) {
    return "'" + std::string(name) + "' holds a character other than letters, digits and ._-@";
  }
  return std::nullopt;
}

// A scope is a site path (topic grammar: 1..8 levels that are valid ids).
std::optional<std::string> check_scope(std::string_view scope) {
  auto path = topics::SitePath::parse(scope);
  if (!path) return "'" + std::string(scope) + "' is not a site path such as cloud/eu (" + path.error().message() + ")";
  return std::nullopt;
}

}  // namespace

std::string_view to_string(Role role) { return kRoleNames[static_cast<int>(role)]; }

std::optional<Role> parse_role(std::string_view name) {
  for (int i = 0; i < 3; ++i) {
    if (kRoleNames[i] == name) return static_cast<Role>(i);
  }
  return std::nullopt;
}

bool in_scope(std::string_view scope, std::string_view site_path) {
  if (scope.empty()) return true;
  return site_path == scope || (site_path.size() > scope.size() && site_path.substr(0, scope.size()) == scope &&
                                site_path[scope.size()] == '/');
}

schemas::Result<std::vector<ApiToken>> parse_tokens(std::string_view text) {
  std::vector<ApiToken> out;
  std::istringstream lines{std::string(text)};
  int number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++number;
    const std::string at = "line " + std::to_string(number) + ": ";
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string field; fields >> field;) f.push_back(field);
    if (f.empty() || f.front().front() == '#') continue;
    if (f.size() < 3 || f.size() > 4) return Error{"", at + "expected <sha256 hex> <name> <role> [<scope>]"};
    ApiToken t;
    if (!is_hex_digest(f[0])) return Error{"", at + "hash: expected 64 lower-case hex digits (SHA-256 of the token)"};
    t.hash = f[0];
    if (auto problem = check_name(f[1])) return Error{"", at + "name: " + *problem};
    t.name = f[1];
    const auto role = parse_role(f[2]);
    if (!role) return Error{"", at + "role: expected viewer, operator or admin"};
    t.role = *role;
    if (f.size() == 4) {
      if (auto problem = check_scope(f[3])) return Error{"", at + "scope: " + *problem};
      t.scope = f[3];
    }
    for (const auto& other : out) {
      if (other.hash == t.hash) return Error{"", at + "hash: the same token is listed twice"};
    }
    out.push_back(std::move(t));
  }
  return out;
}

schemas::Result<NewToken> create_token(const std::string& name, Role role, const std::string& scope) {
  if (auto problem = check_name(name)) return Error{"--name", *problem};
  if (!scope.empty()) {
    if (auto problem = check_scope(scope)) return Error{"--scope", *problem};
  }
  NewToken t;
  t.token = security::random_hex(32);
  t.line = security::sha256_hex(t.token) + " " + name + " " + std::string(to_string(role)) +
           (scope.empty() ? "" : " " + scope);
  return t;
}

schemas::Result<std::shared_ptr<TokenStore>> TokenStore::load(const std::filesystem::path& file) {
  std::shared_ptr<TokenStore> store(new TokenStore(file));
  if (auto st = store->reload(); !st) return st.error();
  return store;
}

schemas::Status TokenStore::reload() {
  std::ifstream in(file_);
  if (!in) return Error{"auth.tokens_file", "cannot read " + file_.string()};
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = parse_tokens(text.str());
  if (!parsed) return Error{"auth.tokens_file", file_.string() + ": " + parsed.error().message()};
  std::lock_guard lock(mutex_);
  tokens_ = std::move(parsed).value();
  return schemas::Ok{};
}

std::optional<ApiToken> TokenStore::find(std::string_view token) const {
  const std::string hash = security::sha256_hex(token);
  std::lock_guard lock(mutex_);
  for (const auto& t : tokens_) {
    if (security::constant_time_equal(t.hash, hash)) return t;
  }
  return std::nullopt;
}

std::size_t TokenStore::size() const {
  std::lock_guard lock(mutex_);
  return tokens_.size();
}

}  // namespace nova::cloud
