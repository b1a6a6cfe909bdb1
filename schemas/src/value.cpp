#include "value.h"

namespace nova::schemas::detail {

Value Value::integer(std::int64_t i) {
  if (i >= 0) return uint(static_cast<std::uint64_t>(i));
  return Value(Data(std::in_place_index<3>, i));
}

const Value* Value::find(std::string_view key) const {
  for (const Member& m : as_map()) {
    if (m.key == key) return &m.value;
  }
  return nullptr;
}

std::string_view kind_name(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::null: return "null";
    case Value::Kind::boolean: return "boolean";
    case Value::Kind::uint: return "unsigned integer";
    case Value::Kind::negint: return "negative integer";
    case Value::Kind::real: return "float";
    case Value::Kind::bytes: return "byte string";
    case Value::Kind::text: return "text string";
    case Value::Kind::array: return "array";
    case Value::Kind::map: return "map";
  }
  return "unknown";
}

}  // namespace nova::schemas::detail
