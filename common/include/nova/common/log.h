// Structured logs for NovaCron's daemons: one event per line on stderr, logfmt, so
// journald keeps them and `journalctl -o cat | grep event=` finds them:
//   ts=2026-11-26T10:00:00Z level=info event=started node=dev-1 broker="tcp://..."
#pragma once

#include <string>
#include <string_view>

namespace nova::common {

// Writes "ts=... level=<level> event=<event> <fields>" and a newline, in one write.
void log_line(const char* level, const std::string& event, const std::string& fields = "");

// A logfmt value in double quotes, with '"' and '\' escaped and line breaks as \n.
std::string logfmt_quote(std::string_view value);

}  // namespace nova::common
