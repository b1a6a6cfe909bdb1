// The agent's acknowledgement of a remote config or model (docs/agent.md, "Remote config
// and models"): which revision runs is in its birth, and each outcome goes up as a record.
#include <algorithm>

#include "nova/agent/agent.h"

namespace nova::agent {

namespace {

constexpr std::size_t kMaxAction = 256;  // decision.cddl: action is 1..256 bytes

// `text` cut to at most `max` bytes without splitting a UTF-8 sequence.
std::string cut(const std::string& text, std::size_t max) {
  if (text.size() <= max) return text;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

}  // namespace

void Agent::report_remote(Remote kind, std::uint64_t revision, const std::optional<std::string>& refusal) {
  const std::string what = kind == Remote::config ? "config" : "model";
  schemas::DecisionRecord d;
  d.ts = static_cast<schemas::Timestamp>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
  d.kind = what + (refusal ? "_refused" : "_applied");
  d.inputs = {{"revision", static_cast<double>(revision)}};
  d.action = refusal ? cut(*refusal, kMaxAction) : what + " revision " + std::to_string(revision) + " in force";
  if (d.action.empty()) d.action = "refused";
  d.confidence = 1;
  d.offline = offline();
  const bool recorded = append_record("decisions", Priority::decisions, d);
  update_counters([&](AgentCounters& c) {
    ++(refusal ? c.remote_refused : c.remote_applied);
    if (recorded) ++c.decisions;
  });
  update_backlog();
  if (refusal) return;
  (kind == Remote::config ? config_revision_ : model_revision_) = revision;
  if (session_up_ && !birth_pending_) publish_birth();  // the birth names what runs
}

}  // namespace nova::agent
