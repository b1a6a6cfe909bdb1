// Whether a model (schemas/cddl/model.cddl) is one an agent runs, decided without an
// agent: nova-cloud checks a pushed model with this before it publishes it retained
// (docs/cloud.md, "Remote config and models"), so a model every agent would refuse is a
// 400 at the API instead of a retained message that replaces the good one.
//
// The kinds and their rules (docs/agent.md, "Local model"):
//   "zscore"                   params threshold (>= 0, 0 = off), min_samples (whole,
//                              2..1000000), window (whole, 1..1000000), each optional;
//                              nothing else
//   "logistic", "tree_ensemble" everything LocalModel::compile checks (local_model.h)
// Any other kind is refused. Errors name the field as the codec's do
// ("model.params.window: must be a whole number 1..1000000").
#pragma once

#include <cstdint>
#include <optional>

#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::models {

// A zscore model's parameters; an absent one keeps the agent's configured value.
struct ZScoreModel {
  std::optional<double> threshold;
  std::optional<std::uint32_t> min_samples;
  std::optional<std::uint32_t> window;
  friend bool operator==(const ZScoreModel&, const ZScoreModel&) = default;
};

// The parameters of a model of kind "zscore" (the kind is not checked here).
schemas::Result<ZScoreModel> zscore_model(const schemas::Model& model);

// Ok when an agent runs `model`; else the first problem.
schemas::Status check_model(const schemas::Model& model);

}  // namespace nova::models
