// MetricsCollector: see metrics.h for what each value means and what a sample costs.
//
// The per-sample path (Impl::sample and the read_* functions it calls) must not
// allocate: it parses views into reused buffers, updates counters in place and writes
// gauges through pointers into the `extra` map that only scan() builds.
#include "nova/agent/metrics.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace nova::agent {
namespace {

namespace fs = std::filesystem;
using schemas::Error;
using schemas::MetricSample;
using schemas::Timestamp;

constexpr std::size_t kMaxExtra = 256;       // the codec's limit on "extra"
constexpr std::size_t kFixedGauges = 20;     // cpu.* 7, mem 3, disk 2, load 2, throttle 2, self 2, power 2
constexpr std::size_t kMaxKeyBytes = 64;     // topics::kMaxIdBytes: a gauge name is an Id
constexpr std::uint64_t kSectorBytes = 512;  // /proc/diskstats counts 512-byte sectors always
constexpr int kArphrdLoopback = 772;         // /sys/class/net/<if>/type of loopback devices

// --- files -----------------------------------------------------------------------------

// A file opened once and re-read from offset 0 with pread on every sample. /proc and
// /sys regenerate their content on each read from offset 0, so this sees fresh values
// without the open/close pair per read (and without the allocation an ifstream costs).
class File {
 public:
  File() = default;
  explicit File(const fs::path& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {}
  File(File&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  File& operator=(File&& other) noexcept {
    if (this != &other) {
      close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~File() { close(); }

  bool is_open() const { return fd_ >= 0; }

  // The whole file (up to `limit` bytes) in `buf`, which grows when the file does not
  // fit: during the first samples only, unless the file later grows past its capacity.
  // nullopt when the read fails (e.g. a sensor that is asleep answers EIO/ENODATA).
  std::optional<std::string_view> read(std::vector<char>& buf, std::size_t limit = 1u << 22) const {
    if (fd_ < 0) return std::nullopt;
    if (buf.empty()) buf.resize(4096);
    std::size_t n = 0;
    for (;;) {
      if (n == buf.size()) {
        if (n >= limit) break;
        buf.resize(std::min(limit, buf.size() * 2));
      }
      const ssize_t r = ::pread(fd_, buf.data() + n, buf.size() - n, static_cast<off_t>(n));
      if (r < 0) {
        if (errno == EINTR) continue;
        return std::nullopt;
      }
      if (r == 0) break;
      n += static_cast<std::size_t>(r);
    }
    return std::string_view(buf.data(), n);
  }

  // A short sysfs attribute (one value, well under a page): one pread, no buffer growth.
  template <std::size_t N>
  std::optional<std::string_view> read_small(std::array<char, N>& buf) const {
    if (fd_ < 0) return std::nullopt;
    ssize_t r = 0;
    do {
      r = ::pread(fd_, buf.data(), buf.size(), 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return std::nullopt;
    return std::string_view(buf.data(), static_cast<std::size_t>(r));
  }

 private:
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

// --- parsing ---------------------------------------------------------------------------

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Splits text into whitespace-separated fields, one at a time.
class Fields {
 public:
  explicit Fields(std::string_view text) : rest_(text) {}
  std::string_view next() {
    std::size_t i = 0;
    while (i < rest_.size() && is_space(rest_[i])) ++i;
    std::size_t j = i;
    while (j < rest_.size() && !is_space(rest_[j])) ++j;
    const std::string_view field = rest_.substr(i, j - i);
    rest_.remove_prefix(j);
    return field;
  }
  std::optional<std::uint64_t> next_u64();
  void skip(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) next();
  }

 private:
  std::string_view rest_;
};

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<std::int64_t> parse_i64(std::string_view s) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<std::uint64_t> Fields::next_u64() {
  return parse_u64(next());
}

// "1.45" -> 1.45: the load averages are always written as digits, a dot and two digits.
std::optional<double> parse_decimal(std::string_view s) {
  const std::size_t dot = s.find('.');
  const auto whole = parse_u64(s.substr(0, dot));
  if (!whole) return std::nullopt;
  double v = static_cast<double>(*whole);
  if (dot != std::string_view::npos) {
    double scale = 0.1;
    for (const char c : s.substr(dot + 1)) {
      if (c < '0' || c > '9') return std::nullopt;
      v += scale * (c - '0');
      scale /= 10;
    }
  }
  return v;
}

// Calls f(line) for each line of text.
template <class F>
void for_each_line(std::string_view text, F&& f) {
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    f(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// The kB value of "<key>: <n> kB" lines of /proc/meminfo.
struct MemInfo {
  std::optional<std::uint64_t> total, free, available, buffers, cached, swap_total, swap_free;
};

MemInfo parse_meminfo(std::string_view text) {
  MemInfo m;
  for_each_line(text, [&m](std::string_view line) {
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return;
    const std::string_view key = line.substr(0, colon);
    Fields f(line.substr(colon + 1));
    const auto value = f.next_u64();
    if (key == "MemTotal")
      m.total = value;
    else if (key == "MemFree")
      m.free = value;
    else if (key == "MemAvailable")
      m.available = value;
    else if (key == "Buffers")
      m.buffers = value;
    else if (key == "Cached")
      m.cached = value;
    else if (key == "SwapTotal")
      m.swap_total = value;
    else if (key == "SwapFree")
      m.swap_free = value;
  });
  return m;
}

// --- values ----------------------------------------------------------------------------

double finite_or_zero(double v) {
  return std::isfinite(v) ? v : 0.0;
}
double clamp_pct(double v) {
  return std::clamp(finite_or_zero(v), 0.0, 100.0);
}
double non_negative(double v) {
  return std::max(finite_or_zero(v), 0.0);
}

double pct(double part, double whole) {
  return whole > 0 ? clamp_pct(100.0 * part / whole) : 0.0;
}

// A monotonic kernel counter: the increment since the previous reading, 0 on the first
// reading and when the counter went backwards (reset, wrap, or iowait's jitter).
struct Counter {
  std::uint64_t prev = 0;
  bool seen = false;

  std::uint64_t advance(std::uint64_t now) {
    const std::uint64_t d = (seen && now >= prev) ? now - prev : 0;
    prev = now;
    seen = true;
    return d;
  }
};

// Replaces characters a topic Id cannot hold with '_' and caps the length.
std::string sanitize(std::string_view name, std::size_t max_bytes) {
  std::string out(name.substr(0, max_bytes));
  for (char& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) c = '_';
  }
  if (out.empty()) out = "_";
  return out;
}

// The number at the end of a name such as "thermal_zone12" or "cpu3", if it has one.
std::optional<std::uint64_t> trailing_number(std::string_view name, std::string_view prefix) {
  if (name.size() <= prefix.size() || name.substr(0, prefix.size()) != prefix) return std::nullopt;
  return parse_u64(name.substr(prefix.size()));
}

std::optional<std::string> read_text(const fs::path& path) {
  File f(path);
  std::array<char, 256> buf{};
  const auto text = f.read_small(buf);
  if (!text) return std::nullopt;
  return std::string(trim(*text));
}

std::vector<fs::path> list_dir(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    out.push_back(it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool path_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// --- tracked devices -------------------------------------------------------------------

struct Interface {
  std::string name;
  Counter rx, tx;
  double* rx_gauge = nullptr;  // null beyond max_interface_gauges
  double* tx_gauge = nullptr;
};

struct Disk {
  std::string name;
  Counter read, write;  // sectors
};

struct Zone {
  std::uint64_t number = 0;  // N of thermal_zoneN
  std::string type;
  File temp;  // millidegrees C
  double* gauge = nullptr;
};

enum class ThrottleKind { core, package };

struct ThrottleCounter {
  ThrottleKind kind = ThrottleKind::core;
  File file;
  Counter count;
};

struct Supply {
  File power;    // uW
  File current;  // uA
  File voltage;  // uV
};

// What says whether the node runs on its battery: mains-type supplies' "online", and
// batteries' "capacity" (%) and "status" (Charging, Discharging, Full, Not charging).
struct PowerState {
  std::vector<File> mains_online;
  std::vector<File> battery_capacity;
  std::vector<File> battery_status;
};

struct CpuTimes {
  // user+nice, system, idle, iowait, irq, softirq, steal (guest time is inside user)
  std::array<Counter, 7> fields;
};

}  // namespace

// ---------------------------------------------------------------------------------------

struct MetricsCollector::Impl {
  CollectorOptions options;

  File stat, meminfo, loadavg, netdev, diskstats, self_stat, self_statm;
  std::vector<char> buf;  // one read buffer, reused by every file

  std::vector<Interface> interfaces;
  std::size_t interfaces_seen = 0;  // in /proc/net/dev at the last scan, loopback included
  std::vector<Disk> disks;
  std::vector<Zone> zones;
  std::vector<ThrottleCounter> throttles;
  std::vector<Supply> supplies;
  PowerState power_state;
  File rpi_throttled;  // Raspberry Pi firmware flags, hex

  std::string statvfs_path;  // data_path or its nearest existing ancestor

  CpuTimes cpu;
  Counter self_ticks;
  double ticks_per_s = 100;
  double page_kb = 4;

  bool scan_due = true;
  std::uint64_t samples_since_scan = 0;
  std::optional<Timestamp> prev_ts;

  MetricSample s;
  struct Gauges {
    double *cpu_user = nullptr, *cpu_system = nullptr, *cpu_iowait = nullptr, *cpu_irq = nullptr,
           *cpu_softirq = nullptr, *cpu_steal = nullptr, *cpu_idle = nullptr;
    double *mem_available_mb = nullptr, *mem_cached_mb = nullptr, *swap_used_pct = nullptr;
    double *disk_read_bps = nullptr, *disk_write_bps = nullptr;
    double *load5 = nullptr, *load15 = nullptr;
    double *throttle_core = nullptr, *throttle_package = nullptr;
    double *self_cpu_pct = nullptr, *self_rss_kb = nullptr;
    double *power_on_battery = nullptr, *power_battery_pct = nullptr;
  } g;

  // --- scanning (allocates) ---

  void scan();
  void scan_interfaces();
  void scan_disks();
  void scan_zones();
  void scan_throttles();
  void scan_supplies();
  void build_extra();

  // --- sampling (must not allocate) ---

  void sample(Timestamp now);
  void read_cpu();
  void read_memory();
  void read_disk_usage();
  void read_load();
  void read_net(double elapsed_s);
  void read_diskio(double elapsed_s);
  void read_thermal();
  void read_throttle();
  void read_power();
  void read_power_state();
  void read_self(double elapsed_s);

  static void set(double* gauge, double v) {
    if (gauge != nullptr) *gauge = finite_or_zero(v);
  }
};

void MetricsCollector::Impl::scan() {
  scan_interfaces();
  scan_disks();
  scan_zones();
  scan_throttles();
  scan_supplies();
  rpi_throttled = File(options.sys_root / "devices/platform/soc/soc:firmware/get_throttled");

  // statvfs needs an existing path; the outbox directory may not exist yet.
  fs::path p = options.data_path;
  while (!path_exists(p) && p.has_relative_path()) p = p.parent_path();
  statvfs_path = p.string();

  build_extra();
  scan_due = false;
  samples_since_scan = 0;
}

void MetricsCollector::Impl::scan_interfaces() {
  std::vector<Interface> found;
  interfaces_seen = 0;
  const auto text = netdev.read(buf);
  if (text) {
    for_each_line(*text, [&](std::string_view line) {
      const std::size_t colon = line.find(':');
      if (colon == std::string_view::npos) return;  // the two header lines
      const std::string name(trim(line.substr(0, colon)));
      if (name.empty()) return;
      ++interfaces_seen;
      // Loopback by device type (any name), or by name when sysfs does not say.
      const auto type = read_text(options.sys_root / "class/net" / name / "type");
      const bool loopback = type ? parse_i64(*type) == kArphrdLoopback : name == "lo";
      if (loopback) return;
      Interface iface;
      iface.name = name;
      // Keep the counters of interfaces seen before, so a re-scan does not zero a rate.
      for (const Interface& old : interfaces) {
        if (old.name == name) {
          iface.rx = old.rx;
          iface.tx = old.tx;
        }
      }
      found.push_back(std::move(iface));
    });
  }
  interfaces = std::move(found);
}

void MetricsCollector::Impl::scan_disks() {
  std::vector<Disk> found;
  // Whole disks are the entries of /sys/block with a "device"; partitions live below
  // their disk, and loop, zram, dm and md devices have no "device".
  for (const fs::path& entry : list_dir(options.sys_root / "block")) {
    if (!path_exists(entry / "device")) continue;
    Disk d;
    d.name = entry.filename().string();
    for (const Disk& old : disks) {
      if (old.name == d.name) {
        d.read = old.read;
        d.write = old.write;
      }
    }
    found.push_back(std::move(d));
  }
  disks = std::move(found);
}

void MetricsCollector::Impl::scan_zones() {
  std::vector<Zone> found;
  for (const fs::path& entry : list_dir(options.sys_root / "class/thermal")) {
    const auto number = trailing_number(entry.filename().string(), "thermal_zone");
    if (!number) continue;
    Zone z;
    z.number = *number;
    z.temp = File(entry / "temp");
    std::array<char, 64> probe{};
    // Unreadable now, or a sentinel for an absent sensor: try again at the next scan.
    const auto t = z.temp.read_small(probe);
    const auto milli = t ? parse_i64(trim(*t)) : std::nullopt;
    if (!milli || *milli < -100'000 || *milli > 250'000) continue;
    z.type = read_text(entry / "type").value_or("");
    found.push_back(std::move(z));
  }
  std::sort(found.begin(), found.end(),
            [](const Zone& a, const Zone& b) { return a.number < b.number; });
  zones = std::move(found);
}

void MetricsCollector::Impl::scan_throttles() {
  std::vector<ThrottleCounter> found;
  for (const fs::path& cpu_dir : list_dir(options.sys_root / "devices/system/cpu")) {
    if (!trailing_number(cpu_dir.filename().string(), "cpu")) continue;
    for (const auto& [kind, file] : {std::pair{ThrottleKind::core, "core_throttle_count"},
                                     std::pair{ThrottleKind::package, "package_throttle_count"}}) {
      File f(cpu_dir / "thermal_throttle" / file);
      if (!f.is_open()) continue;
      ThrottleCounter t;
      t.kind = kind;
      t.file = std::move(f);
      // Counters restart at 0 deltas after a re-scan: a re-scan every minute loses at
      // most the events of one interval, and keeping them would need matching by path.
      found.push_back(std::move(t));
    }
  }
  throttles = std::move(found);
}

void MetricsCollector::Impl::scan_supplies() {
  std::vector<Supply> found;
  PowerState state;
  for (const fs::path& entry : list_dir(options.sys_root / "class/power_supply")) {
    const std::string type(trim(read_text(entry / "type").value_or("")));
    if (type == "Battery") {
      if (File f(entry / "capacity"); f.is_open()) state.battery_capacity.push_back(std::move(f));
      if (File f(entry / "status"); f.is_open()) state.battery_status.push_back(std::move(f));
    } else if (type == "Mains" || type.starts_with("USB")) {
      if (File f(entry / "online"); f.is_open()) state.mains_online.push_back(std::move(f));
    }
    Supply supply;
    supply.power = File(entry / "power_now");
    if (!supply.power.is_open()) {
      supply.current = File(entry / "current_now");
      supply.voltage = File(entry / "voltage_now");
      if (!supply.current.is_open() || !supply.voltage.is_open()) continue;
    }
    found.push_back(std::move(supply));
  }
  supplies = std::move(found);
  power_state = std::move(state);
}

void MetricsCollector::Impl::build_extra() {
  s.extra.clear();
  g = Gauges{};
  auto add = [this](const std::string& key) -> double* {
    auto [it, inserted] = s.extra.emplace(key, 0.0);
    return inserted ? &it->second : nullptr;
  };
  g.cpu_user = add("cpu.user");
  g.cpu_system = add("cpu.system");
  g.cpu_iowait = add("cpu.iowait");
  g.cpu_irq = add("cpu.irq");
  g.cpu_softirq = add("cpu.softirq");
  g.cpu_steal = add("cpu.steal");
  g.cpu_idle = add("cpu.idle");
  if (meminfo.is_open()) {
    g.mem_available_mb = add("mem.available_mb");
    g.mem_cached_mb = add("mem.cached_mb");
    g.swap_used_pct = add("swap.used_pct");
  }
  if (diskstats.is_open() && !disks.empty()) {
    g.disk_read_bps = add("disk.read_bps");
    g.disk_write_bps = add("disk.write_bps");
  }
  if (loadavg.is_open()) {
    g.load5 = add("load5");
    g.load15 = add("load15");
  }
  if (!throttles.empty()) {
    g.throttle_core = add("throttle.core_events");
    g.throttle_package = add("throttle.package_events");
  }
  if (self_stat.is_open()) g.self_cpu_pct = add("self.cpu_pct");
  if (self_statm.is_open()) g.self_rss_kb = add("self.rss_kb");
  if (!power_state.battery_capacity.empty() || !power_state.battery_status.empty()) {
    g.power_on_battery = add("power.on_battery");
    if (!power_state.battery_capacity.empty()) g.power_battery_pct = add("power.battery_pct");
  }

  // Per-interface gauges; a name that sanitizes onto another's gets its position added.
  std::size_t n = 0;
  for (std::size_t i = 0; i < interfaces.size(); ++i) {
    Interface& iface = interfaces[i];
    if (n == options.max_interface_gauges) break;
    std::string id = sanitize(iface.name, kMaxKeyBytes - 16);
    if (s.extra.count("net." + id + ".rx_bps") != 0) id += "_" + std::to_string(i);
    iface.rx_gauge = add("net." + id + ".rx_bps");
    iface.tx_gauge = add("net." + id + ".tx_bps");
    ++n;
  }

  // Per-zone gauges: the type when it is unique, else thermal_zoneN.
  n = 0;
  for (Zone& z : zones) {
    if (n == options.max_thermal_gauges) break;
    const auto same_type =
        std::count_if(zones.begin(), zones.end(), [&z](const Zone& o) { return o.type == z.type; });
    std::string key = "temp." + sanitize(z.type, kMaxKeyBytes - 5);
    if (z.type.empty() || same_type > 1 || s.extra.count(key) != 0) {
      key = "temp.thermal_zone" + std::to_string(z.number);
    }
    z.gauge = add(key);
    ++n;
  }
}

// --- sampling --------------------------------------------------------------------------

void MetricsCollector::Impl::sample(Timestamp now) {
  if (scan_due || (options.rescan_every != 0 && samples_since_scan >= options.rescan_every)) {
    scan();
  }
  ++samples_since_scan;

  // Rates need a previous sample and time that moved forward.
  const double elapsed_s =
      (prev_ts && now > *prev_ts) ? static_cast<double>(now - *prev_ts) / 1000.0 : 0.0;
  prev_ts = now;
  s.ts = now;

  read_cpu();
  read_memory();
  read_disk_usage();
  read_load();
  read_net(elapsed_s);
  read_diskio(elapsed_s);
  read_thermal();
  read_throttle();
  read_power();
  read_power_state();
  read_self(elapsed_s);
}

void MetricsCollector::Impl::read_cpu() {
  // Only the first line ("cpu  user nice system idle iowait irq softirq steal guest
  // guest_nice") is needed: read one page, not the per-CPU and interrupt lines.
  const auto text = stat.read(buf, 4096);
  if (!text || text->substr(0, 4) != "cpu ") return;
  Fields f(text->substr(0, text->find('\n')));
  f.next();
  std::array<std::uint64_t, 8> v{};  // user nice system idle iowait irq softirq steal
  for (std::uint64_t& x : v) x = f.next_u64().value_or(0);
  const std::array<std::uint64_t, 7> now{v[0] + v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
  std::array<double, 7> d{};
  double total = 0;
  for (std::size_t i = 0; i < now.size(); ++i) {
    d[i] = static_cast<double>(cpu.fields[i].advance(now[i]));
    total += d[i];
  }
  // Busy is everything but idle and iowait; the states sum to 100.
  s.cpu_pct = pct(total - d[2] - d[3], total);
  set(g.cpu_user, pct(d[0], total));
  set(g.cpu_system, pct(d[1], total));
  set(g.cpu_idle, pct(d[2], total));
  set(g.cpu_iowait, pct(d[3], total));
  set(g.cpu_irq, pct(d[4], total));
  set(g.cpu_softirq, pct(d[5], total));
  set(g.cpu_steal, pct(d[6], total));
}

void MetricsCollector::Impl::read_memory() {
  const auto text = meminfo.read(buf);
  if (!text) return;
  const MemInfo m = parse_meminfo(*text);
  const double total = static_cast<double>(m.total.value_or(0));
  // MemAvailable exists since Linux 3.14; before, free + buffers + page cache is close.
  const double available = static_cast<double>(
      m.available.value_or(m.free.value_or(0) + m.buffers.value_or(0) + m.cached.value_or(0)));
  s.mem_pct = pct(total - std::min(available, total), total);
  set(g.mem_available_mb, available / 1024.0);
  set(g.mem_cached_mb, static_cast<double>(m.cached.value_or(0)) / 1024.0);
  const double swap_total = static_cast<double>(m.swap_total.value_or(0));
  const double swap_free = static_cast<double>(m.swap_free.value_or(0));
  set(g.swap_used_pct, pct(swap_total - std::min(swap_free, swap_total), swap_total));
}

void MetricsCollector::Impl::read_disk_usage() {
  struct statvfs v {};
  if (statvfs_path.empty() || ::statvfs(statvfs_path.c_str(), &v) != 0) {
    s.disk_pct = 0;
    return;
  }
  // As df: the blocks in use over those in use plus those an unprivileged user may
  // still take (the root reserve is neither).
  const double used = static_cast<double>(v.f_blocks - std::min(v.f_bfree, v.f_blocks));
  const double avail = static_cast<double>(v.f_bavail);
  s.disk_pct = pct(used, used + avail);
}

void MetricsCollector::Impl::read_load() {
  const auto text = loadavg.read(buf);
  if (!text) return;
  Fields f(*text);
  s.load1 = non_negative(parse_decimal(f.next()).value_or(0));
  set(g.load5, non_negative(parse_decimal(f.next()).value_or(0)));
  set(g.load15, non_negative(parse_decimal(f.next()).value_or(0)));
}

void MetricsCollector::Impl::read_net(double elapsed_s) {
  double rx_total = 0, tx_total = 0;
  const auto text = netdev.read(buf);
  std::size_t hint = 0;  // /proc/net/dev keeps its order: try the next interface first
  std::size_t listed = 0;
  if (text) {
    for_each_line(*text, [&](std::string_view line) {
      const std::size_t colon = line.find(':');
      if (colon == std::string_view::npos) return;
      const std::string_view name = trim(line.substr(0, colon));
      if (name.empty()) return;
      ++listed;
      Interface* iface = nullptr;
      for (std::size_t k = 0; k < interfaces.size(); ++k) {
        Interface& cand = interfaces[(hint + k) % interfaces.size()];
        if (cand.name == name) {
          iface = &cand;
          hint = (hint + k + 1) % interfaces.size();
          break;
        }
      }
      if (iface == nullptr) return;  // loopback, or new since the last scan
      Fields f(line.substr(colon + 1));
      const auto rx = f.next_u64();
      f.skip(7);
      const auto tx = f.next_u64();
      if (!rx || !tx) return;
      const double drx = static_cast<double>(iface->rx.advance(*rx));
      const double dtx = static_cast<double>(iface->tx.advance(*tx));
      const double rx_bps = elapsed_s > 0 ? drx / elapsed_s : 0.0;
      const double tx_bps = elapsed_s > 0 ? dtx / elapsed_s : 0.0;
      set(iface->rx_gauge, rx_bps);
      set(iface->tx_gauge, tx_bps);
      rx_total += rx_bps;
      tx_total += tx_bps;
    });
  }
  s.net_rx_bps = non_negative(rx_total);
  s.net_tx_bps = non_negative(tx_total);
  // An interface came or went: pick it up at the next sample rather than in a minute.
  if (listed != interfaces_seen) scan_due = true;
}

void MetricsCollector::Impl::read_diskio(double elapsed_s) {
  if (disks.empty()) return;
  const auto text = diskstats.read(buf);
  if (!text) return;
  double read_bytes = 0, write_bytes = 0;
  for_each_line(*text, [&](std::string_view line) {
    Fields f(line);
    f.skip(2);  // major minor
    const std::string_view name = f.next();
    for (Disk& d : disks) {
      if (d.name != name) continue;
      // reads merged sectors_read ms_reading writes merged sectors_written
      f.skip(2);
      const auto sectors_read = f.next_u64();
      f.skip(3);
      const auto sectors_written = f.next_u64();
      if (!sectors_read || !sectors_written) return;
      read_bytes += static_cast<double>(d.read.advance(*sectors_read) * kSectorBytes);
      write_bytes += static_cast<double>(d.write.advance(*sectors_written) * kSectorBytes);
      return;
    }
  });
  set(g.disk_read_bps, elapsed_s > 0 ? read_bytes / elapsed_s : 0.0);
  set(g.disk_write_bps, elapsed_s > 0 ? write_bytes / elapsed_s : 0.0);
}

void MetricsCollector::Impl::read_thermal() {
  std::optional<double> hottest;
  for (Zone& z : zones) {
    std::array<char, 64> small{};
    const auto text = z.temp.read_small(small);
    if (!text) continue;
    const auto milli = parse_i64(trim(*text));
    if (!milli) continue;
    const double c = static_cast<double>(*milli) / 1000.0;
    // Drivers report sentinels such as -273.2 degC or 255 degC for absent sensors.
    if (!(c >= -100.0 && c <= 250.0)) continue;
    set(z.gauge, c);
    if (!hottest || c > *hottest) hottest = c;
  }
  s.temp_c = hottest;
}

void MetricsCollector::Impl::read_throttle() {
  std::optional<bool> throttled;
  if (!throttles.empty()) {
    std::uint64_t core = 0, package = 0;
    for (ThrottleCounter& t : throttles) {
      std::array<char, 32> small{};
      const auto text = t.file.read_small(small);
      const auto count = text ? parse_u64(trim(*text)) : std::nullopt;
      if (!count) continue;
      (t.kind == ThrottleKind::core ? core : package) += t.count.advance(*count);
    }
    set(g.throttle_core, static_cast<double>(core));
    set(g.throttle_package, static_cast<double>(package));
    throttled = core + package > 0;
  }
  if (rpi_throttled.is_open()) {
    std::array<char, 32> small{};
    const auto text = rpi_throttled.read_small(small);
    if (text) {
      std::string_view hex = trim(*text);
      if (hex.substr(0, 2) == "0x") hex.remove_prefix(2);
      std::uint64_t flags = 0;
      const auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), flags, 16);
      // Bits 1..3: frequency capped, throttled, soft temperature limit, all "now".
      if (ec == std::errc() && !hex.empty())
        throttled = throttled.value_or(false) || (flags & 0xe) != 0;
    }
  }
  s.throttled = throttled;
}

void MetricsCollector::Impl::read_power_state() {
  if (g.power_on_battery == nullptr) return;
  std::array<char, 32> a{};
  bool mains = false;
  for (const File& f : power_state.mains_online) {
    const auto text = f.read_small(a);
    if (text && trim(*text) == "1") mains = true;
  }
  bool discharging = false;
  for (const File& f : power_state.battery_status) {
    const auto text = f.read_small(a);
    if (text && trim(*text) == "Discharging") discharging = true;
  }
  set(g.power_on_battery, !mains && discharging ? 1.0 : 0.0);
  // The emptiest battery: the node stops when it does.
  std::optional<double> pct_left;
  for (const File& f : power_state.battery_capacity) {
    const auto text = f.read_small(a);
    const auto v = text ? parse_i64(trim(*text)) : std::nullopt;
    if (v && *v >= 0 && *v <= 100) pct_left = std::min(pct_left.value_or(100.0), static_cast<double>(*v));
  }
  set(g.power_battery_pct, pct_left.value_or(0.0));
}

void MetricsCollector::Impl::read_power() {
  std::optional<double> watts;
  for (const Supply& sup : supplies) {
    std::array<char, 32> a{}, b{};
    std::optional<double> w;
    if (sup.power.is_open()) {
      const auto text = sup.power.read_small(a);
      const auto uw = text ? parse_i64(trim(*text)) : std::nullopt;
      if (uw) w = std::abs(static_cast<double>(*uw)) / 1e6;
    } else {
      const auto ct = sup.current.read_small(a);
      const auto vt = sup.voltage.read_small(b);
      const auto ua = ct ? parse_i64(trim(*ct)) : std::nullopt;
      const auto uv = vt ? parse_i64(trim(*vt)) : std::nullopt;
      // Drivers sign current_now by direction (charging or discharging): use magnitude.
      if (ua && uv) w = std::abs(static_cast<double>(*ua) * static_cast<double>(*uv)) / 1e12;
    }
    if (w) watts = watts.value_or(0.0) + *w;
  }
  if (watts) {
    s.power_w = non_negative(*watts);
  } else {
    s.power_w.reset();
  }
}

void MetricsCollector::Impl::read_self(double elapsed_s) {
  if (const auto text = self_stat.read(buf)) {
    // "pid (comm) state ppid ..." where comm may hold spaces and parentheses: fields
    // are counted after the last ')'. utime and stime are fields 14 and 15.
    const std::size_t close = text->rfind(')');
    if (close != std::string_view::npos) {
      Fields f(text->substr(close + 1));
      f.skip(11);  // state .. cmajflt (fields 3..13)
      const auto utime = f.next_u64();
      const auto stime = f.next_u64();
      if (utime && stime) {
        const double d = static_cast<double>(self_ticks.advance(*utime + *stime));
        set(g.self_cpu_pct, elapsed_s > 0 ? 100.0 * d / ticks_per_s / elapsed_s : 0.0);
      }
    }
  }
  if (const auto text = self_statm.read(buf)) {
    Fields f(*text);
    f.next();  // size
    if (const auto resident = f.next_u64()) {
      set(g.self_rss_kb, static_cast<double>(*resident) * page_kb);
    }
  }
}

// ---------------------------------------------------------------------------------------

schemas::Result<std::unique_ptr<MetricsCollector>> MetricsCollector::open(
    const CollectorOptions& options) {
  if (kFixedGauges + 2 * options.max_interface_gauges + options.max_thermal_gauges > kMaxExtra) {
    return Error{"", "metrics: max_interface_gauges and max_thermal_gauges allow more than " +
                         std::to_string(kMaxExtra) + " extra gauges"};
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  const fs::path& proc = options.proc_root;
  impl->stat = File(proc / "stat");
  if (!impl->stat.is_open()) {
    const int err = errno;
    return Error{"", "metrics: cannot open " + (proc / "stat").string() + ": " +
                         std::generic_category().message(err)};
  }
  impl->meminfo = File(proc / "meminfo");
  impl->loadavg = File(proc / "loadavg");
  impl->netdev = File(proc / "net/dev");
  impl->diskstats = File(proc / "diskstats");
  impl->self_stat = File(proc / "self/stat");
  impl->self_statm = File(proc / "self/statm");
  if (const long t = ::sysconf(_SC_CLK_TCK); t > 0) impl->ticks_per_s = static_cast<double>(t);
  if (const long p = ::sysconf(_SC_PAGESIZE); p > 0)
    impl->page_kb = static_cast<double>(p) / 1024.0;
  impl->buf.resize(16 * 1024);
  impl->scan();
  return std::unique_ptr<MetricsCollector>(new MetricsCollector(std::move(impl)));
}

MetricsCollector::MetricsCollector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MetricsCollector::~MetricsCollector() = default;

const schemas::MetricSample& MetricsCollector::sample(schemas::Timestamp now) {
  impl_->sample(now);
  return impl_->s;
}

void MetricsCollector::rescan() {
  impl_->scan_due = true;
}

void MetricsCollector::set_data_path(const std::filesystem::path& path) {
  impl_->options.data_path = path;
  impl_->scan_due = true;
}

std::string MetricsCollector::describe() const {
  const Impl& m = *impl_;
  auto plural = [](std::size_t n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
  };
  std::string out = "cpu";
  if (m.meminfo.is_open()) out += " mem";
  out += " disk(" + m.options.data_path.string() + ")";
  if (m.loadavg.is_open()) out += " load";
  out += " net(" + plural(m.interfaces.size(), "interface", "interfaces") + ")";
  out += " diskio(" + plural(m.disks.size(), "disk", "disks") + ")";
  out += " thermal(" + plural(m.zones.size(), "zone", "zones") + ")";
  out += " throttle(";
  if (m.throttles.empty() && !m.rpi_throttled.is_open()) out += "none";
  if (!m.throttles.empty()) out += plural(m.throttles.size(), "counter", "counters");
  if (m.rpi_throttled.is_open()) out += m.throttles.empty() ? "rpi firmware" : ", rpi firmware";
  out += ") power(";
  out += m.supplies.empty() ? std::string("none") : plural(m.supplies.size(), "supply", "supplies");
  out += ")";
  if (m.self_stat.is_open()) out += " self";
  return out;
}

}  // namespace nova::agent
