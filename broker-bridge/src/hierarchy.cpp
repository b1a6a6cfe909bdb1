#include "nova/bridge/hierarchy.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <fstream>
#include <future>
#include <iomanip>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>

#include "nova/bridge/broker_process.h"
#include "nova/bridge/net.h"
#include "nova/bridge/render.h"
#include "nova/security/digest.h"
#include "nova/security/pki.h"
#include "nova/security/topology_identities.h"
#include "nova/bridge/state_file.h"

namespace nova::bridge {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using schemas::Error;

constexpr milliseconds kStopTimeout{10'000};
constexpr milliseconds kStartTimeout{10'000};
constexpr milliseconds kFirstBackoff{250};
constexpr milliseconds kMaxBackoff{15'000};
constexpr auto kHealthyAfter = std::chrono::seconds(10);
constexpr int kMaxPortAttempts = 8;
constexpr std::size_t kLogTailLines = 15;

std::string connect_host(const std::string& address) {
  return address.empty() || address == "0.0.0.0" ? "127.0.0.1" : address;
}

// Picks free loopback ports, never the same one twice in one hierarchy.
class PortPicker {
 public:
  explicit PortPicker(std::set<std::uint16_t> taken) : taken_(std::move(taken)) {}
  Result<std::uint16_t> pick() {
    for (int i = 0; i < 64; ++i) {
      auto port = free_loopback_port();
      if (!port) return port;
      if (taken_.insert(*port).second) return port;
    }
    return Error{"", "no unused free loopback port after 64 attempts"};
  }

 private:
  std::set<std::uint16_t> taken_;
};

Result<tiers::Topology> with_port(const tiers::Topology& topology, const std::string& site,
                                  std::uint16_t port) {
  tiers::TopologySpec spec = topology.spec();
  for (tiers::SiteSpec& s : spec.sites) {
    if (s.id == site) s.listener.port = port;
  }
  return tiers::Topology::build(std::move(spec));
}

}  // namespace

std::string format_event(const HierarchyEvent& event) {
  const auto since_epoch = event.time.time_since_epoch();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(event.time);
  const auto millis = std::chrono::duration_cast<milliseconds>(since_epoch).count() % 1000;
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  std::ostringstream out;
  out << "ts=" << std::put_time(&utc, "%Y-%m-%dT%H:%M:%S") << '.' << std::setw(3) << std::setfill('0')
      << millis << "Z level=" << event.level << " event=" << (event.kind.empty() ? "event" : event.kind);
  if (!event.site.empty()) out << " site=" << event.site;
  if (event.pid > 0) out << " pid=" << event.pid;
  std::string msg;
  for (const char c : event.what) {
    if (c == '"' || c == '\\') msg += '\\';
    msg += c == '\n' ? ' ' : c;
  }
  out << " msg=\"" << msg << "\"";
  return out.str();
}

// --- Impl ------------------------------------------------------------------------------

namespace {
// A digest of a site's PKI files (site_tls_files), compared on reload to find what a
// rotation changed: a SHA-256 over each group's contents, so that the supervisor keeps
// no copy of a private key. Empty in insecure plaintext mode.
struct TlsContents {
  std::string listener;
  std::string bridge;
};
}  // namespace

struct Hierarchy::Impl {
  // One site's broker. `process`, `restart_at`, `failures` and `started_at` belong to
  // the supervisor thread; the rest is shared under `mu`.
  struct SiteProc {
    std::string id;
    fs::path dir;
    std::uint16_t port = 0;
    pid_t pid = -1;
    std::uint64_t start_time = 0;
    std::string state = "down";  // running, restarting, held, down
    // Supervisor thread only:
    BrokerProcess process;
    bool held = false;
    std::optional<Clock::time_point> restart_at;
    int failures = 0;
    Clock::time_point started_at{};
    std::string conf;  // as last written
    std::string acl;
    TlsContents tls;  // the PKI files as the running broker read them
  };

  HierarchyOptions options;
  std::string user;  // rendered `user` line: "root" when we run as root

  mutable std::mutex mu;
  std::condition_variable state_changed;  // a site's pid/state was published
  std::unique_ptr<tiers::Topology> topology;
  std::vector<std::unique_ptr<SiteProc>> sites;  // topology order: parents first
  bool keep_state_file = false;

  // The supervisor thread and its command queue.
  std::thread thread;
  std::thread::id thread_id;
  int wake_fd = -1;
  std::mutex queue_mu;
  std::deque<std::function<void()>> queue;
  bool quit = false;  // supervisor thread only

  explicit Impl(HierarchyOptions o) : options(std::move(o)) {
    if (::geteuid() == 0) user = "root";
  }

  // --- lookups (callers hold mu) ---
  SiteProc* find(const std::string& id) const {
    for (const auto& s : sites) {
      if (s->id == id) return s.get();
    }
    return nullptr;
  }
  std::string uri_of(const std::string& id) const {
    const tiers::Site* site = topology->find(id);
    SiteProc* p = find(id);
    if (site == nullptr || p == nullptr) return {};
    return "tcp://" + connect_host(site->spec.listener.address) + ":" + std::to_string(p->port);
  }
  // Where a site's link is read: its parent's broker, then its backups' (link.h).
  // Callers hold mu.
  LinkProbe link_probe_of(const tiers::Site& site) const {
    LinkProbe probe{{}, site.id(), monitor_tls_in(options.pki_dir)};
    if (site.spec.parent) probe.parent_uris.push_back(uri_of(*site.spec.parent));
    for (const std::string& b : site.spec.backup_parents) probe.parent_uris.push_back(uri_of(b));
    return probe;
  }

  // --- the supervisor thread ---
  void start_thread() {
    wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
    thread = std::thread([this] { loop(); });
    thread_id = thread.get_id();
  }

  // Runs `fn` on the supervisor thread and waits for it (inline when already there).
  template <class Fn>
  auto run(Fn fn) -> decltype(fn()) {
    using R = decltype(fn());
    if (std::this_thread::get_id() == thread_id) return fn();
    auto task = std::make_shared<std::packaged_task<R()>>(std::move(fn));
    auto result = task->get_future();
    {
      std::lock_guard lock(queue_mu);
      queue.emplace_back([task] { (*task)(); });
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_fd, &one, sizeof one);
    return result.get();
  }

  void loop() {
    while (!quit) {
      std::vector<pollfd> fds{{wake_fd, POLLIN, 0}};
      bool needs_polling = false;
      std::optional<Clock::time_point> next_restart;
      for (const auto& s : sites) {  // only this thread changes `sites`
        if (s->process.pid() > 0) {
          if (s->process.exit_fd() >= 0) {
            fds.push_back({s->process.exit_fd(), POLLIN, 0});
          } else {
            needs_polling = true;  // kernel without pidfd
          }
        }
        if (s->restart_at && (!next_restart || *s->restart_at < *next_restart)) next_restart = s->restart_at;
      }
      int timeout_ms = -1;
      if (next_restart) {
        timeout_ms = static_cast<int>(std::clamp<milliseconds::rep>(
            std::chrono::duration_cast<milliseconds>(*next_restart - Clock::now()).count() + 1, 0, 60'000));
      }
      if (needs_polling && (timeout_ms < 0 || timeout_ms > 100)) timeout_ms = 100;
      ::poll(fds.data(), fds.size(), timeout_ms);

      std::uint64_t count = 0;
      [[maybe_unused]] const auto n = ::read(wake_fd, &count, sizeof count);
      std::deque<std::function<void()>> work;
      {
        std::lock_guard lock(queue_mu);
        work.swap(queue);
      }
      for (auto& fn : work) fn();
      if (quit) break;
      reap_exited();
      restart_due();
    }
  }

  void emit(HierarchyEvent event) {
    if (!options.run_dir.empty()) {
      std::ofstream log(options.run_dir / "hierarchy.log", std::ios::app);
      log << format_event(event) << '\n';
    }
    if (options.on_event) options.on_event(event);
  }

  void publish(SiteProc& s, const std::string& state) {
    {
      std::lock_guard lock(mu);
      s.pid = s.process.pid();
      s.start_time = s.pid > 0 ? process_start_time(s.pid).value_or(0) : 0;
      s.state = state;
    }
    state_changed.notify_all();
    refresh_state_file();
  }

  void refresh_state_file() {
    bool enabled = false;
    {
      std::lock_guard lock(mu);
      enabled = keep_state_file;
    }
    if (enabled) write_state();
  }

  void write_state() {
    StateFile state;
    {
      std::lock_guard lock(mu);
      state.name = topology->name();
      state.run_dir = fs::absolute(options.run_dir);
      state.pki_dir = options.pki_dir;
      state.supervisor = this_process();
      for (const auto& s : sites) {
        const tiers::Site& site = topology->site(s->id);
        state.sites.push_back(SiteRecord{s->id, site.level(), site.spec.parent, site.path.str(),
                                         site.spec.listener.address, s->port,
                                         ProcessId{s->pid, s->start_time}, s->state, fs::absolute(s->dir)});
      }
    }
    // Best effort: a full disk must not take the supervisor down; status then reads
    // the previous file.
    (void)bridge::write_state_file(options.run_dir / kStateFileName, state);
  }

  std::string log_tail(const SiteProc& s) const {
    std::string text = read_text_file(s.dir / "mosquitto.log");
    const std::string stdio = read_text_file(s.dir / "mosquitto.stdio");
    if (!stdio.empty()) text += "--- mosquitto stdout/stderr ---\n" + stdio;
    return last_lines(text, kLogTailLines);
  }

  // Renders the site from the current topology and writes its files (when changed).
  schemas::Status render_site(SiteProc& s) {
    const tiers::Topology* t = nullptr;
    {
      std::lock_guard lock(mu);
      t = topology.get();
    }
    const tiers::Site& site = t->site(s.id);
    RenderOptions render_options;
    render_options.user = user;
    render_options.pki_dir = options.pki_dir;
    render_options.insecure_plaintext = options.insecure_plaintext;
    render_options.mosquitto_acl_file = options.mosquitto_acl_file;
    auto status = write_site(*t, site, s.dir, render_options);
    if (!status) return status;
    s.conf = read_text_file(s.dir / "mosquitto.conf");
    s.acl = read_text_file(s.dir / "acl");
    return schemas::Ok{};
  }

  // Read before a start or a SIGHUP: a file replaced after the read is seen as changed
  // at the next reload, so no rotation is missed.
  TlsContents tls_contents(const SiteProc& s) const {
    TlsContents out;
    if (options.insecure_plaintext) return out;
    const tiers::Site* site = nullptr;
    {
      std::lock_guard lock(mu);
      site = topology->find(s.id);
    }
    const SiteTlsFiles files = site_tls_files(options.pki_dir, *site);
    const auto digest = [](const std::vector<fs::path>& group) {
      std::string text;
      for (const fs::path& f : group) text += security::sha256_hex(read_text_file(f));
      return security::sha256_hex(text);
    };
    out.listener = digest(files.listener);
    out.bridge = digest(files.bridge);
    return out;
  }

  StartResult spawn(SiteProc& s) {
    const tiers::Site* site = nullptr;
    {
      std::lock_guard lock(mu);
      site = topology->find(s.id);
    }
    s.tls = tls_contents(s);
    BrokerLaunch launch;
    launch.config = s.dir / "mosquitto.conf";
    launch.log = s.dir / "mosquitto.log";
    launch.stdio = s.dir / "mosquitto.stdio";
    launch.host = connect_host(site->spec.listener.address);
    launch.port = s.port;
    launch.timeout = kStartTimeout;
    StartResult r = s.process.start(launch);
    if (r.ok()) s.started_at = Clock::now();
    return r;
  }

  // First start of a site; with `may_move`, a port taken meanwhile is replaced by
  // another free one (before any child has been rendered against it).
  schemas::Status first_start(SiteProc& s, bool may_move, PortPicker& picker) {
    for (int attempt = 1;; ++attempt) {
      if (auto st = render_site(s); !st) return Error{"", "site '" + s.id + "': " + st.error().message()};
      StartResult r = spawn(s);
      if (r.ok()) break;
      if (r.outcome != StartOutcome::port_in_use || !may_move || attempt >= kMaxPortAttempts) {
        return Error{"", "site '" + s.id + "': " + r.message + "\n--- tail of " +
                             (s.dir / "mosquitto.log").string() + " ---\n" + log_tail(s)};
      }
      auto port = picker.pick();
      if (!port) return port.error();
      auto moved = with_port(*topology, s.id, *port);
      if (!moved) return moved.error();
      std::lock_guard lock(mu);
      topology = std::make_unique<tiers::Topology>(std::move(moved).value());
      s.port = *port;
    }
    s.failures = 0;
    s.restart_at.reset();
    emit({s.id, "broker started on port " + std::to_string(s.port), "broker_started", s.process.pid()});
    publish(s, "running");
    return schemas::Ok{};
  }

  void schedule_restart(SiteProc& s) {
    if (!options.supervise || s.held) {
      publish(s, s.held ? "held" : "down");
      return;
    }
    // A broker that ran for a while starts a fresh back-off sequence.
    if (Clock::now() - s.started_at >= kHealthyAfter) s.failures = 0;
    milliseconds delay{0};
    if (s.failures > 0) delay = std::min(kMaxBackoff, kFirstBackoff * (1 << std::min(s.failures - 1, 16)));
    ++s.failures;
    s.restart_at = Clock::now() + delay;
    publish(s, "restarting");
  }

  void reap_exited() {
    for (const auto& s : sites) {
      const pid_t old = s->process.pid();
      if (old > 0 && !s->process.running()) {
        emit({s->id, "broker exited (" + s->process.describe_last_exit() + ")", "broker_exited", old, "warn"});
        schedule_restart(*s);
      }
    }
  }

  void restart_due() {
    const auto now = Clock::now();
    for (const auto& s : sites) {
      if (!s->restart_at || *s->restart_at > now) continue;
      s->restart_at.reset();
      try_restart(*s, "broker_restarted");
    }
  }

  void try_restart(SiteProc& s, const std::string& kind) {
    if (auto st = render_site(s); !st) {
      emit({s.id, "cannot render config: " + st.error().message(), "restart_failed", -1, "error"});
      schedule_restart(s);
      return;
    }
    const StartResult r = spawn(s);
    if (r.ok()) {
      // The event first: whoever waits for the state (wait_link) then also sees it.
      emit({s.id, "broker started as pid " + std::to_string(s.process.pid()) + " on port " + std::to_string(s.port),
            kind, s.process.pid()});
      publish(s, "running");
      return;
    }
    emit({s.id, "start failed: " + r.message + "; " + last_lines(log_tail(s), 3), "restart_failed", -1, "error"});
    schedule_restart(s);
  }

  void stop_site(SiteProc& s, const std::string& why) {
    s.held = true;
    s.restart_at.reset();
    const pid_t old = s.process.pid();
    if (old > 0) {
      const bool clean = s.process.stop(kStopTimeout);
      emit({s.id, clean ? why : why + " (did not exit within 10 s of SIGTERM: SIGKILLed)", "broker_stopped", old,
            clean ? "info" : "warn"});
    }
    publish(s, "held");
  }

  void shutdown() {
    // Children before parents: a child's bridge leaves while its parent still runs.
    for (auto it = sites.rbegin(); it != sites.rend(); ++it) {
      SiteProc& s = **it;
      s.held = true;
      s.restart_at.reset();
      if (s.process.pid() > 0 && !s.process.stop(kStopTimeout)) {
        emit({s.id, "did not exit within 10 s of SIGTERM: SIGKILLed", "broker_stopped", -1, "warn"});
      }
      std::lock_guard lock(mu);
      s.pid = -1;
      s.state = "stopped";
    }
    refresh_state_file();
    quit = true;
  }
};

// --- Hierarchy -------------------------------------------------------------------------

Hierarchy::Hierarchy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Hierarchy::~Hierarchy() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->run([this] { impl_->shutdown(); });
  impl_->thread.join();
  ::close(impl_->wake_fd);
}

Result<std::size_t> prepare_pki(const fs::path& dir, const tiers::Topology& topology) {
  auto opened = security::Pki::open(dir);
  if (!opened) return opened.error();
  security::Pki pki = std::move(opened).value();
  auto report = security::issue_topology_identities(pki, topology);
  if (!report) return report.error();
  std::size_t issued = report->issued;
  if (!pki.has_identity(kMonitorIdentity)) {
    security::IssueRequest monitor;
    monitor.role = security::Role::operator_;
    monitor.name = kMonitorOperatorName;
    monitor.region = "cloud";
    if (auto made = pki.issue(monitor); !made) return made.error();
    ++issued;
  }
  return issued;
}

namespace {

// A local hierarchy cannot run `links: wireguard`: its brokers bind tunnel addresses that
// exist only on each site's own host once its tunnel is up.
std::optional<Error> refuse_wireguard(const tiers::Topology& topology) {
  if (!topology.wireguard()) return std::nullopt;
  return Error{"links", "a `links: wireguard` topology runs on many hosts: render each site (nova-bridge "
                        "render) and bring its tunnel up with wg-quick; `up` runs one host's loopback hierarchy"};
}

}  // namespace

Result<std::unique_ptr<Hierarchy>> Hierarchy::start(const tiers::Topology& topology, HierarchyOptions options) {
  const auto deadline = Clock::now() + options.ready_timeout;
  if (options.run_dir.empty()) return Error{"", "no run directory given"};
  if (auto refused = refuse_wireguard(topology)) return *refused;
  if (!options.insecure_plaintext && options.pki_dir.empty()) {
    return Error{"pki_dir", "required: a PKI folder for mutual TLS (or start with insecure_plaintext)"};
  }
  if (!options.pki_dir.empty()) options.pki_dir = fs::absolute(options.pki_dir).lexically_normal();
  std::error_code ec;
  fs::create_directories(options.run_dir, ec);
  if (ec) return Error{"", "cannot create " + options.run_dir.string() + ": " + ec.message()};
  options.run_dir = fs::absolute(options.run_dir).lexically_normal();
  if (auto exe = find_mosquitto(); !exe) return exe.error();

  // Ports: fixed ones stay; the picker never hands out one of them.
  std::set<std::uint16_t> fixed;
  if (options.ports != PortPolicy::free_for_all) {
    for (const tiers::Site& s : topology.sites()) {
      if (s.spec.listener.port != 0) fixed.insert(s.spec.listener.port);
    }
  }
  PortPicker picker(fixed);
  tiers::TopologySpec spec = topology.spec();
  std::set<std::string> movable;
  for (tiers::SiteSpec& s : spec.sites) {
    const bool assign = options.ports == PortPolicy::free_for_all ||
                        (options.ports == PortPolicy::free_for_zero && s.listener.port == 0);
    if (!assign && s.listener.port == 0) {
      return Error{"", "site '" + s.id + "': has no port (PortPolicy::as_configured needs one for every site)"};
    }
    if (assign) {
      auto port = picker.pick();
      if (!port) return port.error();
      s.listener.port = *port;
      movable.insert(s.id);
    }
  }
  auto assigned = tiers::Topology::build(std::move(spec));
  if (!assigned) return assigned.error();

  auto impl = std::make_unique<Impl>(std::move(options));
  impl->topology = std::make_unique<tiers::Topology>(std::move(assigned).value());
  for (const tiers::Site& s : impl->topology->sites()) {
    auto proc = std::make_unique<Impl::SiteProc>();
    proc->id = s.id();
    proc->dir = impl->options.run_dir / s.id();
    proc->port = s.spec.listener.port;
    impl->sites.push_back(std::move(proc));
  }
  impl->start_thread();
  std::unique_ptr<Hierarchy> hierarchy(new Hierarchy(std::move(impl)));
  Impl& in = *hierarchy->impl_;

  // Parents first: a child's bridge then connects at once instead of backing off.
  auto started = in.run([&]() -> schemas::Status {
    for (const auto& s : in.sites) {
      if (auto st = in.first_start(*s, movable.count(s->id) > 0, picker); !st) return st;
    }
    return schemas::Ok{};
  });
  if (!started) return started.error();

  std::vector<LinkProbe> probes;
  std::vector<const tiers::Site*> bridged;
  for (const tiers::Site& s : hierarchy->topology().sites()) {
    if (s.is_root()) continue;
    {
      std::lock_guard lock(in.mu);
      probes.push_back(in.link_probe_of(s));
    }
    bridged.push_back(&s);
  }
  const auto left = std::max(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()), milliseconds(0));
  const std::vector<bool> connected = wait_links_connected(probes, left);
  for (std::size_t i = 0; i < bridged.size(); ++i) {
    if (connected[i]) continue;
    const tiers::Site& s = *bridged[i];
    std::string tail;
    {
      std::lock_guard lock(in.mu);
      tail = in.log_tail(*in.find(s.id()));
    }
    return Error{"", "site '" + s.id() + "': its bridge to '" + *s.spec.parent +
                         "' did not report connected within " + std::to_string(in.options.ready_timeout.count()) +
                         " ms\n--- tail of its log ---\n" + tail};
  }
  return hierarchy;
}

const tiers::Topology& Hierarchy::topology() const {
  std::lock_guard lock(impl_->mu);
  return *impl_->topology;
}

std::uint16_t Hierarchy::port(const std::string& site) const {
  std::lock_guard lock(impl_->mu);
  const auto* s = impl_->find(site);
  return s != nullptr ? s->port : std::uint16_t{0};
}

std::string Hierarchy::uri(const std::string& site) const {
  std::lock_guard lock(impl_->mu);
  return impl_->uri_of(site);
}

std::filesystem::path Hierarchy::site_dir(const std::string& site) const {
  std::lock_guard lock(impl_->mu);
  const auto* s = impl_->find(site);
  return s != nullptr ? s->dir : fs::path();
}

pid_t Hierarchy::pid(const std::string& site) const {
  std::lock_guard lock(impl_->mu);
  const auto* s = impl_->find(site);
  return s != nullptr ? s->pid : -1;
}

void Hierarchy::kill(const std::string& site) {
  impl_->run([&] {
    Impl::SiteProc* s = nullptr;
    {
      std::lock_guard lock(impl_->mu);
      s = impl_->find(site);
    }
    if (s == nullptr || s->process.pid() <= 0) return;
    const pid_t old = s->process.pid();
    s->process.kill();
    impl_->emit({site, "SIGKILLed on request (" + s->process.describe_last_exit() + ")", "broker_killed", old, "warn"});
    impl_->schedule_restart(*s);
  });
}

void Hierarchy::stop(const std::string& site) {
  impl_->run([&] {
    Impl::SiteProc* s = nullptr;
    {
      std::lock_guard lock(impl_->mu);
      s = impl_->find(site);
    }
    if (s != nullptr) impl_->stop_site(*s, "stopped on request (SIGTERM); held down");
  });
}

void Hierarchy::start_site(const std::string& site) {
  impl_->run([&] {
    Impl::SiteProc* s = nullptr;
    {
      std::lock_guard lock(impl_->mu);
      s = impl_->find(site);
    }
    if (s == nullptr) return;
    s->held = false;
    if (s->process.pid() > 0) return;
    s->restart_at.reset();
    s->failures = 0;
    impl_->try_restart(*s, "broker_started");
  });
}

bool Hierarchy::wait_link(const std::string& site, std::chrono::milliseconds timeout) const {
  // First until the supervisor has (re)started the broker, so that pid(site) is current
  // once this returns: a restarted broker can report its link before the supervisor
  // has finished checking that it is ready.
  const auto deadline = Clock::now() + timeout;
  {
    std::unique_lock lock(impl_->mu);
    const bool running = impl_->state_changed.wait_until(lock, deadline, [&] {
      const auto* s = impl_->find(site);
      return s == nullptr || s->state == "running";
    });
    if (!running || impl_->find(site) == nullptr) return false;
  }
  LinkProbe probe;
  {
    std::lock_guard lock(impl_->mu);
    const tiers::Site* s = impl_->topology->find(site);
    if (s == nullptr) return false;
    probe = impl_->link_probe_of(*s);
  }
  const auto left = std::max(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()), milliseconds(0));
  return wait_link_connected(probe, left);
}

std::map<std::string, LinkState> Hierarchy::link_states() const {
  std::vector<LinkProbe> probes;
  {
    std::lock_guard lock(impl_->mu);
    for (const tiers::Site& s : impl_->topology->sites()) {
      if (!s.is_root()) probes.push_back(impl_->link_probe_of(s));
    }
  }
  const std::vector<LinkState> states = read_link_states(probes, milliseconds(5'000));
  std::map<std::string, LinkState> out;
  for (std::size_t i = 0; i < probes.size(); ++i) out[probes[i].site_id] = states[i];
  return out;
}

void Hierarchy::write_state_file() const {
  impl_->run([this] {
    {
      std::lock_guard lock(impl_->mu);
      impl_->keep_state_file = true;
    }
    impl_->write_state();
  });
}

Result<ReloadSummary> Hierarchy::reload(const tiers::Topology& next) {
  if (auto refused = refuse_wireguard(next)) return *refused;
  return impl_->run([&]() -> Result<ReloadSummary> {
    Impl& in = *impl_;
    const PortPolicy policy = in.options.ports;
    // Ports: a site keeps its port unless the new topology names another non-zero one.
    std::set<std::uint16_t> taken;
    for (const tiers::Site& s : next.sites()) {
      if (policy != PortPolicy::free_for_all && s.spec.listener.port != 0) taken.insert(s.spec.listener.port);
    }
    for (const auto& s : in.sites) taken.insert(s->port);
    PortPicker picker(taken);
    tiers::TopologySpec spec = next.spec();
    for (tiers::SiteSpec& s : spec.sites) {
      const Impl::SiteProc* current = nullptr;
      {
        std::lock_guard lock(in.mu);
        current = in.find(s.id);
      }
      const bool free = policy == PortPolicy::free_for_all || s.listener.port == 0;
      if (current != nullptr && free) {
        s.listener.port = current->port;
      } else if (free) {
        if (policy == PortPolicy::as_configured) {
          return Error{"", "site '" + s.id + "': has no port (PortPolicy::as_configured needs one for every site)"};
        }
        auto port = picker.pick();
        if (!port) return port.error();
        s.listener.port = *port;
      }
    }
    auto built = tiers::Topology::build(std::move(spec));
    if (!built) return built.error();

    ReloadSummary summary;
    // Removed sites first, children before parents.
    for (auto it = in.sites.rbegin(); it != in.sites.rend(); ++it) {
      if (built->find((*it)->id) == nullptr) {
        in.stop_site(**it, "removed from the topology (SIGTERM)");
        summary.removed.push_back((*it)->id);
      }
    }
    for (const std::string& id : summary.removed) in.emit({id, "removed from the topology", "site_removed"});
    std::vector<std::unique_ptr<Impl::SiteProc>> gone;  // destroyed after the lock
    {
      // Readers (pid(), port(), ...) walk `sites` under mu: rebuild it in one go.
      std::lock_guard lock(in.mu);
      std::vector<std::unique_ptr<Impl::SiteProc>> kept;
      for (auto& s : in.sites) {
        (built->find(s->id) != nullptr ? kept : gone).push_back(std::move(s));
      }
      in.sites.clear();
      in.topology = std::make_unique<tiers::Topology>(std::move(built).value());
      for (const tiers::Site& site : in.topology->sites()) {
        auto it = std::find_if(kept.begin(), kept.end(), [&](const auto& p) { return p && p->id == site.id(); });
        if (it != kept.end()) {
          in.sites.push_back(std::move(*it));
        } else {
          auto proc = std::make_unique<Impl::SiteProc>();
          proc->id = site.id();
          proc->dir = in.options.run_dir / site.id();
          proc->held = true;  // started below
          in.sites.push_back(std::move(proc));
        }
        in.sites.back()->port = site.spec.listener.port;
      }
    }
    // Parents first, so a restarted child finds its parent on the new address.
    for (const auto& s : in.sites) {
      const bool fresh = s->conf.empty() && s->process.pid() <= 0 && s->held;
      const std::string old_conf = s->conf;
      const std::string old_acl = s->acl;
      if (auto st = in.render_site(*s); !st) return Error{"", "site '" + s->id + "': " + st.error().message()};
      const TlsContents tls = in.tls_contents(*s);
      const bool listener_tls_changed = tls.listener != s->tls.listener;
      if (fresh) {
        s->held = false;
        in.try_restart(*s, "broker_started");
        summary.started.push_back(s->id);
      } else if (s->conf != old_conf || tls.bridge != s->tls.bridge) {
        summary.restarted.push_back(s->id);
        if (s->conf != old_conf) {
          in.emit({s->id, "rendered mosquitto.conf changed; bridges reload only on restart", "config_changed"});
        } else {
          in.emit({s->id, "the bridge's certificate, key or CA changed; a bridge reads them only when it connects",
                   "bridge_tls_changed"});
        }
        if (!s->held) {
          if (s->process.pid() > 0) s->process.stop(kStopTimeout);
          s->restart_at.reset();
          s->failures = 0;
          in.try_restart(*s, "broker_restarted");
        }
      } else if (s->acl != old_acl || listener_tls_changed) {
        if (s->acl != old_acl) summary.acl_reloaded.push_back(s->id);
        if (listener_tls_changed) summary.tls_reloaded.push_back(s->id);
        s->tls = tls;
        if (s->process.signal(SIGHUP)) {
          if (s->acl != old_acl) {
            in.emit({s->id, "ACL changed; SIGHUP (the ACL plugin reloads its file on SIGHUP)", "acl_reloaded",
                     s->process.pid()});
          }
          if (listener_tls_changed) {
            in.emit({s->id,
                     "listener certificate, key, CA or CRL changed; SIGHUP (Mosquitto reads them again for new "
                     "connections)",
                     "tls_reloaded", s->process.pid()});
          }
        }
      }
    }
    in.refresh_state_file();
    return summary;
  });
}

}  // namespace nova::bridge
