#include "nova/cloud/subscriptions.h"

#include <sstream>

namespace nova::cloud {

namespace {

// Every probe starts with this; the rest names the sender and the filter probed.
constexpr std::string_view kProbeMarker = "nova-cloud-probe ";

std::string hex(int code) {
  std::ostringstream out;
  out << "0x" << std::hex << code;
  return out.str();
}

}  // namespace

SubscriptionWatch::SubscriptionWatch(std::string self, SubscriptionTiming timing)
    : self_(std::move(self)), timing_(timing) {}

bool SubscriptionWatch::is_probe(std::string_view payload) { return payload.substr(0, kProbeMarker.size()) == kProbeMarker; }

std::string SubscriptionWatch::probe_payload(const std::string& filter) const {
  return std::string(kProbeMarker) + self_ + " " + filter;
}

std::optional<std::string> SubscriptionWatch::unshared(const std::string& filter) {
  if (filter.rfind("$share/", 0) != 0) return std::nullopt;
  const std::size_t slash = filter.find('/', 7);
  if (slash == std::string::npos) return std::nullopt;
  return filter.substr(slash + 1);
}

std::string SubscriptionWatch::probe_topic(const std::string& filter, const std::string& self) {
  const std::string plain = unshared(filter).value_or(filter);
  std::string out;
  std::stringstream levels(plain);
  for (std::string level; std::getline(levels, level, '/');) {
    if (!out.empty()) out += '/';
    if (level == "+") {
      out += self;
    } else if (level == "#") {
      out += "probe/" + self;
    } else {
      out += level;
    }
  }
  return out;
}

void SubscriptionWatch::reset(const std::vector<std::string>& filters, Timestamp now) {
  std::map<std::string, Entry> fresh;
  for (const auto& f : filters) {
    Entry e;
    e.since = now;
    if (auto old = entries_.find(f); old != entries_.end()) {
      e.was_refused = old->second.was_refused;
      e.reason = old->second.reason;
    }
    fresh[f] = e;
  }
  entries_ = std::move(fresh);
  pending_refusals_.clear();
}

void SubscriptionWatch::refuse(const std::string& filter, Entry& e, std::string reason, Timestamp now, Actions* actions) {
  e.status = Status::refused;
  e.since = now;
  e.was_refused = true;
  e.reason = std::move(reason);
  Refusal r{filter, e.reason};
  if (actions != nullptr) {
    actions->refused.push_back(std::move(r));
  } else {
    pending_refusals_.push_back(std::move(r));
  }
}

void SubscriptionWatch::suback(const std::string& filter, int code, Timestamp now) {
  auto it = entries_.find(filter);
  if (it == entries_.end() || it->second.status != Status::subscribing) return;
  if (code >= 0x80) {
    refuse(filter, it->second, "the broker refused it (SUBACK " + hex(code) + ")", now, nullptr);
    return;
  }
  it->second.status = Status::probing;
  it->second.since = now;
  it->second.next_probe = now;
}

void SubscriptionWatch::failed(const std::string& filter, const std::string& reason, Timestamp now) {
  auto it = entries_.find(filter);
  if (it == entries_.end() || it->second.status != Status::subscribing) return;
  refuse(filter, it->second, "subscribe failed: " + reason, now, nullptr);
}

bool SubscriptionWatch::probe_arrived(std::string_view payload, Timestamp now) {
  std::string_view rest = payload.substr(kProbeMarker.size());
  if (rest.substr(0, self_.size() + 1) != self_ + " ") return false;  // a peer's probe
  const std::string filter(rest.substr(self_.size() + 1));
  auto it = entries_.find(filter);
  if (it == entries_.end()) return true;
  // A probe may overtake its SUBACK; it proves delivery all the same.
  if (it->second.status == Status::probing || it->second.status == Status::subscribing) {
    it->second.status = Status::delivering;
    it->second.since = now;
  }
  return true;
}

SubscriptionWatch::Actions SubscriptionWatch::due(Timestamp now) {
  Actions a;
  a.refused = std::move(pending_refusals_);
  pending_refusals_.clear();
  const auto ms = [](std::chrono::milliseconds d) { return static_cast<Timestamp>(d.count()); };
  std::vector<std::pair<std::string, std::string>> replaced;  // shared -> plain
  for (auto& [filter, e] : entries_) {
    switch (e.status) {
      case Status::subscribing: break;  // waiting for the SUBACK
      case Status::delivering:
        if (e.was_refused) {
          e.was_refused = false;
          e.reason.clear();
          a.recovered.push_back(filter);
        }
        break;
      case Status::probing:
        if (now >= e.since + ms(timing_.probe_timeout)) {
          if (auto plain = unshared(filter)) {
            replaced.emplace_back(filter, *plain);
            break;
          }
          refuse(filter, e,
                 "granted, but no probe came back within " + std::to_string(timing_.probe_timeout.count()) +
                     " ms (does an ACL deny reading it?)",
                 now, &a);
          break;
        }
        if (now >= e.next_probe) {
          a.probes.emplace_back(probe_topic(filter, self_), probe_payload(filter));
          e.next_probe = now + ms(timing_.probe_interval);
        }
        break;
      case Status::refused:
        if (now >= e.since + ms(timing_.retry_interval)) {
          e.status = Status::subscribing;
          e.since = now;
          a.subscribe.push_back(filter);
        }
        break;
    }
  }
  for (const auto& [shared, plain] : replaced) {
    entries_.erase(shared);
    Entry e;
    e.since = now;
    entries_[plain] = e;
    a.unsubscribe.push_back(shared);
    a.subscribe.push_back(plain);
    a.fallbacks.emplace_back(shared, plain);
  }
  return a;
}

std::vector<std::string> SubscriptionWatch::not_delivering() const {
  std::vector<std::string> out;
  for (const auto& [filter, e] : entries_) {
    if (e.status == Status::delivering) continue;
    if (e.was_refused) {
      out.push_back(filter + ": " + e.reason);
    } else {
      out.push_back(filter + ": " + (e.status == Status::subscribing ? "waiting for its SUBACK" : "waiting for its probe"));
    }
  }
  return out;
}

std::vector<std::string> SubscriptionWatch::filters() const {
  std::vector<std::string> out;
  for (const auto& [filter, e] : entries_) out.push_back(filter);
  return out;
}

}  // namespace nova::cloud
