// release_clean_file_pages() on this test process's own mappings of a real file: what
// start-up left resident is dropped and reads back the same, and pages that hold
// something written (copy-on-write) are never dropped, also once made read-only as the
// dynamic loader does with relocated data (RELRO). release_free_heap_pages() on this
// process's heap.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "nova/common/resident_pages.h"

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kPages = 256;  // 1 MiB
constexpr std::size_t kSize = kPages * kPage;

// Rss of the mapping that starts at `p`, in KiB, from /proc/self/smaps (-1: not found).
long rss_kib(const void* p) {
  std::ostringstream want;
  want << std::hex << reinterpret_cast<std::uintptr_t>(p) << '-';
  std::ifstream smaps("/proc/self/smaps");
  bool in = false;
  for (std::string line; std::getline(smaps, line);) {
    if (line.rfind(want.str(), 0) == 0) in = true;
    else if (in && line.rfind("Rss:", 0) == 0) return std::atol(line.c_str() + 4);
  }
  return -1;
}

// A file of kPages pages, page i filled with the byte i, mapped privately.
struct MappedFile {
  fs::path path;
  int fd = -1;
  unsigned char* data = nullptr;

  explicit MappedFile(int prot) {
    std::string pattern = (fs::temp_directory_path() / "nova-resident-pages.XXXXXX").string();
    fd = ::mkstemp(pattern.data());
    REQUIRE(fd >= 0);
    path = pattern;
    for (std::size_t i = 0; i < kPages; ++i) {
      const std::string page(kPage, static_cast<char>(i));
      REQUIRE(::write(fd, page.data(), page.size()) == static_cast<ssize_t>(page.size()));
    }
    void* p = ::mmap(nullptr, kSize, prot, MAP_PRIVATE, fd, 0);
    REQUIRE(p != MAP_FAILED);
    data = static_cast<unsigned char*>(p);
  }
  ~MappedFile() {
    ::munmap(data, kSize);
    ::close(fd);
    std::error_code ec;
    fs::remove(path, ec);
  }
  // Reads every page; true when page i holds byte i + `delta` throughout.
  bool holds(unsigned char delta) const {
    for (std::size_t i = 0; i < kSize; ++i) {
      if (data[i] != static_cast<unsigned char>(i / kPage + delta)) return false;
    }
    return true;
  }
};

// A "Key:   N kB" line of /proc/self/status, in KiB.
long status_kib(const std::string& key) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + key.size());
  }
  return -1;
}

}  // namespace

TEST_CASE("release_clean_file_pages drops a read-only file mapping's pages, which read back the same",
          "[common][memory]") {
  MappedFile file(PROT_READ);
  REQUIRE(file.holds(0));  // every page touched, as start-up touches a library
  REQUIRE(rss_kib(file.data) == static_cast<long>(kSize / 1024));

  const nova::common::ReleasedPages r = nova::common::release_clean_file_pages();
  CHECK(r.error.empty());
  CHECK(r.mappings >= 1);
  CHECK(r.kib >= kSize / 1024);
  CHECK(rss_kib(file.data) == 0);

  CHECK(file.holds(0));  // faulted back in from the page cache, unchanged
  CHECK(rss_kib(file.data) == static_cast<long>(kSize / 1024));
}

TEST_CASE("release_clean_file_pages keeps pages written to a private file mapping, also once made read-only",
          "[common][memory]") {
  MappedFile file(PROT_READ | PROT_WRITE);
  for (std::size_t i = 0; i < kSize; ++i) file.data[i] = static_cast<unsigned char>(i / kPage + 1);
  SECTION("writable") {}
  SECTION("made read-only after writing, like relocated data (RELRO)") {
    REQUIRE(::mprotect(file.data, kSize, PROT_READ) == 0);
  }
  nova::common::release_clean_file_pages();
  CHECK(rss_kib(file.data) == static_cast<long>(kSize / 1024));
  CHECK(file.holds(1));  // what was written, not the file's contents
}

TEST_CASE("release_free_heap_pages gives back freed heap memory that malloc would keep", "[common][memory]") {
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer replaces malloc with its own allocator (and quarantine), which
  // glibc's malloc_trim does not manage: there is no glibc heap to check here.
  WARN("built with AddressSanitizer: glibc's heap is not in use");
  return;
#endif
  // 8 MiB in small blocks (below malloc's mmap threshold: they come from the heap),
  // touched, then freed while one block allocated after them keeps the heap's top in
  // use, so malloc's own trimming at the top cannot give them back.
  std::vector<char*> blocks;
  for (int i = 0; i < 2048; ++i) {
    blocks.push_back(static_cast<char*>(std::malloc(4000)));
    REQUIRE(blocks.back() != nullptr);
    std::memset(blocks.back(), 1, 4000);
  }
  char* top = static_cast<char*>(std::malloc(4000));
  REQUIRE(top != nullptr);
  for (char* b : blocks) std::free(b);
  const long before = status_kib("RssAnon:");

  CHECK(nova::common::release_free_heap_pages());
  const long after = status_kib("RssAnon:");
  INFO("RssAnon " << before << " kB -> " << after << " kB");
  CHECK(before - after >= 6 * 1024);
  std::free(top);
}
