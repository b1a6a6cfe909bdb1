// Fencing: a workload's old run is stopped before its new run starts.
//
// A migration (and a rollback to the source) moves a workload from a node that is still
// alive. nova-cloud then sends the old run a signed TaskCancel (down kind "cancel") and
// holds the new run's task until the old run is known stopped:
//   - the old run's result arrives (the agent answers a cancel with the task's result:
//     "cancelled", or the result it had reached before the cancel came), or
//   - the old run's node is declared dead (its will, its goodbye, a bridge above it,
//     missed heartbeats: the dead-node detection of docs/cloud.md).
// Until then the cancel is repeated every kCancelRepeatMs (a cancel is not kept in the
// agent's inbox: one lost to a crash is sent again). A failover needs no wait: the old
// node is already declared dead; its run is sent a cancel all the same, for the case
// the node comes back.
//
// An operator's cancel (POST /api/v1/workloads/<id>/cancel) is a fence with no next run:
// the workload ends "cancelled" once its run is known stopped.
#pragma once

#include <optional>
#include <string>

#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::cloud {

using schemas::Timestamp;

// How often a cancel is sent again while its run has not answered.
inline constexpr Timestamp kCancelRepeatMs = 5000;

// A run being stopped, and what starts once it has.
struct Fence {
  std::string task_id;     // the run being stopped
  std::string node;        // where it runs
  std::string site;        // that node's site path (the cancel's down topic)
  std::string reason;      // sent in the cancel, ends up in the run's result
  Timestamp since = 0;     // the first cancel
  Timestamp last_sent = 0; // the latest cancel
  // The task of the run that starts once the old one has stopped, and the node it goes
  // to; none for an operator's cancel.
  std::optional<schemas::Task> next;
  std::string next_node;
  std::string next_site;
};

// What the old run's result means for the fence that waits on it.
enum class AfterStop {
  start_next,       // stopped by the cancel (or never ran: refused): the next run may start
  outcome_stands,   // it ended on its own before the cancel took effect: its outcome is the workload's
};
AfterStop after_stop(schemas::TaskStatus old_run_status);

// The cancel to send (again) for `fence` at `now`.
schemas::TaskCancel cancel_message(const Fence& fence, Timestamp now);
// Whether the cancel is due again.
bool cancel_due(const Fence& fence, Timestamp now);

// A workload's fence as nova-cloud keeps it in its store, so that a restart during the
// wait neither loses the held run nor starts it early: a JSON object with the fence's
// fields and "workload_id"; "next" is the held task as the codec writes it in JSON.
std::string fence_to_json(const std::string& workload_id, const Fence& fence);
struct KeptFence {
  std::string workload_id;
  Fence fence;
};
schemas::Result<KeptFence> fence_from_json(const std::string& json);

}  // namespace nova::cloud
