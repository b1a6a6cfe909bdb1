#include "nova/acl/rules.h"

#include <mosquitto.h>

#include <algorithm>

namespace nova::acl {
namespace {

constexpr std::uint8_t kRead = 1;
constexpr std::uint8_t kWrite = 2;

std::vector<std::string_view> levels(std::string_view filter) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = filter.find('/', start);
    out.push_back(filter.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) return out;
    start = slash + 1;
  }
}

// '$' topics are matched only by filters that start with '$' (MQTT 3.1.1, 4.7.2).
bool dollar_apart(std::string_view a, std::string_view b) {
  return a.starts_with('$') != b.starts_with('$');
}

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(" \t\r") - first + 1);
}

std::string_view next_word(std::string_view& rest) {
  rest = trim(rest);
  const std::size_t end = std::min(rest.find_first_of(" \t"), rest.size());
  const std::string_view word = rest.substr(0, end);
  rest = trim(rest.substr(end));
  return word;
}

// The filter of a pattern line for this client; nullopt if an identity it names is
// absent or could widen the filter (Mosquitto refuses the same).
std::optional<std::string> substitute(std::string_view filter, const Client& client) {
  std::string out;
  for (std::size_t i = 0; i < filter.size(); ++i) {
    if (filter[i] == '%' && i + 1 < filter.size() && (filter[i + 1] == 'u' || filter[i + 1] == 'c')) {
      const std::optional<std::string_view> value =
          filter[i + 1] == 'u' ? client.username : std::optional<std::string_view>(client.id);
      if (!value || value->empty() || value->find_first_of("+#/") != std::string_view::npos) return std::nullopt;
      out += *value;
      ++i;
    } else {
      out += filter[i];
    }
  }
  return out;
}

bool topic_matches(const std::string& filter, const std::string& topic) {
  if (dollar_apart(filter, topic)) return false;
  bool result = false;
  return mosquitto_topic_matches_sub(filter.c_str(), topic.c_str(), &result) == MOSQ_ERR_SUCCESS && result;
}

// A subscription's filter without "$share/<group>/".
std::string_view unshared(std::string_view filter) {
  if (!filter.starts_with("$share/")) return filter;
  const std::size_t slash = filter.find('/', 7);
  return slash == std::string_view::npos ? filter : filter.substr(slash + 1);
}

std::string quoted_if_needed(std::string_view value) {
  if (!value.empty() && value.find_first_of(" \"=\\\t") == std::string_view::npos) return std::string(value);
  std::string out = "\"";
  for (const char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string_view to_string(Access access) {
  switch (access) {
    case Access::read: return "read";
    case Access::write: return "write";
    case Access::subscribe: return "subscribe";
  }
  return "?";
}

std::string_view to_string(Reason reason) {
  switch (reason) {
    case Reason::granted: return "granted";
    case Reason::no_grant: return "no_grant";
    case Reason::explicit_deny: return "explicit_deny";
  }
  return "?";
}

bool filters_overlap(std::string_view a, std::string_view b) {
  if (dollar_apart(a, b)) return false;
  const auto la = levels(a);
  const auto lb = levels(b);
  std::size_t i = 0;
  for (; i < la.size() && i < lb.size(); ++i) {
    if (la[i] == "#" || lb[i] == "#") return true;
    if (la[i] != "+" && lb[i] != "+" && la[i] != lb[i]) return false;
  }
  if (la.size() == lb.size()) return true;
  // One ended: "a/#" matches "a" too.
  const auto& longer = la.size() > lb.size() ? la : lb;
  return longer.size() == i + 1 && longer[i] == "#";
}

bool filter_covers(std::string_view outer, std::string_view inner) {
  if (dollar_apart(outer, inner)) return false;
  const auto lo = levels(outer);
  const auto li = levels(inner);
  for (std::size_t i = 0; i < lo.size(); ++i) {
    if (lo[i] == "#") return true;
    if (i >= li.size() || li[i] == "#") return false;
    if (lo[i] != "+" && (li[i] == "+" || lo[i] != li[i])) return false;
  }
  return lo.size() == li.size();
}

std::optional<Rules> Rules::parse(std::string_view text, std::string& error) {
  Rules rules;
  Section* current = nullptr;  // the section `topic` lines add to
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const std::size_t eol = std::min(text.find('\n'), text.size());
    std::string_view rest = trim(text.substr(0, eol));
    text.remove_prefix(std::min(eol + 1, text.size()));
    if (rest.empty() || rest.starts_with('#')) continue;
    const auto fail = [&](const std::string& reason) {
      error = "line " + std::to_string(line_no) + ": " + reason;
      return std::nullopt;
    };
    const std::string_view keyword = next_word(rest);
    if (keyword == "user") {
      if (rest.empty()) return fail("`user` needs a name");
      current = &rules.users_[std::string(rest)];
      continue;
    }
    if (keyword != "topic" && keyword != "pattern") {
      return fail("unknown keyword '" + std::string(keyword) + "' (user, topic or pattern)");
    }
    std::uint8_t access = kRead | kWrite;
    std::string_view filter = rest;
    std::string_view after = rest;
    const std::string_view word = next_word(after);
    if (word == "read" || word == "write" || word == "readwrite" || word == "deny") {
      access = word == "read" ? kRead : word == "write" ? kWrite : word == "deny" ? 0 : kRead | kWrite;
      filter = after;
    } else if (!after.empty()) {
      return fail("unknown access '" + std::string(word) + "' (read, write, readwrite or deny)");
    }
    if (filter.empty()) return fail("`" + std::string(keyword) + "` needs a topic filter");
    const std::string f(filter);
    if (mosquitto_sub_topic_check(f.c_str()) != MOSQ_ERR_SUCCESS) {
      return fail("'" + f + "' is not a valid MQTT topic filter");
    }
    Section* section = &rules.patterns_;
    if (keyword == "topic") {
      if (current == nullptr) {
        if (!rules.anonymous_) rules.anonymous_.emplace();
        current = &*rules.anonymous_;
      }
      section = current;
    }
    // Deny lines stand before every grant of their section, whatever the file order.
    const Entry entry{f, access};
    if (access == 0) {
      const auto first_grant = std::find_if(section->begin(), section->end(), [](const Entry& e) { return e.access != 0; });
      section->insert(first_grant, entry);
    } else {
      section->push_back(entry);
    }
  }
  return rules;
}

Verdict Rules::check_section(const Section& section, const Client& client, const std::string& topic, Access access,
                             bool is_pattern) {
  std::optional<std::string> substituted;  // a pattern's filter for this client
  for (const Entry& entry : section) {
    if (is_pattern) {
      substituted = substitute(entry.filter, client);
      if (!substituted) continue;
    }
    // Called for every publish and every delivery: a grant's filter is not copied.
    const std::string& filter = is_pattern ? *substituted : entry.filter;
    if (access == Access::subscribe) {
      if (entry.access == 0 && filter_covers(filter, topic)) return {Reason::explicit_deny};
      if ((entry.access & kRead) != 0 && filters_overlap(filter, topic)) return {Reason::granted};
      continue;
    }
    if (!topic_matches(filter, topic)) continue;
    if (entry.access == 0) return {Reason::explicit_deny};
    if ((entry.access & (access == Access::read ? kRead : kWrite)) != 0) return {Reason::granted};
  }
  return {Reason::no_grant};
}

Verdict Rules::check(const Client& client, std::string_view topic_view, Access access) const {
  const std::string topic(access == Access::subscribe ? unshared(topic_view) : topic_view);
  const Section* own = nullptr;
  if (client.username) {
    if (const auto it = users_.find(*client.username); it != users_.end()) own = &it->second;
  } else if (anonymous_) {
    own = &*anonymous_;
  }
  if (own != nullptr) {
    if (const Verdict v = check_section(*own, client, topic, access, false); v.reason != Reason::no_grant) return v;
  }
  return check_section(patterns_, client, topic, access, true);
}

std::string format_denial(const Client& client, std::string_view topic, Access access, Reason reason) {
  std::string line = "nova-acl: denied access=";
  line += to_string(access);
  line += " client=" + quoted_if_needed(client.id);
  line += " user=" + quoted_if_needed(client.username.value_or(""));
  line += " topic=" + quoted_if_needed(topic);
  line += " reason=";
  line += to_string(reason);
  return line;
}

}  // namespace nova::acl
