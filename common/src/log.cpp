#include "nova/common/log.h"

#include <cstdio>
#include <ctime>

namespace nova::common {

void log_line(const char* level, const std::string& event, const std::string& fields) {
  char ts[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::string line = std::string("ts=") + ts + " level=" + level + " event=" + event;
  if (!fields.empty()) line += " " + fields;
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
