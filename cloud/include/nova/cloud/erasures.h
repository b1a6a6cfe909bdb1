// Erasure on request (docs/cloud.md, "Erasure"): an administrator names a node, or one
// sensor of a node, and every copy of its data goes.
//
//   request()  nova-cloud deletes what its own store holds (erase_store: raw batches and
//              minute aggregates, results, decisions, alerts of the node, or the sensor's
//              gauges in the raw batches), records the erasure as "pending" with those
//              counts, and sends the node a signed, retained ErasureRequest on
//              nova/v1/down/<site>/<node>/erase;
//   on_report() the node's ErasureReport (its "erasures" stream) makes it "done" with the
//              node's counts; the cloud store is erased once more then, since records the
//              node sent before it erased may have arrived in between.
// One request per node is on the retained topic at a time: further ones for the same node
// wait ("queued") and go down when the one before is done. A node that comes back (its
// birth) gets its pending request again, signed afresh, so one offline for longer than
// the signature's lifetime still gets it. Each step is written to the audit log with the
// counts (never the data), and each erasure is kept as a cloud record.
//
// Thread-safe: the API threads request and read, the ingest thread reports.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::cloud {

using ErasureCounts = std::map<std::string, std::uint64_t>;

struct Erasure {
  std::string id;
  std::string node;
  std::string site;                   // the node's site path when requested
  std::optional<std::string> sensor;  // none: everything of the node
  std::string requested_by;           // the API token's name
  schemas::Timestamp requested_at = 0;
  std::string state = "pending";  // "queued", "pending" (sent, awaiting the node) or "done"
  ErasureCounts cloud;            // what nova-cloud's store deleted or rewrote
  ErasureCounts node_counts;      // what the node reported
  std::optional<schemas::Timestamp> confirmed_at;
};

std::string erasure_json(const Erasure& e);
schemas::Result<Erasure> erasure_from_json(const std::string& text);

class Erasures {
 public:
  struct Hooks {
    // Sends a down message (signed and audited by the service).
    std::function<bool(const std::string& topic, const std::vector<std::uint8_t>& payload, bool retained)> publish;
    // Keeps an erasure (a cloud record of kind "erasure", JSON).
    std::function<schemas::Status(const std::string& id, const std::string& json)> persist;
    // Deletes the node's (or the sensor's) data from the store; counts by store part.
    std::function<schemas::Result<ErasureCounts>(const std::string& node, const std::optional<std::string>& sensor)>
        erase_store;
    // Appends one audit entry: actor, action, target, outcome.
    std::function<schemas::Status(const std::string&, const std::string&, const std::string&, const std::string&)> audit;
    std::function<void(const char* level, const std::string& event, const std::string& fields)> log;
  };
  explicit Erasures(Hooks hooks) : hooks_(std::move(hooks)) {}

  // Error path "erasure" when the store or the audit log fails (nothing is sent then).
  schemas::Result<Erasure> request(const std::string& node, const std::string& site,
                                   const std::optional<std::string>& sensor, const std::string& caller,
                                   schemas::Timestamp now);
  void on_report(const std::string& node, const schemas::ErasureReport& report, schemas::Timestamp now);
  // The node came back: its pending request goes down again, signed afresh.
  void on_birth(const std::string& node);
  void restore(Erasure e);

  std::optional<Erasure> get(const std::string& id) const;
  std::vector<Erasure> list() const;

 private:
  void send(const Erasure& e);
  void keep(const Erasure& e);  // persisted; a failure is logged
  std::string counts_text(const ErasureCounts& counts) const;

  Hooks hooks_;
  mutable std::mutex mutex_;
  std::map<std::string, Erasure> erasures_;
  std::uint64_t last_id_ms_ = 0;
  std::uint64_t same_ms_ = 0;
};

}  // namespace nova::cloud
