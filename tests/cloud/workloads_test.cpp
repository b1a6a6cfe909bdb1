// Workloads as pure logic: a fake publisher records what would go on the wire, a fake
// node table stands in for the live topology. Placement, failover, migration with
// fencing and rollback, cancels, maintenance windows, federation and ownership between
// instances.
#include <catch2/catch.hpp>

#include "nova/cloud/migration.h"
#include "nova/cloud/workloads.h"
#include "nova/schemas/codec.h"

using namespace nova;
using namespace nova::cloud;
using schemas::Timestamp;

namespace {

constexpr Timestamp kNoon = 1'795'780'800'000;  // 2026-11-27 12:00:00 UTC

NodeView node(const std::string& id, const std::string& site, std::uint64_t cpu = 4000) {
  NodeView n;
  n.id = id;
  n.description = schemas::NodeDescription{5, site, "aarch64", "1", {}, {cpu, 4096, 10000}, std::nullopt};
  n.liveness = Liveness::alive;
  return n;
}

struct Published {
  std::string topic;
  schemas::Bytes payload;
  bool retained;
};

struct Cloud {
  std::vector<NodeView> nodes;
  std::vector<Published> published;
  Workloads workloads;

  explicit Cloud(std::string self = "nova-cloud", bool shared = false)
      : workloads(
            [this](const std::string& t, const schemas::Bytes& p, bool r) {
              published.push_back({t, p, r});
              return true;
            },
            [this] { return nodes; }, nullptr, std::move(self), shared) {}

  // The task ids of the cancels published, in order, with the node they went to.
  std::vector<std::pair<std::string, std::string>> cancels() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& p : published) {
      if (!p.topic.ends_with("/cancel")) continue;
      const auto node_end = p.topic.rfind('/');
      const auto node_start = p.topic.rfind('/', node_end - 1) + 1;
      out.emplace_back(schemas::decode_cbor<schemas::TaskCancel>(p.payload).value().task_id,
                       p.topic.substr(node_start, node_end - node_start));
    }
    return out;
  }
  std::vector<schemas::Task> tasks() const {
    std::vector<schemas::Task> out;
    for (const auto& p : published) {
      if (p.topic.ends_with("/task")) out.push_back(schemas::decode_cbor<schemas::Task>(p.payload).value());
    }
    return out;
  }
  void set(const std::string& id, Liveness l) {
    for (auto& n : nodes) {
      if (n.id == id) n.liveness = l;
    }
  }
};

schemas::WorkloadSpec spec(const std::string& id, std::uint64_t storage_mb = 0) {
  schemas::WorkloadSpec s;
  s.workload_id = id;
  s.name = id;
  s.argv = {"/bin/true"};
  s.resources = {500, 256, storage_mb};
  s.timeout_ms = 60000;
  return s;
}

schemas::TaskResult result(const std::string& node, const std::string& task, schemas::TaskStatus status,
                           std::optional<Timestamp> started) {
  schemas::TaskResult r;
  r.position = {node, "results", 1};
  r.task_id = task;
  r.status = status;
  r.started_ts = started;
  r.finished_ts = kNoon;
  return r;
}

// One sample a second from `from` for `seconds` seconds, each with this cpu and memory.
std::vector<schemas::MetricSample> samples(Timestamp from, int seconds, double cpu, double mem = 40) {
  std::vector<schemas::MetricSample> out;
  for (int i = 0; i < seconds; ++i) {
    schemas::MetricSample s;
    s.ts = from + static_cast<Timestamp>(i) * 1000;
    s.cpu_pct = cpu;
    s.mem_pct = mem;
    out.push_back(s);
  }
  return out;
}

constexpr Timestamp kDwell = MigrationPolicy{}.min_dwell_ms;

}  // namespace

TEST_CASE("a submission is placed and published and its task sent to the node", "[cloud][workloads]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/a1"), node("d2", "cloud/eu/ber/b1")};
  auto w = c.workloads.submit(spec("w1"), kNoon);
  REQUIRE(w.ok());
  CHECK(w->phase == Phase::running);
  CHECK(w->task_id == "w1.r1");
  REQUIRE(c.published.size() == 3);
  CHECK(c.published[0].topic == "nova/v1/cloud/workload/w1");
  CHECK(c.published[0].retained);
  CHECK(c.published[1].topic == "nova/v1/cloud/placement/w1");
  const auto tasks = c.tasks();
  REQUIRE(tasks.size() == 1);
  CHECK(c.published[2].topic == "nova/v1/down/" + w->placement->site + "/" + w->placement->node + "/task");
  CHECK(w->placement->failover.size() == 1);
  CHECK_FALSE(c.workloads.submit(spec("w1"), kNoon).ok());  // already exists
}

TEST_CASE("failover places the workload elsewhere once and records when the loss was seen", "[cloud][workloads]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/a1"), node("d2", "cloud/eu/ber/b1")};
  auto w = c.workloads.submit(spec("w1"), kNoon);
  REQUIRE(w.ok());
  const std::string first = w->placement->node;
  c.set(first, Liveness::dead);
  c.workloads.on_liveness({{first, Liveness::alive, Liveness::dead, "will"}}, kNoon + 100);
  auto after = c.workloads.get("w1");
  REQUIRE(after);
  CHECK(after->placement->node != first);
  CHECK(after->task_id == "w1.r2");
  CHECK(after->history.back().detected_ts == kNoon + 100);
  CHECK(c.tasks().size() == 2);
  c.workloads.on_result(result(after->placement->node, "w1.r2", schemas::TaskStatus::ok, kNoon + 150), kNoon + 900);
  CHECK(c.workloads.get("w1")->history.back().started_ts == kNoon + 150);
  CHECK(c.workloads.counters().last_failover_recovery_ms == 50);
}

TEST_CASE("a hot node triggers a migration that rolls back when the target refuses", "[cloud][migration]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/a1"), node("d2", "cloud/eu/ber/b1")};
  auto w = c.workloads.submit(spec("w1", 200), kNoon);
  REQUIRE(w.ok());
  const std::string source = w->placement->node;
  c.workloads.on_metrics(source, samples(kNoon, 61, 97));  // 60 s above 90 %: overloaded
  c.workloads.tick(kNoon + kDwell);
  auto moving = c.workloads.get("w1");
  REQUIRE(moving->migration);
  CHECK(moving->migration->from == source);
  CHECK(moving->migration->trigger == "cpu above 90 % for 60 s (last sample 97 %)");
  CHECK(moving->migration->sync == "copy-then-switch");
  CHECK(moving->migration->data_mb == 200);
  CHECK(moving->migration->estimated_transfer_ms == 16000);  // 200 MB at 12.5 MB/s
  // The target's task waits for the source's run to stop.
  CHECK(c.tasks().size() == 1);
  CHECK(c.cancels() == std::vector<std::pair<std::string, std::string>>{{"w1.r1", source}});
  c.workloads.on_result(result(source, "w1.r1", schemas::TaskStatus::cancelled, kNoon), kNoon + kDwell + 1000);
  const auto tasks = c.tasks();
  REQUIRE(tasks.size() == 2);
  CHECK(tasks.back().task_id == "w1.r2");
  CHECK(tasks.back().env.at("NOVA_MIGRATED_FROM") == source);
  CHECK(tasks.back().env.at("NOVA_SYNC_STRATEGY") == "copy-then-switch");

  c.workloads.on_result(result(moving->placement->node, moving->task_id, schemas::TaskStatus::refused, std::nullopt),
                        kNoon + kDwell + 2000);
  auto back = c.workloads.get("w1");
  CHECK_FALSE(back->migration);
  CHECK(back->placement->node == source);
  CHECK(back->task_id == "w1.r3");  // a new run: the source's was cancelled
  CHECK(back->history.back().reason.starts_with("rollback to " + source));
  CHECK(c.workloads.counters().rollbacks == 1);
  REQUIRE(c.tasks().size() == 3);
  CHECK(c.tasks().back().task_id == "w1.r3");
  CHECK(c.published.back().topic.find("/" + source + "/task") != std::string::npos);
}

TEST_CASE("a migration completes when the target runs and stays put when nowhere fits", "[cloud][migration]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/a1")};
  auto w = c.workloads.submit(spec("w1"), kNoon);
  REQUIRE(w.ok());
  c.workloads.on_metrics("d1", samples(kNoon, 61, 10, 95));
  c.workloads.tick(kNoon + kDwell);
  CHECK_FALSE(c.workloads.get("w1")->migration);  // one node: stay
  CHECK(c.workloads.get("w1")->placement->node == "d1");

  c.nodes.push_back(node("d2", "cloud/eu/ber/b1"));
  c.workloads.tick(kNoon + kDwell + 30'000);  // nowhere to go was a minute's hold
  CHECK_FALSE(c.workloads.get("w1")->migration);
  c.workloads.tick(kNoon + kDwell + 61'000);
  auto moving = c.workloads.get("w1");
  REQUIRE(moving->migration);
  CHECK(moving->migration->trigger.starts_with("memory above 90 %"));
  CHECK(moving->migration->sync == "restart");
  c.workloads.on_result(result("d1", "w1.r1", schemas::TaskStatus::cancelled, kNoon), kNoon + kDwell + 61'200);
  c.workloads.on_result(result("d2", moving->task_id, schemas::TaskStatus::ok, kNoon + kDwell + 61'500),
                        kNoon + kDwell + 62'000);
  CHECK_FALSE(c.workloads.get("w1")->migration);
  CHECK(c.workloads.get("w1")->phase == Phase::succeeded);
  CHECK(c.workloads.counters().migrations == 1);
}

TEST_CASE("maintenance windows in cluster policy move work off and keep new work away", "[cloud][migration]") {
  CHECK(maintenance_at("11:00-13:00", kNoon).value() == tiers::Maintenance::now);
  CHECK(maintenance_at("12:20-13:00", kNoon).value() == tiers::Maintenance::soon);
  CHECK(maintenance_at("14:00-15:00", kNoon).value() == tiers::Maintenance::none);
  CHECK(maintenance_at("23:00-12:30", kNoon).value() == tiers::Maintenance::now);  // wraps midnight
  CHECK(maintenance_at("25:00-26:00", kNoon).error().message().starts_with("policies.maintenance_window"));

  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/a1"), node("d2", "cloud/eu/ber/b1")};
  c.workloads.tick(kNoon);
  auto w = c.workloads.submit(spec("w1"), kNoon);
  REQUIRE(w.ok());
  const std::string first = w->placement->node;
  const std::string site = first == "d1" ? "cloud/eu/par" : "cloud/eu/ber";
  schemas::ClusterRecord maint;
  maint.cluster_id = "maint";
  maint.name = "in maintenance";
  maint.root_site = site;
  maint.policies = {{"maintenance_window", "11:30-12:30"}};
  REQUIRE(c.workloads.register_cluster(maint).ok());
  c.workloads.tick(kNoon + 1000);
  CHECK_FALSE(c.workloads.get("w1")->migration);  // placed a second ago: it dwells first
  c.workloads.tick(kNoon + kDwell);               // 12:05, the window still open
  auto moved = c.workloads.get("w1");
  REQUIRE(moved->migration);
  CHECK(moved->migration->trigger == "maintenance window open");
  CHECK(moved->placement->node != first);
  auto second = c.workloads.submit(spec("w2"), kNoon + kDwell + 500);
  REQUIRE(second.ok());
  CHECK(second->placement->node != first);  // infeasible while the window is open
}

TEST_CASE("a flapping node triggers a migration", "[cloud][migration]") {
  NodeSignals s;
  s.liveness_changes_10min = 3;
  CHECK(migration_trigger(s).value() == "connectivity: 3 liveness changes in 10 min");
  s.liveness_changes_10min = 2;
  CHECK_FALSE(migration_trigger(s));
}

TEST_CASE("regional and metro sites join as edge clusters and placement can target them", "[cloud][federation]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/a1"), node("d2", "cloud/us/nyc/n1")};
  c.workloads.tick(kNoon);
  std::map<std::string, schemas::ClusterRecord> clusters;
  for (const auto& k : c.workloads.clusters()) clusters[k.cluster_id] = k;
  REQUIRE(clusters.count("cloud") == 1);
  CHECK(clusters["cloud"].role == schemas::ClusterRole::primary);
  REQUIRE(clusters.count("edge-eu") == 1);
  CHECK(clusters["edge-eu"].role == schemas::ClusterRole::secondary);
  CHECK(clusters["edge-eu"].capabilities == std::vector<std::string>{"edge_computing"});
  CHECK(clusters["edge-par"].root_site == "cloud/eu/par");
  CHECK(clusters.count("edge-nyc") == 1);

  auto in_us = spec("w-us");
  in_us.clusters_include = {"edge-us"};
  CHECK(c.workloads.submit(in_us, kNoon)->placement->node == "d2");
  auto not_eu = spec("w-not-eu");
  not_eu.clusters_exclude = {"edge-eu"};
  CHECK(c.workloads.submit(not_eu, kNoon)->placement->node == "d2");
  auto nowhere = spec("w-none");
  nowhere.clusters_include = {"edge-mars"};
  auto pending = c.workloads.submit(nowhere, kNoon);
  CHECK(pending->phase == Phase::pending);
  CHECK(pending->unplaced_reason.find("cluster_not_included 2") != std::string::npos);
}

TEST_CASE("with two instances each workload has one owner that places it", "[cloud][workloads]") {
  Cloud a("cloud-a", true), b("cloud-b", true);
  a.nodes = b.nodes = {node("d1", "cloud/eu/par/a1"), node("d2", "cloud/eu/ber/b1")};
  a.workloads.set_instances({"cloud-a", "cloud-b"}, kNoon);
  b.workloads.set_instances({"cloud-a", "cloud-b"}, kNoon);
  int placed_by_a = 0, placed_by_b = 0;
  for (int i = 0; i < 12; ++i) {
    const std::string id = "w" + std::to_string(i);
    CHECK(a.workloads.owner(id) == b.workloads.owner(id));
    auto w = a.workloads.submit(spec(id), kNoon);  // every submission arrives at a
    REQUIRE(w.ok());
    if (a.workloads.owner(id) == "cloud-a") {
      CHECK(w->phase == Phase::running);
      ++placed_by_a;
    } else {
      CHECK(w->phase == Phase::pending);
      // b sees the retained spec and places it once the retained placement had time.
      b.workloads.on_cloud_record({topics::CloudKind::workload, topics::Id::parse(id).value()},
                                  std::string(a.published[a.published.size() - 1].payload.begin(),
                                              a.published[a.published.size() - 1].payload.end()),
                                  true);
      ++placed_by_b;
    }
  }
  b.workloads.tick(kNoon + 5000);
  CHECK(static_cast<int>(a.tasks().size()) == placed_by_a);
  CHECK(static_cast<int>(b.tasks().size()) == placed_by_b);
  CHECK(placed_by_a > 0);
  CHECK(placed_by_b > 0);
}

// Restart reconciliation: retained records arrive in any order, and a node can die while
// nova-cloud is down.
namespace {

schemas::Placement placed_on(const std::string& workload, const std::string& node, std::uint64_t revision) {
  schemas::Placement p;
  p.workload_id = workload;
  p.node = node;
  p.site = "cloud/eu/par/a1";
  p.score = 90;
  p.revision = revision;
  p.ts = kNoon - 60'000;
  return p;
}

// Delivers the placement first, then the workload record, as Mosquitto does when the
// placement's topic was created first.
void placement_then_workload(Cloud& c, const schemas::Placement& p) {
  const auto id = topics::Id::parse(p.workload_id).value();
  const auto placement = schemas::encode_cbor(p);
  const auto workload = schemas::encode_cbor(spec(p.workload_id));
  c.workloads.on_cloud_record({topics::CloudKind::placement, id}, {placement.begin(), placement.end()}, true);
  c.workloads.on_cloud_record({topics::CloudKind::workload, id}, {workload.begin(), workload.end()}, true);
}

}  // namespace

TEST_CASE("a placement that arrives before its workload record is the run: nothing placed or sent again",
          "[cloud][workloads][restart]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/a1"), node("d2", "cloud/eu/ber/b1")};
  placement_then_workload(c, placed_on("w1", "d1", 7));
  c.workloads.tick(kNoon);
  c.workloads.tick(kNoon + 5000);  // past the second a workload seen retained waits
  const auto w = c.workloads.get("w1");
  REQUIRE(w);
  CHECK(w->phase == Phase::running);
  CHECK(w->placement->node == "d1");
  CHECK(w->placement->revision == 7);
  CHECK(w->task_id == "w1.r7");
  CHECK(w->history.empty());
  CHECK(c.tasks().empty());
  // An older copy (a broker's stale retained record) changes nothing.
  const auto older = schemas::encode_cbor(placed_on("w1", "d2", 6));
  c.workloads.on_cloud_record({topics::CloudKind::placement, topics::Id::parse("w1").value()},
                              {older.begin(), older.end()}, true);
  CHECK(c.workloads.get("w1")->placement->revision == 7);
}

TEST_CASE("a placed workload whose node is already dead fails over without a liveness change",
          "[cloud][workloads][restart]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/a1"), node("d2", "cloud/eu/ber/b1")};
  c.set("d1", Liveness::dead);  // its will came before the placement
  placement_then_workload(c, placed_on("w1", "d1", 7));
  c.workloads.tick(kNoon);
  const auto w = c.workloads.get("w1");
  REQUIRE(w);
  CHECK(w->placement->node == "d2");
  CHECK(w->placement->revision == 8);
  CHECK(w->history.back().reason == "failover: node d1 dead (state at check)");
  CHECK(c.tasks().size() == 1);
  CHECK(c.workloads.counters().failovers == 1);
}

TEST_CASE("a placed workload whose node never reports fails over after the heartbeat timeout",
          "[cloud][workloads][restart]") {
  Cloud c;
  c.workloads.set_heartbeat_timeout(180'000);
  c.nodes = {node("d2", "cloud/eu/ber/b1")};  // d1's birth never comes back
  placement_then_workload(c, placed_on("w1", "d1", 7));
  c.workloads.tick(kNoon);
  c.workloads.tick(kNoon + 179'000);
  CHECK(c.workloads.get("w1")->placement->node == "d1");  // it may still be born
  c.workloads.tick(kNoon + 181'000);
  const auto w = c.workloads.get("w1");
  CHECK(w->placement->node == "d2");
  CHECK(w->placement->revision == 8);
  CHECK(w->history.back().reason == "failover: node d1 silent (not heard of in 181 s since start)");
  CHECK(c.tasks().size() == 1);
}

TEST_CASE("a node is overloaded only after the sustained window and until the low watermark", "[cloud][migration]") {
  const MigrationPolicy policy;  // 90 % high, 75 % low, 60 s sustained
  OverloadTracker t;
  auto feed = [&](const std::vector<schemas::MetricSample>& batch) {
    for (const auto& s : batch) t.observe(s, policy);
  };
  feed(samples(kNoon, 60, 100));  // 59 s above the mark
  CHECK_FALSE(t.overloaded());
  feed(samples(kNoon + 60'000, 1, 100));  // 60 s
  REQUIRE(t.overloaded());
  CHECK(*t.overloaded() == "cpu above 90 % for 60 s (last sample 100 %)");
  feed(samples(kNoon + 61'000, 30, 80));  // between the marks: still overloaded
  CHECK(t.overloaded());
  feed(samples(kNoon + 91'000, 1, 75));  // at the low mark: no longer
  CHECK_FALSE(t.overloaded());

  // A replayed older batch changes nothing.
  feed(samples(kNoon, 120, 100));
  CHECK_FALSE(t.overloaded());

  // Around the high mark, above and below in turn, the run above never lasts 60 s.
  Timestamp ts = kNoon + 100'000;
  for (int i = 0; i < 600; ++i, ts += 1000) feed(samples(ts, 1, i % 2 == 0 ? 93 : 87));
  CHECK_FALSE(t.overloaded());
  // Memory is judged on its own.
  feed(samples(ts, 61, 10, 96));
  REQUIRE(t.overloaded());
  CHECK(t.overloaded()->starts_with("memory above 90 %"));

  // A sustained window of 0: the first sample above the mark.
  OverloadTracker at_once;
  MigrationPolicy instant;
  instant.sustain_ms = 0;
  at_once.observe(samples(kNoon, 1, 91).front(), instant);
  CHECK(at_once.overloaded());
}

TEST_CASE("a workload dwells on an overloaded node, then moves, never onto an overloaded node",
          "[cloud][migration]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/a1"), node("d2", "cloud/eu/ber/b1"), node("d3", "cloud/eu/ber/b2")};
  auto w = c.workloads.submit(spec("w1"), kNoon);
  REQUIRE(w.ok());
  const std::string source = w->placement->node;
  std::vector<std::string> others;
  for (const auto& n : c.nodes) {
    if (n.id != source) others.push_back(n.id);
  }
  // The source at 100 % from its placement on, one other node as well: overloaded after
  // 60 s, but the workload stays for the dwell time (300 s).
  for (Timestamp t = kNoon; t < kNoon + kDwell; t += 1000) {
    c.workloads.on_metrics(source, samples(t, 1, 100));
    c.workloads.on_metrics(others[0], samples(t, 1, 100));
    c.workloads.tick(t);
    REQUIRE_FALSE(c.workloads.get("w1")->migration);
  }
  c.workloads.tick(kNoon + kDwell);
  auto moved = c.workloads.get("w1");
  REQUIRE(moved->migration);
  CHECK(moved->placement->node == others[1]);  // not onto the other overloaded node
  CHECK(moved->history.back().ts == kNoon + kDwell);
}

TEST_CASE("a node around 90 % keeps its workload", "[cloud][migration]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/a1"), node("d2", "cloud/eu/ber/b1")};
  auto w = c.workloads.submit(spec("w1"), kNoon);
  REQUIRE(w.ok());
  const std::string source = w->placement->node;
  for (Timestamp t = kNoon; t < kNoon + 2 * kDwell; t += 1000) {
    c.workloads.on_metrics(source, samples(t, 1, (t / 1000) % 2 == 0 ? 95 : 85));
    c.workloads.tick(t);
  }
  CHECK_FALSE(c.workloads.get("w1")->migration);
  CHECK(c.workloads.get("w1")->placement->node == source);
  CHECK(c.workloads.counters().migrations == 0);
}

TEST_CASE("at most max_per_node migrations leave one node per window", "[cloud][migration]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/a1", 64000)};
  for (const char* id : {"w1", "w2", "w3"}) REQUIRE(c.workloads.submit(spec(id), kNoon).ok());
  c.nodes.push_back(node("d2", "cloud/eu/ber/b1", 64000));
  MigrationPolicy policy;
  policy.max_per_node = 2;
  policy.node_window_ms = 600'000;
  c.workloads.set_migration_policy(policy);
  c.workloads.on_metrics("d1", samples(kNoon, 61, 100));
  c.workloads.tick(kNoon + kDwell);
  auto moving = [&] {
    int n = 0;
    for (const auto& w : c.workloads.list()) n += w.migration ? 1 : 0;
    return n;
  };
  CHECK(moving() == 2);
  c.workloads.tick(kNoon + kDwell + 599'000);
  CHECK(moving() == 2);  // the third waits for the window
  c.workloads.tick(kNoon + kDwell + 600'000);
  CHECK(moving() == 3);
  CHECK(c.workloads.counters().migrations == 3);
}

// Fencing (fence.h): the old run is known stopped before the new one starts.
namespace {

// A workload placed on the first of two nodes and overloaded there, so the next tick
// past the dwell time moves it.
struct Moving {
  Cloud c;
  std::string source, target;
  Moving() {
    c.nodes = {node("d1", "cloud/eu/par/a1"), node("d2", "cloud/eu/ber/b1")};
    auto w = c.workloads.submit(spec("w1"), kNoon);
    REQUIRE(w.ok());
    source = w->placement->node;
    target = source == "d1" ? "d2" : "d1";
    c.workloads.on_metrics(source, samples(kNoon, 61, 97));
    c.workloads.tick(kNoon + kDwell);
    auto moving = c.workloads.get("w1");
    REQUIRE(moving->migration);
    REQUIRE(moving->stopping);
  }
};

}  // namespace

TEST_CASE("a migration cancels the old run, repeats the cancel, and starts the new run only after its result",
          "[cloud][migration][fence]") {
  Moving m;
  Cloud& c = m.c;
  auto w = c.workloads.get("w1");
  CHECK(w->placement->node == m.target);
  CHECK(w->stopping->task_id == "w1.r1");
  CHECK(w->stopping->node == m.source);
  CHECK(w->stopping->next->task_id == "w1.r2");
  CHECK(c.tasks().size() == 1);  // nothing for the target yet
  c.workloads.tick(kNoon + kDwell + 4000);
  CHECK(c.cancels().size() == 1);
  c.workloads.tick(kNoon + kDwell + 5000);  // no answer: sent again
  CHECK(c.cancels().size() == 2);
  CHECK(c.tasks().size() == 1);
  // A late result of another run changes nothing; the old run's result releases the fence.
  c.workloads.on_result(result(m.source, "w1.r1", schemas::TaskStatus::cancelled, kNoon), kNoon + kDwell + 5500);
  w = c.workloads.get("w1");
  CHECK_FALSE(w->stopping);
  REQUIRE(c.tasks().size() == 2);
  CHECK(c.tasks().back().task_id == "w1.r2");
  CHECK(c.published.back().topic == "nova/v1/down/" + w->placement->site + "/" + m.target + "/task");
  CHECK(w->history.back().reason == "stopped w1.r1: cancelled on " + m.source);
  CHECK(c.workloads.counters().cancels_sent == 2);
  c.workloads.tick(kNoon + kDwell + 20'000);
  CHECK(c.cancels().size() == 2);  // no more
}

TEST_CASE("a fence is released when the old run's node is declared dead", "[cloud][migration][fence]") {
  Moving m;
  Cloud& c = m.c;
  SECTION("by a liveness change") {
    c.set(m.source, Liveness::dead);
    c.workloads.on_liveness({{m.source, Liveness::alive, Liveness::dead, "will"}}, kNoon + kDwell + 3000);
  }
  SECTION("by its state at a tick") {
    c.set(m.source, Liveness::silent);
    c.workloads.tick(kNoon + kDwell + 3000);
  }
  auto w = c.workloads.get("w1");
  CHECK_FALSE(w->stopping);
  CHECK(w->phase == Phase::running);
  CHECK(w->placement->node == m.target);
  REQUIRE(c.tasks().size() == 2);
  CHECK(c.tasks().back().task_id == "w1.r2");
}

TEST_CASE("an old run that ended on its own before the cancel keeps its outcome and the new run never starts",
          "[cloud][migration][fence]") {
  Moving m;
  Cloud& c = m.c;
  c.workloads.on_result(result(m.source, "w1.r1", schemas::TaskStatus::ok, kNoon), kNoon + kDwell + 100);
  auto w = c.workloads.get("w1");
  CHECK(w->phase == Phase::succeeded);
  CHECK_FALSE(w->stopping);
  CHECK_FALSE(w->migration);
  CHECK(c.tasks().size() == 1);
}

TEST_CASE("the target dying before the old run stopped rolls back to a new run on the source, after it stopped",
          "[cloud][migration][fence]") {
  Moving m;
  Cloud& c = m.c;
  c.set(m.target, Liveness::dead);
  c.workloads.on_liveness({{m.target, Liveness::alive, Liveness::dead, "will"}}, kNoon + kDwell + 100);
  auto w = c.workloads.get("w1");
  CHECK(w->placement->node == m.source);
  CHECK(w->task_id == "w1.r3");
  REQUIRE(w->stopping);
  CHECK(c.tasks().size() == 1);  // still waiting for w1.r1
  c.workloads.on_result(result(m.source, "w1.r1", schemas::TaskStatus::cancelled, kNoon), kNoon + kDwell + 200);
  REQUIRE(c.tasks().size() == 2);
  CHECK(c.tasks().back().task_id == "w1.r3");
}

TEST_CASE("a failover starts at once and cancels the run on the dead node", "[cloud][workloads][fence]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/a1"), node("d2", "cloud/eu/ber/b1")};
  auto w = c.workloads.submit(spec("w1"), kNoon);
  REQUIRE(w.ok());
  const std::string first = w->placement->node;
  c.set(first, Liveness::dead);
  c.workloads.on_liveness({{first, Liveness::alive, Liveness::dead, "will"}}, kNoon + 100);
  CHECK(c.tasks().size() == 2);
  CHECK(c.cancels() == std::vector<std::pair<std::string, std::string>>{{"w1.r1", first}});
  CHECK_FALSE(c.workloads.get("w1")->stopping);
}

TEST_CASE("an operator's cancel ends the workload cancelled once its run stopped", "[cloud][workloads][fence]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/a1")};
  auto w = c.workloads.submit(spec("w1"), kNoon);
  REQUIRE(w.ok());
  auto cancelling = c.workloads.cancel("w1", "operator says so", kNoon + 100);
  REQUIRE(cancelling.ok());
  CHECK(cancelling->phase == Phase::running);
  REQUIRE(cancelling->stopping);
  CHECK_FALSE(cancelling->stopping->next);
  CHECK(c.cancels() == std::vector<std::pair<std::string, std::string>>{{"w1.r1", "d1"}});
  CHECK(c.workloads.cancel("w1", "again", kNoon + 200).error().message().starts_with("workload: a cancel of 'w1' is under way"));
  c.workloads.on_result(result("d1", "w1.r1", schemas::TaskStatus::cancelled, kNoon), kNoon + 300);
  CHECK(c.workloads.get("w1")->phase == Phase::cancelled);
  CHECK(c.workloads.counters().cancelled == 1);
  CHECK(c.workloads.cancel("w1", "", kNoon + 400).error().message() == "workload.phase: 'w1' is cancelled: nothing to cancel");
  CHECK(c.workloads.cancel("nope", "", kNoon).error().message() == "workload_id: 'nope' is not known");

  // Pending: cancelled at once, nothing sent. A dead node: fenced, cancelled, no failover.
  c.nodes.clear();
  auto pending = c.workloads.submit(spec("w2"), kNoon);
  REQUIRE(pending->phase == Phase::pending);
  CHECK(c.workloads.cancel("w2", "", kNoon + 10)->phase == Phase::cancelled);
  c.nodes = {node("d1", "cloud/eu/par/a1"), node("d2", "cloud/eu/ber/b1")};
  REQUIRE(c.workloads.submit(spec("w3"), kNoon + 20).ok());
  const std::string on = c.workloads.get("w3")->placement->node;
  REQUIRE(c.workloads.cancel("w3", "", kNoon + 30).ok());
  c.set(on, Liveness::dead);
  c.workloads.on_liveness({{on, Liveness::alive, Liveness::dead, "will"}}, kNoon + 40);
  CHECK(c.workloads.get("w3")->phase == Phase::cancelled);
  CHECK(c.workloads.get("w3")->placement->node == on);
  CHECK(c.workloads.counters().failovers == 0);
}


// ---- batch submission and the re-optimiser (issue 13 item 5) ----------------------------

namespace {

// d1 has room for 2000 millis, d2 for 1000. One at a time, the 1000-millis workload takes
// d1 (half full scores better than full) and the 2000-millis one finds no room; together
// they both run.
struct Tight : Cloud {
  Tight() { nodes = {node("d1", "cloud/eu/par/a1", 2000), node("d2", "cloud/eu/ber/b1", 1000)}; }
  static schemas::WorkloadSpec sized(const std::string& id, std::uint64_t cpu) {
    schemas::WorkloadSpec s = spec(id);
    s.resources.cpu_millis = cpu;
    return s;
  }
};

}  // namespace

TEST_CASE("one at a time leaves a feasible workload pending, a batch places both", "[cloud][reoptimiser]") {
  Tight greedy;
  REQUIRE(greedy.workloads.submit(Tight::sized("small", 1000), kNoon).ok());
  auto big = greedy.workloads.submit(Tight::sized("big", 2000), kNoon);
  REQUIRE(big.ok());
  CHECK(big->phase == Phase::pending);

  Tight together;
  auto states = together.workloads.submit_batch({Tight::sized("small", 1000), Tight::sized("big", 2000)}, kNoon);
  REQUIRE(states.ok());
  REQUIRE(states->size() == 2);
  CHECK((*states)[0].placement->node == "d2");
  CHECK((*states)[1].placement->node == "d1");
  CHECK((*states)[1].history.back().reason == "submitted in a batch of 2");
  CHECK(together.tasks().size() == 2);
  CHECK(together.workloads.counters().batches == 1);

  // All or nothing: a duplicate id refuses the whole batch, naming its index.
  auto again = together.workloads.submit_batch({Tight::sized("other", 100), Tight::sized("big", 100)}, kNoon);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().message() == "workloads[1].workload_id: 'big' already exists");
  CHECK_FALSE(together.workloads.get("other"));
}

TEST_CASE("the re-optimiser moves a running workload past its dwell to place a pending one",
          "[cloud][reoptimiser]") {
  Tight c;
  c.workloads.set_reoptimiser({.interval_ms = 10'000, .migration_budget = 1, .min_gain = 1.0});
  REQUIRE(c.workloads.submit(Tight::sized("small", 1000), kNoon).ok());
  REQUIRE(c.workloads.submit(Tight::sized("big", 2000), kNoon).ok());
  c.workloads.tick(kNoon + 5000);  // before the dwell: nothing moves, big waits
  CHECK(c.workloads.get("big")->phase == Phase::pending);
  CHECK(c.workloads.get("small")->placement->node == "d1");

  c.workloads.tick(kNoon + kDwell);
  const auto small = c.workloads.get("small");
  REQUIRE(small->migration);
  CHECK(small->placement->node == "d2");
  CHECK(small->history.back().reason == "migration from d1: reoptimiser: toward the batch optimum");
  // The old run still holds d1 (fence.h): big waits until it is known stopped.
  REQUIRE(small->stopping);
  CHECK(small->stopping->node == "d1");
  c.workloads.tick(kNoon + kDwell + 10'000);
  CHECK(c.workloads.get("big")->phase == Phase::pending);
  c.workloads.on_result(result("d1", "small.r1", schemas::TaskStatus::cancelled, kNoon), kNoon + kDwell + 11'000);
  CHECK_FALSE(c.workloads.get("small")->stopping);
  c.workloads.tick(kNoon + kDwell + 20'000);
  const auto placed = c.workloads.get("big");
  CHECK(placed->phase == Phase::running);
  CHECK(placed->placement->node == "d1");
  // The room freed, the tick's retry of pending work places it before the re-optimiser's
  // round does: what matters is that both run, each on its optimal node.
  CHECK(placed->history.size() == 1);
  CHECK(c.workloads.counters().reoptimiser_migrations == 1);
  const std::size_t sent = c.tasks().size();
  c.workloads.tick(kNoon + kDwell + 30'000);  // at the optimum: the next round does nothing
  CHECK(c.tasks().size() == sent);
}

TEST_CASE("the re-optimiser plan keeps its budget and its hysteresis", "[cloud][reoptimiser]") {
  auto cand = [](const std::string& id, std::uint64_t cpu) {
    tiers::Candidate c;
    c.node = id;
    c.site = "cloud/eu/" + id;
    c.level = 3;
    c.arch = "x86_64";
    c.allocatable = {cpu, 4096, 0};
    return c;
  };
  const std::vector<tiers::Candidate> nodes{cand("a", 4000), cand("b", 4000), cand("c", 4000)};
  // Three workloads crowded on a, movable: the optimum spreads them; budget 1 moves one.
  std::vector<Standing> crowded;
  for (const char* id : {"w1", "w2", "w3"}) crowded.push_back({Tight::sized(id, 1300), "a", true});
  auto steps = plan_reoptimisation(crowded, nodes, {.interval_ms = 1, .migration_budget = 1, .min_gain = 1.0});
  REQUIRE(steps.size() == 1);
  CHECK(steps[0].migration);
  CHECK(steps[0].decision.best->node != "a");
  // The same, immovable: nothing moves.
  for (auto& s : crowded) s.movable = false;
  CHECK(plan_reoptimisation(crowded, nodes, {.interval_ms = 1, .migration_budget = 5, .min_gain = 1.0}).empty());
  // Movable, but the gain is below min_gain: nothing moves.
  for (auto& s : crowded) s.movable = true;
  CHECK(plan_reoptimisation(crowded, nodes, {.interval_ms = 1, .migration_budget = 5, .min_gain = 1000}).empty());
}

TEST_CASE("the re-optimiser never moves work onto an overloaded node", "[cloud][reoptimiser]") {
  Tight c;
  c.workloads.set_reoptimiser({.interval_ms = 10'000, .migration_budget = 1, .min_gain = 1.0});
  REQUIRE(c.workloads.submit(Tight::sized("small", 1000), kNoon).ok());
  REQUIRE(c.workloads.submit(Tight::sized("big", 2000), kNoon).ok());
  c.workloads.on_metrics("d2", samples(kNoon, 61, 97));  // d2, the optimum's target, is hot
  c.workloads.tick(kNoon + kDwell);
  CHECK_FALSE(c.workloads.get("small")->migration);
  CHECK(c.workloads.get("small")->placement->node == "d1");
  CHECK(c.workloads.get("big")->phase == Phase::pending);
  CHECK(c.workloads.counters().reoptimiser_migrations == 0);
}

TEST_CASE("a node whose measured round trip exceeds the tree's is placed by the corrected latency",
          "[workloads][signals]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/par-a1"), node("d2", "cloud/eu/par/par-a1")};
  c.workloads.tick(kNoon);
  schemas::WorkloadSpec near = spec("near");
  near.latency = schemas::LatencyBound{40, "par-a1"};
  // Both at the tree's 1.5 ms: both feasible.
  auto before = c.workloads.optimize(near, 5);
  REQUIRE(before.ok());
  REQUIRE(before->recommendations.size() == 2);
  CHECK(before->recommendations[0].signals.latency_ms == std::optional<double>(1.5));
  CHECK_FALSE(before->recommendations[0].signals.rtt_ms.has_value());
  // d2 measures 273 ms: 136.5 one way, 100 over the tree's 36.5 to the cloud.
  schemas::MetricSample slow;
  slow.ts = kNoon;
  slow.extra["agent.rtt_ms"] = 273;
  c.workloads.on_metrics("d2", {slow});
  auto after = c.workloads.optimize(near, 5);
  REQUIRE(after.ok());
  REQUIRE(after->recommendations.size() == 1);
  CHECK(after->recommendations[0].node == "d1");
  REQUIRE(after->rejected.size() == 1);
  CHECK(after->rejected[0].node == "d2");
  CHECK(after->rejected[0].signals.latency_ms == std::optional<double>(101.5));
  CHECK(after->rejected[0].signals.rtt_ms == std::optional<double>(273));
  CHECK(after->rejected[0].reason.starts_with("latency: 101.5 ms"));
  // Submitted: to d1, with the signals it was placed by.
  auto placed = c.workloads.submit(near, kNoon);
  REQUIRE(placed.ok());
  CHECK(placed->placement->node == "d1");
  REQUIRE(placed->signals.has_value());
  CHECK(placed->signals->latency_ms == std::optional<double>(1.5));
  // d2's link recovers: feasible again.
  slow.extra["agent.rtt_ms"] = 20;
  c.workloads.on_metrics("d2", {slow});
  auto recovered = c.workloads.optimize(near, 5);
  REQUIRE(recovered.ok());
  CHECK(recovered->recommendations.size() == 2);
}

TEST_CASE("a flapping node scores lower by its measured stability", "[workloads][signals]") {
  Cloud c;
  c.nodes = {node("d1", "cloud/eu/par/par-a1"), node("d2", "cloud/eu/par/par-a1")};
  c.workloads.on_liveness({{"d1", Liveness::dead, Liveness::alive, "birth"}, {"d2", Liveness::dead, Liveness::alive, "birth"}},
                          kNoon);
  // d2 was unreachable for 5 of the next 10 minutes.
  c.workloads.on_liveness({{"d2", Liveness::alive, Liveness::unreachable, "link par-a1 down"}}, kNoon + 60'000);
  c.workloads.on_liveness({{"d2", Liveness::unreachable, Liveness::alive, "link par-a1 up"}}, kNoon + 360'000);
  c.workloads.tick(kNoon + 600'000);
  auto ranked = c.workloads.optimize(spec("w"), 5);
  REQUIRE(ranked.ok());
  REQUIRE(ranked->recommendations.size() == 2);
  CHECK(ranked->recommendations[0].node == "d1");
  CHECK(ranked->recommendations[0].signals.stability == Approx(1.0));
  CHECK(ranked->recommendations[1].node == "d2");
  CHECK(ranked->recommendations[1].signals.stability == Approx(0.5));
  // link = 0.6 stability + 0.4: the latency component loses 30 x 0.6 x 0.5 = 9 points.
  CHECK(ranked->recommendations[0].breakdown.latency - ranked->recommendations[1].breakdown.latency == Approx(9.0));
}

// ---- services (workloads.h, Services) ----------------------------------------------------

namespace {

schemas::WorkloadSpec service_spec(const std::string& id, std::uint32_t replicas) {
  schemas::WorkloadSpec s = spec(id);
  s.kind = schemas::WorkloadKind::service;
  s.replicas = replicas;
  s.health_check = schemas::HealthCheck{{"/bin/true"}, 2, 1, 2, 0};
  return s;
}

schemas::TaskResult report(const std::string& node, const std::string& task, schemas::ServiceState state,
                           std::uint64_t restarts) {
  schemas::TaskResult r = result(node, task, schemas::TaskStatus::running, kNoon);
  r.service = schemas::ServiceStatus{state, restarts, -9, 0};
  return r;
}

}  // namespace

TEST_CASE("a service's replicas land on distinct nodes, a distinct site first, as service tasks",
          "[cloud][workloads][services]") {
  Cloud c;
  c.nodes = {node("a1", "cloud/eu/par/par-a1"), node("a2", "cloud/eu/par/par-a1"), node("b1", "cloud/eu/par/par-a2")};
  auto w = c.workloads.submit(service_spec("web", 2), kNoon);
  REQUIRE(w.ok());
  CHECK(w->phase == Phase::running);
  REQUIRE(w->replicas.size() == 2);
  const auto& r0 = w->replicas[0];
  const auto& r1 = w->replicas[1];
  REQUIRE((r0.placement && r1.placement));
  CHECK(r0.placement->node != r1.placement->node);
  CHECK(r0.placement->site != r1.placement->site);  // b1's site was free: preferred
  CHECK(r0.task_id == "web.0.r1");
  CHECK(r1.task_id == "web.1.r1");
  CHECK(r0.state == "starting");
  const auto tasks = c.tasks();
  REQUIRE(tasks.size() == 2);
  for (const auto& t : tasks) {
    REQUIRE(t.service.has_value());
    CHECK(t.service->restart == schemas::RestartPolicy::always);
    CHECK(t.service->health == service_spec("web", 2).health_check);
  }
  std::set<std::string> retained;
  for (const auto& p : c.published) {
    if (p.retained) retained.insert(p.topic);
  }
  CHECK(retained.count("nova/v1/cloud/placement/web.0") == 1);
  CHECK(retained.count("nova/v1/cloud/placement/web.1") == 1);

  SECTION("a third replica goes to the site already used, never to a node holding one") {
    auto three = c.workloads.submit(service_spec("api", 3), kNoon);
    std::set<std::string> nodes;
    for (const auto& r : three->replicas) nodes.insert(r.placement->node);
    CHECK(nodes.size() == 3);
  }
  SECTION("more replicas than nodes: the rest wait, and the phase is running") {
    auto four = c.workloads.submit(service_spec("big", 4), kNoon);
    CHECK(four->phase == Phase::running);
    CHECK(four->replicas[3].state == "pending");
    CHECK(four->unplaced_reason.starts_with("replica 3: no feasible node"));
  }
}

TEST_CASE("a service's running reports update its replica and never end it", "[cloud][workloads][services]") {
  Cloud c;
  c.nodes = {node("a", "cloud/eu/par/par-a1"), node("b", "cloud/eu/par/par-a2")};
  auto w = c.workloads.submit(service_spec("web", 2), kNoon);
  const std::string node0 = w->replicas[0].placement->node;
  c.workloads.on_result(report(node0, "web.0.r1", schemas::ServiceState::restarting, 0), kNoon + 10);
  auto now = c.workloads.get("web");
  CHECK(now->phase == Phase::running);
  CHECK(now->replicas[0].state == "restarting");
  CHECK(now->replicas[0].last_exit == -9);
  c.workloads.on_result(report(node0, "web.0.r1", schemas::ServiceState::running, 1), kNoon + 20);
  now = c.workloads.get("web");
  CHECK(now->replicas[0].state == "running");
  CHECK(now->replicas[0].restarts == 1);
  CHECK(c.workloads.counters().service_reports == 2);
  CHECK_FALSE(now->result.has_value());

  SECTION("a replica that ends (restart policy) ends alone; the last one ends the workload") {
    c.workloads.on_result(result(node0, "web.0.r1", schemas::TaskStatus::failed, kNoon), kNoon + 30);
    CHECK(c.workloads.get("web")->phase == Phase::running);
    CHECK(c.workloads.get("web")->replicas[0].state == "failed");
    const std::string node1 = w->replicas[1].placement->node;
    c.workloads.on_result(result(node1, "web.1.r1", schemas::TaskStatus::ok, kNoon), kNoon + 40);
    CHECK(c.workloads.get("web")->phase == Phase::failed);
  }
}

TEST_CASE("a replica whose node dies is placed again on a node that holds no other replica",
          "[cloud][workloads][services]") {
  Cloud c;
  c.nodes = {node("a", "cloud/eu/par/par-a1"), node("b", "cloud/eu/par/par-a1"), node("c", "cloud/eu/par/par-a1")};
  auto w = c.workloads.submit(service_spec("web", 2), kNoon);
  const std::string lost = w->replicas[0].placement->node;
  const std::string kept = w->replicas[1].placement->node;
  c.set(lost, Liveness::dead);
  c.workloads.on_liveness({{lost, Liveness::alive, Liveness::dead, "will"}}, kNoon + 1000);
  auto now = c.workloads.get("web");
  REQUIRE(now->replicas[0].placement.has_value());
  const std::string moved = now->replicas[0].placement->node;
  CHECK(moved != lost);
  CHECK(moved != kept);
  CHECK(now->replicas[0].task_id == "web.0.r2");
  CHECK(now->replicas[1].placement->node == kept);  // the other replica stays
  CHECK(now->phase == Phase::running);
  CHECK(c.workloads.counters().replica_failovers == 1);
  const auto cancels = c.cancels();
  REQUIRE(cancels.size() == 1);
  CHECK(cancels[0] == std::make_pair(std::string("web.0.r1"), lost));  // for when it comes back
  CHECK(now->history.back().reason.starts_with("replica 0: failover: node " + lost + " dead"));

  SECTION("no node left but the other replica's: the replica waits, the service runs on") {
    c.set(moved, Liveness::dead);
    c.workloads.on_liveness({{moved, Liveness::alive, Liveness::dead, "will"}}, kNoon + 2000);
    now = c.workloads.get("web");
    CHECK(now->replicas[0].state == "pending");
    CHECK(now->phase == Phase::running);
    c.set(lost, Liveness::alive);  // back: tick places it there
    c.workloads.tick(kNoon + 5000);
    now = c.workloads.get("web");
    CHECK(now->replicas[0].state == "starting");
    CHECK(now->replicas[0].placement->node == lost);
  }
}

TEST_CASE("an operator's cancel stops every replica and ends the service cancelled", "[cloud][workloads][services]") {
  Cloud c;
  c.nodes = {node("a", "cloud/eu/par/par-a1"), node("b", "cloud/eu/par/par-a2")};
  auto w = c.workloads.submit(service_spec("web", 2), kNoon);
  auto cancelled = c.workloads.cancel("web", "operator", kNoon + 100);
  REQUIRE(cancelled.ok());
  CHECK(cancelled->phase == Phase::running);  // until the runs are known stopped
  CHECK(c.cancels().size() == 2);
  CHECK_FALSE(c.workloads.cancel("web", "again", kNoon + 200).ok());
  c.workloads.tick(kNoon + 100 + kCancelRepeatMs);
  CHECK(c.cancels().size() == 4);  // repeated while unanswered
  // A report that races the cancel does not revive the replica.
  c.workloads.on_result(report(w->replicas[0].placement->node, "web.0.r1", schemas::ServiceState::running, 0), kNoon + 150);
  c.workloads.on_result(result(w->replicas[0].placement->node, "web.0.r1", schemas::TaskStatus::cancelled, kNoon), kNoon + 300);
  CHECK(c.workloads.get("web")->phase == Phase::running);
  c.workloads.on_result(result(w->replicas[1].placement->node, "web.1.r1", schemas::TaskStatus::cancelled, kNoon), kNoon + 400);
  CHECK(c.workloads.get("web")->phase == Phase::cancelled);
  CHECK(c.workloads.counters().cancelled == 1);
}

TEST_CASE("a restarted instance takes its replicas from the retained records: nothing placed or sent again",
          "[cloud][workloads][services]") {
  Cloud first;
  first.nodes = {node("a", "cloud/eu/par/par-a1"), node("b", "cloud/eu/par/par-a2")};
  auto w = first.workloads.submit(service_spec("web", 2), kNoon);
  Cloud second;
  second.nodes = first.nodes;
  // Placements first: Mosquitto may deliver retained records in any order.
  for (bool placements : {true, false}) {
    for (const auto& p : first.published) {
      if (!p.retained || (p.topic.find("/placement/") == std::string::npos) == placements) continue;
      const auto topic = topics::parse(p.topic);
      REQUIRE(topic.ok());
      second.workloads.on_cloud_record(std::get<topics::CloudTopic>(*topic), std::string(p.payload.begin(), p.payload.end()),
                                       true);
    }
  }
  second.workloads.tick(kNoon + 5000);
  const auto got = second.workloads.get("web");
  REQUIRE(got.has_value());
  CHECK(got->phase == Phase::running);
  for (std::size_t i = 0; i < 2; ++i) {
    REQUIRE(got->replicas[i].placement.has_value());
    CHECK(got->replicas[i].placement->node == w->replicas[i].placement->node);
    CHECK(got->replicas[i].task_id == w->replicas[i].task_id);
  }
  CHECK(second.tasks().empty());
  CHECK(got->replicas[0].state == "starting");
  // The last report kept in the store gives a replica back its state, counting nothing.
  second.workloads.restore_result(report(w->replicas[0].placement->node, "web.0.r1", schemas::ServiceState::unhealthy, 2));
  CHECK(second.workloads.get("web")->replicas[0].state == "unhealthy");
  CHECK(second.workloads.get("web")->replicas[0].restarts == 2);
  CHECK(second.workloads.counters().service_reports == 0);
  // Its reports reach the adopted replica.
  second.workloads.on_result(report(w->replicas[1].placement->node, "web.1.r1", schemas::ServiceState::running, 3), kNoon + 6000);
  CHECK(second.workloads.get("web")->replicas[1].restarts == 3);
}

TEST_CASE("a batch places its services replica by replica beside its tasks", "[cloud][workloads][services]") {
  Cloud c;
  c.nodes = {node("a", "cloud/eu/par/par-a1"), node("b", "cloud/eu/par/par-a2")};
  auto states = c.workloads.submit_batch({spec("job"), service_spec("web", 2)}, kNoon);
  REQUIRE(states.ok());
  REQUIRE(states->size() == 2);
  CHECK((*states)[0].phase == Phase::running);
  CHECK((*states)[0].task_id == "job.r1");
  CHECK((*states)[1].phase == Phase::running);
  REQUIRE((*states)[1].replicas.size() == 2);
  CHECK((*states)[1].replicas[0].placement->node != (*states)[1].replicas[1].placement->node);
  CHECK(c.tasks().size() == 3);
}

TEST_CASE("a batch never overcommits a node with its services and tasks together", "[cloud][workloads][services]") {
  // Two nodes of 1000 millis each: a service of two replicas at 600 takes 600 on each, so
  // a task of 600 in the same batch fits on neither and waits; one of 400 fits beside.
  Cloud c;
  c.nodes = {node("a", "cloud/eu/par/par-a1", 1000), node("b", "cloud/eu/par/par-a2", 1000)};
  schemas::WorkloadSpec web = service_spec("web", 2);
  web.resources.cpu_millis = 600;
  schemas::WorkloadSpec web2 = service_spec("web2", 1);
  web2.resources.cpu_millis = 300;
  schemas::WorkloadSpec big = spec("big");
  big.resources.cpu_millis = 600;
  schemas::WorkloadSpec small = spec("small");
  small.resources.cpu_millis = 100;
  auto states = c.workloads.submit_batch({big, web, web2, small}, kNoon);
  REQUIRE(states.ok());
  std::map<std::string, std::uint64_t> held;
  for (const WorkloadState& w : *states) {
    if (w.placement && w.phase == Phase::running) held[w.placement->node] += w.spec.resources.cpu_millis;
    for (const auto& r : w.replicas) {
      if (r.placement) held[r.placement->node] += w.spec.resources.cpu_millis;
    }
  }
  INFO("a: " << held["a"] << ", b: " << held["b"]);
  CHECK(held["a"] <= 1000);
  CHECK(held["b"] <= 1000);
  // The services go first (placed one at a time); the task that no longer fits waits.
  CHECK((*states)[1].replicas[0].placement.has_value());
  CHECK((*states)[1].replicas[1].placement.has_value());
  CHECK((*states)[2].replicas[0].placement.has_value());
  CHECK((*states)[0].phase == Phase::pending);
  CHECK((*states)[3].phase == Phase::running);
}
