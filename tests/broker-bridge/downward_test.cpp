// Acceptance (issue 3), "Downward": a message for one node, published at the cloud,
// reaches the brokers on the path to that node's access broker and no other access,
// metro or regional broker. A subscriber to nova/v1/down/# on every broker proves it.

#include <catch2/catch.hpp>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "nova/bridge/render.h"
#include "nova/schemas/codec.h"
#include "nova/schemas/messages.h"
#include "nova/schemas/topic.h"
#include "test_common.h"

namespace {

using namespace nova::hiertest;
using nova::tiers::Site;
using nova::tiers::Topology;

// Which down topics each broker's subscriber has seen, awaitable across all brokers.
class Board {
 public:
  void add(const std::string& site, const std::string& topic) {
    std::lock_guard lock(mutex_);
    seen_[site].push_back(topic);
    changed_.notify_all();
  }
  template <class Pred>
  bool wait_until(Pred pred, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return pred(seen_); });
  }
  std::map<std::string, std::vector<std::string>> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  void clear() {
    std::lock_guard lock(mutex_);
    seen_.clear();
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, std::vector<std::string>> seen_;
};

nova::topics::Id id(const std::string& text) {
  auto parsed = nova::topics::Id::parse(text);
  REQUIRE(parsed.ok());
  return std::move(parsed).value();
}

struct Target {
  const Site* site;
  std::string node;
  std::string topic;
};

// The topics each broker must see when `targets` are published at the cloud: a broker
// carries a message exactly when the target's site is the broker's site or below it, or
// when the broker is (or is above) a backup parent of a site on the target's path, which
// must reach that site if it fails over (issue 9, item 8). A broker on both routes
// carries it once.
std::map<std::string, std::multiset<std::string>> expected_routes(
    const Topology& topology, const std::vector<Target>& targets) {
  std::map<std::string, std::multiset<std::string>> expected;
  for (const auto& site : topology.sites()) expected[site.id()];
  for (const auto& target : targets) {
    std::set<std::string> carriers{target.site->id()};
    std::vector<const Site*> path{target.site};
    for (const auto* ancestor : topology.ancestors(*target.site)) {
      carriers.insert(ancestor->id());
      path.push_back(ancestor);
    }
    for (const Site* on_path : path) {
      for (const std::string& backup : on_path->spec.backup_parents) {
        carriers.insert(backup);
        for (const auto* above : topology.ancestors(topology.site(backup))) carriers.insert(above->id());
      }
    }
    for (const std::string& carrier : carriers) expected[carrier].insert(target.topic);
  }
  return expected;
}

std::string describe(const std::map<std::string, std::vector<std::string>>& seen) {
  std::string text;
  for (const auto& [site, topics] : seen) {
    text += site + ":";
    for (const auto& topic : topics) text += " " + topic;
    text += "\n";
  }
  return text;
}

}  // namespace

TEST_CASE("a down message reaches only the brokers on its target's branch and its backup routes",
          "[hierarchy][downward]") {
  auto running = start_example("downward");
  auto& hierarchy = **running;
  const auto& topology = hierarchy.topology();

  // One observer per broker, subscribed to every down topic. Only nova-cloud may read
  // every down topic, and one identity has one connection per broker, so each observer
  // is nova-cloud at its broker, and the cloud's observer is also the commander.
  Board board;
  std::vector<std::unique_ptr<Client>> observers;
  std::vector<Client*> to_connect;
  Client* commander = nullptr;
  for (const auto& site : topology.sites()) {
    observers.push_back(std::make_unique<Client>(endpoint(*running, site.id(), nova::bridge::kCloudServiceUser)));
    observers.back()->on_message(
        [&board, id = site.id()](const Received& message) { board.add(id, message.topic); });
    to_connect.push_back(observers.back().get());
    if (site.is_root()) commander = observers.back().get();
  }
  REQUIRE(commander != nullptr);
  connect_all(to_connect);
  for (auto& observer : observers) observer->subscribe("nova/v1/down/#");

  nova::schemas::Task task;
  task.task_id = "t-1";
  task.argv = {"/bin/true"};
  task.timeout_ms = 1000;
  task.issued_ts = 1732650000000;
  const std::string payload = as_string(nova::schemas::encode_cbor(task));

  auto target_for = [&](const std::string& node) {
    const auto* spec = topology.find_node(node);
    REQUIRE(spec != nullptr);
    const auto& site = topology.site(spec->site);
    return Target{&site, node,
                  nova::topics::down(site.path, id(node), nova::topics::DownKind::task)};
  };

  // Publishes the targets' tasks at the cloud, waits until every broker that must see
  // them did, then gives stray copies a bounded quiet period to show up, and compares
  // what each broker saw with the routes.
  auto route = [&](const std::vector<Target>& targets) {
    board.clear();
    const auto expected = expected_routes(topology, targets);
    for (const auto& target : targets) commander->publish_wait(target.topic, payload, false);
    auto complete = [&](const std::map<std::string, std::vector<std::string>>& seen) {
      for (const auto& [site, topics] : expected) {
        const auto it = seen.find(site);
        const std::size_t got = it == seen.end() ? 0 : it->second.size();
        if (got < topics.size()) return false;
      }
      return true;
    };
    if (!board.wait_until(complete, std::chrono::seconds(10))) {
      FAIL("not every broker on the routes got its tasks:\n" << describe(board.seen()));
    }
    // The one timed wait: a down message crosses a bridge in about a millisecond on
    // loopback, so a copy leaking into a wrong branch would show up well within 300 ms.
    auto overflow = [&](const std::map<std::string, std::vector<std::string>>& seen) {
      for (const auto& [site, topics] : seen) {
        const auto it = expected.find(site);
        if (it == expected.end() || topics.size() > it->second.size()) return true;
      }
      return false;
    };
    CHECK_FALSE(board.wait_until(overflow, std::chrono::milliseconds(300)));

    const auto seen = board.seen();
    INFO(describe(seen));
    for (const auto& [site, topics] : expected) {
      const auto it = seen.find(site);
      const std::multiset<std::string> got =
          it == seen.end() ? std::multiset<std::string>{}
                           : std::multiset<std::string>(it->second.begin(), it->second.end());
      INFO("broker " << site);
      CHECK(got == topics);
    }
  };

  {  // One node's task reaches its access broker and no other access, metro or
     // regional broker; and par-a1's backup parent ber, ready for a failover.
    const auto target = target_for("dev-par-a1-1");
    route({target});
    const auto seen = board.seen();
    // Spelled out for the reader: exactly the cloud, eu, par, ber and par-a1 brokers.
    std::set<std::string> saw;
    for (const auto& [site, topics] : seen) {
      if (!topics.empty()) saw.insert(site);
    }
    CHECK(saw == std::set<std::string>{"cloud", "eu", "par", "ber", "par-a1"});
  }

  {  // One task per site: every broker sees exactly its own subtree's tasks.
    // Also the positive control for every observer: each one must see at least the
    // task of its own site, so a silent observer cannot pass for a correct route.
    std::vector<Target> targets;
    for (const auto& site : topology.sites()) {
      const auto nodes = topology.nodes_at(site);
      if (nodes.empty()) {
        targets.push_back(Target{&site, "op-" + site.id(),
                                 nova::topics::down(site.path, id("op-" + site.id()),
                                                    nova::topics::DownKind::task)});
      } else {
        targets.push_back(target_for(nodes.front()->id));
      }
    }
    route(targets);
  }
}
