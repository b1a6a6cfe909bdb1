// The agent's host metrics: one MetricSample per call, read from /proc and /sys.
//
// What a sample holds (schemas/messages.h has the wire names and ranges):
//   cpu_pct      busy % of all cores since the previous sample (user+nice+system+irq+
//                softirq+steal over all but guest time, from the "cpu" line of /proc/stat)
//   mem_pct      100 * (MemTotal - MemAvailable) / MemTotal           (/proc/meminfo)
//   disk_pct     used % of the filesystem holding data_path, as df computes it:
//                used / (used + available to unprivileged users)      (statvfs)
//   load1        1-minute load average                                (/proc/loadavg)
//   net_rx_bps,  bytes/s over every interface except loopback ones    (/proc/net/dev)
//   net_tx_bps   (virtual ones count too: a bridge or an ifb mirror adds its traffic again)
//   temp_c       hottest readable thermal zone; absent without zones  (/sys/class/thermal)
//   throttled    a thermal throttle counter of any CPU rose since the previous sample
//                (x86 /sys/devices/system/cpu/cpu*/thermal_throttle), or the Raspberry Pi
//                firmware reports current capping/throttling; absent when neither exists
//   power_w      sum over /sys/class/power_supply/* of power_now (uW), or of
//                current_now (uA) * voltage_now (uV); absent when no supply has them
// and in `extra` these gauges, whose names never change (the cloud keys series by them):
//   cpu.user cpu.system cpu.iowait cpu.irq cpu.softirq cpu.steal cpu.idle
//                % of all cores since the previous sample; user includes nice; they sum
//                to 100 (each is 0 on the first sample)
//   mem.available_mb mem.cached_mb swap.used_pct   (swap.used_pct is 0 without swap)
//   disk.read_bps disk.write_bps   bytes/s summed over whole disks (entries of /sys/block
//                with a "device": no partitions, loop, zram, dm or md devices, so nothing
//                is counted twice); absent when there are none
//   load5 load15
//   net.<if>.rx_bps net.<if>.tx_bps   per non-loopback interface (at most
//                max_interface_gauges of them; the totals include every interface). <if>
//                is the interface name with characters outside [A-Za-z0-9_.-] replaced
//                by '_', so every gauge name is a valid topic Id.
//   temp.<zone>  degC per thermal zone: the zone's type if no other zone shares it,
//                else thermal_zoneN (at most max_thermal_gauges)
//   throttle.core_events throttle.package_events   increments of the x86 throttle
//                counters since the previous sample, summed over CPUs (a package event is
//                counted once per CPU of the package); absent without those files
//   self.cpu_pct self.rss_kb   this process: % of one core since the previous sample,
//                resident set size
//   power.on_battery  1 when a battery supply reports "Discharging" and no mains-type
//                supply (Mains, USB*) reports online, else 0; power.battery_pct the
//                lowest "capacity" of the batteries (0..100). Both absent without a
//                supply of type Battery (/sys/class/power_supply/*/type).
// Rates and percentages "since the previous sample" are 0 on the first sample, and
// again after a sample whose `now` did not advance (nothing to divide by). Counters
// that go backwards (an interface re-created, iowait's known jitter) count as 0.
// Every value is finite and inside the codec's ranges; `extra` stays within the codec's
// 256 gauges.
//
// Cost, because the agent samples every second for ever on small devices:
//   - Each file is opened once and read with pread from offset 0 on every sample; the
//     buffers, the sample and the keys of `extra` are reused, so after the first sample
//     sample() allocates nothing (tests/agent/metrics_test.cpp counts operator new).
//   - The set of interfaces, disks, thermal zones, throttle counters and power supplies
//     is scanned by open(), then every `rescan_every` samples, after rescan(), and when
//     the number of interfaces in /proc/net/dev changes (noticed for free while reading
//     it, so a new interface is counted from the next sample on); only a scan allocates.
// Missing files omit what they would have provided (containers have no thermal zones,
// most machines no power supply), so a collector works anywhere /proc/stat is readable.
// Not thread-safe: one owner (the agent's main loop) calls it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::agent {

struct CollectorOptions {
  // Roots of the two pseudo-filesystems; tests point them at fixture trees.
  std::filesystem::path proc_root = "/proc";
  std::filesystem::path sys_root = "/sys";
  // disk_pct is measured on the filesystem holding this path (the outbox's, normally).
  std::filesystem::path data_path = "/";
  // Samples between re-scans of interfaces, disks, zones and supplies; 0: only at
  // open(), after rescan() and when the interface count changes.
  std::uint32_t rescan_every = 60;
  // Caps on per-device gauges, which keep `extra` under the codec's 256 entries:
  // 20 fixed gauges + 2 per interface + 1 per zone <= 20 + 2*64 + 32 = 180. open()
  // refuses caps that could exceed 256.
  std::size_t max_interface_gauges = 64;
  std::size_t max_thermal_gauges = 32;
};

class MetricsCollector {
 public:
  // Fails only when proc_root/stat cannot be opened (a wrong root, not a missing
  // feature); every other source is optional.
  static schemas::Result<std::unique_ptr<MetricsCollector>> open(const CollectorOptions& options);
  ~MetricsCollector();

  // Reads every source and returns the updated sample, stamped `now` (the caller's
  // clock: tests pass synthetic times, so rates need no sleeping). Rates divide by
  // now - previous now. The reference stays valid, and is overwritten by the next call.
  const schemas::MetricSample& sample(schemas::Timestamp now);

  // The next sample() re-scans devices (e.g. after a hotplug event).
  void rescan();
  // Measures disk_pct on another filesystem from the next sample on (hot config).
  void set_data_path(const std::filesystem::path& path);

  // What the last scan found, for the agent's start-up log line, e.g.
  // "cpu mem disk(/) load net(1 interface) diskio(1 disk) thermal(0 zones)
  //  throttle(none) power(none) self".
  std::string describe() const;

  MetricsCollector(const MetricsCollector&) = delete;
  MetricsCollector& operator=(const MetricsCollector&) = delete;

 private:
  struct Impl;
  explicit MetricsCollector(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nova::agent
