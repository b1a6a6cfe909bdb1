#include "nova/agent/service_supervisor.h"

#include <algorithm>

namespace nova::agent {

ServiceSupervisor::ServiceSupervisor(RestartPolicy policy, std::optional<HealthCheck> health)
    : policy_(policy), health_(std::move(health)) {}

void ServiceSupervisor::started(Timestamp now) {
  if (ever_started_) ++restarts_;
  ever_started_ = true;
  started_at_ = now;
  restart_at_.reset();
  failures_ = 0;
  checking_ = false;
  next_check_.reset();
  if (health_) next_check_ = now + static_cast<Timestamp>(health_->initial_delay_s) * 1000;
}

std::optional<Timestamp> ServiceSupervisor::exited(Timestamp now, std::int64_t exit_code, bool health_kill) {
  last_exit_ = exit_code;
  checking_ = false;
  next_check_.reset();
  const bool failed = health_kill || exit_code != 0;
  const bool restart = policy_ == RestartPolicy::always || (policy_ == RestartPolicy::on_failure && failed);
  if (!restart) return std::nullopt;
  // A run that stayed up long enough is not part of a crash loop: start over at 1 s.
  if (now >= started_at_ + kResetAfterMs) next_backoff_ = kFirstBackoffMs;
  restart_at_ = now + next_backoff_;
  next_backoff_ = std::min(next_backoff_ * 2, kMaxBackoffMs);
  return restart_at_;
}

std::optional<Timestamp> ServiceSupervisor::check_due() const {
  if (checking_ || restart_at_) return std::nullopt;
  return next_check_;
}

void ServiceSupervisor::check_started(Timestamp now) {
  checking_ = true;
  if (health_) next_check_ = now + static_cast<Timestamp>(health_->interval_s) * 1000;
}

ServiceSupervisor::Verdict ServiceSupervisor::check_finished(Timestamp, bool passed) {
  checking_ = false;
  if (passed) {
    failures_ = 0;
    return Verdict::healthy;
  }
  ++failures_;
  if (health_ && failures_ >= health_->failure_threshold) return Verdict::restart;
  return Verdict::failing;
}

ServiceStatus ServiceSupervisor::status() const {
  ServiceStatus s;
  s.state = restart_at_ ? ServiceState::restarting : failures_ > 0 ? ServiceState::unhealthy : ServiceState::running;
  s.restarts = restarts_;
  s.last_exit = last_exit_;
  s.health_failures = std::min<std::uint32_t>(failures_, 100);
  return s;
}

}  // namespace nova::agent
