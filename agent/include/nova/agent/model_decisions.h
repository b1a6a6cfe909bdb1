// What the agent decides with a local model (local_model.h) in force (docs/agent.md,
// "Local model"). DecisionEngine owns one and calls it on every sample.
//
// The model's condition starts when a sample's score reaches the model's threshold: a
// warning alert on metric "model.<model id>" (observed: the score, threshold: the
// threshold) and a DecisionRecord of kind "model_decision" go up, with
//   inputs      each feature's value as read (a missing one is left out), "score",
//               "threshold" and "model_revision" (exact below 2^53, as a revision in ms is);
//   action      "model <model id>: <the model's action>";
//   confidence  the score, for a sigmoid score (the model's own probability), else 1;
//   offline     whether the uplink was down.
// Like the threshold rules (decisions.h), the condition is raised when it starts and
// again at most once per `repeat` while it lasts (by the samples' timestamps), and it
// ends when the score falls below the model's "clear" level, with an info alert
// ("recovered") and no decision. A sample the model cannot score (a missing feature,
// a score that is not finite) changes nothing and is counted as skipped.
//
// A model applied, replaced or cleared starts without a condition and with zero counts.
// Pure logic, loop thread only; a sample that raises nothing allocates nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nova/models/local_model.h"
#include "nova/schemas/messages.h"

namespace nova::agent {

struct Firing;  // decisions.h

class ModelDecisions {
 public:
  struct Counters {
    std::uint64_t evaluations = 0;  // samples scored
    std::uint64_t positives = 0;    // decisions taken (conditions raised, repeats included)
    std::uint64_t skipped = 0;      // samples not scored: a missing feature, a score not finite
  };

  // Puts `model` (kind logistic or tree_ensemble) in force; the reason it is refused
  // otherwise ("model.trees[0][2].left: ..."), and then the model in force stays.
  std::optional<std::string> apply(const schemas::Model& model);
  void clear();
  const models::LocalModel* model() const { return model_ ? &*model_ : nullptr; }
  const Counters& counters() const { return counters_; }

  void evaluate(const schemas::MetricSample& sample, bool offline, std::uint64_t repeat_ms,
                std::vector<Firing>& out);

 private:
  void raise(const schemas::MetricSample& sample, double score, bool offline, std::vector<Firing>& out);

  std::optional<models::LocalModel> model_;
  std::string metric_;  // "model.<model id>"
  bool raised_ = false;
  schemas::Timestamp last_raised_ = 0;
  Counters counters_;
};

}  // namespace nova::agent
