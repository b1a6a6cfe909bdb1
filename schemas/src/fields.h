// Typed, path-aware access to a decoded Value: the one place where schema rules (types,
// ranges, sizes, id syntax, enumerations) are checked, for CBOR and JSON alike.
//
// A MapReader wraps one decoded map; field(key) yields a Field that converts to the
// expected C++ type or throws DecodeFailure naming the field's path and the reason.
// PathNodes point at their parents, so a reader must outlive the Fields and nested
// readers it hands out (keep them as locals; do not store them).
#pragma once

#include <cmath>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "path.h"
#include "value.h"

namespace nova::schemas::detail {

enum class Format { cbor, json };

struct DecodeContext {
  Format format;
  const Limits& limits;
};

// Whether a float field admits +/-infinity. NaN is never admitted.
enum class Infinity { refused, allowed };

class MapReader;

class Field {
 public:
  Field(const Value& value, PathNode path, const DecodeContext& ctx)
      : value_(value), path_(path), ctx_(ctx) {}

  std::uint64_t uint(std::uint64_t min = 0,
                     std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const;
  std::int64_t integer(std::int64_t min, std::int64_t max) const;
  double real(double min, double max, Infinity inf = Infinity::refused) const;
  bool boolean() const;
  std::string id() const;  // topic.h Id rules
  std::string text(std::size_t max_bytes, bool allow_empty = false) const;
  Bytes bytes(std::size_t max_bytes) const;
  MapReader map() const;

  template <class E>
  E choice(std::initializer_list<std::pair<std::string_view, E>> names) const {
    const std::string& s = text_value();
    for (const auto& [name, e] : names) {
      if (s == name) return e;
    }
    std::string expected;
    for (const auto& [name, e] : names) expected += (expected.empty() ? "" : ", ") + std::string(name);
    fail(path_, "unknown value '" + s + "' (expected one of: " + expected + ")");
  }

  // Calls fn(Field) for each element after checking min..max elements.
  template <class Fn>
  void each(std::size_t min, std::size_t max, Fn fn) const {
    const Array& items = array_value(min, max);
    for (std::size_t i = 0; i < items.size(); ++i) fn(Field(items[i], path_.element(i), ctx_));
  }

  // Calls fn(key, Field) for each member of a map whose keys follow the Id rules.
  template <class Fn>
  void entries(std::size_t min, std::size_t max, Fn fn) const {
    for (const Member& m : map_members(min, max)) fn(m.key, Field(m.value, path_.member(m.key), ctx_));
  }

  std::vector<std::string> id_list(std::size_t min, std::size_t max) const;
  std::map<std::string, double> real_map(std::size_t min, std::size_t max) const;

  const Value& value() const { return value_; }
  const PathNode& path() const { return path_; }
  const DecodeContext& context() const { return ctx_; }
  [[noreturn]] void reject(std::string reason) const { fail(path_, std::move(reason)); }

 private:
  [[noreturn]] void wrong_type(std::string_view expected) const;
  const std::string& text_value() const;
  const Array& array_value(std::size_t min, std::size_t max) const;
  const Object& map_members(std::size_t min, std::size_t max) const;

  const Value& value_;
  PathNode path_;
  const DecodeContext& ctx_;
};

class MapReader {
 public:
  // Throws unless `value` is a map.
  MapReader(const Value& value, PathNode path, const DecodeContext& ctx);

  Field field(std::string_view key) const;  // throws "missing required field"
  std::optional<Field> maybe(std::string_view key) const;
  const PathNode& path() const { return path_; }
  const DecodeContext& context() const { return ctx_; }

 private:
  const Value& value_;
  PathNode path_;
  const DecodeContext& ctx_;
};

// Builds an encoded map member by member.
class MapWriter {
 public:
  MapWriter& put(std::string_view key, Value v) {
    members_.push_back(Member{std::string(key), std::move(v)});
    return *this;
  }
  template <class T, class Fn>
  MapWriter& put_optional(std::string_view key, const std::optional<T>& v, Fn to_value) {
    if (v) put(key, to_value(*v));
    return *this;
  }
  Value done() { return Value::map(std::move(members_)); }

 private:
  Object members_;
};

Value text_list(const std::vector<std::string>& items);
Value real_map(const std::map<std::string, double>& items);
Value text_map(const std::map<std::string, std::string>& items);

// "v": every top-level message carries the schema version.
void check_version(const MapReader& r);
MapWriter versioned();

}  // namespace nova::schemas::detail
