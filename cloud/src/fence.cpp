#include "nova/cloud/fence.h"

#include <nlohmann/json.hpp>

#include "nova/schemas/codec.h"

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

std::string fence_to_json(const std::string& workload_id, const Fence& fence) {
  nlohmann::json j{{"workload_id", workload_id}, {"task_id", fence.task_id}, {"node", fence.node},
                   {"site", fence.site},         {"reason", fence.reason},   {"since", fence.since},
                   {"last_sent", fence.last_sent}};
  if (fence.next) {
    j["next"] = nlohmann::json::parse(schemas::encode_json(*fence.next));
    j["next_node"] = fence.next_node;
    j["next_site"] = fence.next_site;
  }
  return j.dump();
}

schemas::Result<KeptFence> fence_from_json(const std::string& json) {
  const auto j = nlohmann::json::parse(json, nullptr, false);
  if (!j.is_object()) return schemas::Error{"fence", "not a JSON object"};
  KeptFence k;
  try {
    k.workload_id = j.at("workload_id").get<std::string>();
    k.fence.task_id = j.at("task_id").get<std::string>();
    k.fence.node = j.at("node").get<std::string>();
    k.fence.site = j.at("site").get<std::string>();
    k.fence.reason = j.at("reason").get<std::string>();
    k.fence.since = j.at("since").get<Timestamp>();
    k.fence.last_sent = j.at("last_sent").get<Timestamp>();
    if (j.contains("next")) {
      auto next = schemas::decode_json<schemas::Task>(j["next"].dump());
      if (!next) return schemas::Error{"fence.next", next.error().message()};
      k.fence.next = std::move(next).value();
      k.fence.next_node = j.at("next_node").get<std::string>();
      k.fence.next_site = j.at("next_site").get<std::string>();
    }
  } catch (const nlohmann::json::exception& e) {
    return schemas::Error{"fence", e.what()};
  }
  return k;
}

}  // namespace nova::cloud
