#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <set>
#include <tuple>
#include <unordered_set>

#include "nova/agent/service_supervisor.h"
#include "nova/agent/tasks.h"
#include "nova/schemas/topic.h"
#include "task_policy.h"
#include "task_process.h"
#include "task_store.h"

namespace nova::agent {
namespace {

namespace fs = std::filesystem;
using detail::StoredTask;
using schemas::Error;

constexpr std::size_t kMaxOutputBytes = 4096;  // the schema's bound on output and reason
constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr const char* kRestartReason = "agent restarted while the task ran";
constexpr Timestamp kNever = ~Timestamp{0};  // a service's deadline: it runs until cancelled

std::string pct(double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f%%", value);
  return buf;
}

std::string num(double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", value);
  return buf;
}

// A reason is non-empty, valid UTF-8 (our parts are ASCII; argv and env come from
// validated text) and at most 4096 bytes: keep its beginning.
std::string clamp_reason(std::string reason) {
  if (reason.size() <= kMaxOutputBytes) return reason;
  std::size_t cut = kMaxOutputBytes - 3;
  while (cut > 0 && (static_cast<std::uint8_t>(reason[cut]) & 0xc0u) == 0x80u) --cut;
  reason.resize(cut);
  return reason + "...";
}

struct Running {
  StoredTask record;
  detail::Child child;
  std::string tail;  // last output_tail_bytes of stdout+stderr
  fs::path cgroup;   // empty: none
  fs::path scratch;  // the task's private HOME/TMPDIR; empty: none
  bool rlimit_as = false;  // memory_mb enforced with RLIMIT_AS
  std::string cpu_note;    // why cpu_millis is not enforced, if it is not
  Timestamp deadline = 0;
  std::optional<Timestamp> term_sent;
  bool kill_sent = false;
  std::optional<std::string> cancelled;  // cancel()'s reason: SIGTERM was its doing
  std::optional<ServiceSupervisor> service;  // a service's restart and health state
  detail::Child probe;                       // its health check while one runs (pid -1: none)
  Timestamp probe_deadline = 0;
  bool health_kill = false;  // SIGTERM was the health checks' doing
};

// A service between an exit and its restart: no process, its record still "running".
struct Waiting {
  StoredTask record;
  ServiceSupervisor service;
};

// How a child ended: its wait status (-1: lost) and whether the OOM killer took it.
struct Exit {
  int status = -1;
  bool oom = false;
};

std::int64_t exit_code_of(int status) {
  if (status != -1 && WIFEXITED(status)) return WEXITSTATUS(status);
  if (status != -1 && WIFSIGNALED(status)) return -static_cast<std::int64_t>(WTERMSIG(status));
  return -1;
}

struct Queued {
  StoredTask record;
  std::string deferred_reason;
};

}  // namespace

struct TaskRunner::Impl {
  TaskRunnerOptions options;
  TaskResultSink sink;
  std::unique_ptr<detail::TaskStore> store;
  detail::Cgroups cgroups;
  TaskUser user;
  std::uint64_t total_memory_mb = 0;
  std::uint32_t cores = 1;
  std::size_t tail_bytes = kMaxOutputBytes;

  std::map<std::string, Queued> queued;
  std::set<std::tuple<std::uint8_t, std::uint64_t, std::string>> order;  // priority, seq, id
  std::map<std::string, Running> running;
  std::map<std::string, Waiting> restarting;  // services waiting out their back-off
  std::deque<StoredTask> pending;  // finished, not yet handed to the sink
  std::unordered_set<std::string> pending_ids;
  std::deque<std::pair<std::uint64_t, std::string>> ring;  // finished ids, oldest first
  std::unordered_set<std::string> ring_ids;
  std::uint64_t next_seq = 1;
  std::uint64_t next_ring = 1;
  std::vector<fs::path> cgroup_leftovers;  // to rmdir once their processes are gone
  TaskCounters counters;
  bool dirty = false;           // poll() has work regardless of time
  bool limits_changed = false;  // re-check queued tasks for "can never fit"

  ~Impl() {
    // Records stay "running": the next open reports these tasks as restarted.
    for (auto& [id, r] : running) {
      stop_probe(r);
      ::kill(-r.child.pid, SIGKILL);
      if (!r.cgroup.empty()) cgroups.kill_all(r.cgroup);
      detail::reap(r.child.pid);
      close_fds(r);
      if (!r.cgroup.empty()) cgroups.remove(r.cgroup);
      remove_scratch(r.scratch);
    }
  }

  // ---- policy -------------------------------------------------------------------------

  // The program the task may run, or why the local policy refuses it.
  std::variant<detail::AllowedProgram, detail::PolicyRefusal> authorize(const Task& t) const {
    if (auto refusal = detail::forbidden_env(t.env)) return *refusal;
    return detail::allowed_program(t.argv.front(), options.allow);
  }

  // Counts and logs a refusal: the task id and the rule, never argv or env values.
  void note_refusal(const Task& t, const detail::PolicyRefusal& refusal) {
    counters.refused_by_policy += 1;
    if (options.log) options.log("warning", "task_refused", "task_id=" + t.task_id + " rule=" + refusal.rule);
  }

  // A private directory owned by the task's user: its HOME, TMPDIR and (by default) cwd.
  std::optional<fs::path> make_scratch(const std::string& task_id, std::string& why) const {
    std::error_code ec;
    fs::path root = options.scratch_root;
    if (root.empty()) root = fs::temp_directory_path(ec);
    if (root.empty()) root = "/tmp";  // TMPDIR names no directory
    std::string templ = (root / ("nova-task-" + task_id + "-XXXXXX")).string();
    if (::mkdtemp(templ.data()) == nullptr) {
      why = "cannot create the task's directory under " + root.string() + ": " + std::strerror(errno);
      return std::nullopt;
    }
    if (user.switched && ::chown(templ.c_str(), user.uid, user.gid) != 0) {
      why = "cannot give the task's directory " + templ + " to " + user.name + ": " + std::strerror(errno);
      ::rmdir(templ.c_str());
      return std::nullopt;
    }
    return fs::path(templ);
  }

  static void remove_scratch(const fs::path& dir) {
    if (dir.empty()) return;
    std::error_code ec;
    fs::remove_all(dir, ec);  // removes symlinks the task left, never what they point to
  }

  static void close_fds(Running& r) {
    if (r.child.output_fd >= 0) ::close(r.child.output_fd);
    if (r.child.pidfd >= 0) ::close(r.child.pidfd);
    r.child.output_fd = r.child.pidfd = -1;
  }

  void persist(const StoredTask& record) {
    if (!store->put(record)) counters.storage_errors += 1;
  }

  // ---- admission --------------------------------------------------------------------

  std::uint64_t memory_budget_mb() const {
    const AdmissionLimits& l = options.limits;
    const auto by_pct = static_cast<std::uint64_t>(static_cast<double>(total_memory_mb) * l.max_memory_pct / 100);
    const std::uint64_t by_free = total_memory_mb > l.min_free_memory_mb ? total_memory_mb - l.min_free_memory_mb : 0;
    return std::min(by_pct, by_free);
  }

  double cpu_pct_of(std::uint64_t cpu_millis) const {
    return static_cast<double>(cpu_millis) / (static_cast<double>(cores) * 10.0);
  }

  // Why the task could not run here even on an idle host, if so.
  std::optional<std::string> never_fits(const Task& t) const {
    const AdmissionLimits& l = options.limits;
    if (t.memory_mb > memory_budget_mb()) {
      return "memory_mb " + std::to_string(t.memory_mb) + " can never fit: the host has " +
             std::to_string(total_memory_mb) + " MB and the limits (max_memory_pct " +
             num(l.max_memory_pct) + ", min_free_memory_mb " + std::to_string(l.min_free_memory_mb) +
             ") leave at most " + std::to_string(memory_budget_mb()) + " MB to tasks";
    }
    if (t.cpu_millis > 0 && cpu_pct_of(t.cpu_millis) > l.max_cpu_pct) {
      return "cpu_millis " + std::to_string(t.cpu_millis) + " can never fit: " + std::to_string(cores) +
             " cores at max_cpu_pct " + num(l.max_cpu_pct) + " allow at most " +
             num(static_cast<double>(cores) * 10.0 * l.max_cpu_pct) + " millis";
    }
    return std::nullopt;
  }

  // Why the task must wait, given the host snapshot plus what this poll already started.
  std::optional<std::string> defer_reason(const Task& t, const HostState& host, double committed_cpu_pct,
                                          std::uint64_t committed_mb) const {
    const AdmissionLimits& l = options.limits;
    // Deferred while use is *above* a limit (docs/agent.md), so a limit of 100 % never
    // defers on the host's use alone: a fully busy host still runs a task asking for none.
    if (host.disk_pct > l.max_disk_pct) {
      return "disk at " + pct(host.disk_pct) + ", limit " + pct(l.max_disk_pct);
    }
    const double cpu_now = host.cpu_pct + committed_cpu_pct;
    const double cpu_add = cpu_pct_of(t.cpu_millis);
    if (cpu_now > l.max_cpu_pct || (cpu_add > 0 && cpu_now + cpu_add > l.max_cpu_pct)) {
      std::string why = "cpu at " + pct(cpu_now);
      if (cpu_add > 0) why += " + " + pct(cpu_add) + " for cpu_millis " + std::to_string(t.cpu_millis);
      return why + ", limit " + pct(l.max_cpu_pct);
    }
    const double total = static_cast<double>(std::max<std::uint64_t>(total_memory_mb, 1));
    const double mem_now = host.memory_pct + static_cast<double>(committed_mb) * 100 / total;
    const double mem_add = static_cast<double>(t.memory_mb) * 100 / total;
    if (mem_now > l.max_memory_pct || (mem_add > 0 && mem_now + mem_add > l.max_memory_pct)) {
      std::string why = "memory at " + pct(mem_now);
      if (mem_add > 0) why += " + " + pct(mem_add) + " for memory_mb " + std::to_string(t.memory_mb);
      return why + ", limit " + pct(l.max_memory_pct);
    }
    const std::uint64_t needed = committed_mb + t.memory_mb + l.min_free_memory_mb;
    if (host.free_memory_mb < needed) {
      std::string why = "free memory " + std::to_string(host.free_memory_mb) + " MB";
      if (committed_mb + t.memory_mb > 0) {
        why += " - " + std::to_string(committed_mb + t.memory_mb) + " MB for this and just started tasks";
      }
      return why + " would fall below min_free_memory_mb " + std::to_string(l.min_free_memory_mb);
    }
    return std::nullopt;
  }

  // ---- finishing ----------------------------------------------------------------------

  void count(TaskStatus status) {
    switch (status) {
      case TaskStatus::ok: counters.completed += 1; break;
      case TaskStatus::failed: counters.failed += 1; break;
      case TaskStatus::timeout: counters.timed_out += 1; break;
      case TaskStatus::killed: counters.killed += 1; break;
      case TaskStatus::refused: counters.refused += 1; break;
      case TaskStatus::cancelled: counters.cancelled += 1; break;
      case TaskStatus::running: break;  // a service's report, never a finished result
    }
  }

  // Persists the result in place of the task's record and queues it for the sink.
  void finish(StoredTask record, TaskResult result) {
    if (result.reason) result.reason = clamp_reason(*result.reason);
    record.state = StoredTask::State::finished;
    record.result = std::move(result);
    persist(record);
    enqueue_result(std::move(record));
  }

  void enqueue_result(StoredTask record) {
    count(record.result.status);
    pending_ids.insert(record.task.task_id);
    pending.push_back(std::move(record));
    dirty = true;
  }

  void finish_unstarted(StoredTask record, TaskStatus status, std::string reason) {
    TaskResult r;
    r.task_id = record.task.task_id;
    r.status = status;
    r.reason = std::move(reason);
    finish(std::move(record), std::move(r));
  }

  void deliver(Timestamp now) {
    while (!pending.empty()) {
      StoredTask record = std::move(pending.front());
      pending.pop_front();
      if (record.result.finished_ts == 0) record.result.finished_ts = now;
      sink(record.result);
      // Only now is the record dropped: a crash before this line hands it over again.
      std::vector<std::uint64_t> evict;
      while (!ring.empty() && ring.size() >= std::max<std::size_t>(options.remembered_finished, 1)) {
        evict.push_back(ring.front().first);
        ring_ids.erase(ring.front().second);
        ring.pop_front();
      }
      const std::string& id = record.task.task_id;
      if (!store->retire(id, next_ring, evict)) counters.storage_errors += 1;
      ring.emplace_back(next_ring++, id);
      ring_ids.insert(id);
      pending_ids.erase(id);
    }
  }

  // ---- running ------------------------------------------------------------------------

  void drain_output(Running& r) {
    char buf[16384];
    while (r.child.output_fd >= 0) {
      const ssize_t n = ::read(r.child.output_fd, buf, sizeof buf);
      if (n > 0) {
        const auto got = static_cast<std::size_t>(n);
        const std::size_t keep = std::min(got, tail_bytes);
        r.tail.append(buf + (got - keep), keep);
        if (r.tail.size() > tail_bytes) r.tail.erase(0, r.tail.size() - tail_bytes);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      ::close(r.child.output_fd);  // EOF (or a broken pipe): nothing more will come
      r.child.output_fd = -1;
    }
  }

  void terminate(Running& r, Timestamp now) {
    ::kill(-r.child.pid, SIGTERM);
    ::kill(-r.child.pid, SIGCONT);  // a task paused by a rule must wake to see it
    r.term_sent = now;
    dirty = true;
  }

  void enforce_timeout(Running& r, Timestamp now) {
    if (!r.term_sent && now >= r.deadline) terminate(r, now);
    if (r.term_sent && !r.kill_sent && now >= *r.term_sent + options.kill_grace_ms) {
      ::kill(-r.child.pid, SIGKILL);
      if (!r.cgroup.empty()) cgroups.kill_all(r.cgroup);
      r.kill_sent = true;
    }
  }

  // Reaps an exited child and cleans up after it (group, cgroup, scratch, health check).
  Exit collect(Running& r) {
    const Task& t = r.record.task;
    stop_probe(r);
    // The leader is a zombie until reaped, so its pid cannot have been reused as a
    // process group id: whatever is left of the group (or the cgroup) is the task's.
    ::kill(-r.child.pid, SIGKILL);
    if (!r.cgroup.empty()) cgroups.kill_all(r.cgroup);
    drain_output(r);
    Exit e;
    e.status = detail::reap(r.child.pid);
    close_fds(r);
    e.oom = !r.cgroup.empty() && t.memory_mb > 0 && cgroups.support().cgroup_memory && cgroups.oom_kills(r.cgroup) > 0;
    if (!r.cgroup.empty() && !cgroups.remove(r.cgroup)) cgroup_leftovers.push_back(r.cgroup);
    remove_scratch(r.scratch);
    return e;
  }

  void complete(Running& r, const Exit& e, Timestamp now) {
    const Task& t = r.record.task;
    const int status = e.status;
    const bool oom = e.oom;
    TaskResult res;
    res.task_id = t.task_id;
    res.started_ts = r.record.started_ts;
    res.finished_ts = now;
    res.output = detail::utf8_tail(r.tail, tail_bytes);
    const std::string rlimit_note =
        r.rlimit_as ? "; memory was limited to " + std::to_string(t.memory_mb) +
                          " MB of address space (RLIMIT_AS), so a failed allocation may be the cause"
                    : "";
    std::string reason;
    if (status == -1) {
      res.status = TaskStatus::failed;
      reason = "exit status lost: the child was reaped outside the runner (SIGCHLD must not be ignored)";
    } else {
      if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) res.exit_code = -static_cast<std::int64_t>(WTERMSIG(status));
      if (r.cancelled) {
        res.status = TaskStatus::cancelled;
        reason = "cancelled: " + *r.cancelled + ": SIGTERM sent to its process group";
        if (r.kill_sent) reason += ", SIGKILL after " + std::to_string(options.kill_grace_ms) + " ms";
      } else if (r.health_kill) {
        res.status = TaskStatus::failed;
        reason = "unhealthy: " + std::to_string(r.service->health()->failure_threshold) +
                 " health checks failed in a row: SIGTERM sent to its process group";
        if (r.kill_sent) reason += ", SIGKILL after " + std::to_string(options.kill_grace_ms) + " ms";
      } else if (r.term_sent) {
        res.status = TaskStatus::timeout;
        reason = "timed out after " + std::to_string(t.timeout_ms) + " ms: SIGTERM sent to its process group";
        if (r.kill_sent) reason += ", SIGKILL after " + std::to_string(options.kill_grace_ms) + " ms";
      } else if (oom) {
        res.status = TaskStatus::killed;
        reason = "killed by the OOM killer: memory limit of " + std::to_string(t.memory_mb) +
                 " MB exceeded (cgroup memory.max)";
      } else if (WIFSIGNALED(status)) {
        res.status = TaskStatus::killed;
        reason = "killed by " + detail::signal_name(WTERMSIG(status)) + rlimit_note;
      } else if (WEXITSTATUS(status) != 0) {
        res.status = TaskStatus::failed;
        reason = "exited with code " + std::to_string(WEXITSTATUS(status)) + rlimit_note;
      } else {
        res.status = TaskStatus::ok;
      }
    }
    if (!r.cpu_note.empty()) reason += (reason.empty() ? "" : "; ") + r.cpu_note;
    if (!reason.empty()) res.reason = std::move(reason);
    if (r.service) res.service = r.service->status();
    finish(std::move(r.record), std::move(res));
  }

  // ---- services -----------------------------------------------------------------------

  // A service's state, upward at once (status running: not the end of its run).
  void report(const StoredTask& record, const ServiceSupervisor& service, Timestamp now, const std::string& tail,
              std::optional<std::string> reason = std::nullopt) {
    TaskResult res;
    res.task_id = record.task.task_id;
    res.status = TaskStatus::running;
    res.started_ts = record.started_ts;
    res.finished_ts = now;
    res.output = detail::utf8_tail(tail, tail_bytes);
    if (reason) res.reason = clamp_reason(*reason);
    res.service = service.status();
    sink(res);
  }

  // A service exited by itself (or on its health checks' verdict): waits for its restart
  // unless the restart policy ends it. True when it waits.
  bool schedule_restart(Running& r, const Exit& e, Timestamp now) {
    const std::int64_t code = exit_code_of(e.status);
    const auto at = r.service->exited(now, code, r.health_kill);
    if (!at) return false;
    const std::string id = r.record.task.task_id;  // a copy: the record moves below
    const std::string why = (r.health_kill ? "killed after failed health checks, exit " : "exited with ") +
                            std::to_string(code) + "; restart in " + std::to_string(*at - now) + " ms";
    if (options.log) {
      options.log("warning", "service_exited", "task_id=" + id + " exit=" + std::to_string(code) + " restarts=" +
                                                   std::to_string(r.service->restarts()) + " restart_in_ms=" +
                                                   std::to_string(*at - now));
    }
    report(r.record, *r.service, now, r.tail, why);
    restarting.emplace(id, Waiting{std::move(r.record), std::move(*r.service)});
    dirty = true;
    return true;
  }

  void restart(Waiting w, Timestamp now) {
    counters.service_restarts += 1;
    start(Queued{std::move(w.record), {}}, now, std::move(w.service));
  }

  void stop_probe(Running& r) {
    if (r.probe.pid <= 0) return;
    ::kill(-r.probe.pid, SIGKILL);
    detail::reap(r.probe.pid);
    close_child(r.probe);
  }

  static void close_child(detail::Child& c) {
    if (c.output_fd >= 0) ::close(c.output_fd);
    if (c.pidfd >= 0) ::close(c.pidfd);
    c = detail::Child{};
  }

  // Starts the service's health check: its command under the same allow-list, user,
  // environment and directory as the service, in its own process group.
  void start_probe(Running& r, Timestamp now) {
    const HealthCheck& h = *r.service->health();
    r.service->check_started(now);
    auto program = detail::allowed_program(h.command.front(), options.allow);
    if (const auto* refusal = std::get_if<detail::PolicyRefusal>(&program)) {
      return check_verdict(r, false, now, "not allowed: " + refusal->reason);
    }
    detail::SpawnRequest req;
    req.program = std::get<detail::AllowedProgram>(program).exec_path;
    req.argv = h.command;
    req.argv.front() = std::get<detail::AllowedProgram>(program).argv0;
    req.env = options.base_env;
    req.env["NOVA_TASK_ID"] = r.record.task.task_id;
    req.env["HOME"] = req.env["TMPDIR"] = r.scratch.string();
    req.env["USER"] = req.env["LOGNAME"] = user.name;
    req.work_dir = options.work_dir.empty() ? r.scratch : options.work_dir;
    req.switch_user = user.switched;
    req.uid = user.uid;
    req.gid = user.gid;
    auto child = detail::spawn(req);
    if (!child) return check_verdict(r, false, now, "cannot start: " + child.error().reason);
    r.probe = child.value();
    r.probe_deadline = now + static_cast<Timestamp>(h.timeout_s) * 1000;
  }

  void tend_health(Running& r, Timestamp now) {
    if (!r.service || !r.service->health()) return;
    if (r.probe.pid > 0) {
      char buf[4096];  // its output is not kept: only its exit code counts
      while (r.probe.output_fd >= 0 && ::read(r.probe.output_fd, buf, sizeof buf) > 0) {
      }
      if (detail::has_exited(r.probe.pid)) {
        const int status = detail::reap(r.probe.pid);
        close_child(r.probe);
        const bool passed = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        check_verdict(r, passed, now, "exit " + std::to_string(exit_code_of(status)));
      } else if (now >= r.probe_deadline) {
        stop_probe(r);
        check_verdict(r, false, now, "timed out after " + std::to_string(r.service->health()->timeout_s) + " s");
      }
      return;
    }
    if (r.term_sent) return;
    if (const auto due = r.service->check_due(); due && now >= *due) start_probe(r, now);
  }

  void check_verdict(Running& r, bool passed, Timestamp now, const std::string& detail) {
    const ServiceState before = r.service->status().state;
    const auto verdict = r.service->check_finished(now, passed);
    const std::string& id = r.record.task.task_id;
    if (!passed) {
      counters.health_check_failures += 1;
      if (options.log) {
        options.log("warning", "health_check_failed", "task_id=" + id + " failures=" +
                                                          std::to_string(r.service->status().health_failures) +
                                                          " detail=\"" + detail + "\"");
      }
    }
    if (verdict == ServiceSupervisor::Verdict::restart && !r.term_sent) {
      counters.health_kills += 1;
      r.health_kill = true;
      terminate(r, now);
    }
    if (r.service->status().state != before) {
      report(r.record, *r.service, now, r.tail, passed ? std::nullopt : std::optional<std::string>("health check: " + detail));
    }
  }

  // Starts a queued task. False when a storage failure means nothing more should start.
  // A service's supervisor comes along when it restarts; a first start makes one.
  bool start(Queued q, Timestamp now, std::optional<ServiceSupervisor> service = std::nullopt) {
    StoredTask record = std::move(q.record);
    const Task& t = record.task;
    // Again at start: a task queued before a restart meets today's policy.
    auto authorized = authorize(t);
    if (const auto* refusal = std::get_if<detail::PolicyRefusal>(&authorized)) {
      note_refusal(t, *refusal);
      finish_unstarted(std::move(record), TaskStatus::refused, refusal->reason);
      return true;
    }
    const auto& program = std::get<detail::AllowedProgram>(authorized);
    if (auto why = detail::not_executable(program.exec_path)) {
      finish_unstarted(std::move(record), TaskStatus::failed, *why);
      return true;
    }
    std::string scratch_why;
    const auto scratch = make_scratch(t.task_id, scratch_why);
    if (!scratch) {
      finish_unstarted(std::move(record), TaskStatus::failed, scratch_why);
      return true;
    }
    std::map<std::string, std::string> env = options.base_env;
    for (const auto& [k, v] : t.env) env[k] = v;  // none of the names below (authorize)
    env["NOVA_TASK_ID"] = t.task_id;
    env["HOME"] = env["TMPDIR"] = scratch->string();
    env["USER"] = env["LOGNAME"] = user.name;

    Running r;
    r.scratch = *scratch;
    const LimitSupport& support = cgroups.support();
    std::string cgroup_why;
    r.cgroup = cgroups.create(t.task_id, t.memory_mb, t.cpu_millis, cgroup_why);
    const bool in_cgroup = !r.cgroup.empty();
    r.rlimit_as = t.memory_mb > 0 && !(in_cgroup && support.cgroup_memory);
    if (t.cpu_millis > 0 && !(in_cgroup && support.cgroup_cpu)) {
      r.cpu_note = "cpu_millis " + std::to_string(t.cpu_millis) + " not enforced: " +
                   (cgroup_why.empty() ? "no cgroup v2 cpu controller (" + support.detail + ")" : cgroup_why);
    }

    // "running" is durable before the process exists: a crash from here on reports the
    // task as restarted instead of running it a second time.
    record.state = StoredTask::State::running;
    record.started_ts = now;
    if (auto st = store->put(record); !st) {
      counters.storage_errors += 1;
      if (in_cgroup) cgroups.remove(r.cgroup);
      remove_scratch(r.scratch);
      record.state = StoredTask::State::queued;
      record.started_ts = 0;
      q.record = std::move(record);
      q.deferred_reason = "cannot persist the task's start: " + st.error().reason;
      requeue(std::move(q));
      return false;
    }

    detail::SpawnRequest req;
    req.program = program.exec_path;
    req.argv = t.argv;
    req.argv.front() = program.argv0;
    req.env = std::move(env);
    req.work_dir = options.work_dir.empty() ? r.scratch : options.work_dir;
    req.switch_user = user.switched;
    req.uid = user.uid;
    req.gid = user.gid;
    req.rlimit_as_bytes = r.rlimit_as ? t.memory_mb * kMiB : 0;
    req.cgroup = r.cgroup;
    auto child = detail::spawn(req);
    if (!child) {
      if (in_cgroup) cgroups.remove(r.cgroup);
      remove_scratch(r.scratch);
      finish_unstarted(std::move(record), TaskStatus::failed, child.error().reason);
      return true;
    }
    r.child = child.value();
    r.deadline = t.service ? kNever : now + t.timeout_ms;
    if (t.service) {
      if (!service) service.emplace(t.service->restart, t.service->health);
      r.service = std::move(service);
      r.service->started(now);
    }
    r.record = std::move(record);
    const std::string id = r.record.task.task_id;
    auto& placed = running.emplace(id, std::move(r)).first->second;
    if (placed.service) report(placed.record, *placed.service, now, "");
    return true;
  }

  void requeue(Queued q) {
    const Task& t = q.record.task;
    order.emplace(t.priority, q.record.seq, t.task_id);
    queued.emplace(t.task_id, std::move(q));
  }

  Queued unqueue(const std::tuple<std::uint8_t, std::uint64_t, std::string>& key) {
    order.erase(key);
    auto node = queued.extract(std::get<2>(key));
    return std::move(node.mapped());
  }
};

TaskRunner::TaskRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TaskRunner::~TaskRunner() = default;

Result<std::unique_ptr<TaskRunner>> TaskRunner::open(const TaskRunnerOptions& options, TaskResultSink sink) {
  if (!sink) return Error{"", "task runner: a result sink is required"};
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->sink = std::move(sink);
  impl->tail_bytes = std::min(options.output_tail_bytes, kMaxOutputBytes);
  impl->total_memory_mb = options.total_memory_mb;
  if (impl->total_memory_mb == 0) {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page = ::sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) {
      impl->total_memory_mb = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) / kMiB;
    }
  }
  impl->cores = options.cpu_cores;
  if (impl->cores == 0) impl->cores = static_cast<std::uint32_t>(std::max(::sysconf(_SC_NPROCESSORS_ONLN), 1L));

  auto user = detail::task_user(options.user, options.allow_root);
  if (!user) return user.error();
  impl->user = std::move(user).value();

  auto store = detail::TaskStore::open(options);
  if (!store) return store.error();
  impl->store = std::move(store).value();
  auto contents = impl->store->load();
  if (!contents) return contents.error();
  impl->counters.corrupt_records = contents->corrupt;

  impl->cgroups.init(options.cgroup_root);
  impl->cgroup_leftovers = impl->cgroups.remove_stale();

  for (auto& [seq, id] : contents.value().finished) {
    impl->ring_ids.insert(id);
    impl->ring.emplace_back(seq, std::move(id));
  }
  if (!impl->ring.empty()) impl->next_ring = impl->ring.back().first + 1;
  for (StoredTask& record : contents.value().tasks) {
    impl->next_seq = std::max(impl->next_seq, record.seq + 1);
    switch (record.state) {
      case StoredTask::State::queued:
        impl->requeue(Queued{std::move(record), {}});
        break;
      case StoredTask::State::running: {
        if (record.task.service) {  // a service runs until cancelled: start it again
          if (options.log) options.log("info", "service_resumed", "task_id=" + record.task.task_id);
          impl->requeue(Queued{std::move(record), {}});
          break;
        }
        // The process died with the agent (PR_SET_PDEATHSIG) or was killed by the
        // runner's destructor; its outcome is unknown. See the header: never rerun.
        TaskResult r;
        r.task_id = record.task.task_id;
        r.status = TaskStatus::failed;
        r.started_ts = record.started_ts;
        r.reason = kRestartReason;
        impl->finish(std::move(record), std::move(r));
        break;
      }
      case StoredTask::State::finished:
        impl->pending_ids.insert(record.task.task_id);
        impl->pending.push_back(std::move(record));
        break;
    }
  }
  impl->dirty = !impl->pending.empty() || !impl->queued.empty();
  return std::unique_ptr<TaskRunner>(new TaskRunner(std::move(impl)));
}

Result<Admission> TaskRunner::submit(const Task& task) {
  Impl& d = *impl_;
  if (!topics::Id::valid(task.task_id)) return Error{"task.task_id", "not a valid id"};
  if (task.argv.empty()) return Error{"task.argv", "must hold at least the program"};
  if (task.timeout_ms == 0) return Error{"task.timeout_ms", "must be at least 1"};
  if (task.priority > 9) return Error{"task.priority", "must be 0..9"};

  const std::string& id = task.task_id;
  const char* known = d.queued.contains(id)      ? "queued"
                      : d.running.contains(id)   ? "running"
                      : d.restarting.contains(id) ? "waiting to restart"
                      : d.pending_ids.contains(id) ? "finished, result not yet handed over"
                      : d.ring_ids.contains(id)  ? "finished"
                                                 : nullptr;
  if (known != nullptr) {
    d.counters.duplicates += 1;
    return Admission{Admission::Outcome::duplicate, std::string("task ") + id + " is already " + known};
  }

  StoredTask record;
  record.seq = d.next_seq;
  record.task = task;
  std::optional<std::string> refusal;
  const auto authorized = d.authorize(task);
  if (const auto* policy = std::get_if<detail::PolicyRefusal>(&authorized)) {
    d.note_refusal(task, *policy);
    refusal = policy->reason;
  }
  if (!refusal) refusal = d.never_fits(task);
  if (!refusal && d.queued.size() >= d.options.max_queued) {
    refusal = "queue full: " + std::to_string(d.options.max_queued) + " tasks are waiting";
  }
  if (refusal) {
    // Persisted like any finished task, so a redelivery after a crash is a duplicate
    // and the refusal reaches the sink exactly as a result would.
    refusal = clamp_reason(*refusal);
    record.state = StoredTask::State::finished;
    record.result.task_id = id;
    record.result.status = TaskStatus::refused;
    record.result.reason = *refusal;
    if (auto st = d.store->put(record); !st) {
      d.counters.storage_errors += 1;
      return st.error();
    }
    d.next_seq += 1;
    d.enqueue_result(std::move(record));
    return Admission{Admission::Outcome::refused, *refusal};
  }

  if (auto st = d.store->put(record); !st) {
    d.counters.storage_errors += 1;
    return st.error();
  }
  d.next_seq += 1;
  d.requeue(Queued{std::move(record), {}});
  d.dirty = true;
  return Admission{Admission::Outcome::queued, {}};
}

std::string_view to_string(CancelOutcome outcome) {
  switch (outcome) {
    case CancelOutcome::not_started: return "not_started";
    case CancelOutcome::stopping: return "stopping";
    case CancelOutcome::finished: return "finished";
    case CancelOutcome::fenced: return "fenced";
  }
  return "unknown";
}

Result<CancelOutcome> TaskRunner::cancel(const std::string& task_id, const std::string& reason, Timestamp now) {
  Impl& d = *impl_;
  if (!topics::Id::valid(task_id)) return Error{"cancel.task_id", "not a valid id"};
  const std::string why = "cancelled: " + (reason.empty() ? std::string("no reason given") : reason);
  if (auto q = d.queued.find(task_id); q != d.queued.end()) {
    Queued taken = d.unqueue({q->second.record.task.priority, q->second.record.seq, task_id});
    d.finish_unstarted(std::move(taken.record), TaskStatus::cancelled, why + " before it started");
    return CancelOutcome::not_started;
  }
  if (auto r = d.running.find(task_id); r != d.running.end()) {
    Running& run = r->second;
    if (!run.term_sent) {
      run.cancelled = reason.empty() ? std::string("no reason given") : reason;
      d.terminate(run, now);
    } else if (run.service && !run.cancelled) {
      // Its health checks' kill is under way: the exit it brings ends the service instead.
      run.cancelled = reason.empty() ? std::string("no reason given") : reason;
    }
    return CancelOutcome::stopping;
  }
  if (auto w = d.restarting.find(task_id); w != d.restarting.end()) {
    auto taken = d.restarting.extract(w);
    StoredTask record = std::move(taken.mapped().record);
    TaskResult r;
    r.task_id = task_id;
    r.status = TaskStatus::cancelled;
    r.started_ts = record.started_ts;
    r.reason = why + " while it waited to restart";
    r.service = taken.mapped().service.status();
    d.finish(std::move(record), std::move(r));
    return CancelOutcome::not_started;
  }
  if (d.pending_ids.contains(task_id) || d.ring_ids.contains(task_id)) return CancelOutcome::finished;
  // Never seen: the cancel overtook its task (or the task was lost). Its cancelled result
  // is persisted like a refusal, so a later delivery is a duplicate and never runs.
  StoredTask record;
  record.seq = d.next_seq;
  record.task.task_id = task_id;
  record.state = StoredTask::State::finished;
  record.result.task_id = task_id;
  record.result.status = TaskStatus::cancelled;
  record.result.reason = clamp_reason(why + " before it arrived");
  if (auto st = d.store->put(record); !st) {
    d.counters.storage_errors += 1;
    return st.error();
  }
  d.next_seq += 1;
  d.enqueue_result(std::move(record));
  return CancelOutcome::fenced;
}

schemas::Status TaskRunner::pause(const std::string& task_id, bool paused) {
  auto r = impl_->running.find(task_id);
  if (r == impl_->running.end()) return Error{"task_id", "'" + task_id + "' is not running"};
  if (::kill(-r->second.child.pid, paused ? SIGSTOP : SIGCONT) != 0) {
    return Error{"task_id", std::string("signal refused: ") + std::strerror(errno)};
  }
  return schemas::Ok{};
}

schemas::Status TaskRunner::set_priority(const std::string& task_id, std::uint8_t priority) {
  Impl& d = *impl_;
  if (priority > 9) return Error{"priority", "must be 0..9"};
  if (auto q = d.queued.find(task_id); q != d.queued.end()) {
    Queued taken = d.unqueue({q->second.record.task.priority, q->second.record.seq, task_id});
    taken.record.task.priority = priority;
    d.requeue(std::move(taken));
    d.dirty = true;
    return schemas::Ok{};
  }
  auto r = d.running.find(task_id);
  if (r == d.running.end()) return Error{"task_id", "'" + task_id + "' is neither queued nor running"};
  if (::setpriority(PRIO_PGRP, static_cast<id_t>(r->second.child.pid), priority) != 0) {
    return Error{"priority", std::string("setpriority refused: ") + std::strerror(errno)};
  }
  return schemas::Ok{};
}

void TaskRunner::poll(Timestamp now, const HostState& host) {
  Impl& d = *impl_;

  // Running tasks: output, exits, deadlines.
  std::vector<std::string> exited;
  for (auto& [id, r] : d.running) {
    d.drain_output(r);
    if (detail::has_exited(r.child.pid)) {
      exited.push_back(id);
    } else {
      d.enforce_timeout(r, now);
      d.tend_health(r, now);
    }
  }
  for (const std::string& id : exited) {
    auto node = d.running.extract(id);
    Running& r = node.mapped();
    const Exit e = d.collect(r);
    if (r.service && !r.cancelled && d.schedule_restart(r, e, now)) continue;
    d.complete(r, e, now);
  }
  // Services whose back-off is over start again (they keep their slot meanwhile).
  for (auto it = d.restarting.begin(); it != d.restarting.end();) {
    if (*it->second.service.restart_at() > now) {
      ++it;
      continue;
    }
    auto node = d.restarting.extract(it++);
    d.restart(std::move(node.mapped()), now);
  }

  // New limits may make a queued task impossible.
  if (d.limits_changed) {
    d.limits_changed = false;
    for (auto it = d.order.begin(); it != d.order.end();) {
      const auto key = *it++;
      if (auto why = d.never_fits(d.queued.at(std::get<2>(key)).record.task)) {
        Queued q = d.unqueue(key);
        d.finish_unstarted(std::move(q.record), TaskStatus::refused, *why);
      }
    }
  }

  // Start what fits, in priority order; a task the host has no room for waits without
  // holding back smaller ones behind it.
  double committed_cpu = 0;
  std::uint64_t committed_mb = 0;
  for (auto it = d.order.begin(); it != d.order.end() && d.running.size() + d.restarting.size() < d.options.max_concurrent;) {
    const auto key = *it++;
    Queued& q = d.queued.at(std::get<2>(key));
    if (auto why = d.defer_reason(q.record.task, host, committed_cpu, committed_mb)) {
      if (q.deferred_reason.empty()) d.counters.deferrals += 1;
      q.deferred_reason = std::move(*why);
      continue;
    }
    committed_cpu += d.cpu_pct_of(q.record.task.cpu_millis);
    committed_mb += q.record.task.memory_mb;
    if (!d.start(d.unqueue(key), now)) break;
  }

  for (auto it = d.cgroup_leftovers.begin(); it != d.cgroup_leftovers.end();) {
    it = d.cgroups.remove(*it) ? d.cgroup_leftovers.erase(it) : it + 1;
  }

  d.deliver(now);
  d.dirty = false;
}

std::optional<int> TaskRunner::next_deadline_ms(Timestamp now) const {
  const Impl& d = *impl_;
  if (d.dirty || !d.pending.empty()) return 0;
  std::optional<std::uint64_t> best;
  auto consider = [&](std::uint64_t ms) { best = best ? std::min(*best, ms) : ms; };
  auto until = [&](Timestamp at) { return at > now ? at - now : 0; };
  for (const auto& [id, r] : d.running) {
    if (!r.term_sent) {
      consider(until(r.deadline));
    } else if (!r.kill_sent) {
      consider(until(*r.term_sent + d.options.kill_grace_ms));
    }
    consider(d.options.reap_interval_ms);
  }
  if (!d.cgroup_leftovers.empty()) consider(d.options.reap_interval_ms);
  for (const auto& [id, w] : d.restarting) consider(until(*w.service.restart_at()));
  if (!d.queued.empty() && d.running.size() < d.options.max_concurrent) consider(d.options.defer_retry_ms);
  if (!best) return std::nullopt;
  return static_cast<int>(std::min<std::uint64_t>(*best, 0x7fffffff));
}

std::vector<int> TaskRunner::watch_fds() const {
  std::vector<int> fds;
  for (const auto& [id, r] : impl_->running) {
    if (r.child.output_fd >= 0) fds.push_back(r.child.output_fd);
    if (r.child.pidfd >= 0) fds.push_back(r.child.pidfd);
  }
  return fds;
}

void TaskRunner::set_limits(const AdmissionLimits& limits) {
  impl_->options.limits = limits;
  impl_->limits_changed = true;
  impl_->dirty = true;
}

void TaskRunner::set_max_concurrent(std::size_t n) {
  impl_->options.max_concurrent = n;
  impl_->dirty = true;
}

void TaskRunner::set_output_tail_bytes(std::size_t n) { impl_->tail_bytes = std::min(n, kMaxOutputBytes); }

TaskCounters TaskRunner::counters() const {
  TaskCounters c = impl_->counters;
  c.queued = impl_->queued.size();
  c.running = impl_->running.size();
  c.deferred = static_cast<std::uint64_t>(std::count_if(
      impl_->queued.begin(), impl_->queued.end(), [](const auto& q) { return !q.second.deferred_reason.empty(); }));
  return c;
}

std::vector<QueuedTaskInfo> TaskRunner::queued() const {
  std::vector<QueuedTaskInfo> out;
  for (const auto& [priority, seq, id] : impl_->order) {
    out.push_back(QueuedTaskInfo{id, priority, impl_->queued.at(id).deferred_reason});
  }
  return out;
}

std::vector<RunningTaskInfo> TaskRunner::running() const {
  std::vector<RunningTaskInfo> out;
  for (const auto& [id, r] : impl_->running) {
    out.push_back(RunningTaskInfo{id, r.child.pid, r.record.started_ts, r.deadline, r.term_sent.has_value()});
  }
  return out;
}

const LimitSupport& TaskRunner::limit_support() const { return impl_->cgroups.support(); }

const TaskUser& TaskRunner::task_user() const { return impl_->user; }

}  // namespace nova::agent
