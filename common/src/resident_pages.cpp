#include "nova/common/resident_pages.h"

#include <malloc.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string_view>
#include <vector>

namespace nova::common {
namespace {

struct Mapping {
  unsigned long start = 0, end = 0;
  bool releasable = false;  // private, file-backed, not writable
  std::size_t rss_kib = 0;
  std::size_t anonymous_kib = 0;
};

// "Rss:     1234 kB" -> 1234 when `line` starts with `key`.
bool field(std::string_view line, std::string_view key, std::size_t& out) {
  if (line.substr(0, key.size()) != key) return false;
  out = std::strtoul(std::string(line.substr(key.size())).c_str(), nullptr, 10);
  return true;
}

// A mapping's header line: "start-end perms offset dev inode [path]".
bool header(const std::string& line, Mapping& m) {
  char perms[8] = {};
  unsigned long offset = 0, inode = 0;
  char dev[16] = {};
  if (std::sscanf(line.c_str(), "%lx-%lx %7s %lx %15s %lu", &m.start, &m.end, perms, &offset, dev, &inode) != 6) {
    return false;
  }
  m.releasable = inode != 0 && perms[1] != 'w' && perms[3] == 'p';
  return true;
}

}  // namespace

ReleasedPages release_clean_file_pages() {
  ReleasedPages out;
  std::ifstream smaps("/proc/self/smaps");
  if (!smaps) {
    out.error = "cannot read /proc/self/smaps";
    return out;
  }
  // Collect first, release after: madvise while reading would change what smaps reports.
  std::vector<Mapping> chosen;
  Mapping current;
  bool have = false;
  auto choose = [&] {
    if (have && current.releasable && current.anonymous_kib == 0 && current.rss_kib > 0) chosen.push_back(current);
  };
  for (std::string line; std::getline(smaps, line);) {
    Mapping next;
    if (header(line, next)) {
      choose();
      current = next;
      have = true;
      continue;
    }
    field(line, "Rss:", current.rss_kib) || field(line, "Anonymous:", current.anonymous_kib);
  }
  choose();
  for (const Mapping& m : chosen) {
    if (::madvise(reinterpret_cast<void*>(m.start), m.end - m.start, MADV_DONTNEED) == 0) {
      ++out.mappings;
      out.kib += m.rss_kib;
    }
  }
  return out;
}

bool release_free_heap_pages() { return ::malloc_trim(0) == 1; }

}  // namespace nova::common
