// The nodes of a tree ensemble (schemas::Model::trees) for tests: a split and a leaf.
#pragma once

#include <cstdint>

#include "nova/schemas/messages.h"

namespace nova::test {

// x[feature] < at goes to `left`, else to `right` (node indices within the tree).
inline schemas::TreeNode split(std::uint64_t feature, double at, std::uint64_t left, std::uint64_t right) {
  schemas::TreeNode n;
  n.feature = feature;
  n.split = at;
  n.left = left;
  n.right = right;
  return n;
}

inline schemas::TreeNode leaf(double value) {
  schemas::TreeNode n;
  n.leaf = value;
  return n;
}

}  // namespace nova::test
