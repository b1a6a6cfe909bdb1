// MetricsCollector against fixture trees written here (the parsing, exactly), against
// this machine's /proc and /sys (plausibility), and under a counting operator new (no
// allocation per sample after warm-up).
#include "nova/agent/metrics.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <new>
#include <string>

#include "alloc_count.h"

#include "nova/schemas/codec.h"
#include "nova/schemas/topic.h"

using namespace nova::agent;
using nova::schemas::MetricSample;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "nova-metrics-XXXXXX").string();
    path = ::mkdtemp(templ.data());
  }
  ~TempDir() { fs::remove_all(path); }
};

// Writes in place (truncate, same inode), as the kernel's files change under an open fd.
void write(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::trunc);
  out << text;
}

// A machine with two cores' worth of /proc, three interfaces besides loopback (one with
// a name that is not a valid id), a disk with a partition and a loop device, four thermal
// zones (two sharing a type, one reporting the sentinel of an absent sensor), throttle counters and
// two power supplies of both kinds.
struct Fixture {
  TempDir dir;
  fs::path proc = dir.path / "proc";
  fs::path sys = dir.path / "sys";

  // Counters the tests move forward between samples.
  std::uint64_t user = 1000, nice = 100, system = 500, idle = 8000, iowait = 200, irq = 50,
                softirq = 50, steal = 100;
  std::uint64_t eth_rx = 1'000'000, eth_tx = 500'000, wlan_rx = 10'000, wlan_tx = 20'000;
  std::uint64_t lo_rx = 7'000'000;
  std::uint64_t sda_read = 1000, sda_written = 2000, sda1_read = 999'999;
  std::uint64_t core_throttle = 5, package_throttle = 1;
  std::uint64_t self_utime = 10, self_stime = 5;
  std::string extra_netdev_line;

  Fixture() {
    write(proc / "meminfo",
          "MemTotal:        4000000 kB\n"
          "MemFree:          500000 kB\n"
          "MemAvailable:    1000000 kB\n"
          "Buffers:           10000 kB\n"
          "Cached:           204800 kB\n"
          "SwapCached:            0 kB\n"
          "SwapTotal:       1000000 kB\n"
          "SwapFree:         750000 kB\n");
    write(proc / "loadavg", "0.52 1.50 2.25 2/300 12345\n");
    write(proc / "self/statm", "5000 300 100 10 0 200 0\n");
    write(sys / "class/net/eth0/type", "1\n");
    write(sys / "class/net/lo/type", "772\n");
    write(sys / "class/net/br+lan/type", "1\n");
    fs::create_directories(sys / "block/sda/device");
    fs::create_directories(sys / "block/sda/sda1");
    fs::create_directories(sys / "block/loop0");
    write(sys / "class/thermal/thermal_zone0/type", "x86_pkg_temp\n");
    write(sys / "class/thermal/thermal_zone0/temp", "45000\n");
    write(sys / "class/thermal/thermal_zone1/type", "acpitz\n");
    write(sys / "class/thermal/thermal_zone1/temp", "61500\n");
    write(sys / "class/thermal/thermal_zone2/type", "acpitz\n");
    write(sys / "class/thermal/thermal_zone2/temp", "30000\n");
    write(sys / "class/thermal/thermal_zone3/type", "iwlwifi_1\n");
    write(sys / "class/thermal/thermal_zone3/temp", "-273200\n");
    write(sys / "class/power_supply/AC/online", "1\n");
    write(sys / "class/power_supply/BAT0/power_now", "7500000\n");    // 7.5 W
    write(sys / "class/power_supply/BAT1/current_now", "-500000\n");  // 0.5 A (discharging)
    write(sys / "class/power_supply/BAT1/voltage_now", "5000000\n");  // 5 V
    update();
  }

  // Rewrites every file whose content moves with time.
  void update() {
    write(proc / "stat", "cpu  " + std::to_string(user) + " " + std::to_string(nice) + " " +
                             std::to_string(system) + " " + std::to_string(idle) + " " +
                             std::to_string(iowait) + " " + std::to_string(irq) + " " +
                             std::to_string(softirq) + " " + std::to_string(steal) +
                             " 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 12345 0 0\n");
    write(proc / "net/dev",
          "Inter-|   Receive                                                |  Transmit\n"
          " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
          "drop fifo colls carrier compressed\n"
          "    lo: " +
              std::to_string(lo_rx) + " 10 0 0 0 0 0 0 " + std::to_string(lo_rx) +
              " 10 0 0 0 0 0 0\n"
              "  eth0:" +
              std::to_string(eth_rx) + "   1087    0    0    0     0          0         0 " +
              std::to_string(eth_tx) +
              "  966    0    0    0     0       0          0\n"
              "br+lan: " +
              std::to_string(wlan_rx) + " 1 0 0 0 0 0 0 " + std::to_string(wlan_tx) +
              " 1 0 0 0 0 0 0\n" + extra_netdev_line);
    write(proc / "diskstats",
          "   7       0 loop0 5 0 5555 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
          "   8       0 sda 100 10 " +
              std::to_string(sda_read) + " 50 200 20 " + std::to_string(sda_written) +
              " 80 0 100 130 0 0 0 0 0 0\n"
              "   8       1 sda1 90 10 " +
              std::to_string(sda1_read) + " 50 190 20 1 80 0 100 130 0 0 0 0 0 0\n");
    write(sys / "devices/system/cpu/cpu0/thermal_throttle/core_throttle_count",
          std::to_string(core_throttle) + "\n");
    write(sys / "devices/system/cpu/cpu0/thermal_throttle/package_throttle_count",
          std::to_string(package_throttle) + "\n");
    // comm with a space and a parenthesis: fields count from the last ')'.
    write(proc / "self/stat", "4242 (nova (agent) x) S 1 4242 4242 0 -1 4194304 101 0 0 0 " +
                                  std::to_string(self_utime) + " " + std::to_string(self_stime) +
                                  " 0 0 20 0 1 0 199868 3133440 382\n");
  }

  CollectorOptions options() const {
    CollectorOptions o;
    o.proc_root = proc;
    o.sys_root = sys;
    o.data_path = dir.path;
    return o;
  }
};

std::unique_ptr<MetricsCollector> open_collector(const CollectorOptions& o) {
  auto r = MetricsCollector::open(o);
  INFO((r ? "" : r.error().message()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

double extra(const MetricSample& s, const std::string& key) {
  const auto it = s.extra.find(key);
  INFO("gauge " << key);
  REQUIRE(it != s.extra.end());
  return it->second;
}

// Everything a consumer relies on: finite, in the codec's ranges, valid gauge names.
void check_valid(const MetricSample& s) {
  CHECK(s.cpu_pct >= 0);
  CHECK(s.cpu_pct <= 100);
  CHECK(s.mem_pct >= 0);
  CHECK(s.mem_pct <= 100);
  CHECK(s.disk_pct >= 0);
  CHECK(s.disk_pct <= 100);
  CHECK(s.load1 >= 0);
  CHECK(s.net_rx_bps >= 0);
  CHECK(s.net_tx_bps >= 0);
  if (s.temp_c) {
    CHECK(*s.temp_c >= -100);
    CHECK(*s.temp_c <= 250);
  }
  if (s.power_w) CHECK(*s.power_w >= 0);
  CHECK(s.extra.size() <= 256);
  for (const auto& [key, value] : s.extra) {
    INFO(key);
    CHECK(nova::topics::Id::valid(key));
    CHECK(std::isfinite(value));
  }
  // The codec accepts it in a batch, which checks every range again.
  nova::schemas::MetricsBatch batch;
  batch.position = {"node-1", "metrics", 1};
  batch.samples.push_back(s);
  const auto bytes = nova::schemas::encode_cbor(batch);
  const auto back = nova::schemas::decode_cbor<nova::schemas::MetricsBatch>(bytes);
  INFO((back ? "" : back.error().message()));
  REQUIRE(back.ok());
  CHECK(back->samples.size() == 1);
}

}  // namespace

TEST_CASE("a fixture tree is parsed exactly", "[metrics]") {
  Fixture f;
  auto c = open_collector(f.options());
  INFO(c->describe());
  CHECK(c->describe() ==
        "cpu mem disk(" + f.dir.path.string() +
            ") load net(2 interfaces) diskio(1 disk) thermal(3 zones) throttle(2 counters) "
            "power(2 supplies) self");

  // First sample: levels are read, every rate and "since the previous sample" % is 0.
  const MetricSample& first = c->sample(1'000'000);
  CHECK(first.ts == 1'000'000);
  CHECK(first.cpu_pct == 0);
  CHECK(extra(first, "cpu.idle") == 0);
  CHECK(first.mem_pct == Approx(75.0));  // (4000000 - 1000000) / 4000000
  CHECK(extra(first, "mem.available_mb") == Approx(1000000.0 / 1024));
  CHECK(extra(first, "mem.cached_mb") == Approx(200.0));
  CHECK(extra(first, "swap.used_pct") == Approx(25.0));
  CHECK(first.load1 == Approx(0.52));
  CHECK(extra(first, "load5") == Approx(1.5));
  CHECK(extra(first, "load15") == Approx(2.25));
  CHECK(first.net_rx_bps == 0);
  CHECK(extra(first, "net.eth0.rx_bps") == 0);
  CHECK(extra(first, "disk.read_bps") == 0);
  REQUIRE(first.temp_c.has_value());
  CHECK(*first.temp_c == Approx(61.5));  // the sentinel -273.2 of zone 3 is ignored
  CHECK(extra(first, "temp.x86_pkg_temp") == Approx(45.0));
  CHECK(extra(first, "temp.thermal_zone1") == Approx(61.5));  // acpitz twice: by number
  CHECK(extra(first, "temp.thermal_zone2") == Approx(30.0));
  CHECK(first.throttled == std::optional<bool>(false));
  REQUIRE(first.power_w.has_value());
  CHECK(*first.power_w == Approx(10.0));  // 7.5 W + 0.5 A * 5 V
  CHECK(extra(first, "self.rss_kb") ==
        Approx(300.0 * static_cast<double>(::sysconf(_SC_PAGESIZE)) / 1024));
  CHECK(first.disk_pct > 0);  // the real filesystem of the temp dir
  check_valid(first);

  // Two seconds later.
  f.user += 300;  // busy 300+100+100+100+0+100 = 700 of 1000 jiffies
  f.nice += 100;
  f.system += 100;
  f.idle += 200;
  f.iowait += 100;
  f.softirq += 0;
  f.irq += 100;
  f.steal += 100;
  f.eth_rx += 4000;
  f.eth_tx += 2000;
  f.wlan_rx += 1000;
  f.wlan_tx += 3000;
  f.lo_rx += 1'000'000;  // loopback never counts
  f.sda_read += 8;       // sectors: 8 * 512 = 4096 bytes
  f.sda_written += 16;
  f.sda1_read += 1'000;  // partitions never count
  f.core_throttle += 3;
  f.self_utime += static_cast<std::uint64_t>(::sysconf(_SC_CLK_TCK));  // one second of CPU
  f.update();
  const MetricSample& s = c->sample(1'002'000);
  CHECK(s.ts == 1'002'000);
  CHECK(s.cpu_pct == Approx(70.0));
  CHECK(extra(s, "cpu.user") == Approx(40.0));  // user + nice
  CHECK(extra(s, "cpu.system") == Approx(10.0));
  CHECK(extra(s, "cpu.idle") == Approx(20.0));
  CHECK(extra(s, "cpu.iowait") == Approx(10.0));
  CHECK(extra(s, "cpu.irq") == Approx(10.0));
  CHECK(extra(s, "cpu.softirq") == Approx(0.0));
  CHECK(extra(s, "cpu.steal") == Approx(10.0));
  CHECK(s.net_rx_bps == Approx(2500.0));  // (4000 + 1000) / 2 s
  CHECK(s.net_tx_bps == Approx(2500.0));  // (2000 + 3000) / 2 s
  CHECK(extra(s, "net.eth0.rx_bps") == Approx(2000.0));
  CHECK(extra(s, "net.eth0.tx_bps") == Approx(1000.0));
  CHECK(extra(s, "net.br_lan.rx_bps") == Approx(500.0));  // "br+lan" sanitized
  CHECK(extra(s, "net.br_lan.tx_bps") == Approx(1500.0));
  CHECK(s.extra.count("net.lo.rx_bps") == 0);
  CHECK(extra(s, "disk.read_bps") == Approx(2048.0));
  CHECK(extra(s, "disk.write_bps") == Approx(4096.0));
  CHECK(extra(s, "throttle.core_events") == 3);
  CHECK(extra(s, "throttle.package_events") == 0);
  CHECK(s.throttled == std::optional<bool>(true));
  CHECK(extra(s, "self.cpu_pct") == Approx(50.0));  // 1 s of CPU in 2 s
  check_valid(s);

  // The fixed gauges, 2 per interface and 1 per readable zone, nothing else.
  CHECK(s.extra.size() == 18 + 2 * 2 + 3);
}

TEST_CASE("counters that go backwards and time that stands still give 0, not garbage",
          "[metrics]") {
  Fixture f;
  auto c = open_collector(f.options());
  c->sample(5000);
  f.eth_rx -= 100;  // interface re-created: its counters restarted
  f.idle -= 10;     // iowait/idle jitter
  f.update();
  const MetricSample& s = c->sample(6000);
  CHECK(extra(s, "net.eth0.rx_bps") == 0);
  CHECK(s.net_rx_bps == 0);
  check_valid(s);

  f.eth_rx += 1000;
  f.update();
  const MetricSample& same_time = c->sample(6000);  // now did not advance
  CHECK(same_time.net_rx_bps == 0);
  CHECK(extra(same_time, "self.cpu_pct") == 0);
  f.eth_rx += 1000;
  f.update();
  CHECK(c->sample(7000).net_rx_bps == Approx(1000.0));  // from the baseline at 6000
}

TEST_CASE("an interface that appears is tracked from the following samples", "[metrics]") {
  Fixture f;
  auto c = open_collector(f.options());
  c->sample(1000);
  f.extra_netdev_line = "wg0: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n";  // no sysfs entry: not lo
  f.update();
  CHECK(c->sample(2000).extra.count("net.wg0.rx_bps") == 0);  // noticed, scanned next time
  f.extra_netdev_line = "wg0: 600 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n";
  f.update();
  CHECK(extra(c->sample(3000), "net.wg0.rx_bps") == 0);  // first reading: no rate yet
  f.extra_netdev_line = "wg0: 1600 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n";
  f.eth_rx += 500;
  f.update();
  const MetricSample& s = c->sample(4000);
  CHECK(extra(s, "net.wg0.rx_bps") == Approx(1000.0));
  CHECK(extra(s, "net.eth0.rx_bps") == Approx(500.0));  // kept its counters over the scan
  CHECK(s.net_rx_bps == Approx(1500.0));
}

TEST_CASE("missing files omit what they would provide", "[metrics]") {
  TempDir dir;
  write(dir.path / "proc/stat", "cpu  1 2 3 4 5 6 7 8 0 0\n");
  CollectorOptions o;
  o.proc_root = dir.path / "proc";
  o.sys_root = dir.path / "sys";               // does not exist at all
  o.data_path = dir.path / "not/yet/created";  // measured on its nearest existing ancestor
  auto c = open_collector(o);
  CHECK(c->describe() ==
        "cpu disk(" + o.data_path.string() +
            ") net(0 interfaces) diskio(0 disks) thermal(0 zones) throttle(none) power(none)");
  c->sample(1000);
  const MetricSample& s = c->sample(2000);
  CHECK_FALSE(s.temp_c.has_value());
  CHECK_FALSE(s.throttled.has_value());
  CHECK_FALSE(s.power_w.has_value());
  CHECK(s.mem_pct == 0);
  CHECK(s.disk_pct > 0);
  CHECK(s.extra.size() == 7);  // cpu.* only
  for (const auto& [key, value] : s.extra) CHECK(key.rfind("cpu.", 0) == 0);
  check_valid(s);
}

TEST_CASE("a root without stat is refused, and so are gauge caps beyond the codec's", "[metrics]") {
  TempDir dir;
  CollectorOptions o;
  o.proc_root = dir.path;
  auto r = MetricsCollector::open(o);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message(), Catch::Contains("stat"));

  CollectorOptions big;
  big.max_interface_gauges = 200;
  auto r2 = MetricsCollector::open(big);
  REQUIRE_FALSE(r2.ok());
  CHECK_THAT(r2.error().message(), Catch::Contains("256"));
}

TEST_CASE("this machine's /proc and /sys give plausible samples", "[metrics]") {
  auto c = open_collector(CollectorOptions{});
  // Printed so a CI log records what each machine offers (containers: no thermal zones).
  WARN("sources: " << c->describe());
  const MetricSample& first = c->sample(1'700'000'000'000);
  check_valid(first);
  CHECK(first.mem_pct > 0);
  CHECK(first.net_rx_bps == 0);
  const MetricSample& s = c->sample(1'700'000'001'000);
  CHECK(s.ts == 1'700'000'001'000);
  check_valid(s);
  CHECK(s.mem_pct > 0);
  CHECK(extra(s, "mem.available_mb") > 0);
  CHECK(extra(s, "self.rss_kb") > 0);
  CHECK(extra(s, "self.cpu_pct") >= 0);
  CHECK(extra(s, "load5") >= 0);
  double states = 0;
  for (const char* k : {"cpu.user", "cpu.system", "cpu.iowait", "cpu.irq", "cpu.softirq",
                        "cpu.steal", "cpu.idle"}) {
    states += extra(s, k);
  }
  CHECK((states == Approx(100.0) || states == 0));  // 0 when no jiffy passed in between
}

namespace {

std::size_t allocations_in_samples(MetricsCollector& c, nova::schemas::Timestamp& now, int n) {
  return allocations_during([&] {
    for (int i = 0; i < n; ++i) {
      now += 1000;
      c.sample(now);
    }
  });
}

}  // namespace

TEST_CASE("sampling allocates nothing after warm-up", "[metrics][alloc]") {
  SECTION("fixture tree with every source") {
    Fixture f;
    CollectorOptions o = f.options();
    o.rescan_every = 0;  // only explicit re-scans (which may allocate)
    auto c = open_collector(o);
    nova::schemas::Timestamp now = 0;
    CHECK(allocations_in_samples(*c, now, 3) < 1000);  // warm-up: buffers may grow
    CHECK(allocations_in_samples(*c, now, 20) == 0);
    // Moving counters, not just the same file contents again.
    f.eth_rx += 1000;
    f.core_throttle += 1;
    f.update();
    CHECK(allocations_in_samples(*c, now, 1) == 0);
    // The counter works: a re-scan does allocate.
    c->rescan();
    CHECK(allocations_in_samples(*c, now, 1) > 0);
    CHECK(allocations_in_samples(*c, now, 1) == 0);
  }
  SECTION("this machine") {
    CollectorOptions o;
    o.rescan_every = 0;
    auto c = open_collector(o);
    nova::schemas::Timestamp now = 0;
    allocations_in_samples(*c, now, 3);
    CHECK(allocations_in_samples(*c, now, 20) == 0);
  }
}

TEST_CASE("a battery supply gives power gauges that follow mains and discharge", "[metrics]") {
  Fixture f;
  // The fixture's AC has no "type": it says nothing about the power source.
  write(f.sys / "class/power_supply/AC/type", "Mains\n");
  write(f.sys / "class/power_supply/AC/online", "1\n");
  write(f.sys / "class/power_supply/BAT0/type", "Battery\n");
  write(f.sys / "class/power_supply/BAT0/capacity", "80\n");
  write(f.sys / "class/power_supply/BAT0/status", "Charging\n");
  write(f.sys / "class/power_supply/BAT2/type", "Battery\n");
  write(f.sys / "class/power_supply/BAT2/capacity", "64\n");
  write(f.sys / "class/power_supply/BAT2/status", "Full\n");
  auto c = open_collector(f.options());
  const MetricSample& on_mains = c->sample(1000);
  CHECK(extra(on_mains, "power.on_battery") == 0);
  CHECK(extra(on_mains, "power.battery_pct") == 64);  // the emptiest battery
  check_valid(on_mains);

  // Unplugged: files are re-read on every sample, no re-scan needed.
  write(f.sys / "class/power_supply/AC/online", "0\n");
  write(f.sys / "class/power_supply/BAT0/status", "Discharging\n");
  write(f.sys / "class/power_supply/BAT0/capacity", "41\n");
  const MetricSample& on_battery = c->sample(2000);
  CHECK(extra(on_battery, "power.on_battery") == 1);
  CHECK(extra(on_battery, "power.battery_pct") == 41);
  check_valid(on_battery);
}

TEST_CASE("without a battery there are no power gauges", "[metrics]") {
  Fixture f;
  write(f.sys / "class/power_supply/AC/type", "Mains\n");
  auto c = open_collector(f.options());
  const MetricSample& s = c->sample(1000);
  CHECK(s.extra.count("power.on_battery") == 0);
  CHECK(s.extra.count("power.battery_pct") == 0);
}
