// Whether each of nova-cloud's subscriptions really delivers.
//
// A SUBACK alone does not tell: Mosquitto 2.0.11 grants the requested QoS to a filter its
// ACL does not let the client read (MQTT 3.1.1 and 5 alike, checked by experiment) and
// then delivers nothing; nats-server and aedes grant `$share/...` filters and deliver
// nothing. So every filter passes two checks after each (re)subscribe:
//   1. its SUBACK: a return code >= 0x80 (or a failed subscribe) is a refusal;
//   2. a probe: this instance publishes a marked message on a topic the filter matches
//      (probe_topic) until it comes back through the subscription, for at most
//      `probe_timeout`. A plain filter whose probe never comes back is refused ("granted
//      but deaf"); a shared one falls back to its plain filter, once, and is probed again
//      (with a group, every instance then stores every record: more work, still exactly
//      once after dedup).
// A refused filter is subscribed again every `retry_interval` until its probe comes back.
// Until every filter delivers, readiness fails with the reasons (GET /readyz).
//
// Probes of a shared filter land at whichever group member the broker picks, so one is
// sent every `probe_interval` until one reaches this instance: with round-robin delivery
// and N instances, one of N probes does. Every instance drops probes (is_probe) before
// decoding anything, its own included once noted.
//
// Pure logic, no MQTT: the service feeds it SUBACKs, arrived probes and the clock, and
// carries out the actions it returns. Not thread-safe (the service holds its lock).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nova/schemas/messages.h"

namespace nova::cloud {

struct SubscriptionTiming {
  std::chrono::milliseconds probe_interval{250};
  std::chrono::milliseconds probe_timeout{3000};
  std::chrono::milliseconds retry_interval{2000};
};

class SubscriptionWatch {
 public:
  using Timestamp = schemas::Timestamp;

  SubscriptionWatch(std::string self, SubscriptionTiming timing = {});

  // A (re)connect subscribes these filters (a clean session forgot them all).
  void reset(const std::vector<std::string>& filters, Timestamp now);

  // The SUBACK of `filter`: `code` < 0x80 is the granted QoS, anything else a refusal.
  void suback(const std::string& filter, int code, Timestamp now);
  // The subscribe failed without a usable SUBACK (the client's own error text).
  void failed(const std::string& filter, const std::string& reason, Timestamp now);
  // A probe payload arrived: true if it is one of this instance's (then its filter is
  // confirmed). Call only with payloads for which is_probe() holds.
  bool probe_arrived(std::string_view payload, Timestamp now);

  struct Refusal {
    std::string filter;
    std::string reason;
  };
  struct Actions {
    std::vector<std::pair<std::string, std::string>> probes;  // topic, payload
    std::vector<std::string> subscribe;                        // (again)
    std::vector<std::string> unsubscribe;                      // shared filters given up
    std::vector<Refusal> refused;                              // newly refused, to log and count
    std::vector<std::pair<std::string, std::string>> fallbacks;  // shared -> plain, to log and count
    std::vector<std::string> recovered;                        // delivering again after a refusal
  };
  // What to do at `now`; call it often (every probe_interval or more).
  Actions due(Timestamp now);

  // Why the service is not ready: one line per filter that does not deliver (yet).
  std::vector<std::string> not_delivering() const;
  // The filters as subscribed now (plain ones in place of shared ones that fell back).
  std::vector<std::string> filters() const;

  static bool is_probe(std::string_view payload);
  // A concrete topic `filter` matches: "$share/<group>/" dropped, each "+" level replaced
  // by `self`, a trailing "#" by "probe/<self>".
  static std::string probe_topic(const std::string& filter, const std::string& self);
  // The plain filter of "$share/<group>/<filter>"; nullopt if not shared.
  static std::optional<std::string> unshared(const std::string& filter);

 private:
  enum class Status { subscribing, probing, delivering, refused };
  struct Entry {
    Status status = Status::subscribing;
    Timestamp since = 0;       // subscribed (subscribing, probing) or refused
    Timestamp next_probe = 0;
    bool was_refused = false;  // a delivery now is a recovery
    std::string reason;        // the last refusal
  };
  std::string probe_payload(const std::string& filter) const;
  void refuse(const std::string& filter, Entry& e, std::string reason, Timestamp now, Actions* actions);

  std::string self_;
  SubscriptionTiming timing_;
  std::map<std::string, Entry> entries_;
  std::vector<Refusal> pending_refusals_;  // from suback()/failed(), reported by due()
};

}  // namespace nova::cloud
