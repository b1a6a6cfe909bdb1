#include "cbor_writer.h"

#include <cbor.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace nova::schemas::detail {
namespace {

using EncodeFn = std::size_t (*)(std::uint64_t, unsigned char*, std::size_t);

void put_head(EncodeFn fn, std::uint64_t n, Bytes& out) {
  unsigned char buf[9];
  const std::size_t len = fn(n, buf, sizeof buf);
  out.insert(out.end(), buf, buf + len);
}

// libcbor takes these lengths as size_t (32 bits on armhf). Each `n` is the size() of
// something in memory (put_head's callers), so it fits.
std::size_t encode_bytes_head(std::uint64_t n, unsigned char* b, std::size_t s) {
  return cbor_encode_bytestring_start(static_cast<std::size_t>(n), b, s);
}
std::size_t encode_text_head(std::uint64_t n, unsigned char* b, std::size_t s) {
  return cbor_encode_string_start(static_cast<std::size_t>(n), b, s);
}
std::size_t encode_array_head(std::uint64_t n, unsigned char* b, std::size_t s) {
  return cbor_encode_array_start(static_cast<std::size_t>(n), b, s);
}
std::size_t encode_map_head(std::uint64_t n, unsigned char* b, std::size_t s) {
  return cbor_encode_map_start(static_cast<std::size_t>(n), b, s);
}

// The IEEE 754 binary16 bits of `f` when it converts to half precision without loss.
// Written out here because libcbor 0.8's cbor_encode_half rounds some subnormals.
bool exact_half(float f, std::uint16_t& half) {
  const auto bits = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t exponent = (bits >> 23) & 0xffu;
  const std::uint32_t mantissa = bits & 0x7fffffu;
  if (exponent == 0xff) {  // infinity (NaN is handled by the caller)
    if (mantissa != 0) return false;
    half = static_cast<std::uint16_t>(sign | 0x7c00u);
    return true;
  }
  if (exponent == 0) {  // zero, or a float subnormal: far below half's range
    if (mantissa != 0) return false;
    half = sign;
    return true;
  }
  const int unbiased = static_cast<int>(exponent) - 127;
  if (unbiased >= -14 && unbiased <= 15) {  // half normal
    if ((mantissa & 0x1fffu) != 0) return false;
    half = static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(unbiased + 15) << 10 |
                                      mantissa >> 13);
    return true;
  }
  if (unbiased >= -24 && unbiased < -14) {  // half subnormal: value = frac * 2^-24
    const std::uint32_t significand = mantissa | 0x800000u;
    const auto shift = static_cast<std::uint32_t>(-unbiased - 1);
    if ((significand & ((1u << shift) - 1)) != 0) return false;
    half = static_cast<std::uint16_t>(sign | significand >> shift);
    return true;
  }
  return false;
}

void put_real(double d, Bytes& out) {
  if (std::isnan(d)) {  // one canonical NaN: half-precision quiet NaN
    out.insert(out.end(), {0xf9, 0x7e, 0x00});
    return;
  }
  unsigned char buf[9];
  std::size_t len;
  const auto single = static_cast<float>(d);
  std::uint16_t half;
  if (static_cast<double>(single) != d) {
    len = cbor_encode_double(d, buf, sizeof buf);
  } else if (exact_half(single, half)) {
    buf[0] = 0xf9;
    buf[1] = static_cast<unsigned char>(half >> 8);
    buf[2] = static_cast<unsigned char>(half & 0xffu);
    len = 3;
  } else {
    len = cbor_encode_single(single, buf, sizeof buf);
  }
  out.insert(out.end(), buf, buf + len);
}

bool deterministic_key_order(const Member* a, const Member* b) {
  if (a->key.size() != b->key.size()) return a->key.size() < b->key.size();
  return a->key < b->key;
}

}  // namespace

void write_cbor(const Value& value, Bytes& out) {
  switch (value.kind()) {
    case Value::Kind::null: out.push_back(0xf6); return;
    case Value::Kind::boolean: out.push_back(value.as_bool() ? 0xf5 : 0xf4); return;
    case Value::Kind::uint: put_head(cbor_encode_uint, value.as_uint(), out); return;
    case Value::Kind::negint:
      put_head(cbor_encode_negint, static_cast<std::uint64_t>(-1 - value.as_negint()), out);
      return;
    case Value::Kind::real: put_real(value.as_real(), out); return;
    case Value::Kind::bytes: {
      const Bytes& b = value.as_bytes();
      put_head(encode_bytes_head, b.size(), out);
      out.insert(out.end(), b.begin(), b.end());
      return;
    }
    case Value::Kind::text: {
      const std::string& s = value.as_text();
      put_head(encode_text_head, s.size(), out);
      out.insert(out.end(), s.begin(), s.end());
      return;
    }
    case Value::Kind::array:
      put_head(encode_array_head, value.as_array().size(), out);
      for (const Value& v : value.as_array()) write_cbor(v, out);
      return;
    case Value::Kind::map: {
      const Object& members = value.as_map();
      std::vector<const Member*> sorted;
      sorted.reserve(members.size());
      for (const Member& m : members) sorted.push_back(&m);
      std::sort(sorted.begin(), sorted.end(), deterministic_key_order);
      put_head(encode_map_head, sorted.size(), out);
      for (const Member* m : sorted) {
        put_head(encode_text_head, m->key.size(), out);
        out.insert(out.end(), m->key.begin(), m->key.end());
        write_cbor(m->value, out);
      }
      return;
    }
  }
}

}  // namespace nova::schemas::detail
