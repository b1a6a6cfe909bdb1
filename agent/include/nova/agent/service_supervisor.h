// One service's restart and health state: pure logic, every call given the time, so
// tests drive it with their own clock. The task runner (tasks.h) owns one per running
// service and does what it says: start the process again at restart_at(), run the
// health check when check_due(), kill the process when a check verdict says so.
//
// Restarts (as systemd's Restart= with a growing RestartSec, and Kubernetes' CrashLoop
// back-off):
//   - restart policy "always": every exit restarts; "on-failure": an exit other than
//     code 0 restarts (a kill for failed health checks is a failure); "never": the
//     first exit ends the service.
//   - the first restart waits kFirstBackoffMs (1 s), each further one twice as long,
//     at most kMaxBackoffMs (60 s); a run that lasted kResetAfterMs (10 min) or longer
//     resets the wait to 1 s.
//   - restarts() counts the restarts done (a start other than the first).
// Health checks (as a Kubernetes exec liveness probe):
//   - the first check is due initial_delay_s after the start, each next one interval_s
//     after the previous one started; no check runs while one is running.
//   - a check passes when its command exits 0 within timeout_s (the runner kills it
//     then: a failure). failure_threshold failures in a row make the verdict `restart`
//     (the runner kills the service; its exit then counts as a failure); a pass resets
//     the count.
//
// Not thread-safe; owned by the task runner's thread.
#pragma once

#include <cstdint>
#include <optional>

#include "nova/schemas/messages.h"

namespace nova::agent {

using schemas::HealthCheck;
using schemas::RestartPolicy;
using schemas::ServiceState;
using schemas::ServiceStatus;
using schemas::Timestamp;

class ServiceSupervisor {
 public:
  static constexpr Timestamp kFirstBackoffMs = 1000;
  static constexpr Timestamp kMaxBackoffMs = 60'000;
  static constexpr Timestamp kResetAfterMs = 600'000;

  ServiceSupervisor(RestartPolicy policy, std::optional<HealthCheck> health);

  // The process started at `now` (the first start, or a restart).
  void started(Timestamp now);

  // The process exited at `now` with `exit_code` (-N: killed by signal N); `health_kill`:
  // the runner killed it on a `restart` verdict. Returns when to start it again, or none
  // when the restart policy ends the service.
  std::optional<Timestamp> exited(Timestamp now, std::int64_t exit_code, bool health_kill);

  // When the next health check is due while the process runs and no check runs; none
  // without a health check or while waiting to restart.
  std::optional<Timestamp> check_due() const;
  void check_started(Timestamp now);

  enum class Verdict { healthy, failing, restart };
  // The running check finished: `passed` (exit 0 within timeout_s) or not.
  Verdict check_finished(Timestamp now, bool passed);

  // When a waiting restart is due; none while the process runs.
  std::optional<Timestamp> restart_at() const { return restart_at_; }
  std::uint64_t restarts() const { return restarts_; }
  const std::optional<HealthCheck>& health() const { return health_; }
  // What the service reports upward (TaskResult::service).
  ServiceStatus status() const;

 private:
  RestartPolicy policy_;
  std::optional<HealthCheck> health_;
  bool ever_started_ = false;
  Timestamp started_at_ = 0;
  std::optional<Timestamp> restart_at_;
  Timestamp next_backoff_ = kFirstBackoffMs;
  std::uint64_t restarts_ = 0;
  std::optional<std::int64_t> last_exit_;
  std::uint32_t failures_ = 0;   // failed checks in a row
  std::optional<Timestamp> next_check_;
  bool checking_ = false;
};

}  // namespace nova::agent
