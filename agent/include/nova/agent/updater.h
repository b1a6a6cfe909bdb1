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
// on nova/v1/bundle/<sha256>. stage() accepts them only when size and SHA-256 match the
// offer, writes them durably (temporary file, fsync, rename) and then writes `pending`.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
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
    current,  // this version runs already: nothing to do
    refuse,   // see reason
  };
  struct Decision {
    Verdict verdict = Verdict::refuse;
    std::string reason;
  };
  Decision consider(const schemas::UpdateOffer& offer) const;

  // The bundle's bytes for `offer`: checked and staged. The error says what did not match.
  std::optional<std::string> stage(const schemas::UpdateOffer& offer, const std::string& bytes) const;

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
  std::filesystem::path dir_;
  std::string running_version_;
};

}  // namespace nova::agent
