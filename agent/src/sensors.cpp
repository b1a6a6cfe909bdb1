#include "nova/agent/sensors.h"

#include <algorithm>

#include "nova/schemas/codec.h"
#include "nova/schemas/sensor_gauges.h"
#include "nova/schemas/topic.h"

namespace nova::agent {

namespace {

bool looks_like_json(std::string_view payload) {
  for (char c : payload) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    return c == '{';
  }
  return false;
}

// `text` made valid UTF-8 and cut to at most `max` bytes, never inside a character.
std::string fitted(std::string_view text, std::size_t max) {
  std::string s = schemas::printable_utf8(text);
  if (s.size() <= max) return s;
  std::size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) --cut;  // a continuation byte
  s.resize(cut);
  return s;
}

// sensor.cddl: sensor-error's field is at most 256 bytes, its reason 1 to 4096.
constexpr std::size_t kMaxField = 256;
constexpr std::size_t kMaxReason = 4096;

}  // namespace

SensorIngest::Refusal sensor_refusal(const std::string& sensor, schemas::Timestamp now, std::string_view field,
                                     std::string_view reason, bool json) {
  SensorIngest::Refusal r;
  r.error = schemas::SensorError{sensor, now, fitted(field, kMaxField), fitted(reason, kMaxReason)};
  if (r.error.reason.empty()) r.error.reason = "refused";
  if (json) {
    r.payload = schemas::encode_json(r.error);
  } else {
    const schemas::Bytes bytes = schemas::encode_cbor(r.error);
    r.payload.assign(bytes.begin(), bytes.end());
  }
  return r;
}

std::optional<SensorIngest::Refusal> SensorIngest::accept(const std::string& sensor, std::string_view payload,
                                                          schemas::Timestamp now, schemas::SensorReading* accepted) {
  const bool json = looks_like_json(payload);
  auto refuse = [&](std::string_view field, std::string_view reason) {
    ++counters_.refused;
    return sensor_refusal(sensor, now, field, reason, json);
  };
  auto reading = json ? schemas::decode_json<schemas::SensorReading>(payload)
                      : schemas::decode_cbor<schemas::SensorReading>(payload);
  if (!reading) {
    // The whole payload is at fault when it is no well-formed document, or is one but
    // not a map (the error then names the root): field "" (sensor.cddl).
    const schemas::Error& e = reading.error();
    const bool whole = e.whole_input || e.path == schemas::root_name<schemas::SensorReading>();
    return refuse(whole ? std::string_view() : std::string_view(e.path), e.reason);
  }
  // Check every value before keeping any: a reading is taken whole or refused whole.
  const std::string prefix = schemas::sensor_gauge_prefix(sensor);
  std::size_t added = 0;  // gauges this reading adds to those waiting
  for (const auto& [name, value] : reading->values) {
    const std::string key = prefix + name;
    const bool personal = privacy_.is_personal(sensor, name);
    // A personal value's longest gauge name is its aggregate's ".count".
    const std::string longest = personal ? key + ".count" : key;
    if (!topics::Id::valid(longest)) {
      return refuse("reading.values." + name,
                    "gauge name \"" + longest + "\" is " + std::to_string(longest.size()) +
                        " bytes, over the 64 of an id (sensor id and value name are too long together)");
    }
    if (personal ? windows_.count(key) == 0 : latest_.count(key) == 0) added += personal ? kGaugesPerWindow : 1;
  }
  const std::size_t own = gauges_of_.count(sensor) != 0 ? gauges_of_[sensor] : 0;
  if (own + added > max_gauges_per_sensor_) {
    return refuse("reading.values", "sensor " + sensor + " already has " + std::to_string(own) +
                                        " gauges waiting for the next sample; at most " +
                                        std::to_string(max_gauges_per_sensor_) + " per sensor");
  }
  if (gauges_waiting() + added > max_gauges_) {
    return refuse("reading.values", std::to_string(gauges_waiting()) +
                                        " sensor gauges already wait for the next sample; at most " +
                                        std::to_string(max_gauges_));
  }
  ++counters_.accepted;
  for (const auto& [name, value] : reading->values) {
    const std::string key = prefix + name;
    if (!privacy_.is_personal(sensor, name)) {
      latest_[key] = value;
      continue;
    }
    auto [it, opened] = windows_.try_emplace(key, Window{sensor, now});
    Window& w = it->second;
    w.min = opened || w.count == 0 ? value : std::min(w.min, value);
    w.max = opened || w.count == 0 ? value : std::max(w.max, value);
    w.sum += value;
    ++w.count;
  }
  if (added > 0) gauges_of_[sensor] = own + added;
  if (accepted != nullptr) *accepted = std::move(reading).value();
  return std::nullopt;
}

void SensorIngest::merge_into(std::map<std::string, double>& extra, schemas::Timestamp now) {
  for (const auto& [key, value] : latest_) {
    if (extra.size() >= 256) break;
    extra[key] = value;
  }
  latest_.clear();
  for (auto it = windows_.begin(); it != windows_.end();) {
    const Window& w = it->second;
    const bool passed = now >= w.opened && now - w.opened >= privacy_.window_ms;
    if (!passed || extra.size() + kGaugesPerWindow > 256) {
      ++it;
      continue;
    }
    extra[it->first + ".count"] = static_cast<double>(w.count);
    if (w.count >= privacy_.min_readings) {
      extra[it->first + ".mean"] = w.sum / static_cast<double>(w.count);
      extra[it->first + ".min"] = w.min;
      extra[it->first + ".max"] = w.max;
    }
    it = windows_.erase(it);
  }
  // What still waits is the windows that stay open.
  gauges_of_.clear();
  for (const auto& [key, w] : windows_) gauges_of_[w.sensor] += kGaugesPerWindow;
}

std::uint64_t SensorIngest::forget(const std::optional<std::string>& sensor) {
  const std::string prefix = sensor ? schemas::sensor_gauge_prefix(*sensor) : "sensor.";
  const auto matches = [&](const auto& entry) { return entry.first.starts_with(prefix); };
  const std::uint64_t dropped = std::erase_if(latest_, matches) + kGaugesPerWindow * std::erase_if(windows_, matches);
  // The same sensors as the prefix matched (a sensor id that extends another with '.'
  // shares its gauge prefix, so it goes with it).
  std::erase_if(gauges_of_, [&](const auto& entry) {
    return !sensor || entry.first == *sensor || entry.first.starts_with(*sensor + ".");
  });
  return dropped;
}

bool PrivacyPolicy::is_personal(const std::string& sensor, const std::string& value) const {
  const auto it = personal.find(sensor);
  return it != personal.end() && (it->second.empty() || it->second.count(value) != 0);
}

std::optional<std::string> personal_item_problem(std::string_view item) {
  const std::size_t slash = item.find('/');
  const std::string_view sensor = item.substr(0, slash);
  if (auto id = topics::Id::parse(std::string(sensor)); !id) {
    return "'" + std::string(item) + "': sensor '" + std::string(sensor) + "': " + id.error().reason;
  }
  if (slash == std::string_view::npos) return std::nullopt;
  const std::string_view value = item.substr(slash + 1);
  if (auto id = topics::Id::parse(std::string(value)); !id) {
    return "'" + std::string(item) + "': value '" + std::string(value) + "': " + id.error().reason +
           " (expected <sensor> or <sensor>/<value>)";
  }
  return std::nullopt;
}

schemas::Result<PrivacyPolicy> PrivacyPolicy::parse(std::span<const std::string> items, schemas::Timestamp window_ms,
                                                    std::uint64_t min_readings) {
  PrivacyPolicy p;
  p.window_ms = window_ms;
  p.min_readings = min_readings;
  std::set<std::string> whole;  // sensors named alone: every value personal, whatever else names them
  for (std::size_t k = 0; k < items.size(); ++k) {
    if (auto problem = personal_item_problem(items[k])) {
      return schemas::Error{"privacy.personal", "item " + std::to_string(k) + ": " + *problem};
    }
    if (items[k].find('/') == std::string::npos) whole.insert(items[k]);
  }
  for (const std::string& item : items) {
    const std::size_t slash = item.find('/');
    const std::string sensor = item.substr(0, slash);
    auto& values = p.personal[sensor];
    if (whole.count(sensor) == 0) values.insert(item.substr(slash + 1));
  }
  return p;
}

bool SensorReplies::push(const std::string& sensor, Reply reply) {
  auto it = queues_.find(sensor);
  if ((it != queues_.end() ? it->second.size() : 0) >= max_per_sensor_) {
    ++dropped_;
    return false;
  }
  queues_[sensor].push_back(std::move(reply));
  ++waiting_;
  return true;
}

const SensorReplies::Reply* SensorReplies::next() const {
  if (queues_.empty()) return nullptr;
  auto it = queues_.lower_bound(turn_);
  if (it == queues_.end()) it = queues_.begin();
  return &it->second.front();
}

void SensorReplies::pop() {
  if (queues_.empty()) return;
  auto it = queues_.lower_bound(turn_);
  if (it == queues_.end()) it = queues_.begin();
  it->second.pop_front();
  --waiting_;
  auto following = std::next(it);
  turn_ = following == queues_.end() ? std::string() : following->first;
  if (it->second.empty()) queues_.erase(it);
}

}  // namespace nova::agent
