// What a task may run, with which environment and as whom: the agent's local policy,
// decided here so that the runner and its tests share one definition. Internal to the
// agent library; the rules are stated in nova/agent/tasks.h and docs/agent.md.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "nova/agent/tasks.h"
#include "nova/schemas/result.h"

namespace nova::agent::detail {

// The program an allowed task runs.
struct AllowedProgram {
  std::string exec_path;  // the resolved file execve() gets (no symlink left to swap)
  std::string argv0;      // the allow-list's spelling, given to the program as argv[0]
};

// A task refused by the policy: `rule` is for logs (no argv or env values), `reason`
// for the task's result.
struct PolicyRefusal {
  std::string rule;
  std::string reason;
};

// argv[0] resolved against the allow-list (see TaskRunnerOptions::allow).
std::variant<AllowedProgram, PolicyRefusal> allowed_program(const std::string& argv0,
                                                             const std::vector<std::string>& allow);

// The first variable of `env` a task may not set, as a refusal.
std::optional<PolicyRefusal> forbidden_env(const std::map<std::string, std::string>& env);

// Whom tasks run as (see TaskRunnerOptions::user); an error names tasks.user or
// tasks.allow_root and the reason.
schemas::Result<TaskUser> task_user(const std::string& user, bool allow_root);

}  // namespace nova::agent::detail
