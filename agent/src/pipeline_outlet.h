// The agent's PipelineSink (agent_pipelines.cpp): declared here for agent.cpp, which
// owns one and so needs its size.
#pragma once

#include "nova/agent/agent.h"

namespace nova::agent {

class Agent::PipelineOutlet final : public PipelineSink {
 public:
  explicit PipelineOutlet(Agent& a);
  void emit(const PipelineSpec& p, const std::string& stream, const Event& e) override;
  void decide(const PipelineDecision& d) override;
  void cleared(const PipelineSpec& p, const RuleSpec& rule, const std::string& stream) override;

 private:
  Agent& a_;
};

}  // namespace nova::agent
