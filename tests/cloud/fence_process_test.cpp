// A workload migrated while its first node is still alive runs exactly once at a time
// (issue 13): the real five-tier hierarchy of Mosquitto brokers (every hop mutual TLS),
// a real nova-cloud at the top and two real nova-agent processes on devices at two
// access sites, three bridge hops down. The migration's trigger is a maintenance window
// opened by the test (a cluster policy, REST) over the first device's access site, with
// a dwell time of 10 s.
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

#include <cstdio>
#include <ctime>

#include "cloud_process.h"
#include "device_agents.h"
#include "guard_rule.h"
#include "hierarchy_support.h"
#include "workload_spec.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/broker.h"
#include "nova/testing/poll.h"
#include "nova/testing/temp_dir.h"

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

// Appends start (with the earlier runs still alive) and, on SIGTERM, stop; runs until
// then, or with `outlive_term` until the agent's SIGKILL (kill_grace_ms, 5 s, later).
std::string run_script(const fs::path& log, bool outlive_term = false) {
  const std::string l = log.string();
  return "alive=''; if [ -f " + l + " ]; then while read kind task pid rest; do "
         "if [ \"$kind\" = start ] && [ -d /proc/$pid ]; then alive=\"$alive $pid\"; fi; done < " + l + "; fi; "
         "echo \"start $NOVA_TASK_ID $$ $(date +%s%N) alive:$alive\" >> " + l + "; "
         "trap 'echo \"stop $NOVA_TASK_ID $$ $(date +%s%N)\" >> " + l + (outlive_term ? "" : "; exit 0") + "' TERM; "
         "while :; do sleep 0.2; done";
}

// Two devices of the example topology at two access sites below one metro site.
const std::map<std::string, std::string> kDevices = {{"dev-par-a1-1", "par-a1"}, {"dev-par-a2-1", "par-a2"}};

// A daily UTC window "HH:MM-HH:MM" from an hour ago to an hour from now: open now.
std::string window_open_now() {
  const std::time_t now = std::time(nullptr);
  auto hhmm = [](std::time_t t) {
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[8];
    std::snprintf(buf, sizeof buf, "%02d:%02d", tm.tm_hour, tm.tm_min);
    return std::string(buf);
  };
  return hhmm(now - 3600) + "-" + hhmm(now + 3600);
}

}  // namespace

TEST_CASE("a workload migrated off a live node runs once at a time: the old run is gone before the new one starts",
          "[cloud][migration][fence][integration]") {
  const tiers::Topology topology = hiertest::load_topology(NOVA_EXAMPLE_TOPOLOGY);
  auto h = hiertest::start_hierarchy(topology, "nova-fence", testing::Transport::mutual_tls);
  const fs::path dir = h->dir.path() / "fence";
  test::CloudProcess cloud(h->tls_uri("cloud"), dir / "cloud", "nova-cloud", "", 180, h->identity("nova-cloud"),
                           "migration:\n  min_dwell_s: 10\n");
  std::map<std::string, std::unique_ptr<testing::AgentProcess>> agents;
  for (const auto& [node, site_id] : kDevices) {
    const fs::path adir = dir / node;
    fs::create_directories(adir);
    const testing::TlsIdentity id = h->identity(node);
    testing::write_agent_config(adir / "agent.yaml", node, topology.site(site_id).path.str(), 5, h->tls_uri(site_id),
                                adir, "",
                                ", tls_ca_file: " + id.ca.string() + ", tls_cert_file: " + id.cert.string() +
                                    ", tls_key_file: " + id.key.string());
    agents[node] = std::make_unique<testing::AgentProcess>(NOVA_AGENT_BIN, adir / "agent.yaml", adir / "agent.log");
  }
  auto alive = [&](const std::string& node) {
    const json n = cloud.get_json("/api/v1/nodes/" + node);
    return n.is_object() && n["liveness"] == "alive";
  };
  REQUIRE(testing::poll_until([&] { return alive("dev-par-a1-1") && alive("dev-par-a2-1"); }, 60s));

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

  // A maintenance window open now over its node's access site: after the dwell time
  // (10 s) the workload moves, its first node alive all along.
  const std::string second = first == "dev-par-a1-1" ? "dev-par-a2-1" : "dev-par-a1-1";
  const json maintenance = {{"v", 1},
                            {"cluster_id", "maint"},
                            {"name", "maintenance"},
                            {"role", "secondary"},
                            {"root_site", topology.site(kDevices.at(first)).path.str()},
                            {"policies", {{"maintenance_window", window_open_now()}}}};
  auto registered = cloud.post("/api/v1/clusters", maintenance.dump());
  REQUIRE(registered);
  REQUIRE(registered->status == 201);
  REQUIRE(testing::poll_until([&] { return find_event(read_runs(runs), "start", "fenced.r2") != nullptr; }, 60s));
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
  CHECK(moved["placement"]["node"] == second);
  bool stopped_noted = false;
  for (const json& entry : moved["history"]) {
    stopped_noted = stopped_noted || entry["reason"].get<std::string>().starts_with("stopped fenced.r1: cancelled on " + first);
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

TEST_CASE("nova-cloud SIGKILLed while a fence holds the new run waits again after its restart and then starts it",
          "[cloud][migration][fence][restart][integration]") {
  testing::Broker broker(testing::mutual_tls());
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud", "nova-cloud", "", 180, std::nullopt,
                           test::kRequestedMigrationCloudYaml);
  // Both devices ask, above 80 on their probe, that the workload leave them.
  test::DeviceAgents agents(broker, {test::kTwoDevices[0], test::kTwoDevices[1]},
                            test::guard_pipeline("held"));
  REQUIRE(agents.all_alive(cloud, 30s));
  testing::TempDir shared("nova-fence-restart");
  ::chmod(shared.path.c_str(), 01777);
  const fs::path runs = shared.path / "runs.log";

  // Its first run outlives SIGTERM, so the agent answers the cancel only after its
  // SIGKILL 5 s later: the fence holds the second run that long.
  auto submitted = cloud.post("/api/v1/workloads", test::workload_spec("held", run_script(runs, true)));
  REQUIRE(submitted);
  REQUIRE(submitted->status == 201);
  std::string first;
  REQUIRE(testing::poll_until([&] {
    const json w = cloud.get_json("/api/v1/workloads/held");
    if (!w.is_object() || w["phase"] != "running") return false;
    first = w["placement"]["node"].get<std::string>();
    return find_event(read_runs(runs), "start", "held.r1") != nullptr;
  }, 30s));
  const std::string& second = test::other_device(first);
  const std::string reading = "mosquitto_pub " + broker.mosquitto_client_args("probe") + " -q 1 -i probe -t nova/v1/sensor/" +
                              first + "/probe -m '{\"v\":1,\"ts\":" +
                              std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::system_clock::now().time_since_epoch())
                                                 .count()) +
                              ",\"values\":{\"temp\":95}}'";
  REQUIRE(std::system(reading.c_str()) == 0);
  json held;
  REQUIRE(testing::poll_until([&] {
    held = cloud.get_json("/api/v1/workloads/held");
    return held.is_object() && held.contains("stopping");
  }, 20s));
  INFO("while held: " << held.dump());
  CHECK(held["stopping"]["task_id"] == "held.r1");
  CHECK(held["stopping"]["next"]["task_id"] == "held.r2");
  CHECK(held["stopping"]["next"]["node"] == second);

  // SIGKILL while the old run still lives, then a restart on the same store.
  cloud.kill(SIGKILL);
  CHECK(find_event(read_runs(runs), "start", "held.r2") == nullptr);
  cloud.start();
  const auto log_text = [&] {
    std::ifstream in(cloud.log_file());
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  // Restored from the store at start, before any message: still waiting for held.r1.
  CHECK(log_text().find("event=fence_restored workload=held stopping=held.r1 node=" + first + " held=held.r2") !=
        std::string::npos);

  // The old run ends (SIGKILL after the grace), and only then the new one starts, on the other node.
  REQUIRE(testing::poll_until([&] { return find_event(read_runs(runs), "start", "held.r2") != nullptr; }, 40s));
  const auto events = read_runs(runs);
  const RunEvent* old_start = find_event(events, "start", "held.r1");
  const RunEvent* new_start = find_event(events, "start", "held.r2");
  REQUIRE(old_start != nullptr);
  INFO("held.r1 pid " << old_start->pid << ", still alive at held.r2's start: '" << new_start->alive << "'");
  CHECK(new_start->alive.empty());  // the old process was gone
  CHECK(find_event(events, "stop", "held.r1") != nullptr);  // SIGTERM had reached it
  REQUIRE(testing::poll_until([&] {
    const json w = cloud.get_json("/api/v1/workloads/held");
    return w.is_object() && w["placement"]["node"] == second && !w.contains("stopping") && w["phase"] == "running";
  }, 10s));
  // The store forgot the fence: a second restart (the log is appended) restores none.
  cloud.kill(SIGKILL);
  cloud.start();
  const std::string all = log_text();
  std::size_t restored = 0;
  for (auto at = all.find("event=fence_restored"); at != std::string::npos; at = all.find("event=fence_restored", at + 1)) ++restored;
  CHECK(restored == 1);
  auto cancelled = cloud.post("/api/v1/workloads/held/cancel", R"({"reason": "test is done"})");
  REQUIRE(cancelled);
  CHECK(cancelled->status == 202);
}
