#include "fields.h"

#include "json_io.h"
#include "nova/schemas/topic.h"

namespace nova::schemas::detail {
namespace {

std::string number_text(double d) {
  std::string s = std::to_string(d);
  // std::to_string prints six decimals; trim the zeros for readable messages.
  if (s.find('.') != std::string::npos) {
    s.erase(s.find_last_not_of('0') + 1);
    if (s.back() == '.') s.pop_back();
  }
  return s;
}

}  // namespace

void Field::wrong_type(std::string_view expected) const {
  fail(path_, "expected " + std::string(expected) + ", got " + std::string(kind_name(value_.kind())));
}

std::uint64_t Field::uint(std::uint64_t min, std::uint64_t max) const {
  if (!value_.is(Value::Kind::uint)) wrong_type("unsigned integer");
  const std::uint64_t u = value_.as_uint();
  if (u < min || u > max) {
    fail(path_, "value " + std::to_string(u) + " is out of range " + std::to_string(min) + ".." +
                    std::to_string(max));
  }
  return u;
}

std::int64_t Field::integer(std::int64_t min, std::int64_t max) const {
  std::int64_t i;
  if (value_.is(Value::Kind::negint)) {
    i = value_.as_negint();
  } else if (value_.is(Value::Kind::uint)) {
    if (value_.as_uint() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      fail(path_, "value " + std::to_string(value_.as_uint()) + " is above 2^63-1");
    }
    i = static_cast<std::int64_t>(value_.as_uint());
  } else {
    wrong_type("integer");
  }
  if (i < min || i > max) {
    fail(path_, "value " + std::to_string(i) + " is out of range " + std::to_string(min) + ".." +
                    std::to_string(max));
  }
  return i;
}

double Field::real(double min, double max, Infinity inf) const {
  double d;
  switch (value_.kind()) {
    case Value::Kind::real: d = value_.as_real(); break;
    case Value::Kind::uint: d = static_cast<double>(value_.as_uint()); break;
    case Value::Kind::negint: d = static_cast<double>(value_.as_negint()); break;
    case Value::Kind::text:
      // JSON cannot spell infinities; the codec writes them as these strings.
      if (ctx_.format == Format::json && inf == Infinity::allowed) {
        if (value_.as_text() == "Infinity") return std::numeric_limits<double>::infinity();
        if (value_.as_text() == "-Infinity") return -std::numeric_limits<double>::infinity();
      }
      [[fallthrough]];
    default: wrong_type("float");
  }
  if (std::isnan(d)) fail(path_, "NaN is not allowed");
  if (std::isinf(d)) {
    if (inf == Infinity::allowed) return d;
    fail(path_, "infinity is not allowed");
  }
  if (d < min || d > max) {
    fail(path_, "value " + number_text(d) + " is out of range " + number_text(min) + ".." +
                    number_text(max));
  }
  return d;
}

bool Field::boolean() const {
  if (!value_.is(Value::Kind::boolean)) wrong_type("boolean");
  return value_.as_bool();
}

const std::string& Field::text_value() const {
  if (!value_.is(Value::Kind::text)) wrong_type("text string");
  return value_.as_text();
}

std::string Field::id() const {
  const std::string& s = text_value();
  if (!topics::Id::valid(s)) fail(path_, topics::Id::parse(s).error().reason);
  return s;
}

std::string Field::text(std::size_t max_bytes, bool allow_empty) const {
  const std::string& s = text_value();
  if (s.empty() && !allow_empty) fail(path_, "must not be empty");
  if (s.size() > max_bytes) {
    fail(path_, "text of " + std::to_string(s.size()) + " bytes is over the limit of " +
                    std::to_string(max_bytes));
  }
  return s;
}

Bytes Field::bytes(std::size_t max_bytes) const {
  Bytes out;
  if (value_.is(Value::Kind::bytes)) {
    out = value_.as_bytes();
  } else if (ctx_.format == Format::json && value_.is(Value::Kind::text)) {
    if (!base64_decode(value_.as_text(), out)) fail(path_, "invalid base64");
  } else {
    wrong_type(ctx_.format == Format::json ? "base64 text string" : "byte string");
  }
  if (out.size() > max_bytes) {
    fail(path_, "byte string of " + std::to_string(out.size()) + " bytes is over the limit of " +
                    std::to_string(max_bytes));
  }
  return out;
}

MapReader Field::map() const { return MapReader(value_, path_, ctx_); }

const Array& Field::array_value(std::size_t min, std::size_t max) const {
  if (!value_.is(Value::Kind::array)) wrong_type("array");
  const Array& a = value_.as_array();
  if (a.size() < min || a.size() > max) {
    fail(path_, "has " + std::to_string(a.size()) + " elements, expected " + std::to_string(min) +
                    ".." + std::to_string(max));
  }
  return a;
}

const Object& Field::map_members(std::size_t min, std::size_t max) const {
  if (!value_.is(Value::Kind::map)) wrong_type("map");
  const Object& m = value_.as_map();
  if (m.size() < min || m.size() > max) {
    fail(path_, "has " + std::to_string(m.size()) + " entries, expected " + std::to_string(min) +
                    ".." + std::to_string(max));
  }
  for (const Member& member : m) {
    if (!topics::Id::valid(member.key)) {
      fail(path_.member(member.key), "invalid key: " + topics::Id::parse(member.key).error().reason);
    }
  }
  return m;
}

std::vector<std::string> Field::id_list(std::size_t min, std::size_t max) const {
  std::vector<std::string> out;
  each(min, max, [&](const Field& f) { out.push_back(f.id()); });
  return out;
}

std::map<std::string, double> Field::real_map(std::size_t min, std::size_t max) const {
  std::map<std::string, double> out;
  entries(min, max, [&](const std::string& key, const Field& f) {
    out.emplace(key, f.real(-std::numeric_limits<double>::max(),
                            std::numeric_limits<double>::max()));
  });
  return out;
}

MapReader::MapReader(const Value& value, PathNode path, const DecodeContext& ctx)
    : value_(value), path_(path), ctx_(ctx) {
  if (!value_.is(Value::Kind::map)) {
    fail(path_, "expected map, got " + std::string(kind_name(value_.kind())));
  }
}

Field MapReader::field(std::string_view key) const {
  const Value* v = value_.find(key);
  if (v == nullptr) fail(path_.member(key), "missing required field");
  return Field(*v, path_.member(key), ctx_);
}

std::optional<Field> MapReader::maybe(std::string_view key) const {
  const Value* v = value_.find(key);
  if (v == nullptr) return std::nullopt;
  return Field(*v, path_.member(key), ctx_);
}

Value text_list(const std::vector<std::string>& items) {
  Array a;
  a.reserve(items.size());
  for (const std::string& s : items) a.push_back(Value::text(s));
  return Value::array(std::move(a));
}

Value real_map(const std::map<std::string, double>& items) {
  Object m;
  m.reserve(items.size());
  for (const auto& [k, v] : items) m.push_back(Member{k, Value::real(v)});
  return Value::map(std::move(m));
}

Value text_map(const std::map<std::string, std::string>& items) {
  Object m;
  m.reserve(items.size());
  for (const auto& [k, v] : items) m.push_back(Member{k, Value::text(v)});
  return Value::map(std::move(m));
}

void check_version(const MapReader& r) {
  Field v = r.field("v");
  const std::uint64_t version = v.uint();
  if (version != kSchemaVersion) {
    v.reject("unsupported schema version " + std::to_string(version) + " (this decoder reads " +
             std::to_string(kSchemaVersion) + ")");
  }
}

MapWriter versioned() {
  MapWriter w;
  w.put("v", Value::uint(kSchemaVersion));
  return w;
}

}  // namespace nova::schemas::detail
