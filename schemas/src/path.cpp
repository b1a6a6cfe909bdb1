#include "path.h"

#include <vector>

namespace nova::schemas::detail {

std::string PathNode::render() const {
  std::vector<const PathNode*> chain;
  for (const PathNode* n = this; n != nullptr; n = n->parent) chain.push_back(n);
  std::string out;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    const PathNode& n = **it;
    if (n.is_index) {
      out += '[';
      out += std::to_string(n.index);
      out += ']';
    } else if (!n.key.empty()) {
      if (!out.empty()) out += '.';
      out += n.key;
    }
  }
  return out;
}

void fail(const PathNode& at, std::string reason) {
  throw DecodeFailure{Error{at.render(), std::move(reason)}};
}

void fail_input(const PathNode& at, std::string reason) {
  throw DecodeFailure{Error{at.render(), std::move(reason), true}};
}

}  // namespace nova::schemas::detail
