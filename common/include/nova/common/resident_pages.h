// Giving memory the process no longer uses back to the kernel, for daemons whose VmRSS
// matters (nova-agent on devices: docs/agent.md, "Memory"). Two kinds:
//
// 1. The clean file-backed pages it touched while starting: the code and read-only data
// of its binary and libraries that only start-up used (configuration parsing, OpenSSL's
// provider and TLS context set-up, ...).
//
// Why: VmRSS counts every page of a shared library that is mapped into the process, and
// the kernel maps 64 kB around each page fault on a file ("fault-around"), so starting
// once leaves almost all of libcrypto (4 MB) resident in a TLS nova-agent although its
// steady state uses a fraction of it (docs/benchmarks.md, "Latest: RSS with TLS and a
// signing key").
//
// What it does: madvise(MADV_DONTNEED) on every private file mapping that is not
// writable and holds no anonymous (copied-on-write) page, as /proc/self/smaps reports
// them. Those pages equal the file's contents, so nothing is lost: the page cache keeps
// them, and a later access maps them again with a minor fault (no disk read while they
// are cached). Mappings that hold anonymous pages (relocated data, RELRO) and writable
// ones are left alone, since dropping them would discard what was written.
//
// Not free memory: the pages stay in the page cache, shared with every other process
// mapping the same files, and are reclaimable there. What it lowers is the process's
// own VmRSS (RssFile), to the pages the process uses again.
//
// 2. Free heap pages: memory freed after a burst (a batch's compression workspace, a
// TLS handshake's buffers) that glibc's malloc keeps in its arenas below the top of the
// heap, where its automatic trimming never reaches. malloc_trim(0) gives the whole free
// pages of every arena back (RssAnon).
#pragma once

#include <cstddef>
#include <string>

namespace nova::common {

struct ReleasedPages {
  std::size_t mappings = 0;  // mappings released
  std::size_t kib = 0;       // their resident size before, in KiB
  std::string error;         // why nothing was released (smaps unreadable); empty if none
};

// Safe to call from any thread at any time; costs one read of /proc/self/smaps.
ReleasedPages release_clean_file_pages();

// malloc_trim(0): returns whether any memory went back to the kernel. Safe from any
// thread; it locks each arena in turn while walking its free chunks.
bool release_free_heap_pages();

}  // namespace nova::common
