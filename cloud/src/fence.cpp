#include "nova/cloud/fence.h"

namespace nova::cloud {

AfterStop after_stop(schemas::TaskStatus old_run_status) {
  switch (old_run_status) {
    case schemas::TaskStatus::cancelled:
    case schemas::TaskStatus::refused:
      return AfterStop::start_next;
    case schemas::TaskStatus::ok:
    case schemas::TaskStatus::failed:
    case schemas::TaskStatus::timeout:
    case schemas::TaskStatus::killed:
      return AfterStop::outcome_stands;
    case schemas::TaskStatus::running:  // a service's report: on_result never passes it here
      return AfterStop::outcome_stands;
  }
  return AfterStop::outcome_stands;
}

schemas::TaskCancel cancel_message(const Fence& fence, Timestamp now) {
  schemas::TaskCancel c;
  c.task_id = fence.task_id;
  if (!fence.reason.empty()) c.reason = fence.reason.substr(0, 4096);
  c.issued_ts = now;
  return c;
}

bool cancel_due(const Fence& fence, Timestamp now) { return now >= fence.last_sent + kCancelRepeatMs; }

}  // namespace nova::cloud
