#include "nova/agent/cache_origin.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <charconv>
#include <memory>

namespace nova::agent {
namespace {

using schemas::Error;

constexpr std::size_t kMaxHeaderBytes = 16 * 1024;

OriginReply failure(std::string why) { return {OriginReply::Kind::error, std::move(why)}; }

bool unreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~' || c == '/';
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

// The value of header `name` (lower case) in `head`, or "" when absent.
std::string header(std::string_view head, std::string_view name) {
  const std::string h = lower(head);
  const std::string needle = "\r\n" + std::string(name) + ":";
  const auto p = h.find(needle);
  if (p == std::string::npos) return "";
  auto start = p + needle.size();
  const auto end = h.find("\r\n", start);
  while (start < end && h[start] == ' ') ++start;
  return h.substr(start, end - start);
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

schemas::Result<HttpOrigin> HttpOrigin::parse(std::string_view url, std::chrono::milliseconds timeout) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return Error{"cache.origin", "'" + std::string(url) + "' is not an http:// URL (https is not supported)"};
  }
  std::string_view rest = url.substr(kScheme.size());
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  while (path.ends_with('/')) path.remove_suffix(1);
  HttpOrigin o;
  o.timeout_ = timeout;
  o.base_ = std::string(path);
  if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    const std::string_view port = authority.substr(colon + 1);
    unsigned p = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535) {
      return Error{"cache.origin", "port '" + std::string(port) + "' is not 1..65535"};
    }
    o.port_ = static_cast<std::uint16_t>(p);
    authority = authority.substr(0, colon);
  }
  if (authority.empty()) return Error{"cache.origin", "'" + std::string(url) + "' names no host"};
  for (char c : authority) {
    if (!unreserved(c) || c == '/') return Error{"cache.origin", "host '" + std::string(authority) + "' is not a host name"};
  }
  o.host_ = std::string(authority);
  for (char c : o.base_) {
    if (!unreserved(c)) return Error{"cache.origin", "path '" + o.base_ + "' has a character that must be percent-encoded"};
  }
  return o;
}

std::string HttpOrigin::path_of(std::string_view key) const {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out = base_ + "/";
  for (char c : key) {
    if (unreserved(c)) {
      out += c;
    } else {
      const auto b = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 0xf];
    }
  }
  return out;
}

OriginReply HttpOrigin::fetch(std::string_view key) const {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host_.c_str(), std::to_string(port_).c_str(), &hints, &found); rc != 0) {
    return failure("resolve " + host_ + ": " + ::gai_strerror(rc));
  }
  const std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addrs(found, &::freeaddrinfo);
  Fd sock;
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout_.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout_.count() % 1000) * 1000);
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    Fd s{::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol)};
    if (s.fd < 0) continue;
    // Linux applies SO_SNDTIMEO to connect() too.
    ::setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(s.fd, a->ai_addr, a->ai_addrlen) == 0) {
      std::swap(sock.fd, s.fd);
      break;
    }
  }
  const std::string where = host_ + ":" + std::to_string(port_);
  if (sock.fd < 0) return failure("connect " + where + ": refused or timed out");
  const std::string request =
      "GET " + path_of(key) + " HTTP/1.0\r\nHost: " + host_ + "\r\nUser-Agent: nova-agent\r\n\r\n";
  for (std::size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(sock.fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return failure("send to " + where + " failed");
    sent += static_cast<std::size_t>(n);
  }
  std::string in;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::recv(sock.fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) return failure("read from " + where + ": timed out or reset");
    in.append(buf, static_cast<std::size_t>(n));
    if (in.size() > kCacheMaxValueBytes + kMaxHeaderBytes) return failure("answer from " + where + " is over 4 MiB");
  }
  const auto head_end = in.find("\r\n\r\n");
  if (!in.starts_with("HTTP/1.") || in.size() < 12 || head_end == std::string::npos) {
    return failure("answer from " + where + " is not HTTP");
  }
  const std::string_view head(in.data(), head_end + 2);
  const std::string code = in.substr(9, 3);
  if (code == "404" || code == "410") return {OriginReply::Kind::not_found, ""};
  if (code != "200") return failure("origin answered HTTP " + code + " for " + path_of(key));
  if (!header(head, "transfer-encoding").empty()) return failure("answer from " + where + " is chunked");
  std::string body = in.substr(head_end + 4);
  if (const std::string length = header(head, "content-length"); !length.empty() && length != std::to_string(body.size())) {
    return failure("answer from " + where + " is truncated: " + std::to_string(body.size()) + " of " + length + " bytes");
  }
  if (body.size() > kCacheMaxValueBytes) return failure("value from " + where + " is over 4 MiB");
  return {OriginReply::Kind::value, std::move(body)};
}

}  // namespace nova::agent
