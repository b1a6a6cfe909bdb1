#include "nova/cloud/workloads.h"

#include <algorithm>
#include <deque>
#include <set>
#include <span>
#include <sstream>

#include "nova/cloud/measured.h"
#include "nova/schemas/codec.h"
#include "nova/tiers/placement.h"

namespace nova::cloud {

using namespace nova::schemas;

tiers::Candidate birth_candidate(const NodeView& n) {
  const NodeDescription& d = *n.description;
  tiers::Candidate c;
  c.node = n.id;
  c.site = d.site;
  c.level = d.level;
  c.arch = d.arch;
  c.capabilities = d.capabilities;
  c.region = d.region;
  c.allocatable = d.resources;
  c.alive = n.liveness == Liveness::alive;
  return c;
}

std::string_view to_string(Phase p) {
  switch (p) {
    case Phase::pending: return "pending";
    case Phase::running: return "running";
    case Phase::succeeded: return "succeeded";
    case Phase::failed: return "failed";
    case Phase::cancelled: return "cancelled";
    case Phase::deleted: return "deleted";
  }
  return "unknown";
}

namespace {

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> out;
  std::stringstream in(path);
  for (std::string level; std::getline(in, level, '/');) out.push_back(level);
  return out;
}

// One-way latency of the hop from depth d to d-1 of the tree, ms: device to its access
// site, access to metro, metro to regional, regional to cloud. Typical figures for the
// link types of each tier (LAN/Wi-Fi, metro fibre, regional backbone, WAN). A node's
// measured round trip corrects it upward (measured.h, latency_excess_ms).
double hop_ms(std::size_t depth) {
  switch (depth) {
    case 5: return 1;
    case 4: return 5;
    case 3: return 10;
    case 2: return 20;
    default: return 20;
  }
}

// Where a node sits in the tree: its site path, plus itself when it is a device below
// its site (level deeper than the site).
std::vector<std::string> position_of(const NodeView& n) {
  std::vector<std::string> p = split_path(n.description->site);
  if (n.description->level > p.size()) p.push_back(n.id);
  return p;
}

double path_latency(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::size_t common = 0;
  while (common < a.size() && common < b.size() && a[common] == b[common]) ++common;
  double ms = 0.5;  // same place: a local hop
  for (std::size_t d = a.size(); d > common; --d) ms += hop_ms(d);
  for (std::size_t d = b.size(); d > common; --d) ms += hop_ms(d);
  return ms;
}

// The tree position of each latency target: a node id (first), or a site id seen in a
// birth's path (the first view in order that has it). Two passes over the views, each
// path split once; a target found nowhere has no position (unknown latency).
void locate(std::map<std::string, std::optional<std::vector<std::string>>>& targets, const std::vector<NodeView>& views) {
  std::map<std::string, std::optional<std::vector<std::string>>> found;
  for (const auto& n : views) {
    if (n.description && targets.count(n.id) != 0 && found.count(n.id) == 0) found[n.id] = position_of(n);
  }
  for (const auto& n : views) {
    if (!n.description) continue;
    const std::vector<std::string> p = split_path(n.description->site);
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (targets.count(p[i]) != 0 && found.count(p[i]) == 0) found[p[i]] = std::vector<std::string>(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    }
  }
  for (auto& [to, position] : targets) {
    auto it = found.find(to);
    position = it == found.end() ? std::nullopt : std::move(it->second);
  }
}

bool in_cluster(const std::string& site_path, const ClusterRecord& c) {
  if (!c.root_site) return false;
  const auto levels = split_path(site_path);
  const std::string& root = *c.root_site;
  if (site_path == root || site_path.rfind(root + "/", 0) == 0) return true;  // a path
  return std::find(levels.begin(), levels.end(), root) != levels.end();      // a site id
}

// "no feasible node among 3: dead 1 (dead: node 'a' is not alive), region 2 (region: the
// workload must stay in 'eu-west', node 'b' is in 'us-east')": each reason with how many
// nodes it refused and the first of them explained (tiers::explain).
std::string rejection_summary(const WorkloadSpec& spec, const std::vector<tiers::Candidate>& candidates) {
  std::map<std::string, std::pair<int, std::string>> by_reason;  // count, first explanation
  for (const auto& c : candidates) {
    auto& [n, first] = by_reason[std::string(tiers::to_string(tiers::check(spec, c)))];
    if (n++ == 0) first = tiers::explain(spec, c);
  }
  std::string out = "no feasible node among " + std::to_string(candidates.size());
  std::string sep = ": ";
  for (const auto& [reason, counted] : by_reason) {
    out += sep + reason + " " + std::to_string(counted.first) + " (" + counted.second + ")";
    sep = ", ";
  }
  return out;
}

// FNV-1a: stable across builds and machines, unlike std::hash, so every instance
// computes the same owner.
std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t h = 14695981039346656037ull;
  for (char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

// splitmix64's finaliser: FNV-1a of strings that share a long suffix stay correlated in
// their high bits, which would hand one instance nearly every workload.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

}  // namespace

struct Workloads::Impl {
  std::string self;
  bool shared = false;
  std::set<std::string> instances;
  PublishFn publish;
  PersistFn persist;
  WaitDeliveredFn wait_delivered;
  bool restoring = false;  // restore(): the record is already kept
  NodesFn nodes;
  WorkloadLogFn log;
  mutable std::mutex mutex;
  std::map<std::string, WorkloadState> workloads;
  // Retained placements whose workload record has not arrived yet: MQTT orders messages
  // per topic only, and Mosquitto sends retained ones in the order their topics were
  // created, so a placement can come first. The highest revision is held until then.
  std::map<std::string, Placement> early_placements;
  std::map<std::string, std::string> workload_of_task;
  std::map<std::string, ClusterRecord> clusters;
  std::map<std::string, MetricSample> latest;  // per node: its newest sample (throttling)
  NodeMeasures measures;                       // per node: rtt, stability, power, ... (measured.h)
  std::map<std::string, OverloadTracker> load;  // per node: utilisation with hysteresis
  MigrationPolicy policy;
  std::map<std::string, std::deque<Timestamp>> migrations_off;  // per node, within policy.node_window_ms
  std::map<std::string, Timestamp> migration_hold;  // workload -> no new attempt before (nowhere to go, cap)
  struct MigrationRequest {
    std::string node;  // the node that asked, where the workload ran then
    std::string why;
    Timestamp until = 0;
  };
  std::map<std::string, MigrationRequest> migration_requests;  // by workload
  FencePersistFn fence_persist;
  // Restored fences whose old run's result the store already held: released at the next
  // tick, by workload.
  std::map<std::string, TaskResult> restored_stops;
  std::map<std::string, std::deque<Timestamp>> liveness_changes;  // per node, last 10 min
  WorkloadCounters counters;
  Timestamp next_retry = 0;
  Timestamp clock_hint = 0;  // the last tick's time, for records that carry none
  Timestamp started = 0;     // the first tick's time
  Timestamp heartbeat_timeout_ms = 0;  // see set_heartbeat_timeout(); 0: never

  void say(const char* level, const std::string& event, const std::string& fields) const {
    if (log) log(level, event, fields);
  }

  std::string owner(const std::string& workload_id) const {
    if (!shared) return self;
    std::string best = self;
    std::uint64_t best_weight = 0;
    for (const std::string& instance : instances) {
      const std::uint64_t weight = mix(fnv1a(instance + "/" + workload_id));
      if (weight > best_weight || (weight == best_weight && instance < best)) {
        best = instance;
        best_weight = weight;
      }
    }
    return best;
  }
  bool owns(const std::string& workload_id) const { return owner(workload_id) == self; }
  static std::string cluster_key(const std::string& cluster_id) { return "cluster/" + cluster_id; }

  void keep(topics::CloudKind kind, const std::string& id, const std::vector<std::uint8_t>& payload, bool own) {
    if (persist && !restoring) persist(kind, id, payload, own);
  }
  // The store is the record and the broker a cache: keep first, then publish retained.
  void put_record(topics::CloudKind kind, const topics::Id& id, const std::vector<std::uint8_t>& payload) {
    keep(kind, id.str(), payload, true);
    publish(topics::cloud(kind, id), payload, true);
  }

  tiers::Maintenance maintenance_of(const ClusterRecord& cluster) const {
    auto window = cluster.policies.find("maintenance_window");
    if (window == cluster.policies.end()) return tiers::Maintenance::none;
    auto m = maintenance_at(window->second, clock_hint);
    return m ? m.value() : tiers::Maintenance::none;
  }

  // The clusters a node belongs to, by its site path.
  std::vector<const ClusterRecord*> clusters_of(const std::string& site_path) const {
    std::vector<const ClusterRecord*> out;
    for (const auto& [cid, cluster] : clusters) {
      if (in_cluster(site_path, cluster)) out.push_back(&cluster);
    }
    return out;
  }

  // The highest "cost" policy of the node's clusters (1 when none says).
  double cost_of(const std::string& site_path) const {
    double cost = 1;
    bool any = false;
    for (const ClusterRecord* c : clusters_of(site_path)) {
      auto it = c->policies.find("cost");
      if (it == c->policies.end()) continue;
      try {
        const double v = std::stod(it->second);
        cost = any ? std::max(cost, v) : v;
        any = true;
      } catch (const std::exception&) {
      }
    }
    return cost;
  }

  NodeSignals signals_of(const std::string& node, const std::string& site_path, Timestamp now) {
    NodeSignals sig;
    if (auto m = latest.find(node); m != latest.end()) sig.throttled = m->second.throttled.value_or(false);
    if (auto l = load.find(node); l != load.end()) sig.overloaded = l->second.overloaded();
    auto& changes = liveness_changes[node];
    while (!changes.empty() && changes.front() + 600'000 < now) changes.pop_front();
    sig.liveness_changes_10min = changes.size();
    for (const ClusterRecord* c : clusters_of(site_path)) sig.maintenance = std::max(sig.maintenance, maintenance_of(*c));
    return sig;
  }

  // Returns the workload to its migration's source with a new run there: the source's
  // run was cancelled (fence.h). While that run is still being stopped, the new one waits
  // for it in the fence's place of the target's.
  void roll_back(WorkloadState& w, Timestamp now, const std::string& why) {
    const MigrationPlan plan = *w.migration;
    w.migration.reset();
    Placement p = plan.rollback;
    p.revision = w.placement ? w.placement->revision + 1 : p.revision + 1;
    p.ts = now;
    w.placement = p;
    w.phase = Phase::running;
    w.task_id = w.spec.workload_id + ".r" + std::to_string(p.revision);
    workload_of_task[w.task_id] = w.spec.workload_id;
    w.history.push_back({now, p.node, p.revision, "rollback to " + p.node + ": " + why, 0, 0});
    ++counters.rollbacks;
    if (auto wid = topics::Id::parse(w.spec.workload_id)) put_record(topics::CloudKind::placement, *wid, encode_cbor(p));
    const Task task = task_for(w, now, {});
    if (w.stopping && w.stopping->next) {
      w.stopping->next = task;
      w.stopping->next_node = p.node;
      w.stopping->next_site = p.site;
      keep_fence(w);
    } else {
      send_task(task, p.site, p.node);
    }
    say("warning", "migration_rolled_back", "workload=" + w.spec.workload_id + " to=" + p.node + " reason=\"" + why + "\"");
  }

  // ---- fencing (fence.h) ------------------------------------------------------------

  // The current run's task, as sent to its node.
  Task task_for(const WorkloadState& w, Timestamp now, const std::map<std::string, std::string>& env) const {
    Task task;
    task.task_id = w.task_id;
    task.workload_id = w.spec.workload_id;
    task.argv = w.spec.argv;
    task.timeout_ms = w.spec.timeout_ms;
    task.memory_mb = w.spec.resources.memory_mb;
    task.cpu_millis = w.spec.resources.cpu_millis;
    task.priority = 3;
    task.issued_ts = now;
    task.env = env;
    return task;
  }

  void send_task(const Task& task, const std::string& site_path, const std::string& node_id) {
    auto site = topics::SitePath::parse(site_path);
    auto node = topics::Id::parse(node_id);
    if (site && node) publish(topics::down(*site, *node, topics::DownKind::task), encode_cbor(task), false);
  }

  // Publishes the fence's cancel (again).
  void send_cancel(Fence& f, Timestamp now) {
    auto site = topics::SitePath::parse(f.site);
    auto node = topics::Id::parse(f.node);
    if (site && node) publish(topics::down(*site, *node, topics::DownKind::cancel), encode_cbor(cancel_message(f, now)), false);
    if (f.since == 0) f.since = now;
    f.last_sent = now;
    ++counters.cancels_sent;
  }

  // Keeps w's fence as it is now (or forgets it), when this instance keeps fences.
  void keep_fence(const WorkloadState& w) const {
    if (!fence_persist || restoring) return;
    fence_persist(w.spec.workload_id, w.stopping ? fence_to_json(w.spec.workload_id, *w.stopping) : std::string());
  }

  // How a stopped run's result reads in the history: "cancelled on n1: <reason>".
  static std::string stop_how(const TaskResult& result) {
    return std::string(result.status == TaskStatus::cancelled ? "cancelled" : "ended") + " on " + result.position.node +
           (result.reason ? ": " + *result.reason : "");
  }

  // A fence on the current run of `w`, its cancel sent.
  Fence stop_current(const WorkloadState& w, const std::string& reason, Timestamp now) {
    Fence f;
    f.task_id = w.task_id;
    f.node = w.placement->node;
    f.site = w.placement->site;
    f.reason = reason;
    send_cancel(f, now);
    say("info", "run_cancel_sent", "workload=" + w.spec.workload_id + " task=" + f.task_id + " node=" + f.node +
                                       " reason=\"" + reason + "\"");
    return f;
  }

  // The run ended (its final result): the workload's phase and counters follow its status.
  void end_run(WorkloadState& w, const TaskResult& result) {
    w.result = result;
    switch (result.status) {
      case TaskStatus::ok:
        w.phase = Phase::succeeded;
        ++counters.succeeded;
        break;
      case TaskStatus::cancelled:
        w.phase = Phase::cancelled;
        ++counters.cancelled;
        break;
      default:
        w.phase = Phase::failed;
        ++counters.failed;
        break;
    }
  }

  // The run `w.stopping` waits on is known stopped: its `result` came, or (null) its node
  // was declared dead (`how`). The next run starts, unless the old one ended on its own
  // first; without a next run (an operator's cancel) the workload ends.
  void release(WorkloadState& w, const TaskResult* result, Timestamp now, const std::string& how) {
    Fence f = std::move(*w.stopping);
    w.stopping.reset();
    restored_stops.erase(w.spec.workload_id);
    keep_fence(w);
    const std::uint64_t revision = w.placement ? w.placement->revision : 0;
    w.history.push_back({now, f.node, revision, "stopped " + f.task_id + ": " + how, 0, 0});
    const bool stands = result != nullptr && after_stop(result->status) == AfterStop::outcome_stands;
    if (f.next && !stands) {
      send_task(*f.next, f.next_site, f.next_node);
      say("info", "fence_released", "workload=" + w.spec.workload_id + " stopped=" + f.task_id + " started=" +
                                        f.next->task_id + " node=" + f.next_node + " how=\"" + how + "\"");
      return;
    }
    w.migration.reset();
    if (result != nullptr && (stands || result->status == TaskStatus::cancelled)) {
      end_run(w, *result);
    } else {  // cancelled before it ran, or its node is dead: fenced, never to be run again here
      TaskResult fenced;
      fenced.task_id = f.task_id;
      fenced.status = TaskStatus::cancelled;
      fenced.finished_ts = now;
      fenced.reason = "cancelled: " + f.reason + " (" + how + ")";
      end_run(w, fenced);
    }
    say("info", "run_stopped", "workload=" + w.spec.workload_id + " task=" + f.task_id + " phase=" +
                                   std::string(to_string(w.phase)) + " how=\"" + how + "\"");
  }

  // Every tick: a fence whose old node is no longer alive is released; one still waiting
  // sends its cancel again when due.
  void tend_fences(Timestamp now) {
    const auto views = nodes();
    for (auto& [id, w] : workloads) {
      if (!w.stopping || !owns(id)) continue;
      if (auto stopped = restored_stops.find(id); stopped != restored_stops.end()) {
        const TaskResult result = stopped->second;
        release(w, &result, now, stop_how(result));
        continue;
      }
      const std::string& old_node = w.stopping->node;  // clang 14 cannot capture a structured binding
      const auto node = std::find_if(views.begin(), views.end(), [&](const NodeView& n) { return n.id == old_node; });
      if (node != views.end() && node->liveness != Liveness::alive) {
        release(w, nullptr, now, "node " + node->id + " " + std::string(to_string(node->liveness)));
      } else if (cancel_due(*w.stopping, now)) {
        send_cancel(*w.stopping, now);
      }
    }
  }

  // Takes a placement decided earlier (by a peer, or a previous run of this instance) as
  // the current one: no task is sent, the run it started is the workload's run.
  void adopt(WorkloadState& w, Placement p) {
    w.placement = std::move(p);
    w.phase = Phase::running;
    w.unplaced_reason.clear();
    w.task_id = w.spec.workload_id + ".r" + std::to_string(w.placement->revision);
    workload_of_task[w.task_id] = w.spec.workload_id;
  }

  // The node of running workload `w` is no longer alive (`state`, seen by `cause`): a
  // migration in flight returns to its source, anything else fails over.
  void lose_node(WorkloadState& w, const std::string& state, const std::string& cause, Timestamp now) {
    const std::string node = w.placement->node;
    if (w.migration) {  // the target died before it reported: back to the source
      roll_back(w, now, "target " + node + " " + state);
      return;
    }
    ++counters.failovers;
    place(w, now, "failover: node " + node + " " + state + " (" + cause + ")", now, {node}, {}, OldRun::cancel);
  }

  // Failover by state, not only by change: a placed workload whose node is not alive now
  // fails over although no change was seen -- a node that died while this instance was
  // down, a retained placement taken after its node's will, an adopted workload. One
  // whose node no record has named since this instance started fails over once the
  // heartbeat timeout has passed (its births may never come back: a broker that lost
  // its retained store).
  void fail_over_lost(Timestamp now) {
    const auto views = nodes();
    for (auto& [id, w] : workloads) {
      if (w.phase != Phase::running || !w.placement || !owns(id)) continue;
      const std::string& placed_on = w.placement->node;
      const auto node = std::find_if(views.begin(), views.end(), [&](const NodeView& n) { return n.id == placed_on; });
      if (node != views.end()) {
        if (node->liveness != Liveness::alive) lose_node(w, std::string(to_string(node->liveness)), "state at check", now);
      } else if (heartbeat_timeout_ms > 0 && started > 0 && now >= started + heartbeat_timeout_ms) {
        lose_node(w, "silent", "not heard of in " + std::to_string((now - started) / 1000) + " s since start", now);
      }
    }
  }

  // ---- the placement engine ---------------------------------------------------------
  //
  // tiers::PlacementEngine holds a Candidate per node with a birth, kept in sync instead
  // of building every Candidate per decision: sync() upserts the nodes whose view
  // (liveness, description) changed since it was built, the nodes marked dirty (a
  // sample, a liveness change: measured signals), and every node when the clusters or
  // the latency targets changed or every kRefreshMs (stability, reliability and
  // maintenance windows move with time); then it sets each node's usage from what the
  // workloads hold. Latency is kept for every target a workload has named so far.
  static constexpr Timestamp kRefreshMs = 10'000;
  mutable tiers::PlacementEngine engine;
  mutable std::map<std::string, NodeView> synced;  // the view each engine node was built from
  mutable std::map<std::string, std::optional<std::vector<std::string>>> targets;  // latency target -> its position
  mutable std::set<std::string> dirty;
  mutable std::set<std::string> holding;  // nodes whose usage in the engine is not zero
  mutable bool all_dirty = true;
  mutable Timestamp next_refresh = 0;
  std::function<std::uint64_t()> topology_revision;  // set_topology_revision()
  mutable std::optional<std::uint64_t> synced_revision;

  // What the workloads hold per node (a run being stopped still holds its node until it
  // is known stopped, fence.h), leaving out the workloads in `not_counted`.
  std::map<std::string, Resources> usage(const std::set<std::string>& not_counted) const {
    std::map<std::string, Resources> used;
    auto add = [&](const std::string& node, const WorkloadSpec& spec) {
      Resources& u = used[node];
      u.cpu_millis += spec.resources.cpu_millis;
      u.memory_mb += spec.resources.memory_mb;
      u.storage_mb += spec.resources.storage_mb;
    };
    for (const auto& [id, w] : workloads) {
      if (w.stopping && w.stopping->node != (w.placement ? w.placement->node : "")) add(w.stopping->node, w.spec);
      for (const Replica& r : w.replicas) {
        if ((r.active() || r.stopping) && r.placement) add(r.placement->node, w.spec);
      }
      if (w.phase != Phase::running || !w.placement || not_counted.count(id) != 0) continue;
      add(w.placement->node, w.spec);
    }
    return used;
  }

  // One node as placement sees it, usage aside (n has a description).
  tiers::Candidate candidate_of(const NodeView& n) const {
    tiers::Candidate c = birth_candidate(n);
    for (const auto& [cid, cluster] : clusters) {
      if (!in_cluster(c.site, cluster)) continue;
      c.clusters.push_back(cid);
      c.maintenance = std::max(c.maintenance, maintenance_of(cluster));
    }
    const Measured m = measures.of(n.id, clock_hint);
    apply(m, c);
    const std::vector<std::string> here = position_of(n);
    const double excess = latency_excess_ms(m.rtt_ms, path_latency(here, {here.front()}));
    for (const auto& [to, position] : targets) {
      if (position) c.latency_ms[to] = path_latency(here, *position) + excess;
    }
    return c;
  }

  // Brings the engine up to date with `views` and the workloads, tracking the latency
  // targets of `specs`. An upsert costs the size of the node's bucket, so a refresh of
  // every node builds a new engine from all candidates instead (O(n log n)); slots
  // (Ranked::index) are valid until the next sync().
  void sync(const std::vector<NodeView>& views, std::span<const WorkloadSpec> specs) const {
    for (const WorkloadSpec& spec : specs) {
      if (spec.latency && targets.emplace(spec.latency->to, std::nullopt).second) all_dirty = true;
    }
    if (clock_hint >= next_refresh) {
      all_dirty = true;
      next_refresh = clock_hint + kRefreshMs;
    }
    std::vector<const NodeView*> changed;
    std::size_t described = 0;
    bool moved = false;  // a node is new or its description changed
    for (const NodeView& n : views) {
      if (!n.description) continue;
      ++described;
      auto held = synced.find(n.id);
      const bool fresh = held == synced.end() || held->second.description != n.description;
      moved = moved || fresh;
      if (all_dirty || fresh || dirty.count(n.id) != 0 || held->second.liveness != n.liveness) changed.push_back(&n);
    }
    if (described != synced.size()) all_dirty = true;  // a node left the views
    // A birth can make a target known or move it: positions follow the views.
    if ((moved || all_dirty) && !targets.empty()) {
      const auto before = targets;
      locate(targets, views);
      if (targets != before) all_dirty = true;
    }
    if (all_dirty) {
      std::map<std::string, NodeView> now;
      for (const NodeView& n : views) {
        if (n.description) now.emplace(n.id, n);
      }
      rebuild(std::move(now));
    } else {
      for (const NodeView* n : changed) {
        engine.upsert(candidate_of(*n));
        synced[n->id] = *n;
      }
    }
    dirty.clear();
    all_dirty = false;
    apply_usage();
  }

  // sync() with the views from nodes() -- or, when the topology's revision has not moved
  // since the last sync, from the copies held (no snapshot, no comparison).
  void sync(std::span<const WorkloadSpec> specs) const {
    if (!topology_revision) return sync(nodes(), specs);
    const std::uint64_t revision = topology_revision();
    if (synced_revision != revision) {
      sync(nodes(), specs);  // the revision is read first: a change meanwhile syncs again next time
      synced_revision = revision;
      return;
    }
    for (const WorkloadSpec& spec : specs) {
      if (spec.latency && targets.emplace(spec.latency->to, std::nullopt).second) all_dirty = true;
    }
    if (all_dirty) {  // a new target: locate it among the held views
      std::vector<NodeView> held;
      for (const auto& [id, n] : synced) held.push_back(n);
      locate(targets, held);
    }
    if (clock_hint >= next_refresh) {
      all_dirty = true;
      next_refresh = clock_hint + kRefreshMs;
    }
    if (all_dirty) {
      rebuild(synced);
    } else {
      for (const std::string& id : dirty) {
        if (auto n = synced.find(id); n != synced.end()) engine.upsert(candidate_of(n->second));
      }
    }
    dirty.clear();
    all_dirty = false;
    apply_usage();
  }

  // A new engine from every node in `views` (by id).
  void rebuild(std::map<std::string, NodeView> views) const {
    holding.clear();  // a new engine: nothing used yet
    std::vector<tiers::Candidate> all;
    for (const auto& [id, n] : views) all.push_back(candidate_of(n));
    engine = tiers::PlacementEngine(all);
    synced = std::move(views);
  }

  // Usage: only the nodes that hold something now or did before are touched.
  void apply_usage() const {
    const auto used = usage({});
    for (const auto& [id, want] : used) {
      const auto slot = engine.find(id);
      if (slot && !(engine.candidate(*slot).used == want)) engine.set_used(id, want);
    }
    for (const std::string& id : holding) {
      if (used.count(id) == 0) engine.set_used(id, Resources{});
    }
    holding.clear();
    for (const auto& [id, want] : used) holding.insert(id);
  }

  // Every node's candidate in the order of `views`, as the engine holds it (after
  // sync()), with `exclude` not alive and the usage without `not_counted`: the input of
  // the free functions (batches of the re-optimiser, "why not" summaries).
  std::vector<tiers::Candidate> candidates(std::span<const WorkloadSpec> specs, const std::vector<NodeView>& views,
                                           const std::set<std::string>& exclude,
                                           const std::set<std::string>& not_counted) const {
    sync(views, specs);
    const auto used = not_counted.empty() ? std::map<std::string, Resources>{} : usage(not_counted);
    std::vector<tiers::Candidate> out;
    for (const NodeView& n : views) {
      const auto slot = n.description ? engine.find(n.id) : std::nullopt;
      if (!slot) continue;
      tiers::Candidate c = engine.candidate(*slot);
      if (!not_counted.empty()) {
        auto u = used.find(n.id);
        c.used = u == used.end() ? Resources{} : u->second;
      }
      if (exclude.count(n.id) != 0) c.alive = false;
      out.push_back(std::move(c));
    }
    return out;
  }
  std::vector<tiers::Candidate> candidates(const WorkloadSpec& spec, const std::vector<NodeView>& views,
                                           const std::set<std::string>& exclude) const {
    return candidates({&spec, 1}, views, exclude, {});
  }

  // The engine's decision for `spec` with the nodes in `exclude` left out (after sync()).
  tiers::Decision decide(const WorkloadSpec& spec, const std::set<std::string>& exclude) const {
    std::vector<std::string> hidden;
    for (const std::string& node : exclude) {
      const auto slot = engine.find(node);
      if (slot && engine.candidate(*slot).alive && engine.set_alive(node, false)) hidden.push_back(node);
    }
    tiers::Decision d = engine.place_one(spec, {});
    for (const std::string& node : hidden) engine.set_alive(node, true);
    return d;
  }

  // What placement used for candidate `c` (built by candidates() for `spec`).
  PlacementSignals signals_for(const WorkloadSpec& spec, const tiers::Candidate& c) const {
    PlacementSignals sig;
    sig.rtt_ms = measures.of(c.node, clock_hint).rtt_ms;
    if (spec.latency) {
      if (auto l = c.latency_ms.find(spec.latency->to); l != c.latency_ms.end()) sig.latency_ms = l->second;
    }
    sig.stability = c.connection_stability;
    sig.reliability = c.reliability;
    sig.offline_hours = c.offline_hours;
    sig.on_battery = c.power == tiers::PowerSource::battery;
    sig.power_headroom = c.power_headroom;
    sig.throttled = c.thermal_throttled;
    return sig;
  }

  // What place() does with the run `w` has now.
  enum class OldRun {
    none,    // there is none (first placement, a refused or failed run)
    cancel,  // its node is dead (failover): cancel it for when the node comes back, start at once
    fence,   // its node is alive (migration): start the new run once it is known stopped
  };

  // Places (or places again) `w`; publishes the placement and sends the task (or holds it
  // behind a fence). Returns false, leaving w pending with the reason, when no node is
  // feasible (then nothing is sent, the old run neither).
  bool place(WorkloadState& w, Timestamp now, const std::string& reason, Timestamp detected_ts,
             const std::set<std::string>& exclude, const std::map<std::string, std::string>& env = {},
             OldRun old_run = OldRun::none) {
    sync({&w.spec, 1});
    const tiers::Decision d = decide(w.spec, exclude);
    if (!d.best) {
      leave_pending(w, candidates(w.spec, nodes(), exclude));
      return false;
    }
    commit(w, d, now, reason, detected_ts, env, old_run);
    w.signals = signals_for(w.spec, engine.candidate(d.best->index));
    return true;
  }

  // Makes decision `d` (d.best set) the workload's run: publishes the placement and sends
  // the task, or with OldRun::fence holds it until the old run is known stopped.
  void commit(WorkloadState& w, const tiers::Decision& d, Timestamp now, const std::string& reason,
              Timestamp detected_ts, const std::map<std::string, std::string>& env = {},
              OldRun old_run = OldRun::none) {
    std::optional<Fence> fence;
    if (old_run != OldRun::none && w.phase == Phase::running && w.placement) fence = stop_current(w, reason, now);
    Placement p = tiers::to_placement(w.spec, d);
    p.revision = w.placement ? w.placement->revision + 1 : 1;
    p.ts = now;
    w.placement = p;
    w.signals.reset();  // the caller that holds the candidates sets them
    w.phase = Phase::running;
    w.unplaced_reason.clear();
    w.task_id = w.spec.workload_id + ".r" + std::to_string(p.revision);
    workload_of_task[w.task_id] = w.spec.workload_id;
    w.history.push_back({now, p.node, p.revision, reason, detected_ts});
    ++counters.placements;

    const Task task = task_for(w, now, env);
    if (auto wid = topics::Id::parse(w.spec.workload_id)) put_record(topics::CloudKind::placement, *wid, encode_cbor(p));
    if (fence && old_run == OldRun::fence) {
      fence->next = task;
      fence->next_node = p.node;
      fence->next_site = p.site;
      w.stopping = std::move(fence);
      keep_fence(w);
    } else {
      send_task(task, p.site, p.node);
    }
    say("info", "workload_placed",
        "workload=" + w.spec.workload_id + " node=" + p.node + " revision=" + std::to_string(p.revision) +
            " score=" + std::to_string(p.score) + " reason=\"" + reason + "\"");
  }

  // Leaves `w` pending with the reason nothing could take it.
  void leave_pending(WorkloadState& w, const std::vector<tiers::Candidate>& cands) {
    const bool was_running = w.phase == Phase::running;
    w.phase = Phase::pending;
    w.unplaced_reason = rejection_summary(w.spec, cands);
    ++counters.unplaceable;
    if (was_running || w.history.empty()) {
      say("warning", "workload_unplaced", "workload=" + w.spec.workload_id + " reason=\"" + w.unplaced_reason + "\"");
    }
  }

  // ---- services (workloads.h, Services) -------------------------------------------------

  static bool is_service(const WorkloadState& w) { return w.spec.kind == WorkloadKind::service; }
  static std::string replica_key(const std::string& workload_id, std::uint32_t index) {
    return workload_id + "." + std::to_string(index);
  }
  static void make_replicas(WorkloadState& w) {
    for (std::uint32_t i = 0; i < w.spec.replicas; ++i) {
      Replica r;
      r.index = i;
      w.replicas.push_back(std::move(r));
    }
  }
  // A fence on replica `r`'s current run, nothing to start after it.
  static Fence replica_fence(const Replica& r, const std::string& reason) {
    Fence f;
    f.task_id = r.task_id;
    f.node = r.placement->node;
    f.site = r.placement->site;
    f.reason = reason;
    return f;
  }

  // Places replica `i` of service `w` (again): never on a node another active replica of
  // it holds, nor on `exclude`; a node at a site none of them uses first.
  bool place_replica(WorkloadState& w, std::size_t i, Timestamp now, const std::string& reason,
                     std::set<std::string> exclude, Timestamp detected_ts) {
    Replica& r = w.replicas[i];
    std::set<std::string> used_sites;
    for (const Replica& other : w.replicas) {
      if (other.index == r.index || !other.active() || !other.placement) continue;
      exclude.insert(other.placement->node);
      used_sites.insert(other.placement->site);
    }
    const auto cands = candidates(w.spec, nodes(), exclude);
    tiers::Decision d;
    if (!used_sites.empty()) {  // anti-affinity by site, preferred but not required
      auto spread = cands;
      for (tiers::Candidate& c : spread) c.alive = c.alive && used_sites.count(c.site) == 0;
      d = tiers::place_one(w.spec, spread, {});
    }
    if (!d.best) d = tiers::place_one(w.spec, cands, {});
    if (!d.best) {
      const bool was = r.state != "pending" || r.reason.empty();
      r.state = "pending";
      r.reason = rejection_summary(w.spec, cands);
      ++counters.unplaceable;
      if (was) say("warning", "replica_unplaced", "workload=" + w.spec.workload_id + " replica=" + std::to_string(r.index) +
                                                      " reason=\"" + r.reason + "\"");
      return false;
    }
    Placement p = tiers::to_placement(w.spec, d);
    p.revision = r.placement ? r.placement->revision + 1 : 1;
    p.ts = now;
    r.placement = p;
    r.task_id = replica_key(w.spec.workload_id, r.index) + ".r" + std::to_string(p.revision);
    r.state = "starting";
    r.restarts = 0;
    r.last_exit.reset();
    r.health_failures = 0;
    r.reason.clear();
    r.updated_ts = now;
    workload_of_task[r.task_id] = w.spec.workload_id;
    w.history.push_back({now, p.node, p.revision, "replica " + std::to_string(r.index) + ": " + reason, detected_ts});
    ++counters.placements;
    if (auto key = topics::Id::parse(replica_key(w.spec.workload_id, r.index))) {
      put_record(topics::CloudKind::placement, *key, encode_cbor(p));
    }
    Task task = task_for(w, now, {});
    task.task_id = r.task_id;
    task.service = ServiceSpec{w.spec.restart_policy.value_or(RestartPolicy::always), w.spec.health_check};
    send_task(task, p.site, p.node);
    say("info", "replica_placed", "workload=" + w.spec.workload_id + " replica=" + std::to_string(r.index) + " node=" +
                                      p.node + " revision=" + std::to_string(p.revision) + " reason=\"" + reason + "\"");
    return true;
  }

  // A first placement of every replica (submit, or a service seen on the retained topic).
  void place_service(WorkloadState& w, Timestamp now, const std::string& reason) {
    if (w.replicas.empty()) make_replicas(w);
    for (std::size_t i = 0; i < w.replicas.size(); ++i) {
      if (w.replicas[i].state == "pending") place_replica(w, i, now, reason, {}, 0);
    }
    settle_service(w);
  }

  // Replica `r`'s node is no longer alive: a cancel under way is done (fenced); anything
  // else is placed again elsewhere, its old run sent a cancel for when the node returns.
  void lose_replica(WorkloadState& w, std::size_t i, const std::string& state, const std::string& cause, Timestamp now) {
    Replica& r = w.replicas[i];
    const std::string node = r.placement->node;
    if (r.stopping) {
      end_replica(r, "cancelled", "cancelled: " + r.stopping->reason + " (node " + node + " " + state + ")", now);
      r.stopping.reset();
      return;
    }
    Fence old = replica_fence(r, "failover: node " + node + " " + state);
    send_cancel(old, now);
    ++counters.failovers;
    ++counters.replica_failovers;
    if (!place_replica(w, i, now, "failover: node " + node + " " + state + " (" + cause + ")", {node}, now)) {
      r.placement.reset();  // pending: its old node holds nothing any more
    }
  }

  void end_replica(Replica& r, const std::string& state, const std::string& reason, Timestamp now) {
    r.state = state;
    r.reason = reason;
    r.updated_ts = now;
  }

  // A result of one of a service's runs: a "running" report updates its replica; an
  // end ends it (refused: placed again elsewhere).
  void on_service_result(WorkloadState& w, const TaskResult& result, Timestamp now, bool count = true) {
    auto it = std::find_if(w.replicas.begin(), w.replicas.end(), [&](const Replica& r) { return r.task_id == result.task_id; });
    if (it == w.replicas.end() || it->ended()) {
      if (result.status != TaskStatus::running) {
        w.history.push_back({now, result.position.node, 0, "late result of " + result.task_id, 0});
      }
      return;
    }
    Replica& r = *it;
    if (result.service) {
      r.restarts = result.service->restarts;
      r.last_exit = result.service->last_exit;
      r.health_failures = result.service->health_failures;
    }
    if (!w.history.empty() && w.history.back().detected_ts != 0 && w.history.back().started_ts == 0 &&
        w.history.back().node == result.position.node && result.started_ts) {
      w.history.back().started_ts = *result.started_ts;
      counters.last_failover_recovery_ms = *result.started_ts - w.history.back().detected_ts;
    }
    r.updated_ts = now;
    r.reason = result.reason.value_or("");
    switch (result.status) {
      case TaskStatus::running:
        if (count) ++counters.service_reports;
        if (r.stopping) return;  // a cancel is under way: only its end counts
        r.state = !result.service || result.service->state == ServiceState::running ? "running"
                  : result.service->state == ServiceState::restarting               ? "restarting"
                                                                                    : "unhealthy";
        break;
      case TaskStatus::refused:
        if (owns(w.spec.workload_id) && !r.stopping) {
          place_replica(w, static_cast<std::size_t>(it - w.replicas.begin()), now,
                        "refused by " + result.position.node + ": " + result.reason.value_or(""), {result.position.node}, 0);
          break;
        }
        end_replica(r, "cancelled", r.reason, now);
        break;
      case TaskStatus::ok: end_replica(r, r.stopping ? "cancelled" : "succeeded", r.reason, now); break;
      case TaskStatus::cancelled: end_replica(r, "cancelled", r.reason, now); break;
      default: end_replica(r, r.stopping ? "cancelled" : "failed", r.reason, now); break;
    }
    if (r.ended()) r.stopping.reset();
    settle_service(w);
  }

  // The phase follows the replicas: running while any is active, pending while none is
  // and some wait for a node, else ended.
  void settle_service(WorkloadState& w) {
    bool active = false, pending = false, failed = false, cancelled = false;
    for (const Replica& r : w.replicas) {
      active = active || r.active();
      pending = pending || r.state == "pending";
      failed = failed || r.state == "failed";
      cancelled = cancelled || r.state == "cancelled";
    }
    if (w.phase == Phase::deleted || w.phase == Phase::succeeded || w.phase == Phase::failed || w.phase == Phase::cancelled) return;
    w.unplaced_reason.clear();
    for (const Replica& r : w.replicas) {
      if (r.state == "pending") w.unplaced_reason = "replica " + std::to_string(r.index) + ": " + r.reason;
    }
    if (active) {
      w.phase = Phase::running;
    } else if (pending && !w.cancel_reason) {
      w.phase = Phase::pending;
    } else if (w.cancel_reason || cancelled) {
      w.phase = Phase::cancelled;
      ++counters.cancelled;
    } else if (failed) {
      w.phase = Phase::failed;
      ++counters.failed;
    } else {
      w.phase = Phase::succeeded;
      ++counters.succeeded;
    }
  }

  // Every tick, for the services this instance owns: replicas waiting for a node are
  // placed, replicas whose node is not alive fail over, cancels are repeated when due.
  void tend_services(Timestamp now) {
    const auto views = nodes();
    for (auto& [id, w] : workloads) {
      if (!is_service(w) || !owns(id) || (w.phase != Phase::running && w.phase != Phase::pending)) continue;
      // Seen on the retained topic: a second for its replicas' placements to show up.
      if (w.history.empty() && now < w.submitted_ts + 1000) continue;
      for (std::size_t i = 0; i < w.replicas.size(); ++i) {
        Replica& r = w.replicas[i];
        if (r.state == "pending" && !w.cancel_reason) {
          place_replica(w, i, now, "retry: " + r.reason, {}, 0);
          continue;
        }
        if (!r.active() || !r.placement) continue;
        const std::string& on = r.placement->node;  // clang 14 cannot capture a structured binding
        const auto node = std::find_if(views.begin(), views.end(), [&](const NodeView& n) { return n.id == on; });
        if (node != views.end() && node->liveness != Liveness::alive) {
          lose_replica(w, i, std::string(to_string(node->liveness)), "state at check", now);
        } else if (r.stopping && cancel_due(*r.stopping, now)) {
          send_cancel(*r.stopping, now);
        }
      }
      settle_service(w);
    }
  }

  // An operator's cancel of a service: every active replica's run is stopped (a fence
  // each), a pending one ends at once.
  void cancel_service(WorkloadState& w, const std::string& why, Timestamp now) {
    w.cancel_reason = why;
    for (Replica& r : w.replicas) {
      if (r.state == "pending") end_replica(r, "cancelled", "cancelled while pending: " + why, now);
      if (!r.active() || !r.placement) continue;
      r.stopping = replica_fence(r, why);
      send_cancel(*r.stopping, now);
    }
    w.history.push_back({now, "", 0, "cancel requested: " + why, 0, 0});
    settle_service(w);
  }

  // A replica's placement record (nova/v1/cloud/placement/<workload>.<index>), from the
  // broker or the store: taken as the replica's run when newer than what is known.
  bool adopt_replica(WorkloadState& w, const Placement& p, const std::string& key) {
    for (Replica& r : w.replicas) {
      if (replica_key(w.spec.workload_id, r.index) != key) continue;
      if (r.placement && r.placement->revision >= p.revision) return false;
      r.placement = p;
      r.task_id = key + ".r" + std::to_string(p.revision);
      r.state = "starting";
      workload_of_task[r.task_id] = w.spec.workload_id;
      w.phase = Phase::running;
      return true;
    }
    return false;
  }
  // Creates the replica slots of a service seen on the retained topic and takes the
  // placements held for them.
  void adopt_held_replicas(WorkloadState& w) {
    make_replicas(w);
    for (std::uint32_t i = 0; i < w.spec.replicas; ++i) {
      const std::string key = replica_key(w.spec.workload_id, i);
      if (auto held = early_placements.find(key); held != early_placements.end()) {
        adopt_replica(w, held->second, key);
        early_placements.erase(held);
      }
    }
  }

  ReoptimiserPolicy reoptimiser{.interval_ms = 0};  // off until set_reoptimiser()
  Timestamp next_reoptimise = 0;
  std::size_t reoptimise(Timestamp now);
};

Workloads::Workloads(PublishFn publish, NodesFn nodes, WorkloadLogFn log, std::string self, bool shared)
    : impl_(std::make_shared<Impl>()) {
  impl_->self = std::move(self);
  impl_->shared = shared;
  impl_->instances = {impl_->self};
  impl_->publish = std::move(publish);
  impl_->nodes = std::move(nodes);
  impl_->log = std::move(log);
}

Result<WorkloadState> Workloads::submit(WorkloadSpec spec, Timestamp now) {
  auto wid = topics::Id::parse(spec.workload_id);
  if (!wid) return Error{"workload.workload_id", wid.error().reason};
  WorkloadState state;
  WaitDeliveredFn wait_delivered;
  {
    std::lock_guard lock(impl_->mutex);
    auto existing = impl_->workloads.find(spec.workload_id);
    if (existing != impl_->workloads.end() && existing->second.phase != Phase::deleted) {
      return Error{"workload.workload_id", "'" + spec.workload_id + "' already exists"};
    }
    WorkloadState w;
    w.spec = std::move(spec);
    w.submitted_ts = now;
    ++impl_->counters.submitted;
    impl_->put_record(topics::CloudKind::workload, *wid, encode_cbor(w.spec));
    if (impl_->owns(w.spec.workload_id) && Impl::is_service(w)) {
      impl_->place_service(w, now, "submitted");
    } else if (impl_->owns(w.spec.workload_id)) {
      impl_->place(w, now, "submitted", 0, {});
    } else {
      w.unplaced_reason = "handed to its owner, instance " + impl_->owner(w.spec.workload_id);
    }
    auto& slot = impl_->workloads[w.spec.workload_id];
    slot = std::move(w);
    state = slot;
    wait_delivered = impl_->wait_delivered;
  }
  // The store holds the records (synced), but the task is only in the MQTT client's
  // memory until the broker acknowledges it: the caller's answer waits for that, outside
  // the lock (ingest goes on meanwhile).
  if (wait_delivered && !wait_delivered(kDeliveryWait)) {
    impl_->say("warning", "task_unconfirmed",
               "workload=" + state.spec.workload_id + " reason=\"the broker did not acknowledge within " +
                   std::to_string(kDeliveryWait.count()) + " ms\"");
  }
  return state;
}

bool Workloads::remove(const std::string& workload_id, Timestamp now) {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->workloads.find(workload_id);
  if (it == impl_->workloads.end() || it->second.phase == Phase::deleted) return false;
  it->second.phase = Phase::deleted;
  it->second.history.push_back({now, "", it->second.placement ? it->second.placement->revision : 0, "deleted", 0});
  // Clearing the retained records tells every instance (and late subscribers).
  if (auto wid = topics::Id::parse(workload_id)) {
    impl_->put_record(topics::CloudKind::workload, *wid, {});
    impl_->put_record(topics::CloudKind::placement, *wid, {});
  }
  for (const Replica& r : it->second.replicas) {
    if (auto key = topics::Id::parse(Impl::replica_key(workload_id, r.index))) {
      impl_->put_record(topics::CloudKind::placement, *key, {});
    }
  }
  return true;
}

Result<WorkloadState> Workloads::cancel(const std::string& workload_id, const std::string& reason, Timestamp now) {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->workloads.find(workload_id);
  if (it == impl_->workloads.end() || it->second.phase == Phase::deleted) {
    return Error{"workload_id", "'" + workload_id + "' is not known"};
  }
  WorkloadState& w = it->second;
  const std::string why = reason.empty() ? "cancelled by an operator" : reason;
  const std::uint64_t revision = w.placement ? w.placement->revision : 0;
  if (Impl::is_service(w) && (w.phase == Phase::running || w.phase == Phase::pending)) {
    if (w.cancel_reason) return Error{"workload", "a cancel of '" + workload_id + "' is under way"};
    impl_->cancel_service(w, why, now);
    return w;
  }
  if (w.phase == Phase::pending) {
    w.phase = Phase::cancelled;
    ++impl_->counters.cancelled;
    w.history.push_back({now, "", revision, "cancelled while pending: " + why, 0, 0});
    return w;
  }
  if (w.phase != Phase::running || !w.placement) {
    return Error{"workload.phase", "'" + workload_id + "' is " + std::string(to_string(w.phase)) + ": nothing to cancel"};
  }
  if (w.stopping && !w.stopping->next) {
    return Error{"workload", "a cancel of '" + workload_id + "' is under way since " + std::to_string(w.stopping->since)};
  }
  w.migration.reset();
  if (w.stopping) {
    // A move waits for the old run to stop: the new run never starts.
    w.stopping->next.reset();
    impl_->keep_fence(w);
    w.history.push_back({now, w.stopping->node, revision, "cancel requested while moving: " + why, 0, 0});
    return w;
  }
  w.stopping = impl_->stop_current(w, why, now);
  impl_->keep_fence(w);
  w.history.push_back({now, w.placement->node, revision, "cancel requested: " + why, 0, 0});
  return w;
}

std::vector<WorkloadState> Workloads::list() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<WorkloadState> out;
  for (const auto& [id, w] : impl_->workloads) out.push_back(w);
  return out;
}

std::optional<WorkloadState> Workloads::get(const std::string& workload_id) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->workloads.find(workload_id);
  if (it == impl_->workloads.end()) return std::nullopt;
  return it->second;
}

Result<Optimization> Workloads::optimize(const WorkloadSpec& spec, std::size_t k) const {
  std::lock_guard lock(impl_->mutex);
  const auto cands = impl_->candidates(spec, impl_->nodes(), {});  // synced, and the rejected are listed
  Optimization out;
  for (const auto& r : impl_->engine.rank(spec, k)) {
    out.recommendations.push_back({r.node, r.site, r.score, r.breakdown, impl_->signals_for(spec, impl_->engine.candidate(r.index))});
  }
  if (out.recommendations.empty()) return Error{"workload", rejection_summary(spec, cands)};
  for (const auto& c : cands) {
    if (tiers::check(spec, c) == tiers::Rejection::none) continue;
    if (out.rejected.size() == kMaxRejectedListed) break;
    out.rejected.push_back({c.node, c.site, tiers::explain(spec, c), impl_->signals_for(spec, c)});
  }
  return out;
}

Status Workloads::register_cluster(const ClusterRecord& cluster) {
  auto cid = topics::Id::parse(cluster.cluster_id);
  if (!cid) return Error{"cluster.cluster_id", cid.error().reason};
  if (!cluster.root_site && !cluster.endpoint) {
    return Error{"cluster", "needs root_site (a subtree of this hierarchy) or endpoint (an external cluster)"};
  }
  std::lock_guard lock(impl_->mutex);
  impl_->clusters[cluster.cluster_id] = cluster;
  impl_->all_dirty = true;
  impl_->put_record(topics::CloudKind::cluster, *cid, encode_cbor(cluster));
  return Ok{};
}

bool Workloads::remove_cluster(const std::string& cluster_id) {
  std::lock_guard lock(impl_->mutex);
  if (impl_->clusters.erase(cluster_id) == 0) return false;
  impl_->all_dirty = true;
  if (auto cid = topics::Id::parse(cluster_id)) impl_->put_record(topics::CloudKind::cluster, *cid, {});
  return true;
}

std::vector<ClusterRecord> Workloads::clusters() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<ClusterRecord> out;
  for (const auto& [id, c] : impl_->clusters) out.push_back(c);
  return out;
}

void Workloads::on_liveness(const std::vector<LivenessChange>& changes, Timestamp now) {
  std::lock_guard lock(impl_->mutex);
  for (const auto& change : changes) {
    impl_->liveness_changes[change.node].push_back(now);
    impl_->measures.observe_liveness(change.node, change.to, now);
    impl_->dirty.insert(change.node);
    if (change.to == Liveness::alive) continue;
    for (auto& [id, w] : impl_->workloads) {
      if (w.stopping && w.stopping->node == change.node && impl_->owns(id)) {
        impl_->release(w, nullptr, now, "node " + change.node + " " + std::string(to_string(change.to)) + " (" + change.cause + ")");
      }
      if (Impl::is_service(w) && w.phase == Phase::running && impl_->owns(id)) {
        for (std::size_t i = 0; i < w.replicas.size(); ++i) {
          const Replica& r = w.replicas[i];
          if ((r.active() || r.stopping) && r.placement && r.placement->node == change.node) {
            impl_->lose_replica(w, i, std::string(to_string(change.to)), change.cause, now);
          }
        }
        impl_->settle_service(w);
        continue;
      }
      if (w.phase != Phase::running || !w.placement || !impl_->owns(id)) continue;
      if (w.migration && w.migration->from == change.node) {
        w.migration.reset();  // the source is gone: the target's run is the only one
        continue;
      }
      if (w.placement->node != change.node) continue;
      impl_->lose_node(w, std::string(to_string(change.to)), change.cause, now);
    }
  }
}

void Workloads::on_result(const TaskResult& result, Timestamp now) {
  std::lock_guard lock(impl_->mutex);
  auto t = impl_->workload_of_task.find(result.task_id);
  if (t == impl_->workload_of_task.end()) return;  // not a workload's task
  auto it = impl_->workloads.find(t->second);
  if (it == impl_->workloads.end()) return;
  WorkloadState& w = it->second;
  if (Impl::is_service(w)) return impl_->on_service_result(w, result, now);
  if (result.status == TaskStatus::running) return;  // only a service's task reports so
  if (w.stopping && w.stopping->task_id == result.task_id) {
    impl_->release(w, &result, now, Impl::stop_how(result));
    return;
  }
  if (w.task_id != result.task_id || w.phase != Phase::running) {
    // A run that failover or migration replaced: note it, keep the current one.
    w.history.push_back({now, result.position.node, 0, "late result of " + result.task_id + ": " +
                                                          std::string(result.status == TaskStatus::ok ? "ok" : "not ok"), 0});
    return;
  }
  if (w.migration) {
    // The target "fails to start" when it refuses the task or fails without starting it.
    const bool never_started = result.status == TaskStatus::refused ||
                               (result.status != TaskStatus::ok && !result.started_ts);
    if (never_started) {
      impl_->roll_back(w, now, "target " + result.position.node + " failed to start (" +
                                   result.reason.value_or(std::string(result.status == TaskStatus::refused ? "refused" : "failed")) + ")");
      return;
    }
    w.migration.reset();  // the target ran: the move is complete
  }
  // Recovery of a failover: from the loss being seen to the new run starting.
  if (!w.history.empty() && w.history.back().detected_ts != 0 && result.started_ts) {
    w.history.back().started_ts = *result.started_ts;
    impl_->counters.last_failover_recovery_ms = *result.started_ts - w.history.back().detected_ts;
  }
  if (result.status == TaskStatus::refused) {
    if (impl_->owns(w.spec.workload_id)) {
      impl_->place(w, now, "refused by " + result.position.node + ": " + result.reason.value_or(""), 0,
                   {result.position.node});
    }
    return;
  }
  impl_->end_run(w, result);
}

void Workloads::on_cloud_record(const topics::CloudTopic& topic, const std::string& payload, bool) {
  std::lock_guard lock(impl_->mutex);
  const std::string id = topic.id.str();
  switch (topic.kind) {
    case topics::CloudKind::cluster: {
      if (payload.empty()) {
        if (impl_->clusters.erase(id) != 0) impl_->keep(topic.kind, id, {}, false);
        impl_->all_dirty = true;
        return;
      }
      auto c = decode_cbor<ClusterRecord>(payload);
      if (!c || c->cluster_id != id) return;
      auto known = impl_->clusters.find(id);
      if (known != impl_->clusters.end() && known->second == *c) return;  // our own echo
      impl_->clusters[id] = std::move(c).value();
      impl_->all_dirty = true;
      impl_->keep(topic.kind, id, {payload.begin(), payload.end()}, false);
      return;
    }
    case topics::CloudKind::workload: {
      // A workload submitted elsewhere (another instance, a previous run of this one).
      // Its owner places it -- in tick(), after the retained placement (if any) has had
      // time to arrive, so a restarted owner does not place it a second time.
      auto known = impl_->workloads.find(id);
      if (payload.empty()) {
        if (known != impl_->workloads.end() && known->second.phase != Phase::deleted) {
          known->second.phase = Phase::deleted;
          impl_->keep(topics::CloudKind::workload, id, {}, false);
          impl_->keep(topics::CloudKind::placement, id, {}, false);
        }
        return;
      }
      if (known != impl_->workloads.end() && known->second.phase != Phase::deleted) return;
      auto spec = decode_cbor<WorkloadSpec>(payload);
      if (!spec || spec->workload_id != id) return;
      WorkloadState w;
      w.spec = std::move(spec).value();
      w.unplaced_reason = "waiting for its owner, instance " + impl_->owner(id);
      w.submitted_ts = impl_->clock_hint;
      if (Impl::is_service(w)) {
        impl_->adopt_held_replicas(w);
      } else if (auto held = impl_->early_placements.find(id); held != impl_->early_placements.end()) {
        impl_->adopt(w, std::move(held->second));
        impl_->early_placements.erase(held);
      }
      impl_->workloads[id] = std::move(w);
      impl_->keep(topic.kind, id, {payload.begin(), payload.end()}, false);
      return;
    }
    case topics::CloudKind::instance: return;  // the service tracks presence
    case topics::CloudKind::placement: {
      if (payload.empty()) {
        impl_->early_placements.erase(id);
        return;
      }
      auto p = decode_cbor<Placement>(payload);
      if (!p) return;
      if (p->workload_id != id) {  // a service replica's: "<workload>.<index>"
        if (!id.starts_with(p->workload_id + ".")) return;
        auto it = impl_->workloads.find(p->workload_id);
        if (it == impl_->workloads.end()) {
          auto held = impl_->early_placements.find(id);
          if (held != impl_->early_placements.end() && held->second.revision >= p->revision) return;
          impl_->early_placements[id] = std::move(p).value();
        } else if (!Impl::is_service(it->second) || !impl_->adopt_replica(it->second, *p, id)) {
          return;
        }
        impl_->keep(topic.kind, id, {payload.begin(), payload.end()}, false);
        return;
      }
      auto it = impl_->workloads.find(id);
      if (it == impl_->workloads.end()) {
        auto held = impl_->early_placements.find(id);
        if (held != impl_->early_placements.end() && held->second.revision >= p->revision) return;
        impl_->early_placements[id] = std::move(p).value();
        impl_->keep(topic.kind, id, {payload.begin(), payload.end()}, false);
        return;
      }
      WorkloadState& w = it->second;
      // Our own echo, or an older copy than the store's: the higher revision is the record.
      if (w.placement && w.placement->revision >= p->revision) return;
      impl_->adopt(w, std::move(p).value());
      impl_->keep(topic.kind, id, {payload.begin(), payload.end()}, false);
      return;
    }
  }
}

void Workloads::set_delivery_wait(WaitDeliveredFn wait_delivered) {
  std::lock_guard lock(impl_->mutex);
  impl_->wait_delivered = std::move(wait_delivered);
}

void Workloads::set_topology_revision(std::function<std::uint64_t()> revision) {
  std::lock_guard lock(impl_->mutex);
  impl_->topology_revision = std::move(revision);
}

void Workloads::set_heartbeat_timeout(Timestamp ms) {
  std::lock_guard lock(impl_->mutex);
  impl_->heartbeat_timeout_ms = ms;
}

void Workloads::set_persistence(PersistFn persist) {
  std::lock_guard lock(impl_->mutex);
  impl_->persist = std::move(persist);
}

void Workloads::restore(topics::CloudKind kind, const std::string& id, const std::string& payload) {
  auto parsed = topics::Id::parse(id);
  if (!parsed) return;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->restoring = true;
  }
  on_cloud_record(topics::CloudTopic{kind, *parsed}, payload, true);
  std::lock_guard lock(impl_->mutex);
  impl_->restoring = false;
}

void Workloads::restore_result(const TaskResult& result) {
  if (result.status == TaskStatus::refused) return;  // it is placed again, once connected
  std::lock_guard lock(impl_->mutex);
  auto t = impl_->workload_of_task.find(result.task_id);
  if (t == impl_->workload_of_task.end()) return;
  auto it = impl_->workloads.find(t->second);
  if (it != impl_->workloads.end() && Impl::is_service(it->second)) {
    return impl_->on_service_result(it->second, result, result.finished_ts, false);
  }
  if (it == impl_->workloads.end() || it->second.task_id != result.task_id || it->second.phase != Phase::running) return;
  it->second.phase = result.status == TaskStatus::ok          ? Phase::succeeded
                     : result.status == TaskStatus::cancelled ? Phase::cancelled
                                                              : Phase::failed;
  it->second.result = result;
}

void Workloads::set_fence_persistence(FencePersistFn persist) {
  std::lock_guard lock(impl_->mutex);
  impl_->fence_persist = std::move(persist);
}

bool Workloads::restore_fence(const std::string& json, const std::optional<TaskResult>& old_result) {
  auto kept = fence_from_json(json);
  if (!kept) return false;
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->workloads.find(kept->workload_id);
  if (it == impl_->workloads.end()) return false;
  WorkloadState& w = it->second;
  // The held run must still be the workload's current one (or, for a cancel, the
  // stopped run is).
  const std::string& current = kept->fence.next ? kept->fence.next->task_id : kept->fence.task_id;
  if (w.phase != Phase::running || w.task_id != current || Impl::is_service(w)) return false;
  w.stopping = std::move(kept->fence);
  w.stopping->last_sent = 0;  // the cancel goes again at the first tick
  impl_->workload_of_task[w.stopping->task_id] = w.spec.workload_id;
  if (old_result) impl_->restored_stops[w.spec.workload_id] = *old_result;
  impl_->say("info", "fence_restored", "workload=" + w.spec.workload_id + " stopping=" + w.stopping->task_id +
                                           " node=" + w.stopping->node + " held=" +
                                           (w.stopping->next ? w.stopping->next->task_id : std::string("none")) +
                                           " stopped=" + (old_result ? "true" : "false"));
  return true;
}

std::size_t Workloads::republish_owned() {
  std::lock_guard lock(impl_->mutex);
  std::size_t published = 0;
  auto again = [&](topics::CloudKind kind, const std::string& id, const std::vector<std::uint8_t>& payload) {
    auto parsed = topics::Id::parse(id);
    if (parsed && impl_->publish(topics::cloud(kind, *parsed), payload, true)) ++published;
  };
  for (const auto& [id, w] : impl_->workloads) {
    if (!impl_->owns(id)) continue;
    if (w.phase == Phase::deleted) {  // clears a stale copy the broker may have kept
      again(topics::CloudKind::workload, id, {});
      again(topics::CloudKind::placement, id, {});
      continue;
    }
    again(topics::CloudKind::workload, id, encode_cbor(w.spec));
    if (w.placement) again(topics::CloudKind::placement, id, encode_cbor(*w.placement));
    for (const Replica& r : w.replicas) {
      if (r.placement) again(topics::CloudKind::placement, Impl::replica_key(id, r.index), encode_cbor(*r.placement));
    }
  }
  for (const auto& [cid, c] : impl_->clusters) {
    if (impl_->owns(Impl::cluster_key(cid))) again(topics::CloudKind::cluster, cid, encode_cbor(c));
  }
  return published;
}

void Workloads::on_metrics(const std::string& node, const std::vector<MetricSample>& samples) {
  if (samples.empty()) return;
  std::lock_guard lock(impl_->mutex);
  OverloadTracker& load = impl_->load[node];
  for (const MetricSample& s : samples) {
    load.observe(s, impl_->policy);
    impl_->measures.observe_sample(node, s);
  }
  impl_->dirty.insert(node);
  impl_->latest[node] = samples.back();
}

void Workloads::set_migration_policy(const MigrationPolicy& policy) {
  std::lock_guard lock(impl_->mutex);
  impl_->policy = policy;
}

void Workloads::tick(Timestamp now) {
  std::lock_guard lock(impl_->mutex);
  impl_->clock_hint = now;
  if (impl_->started == 0) impl_->started = now;
  if (now < impl_->next_retry) return;
  impl_->next_retry = now + 1000;
  // Pending workloads wait for a node to be born or to free resources, or, when seen
  // on the retained topic, a second for their retained placement to show up.
  for (auto& [id, w] : impl_->workloads) {
    if (w.phase != Phase::pending || !impl_->owns(id) || Impl::is_service(w)) continue;
    if (w.history.empty() && now < w.submitted_ts + 1000) continue;
    impl_->place(w, now, w.history.empty() ? "placed by owner " + impl_->self : "retry: " + w.unplaced_reason, 0, {});
  }
  impl_->tend_fences(now);
  impl_->fail_over_lost(now);
  impl_->tend_services(now);
  if (impl_->reoptimiser.interval_ms > 0 && now >= impl_->next_reoptimise) {
    impl_->next_reoptimise = now + impl_->reoptimiser.interval_ms;
    impl_->reoptimise(now);
  }
  // Federation: regional and metro sites join as secondary edge clusters, the root as
  // the primary, unless registered already (an operator's record wins).
  for (const auto& n : impl_->nodes()) {
    if (!n.description) continue;
    const auto levels = split_path(n.description->site);
    for (std::size_t depth = 1; depth <= std::min<std::size_t>(3, levels.size()); ++depth) {
      const std::string& site = levels[depth - 1];
      const std::string cid = depth == 1 ? site : "edge-" + site;
      if (impl_->clusters.count(cid) != 0) continue;
      auto id = topics::Id::parse(cid);
      if (!id) continue;
      ClusterRecord c;
      c.cluster_id = cid;
      c.name = depth == 1 ? "primary cloud cluster" : "edge cluster at " + site;
      c.role = depth == 1 ? ClusterRole::primary : ClusterRole::secondary;
      std::string root;
      for (std::size_t i = 0; i < depth; ++i) root += (i == 0 ? "" : "/") + levels[i];
      c.root_site = root;
      c.capabilities = {depth == 1 ? "cloud" : "edge_computing"};
      impl_->clusters[cid] = c;
      impl_->all_dirty = true;
      if (impl_->owns(Impl::cluster_key(cid))) impl_->put_record(topics::CloudKind::cluster, *id, encode_cbor(c));
    }
  }

  // Migration, only to a node that passes every hard constraint. A placement younger
  // than the dwell time stays (a migration is a placement: this also spaces one
  // workload's moves), and at most policy.max_per_node moves leave a node per window, so
  // a loaded cluster does not ping-pong.
  const MigrationPolicy& policy = impl_->policy;
  for (auto& [id, w] : impl_->workloads) {
    if (w.phase != Phase::running || !w.placement || w.migration || w.stopping || !impl_->owns(id)) continue;
    if (auto hold = impl_->migration_hold.find(id); hold != impl_->migration_hold.end() && hold->second > now) continue;
    if (now < w.placement->ts + policy.min_dwell_ms) continue;
    const Placement current = *w.placement;
    std::optional<std::string> trigger;
    if (auto req = impl_->migration_requests.find(id); req != impl_->migration_requests.end()) {
      if (req->second.node == current.node && now < req->second.until) {
        trigger = "requested by " + req->second.node + ": " + req->second.why;
      } else {
        impl_->migration_requests.erase(req);  // it moved meanwhile, or the request lapsed
      }
    }
    if (!trigger) trigger = migration_trigger(impl_->signals_of(current.node, current.site, now));
    if (!trigger) {
      const double cost = impl_->cost_of(current.site);
      if (cost <= 1) continue;
      // Cost: is there a node costing at most 70 % of this one, scoring within 5 points?
      const auto cands = impl_->candidates(w.spec, impl_->nodes(), {current.node});
      bool cheaper = false;
      for (const auto& r : tiers::rank(w.spec, cands, 8)) {
        if (impl_->cost_of(r.site) <= 0.7 * cost && r.score >= current.score - 5) cheaper = true;
      }
      if (!cheaper) continue;
      trigger = "cost: " + std::to_string(cost) + " here, a node at <= 70 % of it scores within 5 points";
    }
    auto& recent = impl_->migrations_off[current.node];
    while (!recent.empty() && recent.front() + policy.node_window_ms <= now) recent.pop_front();
    if (recent.size() >= policy.max_per_node) {
      impl_->migration_hold[id] = recent.front() + policy.node_window_ms;  // when the window frees one
      impl_->say("info", "migration_capped", "workload=" + id + " node=" + current.node + " trigger=\"" + *trigger +
                                                 "\" recent=" + std::to_string(recent.size()));
      continue;
    }
    const WorkloadState before = w;
    const std::string sync = w.spec.resources.storage_mb == 0 ? "restart" : "copy-then-switch";
    // Never onto an overloaded node: two hot nodes would trade the workload back and forth.
    std::set<std::string> avoid = {current.node};
    for (const auto& [node, load] : impl_->load) {
      if (load.overloaded()) avoid.insert(node);
    }
    if (!impl_->place(w, now, "migration from " + current.node + ": " + *trigger, 0, avoid,
                      {{"NOVA_MIGRATED_FROM", current.node}, {"NOVA_SYNC_STRATEGY", sync}}, Impl::OldRun::fence)) {
      w = before;  // nowhere to go: stay, and look again in a minute
      impl_->migration_hold[id] = now + 60'000;
      impl_->say("info", "migration_skipped", "workload=" + id + " node=" + current.node + " trigger=\"" + *trigger + "\"");
      continue;
    }
    w.migration = plan_migration(w.spec, current, *w.placement, *trigger, now);
    recent.push_back(now);
    ++impl_->counters.migrations;
    impl_->migration_requests.erase(id);
  }
}

schemas::Status Workloads::request_migration(const std::string& workload_id, const std::string& node,
                                             const std::string& why, Timestamp now) {
  std::lock_guard lock(impl_->mutex);
  auto refuse = [&](const std::string& reason) -> schemas::Status {
    ++impl_->counters.migration_requests_refused;
    impl_->say("info", "migration_request_refused",
               "workload=" + workload_id + " node=" + node + " reason=\"" + reason + "\"");
    return Error{"target", reason};
  };
  auto it = impl_->workloads.find(workload_id);
  if (it == impl_->workloads.end()) return refuse("no workload '" + workload_id + "'");
  const WorkloadState& w = it->second;
  if (w.spec.kind == WorkloadKind::service) return refuse("a service's replicas are not migrated");
  if (w.phase != Phase::running || !w.placement) return refuse("not running");
  if (w.placement->node != node) return refuse("runs on " + w.placement->node + ", not on the node that asked");
  if (!impl_->owns(workload_id)) return refuse("placed by instance " + impl_->owner(workload_id));
  impl_->migration_requests[workload_id] = {node, why, now + kMigrationRequestTtl};
  ++impl_->counters.migration_requests;
  impl_->say("info", "migration_requested", "workload=" + workload_id + " node=" + node + " why=\"" + why + "\"");
  return schemas::Ok{};
}

void Workloads::set_instances(std::set<std::string> instances, Timestamp now) {
  std::lock_guard lock(impl_->mutex);
  instances.insert(impl_->self);
  if (instances == impl_->instances) return;
  impl_->instances = std::move(instances);
  std::string members;
  for (const auto& i : impl_->instances) members += (members.empty() ? "" : ",") + i;
  impl_->say("info", "instances_changed", "instances=" + members);
  // Workloads adopted from a departed owner whose node died meanwhile fail over now.
  impl_->fail_over_lost(now);
}

std::string Workloads::owner(const std::string& workload_id) const {
  std::lock_guard lock(impl_->mutex);
  return impl_->owner(workload_id);
}

Result<std::vector<WorkloadState>> Workloads::submit_batch(std::vector<WorkloadSpec> specs, Timestamp now) {
  std::vector<WorkloadState> states;
  WaitDeliveredFn wait_delivered;
  {
    std::lock_guard lock(impl_->mutex);
    std::set<std::string> seen;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const std::string field = "workloads[" + std::to_string(i) + "].workload_id";
      auto wid = topics::Id::parse(specs[i].workload_id);
      if (!wid) return Error{field, wid.error().reason};
      auto existing = impl_->workloads.find(specs[i].workload_id);
      if ((existing != impl_->workloads.end() && existing->second.phase != Phase::deleted) ||
          !seen.insert(specs[i].workload_id).second) {
        return Error{field, "'" + specs[i].workload_id + "' already exists"};
      }
    }
    // Kept and published first, like submit(); then the owned ones are placed together.
    // A service is placed replica by replica as it comes, and joins the workloads at
    // once, so that what its replicas hold counts for the next service and for the
    // tasks' batch (usage() reads the workloads).
    std::vector<WorkloadState> fresh(specs.size());
    std::vector<bool> joined(specs.size(), false);
    std::vector<std::string> ids;  // input order
    std::vector<WorkloadSpec> owned;
    std::vector<std::size_t> owned_at;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      WorkloadState& w = fresh[i];
      w.spec = std::move(specs[i]);
      w.submitted_ts = now;
      ids.push_back(w.spec.workload_id);
      ++impl_->counters.submitted;
      impl_->put_record(topics::CloudKind::workload, *topics::Id::parse(w.spec.workload_id), encode_cbor(w.spec));
      if (impl_->owns(w.spec.workload_id) && Impl::is_service(w)) {
        WorkloadState& slot = impl_->workloads[w.spec.workload_id];
        slot = std::move(w);
        joined[i] = true;
        impl_->place_service(slot, now, "submitted in a batch of " + std::to_string(specs.size()));
      } else if (impl_->owns(w.spec.workload_id)) {
        owned.push_back(w.spec);
        owned_at.push_back(i);
      } else {
        w.unplaced_reason = "handed to its owner, instance " + impl_->owner(w.spec.workload_id);
      }
    }
    impl_->sync(owned);
    const tiers::BatchResult placed = impl_->engine.place_batch(owned);
    std::vector<PlacementSignals> placed_signals;  // now: a later sync() may renumber the slots
    for (std::size_t k = 0; k < owned.size(); ++k) {
      const auto& best = placed.decisions[k].best;
      placed_signals.push_back(best ? impl_->signals_for(owned[k], impl_->engine.candidate(best->index)) : PlacementSignals{});
    }
    for (std::size_t k = 0; k < owned.size(); ++k) {
      WorkloadState& w = fresh[owned_at[k]];
      if (placed.decisions[k].best) {
        impl_->commit(w, placed.decisions[k], now, "submitted in a batch of " + std::to_string(fresh.size()), 0);
        w.signals = placed_signals[k];
      } else {
        impl_->leave_pending(w, impl_->candidates(owned, impl_->nodes(), {}, {}));
      }
    }
    if (!owned.empty()) ++impl_->counters.batches;
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      if (joined[i]) {
        states.push_back(impl_->workloads.at(ids[i]));
        continue;
      }
      auto& slot = impl_->workloads[fresh[i].spec.workload_id];
      slot = std::move(fresh[i]);
      states.push_back(slot);
    }
    wait_delivered = impl_->wait_delivered;
  }
  if (wait_delivered && !wait_delivered(kDeliveryWait)) {
    impl_->say("warning", "task_unconfirmed",
               "batch=" + std::to_string(states.size()) + " reason=\"the broker did not acknowledge within " +
                   std::to_string(kDeliveryWait.count()) + " ms\"");
  }
  return states;
}

void Workloads::set_reoptimiser(const ReoptimiserPolicy& policy) {
  std::lock_guard lock(impl_->mutex);
  impl_->reoptimiser = policy;
}

std::size_t Workloads::reoptimise(Timestamp now) {
  std::lock_guard lock(impl_->mutex);
  return impl_->reoptimise(now);
}

std::size_t Workloads::Impl::reoptimise(Timestamp now) {
  // The owned pending and running workloads; running ones may move within the limits of
  // the migration triggers (dwell, per-node cap, a hold after a failed attempt).
  std::vector<Standing> standing;
  std::vector<std::string> ids;
  std::set<std::string> considered;
  for (auto& [id, w] : workloads) {
    if (!owns(id) || is_service(w)) continue;
    Standing s;
    s.spec = w.spec;
    if (w.phase == Phase::running && w.placement) {
      s.node = w.placement->node;
      auto& recent = migrations_off[w.placement->node];
      while (!recent.empty() && recent.front() + policy.node_window_ms <= now) recent.pop_front();
      const auto hold = migration_hold.find(id);
      // A migrated workload may move again once its old run is known stopped and the
      // dwell time has passed since the move: a target that fails to start has refused
      // by then (a run-to-completion task keeps its migration record until it ends).
      s.movable = !w.stopping && now >= w.placement->ts + policy.min_dwell_ms &&
                  recent.size() < policy.max_per_node && (hold == migration_hold.end() || hold->second <= now);
    } else if (w.phase != Phase::pending || (w.history.empty() && now < w.submitted_ts + 1000)) {
      continue;  // ended, deleted, or a retained record whose placement may still come
    }
    standing.push_back(std::move(s));
    ids.push_back(id);
    considered.insert(id);
  }
  if (standing.empty()) return 0;
  std::vector<WorkloadSpec> specs;
  for (const Standing& s : standing) specs.push_back(s.spec);
  // Never onto an overloaded node (as the migration triggers): work on one may leave it.
  auto cands = candidates(specs, nodes(), {}, considered);
  for (tiers::Candidate& c : cands) {
    if (auto l = load.find(c.node); l != load.end() && l->second.overloaded()) c.alive = false;
  }
  const auto steps = plan_reoptimisation(standing, std::move(cands), reoptimiser);
  // A migration's old run holds its node until it is known stopped (fence.h), so the
  // room it frees is not free yet: placements wait for a round with no migration.
  const bool migrating = std::any_of(steps.begin(), steps.end(), [](const ReoptimiserStep& s) { return s.migration; });
  std::size_t done = 0;
  for (const ReoptimiserStep& step : steps) {
    WorkloadState& w = workloads.at(ids[step.index]);
    if (!step.migration && migrating) continue;
    ++done;
    if (!step.migration) {
      commit(w, step.decision, now, "reoptimiser: toward the batch optimum", 0);
      ++counters.reoptimiser_placed;
      continue;
    }
    const Placement current = *w.placement;
    const std::string trigger = "reoptimiser: toward the batch optimum";
    const std::string sync = w.spec.resources.storage_mb == 0 ? "restart" : "copy-then-switch";
    commit(w, step.decision, now, "migration from " + current.node + ": " + trigger, 0,
           {{"NOVA_MIGRATED_FROM", current.node}, {"NOVA_SYNC_STRATEGY", sync}}, OldRun::fence);
    w.migration = plan_migration(w.spec, current, *w.placement, trigger, now);
    migrations_off[current.node].push_back(now);
    ++counters.migrations;
    ++counters.reoptimiser_migrations;
  }
  return done;
}

WorkloadCounters Workloads::counters() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->counters;
}

}  // namespace nova::cloud
