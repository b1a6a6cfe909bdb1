// Shared set-up of the nova-cloud fuzz targets: one detached CloudService per fuzzing
// process (CloudService::start_detached: no broker, no thread), its LevelDB store in a
// fresh temporary directory (on /dev/shm when there is one: a synced write per submitted
// workload would otherwise dominate), removed at exit.
//
// Every message the service publishes goes through check_published(): its topic must
// parse and its payload must decode as the message its topic names (an empty retained
// record clears one). A failure aborts: nova-cloud never publishes what it would refuse.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "nova/cloud/service.h"
#include "nova/schemas/codec.h"
#include "nova/schemas/topic.h"

namespace nova::fuzz {

inline void check_published(const std::string& topic, const std::vector<std::uint8_t>& payload, bool retained) {
  namespace topics = nova::topics;
  using namespace nova::schemas;
  auto parsed = topics::parse(topic);
  if (!parsed) std::abort();
  if (payload.empty() && retained) return;  // clears a retained record
  bool ok = true;
  if (const auto* down = std::get_if<topics::DownTopic>(&*parsed)) {
    if (down->kind == topics::DownKind::ack) ok = decode_cbor<Ack>(payload).ok();
    if (down->kind == topics::DownKind::task) ok = decode_cbor<Task>(payload).ok();
  } else if (const auto* cloud = std::get_if<topics::CloudTopic>(&*parsed)) {
    switch (cloud->kind) {
      case topics::CloudKind::workload: ok = decode_cbor<WorkloadSpec>(payload).ok(); break;
      case topics::CloudKind::placement: ok = decode_cbor<Placement>(payload).ok(); break;
      case topics::CloudKind::cluster: ok = decode_cbor<ClusterRecord>(payload).ok(); break;
      case topics::CloudKind::instance: break;
    }
  }
  if (!ok) std::abort();
}

class FuzzedCloud {
 public:
  FuzzedCloud() {
    const std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    std::string pattern = (base / "nova-cloud-fuzz-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    dir_ = pattern;
    cloud::CloudOptions options;
    options.client_id = "fuzz-cloud";
    options.store.dir = dir_ / "store";
    auto started = cloud::CloudService::start_detached(std::move(options), check_published);
    if (!started) std::abort();
    service_ = std::move(started).value();
  }
  ~FuzzedCloud() {
    service_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  cloud::CloudService& service() { return *service_; }

 private:
  std::filesystem::path dir_;
  std::unique_ptr<cloud::CloudService> service_;
};

}  // namespace nova::fuzz
