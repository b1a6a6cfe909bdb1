#include "nova/security/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nova/security/digest.h"

namespace nova::security {

namespace {

using schemas::Error;

constexpr std::size_t kMaxField = 1024;
const std::string kGenesis(64, '0');
// `,"hash":"` + 64 hex digits + `"}`
constexpr std::size_t kHashSuffix = 9 + 64 + 2;

std::string cut(const std::string& text) {
  return text.size() <= kMaxField ? text : text.substr(0, kMaxField);
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The line's text that its hash covers, or nothing when the line does not end in a hash.
std::optional<std::string> hashed_part(const std::string& line, std::string& hash) {
  if (line.size() < kHashSuffix + 2 ||
      line.compare(line.size() - kHashSuffix, 9, R"(,"hash":")") != 0 ||
      line.compare(line.size() - 2, 2, "\"}") != 0) {
    return std::nullopt;
  }
  hash = line.substr(line.size() - kHashSuffix + 9, 64);
  return line.substr(0, line.size() - kHashSuffix);
}

// Checks one line as the entry after (`seq` - 1, `prev`). Empty: intact.
std::string check_entry(const std::string& line, std::uint64_t seq, const std::string& prev) {
  std::string hash;
  const auto body = hashed_part(line, hash);
  if (!body)
    return "hash: the line does not end with a \"hash\" member (truncated or not an entry)";
  const auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "the line is not a JSON object";
  for (const char* key : {"actor", "action", "target", "outcome", "prev", "hash"}) {
    if (!j.contains(key) || !j[key].is_string())
      return std::string(key) + ": missing or not a string";
  }
  if (!j.contains("seq") || !j["seq"].is_number_unsigned())
    return "seq: missing or not an unsigned integer";
  if (!j.contains("ts") || !j["ts"].is_number_integer()) return "ts: missing or not an integer";
  if (sha256_hex(*body) != hash)
    return "hash: does not match the entry's text (the entry was changed)";
  const auto got = j["seq"].get<std::uint64_t>();
  if (got != seq) {
    return "seq: " + std::to_string(got) + ", expected " + std::to_string(seq) +
           " (an entry before it was removed, or entries were reordered)";
  }
  if (j["prev"].get<std::string>() != prev) {
    return "prev: does not match the hash of entry " + std::to_string(seq - 1) +
           " (an entry was removed or replaced)";
  }
  return {};
}

}  // namespace

schemas::Result<std::unique_ptr<AuditLog>> AuditLog::open(const std::filesystem::path& file) {
  std::unique_ptr<AuditLog> log(new AuditLog());
  log->fd_ = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (log->fd_ < 0)
    return Error{"audit", "cannot open " + file.string() + ": " + std::strerror(errno)};
  log->last_hash_ = kGenesis;
  // The last line, from the tail: entries are short (fields are cut at 1 KiB).
  std::ifstream in(file, std::ios::binary | std::ios::ate);
  const auto size = static_cast<std::int64_t>(in.tellg());
  if (size <= 0) return log;
  const std::int64_t from = std::max<std::int64_t>(0, size - 16 * 1024);
  in.seekg(from);
  std::string tail(static_cast<std::size_t>(size - from), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  if (tail.back() != '\n')
    return Error{"audit", file.string() + ": the last entry is incomplete (run audit verify)"};
  tail.pop_back();
  const std::string last =
      tail.substr(tail.rfind('\n') == std::string::npos ? 0 : tail.rfind('\n') + 1);
  std::string hash;
  const auto j = nlohmann::json::parse(last, nullptr, false);
  if (!hashed_part(last, hash) || j.is_discarded() || !j.is_object() || !j.contains("seq") ||
      !j["seq"].is_number_unsigned() || sha256_hex(*hashed_part(last, hash)) != hash) {
    return Error{"audit", file.string() + ": the last entry is not intact (run audit verify)"};
  }
  log->last_seq_ = j["seq"].get<std::uint64_t>();
  log->last_hash_ = hash;
  return log;
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

schemas::Status AuditLog::append(const AuditRecord& record) {
  std::lock_guard lock(mutex_);
  nlohmann::ordered_json j;
  j["seq"] = last_seq_ + 1;
  j["ts"] = now_ms();
  j["actor"] = cut(record.actor);
  j["action"] = cut(record.action);
  j["target"] = cut(record.target);
  j["outcome"] = cut(record.outcome);
  j["prev"] = last_hash_;
  // Invalid UTF-8 (a path from a request) is replaced, so the line stays JSON.
  std::string body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  body.pop_back();  // the closing brace: the hash member follows
  const std::string hash = sha256_hex(body);
  const std::string line = body + R"(,"hash":")" + hash + "\"}\n";
  std::size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error{"audit", std::string("write: ") + std::strerror(errno)};
    written += static_cast<std::size_t>(n);
  }
  if (::fdatasync(fd_) != 0)
    return Error{"audit", std::string("fdatasync: ") + std::strerror(errno)};
  ++last_seq_;
  last_hash_ = hash;
  return schemas::Ok{};
}

std::uint64_t AuditLog::entries() const {
  std::lock_guard lock(mutex_);
  return last_seq_;
}

AuditVerdict verify_audit_log(const std::filesystem::path& file) {
  AuditVerdict v;
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    v.broken_at = 0;
    v.reason = "cannot read " + file.string();
    return v;
  }
  std::string prev = kGenesis;
  std::string line;
  for (std::uint64_t n = 1; std::getline(in, line); ++n) {
    if (in.eof()) {  // no newline after it: a write that did not finish
      v.broken_at = n;
      v.reason = "the entry is incomplete (no end of line)";
      return v;
    }
    if (std::string problem = check_entry(line, n, prev); !problem.empty()) {
      v.broken_at = n;
      v.reason = problem;
      return v;
    }
    std::string hash;
    hashed_part(line, hash);
    prev = hash;
    v.entries = n;
  }
  return v;
}

}  // namespace nova::security
