// A service of two replicas kept running (issue 13 item 3): a real nova-cloud and three
// real nova-agent processes on a real Mosquitto (mutual TLS, signed control messages, an
// API token), the service submitted and cancelled with curl.
//
//   - its replicas land on two distinct nodes and run;
//   - a replica's process SIGKILLed is restarted by its agent (1 s back-off): the restart
//     count shows in GET /api/v1/workloads/<id>;
//   - a replica whose health check fails (the check tests a file its run creates at
//     start; the test removes it) is killed and restarted by its agent;
//   - the agent of a replica SIGKILLed: the replica reappears on the third node (never
//     the other replica's), and the retained placement record says so; that agent
//     started again resumes the old run from its store, and the cancel sent at the
//     failover stops it;
//   - nova-cloud SIGKILLed and started again shows the same replicas in their last
//     reported state, placing nothing again;
//   - a cancel stops both replicas' processes and ends the service cancelled.
//
// Each run of the service writes its pid to pid-<task> and creates healthy-<task> in a
// directory the tasks' user may write (the agents run tasks as an unprivileged user).
#include <signal.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "cloud_process.h"
#include "curl.h"
#include "device_agents.h"
#include "workload_spec.h"
#include "nova/schemas/codec.h"
#include "nova/testing/poll.h"
#include "nova/testing/retained.h"
#include "nova/testing/temp_dir.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

long read_pid(const fs::path& file) {
  std::ifstream in(file);
  long pid = 0;
  in >> pid;
  return pid;
}

// Alive: it exists and is not a zombie (an orphan waits for whoever reaps for pid 1).
bool process_exists(long pid) {
  if (pid <= 0) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z' && stat[close + 2] != 'X';
}

}  // namespace

TEST_CASE("a service of two replicas is restarted by its agents and failed over by nova-cloud",
          "[cloud][services][integration]") {
  auto broker = testing::start_broker(testing::BrokerKind::mosquitto, testing::Transport::mutual_tls);
  test::CloudProcess cloud(broker->uri(), broker->data_dir() / "cloud");
  const std::vector<std::string> nodes = {"svc-a", "svc-b", "svc-c"};
  test::DeviceAgents agents(*broker, nodes);
  REQUIRE(agents.all_alive(cloud, 30s));

  testing::TempDir shared("nova-services");
  ::chmod(shared.path.c_str(), 01777);
  const std::string d = shared.path.string();
  json spec = json::parse(test::workload_spec(
      "web", "echo $$ > " + d + "/pid-$NOVA_TASK_ID; touch " + d + "/healthy-$NOVA_TASK_ID; exec /bin/sleep 600"));
  spec["kind"] = "service";
  spec["replicas"] = 2;
  spec["health_check"] = {{"command", {"/bin/sh", "-c", "test -f " + d + "/healthy-$NOVA_TASK_ID"}},
                          {"interval_s", 1},
                          {"timeout_s", 2},
                          {"failure_threshold", 2}};
  const std::string url = "http://127.0.0.1:" + std::to_string(cloud.port());
  const std::string auth = "Authorization: Bearer " + cloud.admin_token();
  auto post = [&](const std::string& path, const std::string& body) {
    return test::curl({"-X", "POST", "-H", auth, "-H", "Content-Type: application/json", "--data-binary", body, url + path});
  };

  // A bad value is refused naming the field; nothing is kept.
  json bad = spec;
  bad["replicas"] = 0;
  const auto refused = post("/api/v1/workloads", bad.dump());
  CHECK(refused.status == 400);
  CHECK(refused.body.find("workload.replicas: value 0 is out of range 1..64") != std::string::npos);

  const auto submitted = post("/api/v1/workloads", spec.dump());
  REQUIRE(submitted.status == 201);

  auto replicas = [&] {
    const json w = cloud.get_json("/api/v1/workloads/web");
    return w.is_object() ? w["replicas"] : json::array();
  };
  auto replica_is = [&](std::size_t i, const std::function<bool(const json&)>& pred) {
    return cloud.poll_json("/api/v1/workloads/web", [&](const json& w) { return w["replicas"].size() > i && pred(w["replicas"][i]); }, 20s);
  };
  // Both run, on two nodes.
  REQUIRE(cloud.poll_json("/api/v1/workloads/web", [](const json& w) {
    return w["phase"] == "running" && w["replicas"].size() == 2 && w["replicas"][0]["state"] == "running" &&
           w["replicas"][1]["state"] == "running";
  }, 20s));
  json r = replicas();
  const std::string node0 = r[0]["node"], node1 = r[1]["node"];
  const std::string task0 = r[0]["task_id"], task1 = r[1]["task_id"];
  CHECK(node0 != node1);
  CHECK(r[0]["health"] == "passing");
  REQUIRE(testing::poll_until([&] { return process_exists(read_pid(d + "/pid-" + task0)) &&
                                           process_exists(read_pid(d + "/pid-" + task1)); }, 10s));

  // SIGKILL of replica 0's process: its agent starts it again, counted.
  const long first_pid = read_pid(d + "/pid-" + task0);
  REQUIRE(::kill(static_cast<pid_t>(first_pid), SIGKILL) == 0);
  REQUIRE(replica_is(0, [](const json& x) { return x["restarts"] == 1 && x["state"] == "running"; }));
  CHECK(replicas()[0]["last_exit"] == -SIGKILL);
  CHECK(replicas()[0]["node"] == node0);  // restarted in place, not failed over
  REQUIRE(testing::poll_until([&] { return read_pid(d + "/pid-" + task0) != first_pid; }, 5s));

  // Replica 1's health check fails twice: its agent kills and restarts it.
  const long healthy_pid = read_pid(d + "/pid-" + task1);
  fs::remove(d + "/healthy-" + task1);
  REQUIRE(replica_is(1, [](const json& x) { return x["restarts"] == 1 && x["state"] == "running"; }));
  CHECK(replicas()[1]["last_exit"] == -SIGTERM);  // sleep dies of the SIGTERM
  CHECK_FALSE(process_exists(healthy_pid));
  CHECK(fs::exists(d + "/healthy-" + task1));  // the new run made it again
  CHECK(agents[node1].text().find("health_check_failed task_id=" + task1) != std::string::npos);

  // The agent of replica 0 dies: the replica reappears on the node that holds none.
  const std::string third = [&] {
    for (const auto& n : nodes) {
      if (n != node0 && n != node1) return n;
    }
    return std::string();
  }();
  const long orphan = read_pid(d + "/pid-" + task0);
  agents[node0].signal(SIGKILL);
  REQUIRE(replica_is(0, [&](const json& x) { return x["node"] == third && x["state"] == "running"; }));
  CHECK(replicas()[1]["node"] == node1);
  CHECK(cloud.get_json("/api/v1/workloads/web")["phase"] == "running");
  CHECK(testing::poll_until([&] { return !process_exists(orphan); }, 5s));  // died with its agent (PR_SET_PDEATHSIG)
  // The retained record others read names the new node.
  const auto retained = testing::read_retained(broker->uri(), "nova/v1/cloud/placement/web.0", 1);
  REQUIRE(retained.size() == 1);
  const auto placement = schemas::decode_cbor<schemas::Placement>(retained.begin()->second);
  REQUIRE(placement.ok());
  CHECK(placement->node == third);
  CHECK(placement->revision == 2);
  const auto metrics = test::curl({"-H", auth, url + "/metrics"});
  CHECK(metrics.body.find("nova_cloud_replica_failovers_total 1\n") != std::string::npos);

  // The dead node's agent starts again: it starts the replica's old run from its task
  // store, and the cancel nova-cloud sent that run at the failover (kept by the broker for
  // the agent's session) stops it: the replica runs once, on the third node.
  agents.restart(node0);
  REQUIRE(agents[node0].wait_log("task_cancel task_id=" + task0, 20s));
  CHECK(testing::poll_until([&] { return !process_exists(read_pid(d + "/pid-" + task0)); }, 10s));
  CHECK(replicas()[0]["node"] == third);
  CHECK(replicas()[0]["state"] == "running");

  // nova-cloud SIGKILLed and started again on its store: the replicas are where they
  // were, each in the state of its last report; nothing is placed again.
  const json before = replicas();
  cloud.kill(SIGKILL);
  cloud.start();
  REQUIRE(cloud.poll_json("/api/v1/workloads/web", [&](const json& w) {
    return w["phase"] == "running" && w["replicas"].size() == 2 && w["replicas"][0]["task_id"] == before[0]["task_id"] &&
           w["replicas"][1]["task_id"] == before[1]["task_id"] && w["replicas"][0]["state"] == "running" &&
           w["replicas"][1]["state"] == "running";
  }, 10s));
  CHECK(replicas()[1]["restarts"] == 1);

  // Cancel: both replicas' processes stop; the service ends cancelled.
  const std::string moved = replicas()[0]["task_id"];
  REQUIRE(testing::poll_until([&] { return process_exists(read_pid(d + "/pid-" + moved)); }, 10s));
  const long last0 = read_pid(d + "/pid-" + moved), last1 = read_pid(d + "/pid-" + task1);
  const auto cancelled = post("/api/v1/workloads/web/cancel", R"({"reason": "test over"})");
  CHECK(cancelled.status == 202);
  REQUIRE(cloud.poll_json("/api/v1/workloads/web", [](const json& w) { return w["phase"] == "cancelled"; }, 20s));
  CHECK(replicas()[0]["state"] == "cancelled");
  CHECK(replicas()[1]["state"] == "cancelled");
  CHECK(testing::poll_until([&] { return !process_exists(last0) && !process_exists(last1); }, 5s));
}
