// Hierarchy and the nova-bridge binary over the whole example topology (15 brokers,
// 14 bridges) on free loopback ports: start, supervision after a crash, holding a site
// down, reloading a changed topology, and `nova-bridge up|status|down` end to end.
// Every wait is on a condition (a link notification, a process exit, a log line).
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mqtt/async_client.h>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "mqtt_support.h"  // tests/broker-bridge/support
#include "nova/bridge/broker_process.h"
#include "nova/bridge/hierarchy.h"
#include "nova/bridge/render.h"
#include "nova/bridge/state_file.h"
#include "nova/tiers/topology.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nova::bridge::Hierarchy;
using nova::bridge::HierarchyEvent;
using nova::bridge::LinkState;

nova::tiers::Topology example() {
  auto t = nova::tiers::Topology::load(NOVA_FIVE_TIER_YAML);
  REQUIRE(t.ok());
  return std::move(t).value();
}

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("nova-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

bool alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

// Every mosquitto process whose command line names a file under `dir`.
std::vector<pid_t> mosquittos_under(const fs::path& dir) {
  std::vector<pid_t> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find("mosquitto") != std::string::npos && cmdline.find(dir.string()) != std::string::npos) {
      out.push_back(static_cast<pid_t>(std::stol(name)));
    }
  }
  return out;
}

class Events {
 public:
  void add(const HierarchyEvent& e) {
    std::lock_guard lock(mu_);
    events_.push_back(e);
  }
  bool has(const std::string& site, const std::string& kind) const {
    std::lock_guard lock(mu_);
    return std::any_of(events_.begin(), events_.end(),
                       [&](const HierarchyEvent& e) { return e.site == site && e.kind == kind; });
  }

 private:
  mutable std::mutex mu_;
  std::vector<HierarchyEvent> events_;
};

std::string tls_uri(const Hierarchy& h, const std::string& site) { return "mqtts://127.0.0.1:" + std::to_string(h.port(site)); }

// Publishes a node's record at `site` with the node's certificate and waits for it at
// the cloud broker (as nova-cloud, which reads everything upward).
bool travels_up(const Hierarchy& h, const fs::path& pki_dir, const std::string& site, const std::string& node) {
  const std::string topic = "nova/v1/up/" + node + "/state";
  mqtt::async_client cloud(tls_uri(h, "cloud"), nova::bridge::kCloudServiceUser);
  cloud.start_consuming();
  cloud.connect(nova::hiertest::tls_client_options(pki_dir, nova::bridge::kCloudServiceUser))->wait();
  cloud.subscribe(topic, 1)->wait();
  mqtt::async_client node_client(tls_uri(h, site), node);
  node_client.connect(nova::hiertest::tls_client_options(pki_dir, node))->wait();
  node_client.publish(mqtt::make_message(topic, "birth of " + node, 1, true))->wait();
  node_client.disconnect()->wait();
  mqtt::const_message_ptr m;
  const bool arrived = cloud.try_consume_message_for(&m, 30s) && m && m->get_payload_str() == "birth of " + node;
  cloud.disconnect()->wait();
  return arrived;
}

}  // namespace

TEST_CASE("the example hierarchy comes up, survives a crash and a held site", "[hierarchy]") {
  const fs::path run_dir = fresh_dir("smoke");
  auto events = std::make_shared<Events>();
  nova::bridge::HierarchyOptions options;
  options.run_dir = run_dir;
  options.ports = nova::bridge::PortPolicy::free_for_all;
  // Mutual TLS, as nova-bridge up runs it: a PKI with the topology's identities.
  const fs::path pki_dir = run_dir / "pki";
  REQUIRE(nova::bridge::prepare_pki(pki_dir, example()).ok());
  options.pki_dir = pki_dir;
  options.on_event = [events](const HierarchyEvent& e) { events->add(e); };
  auto started = Hierarchy::start(example(), options);
  INFO((started.ok() ? "" : started.error().message()));
  REQUIRE(started.ok());
  std::unique_ptr<Hierarchy> h = std::move(started).value();

  // 15 brokers, 14 links, every one reported connected by its parent's broker.
  REQUIRE(h->topology().sites().size() == 15);
  const auto links = h->link_states();
  CHECK(links.size() == 14);
  for (const auto& [site, state] : links) {
    INFO(site);
    CHECK(state == LinkState::connected);
  }
  std::vector<pid_t> pids;
  for (const auto& s : h->topology().sites()) {
    INFO(s.id());
    CHECK(alive(h->pid(s.id())));
    CHECK(h->port(s.id()) == s.spec.listener.port);
    CHECK(fs::exists(h->site_dir(s.id()) / "mosquitto.conf"));
    CHECK(events->has(s.id(), "broker_started"));
    pids.push_back(h->pid(s.id()));
  }
  CHECK(travels_up(*h, pki_dir, "par-a1", "dev-par-a1-1"));

  // The state file, as nova-bridge status reads it.
  h->write_state_file();
  auto state = nova::bridge::read_state_file(run_dir / nova::bridge::kStateFileName);
  REQUIRE(state.ok());
  CHECK(state->sites.size() == 15);
  CHECK(state->sites.front().id == "cloud");
  CHECK_FALSE(state->sites.front().parent.has_value());
  CHECK(state->supervisor.pid == ::getpid());
  for (const auto& s : state->sites) CHECK(s.process.pid == h->pid(s.id));

  SECTION("a killed metro broker is restarted and its link reconnects") {
    const pid_t old = h->pid("par");
    h->kill("par");
    CHECK_FALSE(alive(old));
    CHECK(events->has("par", "broker_killed"));
    REQUIRE(h->wait_link("par", 30s));
    CHECK(alive(h->pid("par")));
    CHECK(h->pid("par") != old);
    CHECK(events->has("par", "broker_restarted"));
    // Its children reconnect (to it or, meanwhile, to their backup 'ber').
    CHECK(h->wait_link("par-a1", 60s));
    CHECK(h->wait_link("par-a2", 60s));
    CHECK(travels_up(*h, pki_dir, "par-a2", "dev-par-a2-1"));
    // The state file followed the restart.
    auto after = nova::bridge::read_state_file(run_dir / nova::bridge::kStateFileName);
    REQUIRE(after.ok());
    CHECK(std::any_of(after->sites.begin(), after->sites.end(),
                      [&](const auto& s) { return s.id == "par" && s.process.pid == h->pid("par"); }));
  }

  SECTION("a stopped site stays down until start_site") {
    h->stop("eu");
    CHECK(h->pid("eu") == -1);
    // Links are read at the parent: 'cloud' fired eu's will; par's parent is eu itself.
    const auto held = h->link_states();
    CHECK(held.at("eu") == LinkState::disconnected);
    CHECK(held.at("par") == LinkState::unknown);
    h->start_site("eu");
    CHECK(alive(h->pid("eu")));
    CHECK(h->wait_link("eu", 30s));
    CHECK(h->wait_link("par", 60s));
    CHECK(h->wait_link("ber", 60s));
  }

  SECTION("reload restarts changed brokers, starts new sites and removes old ones") {
    auto spec = example().spec();
    for (auto& s : spec.sites) {
      s.listener.port = h->port(s.id);
      if (s.id == "sfo") s.overrides.keepalive_s = 50;  // sfo's config changes
    }
    nova::tiers::SiteSpec extra;
    extra.id = "nyc-a3";
    extra.level = 4;
    extra.parent = "nyc";
    spec.sites.push_back(extra);  // port 0: a free one
    nova::tiers::NodeSpec extra_node;
    extra_node.id = "dev-nyc-a3-1";
    extra_node.site = "nyc-a3";
    spec.nodes.push_back(extra_node);
    auto next = nova::tiers::Topology::build(spec);
    REQUIRE(next.ok());
    // The new site's broker and bridge and its node need certificates first, as
    // `nova-pki topology` issues them for a changed topology file.
    REQUIRE(nova::bridge::prepare_pki(pki_dir, *next).ok());
    const pid_t sfo = h->pid("sfo");
    // nyc's ACL gets a new bridge user; and since each child bridge is granted the up
    // topics of the sites and nodes it carries, the ACLs above nyc (us, cloud) grant
    // nyc-a3 and its node to the bridge that carries them. Nothing else changes.
    const std::vector<std::string> acl_changed = {"cloud", "us", "nyc"};
    std::map<std::string, pid_t> acl_pids;
    for (const auto& site : acl_changed) acl_pids[site] = h->pid(site);
    auto summary = h->reload(*next);
    REQUIRE(summary.ok());
    CHECK(summary->restarted == std::vector<std::string>{"sfo"});
    CHECK(summary->started == std::vector<std::string>{"nyc-a3"});
    CHECK(summary->acl_reloaded == acl_changed);
    CHECK(summary->removed.empty());
    CHECK(h->pid("sfo") != sfo);
    for (const auto& [site, pid] : acl_pids) {
      INFO(site);
      CHECK(h->pid(site) == pid);  // SIGHUP reloads its ACL without a restart
    }
    REQUIRE(h->wait_link("nyc-a3", 30s));
    CHECK(travels_up(*h, pki_dir, "nyc-a3", "dev-nyc-a3-1"));
    CHECK(h->wait_link("sfo", 30s));

    spec.sites.pop_back();
    spec.nodes.pop_back();
    auto without = nova::tiers::Topology::build(spec);
    REQUIRE(without.ok());
    const pid_t extra_pid = h->pid("nyc-a3");
    summary = h->reload(*without);
    REQUIRE(summary.ok());
    CHECK(summary->removed == std::vector<std::string>{"nyc-a3"});
    CHECK_FALSE(alive(extra_pid));
    CHECK(h->topology().find("nyc-a3") == nullptr);
  }

  SECTION("reload refuses a links: wireguard topology and changes nothing") {
    auto spec = example().spec();
    spec.links.mode = nova::tiers::LinkMode::wireguard;
    for (auto& s : spec.sites) {
      s.listener.port = h->port(s.id);
      s.tunnel.endpoint = "192.0.2.1";  // every parent needs one; never dialled here
    }
    auto tunnelled = nova::tiers::Topology::build(spec);
    REQUIRE(tunnelled.ok());
    const pid_t eu = h->pid("eu");
    auto refused = h->reload(*tunnelled);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().path == "links");
    CHECK(h->pid("eu") == eu);
    CHECK_FALSE(h->topology().wireguard());
  }

  h.reset();  // SIGTERM, children first
  for (const pid_t p : pids) CHECK_FALSE(alive(p));
  CHECK(mosquittos_under(run_dir).empty());
  fs::remove_all(run_dir);
}

namespace {

struct Run {
  int status = -1;
  std::string out;
};

// Runs nova-bridge with `args`, stdout and stderr into `log`; returns the exit status.
pid_t spawn_bridge(const std::vector<std::string>& args, const fs::path& log) {
  std::vector<std::string> argv_s{NOVA_BRIDGE_EXE};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t child = ::fork();
  if (child == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return child;
}

int wait_status(pid_t child) {
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Run run_bridge(const std::vector<std::string>& args, const fs::path& dir, const std::string& name) {
  const fs::path log = dir / (name + ".out");
  Run r;
  r.status = wait_status(spawn_bridge(args, log));
  r.out = read_text(log);
  return r;
}

}  // namespace

TEST_CASE("nova-bridge up, status and down run the example hierarchy over mutual TLS", "[cli][tls]") {
  const fs::path dir = fresh_dir("cli");
  const fs::path run_dir = dir / "run";
  const fs::path up_log = dir / "up.out";
  // No --pki: up makes <run-dir>/pki for the topology; no --insecure-plaintext: TLS.
  const pid_t up = spawn_bridge({"up", NOVA_FIVE_TIER_YAML, "--run-dir", run_dir.string(), "--free-ports"}, up_log);
  REQUIRE(up > 0);
  // `up` prints "ready: ..." once every link is connected.
  int early_exit = 0;
  const bool ready = nova::bridge::wait_until(
      [&] {
        if (::waitpid(up, &early_exit, WNOHANG) == up) return true;  // failed: stop waiting
        return read_text(up_log).find("\nready: ") != std::string::npos;
      },
      dir, 90s);
  const std::string up_text = read_text(up_log);
  INFO(up_text);
  REQUIRE(ready);
  REQUIRE(early_exit == 0);
  REQUIRE(up_text.find("ready: 15 brokers, 14 links connected") != std::string::npos);
  CHECK(up_text.find("event=broker_started site=sfo-a2") != std::string::npos);

  const Run status = run_bridge({"status", "--run-dir", run_dir.string()}, dir, "status");
  INFO(status.out);
  CHECK(status.status == 0);
  CHECK(status.out.find("all brokers up, all links connected") != std::string::npos);

  auto state = nova::bridge::read_state_file(run_dir / nova::bridge::kStateFileName);
  REQUIRE(state.ok());
  CHECK(state->supervisor.pid == up);
  REQUIRE(state->sites.size() == 15);
  // Every broker listens with mutual TLS, and status read every link with the
  // monitor's certificate from the PKI up made.
  CHECK(state->pki_dir == fs::absolute(run_dir / "pki").lexically_normal());
  CHECK(fs::exists(state->pki_dir / "identities" / nova::bridge::kMonitorIdentity / "cert.pem"));
  for (const auto& site : state->sites) {
    const std::string conf = read_text(site.dir / "mosquitto.conf");
    INFO(site.id);
    CHECK(conf.find("\nrequire_certificate true\n") != std::string::npos);
    CHECK(conf.find("\nallow_anonymous false\n") != std::string::npos);
    CHECK(conf.find("INSECURE") == std::string::npos);
  }
  CHECK(mosquittos_under(run_dir).size() == 15);

  const Run down = run_bridge({"down", "--run-dir", run_dir.string()}, dir, "down");
  INFO(down.out);
  CHECK(down.status == 0);
  CHECK(wait_status(up) == 0);  // SIGTERM: stopped everything cleanly
  for (const auto& s : state->sites) CHECK_FALSE(nova::bridge::process_alive(s.process));
  CHECK(mosquittos_under(run_dir).empty());
  CHECK(read_text(up_log).find("event=stopped") != std::string::npos);

  const Run after = run_bridge({"status", "--run-dir", run_dir.string()}, dir, "status-after");
  CHECK(after.status == 1);
  fs::remove_all(dir);
}

TEST_CASE("nova-bridge refuses bad topologies and unknown sites with exit code 2", "[cli]") {
  const fs::path dir = fresh_dir("cli-bad");
  std::ofstream(dir / "cycle.yaml") << R"(
sites:
  - {id: root, level: 1, port: 1883}
  - {id: a, level: 2, parent: b, port: 1884}
  - {id: b, level: 3, parent: a, port: 1885}
)";
  const Run cycle = run_bridge({"render", (dir / "cycle.yaml").string(), "--site", "a", "--out", dir.string()}, dir,
                               "cycle");
  CHECK(cycle.status == 2);
  CHECK(cycle.out.find("site 'a': parent chain loops") != std::string::npos);

  const Run unknown =
      run_bridge({"render", NOVA_FIVE_TIER_YAML, "--site", "mars", "--out", (dir / "out").string()}, dir, "unknown");
  CHECK(unknown.status == 2);
  CHECK(unknown.out.find("site 'mars': not defined") != std::string::npos);

  const Run up = run_bridge({"up", (dir / "cycle.yaml").string(), "--run-dir", (dir / "run").string()}, dir, "up");
  CHECK(up.status == 2);
  CHECK(up.out.find("site 'a'") != std::string::npos);

  const Run usage = run_bridge({"status"}, dir, "usage");
  CHECK(usage.status == 2);

  // A render that succeeds, for the exit code 0: plaintext so that it needs no PKI
  // folder (render's TLS mode is covered by render_test and tls_acl_test).
  const Run ok = run_bridge({"render", NOVA_FIVE_TIER_YAML, "--site", "par", "--out", (dir / "par").string(), "--insecure-plaintext"}, dir,
                            "render");
  CHECK(ok.status == 0);
  CHECK(fs::exists(dir / "par" / "mosquitto.conf"));
  CHECK(fs::exists(dir / "par" / "acl"));
  fs::remove_all(dir);
}
