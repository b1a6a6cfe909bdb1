// The golden vectors in schemas/vectors/ are the contract third parties test against:
// each hex decodes to the documented JSON value, the JSON decodes to the same message,
// and our encoder reproduces the hex byte for byte.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <type_traits>
#include <nlohmann/json.hpp>

#include "nova/schemas/codec.h"

using namespace nova::schemas;
using json = nlohmann::json;

namespace {

Bytes from_hex(const std::string& hex) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

template <class T>
void check_vector(const json& v) {
  const std::string name = v.at("name").get<std::string>();
  INFO("vector " << name);
  const Bytes cbor = from_hex(v.at("cbor").get<std::string>());
  auto from_cbor = decode_cbor<T>(std::span<const std::uint8_t>(cbor));
  INFO((from_cbor ? "" : from_cbor.error().message()));
  REQUIRE(from_cbor.ok());
  auto from_json = decode_json<T>(v.at("value").dump());
  INFO((from_json ? "" : from_json.error().message()));
  REQUIRE(from_json.ok());
  CHECK(*from_cbor == *from_json);
  CHECK(encode_cbor(*from_cbor) == cbor);
  CHECK(json::parse(encode_json(*from_cbor)) == v.at("value"));
  if constexpr (std::is_same_v<T, MetricsBatch>) {
    // A qdelta batch decodes to the samples the generator's own decoder found.
    if (v.at("value").at("enc") == "qdelta") {
      json plain = v.at("value");
      plain.erase("count");
      plain.erase("data");
      plain["enc"] = "plain";
      plain["samples"] = v.at("inflated").at("samples");
      auto expected = decode_json<MetricsBatch>(plain.dump());
      REQUIRE(expected.ok());
      CHECK(from_cbor->samples == expected->samples);
    }
  }
}

template <class T>
std::size_t check_file(const std::string& type) {
  const auto file = std::filesystem::path(NOVA_VECTORS_DIR) / (type + ".json");
  std::ifstream in(file);
  REQUIRE(in.good());
  const json doc = json::parse(in);
  CHECK(doc.at("type") == type);
  CHECK(doc.at("root") == std::string(root_name<T>()));
  for (const json& v : doc.at("vectors")) check_vector<T>(v);
  return doc.at("vectors").size();
}

}  // namespace

TEST_CASE("golden vectors decode to their values and re-encode byte for byte", "[vectors]") {
  std::size_t n = 0;
  n += check_file<NodeState>("node_state");
  n += check_file<MetricsBatch>("metrics_batch");
  n += check_file<SensorReading>("sensor_reading");
  n += check_file<SensorError>("sensor_error");
  n += check_file<Task>("task");
  n += check_file<TaskResult>("task_result");
  n += check_file<TaskCancel>("task_cancel");
  n += check_file<DecisionRecord>("decision_record");
  n += check_file<DecisionVerdict>("decision_verdict");
  n += check_file<Alert>("alert");
  n += check_file<Config>("config");
  n += check_file<Model>("model");
  n += check_file<Ack>("ack");
  n += check_file<UpdateOffer>("update_offer");
  n += check_file<WorkloadSpec>("workload_spec");
  n += check_file<Placement>("placement");
  n += check_file<ClusterRecord>("cluster_record");
  CHECK(n >= 30);  // at least two per type
}
