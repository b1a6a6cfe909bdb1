// Shared body of the decoder fuzz targets: feed the input to every message decoder and,
// whenever one accepts it, check the round-trip invariant (what we accept, we re-encode
// to something we accept again, equal to the first decode).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <span>

#include "nova/schemas/codec.h"

namespace nova::fuzz {

template <class T, class Decode, class Encode>
void round_trip(const std::uint8_t* data, std::size_t size, Decode decode, Encode encode) {
  auto first = decode(std::span<const std::uint8_t>(data, size));
  if (!first.ok()) {
    if (first.error().reason.empty()) std::abort();  // every refusal must say why
    return;
  }
  const auto again = encode(first.value());
  auto second = decode(std::span<const std::uint8_t>(
      reinterpret_cast<const std::uint8_t*>(again.data()), again.size()));
  if (!second.ok() || !(second.value() == first.value())) std::abort();
}

template <class Fn>
void for_each_message(Fn fn) {
  using namespace nova::schemas;
  fn.template operator()<NodeState>();
  fn.template operator()<MetricsBatch>();
  fn.template operator()<SensorReading>();
  fn.template operator()<SensorError>();
  fn.template operator()<Task>();
  fn.template operator()<TaskResult>();
  fn.template operator()<TaskCancel>();
  fn.template operator()<DecisionRecord>();
  fn.template operator()<DecisionVerdict>();
  fn.template operator()<Alert>();
  fn.template operator()<Config>();
  fn.template operator()<Model>();
  fn.template operator()<Ack>();
  fn.template operator()<WorkloadSpec>();
  fn.template operator()<Placement>();
  fn.template operator()<ClusterRecord>();
}

}  // namespace nova::fuzz
