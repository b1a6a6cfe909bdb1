// libFuzzer target: the CBOR decoder of every topic-API message.
#include "decode_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nova::fuzz::for_each_message([&]<class T>() {
    nova::fuzz::round_trip<T>(
        data, size,
        [](std::span<const std::uint8_t> in) { return nova::schemas::decode_cbor<T>(in); },
        [](const T& m) { return nova::schemas::encode_cbor(m); });
  });
  return 0;
}
