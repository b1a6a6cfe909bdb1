#include "nova/agent/glob.h"

#include <cstddef>

namespace nova::agent {

bool glob_match(std::string_view pattern, std::string_view text) {
  // Greedy, with one back-track point (the last '*'): linear for a pattern with one '*',
  // and names and patterns are at most 64 characters.
  std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace nova::agent
