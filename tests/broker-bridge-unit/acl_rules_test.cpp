// The rules of the nova_acl broker plugin (broker-bridge/acl-plugin/include/nova/acl/
// rules.h): Mosquitto's acl_file semantics, the subscription checks Mosquitto's own
// acl_file lacks, and the denial log line. Pure logic; acl_test.cpp and tls_acl_test.cpp
// run the same rules inside a real broker.
#include <catch2/catch.hpp>
#include <string>

#include "nova/acl/rules.h"

namespace {

using nova::acl::Access;
using nova::acl::Client;
using nova::acl::Reason;
using nova::acl::Rules;

Rules parse(const std::string& text) {
  std::string error;
  auto rules = Rules::parse(text, error);
  INFO(error);
  REQUIRE(rules);
  return *rules;
}

Reason check(const Rules& rules, const Client& client, const std::string& topic, Access access) {
  return rules.check(client, topic, access).reason;
}

const char* const kAcl =
    "# comment\n"
    "topic read nova/v1/down/#\n"
    "pattern write nova/v1/up/%c/#\n"
    "pattern readwrite nova-bridge/probe/%u\n"
    "\n"
    "user dev-1\n"
    "topic deny nova/v1/up/dev-1/link\n"
    "topic write nova/v1/up/dev-1/#\n"
    "topic read nova/v1/down/cloud/eu/dev-1/#\n"
    "user nova-cloud\n"
    "topic nova/v1/#\n"
    "topic read $SYS/#\n";

}  // namespace

TEST_CASE("acl rules: a user's section grants its topics and its deny lines win", "[acl_rules]") {
  const Rules rules = parse(kAcl);
  const Client dev{"dev-1", "dev-1"};
  CHECK(check(rules, dev, "nova/v1/up/dev-1/state", Access::write) == Reason::granted);
  CHECK(check(rules, dev, "nova/v1/up/dev-1/link", Access::write) == Reason::explicit_deny);
  CHECK(check(rules, dev, "nova/v1/up/dev-2/state", Access::write) == Reason::no_grant);
  CHECK(check(rules, dev, "nova/v1/up/dev-1/state", Access::read) == Reason::no_grant);
  CHECK(check(rules, dev, "nova/v1/down/cloud/eu/dev-1/task", Access::read) == Reason::granted);
  CHECK(check(rules, dev, "nova/v1/down/cloud/eu/dev-2/task", Access::read) == Reason::no_grant);
  // A line without an access word is readwrite.
  const Client cloud{"c", "nova-cloud"};
  CHECK(check(rules, cloud, "nova/v1/down/x", Access::write) == Reason::granted);
  CHECK(check(rules, cloud, "nova/v1/up/x", Access::read) == Reason::granted);
}

TEST_CASE("acl rules: topic lines before any user are the anonymous section", "[acl_rules]") {
  const Rules rules = parse(kAcl);
  CHECK(check(rules, Client{"dev-9", std::nullopt}, "nova/v1/down/any/task", Access::read) == Reason::granted);
  // A user without a section of its own gets the patterns only, not the anonymous lines.
  CHECK(check(rules, Client{"x", "stranger"}, "nova/v1/down/any/task", Access::read) == Reason::no_grant);
}

TEST_CASE("acl rules: patterns substitute the client id and username, never a wildcard", "[acl_rules]") {
  const Rules rules = parse(kAcl);
  CHECK(check(rules, Client{"dev-9", std::nullopt}, "nova/v1/up/dev-9/state", Access::write) == Reason::granted);
  CHECK(check(rules, Client{"dev-9", std::nullopt}, "nova/v1/up/dev-8/state", Access::write) == Reason::no_grant);
  CHECK(check(rules, Client{"x", "op"}, "nova-bridge/probe/op", Access::read) == Reason::granted);
  // An identity holding a wildcard or a level separator would widen the filter.
  CHECK(check(rules, Client{"#", std::nullopt}, "nova/v1/up/a/state", Access::write) == Reason::no_grant);
  CHECK(check(rules, Client{"a/b", std::nullopt}, "nova/v1/up/a/b/state", Access::write) == Reason::no_grant);
  // No username: %u grants nothing.
  CHECK(check(rules, Client{"x", std::nullopt}, "nova-bridge/probe/", Access::read) == Reason::no_grant);
}

TEST_CASE("acl rules: $ topics match only filters starting with $", "[acl_rules]") {
  const Rules rules = parse("user a\ntopic read #\nuser b\ntopic read $SYS/#\n");
  CHECK(check(rules, Client{"a", "a"}, "$SYS/broker/uptime", Access::read) == Reason::no_grant);
  CHECK(check(rules, Client{"b", "b"}, "$SYS/broker/uptime", Access::read) == Reason::granted);
  CHECK(check(rules, Client{"a", "a"}, "$SYS/#", Access::subscribe) == Reason::no_grant);
  CHECK(check(rules, Client{"b", "b"}, "$SYS/broker/nova/acl/denied/+", Access::subscribe) == Reason::granted);
}

TEST_CASE("acl rules: a subscription is refused when no read grant overlaps it", "[acl_rules]") {
  const Rules rules = parse(kAcl);
  const Client dev{"dev-1", "dev-1"};
  // Overlapping its own down topics: granted (each message is then checked for read).
  CHECK(check(rules, dev, "nova/v1/down/#", Access::subscribe) == Reason::granted);
  CHECK(check(rules, dev, "nova/v1/down/cloud/+/dev-1/task", Access::subscribe) == Reason::granted);
  // Write-only and unrelated filters deliver nothing: refused.
  CHECK(check(rules, dev, "nova/v1/up/#", Access::subscribe) == Reason::no_grant);
  CHECK(check(rules, dev, "nova/v1/cloud/#", Access::subscribe) == Reason::no_grant);
  // A deny line covering the whole filter refuses it explicitly.
  const Rules denying = parse("user u\ntopic deny nova/v1/up/+/link\ntopic read nova/v1/up/#\n");
  CHECK(check(denying, Client{"u", "u"}, "nova/v1/up/a/link", Access::subscribe) == Reason::explicit_deny);
  CHECK(check(denying, Client{"u", "u"}, "nova/v1/up/#", Access::subscribe) == Reason::granted);
  // Shared subscriptions are checked on the filter they share.
  const Client cloud{"c", "nova-cloud"};
  CHECK(check(rules, cloud, "$share/g/nova/v1/up/#", Access::subscribe) == Reason::granted);
  CHECK(check(rules, dev, "$share/g/nova/v1/up/#", Access::subscribe) == Reason::no_grant);
}

TEST_CASE("acl rules: filter overlap and coverage follow MQTT wildcards", "[acl_rules]") {
  using nova::acl::filter_covers;
  using nova::acl::filters_overlap;
  CHECK(filters_overlap("a/#", "a"));
  CHECK(filters_overlap("a/+/c", "a/b/+"));
  CHECK(filters_overlap("#", "x/y"));
  CHECK_FALSE(filters_overlap("a/b", "a/c"));
  CHECK_FALSE(filters_overlap("a/+", "a/b/c"));
  CHECK_FALSE(filters_overlap("#", "$SYS/x"));
  CHECK(filter_covers("a/#", "a/b/+"));
  CHECK(filter_covers("a/#", "a"));
  CHECK(filter_covers("a/+/c", "a/b/c"));
  CHECK_FALSE(filter_covers("a/+/c", "a/#"));
  CHECK_FALSE(filter_covers("a/b", "a/+"));
  CHECK_FALSE(filter_covers("a/b", "a/b/c"));
}

TEST_CASE("acl rules: a file it cannot read is refused naming the line and the reason", "[acl_rules]") {
  std::string error;
  CHECK_FALSE(Rules::parse("user a\ntopic read a/#\ntopik read b\n", error));
  CHECK(error == "line 3: unknown keyword 'topik' (user, topic or pattern)");
  CHECK_FALSE(Rules::parse("user a\ntopic read\n", error));
  CHECK(error == "line 2: `topic` needs a topic filter");
  CHECK_FALSE(Rules::parse("topic write a/#/b\n", error));
  CHECK(error == "line 1: 'a/#/b' is not a valid MQTT topic filter");
  CHECK_FALSE(Rules::parse("user a\ntopic reed a/#\n", error));
  CHECK(error == "line 2: unknown access 'reed' (read, write, readwrite or deny)");
  CHECK_FALSE(Rules::parse("user\n", error));
  CHECK(error == "line 1: `user` needs a name");
}

TEST_CASE("acl rules: the denial line names client, user, access, topic and reason", "[acl_rules]") {
  using nova::acl::format_denial;
  CHECK(format_denial(Client{"dev-1", "dev-1"}, "nova/v1/down/x/task", Access::write, Reason::no_grant) ==
        "nova-acl: denied access=write client=dev-1 user=dev-1 topic=nova/v1/down/x/task reason=no_grant");
  CHECK(format_denial(Client{"a b", std::nullopt}, "t/\"q\"", Access::subscribe, Reason::explicit_deny) ==
        "nova-acl: denied access=subscribe client=\"a b\" user=\"\" topic=\"t/\\\"q\\\"\" reason=explicit_deny");
}
