#include "cbor_reader.h"

#include <cbor.h>

#include <algorithm>
#include <limits>
#include <string>

namespace nova::schemas::detail {
namespace {

// One decoded item head, filled in by the libcbor callbacks below.
struct Head {
  enum class Type {
    none, uint, negint, bytes, bytes_indef, text, text_indef, array, array_indef, map,
    map_indef, tag, real, null, undefined, boolean, brk
  };
  Type type = Type::none;
  std::uint64_t number = 0;  // uint, negint (raw n of -1-n), collection count, tag
  double real = 0;
  bool flag = false;
  const unsigned char* data = nullptr;
  std::size_t size = 0;
};

Head& head_of(void* ctx) { return *static_cast<Head*>(ctx); }

void on_uint(void* c, std::uint64_t v) { head_of(c) = {Head::Type::uint, v, 0, false, nullptr, 0}; }
void on_uint8(void* c, std::uint8_t v) { on_uint(c, v); }
void on_uint16(void* c, std::uint16_t v) { on_uint(c, v); }
void on_uint32(void* c, std::uint32_t v) { on_uint(c, v); }
void on_negint(void* c, std::uint64_t v) { head_of(c) = {Head::Type::negint, v, 0, false, nullptr, 0}; }
void on_negint8(void* c, std::uint8_t v) { on_negint(c, v); }
void on_negint16(void* c, std::uint16_t v) { on_negint(c, v); }
void on_negint32(void* c, std::uint32_t v) { on_negint(c, v); }
void on_bytes(void* c, cbor_data d, std::size_t n) { head_of(c) = {Head::Type::bytes, 0, 0, false, d, n}; }
void on_bytes_start(void* c) { head_of(c) = {Head::Type::bytes_indef, 0, 0, false, nullptr, 0}; }
void on_text(void* c, cbor_data d, std::size_t n) { head_of(c) = {Head::Type::text, 0, 0, false, d, n}; }
void on_text_start(void* c) { head_of(c) = {Head::Type::text_indef, 0, 0, false, nullptr, 0}; }
void on_array(void* c, std::size_t n) { head_of(c) = {Head::Type::array, n, 0, false, nullptr, 0}; }
void on_array_indef(void* c) { head_of(c) = {Head::Type::array_indef, 0, 0, false, nullptr, 0}; }
void on_map(void* c, std::size_t n) { head_of(c) = {Head::Type::map, n, 0, false, nullptr, 0}; }
void on_map_indef(void* c) { head_of(c) = {Head::Type::map_indef, 0, 0, false, nullptr, 0}; }
void on_tag(void* c, std::uint64_t t) { head_of(c) = {Head::Type::tag, t, 0, false, nullptr, 0}; }
void on_float(void* c, float f) { head_of(c) = {Head::Type::real, 0, static_cast<double>(f), false, nullptr, 0}; }
void on_double(void* c, double d) { head_of(c) = {Head::Type::real, 0, d, false, nullptr, 0}; }
void on_null(void* c) { head_of(c) = {Head::Type::null, 0, 0, false, nullptr, 0}; }
void on_undefined(void* c) { head_of(c) = {Head::Type::undefined, 0, 0, false, nullptr, 0}; }
void on_bool(void* c, bool b) { head_of(c) = {Head::Type::boolean, 0, 0, b, nullptr, 0}; }
void on_break(void* c) { head_of(c) = {Head::Type::brk, 0, 0, false, nullptr, 0}; }

const cbor_callbacks kCallbacks = [] {
  cbor_callbacks cb{};
  cb.uint8 = on_uint8;
  cb.uint16 = on_uint16;
  cb.uint32 = on_uint32;
  cb.uint64 = on_uint;
  cb.negint8 = on_negint8;
  cb.negint16 = on_negint16;
  cb.negint32 = on_negint32;
  cb.negint64 = on_negint;
  cb.byte_string = on_bytes;
  cb.byte_string_start = on_bytes_start;
  cb.string = on_text;
  cb.string_start = on_text_start;
  cb.array_start = on_array;
  cb.indef_array_start = on_array_indef;
  cb.map_start = on_map;
  cb.indef_map_start = on_map_indef;
  cb.tag = on_tag;
  cb.float2 = on_float;
  cb.float4 = on_float;
  cb.float8 = on_double;
  cb.null = on_null;
  cb.undefined = on_undefined;
  cb.boolean = on_bool;
  cb.indef_break = on_break;
  return cb;
}();

class Reader {
 public:
  Reader(std::span<const std::uint8_t> input, const Limits& limits)
      : input_(input), limits_(limits) {}

  Value document(const PathNode& root) {
    if (input_.empty()) fail_input(root, "empty input");
    if (input_.size() > limits_.max_message_bytes) {
      fail_input(root, "message is " + std::to_string(input_.size()) + " bytes, over the limit of " +
                     std::to_string(limits_.max_message_bytes));
    }
    Value v = item(root, 0);
    if (pos_ != input_.size()) {
      fail_input(root, std::to_string(input_.size() - pos_) + " trailing bytes after the message");
    }
    return v;
  }

 private:
  std::size_t remaining() const { return input_.size() - pos_; }

  Head next(const PathNode& at) {
    Head head;
    if (remaining() == 0) fail_input(at, "truncated input");
    cbor_decoder_result r =
        cbor_stream_decode(input_.data() + pos_, remaining(), &kCallbacks, &head);
    if (r.status == CBOR_DECODER_NEDATA) fail_input(at, "truncated input");
    if (r.status != CBOR_DECODER_FINISHED || head.type == Head::Type::none) {
      fail_input(at, "malformed CBOR at byte " + std::to_string(pos_));
    }
    // Do not rely on the library alone for bounds: a claimed read past the end is
    // treated as truncation.
    if (r.read == 0 || r.read > remaining()) fail_input(at, "truncated input");
    pos_ += r.read;
    return head;
  }

  Value item(const PathNode& at, std::size_t depth) {
    Head h = next(at);
    // Tags are accepted and ignored; loop rather than recurse so a chain of tags
    // cannot exhaust the stack.
    while (h.type == Head::Type::tag) h = next(at);
    return from_head(h, at, depth);
  }

  Value from_head(const Head& h, const PathNode& at, std::size_t depth) {
    switch (h.type) {
      case Head::Type::uint: return Value::uint(h.number);
      case Head::Type::negint:
        if (h.number > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
          fail(at, "negative integer below -2^63");
        }
        return Value::integer(-1 - static_cast<std::int64_t>(h.number));
      case Head::Type::real: return Value::real(h.real);
      case Head::Type::null: return Value();
      case Head::Type::boolean: return Value::boolean(h.flag);
      case Head::Type::undefined: fail(at, "undefined is not allowed");
      case Head::Type::brk: fail_input(at, "unexpected break outside an indefinite-length item");
      case Head::Type::bytes: {
        check_string_size(h.size, at);
        return Value::bytes(Bytes(h.data, h.data + h.size));
      }
      case Head::Type::text: {
        check_string_size(h.size, at);
        std::string s(reinterpret_cast<const char*>(h.data), h.size);
        if (!valid_utf8(s)) fail(at, "text string is not valid UTF-8");
        return Value::text(std::move(s));
      }
      case Head::Type::bytes_indef: {
        std::string s = chunks(Head::Type::bytes, at);
        return Value::bytes(Bytes(s.begin(), s.end()));
      }
      case Head::Type::text_indef: return Value::text(chunks(Head::Type::text, at));
      case Head::Type::array:
      case Head::Type::array_indef: return array(h, at, depth);
      case Head::Type::map:
      case Head::Type::map_indef: return map(h, at, depth);
      case Head::Type::tag:
      case Head::Type::none: break;
    }
    fail_input(at, "malformed CBOR");
  }

  void check_string_size(std::size_t size, const PathNode& at) const {
    if (size > limits_.max_string_bytes) {
      fail(at, "string of " + std::to_string(size) + " bytes is over the limit of " +
                   std::to_string(limits_.max_string_bytes));
    }
  }

  // Concatenates the definite chunks of an indefinite-length string up to its break.
  std::string chunks(Head::Type chunk_type, const PathNode& at) {
    std::string out;
    for (;;) {
      Head h = next(at);
      if (h.type == Head::Type::brk) break;
      if (h.type != chunk_type) {
        fail(at, "chunk of an indefinite-length string must be a definite string of the "
                 "same type");
      }
      check_string_size(out.size() + h.size, at);
      std::string_view chunk(reinterpret_cast<const char*>(h.data), h.size);
      if (chunk_type == Head::Type::text && !valid_utf8(chunk)) {
        fail(at, "text string is not valid UTF-8");
      }
      out.append(chunk);
    }
    return out;
  }

  void check_depth(std::size_t depth, const PathNode& at) const {
    if (depth >= limits_.max_depth) {
      fail(at, "nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
    }
  }

  // Every item takes at least one byte, so a count larger than what remains is a lie.
  void check_count(std::uint64_t count, std::uint64_t bytes_per_item, const PathNode& at) const {
    if (count > limits_.max_items) {
      fail(at, "declares " + std::to_string(count) + " items, over the limit of " +
                   std::to_string(limits_.max_items));
    }
    if (count * bytes_per_item > remaining()) {  // truncated
      fail_input(at, "declares " + std::to_string(count) + " items but only " +
                   std::to_string(remaining()) + " bytes remain");
    }
  }

  bool at_break() {
    if (remaining() > 0 && input_[pos_] == 0xff) {
      ++pos_;
      return true;
    }
    return false;
  }

  Value array(const Head& h, const PathNode& at, std::size_t depth) {
    check_depth(depth, at);
    const bool definite = h.type == Head::Type::array;
    Array out;
    if (definite) {
      check_count(h.number, 1, at);
      out.reserve(static_cast<std::size_t>(h.number));  // check_count: <= remaining() bytes
    }
    for (std::size_t i = 0;; ++i) {
      if (definite ? i == h.number : at_break()) break;
      if (!definite) check_count(i + 1, 0, at);
      out.push_back(item(at.element(i), depth + 1));
    }
    return Value::array(std::move(out));
  }

  Value map(const Head& h, const PathNode& at, std::size_t depth) {
    check_depth(depth, at);
    const bool definite = h.type == Head::Type::map;
    Object out;
    if (definite) {
      check_count(h.number, 2, at);
      out.reserve(static_cast<std::size_t>(h.number));  // check_count: <= remaining() bytes
    }
    for (std::size_t i = 0;; ++i) {
      if (definite ? i == h.number : at_break()) break;
      if (!definite) check_count(i + 1, 0, at);
      Value key = item(at, depth + 1);
      if (!key.is(Value::Kind::text)) {
        fail(at, std::string("map key must be a text string, got ") +
                     std::string(kind_name(key.kind())));
      }
      Member m{key.as_text(), Value()};
      m.value = item(at.member(m.key), depth + 1);
      out.push_back(std::move(m));
    }
    check_unique_keys(out, at);
    return Value::map(std::move(out));
  }

  static void check_unique_keys(const Object& members, const PathNode& at) {
    std::vector<std::string_view> keys;
    keys.reserve(members.size());
    for (const Member& m : members) keys.emplace_back(m.key);
    std::sort(keys.begin(), keys.end());
    auto dup = std::adjacent_find(keys.begin(), keys.end());
    if (dup != keys.end()) fail(at.member(*dup), "duplicate map key");
  }

  std::span<const std::uint8_t> input_;
  const Limits& limits_;
  std::size_t pos_ = 0;
};

}  // namespace

Value read_cbor(std::span<const std::uint8_t> input, const Limits& limits, const PathNode& root) {
  return Reader(input, limits).document(root);
}

namespace {

// The length of the well-formed UTF-8 sequence at p (1 to 4 bytes), or 0 when the bytes
// at p do not start one (overlongs, surrogates and code points past U+10FFFF included).
std::size_t utf8_sequence_length(const unsigned char* p, const unsigned char* end) {
  const unsigned char c = *p;
  if (c < 0x80) return 1;
  std::size_t n;
  std::uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 1;
    cp = c & 0x1fu;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 2;
    cp = c & 0x0fu;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 3;
    cp = c & 0x07u;
  } else {
    return 0;  // continuation byte, overlong lead (c0, c1) or past f4
  }
  if (static_cast<std::size_t>(end - p) <= n) return 0;
  for (std::size_t i = 1; i <= n; ++i) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3fu);
  }
  if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff)) {
    return 0;
  }
  return n + 1;
}

}  // namespace

bool valid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char* end = p + text.size();
  while (p < end) {
    const std::size_t n = utf8_sequence_length(p, end);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

}  // namespace nova::schemas::detail

namespace nova::schemas {

std::string printable_utf8(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const unsigned char* end = p + bytes.size();
  while (p < end) {
    const std::size_t n = detail::utf8_sequence_length(p, end);
    if (n == 0 || *p < 0x20 || *p == 0x7f) {  // not UTF-8, or a control byte
      out += "\\x";
      out += kHex[*p >> 4];
      out += kHex[*p & 0xf];
      ++p;
      continue;
    }
    out.append(reinterpret_cast<const char*>(p), n);
    p += n;
  }
  return out;
}

}  // namespace nova::schemas
