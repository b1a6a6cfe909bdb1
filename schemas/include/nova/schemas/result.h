// Result<T>: a value or an Error that names where and why decoding or validation failed.
//
// Errors are data, not exceptions, at every public boundary of the schemas library:
// untrusted input must never unwind through a caller that forgot a try block.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace nova::schemas {

struct Error {
  // Dotted path of the offending field, e.g. "batch.samples[3].cpu"; empty for the
  // whole input (e.g. "truncated input").
  std::string path;
  // Human-readable reason, e.g. "expected float, got text string".
  std::string reason;
  // True when the input is not a well-formed document at all (empty, over the size
  // limit, truncated, malformed CBOR, invalid JSON, trailing bytes): no member is at
  // fault, whatever position `path` names. Replies to a sender use field "" then.
  bool whole_input = false;

  // "path: reason", or just "reason" when there is no path.
  std::string message() const { return path.empty() ? reason : path + ": " + reason; }
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}       // NOLINT(google-explicit-constructor)
  Result(Error error) : state_(std::move(error)) {}   // NOLINT(google-explicit-constructor)

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  // Precondition: ok().
  const T& value() const& { return std::get<0>(state_); }
  T& value() & { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  const T& operator*() const& { return value(); }
  const T* operator->() const { return &value(); }

  // Precondition: !ok().
  const Error& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

// For operations that yield nothing but can fail.
struct Ok {};
using Status = Result<Ok>;

}  // namespace nova::schemas
