#include "nova/agent/model_decisions.h"

#include "nova/agent/decisions.h"

namespace nova::agent {

std::optional<std::string> ModelDecisions::apply(const schemas::Model& model) {
  auto compiled = models::LocalModel::compile(model);
  if (!compiled) return compiled.error().message();
  model_ = std::move(compiled).value();
  metric_ = "model." + model_->model_id();
  raised_ = false;
  last_raised_ = 0;
  counters_ = {};
  return std::nullopt;
}

void ModelDecisions::clear() {
  model_.reset();
  raised_ = false;
  counters_ = {};
}

void ModelDecisions::evaluate(const schemas::MetricSample& sample, bool offline, std::uint64_t repeat_ms,
                              std::vector<Firing>& out) {
  if (!model_) return;
  const models::LocalModel::Evaluation e = model_->evaluate(sample);
  if (e.status != models::LocalModel::Status::scored) {
    ++counters_.skipped;
    return;
  }
  ++counters_.evaluations;
  if (e.score >= model_->threshold()) {
    // A clock that went back must not silence a lasting condition (decisions.cpp, due()).
    const bool due = sample.ts < last_raised_ || sample.ts - last_raised_ >= repeat_ms;
    if (!raised_ || due) raise(sample, e.score, offline, out);
    raised_ = true;
    return;
  }
  if (raised_ && e.score < model_->clear()) {
    raised_ = false;
    Firing f;
    f.alert.ts = sample.ts;
    f.alert.severity = schemas::Severity::info;
    f.alert.metric = metric_;
    f.alert.observed = e.score;
    f.alert.threshold = model_->clear();
    f.alert.message = "model " + model_->model_id() + " score " + models::score_text(e.score) + " recovered below " +
                      models::score_text(model_->clear());
    out.push_back(std::move(f));
  }
}

void ModelDecisions::raise(const schemas::MetricSample& sample, double score, bool offline, std::vector<Firing>& out) {
  const models::LocalModel& m = *model_;
  ++counters_.positives;
  last_raised_ = sample.ts;
  Firing f;
  f.alert.ts = sample.ts;
  f.alert.severity = schemas::Severity::warning;
  f.alert.metric = metric_;
  f.alert.observed = score;
  f.alert.threshold = m.threshold();
  f.alert.message = "model " + m.model_id() + " revision " + std::to_string(m.revision()) + " scored " +
                    models::score_text(score) + " (threshold " + models::score_text(m.threshold()) + "): " + m.action();
  schemas::DecisionRecord d;
  d.ts = sample.ts;
  d.kind = "model_decision";
  const auto values = m.feature_values();
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i] == values[i]) d.inputs.emplace(m.features()[i], values[i]);  // NaN: missing, left out
  }
  d.inputs["score"] = score;
  d.inputs["threshold"] = m.threshold();
  d.inputs["model_revision"] = static_cast<double>(m.revision());
  d.action = "model " + m.model_id() + ": " + m.action();
  // A sigmoid score is the model's probability that this is a positive; a raw score
  // says nothing of the kind.
  d.confidence = m.sigmoid() ? score : 1;
  d.offline = offline;
  f.record = std::move(d);
  out.push_back(std::move(f));
}

}  // namespace nova::agent
