// The task runner with real child processes and a real LevelDB in temporary directories.
// Nothing sleeps for a fixed time: each test polls the runner, waiting on its descriptors
// and next_deadline_ms(), until a condition holds or a deadline passes.
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

#include "nova/agent/tasks.h"
#include "nova/schemas/codec.h"
#include "task_harness.h"

using namespace nova::agent;
namespace fs = std::filesystem;
using nova::schemas::TaskStatus;

using namespace nova::agent::test;

TEST_CASE("a task runs and reports ok, exit 0 and its output", "[tasks]") {
  Harness h;
  h.open();
  CHECK_FALSE(h.runner->next_deadline_ms(now_ms()).has_value());
  const Timestamp before = now_ms();
  CHECK(h.submit(shell("t-echo", "echo hi")).outcome == Admission::Outcome::queued);
  CHECK(h.runner->next_deadline_ms(now_ms()) == 0);
  REQUIRE(h.run_until_results(1));
  const TaskResult& r = h.only_result();
  CHECK(r.task_id == "t-echo");
  CHECK(r.status == TaskStatus::ok);
  CHECK(r.exit_code == 0);
  CHECK(r.output == "hi\n");
  CHECK_FALSE(r.reason.has_value());
  REQUIRE(r.started_ts.has_value());
  CHECK(*r.started_ts >= before);
  CHECK(r.finished_ts >= *r.started_ts);
  CHECK(r.position == nova::schemas::StreamPosition{});  // left to the caller
  CHECK(h.runner->counters().completed == 1);
  CHECK_FALSE(h.runner->next_deadline_ms(now_ms()).has_value());

  // The result is one the codec accepts once the caller has placed it in a stream.
  TaskResult placed = r;
  placed.position = {"node-1", "results", 1};
  auto round = nova::schemas::decode_cbor<TaskResult>(nova::schemas::encode_cbor(placed));
  INFO((round ? "" : round.error().message()));
  CHECK(round.ok());
}

TEST_CASE("a non-zero exit is failed with its code, and stderr is captured too", "[tasks]") {
  Harness h;
  h.open();
  h.submit(shell("t-exit", "echo oops >&2; exit 3"));
  REQUIRE(h.run_until_results(1));
  const TaskResult& r = h.only_result();
  CHECK(r.status == TaskStatus::failed);
  CHECK(r.exit_code == 3);
  CHECK(r.output == "oops\n");
  CHECK(reason_of(r) == "exited with code 3");
  CHECK(h.runner->counters().failed == 1);
}

TEST_CASE("a timeout terminates the process group", "[tasks]") {
  Harness h;
  h.open();

  SECTION("SIGTERM suffices") {
    h.submit(make_task("t-sleep", {"sleep", "30"}, 200));
    REQUIRE(h.run_until([&] { return h.runner->running().size() == 1; }));
    const int pgid = h.runner->running().front().pid;
    CHECK(h.runner->next_deadline_ms(now_ms()) <= 200);
    REQUIRE(h.run_until_results(1));
    const TaskResult& r = h.only_result();
    CHECK(r.status == TaskStatus::timeout);
    CHECK(r.exit_code == -SIGTERM);
    CHECK_THAT(reason_of(r), Catch::Contains("timed out after 200 ms"));
    CHECK(r.finished_ts - *r.started_ts >= 200);
    CHECK(r.finished_ts - *r.started_ts < 5000);
    CHECK(::kill(-pgid, 0) == -1);
    CHECK(errno == ESRCH);
    CHECK(h.runner->counters().timed_out == 1);
  }

  SECTION("SIGKILL after the grace period, for the whole group") {
    h.options.kill_grace_ms = 300;
    h.open();
    // The shell ignores SIGTERM and has a child in its group.
    h.submit(shell("t-stubborn", "trap '' TERM; sleep 30 & echo started; wait", 200));
    REQUIRE(h.run_until([&] { return h.runner->running().size() == 1; }));
    const int pgid = h.runner->running().front().pid;
    REQUIRE(h.run_until_results(1));
    const TaskResult& r = h.only_result();
    CHECK(r.status == TaskStatus::timeout);
    CHECK(r.exit_code == -SIGKILL);
    CHECK(r.output == "started\n");
    CHECK_THAT(reason_of(r), Catch::Contains("SIGKILL after 300 ms"));
    CHECK(r.finished_ts - *r.started_ts >= 500);
    CHECK(h.run_until([&] { return live_in_group(pgid) == 0; }));
  }
}

TEST_CASE("cancel stops a running task's process group and reports it cancelled", "[tasks][cancel]") {
  Harness h;
  h.open();

  SECTION("SIGTERM suffices; the exit code does not make it ok") {
    // The shell exits 0 on SIGTERM: the result is still "cancelled".
    h.submit(shell("t-run", "trap 'exit 0' TERM; sleep 30 & echo started; wait"));
    REQUIRE(h.run_until([&] { return h.runner->running().size() == 1; }));
    const int pgid = h.runner->running().front().pid;
    auto outcome = h.runner->cancel("t-run", "migration to dev-b", now_ms());
    REQUIRE(outcome.ok());
    CHECK(*outcome == CancelOutcome::stopping);
    CHECK(h.runner->running().front().terminating);
    REQUIRE(h.run_until_results(1));
    const TaskResult& r = h.only_result();
    CHECK(r.status == TaskStatus::cancelled);
    CHECK(r.started_ts.has_value());
    CHECK(reason_of(r) == "cancelled: migration to dev-b: SIGTERM sent to its process group");
    CHECK(h.run_until([&] { return live_in_group(pgid) == 0; }));
    CHECK(h.runner->counters().cancelled == 1);
    CHECK(h.runner->running().empty());
  }

  SECTION("SIGKILL after the grace period for a task that ignores SIGTERM") {
    h.options.kill_grace_ms = 300;
    h.open();
    h.submit(shell("t-stubborn", "trap '' TERM; sleep 30 & echo started; wait"));
    REQUIRE(h.run_until([&] { return h.runner->running().size() == 1; }));
    const int pgid = h.runner->running().front().pid;
    // Once the shell ignores SIGTERM (its SigIgn mask in /proc): a cancel before the trap
    // is set would stop it with SIGTERM alone.
    auto ignores_sigterm = [pgid] {
      std::ifstream status("/proc/" + std::to_string(pgid) + "/status");
      for (std::string line; std::getline(status, line);) {
        if (line.starts_with("SigIgn:")) return (std::stoull(line.substr(7), nullptr, 16) & (1ULL << (SIGTERM - 1))) != 0;
      }
      return false;
    };
    REQUIRE(h.run_until(ignores_sigterm));
    REQUIRE(h.runner->cancel("t-stubborn", "operator", now_ms()).ok());
    REQUIRE(h.run_until_results(1));
    const TaskResult& r = h.only_result();
    CHECK(r.status == TaskStatus::cancelled);
    CHECK(r.exit_code == -SIGKILL);
    CHECK(reason_of(r) == "cancelled: operator: SIGTERM sent to its process group, SIGKILL after 300 ms");
    CHECK(h.run_until([&] { return live_in_group(pgid) == 0; }));
  }
}

TEST_CASE("cancel of a queued, a finished and an unknown task", "[tasks][cancel]") {
  Harness h;
  h.options.max_concurrent = 1;
  h.open();
  h.submit(make_task("t-first", {"sleep", "30"}));
  REQUIRE(h.run_until([&] { return h.runner->running().size() == 1; }));
  h.submit(make_task("t-queued", {"true"}));

  // Queued: finished without starting.
  auto queued = h.runner->cancel("t-queued", "operator", now_ms());
  REQUIRE(queued.ok());
  CHECK(*queued == CancelOutcome::not_started);
  REQUIRE(h.run_until_results(1));
  CHECK(h.results[0].task_id == "t-queued");
  CHECK(h.results[0].status == TaskStatus::cancelled);
  CHECK_FALSE(h.results[0].started_ts.has_value());
  CHECK(reason_of(h.results[0]) == "cancelled: operator before it started");

  // Unknown: a fence. Its result goes up, and the task, arriving late, never runs --
  // not even after a restart of the runner.
  auto unknown = h.runner->cancel("t-late", "failover", now_ms());
  REQUIRE(unknown.ok());
  CHECK(*unknown == CancelOutcome::fenced);
  REQUIRE(h.run_until_results(2));
  CHECK(h.results[1].task_id == "t-late");
  CHECK(h.results[1].status == TaskStatus::cancelled);
  CHECK(reason_of(h.results[1]) == "cancelled: failover before it arrived");
  CHECK(h.submit(make_task("t-late", {"true"})).outcome == Admission::Outcome::duplicate);
  h.open();  // t-first is reported "agent restarted"; t-late stays fenced
  CHECK(h.submit(make_task("t-late", {"true"})).outcome == Admission::Outcome::duplicate);
  REQUIRE(h.run_until_results(3));
  CHECK(h.results[2].task_id == "t-first");

  // Finished: its own result stands, and nothing more is reported.
  auto finished = h.runner->cancel("t-first", "operator", now_ms());
  REQUIRE(finished.ok());
  CHECK(*finished == CancelOutcome::finished);
  h.runner->poll(now_ms(), roomy());
  CHECK(h.results.size() == 3);

  // A bad id is an error naming the field.
  auto bad = h.runner->cancel("no/such", "x", now_ms());
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message() == "cancel.task_id: not a valid id");
}

TEST_CASE("processes a task leaves behind die with it", "[tasks]") {
  Harness h;
  h.open();
  h.submit(shell("t-daemon", "sleep 30 & echo spawned"));
  REQUIRE(h.run_until([&] { return h.runner->running().size() == 1; }));
  const int pgid = h.runner->running().front().pid;
  REQUIRE(h.run_until_results(1));
  CHECK(h.only_result().status == TaskStatus::ok);
  CHECK(h.only_result().output == "spawned\n");
  CHECK(h.run_until([&] { return live_in_group(pgid) == 0; }));
}

TEST_CASE("a memory hog over memory_mb is stopped with a reason", "[tasks]") {
  Harness h;
  h.open();
  // Without a cgroup root the limit is RLIMIT_AS: the allocation fails inside the
  // program, which then exits (python: MemoryError, exit 1) or dies by a signal.
  CHECK_FALSE(h.runner->limit_support().cgroup_memory);
  Task t = access("/usr/bin/python3", X_OK) == 0
               ? make_task("t-hog", {"python3", "-c", "b = bytearray(512 * 1024 * 1024); print(len(b))"})
               : shell("t-hog", "x=$(head -c 536870912 /dev/zero | tr '\\0' a); echo ${#x}");
  t.memory_mb = 64;
  h.submit(t);
  REQUIRE(h.run_until_results(1));
  const TaskResult& r = h.only_result();
  INFO(reason_of(r) << " / " << r.output);
  CHECK((r.status == TaskStatus::failed || r.status == TaskStatus::killed));
  CHECK_THAT(reason_of(r), Catch::Contains("limited to 64 MB") && Catch::Contains("RLIMIT_AS"));
  CHECK(r.output.find("536870912") == std::string::npos);
}

TEST_CASE("with max_concurrent 1 tasks start by priority, FIFO within one", "[tasks]") {
  const std::size_t fds_before = open_fds();
  Harness h;
  h.options.max_concurrent = 1;
  h.open();
  auto task = [](const std::string& id, std::uint8_t priority) {
    Task t = shell(id, "echo " + id);
    t.priority = priority;
    return t;
  };
  h.submit(task("low", 9));
  h.submit(task("mid-a", 5));
  h.submit(task("high-a", 0));
  h.submit(task("mid-b", 5));
  h.submit(task("high-b", 0));
  std::vector<std::string> queue_order;
  for (const auto& q : h.runner->queued()) queue_order.push_back(q.task_id);
  CHECK(queue_order == std::vector<std::string>{"high-a", "high-b", "mid-a", "mid-b", "low"});
  std::size_t max_running = 0;
  REQUIRE(h.run_until([&] {
    max_running = std::max(max_running, h.runner->running().size());
    return h.results.size() == 5;
  }));
  CHECK(max_running == 1);
  std::vector<std::string> done;
  for (const auto& r : h.results) done.push_back(r.task_id);
  CHECK(done == queue_order);
  h.runner.reset();
  CHECK(open_fds() == fds_before);  // pipes, pidfds and the store all closed
}

TEST_CASE("a task that does not fit now is deferred and starts when the host has room", "[tasks]") {
  Harness h;
  h.open();

  SECTION("cpu over the limit holds everything back") {
    HostState busy = roomy();
    busy.cpu_pct = 95;
    h.submit(shell("t-wait", "echo ran"));
    for (int i = 0; i < 3; ++i) h.runner->poll(now_ms(), busy);
    CHECK(h.results.empty());
    auto q = h.runner->queued();
    REQUIRE(q.size() == 1);
    CHECK(q.front().deferred_reason == "cpu at 95.0%, limit 80.0%");
    const TaskCounters c = h.runner->counters();
    CHECK(c.deferred == 1);
    CHECK(c.deferrals == 1);  // one deferral, however often it is retried
    CHECK(c.queued == 1);
    CHECK(h.runner->next_deadline_ms(now_ms()) == static_cast<int>(h.options.defer_retry_ms));
    REQUIRE(h.run_until_results(1));
    CHECK(h.only_result().status == TaskStatus::ok);
    CHECK(h.runner->counters().deferred == 0);
  }

  SECTION("a limit is a ceiling on use above it: at 100 % a busy host still runs a task asking no share") {
    h.runner.reset();
    h.options.limits.max_cpu_pct = 100;
    h.options.limits.max_memory_pct = 100;
    h.open();
    HostState saturated = roomy();
    saturated.cpu_pct = 100;
    saturated.memory_pct = 100;
    Task t = shell("t-saturated", "true");
    t.cpu_millis = 0;
    t.memory_mb = 0;
    h.submit(t);
    h.runner->poll(now_ms(), saturated);
    CHECK(h.runner->counters().deferred == 0);
    REQUIRE(h.run_until_results(1));
    CHECK(h.only_result().status == TaskStatus::ok);
  }

  SECTION("disk over the limit") {
    HostState full = roomy();
    full.disk_pct = 95;
    h.submit(shell("t-disk", "true"));
    h.runner->poll(now_ms(), full);
    CHECK(h.runner->queued().front().deferred_reason == "disk at 95.0%, limit 90.0%");
    REQUIRE(h.run_until_results(1));
  }

  SECTION("a big task waits for memory while a small one behind it runs") {
    HostState tight = roomy();
    tight.free_memory_mb = 3000;
    Task big = shell("t-big", "echo big");
    big.memory_mb = 4000;
    big.priority = 0;
    Task small = shell("t-small", "echo small");
    small.memory_mb = 100;
    small.priority = 5;
    h.submit(big);
    h.submit(small);
    REQUIRE(h.run_until_results(1, tight));
    CHECK(h.results.front().task_id == "t-small");
    auto q = h.runner->queued();
    REQUIRE(q.size() == 1);
    CHECK(q.front().task_id == "t-big");
    CHECK_THAT(q.front().deferred_reason, Catch::Contains("would fall below min_free_memory_mb 1024"));
    REQUIRE(h.run_until_results(2, roomy()));
    CHECK(h.results.back().task_id == "t-big");
  }

  SECTION("memory percentage with the task's memory_mb added") {
    HostState used = roomy();
    used.memory_pct = 80;  // + 2048 MB of 16384 = 12.5 % -> 92.5 % > 85 %
    Task t = shell("t-mem", "true");
    t.memory_mb = 2048;
    h.submit(t);
    h.runner->poll(now_ms(), used);
    CHECK(h.runner->queued().front().deferred_reason ==
          "memory at 80.0% + 12.5% for memory_mb 2048, limit 85.0%");
    REQUIRE(h.run_until_results(1));
  }
}

TEST_CASE("a task that can never fit is refused at once with a reason", "[tasks]") {
  Harness h;
  h.open();
  Task huge = shell("t-huge", "true");
  huge.memory_mb = 1'000'000;
  const Admission a = h.submit(huge);
  CHECK(a.outcome == Admission::Outcome::refused);
  CHECK_THAT(a.reason, Catch::Contains("memory_mb 1000000 can never fit") && Catch::Contains("16384 MB"));

  Task greedy = shell("t-greedy", "true");
  greedy.cpu_millis = 5000;  // 4 cores at 80 % allow 3200
  CHECK(h.submit(greedy).outcome == Admission::Outcome::refused);

  h.runner->poll(now_ms(), roomy());
  REQUIRE(h.results.size() == 2);
  const TaskResult& r = h.results.front();
  CHECK(r.task_id == "t-huge");
  CHECK(r.status == TaskStatus::refused);
  CHECK(reason_of(r) == a.reason);
  CHECK_FALSE(r.exit_code.has_value());
  CHECK_FALSE(r.started_ts.has_value());
  CHECK(r.finished_ts > 0);
  CHECK_THAT(reason_of(h.results.back()), Catch::Contains("cpu_millis 5000 can never fit"));
  CHECK(h.runner->counters().refused == 2);
  // A redelivery of a refused task is a duplicate, not a second refusal.
  CHECK(h.submit(huge).outcome == Admission::Outcome::duplicate);
}

TEST_CASE("limits lowered by hot config refuse a queued task that can no longer fit", "[tasks]") {
  Harness h;
  h.open();
  Task t = shell("t-later", "true");
  t.memory_mb = 8000;
  HostState busy = roomy();
  busy.cpu_pct = 99;
  h.submit(t);
  h.runner->poll(now_ms(), busy);
  REQUIRE(h.results.empty());
  AdmissionLimits strict;
  strict.max_memory_pct = 25;  // 4096 MB of 16384
  h.runner->set_limits(strict);
  h.runner->poll(now_ms(), busy);
  REQUIRE(h.results.size() == 1);
  CHECK(h.results.front().status == TaskStatus::refused);
  CHECK(h.runner->queued().empty());
}

TEST_CASE("queued tasks survive closing the runner and run after reopening", "[tasks]") {
  Harness h;
  h.options.max_concurrent = 1;
  h.options.sync = true;
  h.open();
  h.submit(shell("first", "echo 1"));
  h.submit(shell("second", "echo 2"));
  h.runner.reset();  // before anything ran
  CHECK(h.results.empty());

  h.open();
  auto q = h.runner->queued();
  REQUIRE(q.size() == 2);
  CHECK(q[0].task_id == "first");
  CHECK(q[1].task_id == "second");
  CHECK(h.submit(shell("second", "echo 2")).outcome == Admission::Outcome::duplicate);
  REQUIRE(h.run_until_results(2));
  CHECK(h.results[0].task_id == "first");
  CHECK(h.results[0].output == "1\n");
  CHECK(h.results[1].task_id == "second");
}

TEST_CASE("a task running when the runner closed is reported failed after reopening", "[tasks]") {
  Harness h;
  h.open();
  h.submit(make_task("t-long", {"sleep", "30"}));
  REQUIRE(h.run_until([&] { return h.runner->running().size() == 1; }));
  const int pgid = h.runner->running().front().pid;
  h.runner.reset();
  CHECK(live_in_group(pgid) == 0);  // the destructor kills and reaps it
  CHECK(h.results.empty());

  h.open();
  CHECK(h.runner->queued().empty());
  CHECK(h.runner->next_deadline_ms(now_ms()) == 0);
  h.runner->poll(now_ms(), roomy());
  const TaskResult& r = h.only_result();
  CHECK(r.task_id == "t-long");
  CHECK(r.status == TaskStatus::failed);
  CHECK(reason_of(r) == "agent restarted while the task ran");
  CHECK(r.started_ts.has_value());
  CHECK_FALSE(r.exit_code.has_value());
  // Never run twice, never reported twice.
  CHECK(h.submit(make_task("t-long", {"sleep", "30"})).outcome == Admission::Outcome::duplicate);
  h.open();
  h.runner->poll(now_ms(), roomy());
  CHECK(h.results.size() == 1);
}

TEST_CASE("after a SIGKILL of the agent, its running task dies and is reported failed", "[tasks]") {
  Harness h;
  h.options.sync = true;
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  const pid_t agent = ::fork();
  REQUIRE(agent >= 0);
  if (agent == 0) {
    // The "agent": queue a long task, start it, report its process group, wait to die.
    ::close(pipefd[0]);
    auto r = TaskRunner::open(h.options, [](const TaskResult&) {});
    if (!r) ::_exit(2);
    auto& runner = *r.value();
    if (!runner.submit(make_task("t-crash", {"sleep", "30"}))) ::_exit(3);
    if (!runner.submit(make_task("t-queued", {"/bin/sh", "-c", "echo after"}))) ::_exit(3);
    runner.set_max_concurrent(1);
    runner.poll(now_ms(), roomy());
    if (runner.running().size() != 1) ::_exit(4);
    const int pgid = runner.running().front().pid;
    if (::write(pipefd[1], &pgid, sizeof pgid) != sizeof pgid) ::_exit(5);
    for (;;) ::pause();
  }
  ::close(pipefd[1]);
  int pgid = 0;
  const ssize_t n = ::read(pipefd[0], &pgid, sizeof pgid);
  ::close(pipefd[0]);
  ::kill(agent, SIGKILL);
  int status = 0;
  ::waitpid(agent, &status, 0);
  REQUIRE(n == sizeof pgid);
  REQUIRE(pgid > 0);

  // PR_SET_PDEATHSIG took the task down with its agent.
  h.open();
  CHECK(h.run_until([&] { return live_in_group(pgid) == 0; }));
  REQUIRE(h.run_until_results(2));
  CHECK(h.results[0].task_id == "t-crash");
  CHECK(h.results[0].status == TaskStatus::failed);
  CHECK(reason_of(h.results[0]) == "agent restarted while the task ran");
  CHECK(h.results[1].task_id == "t-queued");
  CHECK(h.results[1].status == TaskStatus::ok);
  CHECK(h.results[1].output == "after\n");
}

TEST_CASE("a duplicate task_id is ignored while queued, running and after it finished", "[tasks]") {
  Harness h;
  h.open();
  const Task t = make_task("t-dup", {"sleep", "0.2"});
  CHECK(h.submit(t).outcome == Admission::Outcome::queued);
  CHECK(h.submit(t).outcome == Admission::Outcome::duplicate);
  REQUIRE(h.run_until([&] { return h.runner->running().size() == 1; }));
  const Admission running = h.submit(t);
  CHECK(running.outcome == Admission::Outcome::duplicate);
  CHECK(running.reason == "task t-dup is already running");
  REQUIRE(h.run_until_results(1));
  CHECK(h.submit(t).outcome == Admission::Outcome::duplicate);
  h.open();  // the finished ids are persisted
  CHECK(h.submit(t).outcome == Admission::Outcome::duplicate);
  h.runner->poll(now_ms(), roomy());
  CHECK(h.results.size() == 1);
  CHECK(h.runner->counters().duplicates == 1);  // counters start at open
}

TEST_CASE("finished ids are remembered up to the configured number", "[tasks]") {
  Harness h;
  h.options.remembered_finished = 2;
  h.options.max_concurrent = 1;  // finish in submit order
  h.open();
  for (const char* id : {"a", "b", "c"}) h.submit(shell(id, "true"));
  REQUIRE(h.run_until_results(3));
  h.open();
  CHECK(h.submit(shell("a", "true")).outcome == Admission::Outcome::queued);  // forgotten
  CHECK(h.submit(shell("b", "true")).outcome == Admission::Outcome::duplicate);
  CHECK(h.submit(shell("c", "true")).outcome == Admission::Outcome::duplicate);
}

TEST_CASE("the task gets a minimal environment plus its own env", "[tasks]") {
  Harness h;
  h.open();
  ::setenv("NOVA_TASKS_TEST_SECRET", "leaked", 1);
  Task t = shell("t-env", "echo \"$GREETING|$NOVA_TASK_ID|${NOVA_TASKS_TEST_SECRET:-unset}|$PATH\"");
  t.env = {{"GREETING", "hello world"}};
  h.submit(t);
  REQUIRE(h.run_until_results(1));
  ::unsetenv("NOVA_TASKS_TEST_SECRET");
  CHECK(h.only_result().output == "hello world|t-env|unset|/usr/local/bin:/usr/bin:/bin\n");
}

TEST_CASE("a program that cannot be started fails with a clear reason", "[tasks]") {
  Harness h;
  h.open();

  SECTION("a path that is not executable") {
    const fs::path file = h.dir.path / "not-executable";
    std::ofstream(file) << "#!/bin/sh\necho no\n";
    h.options.allow.push_back(file.string());
    h.open();
    h.submit(make_task("t-noexec", {file.string()}));
    REQUIRE(h.run_until_results(1));
    CHECK(h.only_result().status == TaskStatus::failed);
    // Root may pass access(X_OK) only when some x bit is set; none is here.
    CHECK_THAT(reason_of(h.only_result()), Catch::Contains("cannot be executed: Permission denied"));
  }

  SECTION("a file execve refuses") {
    const fs::path file = h.dir.path / "garbage";
    std::ofstream(file) << "\x7f" "ELF garbage";
    fs::permissions(file, fs::perms::owner_all);
    h.options.allow.push_back(file.string());
    h.open();
    h.submit(make_task("t-badexec", {file.string()}));
    REQUIRE(h.run_until_results(1));
    CHECK(h.only_result().status == TaskStatus::failed);
    CHECK_THAT(reason_of(h.only_result()), Catch::StartsWith("cannot execute " + file.string() + ": "));
  }
}

TEST_CASE("output is a bounded tail, valid UTF-8", "[tasks]") {
  Harness h;
  h.options.output_tail_bytes = 64;
  h.open();
  h.submit(shell("t-chatty", "i=0; while [ $i -lt 20000 ]; do echo line$i; i=$((i+1)); done"));
  h.submit(shell("t-binary", "printf 'ok\\377\\376end\\n'"));
  REQUIRE(h.run_until_results(2));
  for (const TaskResult& r : h.results) {
    if (r.task_id == "t-chatty") {
      CHECK(r.output.size() <= 64);
      CHECK_THAT(r.output, Catch::EndsWith("line19998\nline19999\n"));
    } else {
      CHECK(r.output == "ok\xef\xbf\xbd\xef\xbf\xbd" "end\n");
    }
  }
  h.runner->set_output_tail_bytes(3);  // hot configuration
  h.submit(shell("t-short", "echo abcdef"));
  REQUIRE(h.run_until_results(3));
  CHECK(h.results.back().output == "ef\n");
}

// The agent has threads (Paho, LevelDB). A child that allocated between fork and exec
// could inherit a malloc lock held by another thread at the moment of fork and hang.
TEST_CASE("spawning while another thread allocates never hangs a child", "[tasks]") {
  Harness h;
  h.options.max_concurrent = 4;
  h.open();
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    std::vector<std::string> junk;
    while (!stop.load(std::memory_order_relaxed)) {
      junk.emplace_back(std::size_t{1} << (junk.size() % 16), 'x');
      if (junk.size() > 64) junk.clear();
    }
  });
  for (int i = 0; i < 60; ++i) h.submit(make_task("t-many-" + std::to_string(i), {"true"}));
  const bool all = h.run_until_results(60, roomy(), 60000);
  stop = true;
  churn.join();
  REQUIRE(all);
  for (const TaskResult& r : h.results) CHECK(r.status == TaskStatus::ok);
}

TEST_CASE("cpu_millis without a cgroup cpu controller runs and says it is not enforced", "[tasks]") {
  Harness h;
  h.open();
  INFO(h.runner->limit_support().detail);
  Task t = shell("t-cpu", "echo busy");
  t.cpu_millis = 500;
  h.submit(t);
  REQUIRE(h.run_until_results(1));
  CHECK(h.only_result().status == TaskStatus::ok);
  CHECK_THAT(reason_of(h.only_result()), Catch::StartsWith("cpu_millis 500 not enforced"));
}

TEST_CASE("next_deadline_ms follows timeouts and running children", "[tasks]") {
  Harness h;
  h.options.reap_interval_ms = 250;
  h.open();
  CHECK_FALSE(h.runner->next_deadline_ms(now_ms()).has_value());
  h.submit(make_task("t-tick", {"sleep", "30"}, 100));
  const Timestamp t0 = now_ms();
  h.runner->poll(t0, roomy());
  REQUIRE(h.runner->running().size() == 1);
  CHECK(h.runner->next_deadline_ms(t0) == 100);
  CHECK(h.runner->next_deadline_ms(t0 + 60) == 40);
  // Past the deadline: SIGTERM, then the grace period (2000 ms) or the reap interval.
  h.runner->poll(t0 + 100, roomy());
  CHECK(h.runner->running().front().terminating);
  CHECK(h.runner->next_deadline_ms(t0 + 100) == 250);
  REQUIRE(h.run_until_results(1));
  CHECK_FALSE(h.runner->next_deadline_ms(now_ms()).has_value());
}

// Runs only where this process may create cgroups under a cgroup v2 mount (root, or a
// delegated subtree named by NOVA_TEST_CGROUP_ROOT); elsewhere it reports why and passes.
TEST_CASE("tasks in per-task cgroups when a delegated cgroup v2 root exists", "[tasks][cgroup]") {
  fs::path mount;
  if (const char* env = std::getenv("NOVA_TEST_CGROUP_ROOT")) {
    mount = env;
  } else {
    std::ifstream mounts("/proc/self/mountinfo");
    for (std::string line; std::getline(mounts, line);) {
      std::istringstream in(line);
      std::string id, parent, dev, root, point, rest;
      in >> id >> parent >> dev >> root >> point;
      if (line.find(" - cgroup2 ") != std::string::npos) mount = point;
    }
  }
  const fs::path root = mount / ("nova-tasks-test-" + std::to_string(::getpid()));
  if (mount.empty() || ::mkdir(root.c_str(), 0755) != 0) {
    WARN("no cgroup v2 root this test may use (" << (mount.empty() ? "none mounted" : mount.string())
                                                 << "): per-task cgroups untested here");
    return;
  }
  struct RemoveRoot {
    fs::path p;
    ~RemoveRoot() { ::rmdir(p.c_str()); }
  } remove_root{root};

  Harness h;
  h.options.cgroup_root = root;
  h.open();
  const LimitSupport& s = h.runner->limit_support();
  WARN("cgroup support: " << s.detail);
  REQUIRE(s.cgroups);

  h.submit(shell("t-cg", "cat /proc/self/cgroup; sleep 30 & echo spawned"));
  REQUIRE(h.run_until_results(1));
  CHECK(h.only_result().status == TaskStatus::ok);
  CHECK_THAT(h.only_result().output, Catch::Contains(root.filename().string() + "/task-t-cg"));
  CHECK(h.run_until([&] { return !fs::exists(root / "task-t-cg"); }));

  if (s.cgroup_memory) {
    Task hog = shell("t-cg-hog", "x=$(head -c 536870912 /dev/zero | tr '\\0' a); echo ${#x}");
    hog.memory_mb = 64;
    h.submit(hog);
    REQUIRE(h.run_until_results(2));
    CHECK(h.results.back().status == TaskStatus::killed);
    CHECK_THAT(reason_of(h.results.back()), Catch::Contains("memory limit of 64 MB exceeded"));
  }
  h.runner.reset();
}

// ---- what a task may run (issue 10, item 6) ----------------------------------------------

TEST_CASE("a program the allow-list does not name is refused with the reason, counted and logged", "[tasks][policy]") {
  Harness h;
  h.open();
  const Admission a = h.submit(make_task("t-id", {"/usr/bin/id", "-u"}));
  CHECK(a.outcome == Admission::Outcome::refused);
  CHECK(h.submit(make_task("t-bare", {"id"})).outcome == Admission::Outcome::refused);
  CHECK(h.submit(make_task("t-rel", {"bin/sh", "-c", "true"})).outcome == Admission::Outcome::refused);
  REQUIRE(h.run_until_results(3));
  for (const TaskResult& r : h.results) {
    CHECK(r.status == TaskStatus::refused);
    CHECK_FALSE(r.started_ts.has_value());
  }
  CHECK(reason_of(h.results[0]) == "argv[0] '/usr/bin/id' resolves to /usr/bin/id, which is not a program in tasks.allow");
  CHECK(reason_of(h.results[1]) == "argv[0] 'id' is not the name of a program in tasks.allow");
  CHECK_THAT(reason_of(h.results[2]), Catch::Contains("is a relative path"));
  CHECK(h.runner->counters().refused_by_policy == 3);
  CHECK(h.runner->counters().refused == 3);
  CHECK_THAT(h.log, Catch::Contains("warning task_refused task_id=t-id rule=program_not_allowed"));

  SECTION("an empty allow-list refuses every task") {
    h.options.allow.clear();
    h.open();
    h.results.clear();
    CHECK(h.submit(shell("t-any", "true")).outcome == Admission::Outcome::refused);
    REQUIRE(h.run_until_results(1));
    CHECK(reason_of(h.only_result()) == "this agent runs no programs: its tasks.allow list is empty");
  }
}

TEST_CASE("neither a symlink nor '..' escapes the allow-list", "[tasks][policy]") {
  Harness h;
  h.open();
  // A link whose name is an allowed program's, pointing at one that is not.
  const fs::path links = h.dir.path / "bin";
  fs::create_directories(links);
  fs::create_symlink("/usr/bin/id", links / "sh");
  fs::create_symlink("/bin/sh", links / "my-shell");
  h.submit(make_task("t-link", {(links / "sh").string(), "-u"}));
  h.submit(make_task("t-dots", {"/bin/../usr/bin/id", "-u"}));
  // A link to an allowed program is that program, started as the list spells it.
  h.submit(make_task("t-good-link", {(links / "my-shell").string(), "-c", "echo \"$0\""}));
  REQUIRE(h.run_until_results(3));
  std::map<std::string, TaskResult> by_id;
  for (const TaskResult& r : h.results) by_id[r.task_id] = r;
  CHECK(by_id["t-link"].status == TaskStatus::refused);
  CHECK(reason_of(by_id["t-link"]) ==
        "argv[0] '" + (links / "sh").string() + "' resolves to /usr/bin/id, which is not a program in tasks.allow");
  CHECK(by_id["t-dots"].status == TaskStatus::refused);
  CHECK(by_id["t-good-link"].status == TaskStatus::ok);
  CHECK(by_id["t-good-link"].output == "/bin/sh\n");
}

TEST_CASE("a task's env may not set PATH, LD_* or other loader variables", "[tasks][policy]") {
  Harness h;
  h.open();
  const std::pair<const char*, const char*> bad[] = {
      {"LD_PRELOAD", "/tmp/evil-value.so"}, {"LD_LIBRARY_PATH", "/tmp/evil-value"}, {"PATH", "/tmp/evil-value"},
      {"GCONV_PATH", "/tmp/evil-value"},     {"PYTHONPATH", "/tmp/evil-value"},     {"BASH_ENV", "/tmp/evil-value"},
      {"HOME", "/tmp/evil-value"},           {"BAD=NAME", "evil-value"}};
  int n = 0;
  for (const auto& [name, value] : bad) {
    Task t = shell("t-env-" + std::to_string(n++), "echo ran");
    t.env = {{"HARMLESS", "ok"}, {name, value}};
    CHECK(h.submit(t).outcome == Admission::Outcome::refused);
  }
  REQUIRE(h.run_until_results(std::size(bad)));
  for (std::size_t i = 0; i < std::size(bad); ++i) {
    INFO(bad[i].first);
    CHECK(h.results[i].status == TaskStatus::refused);
    CHECK_THAT(reason_of(h.results[i]), Catch::StartsWith(std::string("env.") + bad[i].first + ": "));
    CHECK(reason_of(h.results[i]).find("evil-value") == std::string::npos);  // names, not values
  }
  CHECK(reason_of(h.results[0]) ==
        "env.LD_PRELOAD: may not be set by a task: LD_* variables change what programs load");
  CHECK(h.runner->counters().refused_by_policy == std::size(bad));
  CHECK_THAT(h.log, Catch::Contains("task_id=t-env-0 rule=env_forbidden"));
  CHECK(h.log.find("evil-value") == std::string::npos);
}

TEST_CASE("tasks run as the unprivileged tasks.user, without new privileges or inherited descriptors", "[tasks][policy]") {
  if (::geteuid() != 0) {
    WARN("not root: tasks run as the agent's own user, nothing to switch");
    return;
  }
  Harness h;
  h.options.allow.push_back("/usr/bin/id");
  h.open();
  const TaskUser& user = h.runner->task_user();
  CHECK(user.name == "nobody");
  CHECK(user.switched);
  CHECK(user.uid != 0);
  h.submit(make_task("t-uid", {"id", "-u"}));
  h.submit(make_task("t-gid", {"/usr/bin/id", "-G"}));
  // Its HOME is private (0700, its own), NoNewPrivs is set, only 0..2 are open.
  h.submit(shell("t-env", "stat -c '%a %u' \"$HOME\"; [ \"$HOME\" = \"$TMPDIR\" ] && [ \"$PWD\" = \"$HOME\" ] && echo same;"
                          " grep NoNewPrivs /proc/self/status; ls /proc/$$/fd; echo \"$USER\""));
  REQUIRE(h.run_until_results(3));
  std::map<std::string, TaskResult> by_id;
  for (const TaskResult& r : h.results) by_id[r.task_id] = r;
  CHECK(by_id["t-uid"].output == std::to_string(user.uid) + "\n");
  CHECK(by_id["t-gid"].output == std::to_string(user.gid) + "\n");
  INFO(by_id["t-env"].output);
  CHECK(by_id["t-env"].output == "700 " + std::to_string(user.uid) + "\nsame\nNoNewPrivs:\t1\n0\n1\n2\nnobody\n");
  // The private directory is gone once the task finished.
  std::size_t left = 0;
  for (const auto& e : fs::directory_iterator(fs::temp_directory_path())) {
    if (e.path().filename().string().starts_with("nova-task-t-env-")) ++left;
  }
  CHECK(left == 0);
}

TEST_CASE("root runs tasks only with allow_root", "[tasks][policy]") {
  if (::geteuid() != 0) {
    WARN("not root: tasks run as the agent's own user, nothing to switch");
    return;
  }
  Harness h;
  h.options.allow.push_back("/usr/bin/id");
  h.options.user = "root";
  auto refused = TaskRunner::open(h.options, [](const TaskResult&) {});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message() == "tasks.user: 'root' has uid 0: tasks run as root only with tasks.allow_root: true");
  h.options.user = "nova-no-such-user";
  auto missing = TaskRunner::open(h.options, [](const TaskResult&) {});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message() == "tasks.user: no user 'nova-no-such-user' on this host");

  h.options.user = "root";
  h.options.allow_root = true;
  h.open();
  CHECK(h.runner->task_user().root);
  h.submit(make_task("t-root", {"id", "-u"}));
  REQUIRE(h.run_until_results(1));
  CHECK(h.only_result().output == "0\n");
}

TEST_CASE("a task queued before a restart meets the allow-list in force when it starts", "[tasks][policy]") {
  Harness h;
  h.options.allow.push_back("/usr/bin/id");
  h.open();
  CHECK(h.submit(make_task("t-queued-id", {"id", "-u"})).outcome == Admission::Outcome::queued);
  h.options.allow.pop_back();  // the operator removed it, then the agent restarted
  h.open();
  REQUIRE(h.run_until_results(1));
  CHECK(h.only_result().status == TaskStatus::refused);
  CHECK(reason_of(h.only_result()) == "argv[0] 'id' is not the name of a program in tasks.allow");
  CHECK(h.runner->counters().refused_by_policy == 1);
}
