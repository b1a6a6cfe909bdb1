// Over-the-air updates, the agent's half (docs/agent.md, "Updates").
//
// The agent never switches versions itself: a separate launcher (firmware/nova-agent-launch,
// run by systemd or by the init script) owns every switch, so that a new binary that does
// not even start is still rolled back. Both meet in the installation folder `update.dir`:
//
//   versions/<sha256>/nova-agent   a version, named by the SHA-256 of its bundle
//   current -> versions/<sha256>   what the launcher runs (the launcher's)
//   pending                        "<sha256>\n": staged by the agent, run it next (the agent's)
//   healthy                        "<sha256>\n": the version running from versions/<sha256>
//                                  published its birth and the broker acknowledged it
//   rolled-back/<sha256>           why the launcher went back from that version (the
//                                  launcher's); the agent reports it upward once and then
//                                  renames it to <sha256>.reported
//
// An offer (schemas/cddl/update.cddl) names a bundle by its SHA-256; the bundle's bytes come
// in chunks on nova/v1/bundle/<sha256>/<index> (schemas/topics.md, Updates), collected in
// memory. Once all are here, the whole is accepted only when its size and SHA-256 match
// the offer, written durably (temporary file, fsync, rename), and then `pending` is.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nova/schemas/messages.h"

namespace nova::agent {

class Updater {
 public:
  // `dir` empty: updates are off and every offer is refused. `running_version` is what
  // this binary reports in its birth.
  Updater(std::filesystem::path dir, std::string running_version);

  enum class Verdict {
    fetch,    // subscribe to the bundle and stage it
    current,      // this version runs already: nothing to do
    rolled_back,  // the launcher rolled this bundle back here before: never again
    refuse,       // see reason
  };
  struct Decision {
    Verdict verdict = Verdict::refuse;
    std::string reason;
  };
  Decision consider(const schemas::UpdateOffer& offer) const;

  // Starts collecting the chunks of `offer`'s bundle (forgetting any other).
  void fetch(const schemas::UpdateOffer& offer);
  // A chunk of the bundle being fetched: `index` is its topic's last level. Error: it
  // cannot be part of the offered bundle (index or size), or the whole does not match
  // the offer, or cannot be written; the fetch is then over. `staged`: the last chunk
  // came and the version is staged.
  struct ChunkOutcome {
    std::optional<std::string> error;
    bool staged = false;
  };
  ChunkOutcome add_chunk(std::string_view index, std::string bytes);
  const std::optional<schemas::UpdateOffer>& fetching() const { return offer_; }
  void cancel() {
    offer_.reset();
    chunks_.clear();
  }

  // Writes `healthy` naming the version this process runs from (the folder of
  // /proc/self/exe, when it is one of versions/). Nothing when updates are off.
  void mark_healthy() const;

  struct Rollback {
    std::string sha256;
    std::string reason;  // the launcher's words: "exited with status 1", ...
  };
  // Rollbacks the launcher recorded that were not reported yet. The caller stores each
  // report durably (the alerts stream), then calls mark_reported().
  std::vector<Rollback> unreported_rollbacks() const;
  void mark_reported(const std::string& sha256) const;

  bool enabled() const { return !dir_.empty(); }

 private:
  // The whole bundle, checked against the offer and staged.
  std::optional<std::string> stage(const std::string& bytes) const;

  std::filesystem::path dir_;
  std::string running_version_;
  std::optional<schemas::UpdateOffer> offer_;
  std::map<std::uint64_t, std::string> chunks_;
};

}  // namespace nova::agent
