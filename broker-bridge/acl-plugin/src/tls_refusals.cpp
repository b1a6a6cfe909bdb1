#include "nova/acl/tls_refusals.h"

#include <sys/stat.h>

#include <fstream>

namespace nova::acl {

namespace {

bool contains(std::string_view text, std::string_view what) { return text.find(what) != std::string_view::npos; }

TlsRefusal reason_of(std::string_view error) {
  if (contains(error, "peer did not return a certificate")) return TlsRefusal::no_certificate;
  if (contains(error, "certificate verify failed")) return TlsRefusal::verify_failed;
  if (contains(error, "unsupported protocol") || contains(error, "no protocols available") ||
      contains(error, "alert protocol version")) {
    return TlsRefusal::protocol_version;
  }
  return TlsRefusal::other;
}

// A client that closed its connection before sending a handshake (a TCP health check,
// a readiness probe) was refused nothing.
bool hung_up(std::string_view error) { return contains(error, "unexpected eof while reading"); }

// Mosquitto's own log lines start with a timestamp when log_timestamp is on; the forms
// below are found anywhere in the line, after that prefix.
constexpr std::string_view kFirstError = "OpenSSL Error[0]: ";
constexpr std::string_view kAcceptFailed = "Client connection from ";
constexpr std::string_view kAcceptFailedMiddle = " failed: ";

}  // namespace

std::string_view to_string(TlsRefusal refusal) {
  switch (refusal) {
    case TlsRefusal::no_certificate: return "no_certificate";
    case TlsRefusal::verify_failed: return "verify_failed";
    case TlsRefusal::protocol_version: return "protocol_version";
    case TlsRefusal::other: return "other";
  }
  return "other";
}

std::optional<TlsRefusalLine> classify_tls_refusal(std::string_view line) {
  if (const auto at = line.find(kFirstError); at != std::string_view::npos) {
    const std::string_view error = line.substr(at + kFirstError.size());
    if (hung_up(error)) return std::nullopt;
    return TlsRefusalLine{reason_of(error), error, {}};
  }
  if (const auto at = line.find(kAcceptFailed); at != std::string_view::npos) {
    const std::string_view rest = line.substr(at + kAcceptFailed.size());
    const auto middle = rest.find(kAcceptFailedMiddle);
    if (middle == std::string_view::npos) return std::nullopt;  // "... denied access by tcpd." and such
    std::string_view error = rest.substr(middle + kAcceptFailedMiddle.size());
    if (!error.empty() && error.back() == '.') error.remove_suffix(1);
    if (hung_up(error)) return std::nullopt;
    return TlsRefusalLine{reason_of(error), error, rest.substr(0, middle)};
  }
  return std::nullopt;
}

std::string format_tls_refusal(const TlsRefusalLine& refusal) {
  std::string line = "nova-acl: refused tls reason=" + std::string(to_string(refusal.reason)) + " peer=";
  line += refusal.peer.empty() ? std::string("\"\"") : std::string(refusal.peer);
  line += " error=\"";
  for (const char c : refusal.error) {
    if (c == '"' || c == '\\') line += '\\';
    line += c;
  }
  line += '"';
  return line;
}

namespace {

struct FileState {
  std::uintmax_t size = 0;
  std::uintmax_t inode = 0;
};

std::optional<FileState> state_of(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileState{static_cast<std::uintmax_t>(st.st_size), static_cast<std::uintmax_t>(st.st_ino)};
}

}  // namespace

LogTail::LogTail(std::filesystem::path path) : path_(std::move(path)) {
  if (const auto state = state_of(path_)) {
    offset_ = state->size;
    inode_ = state->inode;
  }
}

std::vector<std::string> LogTail::read_new_lines() {
  std::vector<std::string> lines;
  const auto state = state_of(path_);
  if (!state) return lines;
  if (state->inode != inode_ || state->size < offset_) {
    // Rotated (another file at the path) or truncated: the new file from its start.
    offset_ = 0;
    inode_ = state->inode;
    partial_.clear();
  }
  if (state->size == offset_) return lines;
  std::ifstream in(path_, std::ios::binary);
  if (!in) return lines;
  in.seekg(static_cast<std::streamoff>(offset_));
  std::string chunk(static_cast<std::size_t>(state->size - offset_), '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<std::size_t>(in.gcount()));
  offset_ += chunk.size();
  partial_ += chunk;
  std::size_t start = 0;
  for (auto end = partial_.find('\n'); end != std::string::npos; end = partial_.find('\n', start)) {
    lines.emplace_back(partial_, start, end - start);
    start = end + 1;
  }
  partial_.erase(0, start);
  return lines;
}

}  // namespace nova::acl
