#include "nova/agent/cache_predictor.h"

#include <algorithm>
#include <charconv>

namespace nova::agent {

std::optional<NumberedKey> split_number(std::string_view key) {
  std::size_t start = key.size();
  while (start > 0 && key[start - 1] >= '0' && key[start - 1] <= '9') --start;
  const std::size_t width = key.size() - start;
  if (width == 0 || width > 18) return std::nullopt;  // 18 digits always fit int64
  NumberedKey out{key.substr(0, start), 0, width};
  std::from_chars(key.data() + start, key.data() + key.size(), out.number);
  return out;
}

namespace {

// `n` written as wide as the key it came from (zero padding kept), after `prefix`.
std::string numbered(std::string_view prefix, std::int64_t n, std::size_t width) {
  std::string digits = std::to_string(n);
  if (digits.size() < width) digits.insert(0, width - digits.size(), '0');
  return std::string(prefix) + digits;
}

}  // namespace

Predictor::Predictor(PredictorOptions options) : options_(options) {}

void Predictor::observe(std::string_view key) {
  stride_.reset();
  if (last_) {
    const auto a = split_number(*last_);
    const auto b = split_number(key);
    if (a && b && a->prefix == b->prefix) {
      const std::int64_t d = b->number - a->number;
      if (d != 0 && d >= -kMaxStride && d <= kMaxStride) stride_ = d;
    }
    if (*last_ != key) learn(*last_, key);
  }
  last_ = std::string(key);
}

void Predictor::learn(const std::string& from, std::string_view to) {
  if (options_.max_keys == 0 || options_.max_successors == 0) return;
  auto it = nodes_.find(from);
  if (it == nodes_.end()) {
    if (nodes_.size() >= options_.max_keys) {  // forget the key seen least recently
      nodes_.erase(recency_.back());
      recency_.pop_back();
    }
    recency_.push_front(from);
    it = nodes_.emplace(from, Node{{}, recency_.begin()}).first;
  } else {
    recency_.splice(recency_.begin(), recency_, it->second.recency);
  }
  auto& succ = it->second.successors;
  auto s = std::find_if(succ.begin(), succ.end(), [&](const Successor& x) { return x.key == to; });
  if (s != succ.end()) {
    ++s->count;
    return;
  }
  if (succ.size() < options_.max_successors) {
    succ.push_back({std::string(to), 1});
    return;
  }
  // Full: the least frequent makes room (a newcomer starts at 1, so it must prove itself).
  auto least = std::min_element(succ.begin(), succ.end(),
                                [](const Successor& x, const Successor& y) { return x.count < y.count; });
  *least = {std::string(to), 1};
}

const Predictor::Successor* Predictor::best(std::string_view key) const {
  const auto it = nodes_.find(std::string(key));
  if (it == nodes_.end() || it->second.successors.empty()) return nullptr;
  const auto& succ = it->second.successors;
  return &*std::max_element(succ.begin(), succ.end(),
                            [](const Successor& x, const Successor& y) { return x.count < y.count; });
}

std::vector<std::string> Predictor::predict(std::string_view key) const {
  std::vector<std::string> out;
  auto add = [&](std::string k) {
    if (out.size() >= options_.depth || k == key) return;
    if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(std::move(k));
  };
  // The stride holds between the last two keys observed, so it predicts after the last.
  if (stride_ && last_ && *last_ == key) {
    const auto n = split_number(key);
    for (std::size_t i = 1; n && i <= options_.depth; ++i) {
      const std::int64_t next = n->number + static_cast<std::int64_t>(i) * *stride_;
      if (next < 0) break;
      add(numbered(n->prefix, next, n->width));
    }
  }
  std::string at(key);
  for (std::size_t i = 0; i < options_.depth && out.size() < options_.depth; ++i) {
    const Successor* s = best(at);
    if (s == nullptr) break;
    add(s->key);
    at = s->key;
  }
  return out;
}

}  // namespace nova::agent
