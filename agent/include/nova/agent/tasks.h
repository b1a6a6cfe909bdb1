// The agent's task queue: tasks from the node's `down` task topic are persisted, run as
// child processes under limits, and their results handed to a sink (the outbox).
//
// Lifecycle of a task:
//   submit()  -> queued     persisted (synced) before submit returns, so a task whose
//                           delivery the session acknowledged survives SIGKILL.
//   poll()    -> running    started when a slot is free and the host has room; the
//                           record says "running" (synced) *before* fork, so a crash can
//                           never make it run twice.
//             -> finished   exited, timed out, killed, failed to start, refused or
//                           cancelled (cancel(): SIGTERM to the process group, SIGKILL
//                           after kill_grace_ms, status cancelled whatever the exit); the
//                           result is persisted, then handed to the sink, then the record
//                           is replaced by an entry in a bounded ring of finished ids.
// Guarantees:
//   - At most once execution. A task that was running when the agent died is NOT run
//     again: reopening reports it failed with reason "agent restarted while the task
//     ran". Tasks are arbitrary commands, and running one twice (a firmware flash, a
//     payment, an append) is worse than telling the cloud it must decide to resubmit.
//   - At least once results. The sink may see the same result twice only across a
//     crash (persisted, handed over, killed before the record was retired); consumers
//     deduplicate results by task_id. Only finished_ts may differ between the two.
//   - Idempotent submit. A task_id that is queued, running, finished-but-not-delivered,
//     or among the last `remembered_finished` finished ids is ignored (MQTT QoS 1
//     redelivers), and never produces a second result.
//   - Order: highest priority first (0 is highest), FIFO within a priority. A task the
//     host has no room for now is deferred and lower-priority tasks that fit may start
//     ahead of it (backfill); the deferred task is retried on every poll().
//   - The runner has no threads and no MQTT dependency: it keeps queueing, starting and
//     finishing tasks while every uplink is down. The sink is called only from poll().
//
// Services (a Task with `service`; docs/agent.md, "Services"): run until cancelled, no
// timeout. An exit is not the end: the ServiceSupervisor (service_supervisor.h) decides
// per restart policy whether and when (back-off) the process starts again, and its health
// check runs beside it (its own process group, killed after timeout_s); failure_threshold
// failures in a row kill the process (SIGTERM, SIGKILL after kill_grace_ms) to restart
// it. Each change of state reaches the sink at once as a TaskResult with status running
// and `service` set; the record stays "running" meanwhile, so reopening starts the
// service again instead of reporting it failed. A service holds a max_concurrent slot
// while it runs and while it waits to restart. cancel() ends it for good.
//
// What a task may run (local policy; see TaskRunnerOptions::allow and docs/agent.md):
//   - argv[0] must name a program of the allow-list, after resolving symlinks and "..";
//     an empty list refuses every task. A task's env may not set PATH, LD_*, HOME and
//     other variables that change what a program loads (forbidden_env_reason()).
//     Either refusal is status refused, with the reason in the result, counted in
//     refused_by_policy and logged (task id and rule only).
//   - When the agent is root, the child drops to TaskRunnerOptions::user (setgroups,
//     setgid, setuid) unless allow_root; it always gets PR_SET_NO_NEW_PRIVS, no
//     inherited descriptors but stdin/stdout/stderr, and a private HOME/TMPDIR.
//
// Limits and how they are enforced (see docs/agent.md, "Tasks"):
//   - timeout_ms: SIGTERM to the task's process group at the deadline, SIGKILL (and
//     cgroup.kill) after kill_grace_ms -> status timeout.
//   - memory_mb: cgroup v2 memory.max when the runner could enable the memory controller
//     under cgroup_root (a kill by it -> status killed, reason names the limit);
//     otherwise RLIMIT_AS in the child, where exceeding it makes allocations fail inside
//     the program (-> failed or killed by its own signal, reason names the limit).
//   - cpu_millis: cgroup v2 cpu.max when the cpu controller is available; otherwise not
//     enforced, and every such task's result says so in its reason.
//   - Whatever the task does, its process group (and its cgroup, when it has one) does
//     not outlive it: leftovers are SIGKILLed when the main process exits.
//
// Children are made with fork + execve. Between the two the child makes only
// async-signal-safe system calls on memory prepared before fork (the agent has threads:
// Paho, LevelDB). Children get PR_SET_PDEATHSIG(SIGKILL), tied to the thread that calls
// poll(): drive the runner from the agent's long-lived main thread. The agent must not
// set SIGCHLD to SIG_IGN (children would be reaped behind the runner's back).
//
// Not thread-safe: one owner thread (the agent's main loop) calls it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nova/agent/storage.h"
#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::agent {

using schemas::Result;
using schemas::Task;
using schemas::TaskResult;
using schemas::TaskStatus;
using schemas::Timestamp;

// The host as the metrics collector saw it last. A default-constructed snapshot has no
// free memory, so it defers everything: fill it in.
struct HostState {
  double cpu_pct = 0;                // busy % of all cores, 0..100
  double memory_pct = 0;             // used memory %, 0..100
  double disk_pct = 0;               // used % of the data filesystem, 0..100
  std::uint64_t free_memory_mb = 0;  // available memory (MemAvailable)
};

// The agent's configured resource limits (the seed's defaults). A task starts only if
// the host stays within them with the task's declared memory_mb and cpu_millis added.
struct AdmissionLimits {
  double max_cpu_pct = 80;
  double max_memory_pct = 85;
  double max_disk_pct = 90;
  std::uint64_t min_free_memory_mb = 1024;
};

struct TaskRunnerOptions {
  std::filesystem::path dir;  // the runner's own LevelDB
  StorageOptions storage{};   // encryption at rest of that LevelDB (storage.h)
  std::size_t max_concurrent = 2;
  // Queued tasks beyond this are refused ("queue full"): the disk the queue may take
  // stays bounded on a device whose cloud keeps sending.
  std::size_t max_queued = 256;
  std::size_t remembered_finished = 1024;  // finished ids kept for duplicate detection
  std::size_t output_tail_bytes = 4096;    // clamped to the schema's 4096
  std::uint64_t kill_grace_ms = 5000;      // SIGTERM -> SIGKILL on timeout
  // While children run, next_deadline_ms() asks to be polled at least this often (to
  // reap and to drain output pipes); a loop that waits on watch_fds() wakes earlier.
  std::uint64_t reap_interval_ms = 100;
  std::uint64_t defer_retry_ms = 1000;  // next_deadline_ms() while only deferred tasks wait
  AdmissionLimits limits;
  std::uint64_t total_memory_mb = 0;  // 0: physical memory from sysconf
  std::uint32_t cpu_cores = 0;        // 0: online cores from sysconf
  // A cgroup v2 directory the agent may create children in (systemd: Delegate=yes, and
  // the agent itself in a leaf, so the root can enable controllers for its children).
  // Empty: no cgroups; memory is limited by RLIMIT_AS and CPU is not limited.
  std::filesystem::path cgroup_root;
  // What a task may run and as whom: local settings only (the agent's file), never
  // taken from a message. See docs/agent.md, "What a task may run".
  //
  // Programs a task may name: absolute paths. argv[0] is either one of these (any
  // spelling that resolves, through symlinks and "..", to the same file) or the bare
  // file name of one ("sh" for "/bin/sh"; two entries may not share a name). The
  // program receives argv[0] as the list spells it. Empty: every task is refused.
  std::vector<std::string> allow;
  // The account tasks run as when the agent runs as root (setgroups/setgid/setuid in
  // the child). An agent that is not root cannot switch: its tasks run as itself.
  std::string user = "nobody";
  bool allow_root = false;  // false: a `user` with uid 0 makes open() fail
  // The environment a task starts with, before the runner's own variables (NOVA_TASK_ID,
  // HOME, TMPDIR, USER, LOGNAME) and the task's env. A task's env may add variables but
  // never set these or any that change what a program loads (forbidden_env_reason()).
  // The agent's own environment is never inherited.
  std::map<std::string, std::string> base_env = {{"PATH", "/usr/local/bin:/usr/bin:/bin"}};
  // Each task gets a private directory here (mode 0700, owned by the task's user), its
  // HOME and TMPDIR, removed when it finishes. Empty: the system's temporary directory.
  std::filesystem::path scratch_root;
  std::filesystem::path work_dir;  // children's cwd; empty: the task's private directory
  // Structured log sink (level, event, logfmt fields), as the agent's. Policy refusals
  // are logged with the task id and the rule, never with argv or env values.
  std::function<void(const char* level, const std::string& event, const std::string& fields)> log;
  bool sync = true;                // fsync every state change
  // LevelDB memory, kept small: the store holds a few hundred small records. (LevelDB
  // raises max_open_files to at least 74; it opens table files lazily, so a store this
  // size keeps only a handful open.)
  std::size_t write_buffer_bytes = 64 * 1024;
  std::size_t block_cache_bytes = 64 * 1024;
  int max_open_files = 16;
};

struct Admission {
  enum class Outcome { queued, duplicate, refused };
  Outcome outcome = Outcome::queued;
  // refused: why (also the result's reason); duplicate: where the id was found.
  std::string reason;
};

// What this runner can enforce, decided once when it opens.
struct LimitSupport {
  bool cgroups = false;        // each task gets its own cgroup under cgroup_root
  bool cgroup_memory = false;  // memory.max (else RLIMIT_AS)
  bool cgroup_cpu = false;     // cpu.max (else CPU is not limited)
  std::string detail;          // how it was decided, or why not, for logs and docs
};

// Whom tasks run as, decided once when the runner opens.
struct TaskUser {
  std::string name;   // the account's name (the agent's own when it cannot switch)
  unsigned uid = 0;
  unsigned gid = 0;
  bool switched = false;  // the child changes to uid/gid before execve
  bool root = false;      // tasks run with uid 0 (tasks.allow_root)
  std::string detail;     // for logs and docs
};

// For metrics. Gauges describe now; the rest count since open.
struct TaskCounters {
  std::uint64_t queued = 0;    // gauge: waiting to start (deferred ones included)
  std::uint64_t running = 0;   // gauge
  std::uint64_t deferred = 0;  // gauge: queued and held back by host state at last try
  std::uint64_t completed = 0;   // status ok
  std::uint64_t failed = 0;      // status failed (incl. failed to start, restart)
  std::uint64_t timed_out = 0;   // status timeout
  std::uint64_t killed = 0;      // status killed
  std::uint64_t refused = 0;     // status refused
  std::uint64_t cancelled = 0;   // status cancelled
  std::uint64_t refused_by_policy = 0;  // of those: program not allowed, forbidden env
  std::uint64_t duplicates = 0;  // submits ignored as already known
  std::uint64_t deferrals = 0;   // times a task went from startable to deferred
  std::uint64_t storage_errors = 0;   // LevelDB writes that failed
  std::uint64_t corrupt_records = 0;  // unreadable records dropped at open
  std::uint64_t service_restarts = 0;       // services started again after an exit
  std::uint64_t health_check_failures = 0;  // services' health checks that failed
  std::uint64_t health_kills = 0;           // services killed for failure_threshold failures
};

// What cancel() did.
enum class CancelOutcome {
  not_started,  // it was queued: finished cancelled without starting
  stopping,     // it runs: SIGTERM sent (or a timeout already stops it); result on exit
  finished,     // it had already finished: its own result stands
  fenced,       // the runner never saw it: stored as finished (cancelled), so it never runs
};
std::string_view to_string(CancelOutcome outcome);

struct QueuedTaskInfo {
  std::string task_id;
  std::uint8_t priority = 0;
  std::string deferred_reason;  // empty unless held back by host state at last try
};

struct RunningTaskInfo {
  std::string task_id;
  int pid = 0;  // also the process group id
  Timestamp started_ts = 0;
  Timestamp deadline_ts = 0;  // started_ts + timeout_ms
  bool terminating = false;   // timed out or cancelled, SIGTERM sent
};

// Receives every result; the runner fills everything but `position`. Must not throw,
// and must not call back into the runner.
using TaskResultSink = std::function<void(const TaskResult&)>;

// Why a task's environment variable `name` may not be set by a task, if it may not:
// names of the runner's own variables, PATH, the dynamic loader's (LD_*), glibc's and
// interpreters' (GCONV_PATH, PYTHON*, PERL5LIB, NODE_OPTIONS, BASH_ENV, ...) and names
// that are not [A-Za-z_][A-Za-z0-9_]*.
std::optional<std::string> forbidden_env_reason(const std::string& name);

class TaskRunner {
 public:
  // Opens (or creates) the store. Queued tasks are queued again; tasks that were running
  // are finished as failed "agent restarted while the task ran"; results that were not
  // handed over are handed over again. All of them reach the sink on the first poll().
  static Result<std::unique_ptr<TaskRunner>> open(const TaskRunnerOptions& options,
                                                   TaskResultSink sink);
  // Kills running tasks (SIGKILL to group and cgroup) and reaps them; their records stay
  // "running", so the next open reports them as restarted.
  ~TaskRunner();

  // Accepts a decoded, validated task. queued: persisted. duplicate: ignored. refused:
  // could never run here (or the queue is full); its refused result reaches the sink on
  // the next poll(). An error means the task was not stored (storage failure, or a task
  // the codec would not have let through): the caller must not acknowledge it as taken.
  Result<Admission> submit(const Task& task);

  // Stops a task (a TaskCancel from the cloud). `reason` (non-empty) goes into the
  // result: "cancelled: <reason>". A running task gets SIGTERM to its process group now
  // and SIGKILL (and cgroup.kill) kill_grace_ms later, and finishes with status cancelled
  // once it has exited, whatever its exit code -- unless a timeout had already sent
  // SIGTERM, which then stands. A cancel for an id never submitted is persisted as that
  // task's cancelled result, so the task is a duplicate should it arrive later (the
  // cancel overtook it): a fence, not an error. Results reach the sink from poll(). An
  // error: the id is invalid or the fence could not be stored.
  Result<CancelOutcome> cancel(const std::string& task_id, const std::string& reason, Timestamp now);

  // Local rules' actions (pipelines.h, rules.h). pause: SIGSTOP to a running task's
  // process group; resume: SIGCONT. Its timeout keeps counting while it is stopped, and
  // a cancel or timeout sends SIGCONT after SIGTERM so the task can act on it. An error:
  // the task is not running (field "task_id").
  schemas::Status pause(const std::string& task_id, bool paused);
  // A queued task's place in the queue, or a running task's scheduling priority
  // (setpriority of its process group: nice = priority, 0..9, 0 the highest). Held in
  // memory: after a restart the task has the priority it was sent with. An error: the
  // task is neither queued nor running, or the kernel refused.
  schemas::Status set_priority(const std::string& task_id, std::uint8_t priority);

  // Drains output, reaps exited children, enforces timeouts, refuses queued tasks that
  // can no longer fit (limits changed), starts what fits, and hands results to the sink.
  // `now` is the agent's clock (ms since the epoch); timeouts are measured with it.
  void poll(Timestamp now, const HostState& host);

  // Milliseconds until poll() must run again; 0 = now; nullopt = nothing to do until
  // the next submit().
  std::optional<int> next_deadline_ms(Timestamp now) const;

  // Descriptors that become readable when a child writes output or exits; a main loop
  // may wait on them (with next_deadline_ms() as timeout) to react at once.
  std::vector<int> watch_fds() const;

  // Hot configuration. New limits apply from the next poll(); a queued task that can
  // now never fit is refused then.
  void set_limits(const AdmissionLimits& limits);
  void set_max_concurrent(std::size_t n);      // running tasks keep running
  void set_output_tail_bytes(std::size_t n);   // also for running tasks; <= 4096

  TaskCounters counters() const;
  std::vector<QueuedTaskInfo> queued() const;  // in start order
  std::vector<RunningTaskInfo> running() const;
  const LimitSupport& limit_support() const;
  const TaskUser& task_user() const;

  TaskRunner(const TaskRunner&) = delete;
  TaskRunner& operator=(const TaskRunner&) = delete;

 private:
  struct Impl;
  explicit TaskRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nova::agent
