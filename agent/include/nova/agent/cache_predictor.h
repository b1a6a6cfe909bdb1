// What a task will ask the cache for next, learned online from the keys it asks for.
//
// Two learners, both bounded:
//   - Stride: a key that ends in a decimal number ("tile/0041") after a key with the
//     same prefix and a number d apart (|d| <= kMaxStride) predicts the next numbers
//     of that stride ("tile/0042", "tile/0043", ...), zero padding kept. It needs no
//     history, so the first pass over a sequence is already prefetched from its third key.
//   - Successor (first-order Markov): for each key, the keys that followed it and how
//     often; it predicts the most frequent successor, then that key's most frequent one,
//     and so on (a chain). It learns successions that are not arithmetic ("a" -> "x").
// predict() lists the stride's keys first, then the chain's, without repeats, at most
// `depth`. Memory: at most max_keys keys are tracked (the least recently seen is
// forgotten first), each with at most max_successors successors (a new one replaces the
// least frequent).
//
// Not thread-safe: the cache calls it under its own lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace nova::agent {

struct PredictorOptions {
  std::size_t depth = 4;            // keys predicted per access; 0 predicts nothing
  std::size_t max_keys = 4096;      // keys whose successors are remembered
  std::size_t max_successors = 4;   // successors remembered per key
};

class Predictor {
 public:
  static constexpr std::int64_t kMaxStride = 16;

  explicit Predictor(PredictorOptions options);

  // `key` was asked for, after the key observed before it (if any).
  void observe(std::string_view key);
  // The keys expected after `key`, most likely first, never `key` itself.
  std::vector<std::string> predict(std::string_view key) const;

  std::size_t tracked() const { return nodes_.size(); }

 private:
  struct Successor {
    std::string key;
    std::uint32_t count = 0;
  };
  struct Node {
    std::vector<Successor> successors;  // at most max_successors
    std::list<std::string>::iterator recency;
  };
  void learn(const std::string& from, std::string_view to);
  const Successor* best(std::string_view key) const;

  PredictorOptions options_;
  std::unordered_map<std::string, Node> nodes_;
  std::list<std::string> recency_;  // most recently seen first
  std::optional<std::string> last_;
  std::optional<std::int64_t> stride_;  // between the last two keys, when they had one
};

// A key split at its decimal suffix: "tile/0041" -> {"tile/", 41, 4}. Nullopt when it
// does not end in 1..18 digits.
struct NumberedKey {
  std::string_view prefix;
  std::int64_t number = 0;
  std::size_t width = 0;  // digits written, leading zeros included
};
std::optional<NumberedKey> split_number(std::string_view key);

}  // namespace nova::agent
