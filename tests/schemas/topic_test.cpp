#include <catch2/catch.hpp>

#include "nova/schemas/topic.h"

using namespace nova::topics;

namespace {
Id id(std::string_view s) { return Id::parse(s).value(); }
SitePath path(std::string_view s) { return SitePath::parse(s).value(); }
std::string parse_error(std::string_view topic) {
  auto t = parse(topic);
  return t.ok() ? "(accepted)" : t.error().message();
}
}  // namespace

TEST_CASE("builders produce the documented grammar", "[topic]") {
  CHECK(up(id("gw-01"), UpKind::state) == "nova/v1/up/gw-01/state");
  CHECK(up_sensor(id("gw-01"), id("s1")) == "nova/v1/up/gw-01/sensor/s1");
  CHECK(down(path("cloud/eu/par/acc-01"), id("gw-01"), DownKind::task) ==
        "nova/v1/down/cloud/eu/par/acc-01/gw-01/task");
  CHECK(sensor(id("gw-01"), id("s1")) == "nova/v1/sensor/gw-01/s1");
  CHECK(sensor_error(id("gw-01"), id("s1")) == "nova/v1/sensor/gw-01/s1/error");
  CHECK(cloud(CloudKind::placement, id("w-9")) == "nova/v1/cloud/placement/w-9");
  CHECK(up_all() == "nova/v1/up/#");
  CHECK(down_subtree(path("cloud/eu")) == "nova/v1/down/cloud/eu/#");
  CHECK(sensor_all(id("gw-01")) == "nova/v1/sensor/gw-01/+");
  CHECK(local(id("gw-01"), id("alert")) == "nova/v1/local/gw-01/alert");
  CHECK(local_all(id("gw-01")) == "nova/v1/local/gw-01/#");
}

TEST_CASE("parse inverts every builder", "[topic]") {
  auto t = parse("nova/v1/up/gw-01/metrics");
  REQUIRE(t.ok());
  const auto& u = std::get<UpTopic>(*t);
  CHECK(u.node.str() == "gw-01");
  CHECK(u.kind == UpKind::metrics);

  t = parse("nova/v1/down/cloud/eu/par/acc-01/gw-01/config");
  REQUIRE(t.ok());
  const auto& d = std::get<DownTopic>(*t);
  CHECK(d.site.str() == "cloud/eu/par/acc-01");
  CHECK(d.node.str() == "gw-01");
  CHECK(d.kind == DownKind::config);

  t = parse("nova/v1/sensor/gw-01/s1/error");
  REQUIRE(t.ok());
  CHECK(std::get<SensorTopic>(*t).error_reply);
  t = parse("nova/v1/up/gw-01/sensor/s1");
  REQUIRE(t.ok());
  CHECK(std::get<UpSensorTopic>(*t).sensor.str() == "s1");
  t = parse("nova/v1/cloud/cluster/edge-eu");
  REQUIRE(t.ok());
  CHECK(std::get<CloudTopic>(*t).kind == CloudKind::cluster);

  for (UpKind k : {UpKind::state, UpKind::metrics, UpKind::result, UpKind::decision, UpKind::alert,
                   UpKind::link, UpKind::erasure}) {
    auto p = parse(up(id("n"), k));
    REQUIRE(p.ok());
    CHECK(std::get<UpTopic>(*p).kind == k);
  }
  for (DownKind k : {DownKind::task, DownKind::config, DownKind::model, DownKind::ack, DownKind::verdict, DownKind::update,
                     DownKind::cancel, DownKind::erase}) {
    auto p = parse(down(path("c/r"), id("n"), k));
    REQUIRE(p.ok());
    CHECK(std::get<DownTopic>(*p).kind == k);
  }
}

TEST_CASE("ids refuse wildcards, separators, empties and oversize", "[topic]") {
  CHECK(Id::parse("gw-01.eu_west").ok());
  CHECK(Id::parse("").error().reason == "empty id");
  CHECK(Id::parse("a+b").error().reason == "'+' is not allowed in an id");
  CHECK(Id::parse("a#").error().reason == "'#' is not allowed in an id");
  CHECK(Id::parse("a/b").error().reason == "'/' is not allowed in an id");
  CHECK(Id::parse("$SYS").error().reason == "'$' is not allowed in an id");
  CHECK(Id::parse("a b").error().reason == "0x20 is not allowed in an id");
  CHECK(Id::parse("-x").error().reason == "id must not start with '-'");
  CHECK(Id::parse(std::string(65, 'a')).error().reason == "id of 65 bytes is over the limit of 64");
  CHECK(Id::parse(std::string(64, 'a')).ok());
}

TEST_CASE("parse names the bad level", "[topic]") {
  CHECK(parse_error("nova/v2/up/n/state") == "unsupported topic version 'v2' (expected v1)");
  CHECK(parse_error("other/v1/up/n") == "not a NovaCron topic (expected nova/v1/...)");
  CHECK(parse_error("nova/v1/up/+/state") == "level 4 (node): '+' is not allowed in an id");
  CHECK(parse_error("nova/v1/up/n/bogus") == "level 5: unknown upward kind 'bogus'");
  CHECK(parse_error("nova/v1/up//state") == "level 4 (node): empty id");
  CHECK(parse_error("nova/v1/down/c//n/task") == "level 5 (site): empty id");
  CHECK(parse_error("nova/v1/down/c/n/fly") == "level 6: unknown downward kind 'fly'");
  CHECK(parse_error("nova/v1/down/n/task") ==
        "downward topic must be nova/v1/down/<site path>/<node>/<kind>");
  CHECK(parse_error("nova/v1/sensor/n/s/extra") == "sensor topic must be nova/v1/sensor/<node>/<sensor>[/error]");
  CHECK(parse_error("nova/v1/weird/x/y") ==
        "level 3: unknown family 'weird' (expected up, down, sensor or cloud)");
  CHECK(parse_error("nova/v1/down/a/b/c/d/e/f/g/h/i/n/task") == "site path deeper than 8 levels");
  CHECK_THAT(parse_error("nova/v1/up/" + std::string(2000, 'a') + "/state"),
             Catch::Contains("over the limit of 1024"));
}

TEST_CASE("site paths: subtree membership", "[topic]") {
  const SitePath metro = path("cloud/eu/par");
  CHECK(path("cloud/eu/par/acc-01").within(metro));
  CHECK(metro.within(metro));
  CHECK_FALSE(path("cloud/eu/lyon/acc-01").within(metro));
  CHECK_FALSE(path("cloud/eu").within(metro));
  CHECK(metro.child(id("acc-02")).str() == "cloud/eu/par/acc-02");
  CHECK(SitePath::parse("a/b/c/d/e/f/g/h/i").error().reason ==
        "site path of 9 levels is deeper than 8");
}
