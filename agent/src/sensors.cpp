#include "nova/agent/sensors.h"

#include "nova/schemas/codec.h"

namespace nova::agent {

namespace {

bool looks_like_json(std::string_view payload) {
  for (char c : payload) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    return c == '{';
  }
  return false;
}

}  // namespace

std::optional<SensorIngest::Refusal> SensorIngest::accept(const std::string& sensor, std::string_view payload,
                                                          schemas::Timestamp now) {
  const bool json = looks_like_json(payload);
  auto reading = json ? schemas::decode_json<schemas::SensorReading>(payload)
                      : schemas::decode_cbor<schemas::SensorReading>(payload);
  if (!reading) {
    ++counters_.refused;
    Refusal r;
    r.error = schemas::SensorError{sensor, now, reading.error().path, reading.error().reason};
    if (json) {
      r.payload = schemas::encode_json(r.error);
    } else {
      const schemas::Bytes bytes = schemas::encode_cbor(r.error);
      r.payload.assign(bytes.begin(), bytes.end());
    }
    return r;
  }
  ++counters_.accepted;
  for (const auto& [name, value] : reading->values) {
    const std::string key = "sensor." + sensor + "." + name;
    if (latest_.size() >= max_gauges_ && latest_.count(key) == 0) continue;  // full: keep those we have
    latest_[key] = value;
  }
  return std::nullopt;
}

void SensorIngest::merge_into(std::map<std::string, double>& extra) {
  for (const auto& [key, value] : latest_) {
    if (extra.size() >= 256) break;
    extra[key] = value;
  }
  latest_.clear();
}

}  // namespace nova::agent
