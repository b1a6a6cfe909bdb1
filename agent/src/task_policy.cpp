#include "task_policy.h"

#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>

namespace nova::agent {

namespace {

// Variables that decide what a program loads, where it looks for code or how a shell
// starts: a task that may set them can run code the allow-list never named. The
// runner's own variables are here too, so a task cannot redirect HOME or PATH.
constexpr std::string_view kForbiddenNames[] = {
    "PATH", "HOME", "TMPDIR", "USER", "LOGNAME", "SHELL", "NOVA_TASK_ID",
    // glibc: the variables it drops for set-user-ID programs (unsecvars) and kin
    "GCONV_PATH", "GETCONF_DIR", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH", "NIS_PATH",
    "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TZDIR", "GLIBC_TUNABLES",
    // shells
    "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "CDPATH", "GLOBIGNORE",
    "PROMPT_COMMAND",
    // interpreters and runtimes
    "PERL5LIB", "PERL5OPT", "PERLLIB", "PERL5DB", "RUBYLIB", "RUBYOPT", "NODE_OPTIONS",
    "NODE_PATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH",
    "LUA_PATH", "LUA_CPATH", "LUA_INIT", "TCLLIBPATH",
    // libraries that load modules or configuration named by the environment
    "OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES", "SSL_CERT_FILE"};

// Whole families: the dynamic loader's, Python's, malloc tuning, exported bash
// functions, the macOS loader's (for agents built elsewhere).
constexpr std::string_view kForbiddenPrefixes[] = {"LD_", "PYTHON", "MALLOC_", "BASH_FUNC_", "DYLD_", "LUA_INIT_"};

bool valid_name(const std::string& name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (const char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

// realpath(3): every symlink and "." / ".." resolved; nullopt with errno when it fails.
std::optional<std::string> resolved(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return std::nullopt;
  return std::string(buf);
}

}  // namespace

std::optional<std::string> forbidden_env_reason(const std::string& name) {
  if (!valid_name(name)) return "is not a variable name ([A-Za-z_][A-Za-z0-9_]*)";
  for (std::string_view f : kForbiddenNames) {
    if (name == f) return "may not be set by a task: the agent sets it, or it changes what programs load";
  }
  for (std::string_view p : kForbiddenPrefixes) {
    if (name.starts_with(p)) {
      return "may not be set by a task: " + std::string(p) + "* variables change what programs load";
    }
  }
  return std::nullopt;
}

namespace detail {

std::variant<AllowedProgram, PolicyRefusal> allowed_program(const std::string& argv0,
                                                             const std::vector<std::string>& allow) {
  const std::string not_allowed = "program_not_allowed";
  if (allow.empty()) {
    return PolicyRefusal{not_allowed, "this agent runs no programs: its tasks.allow list is empty"};
  }
  if (argv0.empty() || argv0.find('\0') != std::string::npos) {
    return PolicyRefusal{not_allowed, "argv[0] is empty or contains a NUL byte"};
  }
  if (argv0.find('/') == std::string::npos) {
    // A bare name: the allow-list entry of that file name, never a PATH search.
    for (const std::string& entry : allow) {
      if (std::filesystem::path(entry).filename() != argv0) continue;
      auto real = resolved(entry);
      if (!real) {
        return PolicyRefusal{"program_missing", "argv[0] '" + argv0 + "' is tasks.allow's " + entry +
                                                    ", which cannot be resolved: " + std::strerror(errno)};
      }
      return AllowedProgram{*real, entry};
    }
    return PolicyRefusal{not_allowed, "argv[0] '" + argv0 + "' is not the name of a program in tasks.allow"};
  }
  if (argv0.front() != '/') {
    return PolicyRefusal{not_allowed, "argv[0] '" + argv0 +
                                          "' is a relative path: name an allowed program by its "
                                          "absolute path or its bare name"};
  }
  const auto real = resolved(argv0);
  if (!real) {
    return PolicyRefusal{not_allowed, "argv[0] '" + argv0 + "' cannot be resolved (" + std::strerror(errno) +
                                          "), so it is not a program in tasks.allow"};
  }
  for (const std::string& entry : allow) {
    if (resolved(entry) == real) return AllowedProgram{*real, entry};
  }
  return PolicyRefusal{not_allowed, "argv[0] '" + argv0 + "' resolves to " + *real +
                                        ", which is not a program in tasks.allow"};
}

std::optional<PolicyRefusal> forbidden_env(const std::map<std::string, std::string>& env) {
  for (const auto& [name, value] : env) {
    if (auto why = forbidden_env_reason(name)) return PolicyRefusal{"env_forbidden", "env." + name + ": " + *why};
  }
  return std::nullopt;
}

schemas::Result<TaskUser> task_user(const std::string& user, bool allow_root) {
  const uid_t self = ::geteuid();
  TaskUser u;
  u.uid = self;
  u.gid = ::getegid();
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (self != 0) {
    if (::getpwuid_r(self, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) u.name = pw.pw_name;
    if (u.name.empty()) u.name = std::to_string(self);
    u.detail = "the agent runs as uid " + std::to_string(self) + ", not root, so tasks run as it (" + u.name +
               "); tasks.user applies only to an agent running as root";
    return u;
  }
  const int err = ::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
  if (err != 0 || found == nullptr) {
    return schemas::Error{"tasks.user", "no user '" + user + "' on this host" +
                                            (err != 0 ? std::string(": ") + std::strerror(err) : "")};
  }
  u.name = pw.pw_name;
  u.uid = pw.pw_uid;
  u.gid = pw.pw_gid;
  u.root = pw.pw_uid == 0;
  if (u.root && !allow_root) {
    return schemas::Error{"tasks.user", "'" + user + "' has uid 0: tasks run as root only with tasks.allow_root: true"};
  }
  u.switched = !u.root;
  u.detail = u.root ? "tasks run as root (tasks.allow_root: true)"
                    : "tasks run as " + u.name + " (uid " + std::to_string(u.uid) + ", gid " + std::to_string(u.gid) + ")";
  return u;
}

}  // namespace detail
}  // namespace nova::agent
