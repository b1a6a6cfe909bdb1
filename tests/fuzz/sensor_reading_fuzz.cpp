// libFuzzer target: the agent's sensor-reading handler, input = one reading's payload.
// Checked: the handler never throws (Agent::deliver on the sensor topic); a refused
// reading's error reply decodes in the reading's format and fits sensor.cddl; accepted
// readings always make a metrics batch that decodes, both in SensorIngest alone and in
// the batch the agent stores after its next sample.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "agent_fuzz.h"
#include "nova/agent/sensors.h"

namespace {

using namespace nova;

schemas::MetricSample a_sample() {
  schemas::MetricSample s;
  s.ts = 1732650000000;
  s.cpu_pct = 12.5;
  s.extra["host.load"] = 1.25;
  return s;
}

void check_reply(const agent::SensorIngest::Refusal& r) {
  if (r.error.reason.empty() || r.error.reason.size() > 4096 || r.error.field.size() > 256) std::abort();
  auto as_json = schemas::decode_json<schemas::SensorError>(r.payload);
  auto as_cbor = schemas::decode_cbor<schemas::SensorError>(r.payload);
  const bool ok = (as_json && as_json.value() == r.error) || (as_cbor && as_cbor.value() == r.error);
  if (!ok) std::abort();
}

void check_batch_of_accepted(agent::SensorIngest& ingest) {
  schemas::MetricsBatch batch;
  batch.position = {fuzz::kNode, "metrics", 1};
  batch.encoding = schemas::BatchEncoding::qdelta;
  batch.samples.push_back(a_sample());
  ingest.merge_into(batch.samples.back().extra);
  if (!schemas::decode_cbor<schemas::MetricsBatch>(schemas::encode_cbor(batch))) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string payload(reinterpret_cast<const char*>(data), size);
  // A long sensor id for odd sizes: value names then overflow the 64-byte gauge name.
  const std::string sensor = size % 2 == 1 ? std::string(60, 's') : std::string("t1");

  agent::SensorIngest ingest;
  if (auto refused = ingest.accept(sensor, payload, 1)) {
    check_reply(*refused);
  } else {
    check_batch_of_accepted(ingest);
  }

  auto& f = fuzz::agent_under_fuzz();
  const std::uint64_t last = f.agent->outbox().next_seq("metrics") - 1;
  f.deliver(std::string("nova/v1/sensor/") + fuzz::kNode + "/" + sensor, payload);
  f.agent->add_sample(a_sample());
  f.agent->flush_batch();
  f.check_stored<schemas::MetricsBatch>("metrics", last);
  return 0;
}
