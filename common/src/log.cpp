#include "nova/common/log.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace nova::common {
namespace {

std::atomic<LogLevel> g_level{LogLevel::info};
std::atomic<LogFormat> g_format{LogFormat::logfmt};

// -1: not a level name (always written).
int rank(const char* level) {
  if (std::strcmp(level, "debug") == 0) return static_cast<int>(LogLevel::debug);
  if (std::strcmp(level, "info") == 0) return static_cast<int>(LogLevel::info);
  if (std::strcmp(level, "warning") == 0 || std::strcmp(level, "warn") == 0) return static_cast<int>(LogLevel::warning);
  if (std::strcmp(level, "error") == 0) return static_cast<int>(LogLevel::error);
  return -1;
}

void json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof esc, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += esc;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

// A JSON integer as written: "0" or an optional '-' and digits without a leading zero,
// short enough for any parser's integer.
bool json_integer(std::string_view v) {
  std::string_view d = v.starts_with('-') ? v.substr(1) : v;
  if (d.empty() || d.size() > 15 || (d.size() > 1 && d[0] == '0')) return false;
  for (char c : d) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

void set_log_options(LogLevel level, LogFormat format) {
  g_level.store(level);
  g_format.store(format);
}

bool log_enabled(const char* level) {
  const int r = rank(level);
  return r < 0 || r >= static_cast<int>(g_level.load());
}

std::string logfmt_to_json(std::string_view line) {
  std::string out = "{";
  std::size_t i = 0;
  bool first = true;
  while (i < line.size()) {
    if (line[i] == ' ') {
      ++i;
      continue;
    }
    const std::size_t key_end = line.find_first_of("= ", i);
    const std::string_view key = line.substr(i, key_end == std::string_view::npos ? std::string_view::npos : key_end - i);
    i = key_end == std::string_view::npos ? line.size() : key_end;
    std::string value;
    bool quoted = false;
    if (i < line.size() && line[i] == '=') {
      ++i;
      if (i < line.size() && line[i] == '"') {  // logfmt_quote's escapes: \" \\ \n
        quoted = true;
        for (++i; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            value += line[i] == 'n' ? '\n' : line[i];
          } else {
            value += line[i];
          }
        }
        ++i;  // the closing quote
      } else {
        const std::size_t end = line.find(' ', i);
        value = line.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i);
        i = end == std::string_view::npos ? line.size() : end;
      }
    }
    out += first ? "" : ",";
    first = false;
    json_string(out, key);
    out += ':';
    if (!quoted && json_integer(value)) {
      out += value;
    } else {
      json_string(out, value);
    }
  }
  return out + "}";
}

void log_line(const char* level, const std::string& event, const std::string& fields) {
  if (!log_enabled(level)) return;
  char ts[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::string line = std::string("ts=") + ts + " level=" + level + " event=" + event;
  if (!fields.empty()) line += " " + fields;
  if (g_format.load() == LogFormat::json) line = logfmt_to_json(line);
  line += "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

std::string logfmt_quote(std::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

}  // namespace nova::common
