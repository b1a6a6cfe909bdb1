#include "nova/agent/rules.h"

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>

#include "nova/schemas/topic.h"

namespace nova::agent {
namespace {

using schemas::Error;

constexpr std::array<std::pair<std::string_view, Comparison::Op>, 6> kOps{{
    {">=", Comparison::Op::ge}, {"<=", Comparison::Op::le}, {"==", Comparison::Op::eq},
    {"!=", Comparison::Op::ne}, {">", Comparison::Op::gt},  {"<", Comparison::Op::lt},
}};

constexpr std::array<std::string_view, 9> kActionNames{
    "publish",  "raise_alert", "suppress_alert", "set_task_priority", "pause_task",
    "resume_task", "stop_task", "evict_cache", "request_migration",
};

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

}  // namespace

bool Comparison::holds(double v) const {
  switch (op) {
    case Op::gt: return v > number;
    case Op::ge: return v >= number;
    case Op::lt: return v < number;
    case Op::le: return v <= number;
    case Op::eq: return v == number;
    case Op::ne: return v != number;
  }
  return false;
}

bool Comparison::clearly_false(double v, double margin) const {
  switch (op) {
    case Op::gt:
    case Op::ge: return v <= number - margin && !(margin == 0 && holds(v));
    case Op::lt:
    case Op::le: return v >= number + margin && !(margin == 0 && holds(v));
    case Op::eq:
    case Op::ne: return !holds(v);
  }
  return true;
}

schemas::Result<Comparison> parse_comparison(std::string_view text) {
  const std::string quoted = "'" + std::string(text) + "'";
  for (const auto& [sym, op] : kOps) {
    const std::size_t at = text.find(sym);
    if (at == std::string_view::npos) continue;
    Comparison c;
    c.op = op;
    c.operand = std::string(trimmed(text.substr(0, at)));
    const std::string_view number = trimmed(text.substr(at + sym.size()));
    if (c.operand.empty()) return Error{"", quoted + ": expected '<operand> <op> <number>', the operand is missing"};
    if (!topics::Id::valid(c.operand)) return Error{"", quoted + ": operand '" + c.operand + "' is not a field or gauge.<name>"};
    const char* end = number.data() + number.size();
    auto [p, ec] = std::from_chars(number.data(), end, c.number);
    if (number.empty() || ec != std::errc() || p != end || !std::isfinite(c.number)) {
      return Error{"", quoted + ": '" + std::string(number) + "' is not a finite number"};
    }
    return c;
  }
  return Error{"", quoted + ": expected '<operand> <op> <number>' with op one of > >= < <= == !="};
}

std::string_view action_name(ActionKind k) { return kActionNames[static_cast<std::size_t>(k)]; }

std::optional<ActionKind> action_named(std::string_view name) {
  for (std::size_t i = 0; i < kActionNames.size(); ++i) {
    if (kActionNames[i] == name) return static_cast<ActionKind>(i);
  }
  return std::nullopt;
}

std::string DecisionCache::key(std::uint32_t rule, bool active, const std::vector<double>& operands, double quantum) {
  std::string k(sizeof rule + 1 + operands.size() * sizeof(std::int64_t), '\0');
  std::memcpy(k.data(), &rule, sizeof rule);
  k[sizeof rule] = active ? 1 : 0;
  std::size_t at = sizeof rule + 1;
  for (double v : operands) {
    const auto q = static_cast<std::int64_t>(std::llround(v / quantum));
    std::memcpy(k.data() + at, &q, sizeof q);
    at += sizeof q;
  }
  return k;
}

std::optional<bool> DecisionCache::find(const std::string& key) {
  auto it = answers_.find(key);
  if (it == answers_.end()) {
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  return it->second;
}

void DecisionCache::put(std::string key, bool answer) {
  if (capacity_ == 0) return;
  if (answers_.size() >= capacity_) {
    answers_.erase(order_.front());
    order_.pop_front();
  }
  if (answers_.emplace(key, answer).second) order_.push_back(std::move(key));
}

RuleState::Step RuleState::step(const RuleSpec& spec, std::uint32_t id,
                                const std::vector<std::optional<double>>& operands, std::uint64_t ts,
                                DecisionCache& cache) {
  Step s;
  bool complete = true;
  for (const auto& v : operands) complete = complete && v.has_value();
  // Inactive: does every comparison hold? Active: is some comparison clearly false?
  auto evaluate = [&] {
    if (!active_) {
      if (!complete) return false;
      for (std::size_t i = 0; i < spec.when.size(); ++i) {
        if (!spec.when[i].holds(*operands[i])) return false;
      }
      return true;
    }
    for (std::size_t i = 0; i < spec.when.size(); ++i) {
      if (!operands[i] || spec.when[i].clearly_false(*operands[i], spec.hysteresis)) return true;
    }
    return false;
  };
  bool answer = false;
  // Rounding a value outside what an int64 holds would be undefined: such values are
  // evaluated, never cached.
  bool cacheable = complete && spec.quantum > 0;
  if (cacheable) {
    scratch_.clear();
    for (const auto& v : operands) {
      cacheable = cacheable && std::abs(*v / spec.quantum) < 9e18;
      scratch_.push_back(*v);
    }
  }
  if (cacheable) {
    std::string k = DecisionCache::key(id, active_, scratch_, spec.quantum);
    if (auto hit = cache.find(k)) {
      answer = *hit;
      s.cached = true;
    } else {
      answer = evaluate();
      cache.put(std::move(k), answer);
    }
  } else {
    answer = evaluate();
  }
  if (!answer) return s;
  if (active_) {
    active_ = false;
    s.outcome = Outcome::clear;
    return s;
  }
  if (fired_at_ && ts < *fired_at_ + spec.cooldown_ms) return s;  // cooling down
  active_ = true;
  fired_at_ = ts;
  s.outcome = Outcome::fire;
  return s;
}

}  // namespace nova::agent
