// Services on the agent: the restart and health state machine as pure logic with the
// test's own clock (ServiceSupervisor), then the task runner keeping real child processes
// running: restarted after a SIGKILL, killed and restarted after failed health checks,
// started again after the runner reopens, stopped by a cancel.
#include <signal.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "nova/agent/service_supervisor.h"
#include "nova/agent/tasks.h"
#include "task_harness.h"

using namespace nova::agent;
using namespace nova::agent::test;
using nova::schemas::ServiceSpec;
using nova::schemas::TaskStatus;
using Verdict = ServiceSupervisor::Verdict;

namespace {

HealthCheck check(std::uint32_t interval_s, std::uint32_t timeout_s, std::uint32_t threshold, std::uint32_t delay_s) {
  HealthCheck h;
  h.command = {"/bin/true"};
  h.interval_s = interval_s;
  h.timeout_s = timeout_s;
  h.failure_threshold = threshold;
  h.initial_delay_s = delay_s;
  return h;
}

}  // namespace

TEST_CASE("service back-off doubles from 1 s to 60 s and resets after 10 min of running", "[services][supervisor]") {
  ServiceSupervisor s(RestartPolicy::always, std::nullopt);
  Timestamp t = 1'000'000;
  s.started(t);
  const std::vector<Timestamp> waits = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
  for (std::size_t i = 0; i < waits.size(); ++i) {
    t += 500;  // a crash loop: each run lasts half a second
    const auto at = s.exited(t, 1, false);
    REQUIRE(at.has_value());
    CHECK(*at - t == waits[i]);
    CHECK(s.status().state == ServiceState::restarting);
    CHECK(s.status().last_exit == 1);
    t = *at;
    s.started(t);
    CHECK(s.restarts() == i + 1);
    CHECK(s.status().state == ServiceState::running);
  }
  // A run of 10 minutes is healthy: the next wait is 1 s again.
  t += ServiceSupervisor::kResetAfterMs;
  const auto at = s.exited(t, -9, false);
  REQUIRE(at.has_value());
  CHECK(*at - t == 1000);
  CHECK(s.status().last_exit == -9);
  // Just under 10 minutes is not.
  s.started(*at);
  const auto again = s.exited(*at + ServiceSupervisor::kResetAfterMs - 1, 0, false);
  CHECK(*again - (*at + ServiceSupervisor::kResetAfterMs - 1) == 2000);
}

TEST_CASE("restart policies: always, on-failure and never", "[services][supervisor]") {
  SECTION("always restarts a clean exit too") {
    ServiceSupervisor s(RestartPolicy::always, std::nullopt);
    s.started(0);
    CHECK(s.exited(10, 0, false).has_value());
  }
  SECTION("on-failure ends on exit 0, restarts on a non-zero exit, a signal or a health kill") {
    ServiceSupervisor s(RestartPolicy::on_failure, std::nullopt);
    s.started(0);
    CHECK(s.exited(10, 3, false).has_value());
    s.started(2000);
    CHECK(s.exited(2010, -9, false).has_value());
    s.started(5000);
    CHECK(s.exited(5010, 0, true).has_value());  // killed for its health: a failure even at 0
    s.started(9000);
    CHECK_FALSE(s.exited(9010, 0, false).has_value());
    CHECK(s.restarts() == 3);
  }
  SECTION("never ends on any exit") {
    ServiceSupervisor s(RestartPolicy::never, std::nullopt);
    s.started(0);
    CHECK_FALSE(s.exited(10, 1, false).has_value());
    CHECK(s.restarts() == 0);
  }
}

TEST_CASE("health checks: initial delay, interval, failure threshold and reset on a pass", "[services][supervisor]") {
  ServiceSupervisor s(RestartPolicy::always, check(5, 1, 3, 2));
  s.started(100'000);
  CHECK(s.check_due() == 102'000);  // initial_delay_s
  s.check_started(102'000);
  CHECK_FALSE(s.check_due().has_value());  // one check at a time
  CHECK(s.check_finished(102'050, true) == Verdict::healthy);
  CHECK(s.check_due() == 107'000);  // interval_s after the previous start
  s.check_started(107'000);
  CHECK(s.check_finished(107'010, false) == Verdict::failing);
  CHECK(s.status().state == ServiceState::unhealthy);
  CHECK(s.status().health_failures == 1);
  s.check_started(112'000);
  CHECK(s.check_finished(112'010, true) == Verdict::healthy);  // a pass resets the count
  CHECK(s.status().state == ServiceState::running);
  for (Timestamp t : {Timestamp{117'000}, Timestamp{122'000}}) {
    s.check_started(t);
    CHECK(s.check_finished(t + 10, false) == Verdict::failing);
  }
  s.check_started(127'000);
  CHECK(s.check_finished(127'010, false) == Verdict::restart);
  CHECK(s.status().health_failures == 3);
  // Killed on that verdict: restarted, and the checks start over after the delay.
  const auto at = s.exited(127'500, -15, true);
  REQUIRE(at.has_value());
  CHECK_FALSE(s.check_due().has_value());  // none while waiting to restart
  s.started(*at);
  CHECK(s.status().health_failures == 0);
  CHECK(s.check_due() == *at + 2000);
}

TEST_CASE("without a health check no check is ever due", "[services][supervisor]") {
  ServiceSupervisor s(RestartPolicy::always, std::nullopt);
  s.started(0);
  CHECK_FALSE(s.check_due().has_value());
}

namespace {

Task service(const std::string& id, const std::string& script, std::optional<HealthCheck> health = std::nullopt,
             RestartPolicy policy = RestartPolicy::always) {
  Task t = shell(id, script, 1);  // a service's timeout_ms is not enforced: 1 ms would end a task at once
  t.service = ServiceSpec{policy, std::move(health)};
  return t;
}

// The latest "running" report of `id`, if any.
const TaskResult* last_report(const std::vector<TaskResult>& results, const std::string& id) {
  for (auto it = results.rbegin(); it != results.rend(); ++it) {
    if (it->task_id == id && it->status == TaskStatus::running) return &*it;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("a service killed by SIGKILL is restarted and reports its restart count", "[services][tasks]") {
  Harness h;
  h.open();
  h.submit(service("svc-1", "exec sleep 30"));
  REQUIRE(h.run_until([&] { return h.runner->running().size() == 1; }));
  const TaskResult* first = last_report(h.results, "svc-1");
  REQUIRE(first != nullptr);
  CHECK(first->service->state == ServiceState::running);
  CHECK(first->service->restarts == 0);
  const int pid = h.runner->running().front().pid;
  REQUIRE(::kill(pid, SIGKILL) == 0);
  // Reported restarting (exit -9), then running again with a new process after 1 s.
  REQUIRE(h.run_until([&] {
    const TaskResult* r = last_report(h.results, "svc-1");
    return r->service->state == ServiceState::running && r->service->restarts == 1;
  }));
  bool saw_restarting = false;
  for (const TaskResult& r : h.results) {
    if (r.service && r.service->state == ServiceState::restarting) {
      saw_restarting = true;
      CHECK(r.service->last_exit == -SIGKILL);
      CHECK(r.reason.value_or("").find("restart in 1000 ms") != std::string::npos);
    }
  }
  CHECK(saw_restarting);
  REQUIRE(h.runner->running().size() == 1);
  CHECK(h.runner->running().front().pid != pid);
  CHECK(h.runner->counters().service_restarts == 1);
  // Nothing final was reported: the run goes on.
  for (const TaskResult& r : h.results) CHECK(r.status == TaskStatus::running);
}

TEST_CASE("a service failing its health check failure_threshold times is killed and restarted", "[services][tasks]") {
  Harness h;
  h.options.kill_grace_ms = 500;
  h.open();
  const fs::path flag = h.dir.path / "healthy";
  std::ofstream(flag) << "ok";
  ::chmod(h.dir.path.c_str(), 0755);
  HealthCheck hc;
  hc.command = {"/bin/sh", "-c", "test -f " + flag.string()};
  hc.interval_s = 1;
  hc.timeout_s = 1;
  hc.failure_threshold = 2;
  h.submit(service("svc-h", "exec sleep 30", hc));
  REQUIRE(h.run_until([&] { return h.runner->running().size() == 1; }));
  const int pid = h.runner->running().front().pid;
  fs::remove(flag);
  REQUIRE(h.run_until([&] {
    const TaskResult* r = last_report(h.results, "svc-h");
    return r->service->restarts == 1 && r->service->state == ServiceState::running;
  }, roomy(), 20000));
  bool unhealthy = false;
  for (const TaskResult& r : h.results) unhealthy = unhealthy || (r.service && r.service->state == ServiceState::unhealthy);
  CHECK(unhealthy);
  CHECK(h.runner->counters().health_kills == 1);
  CHECK(h.runner->counters().health_check_failures >= 2);
  CHECK(h.log.find("health_check_failed task_id=svc-h") != std::string::npos);
  CHECK(h.runner->running().front().pid != pid);
  CHECK(live_in_group(pid) == 0);
}

TEST_CASE("a health check that outlives timeout_s fails and is killed", "[services][tasks]") {
  Harness h;
  h.open();
  HealthCheck hc;
  hc.command = {"/bin/sleep", "30"};
  hc.interval_s = 1;
  hc.timeout_s = 1;
  hc.failure_threshold = 5;
  h.submit(service("svc-slow", "exec sleep 30", hc));
  REQUIRE(h.run_until([&] { return h.runner->counters().health_check_failures >= 1; }, roomy(), 10000));
  CHECK(h.log.find("detail=\"timed out after 1 s\"") != std::string::npos);
  const TaskResult* r = last_report(h.results, "svc-slow");
  CHECK(r->service->state == ServiceState::unhealthy);
}

TEST_CASE("a service with restart policy never ends with its first exit", "[services][tasks]") {
  Harness h;
  h.open();
  h.submit(service("svc-once", "exit 3", std::nullopt, RestartPolicy::never));
  REQUIRE(h.run_until([&] { return !h.results.empty() && h.results.back().status != TaskStatus::running; }));
  const TaskResult& r = h.results.back();
  CHECK(r.status == TaskStatus::failed);
  CHECK(r.exit_code == 3);
  REQUIRE(r.service.has_value());
  CHECK(r.service->restarts == 0);
  CHECK(h.runner->running().empty());
}

TEST_CASE("a service survives the runner closing: it starts again when it reopens", "[services][tasks]") {
  Harness h;
  h.open();
  h.submit(service("svc-keep", "exec sleep 30"));
  REQUIRE(h.run_until([&] { return h.runner->running().size() == 1; }));
  const int pid = h.runner->running().front().pid;
  h.runner.reset();  // as the agent's exit (or its SIGKILL: PR_SET_PDEATHSIG)
  CHECK(live_in_group(pid) == 0);
  h.results.clear();
  h.open();
  CHECK(h.log.find("service_resumed task_id=svc-keep") != std::string::npos);
  REQUIRE(h.run_until([&] { return h.runner->running().size() == 1; }));
  CHECK(h.runner->running().front().task_id == "svc-keep");
  for (const TaskResult& r : h.results) CHECK(r.status == TaskStatus::running);  // never reported failed
  // The duplicate delivery of its task is still ignored.
  CHECK(h.submit(service("svc-keep", "exec sleep 30")).outcome == Admission::Outcome::duplicate);
}

TEST_CASE("cancel stops a service for good, running or waiting to restart", "[services][tasks][cancel]") {
  Harness h;
  h.open();
  SECTION("running: SIGTERM, status cancelled, no restart") {
    h.submit(service("svc-c", "exec sleep 30"));
    REQUIRE(h.run_until([&] { return h.runner->running().size() == 1; }));
    const int pid = h.runner->running().front().pid;
    REQUIRE(h.runner->cancel("svc-c", "operator", now_ms()).value() == CancelOutcome::stopping);
    REQUIRE(h.run_until([&] { return h.results.back().status == TaskStatus::cancelled; }));
    CHECK(h.results.back().service.has_value());
    CHECK(live_in_group(pid) == 0);
    CHECK(h.runner->running().empty());
    CHECK(h.runner->counters().service_restarts == 0);
  }
  SECTION("waiting out its back-off: cancelled at once") {
    h.submit(service("svc-w", "exit 1"));
    REQUIRE(h.run_until([&] {
      const TaskResult* r = last_report(h.results, "svc-w");
      return r != nullptr && r->service->state == ServiceState::restarting;
    }));
    REQUIRE(h.runner->cancel("svc-w", "operator", now_ms()).value() == CancelOutcome::not_started);
    REQUIRE(h.run_until([&] { return h.results.back().status == TaskStatus::cancelled; }));
    CHECK(reason_of(h.results.back()) == "cancelled: operator while it waited to restart");
    CHECK(h.runner->running().empty());
  }
}
