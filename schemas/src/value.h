// Value: the format-neutral tree that both wire formats decode into and encode from.
//
// CBOR and JSON front-ends build a Value under the same Limits; the typed layer
// (messages_codec.cpp) maps Values to message structs and back. Keeping one tree in the
// middle means every schema rule is written once, whatever the wire format.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "nova/schemas/codec.h"

namespace nova::schemas::detail {

class Value;
struct Member;
using Array = std::vector<Value>;
using Object = std::vector<Member>;  // insertion order; keys unique (checked on decode)

class Value {
 public:
  enum class Kind : std::uint8_t { null, boolean, uint, negint, real, bytes, text, array, map };

  Value() = default;  // null
  static Value boolean(bool b);
  static Value uint(std::uint64_t u);
  // Any int64: non-negative values are stored as uint so equal numbers compare equal.
  static Value integer(std::int64_t i);
  static Value real(double d);
  static Value bytes(Bytes b);
  static Value text(std::string s);
  static Value array(Array a);
  static Value map(Object m);

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool is(Kind k) const { return kind() == k; }

  // Preconditions: kind() matches.
  bool as_bool() const { return std::get<1>(data_); }
  std::uint64_t as_uint() const { return std::get<2>(data_); }
  std::int64_t as_negint() const { return std::get<3>(data_); }  // always < 0
  double as_real() const { return std::get<4>(data_); }
  const Bytes& as_bytes() const { return std::get<5>(data_); }
  const std::string& as_text() const { return std::get<6>(data_); }
  const Array& as_array() const { return std::get<7>(data_); }
  const Object& as_map() const { return std::get<8>(data_); }
  Array& as_array() { return std::get<7>(data_); }
  Object& as_map() { return std::get<8>(data_); }

  // For maps: the member value under `key`, or nullptr.
  const Value* find(std::string_view key) const;

 private:
  using Data = std::variant<std::monostate, bool, std::uint64_t, std::int64_t, double, Bytes,
                            std::string, Array, Object>;
  explicit Value(Data d);
  Data data_;
};

struct Member {
  std::string key;
  Value value;
};

// Defined after Member: constructing a Value destroys temporaries of every alternative,
// which needs Member complete.
inline Value::Value(Data d) : data_(std::move(d)) {}
inline Value Value::boolean(bool b) { return Value(Data(std::in_place_index<1>, b)); }
inline Value Value::uint(std::uint64_t u) { return Value(Data(std::in_place_index<2>, u)); }
inline Value Value::real(double d) { return Value(Data(std::in_place_index<4>, d)); }
inline Value Value::bytes(Bytes b) { return Value(Data(std::in_place_index<5>, std::move(b))); }
inline Value Value::text(std::string s) { return Value(Data(std::in_place_index<6>, std::move(s))); }
inline Value Value::array(Array a) { return Value(Data(std::in_place_index<7>, std::move(a))); }
inline Value Value::map(Object m) { return Value(Data(std::in_place_index<8>, std::move(m))); }

// "unsigned integer", "text string", ... as used in error messages.
std::string_view kind_name(Value::Kind kind);

}  // namespace nova::schemas::detail
