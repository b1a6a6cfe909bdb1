// libFuzzer target: the agent's handling of its downward messages. The first input byte
// picks the topic (ack, task, config, model, verdict, cancel of this node, a task for
// another node, a reading of a local sensor), the rest is the payload, delivered with
// Agent::deliver as the loop does: the task inbox's hand-over, the control gate (signed
// envelopes decoded; unsigned messages let through, see agent_fuzz.h), decode, and what the
// agent does with it (outbox acks, task admission with its refusal result encoded and
// stored, a config applied over the agent's own, a model put in force). Checked: no
// handler throws, and every task result the agent stored decodes. A model payload that
// decodes and compiles as a local model (local_model.h) is also evaluated on a sample
// that has all of its features and on one that has none: a score must be finite.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "agent_fuzz.h"
#include "nova/models/local_model.h"

namespace {

void evaluate_model(const std::string& payload) {
  auto model = nova::schemas::decode_cbor<nova::schemas::Model>(payload);
  if (!model) return;
  auto compiled = nova::models::LocalModel::compile(*model);
  if (!compiled) return;
  nova::models::LocalModel m = std::move(compiled).value();
  nova::schemas::MetricSample full;
  full.temp_c = 40;
  full.power_w = 3;
  full.throttled = true;
  double v = -1e6;
  for (const std::string& name : m.features()) full.extra[name] = (v = -v * 0.37 + 1.5);
  nova::schemas::MetricSample empty;
  for (const nova::schemas::MetricSample* s : {&full, &empty}) {
    const auto e = m.evaluate(*s);
    if (e.status == nova::models::LocalModel::Status::scored && !std::isfinite(e.score)) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string down = std::string("nova/v1/down/") + nova::fuzz::kSite + "/";
  const std::string own = down + nova::fuzz::kNode + "/";
  const std::string topics[] = {
      own + "ack",  own + "task", own + "config", own + "model", own + "verdict", down + "someone-else/task",
      std::string("nova/v1/sensor/") + nova::fuzz::kNode + "/t1", own + "cancel",
  };
  const std::string& topic = topics[data[0] % std::size(topics)];
  const std::string payload(reinterpret_cast<const char*>(data + 1), size - 1);

  auto& f = nova::fuzz::agent_under_fuzz();
  const std::uint64_t last = f.agent->outbox().next_seq("results") - 1;
  f.deliver(topic, payload);
  f.check_stored<nova::schemas::TaskResult>("results", last);
  if (topic == own + "model") evaluate_model(payload);
  return 0;
}
