// The ACL of every NovaCron broker, as the nova_acl Mosquitto plugin applies it
// (plugin.cpp): the file nova-bridge renders, in Mosquitto's acl_file format, and the
// verdict for one client, topic and access. Pure logic: no broker, no I/O.
//
// The file format is Mosquitto 2.0.11's acl_file, with its semantics:
//   - `# ...` and blank lines are ignored; leading spaces are ignored.
//   - `user <name>` starts the section of clients with that username; `topic` lines
//     before the first `user` line form the section of anonymous clients.
//   - `topic [read|write|readwrite|deny] <filter>` adds to the current section (no
//     access word: readwrite). `pattern [...] <filter>` applies to every client, with %u
//     replaced by its username and %c by its client id; a pattern naming an identity
//     that is absent or holds '+', '#' or '/' grants nothing.
//   - The client's section is checked first, then the patterns; in each, deny lines
//     come first: a deny line matching the topic refuses it, else a grant with the
//     access allows it. Nothing matching: refused.
//   - A filter starting with '$' only matches topics starting with '$', and back.
//
// Subscriptions (which Mosquitto's own acl_file grants whatever they name) are refused
// when no read grant could ever deliver anything through them, or when a deny line
// covers the whole filter. A subscription that overlaps a grant is allowed, and each
// message it would deliver is then checked for read: "$share/<group>/" is dropped first.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nova::acl {

// The plugin counts denials per access on retained topics of its broker: this prefix,
// then "read", "write" or "subscribe" (decimal, since the broker started).
inline constexpr std::string_view kDeniedCounterPrefix = "$SYS/broker/nova/acl/denied/";

enum class Access { read, write, subscribe };
inline constexpr std::array kAccesses{Access::read, Access::write, Access::subscribe};
std::string_view to_string(Access access);

enum class Reason {
  granted,
  no_grant,       // no grant of the client's section or of a pattern matches
  explicit_deny,  // a deny line matches first
};
std::string_view to_string(Reason reason);

struct Verdict {
  Reason reason = Reason::no_grant;
  bool allowed() const { return reason == Reason::granted; }
};

// Who asks. An anonymous client has no username.
struct Client {
  std::string_view id;
  std::optional<std::string_view> username;
};

class Rules {
 public:
  // Parses an ACL file's text. On a line it cannot read: nullopt, and `error` says
  // "line N: <reason>" (an unknown keyword, an access word other than read, write,
  // readwrite or deny, a missing filter, a filter MQTT refuses).
  static std::optional<Rules> parse(std::string_view text, std::string& error);

  Verdict check(const Client& client, std::string_view topic, Access access) const;

 private:
  struct Entry {
    std::string filter;
    std::uint8_t access = 0;  // kRead | kWrite; 0 = deny
  };
  using Section = std::vector<Entry>;  // deny lines first, then grants, in file order
  static Verdict check_section(const Section& section, const Client& client, const std::string& topic,
                               Access access, bool is_pattern);

  std::optional<Section> anonymous_;
  std::map<std::string, Section, std::less<>> users_;
  Section patterns_;
};

// MQTT filter relations, level by level ('+' one level, '#' the rest, the level before
// it included; '$' topics apart).
// Some topic matches both filters.
bool filters_overlap(std::string_view a, std::string_view b);
// Every topic matching `inner` matches `outer`.
bool filter_covers(std::string_view outer, std::string_view inner);

// The broker log line of a denial: "nova-acl: denied access=write client=dev-1
// user=dev-1 topic=nova/v1/down/x reason=no_grant"; a value holding a space, '"', '='
// or nothing is written in double quotes with '"' and '\' escaped; an anonymous client
// has user="".
std::string format_denial(const Client& client, std::string_view topic, Access access, Reason reason);

}  // namespace nova::acl
