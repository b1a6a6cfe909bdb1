// Downward traffic after failover (issue 9, item 8): site c's primary parent a is
// stopped, c's bridge fails over to its backup parent b, and a task published at the top
// for a node at c reaches that node; a is started again, c moves back, and the next task
// also arrives. Nothing is lost. The task sent during the failover may arrive a second
// time when c moves back (a kept it in c's session, as it must to lose nothing while c
// had no parent); the agent drops a repeated task id (tasks_test), so the repeat is
// harmless. Every other task arrives exactly once.
//
// Before the fix, the first task never arrived: b's bridge subscribed only to b's own
// subtree on the top, so nothing addressed to c's path reached b.

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <string>

#include "nova/bridge/link.h"
#include "nova/bridge/render.h"
#include "test_common.h"

using namespace nova::hiertest;

namespace {

const char* const kBranches = R"(name: failover-down
sites:
  - {id: top, level: 1}
  - {id: a, level: 2, parent: top}
  - {id: b, level: 2, parent: top}
  - {id: c, level: 3, parent: a, backups: [b]}
nodes:
  - {id: node-c, site: c}
)";

}  // namespace

TEST_CASE("a site on its backup parent gets its downward messages, each once", "[hierarchy][downward][failover]") {
  RunDir topo_dir("nova-failover-topology");
  const auto topo_file = topo_dir.path() / "branches.yaml";
  std::ofstream(topo_file) << kBranches;
  auto running = start_hierarchy(load_topology(topo_file), "nova-hier-failover");
  auto& hierarchy = **running;

  const std::string task_topic = "nova/v1/down/top/a/c/node-c/task";
  // The node at c with its own certificate, as an agent connects; nova-cloud sends.
  Client node(endpoint(*running, "c", "node-c"));
  Client commander(endpoint(*running, "top", nova::bridge::kCloudServiceUser));
  connect_all({&node, &commander});
  node.subscribe("nova/v1/down/top/a/c/node-c/#");
  auto copies_of = [&](const std::string& payload) {
    std::size_t n = 0;
    for (const Received& r : node.messages()) if (r.payload == payload) ++n;
    return n;
  };
  // The one timed wait: a copy of a task that is still on its way shows up well
  // within 500 ms on loopback. (The retained config comes again at each reconnect of
  // c's bridge, by design: it is not a task.)
  auto more_tasks_within_500ms = [&](std::size_t tasks_now) {
    return node.wait_until(
        [&](const std::vector<Received>& got) {
          std::size_t tasks = 0;
          for (const Received& r : got) {
            if (r.topic == task_topic) ++tasks;
          }
          return tasks > tasks_now;
        },
        std::chrono::milliseconds(500));
  };
  auto arrives = [&](const std::string& payload) {
    return node.wait_until(
        [&](const std::vector<Received>& got) {
          for (const Received& r : got) {
            if (r.payload == payload) return true;
          }
          return false;
        },
        std::chrono::seconds(10));
  };

  commander.publish_wait(task_topic, "task-0", false);
  REQUIRE(arrives("task-0"));  // the primary route works

  // A retained config brought down by the bridges is still served to a node that
  // subscribes later: check_retain_source re-sends it because each broker's ACL lets
  // its own bridge's identity write its down maps (render.h). The later subscription is
  // the node's own (a second connection with its certificate would take over the
  // first's session): a new subscription gets the retained copy, with the retain flag.
  const std::string config_topic = "nova/v1/down/top/a/c/node-c/config";
  commander.publish_wait(config_topic, "config-1", /*retained=*/true);
  REQUIRE(arrives("config-1"));
  {
    const std::size_t before = node.count();
    node.subscribe(config_topic);
    CHECK(node.wait_until(
        [&](const std::vector<Received>& got) {
          for (std::size_t i = before; i < got.size(); ++i) {
            if (got[i].topic == config_topic && got[i].payload == "config-1" && got[i].retained) return true;
          }
          return false;
        },
        std::chrono::seconds(10)));
    REQUIRE(node.paho().unsubscribe(config_topic)->wait_for(std::chrono::seconds(10)));
  }

  hierarchy.stop("a");
  REQUIRE(nova::bridge::wait_link_connected(hierarchy.uri("b"), "c", std::chrono::seconds(30), running->monitor_tls()));  // failed over
  commander.publish_wait(task_topic, "task-1", false);
  CHECK(arrives("task-1"));

  hierarchy.start_site("a");
  // c moves back once a answers: a reports c's link "1" (a restored "0", its will).
  REQUIRE(nova::bridge::wait_link_connected(hierarchy.uri("a"), "c", std::chrono::seconds(60), running->monitor_tls()));
  commander.publish_wait(task_topic, "task-2", false);
  CHECK(arrives("task-2"));
  const std::size_t tasks_now = 2 + copies_of("task-1");
  CHECK_FALSE(more_tasks_within_500ms(tasks_now));  // none more via b

  CHECK(copies_of("task-0") == 1);
  CHECK(copies_of("task-1") >= 1);  // a repeat from a's session is allowed (see above)
  CHECK(copies_of("task-1") <= 2);
  CHECK(copies_of("task-2") == 1);

}
