// A workload migrated while its first node is still alive runs exactly once at a time
// (issue 13): a real nova-cloud, two real nova-agent processes and a real Mosquitto, all
// over mutual TLS; the CPU nova-cloud judges comes from the test's feed (cpu_feed.h).
//
// The workload's script appends "start <task> <pid> <ns>" when it starts and
// "stop <task> <pid> <ns>" when SIGTERM reaches it, to a log in a directory the tasks'
// user may write. A run that starts also writes which earlier runs' processes still
// exist (/proc/<pid>): with fencing, none. Then an operator's cancel through REST stops
// the second run: the workload ends "cancelled", its process is gone, and the cancel is
// in the audit log.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "cloud_process.h"
#include "cpu_feed.h"
#include "two_devices.h"
#include "workload_spec.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/poll.h"
#include "nova/testing/temp_dir.h"
#include "nova/testing/test_broker.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// One line of the runs' log.
struct RunEvent {
  std::string kind;  // "start" | "stop"
  std::string task;
  long pid = 0;
  long long ns = 0;
  std::string alive;  // start only: pids of earlier runs that still existed
};

std::vector<RunEvent> read_runs(const fs::path& log) {
  std::vector<RunEvent> out;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    RunEvent e;
    if (!(fields >> e.kind >> e.task >> e.pid >> e.ns)) continue;
    std::string rest;
    std::getline(fields, rest);
    if (const auto at = rest.find("alive:"); at != std::string::npos) e.alive = rest.substr(at + 6);
    while (!e.alive.empty() && e.alive.back() == ' ') e.alive.pop_back();
    out.push_back(e);
  }
  return out;
}

const RunEvent* find_event(const std::vector<RunEvent>& events, const std::string& kind, const std::string& task) {
  for (const RunEvent& e : events) {
    if (e.kind == kind && e.task == task) return &e;
  }
  return nullptr;
}

// Appends start (with the earlier runs still alive) and, on SIGTERM, stop; runs until then.
std::string run_script(const fs::path& log) {
  const std::string l = log.string();
  return "alive=''; if [ -f " + l + " ]; then while read kind task pid rest; do "
         "if [ \"$kind\" = start ] && [ -d /proc/$pid ]; then alive=\"$alive $pid\"; fi; done < " + l + "; fi; "
         "echo \"start $NOVA_TASK_ID $$ $(date +%s%N) alive:$alive\" >> " + l + "; "
         "trap 'echo \"stop $NOVA_TASK_ID $$ $(date +%s%N)\" >> " + l + "; exit 0' TERM; "
         "while :; do sleep 0.2; done";
}

}  // namespace

TEST_CASE("a workload migrated off a live node runs once at a time: the old run is gone before the new one starts",
          "[cloud][migration][fence][integration]") {
  auto broker = testing::start_broker(testing::BrokerKind::mosquitto, testing::Transport::mutual_tls);
  test::CloudProcess cloud(broker->uri(), broker->data_dir() / "cloud", "nova-cloud", "", 180, std::nullopt,
                           test::kMigrationYaml);
  std::map<std::string, std::unique_ptr<testing::AgentProcess>> agents;
  for (const auto& node : test::kTwoDevices) {
    const fs::path dir = broker->data_dir() / node;
    fs::create_directories(dir);
    testing::write_agent_config(dir / "agent.yaml", node, test::kDeviceSite, 5, broker->uri(), dir,
                                "metrics: {interval_ms: 1000, batch_interval_s: 3600}\n");
    agents[node] = std::make_unique<testing::AgentProcess>(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  }
  auto alive = [&](const std::string& node) {
    const json n = cloud.get_json("/api/v1/nodes/" + node);
    return n.is_object() && n["liveness"] == "alive";
  };
  REQUIRE(testing::poll_until([&] { return alive(test::kTwoDevices[0]) && alive(test::kTwoDevices[1]); }, 30s));
  test::CpuFeed feed(broker->uri());

  // The tasks run as an unprivileged user: their log lives in a directory anyone may write.
  testing::TempDir shared("nova-fence");
  ::chmod(shared.path.c_str(), 01777);
  const fs::path runs = shared.path / "runs.log";

  auto submitted = cloud.post("/api/v1/workloads", test::workload_spec("fenced", run_script(runs)));
  REQUIRE(submitted);
  REQUIRE(submitted->status == 201);
  std::string first;
  REQUIRE(testing::poll_until([&] {
    const json w = cloud.get_json("/api/v1/workloads/fenced");
    if (!w.is_object() || w["phase"] != "running") return false;
    first = w["placement"]["node"].get<std::string>();
    return find_event(read_runs(runs), "start", "fenced.r1") != nullptr;
  }, 30s));

  // Its node overloaded: after the dwell time (10 s) the workload moves, its first node alive.
  feed.set(first, test::Load::full);
  REQUIRE(testing::poll_until([&] { return find_event(read_runs(runs), "start", "fenced.r2") != nullptr; }, 60s));
  feed.set(first, test::Load::calm);
  const auto events = read_runs(runs);
  INFO("runs log:\n" << [&] {
    std::ifstream in(runs);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }());
  const RunEvent* old_start = find_event(events, "start", "fenced.r1");
  const RunEvent* old_stop = find_event(events, "stop", "fenced.r1");
  const RunEvent* new_start = find_event(events, "start", "fenced.r2");
  REQUIRE(old_start != nullptr);
  REQUIRE(new_start != nullptr);
  REQUIRE(old_stop != nullptr);  // SIGTERM reached the old run
  CHECK(old_stop->ns < new_start->ns);  // the intervals do not overlap
  CHECK(new_start->alive.empty());      // and the old process was gone when the new one started
  CHECK(agents[first]->running());      // the first node was alive all along

  const json moved = cloud.get_json("/api/v1/workloads/fenced");
  REQUIRE(moved.is_object());
  CHECK(moved["placement"]["node"] == test::other_device(first));
  bool stopped_noted = false;
  for (const json& h : moved["history"]) {
    stopped_noted = stopped_noted || h["reason"].get<std::string>().starts_with("stopped fenced.r1: cancelled on " + first);
  }
  CHECK(stopped_noted);
  CHECK(agents[first]->text().find("task_cancel task_id=fenced.r1 outcome=stopping") != std::string::npos);

  // An operator's cancel stops the second run: phase cancelled, process gone, audited.
  auto cancelled = cloud.post("/api/v1/workloads/fenced/cancel", R"({"reason": "test is done"})");
  REQUIRE(cancelled);
  CHECK(cancelled->status == 202);
  REQUIRE(testing::poll_until([&] {
    const json w = cloud.get_json("/api/v1/workloads/fenced");
    return w.is_object() && w["phase"] == "cancelled";
  }, 30s));
  const json done = cloud.get_json("/api/v1/workloads/fenced");
  CHECK(done["result"]["status"] == "cancelled");
  CHECK(done["result"]["reason"].get<std::string>().starts_with("cancelled: test is done: SIGTERM sent"));
  const RunEvent* second_stop = find_event(read_runs(runs), "stop", "fenced.r2");
  CHECK(second_stop != nullptr);
  CHECK_FALSE(fs::exists("/proc/" + std::to_string(new_start->pid)));
  std::ifstream audit(cloud.audit_file());
  const std::string audit_text((std::istreambuf_iterator<char>(audit)), std::istreambuf_iterator<char>());
  CHECK(audit_text.find(R"("action":"POST /api/v1/workloads/{id}/cancel","target":"/api/v1/workloads/fenced/cancel","outcome":"202")") !=
        std::string::npos);
  auto again = cloud.post("/api/v1/workloads/fenced/cancel", "");
  REQUIRE(again);
  CHECK(again->status == 409);
}
