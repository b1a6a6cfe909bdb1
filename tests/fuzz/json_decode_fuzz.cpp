// libFuzzer target: the JSON decoder of every topic-API message.
#include <string_view>

#include "decode_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nova::fuzz::for_each_message([&]<class T>() {
    nova::fuzz::round_trip<T>(
        data, size,
        [](std::span<const std::uint8_t> in) {
          return nova::schemas::decode_json<T>(
              std::string_view(reinterpret_cast<const char*>(in.data()), in.size()));
        },
        [](const T& m) { return nova::schemas::encode_json(m); });
  });
  return 0;
}
