// Structured logs for NovaCron's daemons: one event per line on stderr, so journald keeps
// them. Two formats, chosen by the daemon's `log.format` key:
//   logfmt (`journalctl -o cat | grep event=` finds them):
//     ts=2026-11-26T10:00:00Z level=info event=started node=dev-1 broker="tcp://..."
//   json (one object per line, what log shippers expect; the same keys, values as
//   strings except integers):
//     {"ts":"2026-11-26T10:00:00Z","level":"info","event":"started","node":"dev-1",...}
// and a least severe level (`log.level`): lines below it are not written.
//
// Callers always write their fields in logfmt (key=value, values with spaces quoted with
// logfmt_quote); the json format converts them, so no call site depends on the format.
//
// A daemon calls set_log_options() once its config is loaded and again on every reload:
// the options are atomics, so a change applies to the next line of every thread.
// Until then: info, logfmt.
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace nova::common {

enum class LogLevel { debug, info, warning, error };
enum class LogFormat { logfmt, json };
// The config files' spellings, in the enums' order.
inline constexpr std::array<std::string_view, 4> kLogLevelNames{"debug", "info", "warning", "error"};
inline constexpr std::array<std::string_view, 2> kLogFormatNames{"logfmt", "json"};

void set_log_options(LogLevel level, LogFormat format);

// Would a line of `level` ("debug", "info", "warning" or "warn", "error") be written?
// A level not in that list is always written.
bool log_enabled(const char* level);

// Writes one line (see above) and a newline, in one write, if `level` is enabled.
void log_line(const char* level, const std::string& event, const std::string& fields = "");

// A logfmt value in double quotes, with '"' and '\' escaped and line breaks as \n.
std::string logfmt_quote(std::string_view value);

// The JSON object of one logfmt line ("a=1 b=\"x y\"" -> {"a":1,"b":"x y"}): what the
// json format writes, exposed for tests. A bare word without '=' becomes {"word":""}.
std::string logfmt_to_json(std::string_view line);

}  // namespace nova::common
