// <run_dir>/hierarchy.json: what a running hierarchy looks like, for other processes
// (`nova-bridge status` and `down`, scripts). Written by Hierarchy::write_state_file().
//
//   {"name": "five-tier-demo", "run_dir": "/tmp/nova-demo",
//    "supervisor": {"pid": 4242, "start_time": 123456},
//    "sites": [{"id": "cloud", "level": 1, "path": "cloud", "address": "127.0.0.1",
//               "port": 18830, "pid": 4243, "start_time": 123460, "state": "running",
//               "dir": "/tmp/nova-demo/cloud"},
//              {"id": "eu", "level": 2, "parent": "cloud", ...}, ...]}
//
// "parent" is absent for the root; "pid" is -1 while a broker is down. "start_time" is
// the process's start time from /proc (clock ticks since boot): together with the pid it
// identifies a process, so a recycled pid is never mistaken for ours.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "nova/schemas/result.h"

namespace nova::bridge {

// A process as recorded in the state file.
struct ProcessId {
  pid_t pid = -1;
  std::uint64_t start_time = 0;
};

struct SiteRecord {
  std::string id;
  int level = 0;
  std::optional<std::string> parent;
  std::string path;
  std::string address;
  std::uint16_t port = 0;
  ProcessId process;
  std::string state;  // "running", "restarting", "held" (stopped on purpose)
  std::filesystem::path dir;
};

struct StateFile {
  std::string name;
  std::filesystem::path run_dir;
  ProcessId supervisor;
  std::vector<SiteRecord> sites;  // parents before children
  // The PKI folder of a TLS hierarchy ("pki_dir", absent for insecure plaintext): where
  // `nova-bridge status` finds the monitor's certificate.
  std::filesystem::path pki_dir;
};

inline constexpr const char* kStateFileName = "hierarchy.json";

std::string to_json(const StateFile& state);
schemas::Result<StateFile> parse_state_file(const std::string& json);
schemas::Result<StateFile> read_state_file(const std::filesystem::path& file);
// Writes through a temporary file and rename: readers never see half a file.
schemas::Status write_state_file(const std::filesystem::path& file, const StateFile& state);

// The process's start time from /proc/<pid>/stat; nullopt if there is no such process.
std::optional<std::uint64_t> process_start_time(pid_t pid);
// This process, as the state file records a supervisor.
ProcessId this_process();
// True while the recorded process is alive (same pid, same start time, not a zombie).
bool process_alive(const ProcessId& process);

}  // namespace nova::bridge
