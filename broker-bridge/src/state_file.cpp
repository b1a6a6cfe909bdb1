#include "nova/bridge/state_file.h"

#include "replace_file.h"

#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>

namespace nova::bridge {
namespace {

using nlohmann::json;
using schemas::Error;

json process_json(const ProcessId& p) { return json{{"pid", p.pid}, {"start_time", p.start_time}}; }

ProcessId process_from(const json& j) {
  return ProcessId{j.at("pid").get<pid_t>(), j.at("start_time").get<std::uint64_t>()};
}

// Fields 3 (state) and 22 (starttime) of /proc/<pid>/stat. The command name (field 2)
// is in parentheses and may contain spaces, so parse from the last ')'.
struct ProcStat {
  char state = '?';
  std::uint64_t start_time = 0;
};

std::optional<ProcStat> proc_stat(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!in || !std::getline(in, text)) return std::nullopt;
  const auto close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close + 1));
  ProcStat stat;
  fields >> stat.state;
  std::string skip;
  for (int field = 4; field < 22; ++field) fields >> skip;  // ppid .. priority etc.
  fields >> stat.start_time;
  if (!fields) return std::nullopt;
  return stat;
}

}  // namespace

std::optional<std::uint64_t> process_start_time(pid_t pid) {
  auto stat = proc_stat(pid);
  if (!stat) return std::nullopt;
  return stat->start_time;
}

ProcessId this_process() { return ProcessId{::getpid(), process_start_time(::getpid()).value_or(0)}; }

bool process_alive(const ProcessId& process) {
  const auto stat = proc_stat(process.pid);
  return stat && stat->state != 'Z' && stat->state != 'X' && stat->start_time == process.start_time;
}

std::string to_json(const StateFile& state) {
  json sites = json::array();
  for (const SiteRecord& s : state.sites) {
    json site{{"id", s.id},     {"level", s.level},    {"path", s.path},
              {"address", s.address}, {"port", s.port}, {"pid", s.process.pid},
              {"start_time", s.process.start_time}, {"state", s.state}, {"dir", s.dir.string()}};
    if (s.parent) site["parent"] = *s.parent;
    sites.push_back(std::move(site));
  }
  json doc{{"name", state.name},
           {"run_dir", state.run_dir.string()},
           {"supervisor", process_json(state.supervisor)},
           {"sites", std::move(sites)}};
  if (!state.pki_dir.empty()) doc["pki_dir"] = state.pki_dir.string();
  return doc.dump(2) + "\n";
}

schemas::Result<StateFile> parse_state_file(const std::string& text) {
  try {
    const json doc = json::parse(text);
    StateFile state;
    state.name = doc.at("name").get<std::string>();
    state.run_dir = doc.at("run_dir").get<std::string>();
    state.supervisor = process_from(doc.at("supervisor"));
    if (doc.contains("pki_dir")) state.pki_dir = doc.at("pki_dir").get<std::string>();
    for (const json& s : doc.at("sites")) {
      SiteRecord r;
      r.id = s.at("id").get<std::string>();
      r.level = s.at("level").get<int>();
      if (s.contains("parent")) r.parent = s.at("parent").get<std::string>();
      r.path = s.at("path").get<std::string>();
      r.address = s.at("address").get<std::string>();
      r.port = s.at("port").get<std::uint16_t>();
      r.process = process_from(s);
      r.state = s.at("state").get<std::string>();
      r.dir = s.at("dir").get<std::string>();
      state.sites.push_back(std::move(r));
    }
    return state;
  } catch (const json::exception& e) {
    return Error{"", std::string("not a hierarchy state file: ") + e.what()};
  }
}

schemas::Result<StateFile> read_state_file(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return Error{"", "cannot read " + file.string() + " (is a hierarchy running there?)"};
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto state = parse_state_file(buffer.str());
  if (!state) return Error{"", file.string() + ": " + state.error().message()};
  return state;
}

schemas::Status write_state_file(const std::filesystem::path& file, const StateFile& state) {
  return replace_file(file, to_json(state));
}

}  // namespace nova::bridge
