#include "json_io.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "nova/schemas/codec.h"

namespace nova::schemas::detail {
namespace {

using json = nlohmann::json;

// Builds a Value from SAX events. A stack frame per open container remembers the member
// key or element index its children sit at, which also renders the error path.
class Builder final : public nlohmann::json_sax<json> {
 public:
  Builder(const Limits& limits, const PathNode& root) : limits_(limits), root_(root) {}

  bool null() override { return add(Value()); }
  bool boolean(bool b) override { return add(Value::boolean(b)); }
  bool number_integer(number_integer_t i) override { return add(Value::integer(i)); }
  bool number_unsigned(number_unsigned_t u) override { return add(Value::uint(u)); }
  bool number_float(number_float_t d, const string_t&) override {
    if (!std::isfinite(d)) return error("number out of range");
    return add(Value::real(d));
  }
  bool string(string_t& s) override {
    if (!string_fits(s.size())) return false;
    return add(Value::text(std::move(s)));
  }
  bool binary(binary_t&) override { return error("binary values are not JSON"); }

  bool start_object(std::size_t) override { return open(Value::map({})); }
  bool key(string_t& k) override {
    if (!string_fits(k.size())) return false;
    for (const Member& m : stack_.back().value.as_map()) {
      if (m.key == k) {
        stack_.back().key = std::move(k);
        return error("duplicate map key");
      }
    }
    stack_.back().key = std::move(k);
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(Value::array({})); }
  bool end_array() override { return close(); }

  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    std::string what = ex.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " prefix: the id is noise here.
    if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    (void)position;
    // nlohmann quotes the bytes it last read, which may be anything the sender wrote:
    // a reason must stay valid UTF-8, or encoding the error reply would fail.
    error_ = Error{current_path(), "invalid JSON: " + printable_utf8(what), true};
    return false;
  }

  Value take_result(bool parsed) {
    if (!parsed || error_) throw DecodeFailure{error_.value_or(Error{root_.render(), "invalid JSON", true})};
    return std::move(result_);
  }

 private:
  struct Frame {
    Value value;
    std::string key;  // pending member key (maps)
  };

  bool string_fits(std::size_t size) {
    if (size <= limits_.max_string_bytes) return true;
    return error("string of " + std::to_string(size) + " bytes is over the limit of " +
                 std::to_string(limits_.max_string_bytes));
  }

  std::size_t item_count(const Frame& f) const {
    return f.value.is(Value::Kind::map) ? f.value.as_map().size() : f.value.as_array().size();
  }

  bool add(Value v) {
    if (stack_.empty()) {
      result_ = std::move(v);
      return true;
    }
    Frame& top = stack_.back();
    if (item_count(top) >= limits_.max_items) {
      return error("more than " + std::to_string(limits_.max_items) + " items");
    }
    if (top.value.is(Value::Kind::map)) {
      top.value.as_map().push_back(Member{std::move(top.key), std::move(v)});
      top.key.clear();
    } else {
      top.value.as_array().push_back(std::move(v));
    }
    return true;
  }

  bool open(Value container) {
    if (stack_.size() >= limits_.max_depth) {
      return error("nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
    }
    stack_.push_back(Frame{std::move(container), {}});
    return true;
  }

  bool close() {
    Value done = std::move(stack_.back().value);
    stack_.pop_back();
    return add(std::move(done));
  }

  bool error(std::string reason) {
    error_ = Error{current_path(), std::move(reason)};
    return false;
  }

  // Renders the path of the item being parsed from the open frames.
  std::string current_path() const {
    std::string out = root_.render();
    for (std::size_t i = 0; i < stack_.size(); ++i) {
      const Frame& f = stack_[i];
      if (f.value.is(Value::Kind::map)) {
        if (f.key.empty()) continue;
        out += '.';
        out += f.key;
      } else {
        out += '[' + std::to_string(f.value.as_array().size()) + ']';
      }
    }
    return out;
  }

  const Limits& limits_;
  const PathNode& root_;
  std::vector<Frame> stack_;
  Value result_;
  std::optional<Error> error_;
};

json to_json(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::null: return nullptr;
    case Value::Kind::boolean: return v.as_bool();
    case Value::Kind::uint: return v.as_uint();
    case Value::Kind::negint: return v.as_negint();
    case Value::Kind::real: {
      const double d = v.as_real();
      if (std::isnan(d)) return "NaN";
      if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
      return d;
    }
    case Value::Kind::bytes: return base64_encode(v.as_bytes());
    case Value::Kind::text: return v.as_text();
    case Value::Kind::array: {
      json a = json::array();
      for (const Value& e : v.as_array()) a.push_back(to_json(e));
      return a;
    }
    case Value::Kind::map: {
      json o = json::object();
      for (const Member& m : v.as_map()) o[m.key] = to_json(m.value);
      return o;
    }
  }
  return nullptr;
}

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

Value read_json(std::string_view input, const Limits& limits, const PathNode& root) {
  if (input.size() > limits.max_message_bytes) {
    fail(root, "message is " + std::to_string(input.size()) + " bytes, over the limit of " +
                   std::to_string(limits.max_message_bytes));
  }
  Builder builder(limits, root);
  const bool parsed = json::sax_parse(input, &builder, json::input_format_t::json, true, false);
  return builder.take_result(parsed);
}

// Text that is not valid UTF-8 (a caller's mistake: decoded text always is) is written
// with U+FFFD for each bad byte rather than thrown about: an encoder never throws.
std::string write_json(const Value& value) {
  return to_json(value).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string base64_encode(const Bytes& bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t n = std::uint32_t{bytes[i]} << 16 | std::uint32_t{bytes[i + 1]} << 8 |
                            bytes[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(n >> shift) & 0x3fu];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t n = std::uint32_t{bytes[i]} << 16;
    if (rest == 2) n |= std::uint32_t{bytes[i + 1]} << 8;
    out += kAlphabet[(n >> 18) & 0x3fu];
    out += kAlphabet[(n >> 12) & 0x3fu];
    out += rest == 2 ? kAlphabet[(n >> 6) & 0x3fu] : '=';
    out += '=';
  }
  return out;
}

bool base64_decode(std::string_view text, Bytes& out) {
  if (text.size() % 4 != 0) return false;
  out.clear();
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const int pad = last ? (text[i + 3] == '=') + (text[i + 2] == '=') : 0;
    if (pad == 1 && text[i + 2] == '=') return false;  // "x=y=" is not padding
    std::uint32_t n = 0;
    for (int k = 0; k < 4 - pad; ++k) {
      const int s = sextet(text[i + static_cast<std::size_t>(k)]);
      if (s < 0) return false;
      n = n << 6 | static_cast<std::uint32_t>(s);
    }
    n <<= 6 * pad;
    out.push_back(static_cast<std::uint8_t>(n >> 16));
    if (pad < 2) out.push_back(static_cast<std::uint8_t>((n >> 8) & 0xffu));
    if (pad < 1) out.push_back(static_cast<std::uint8_t>(n & 0xffu));
  }
  return true;
}

}  // namespace nova::schemas::detail
