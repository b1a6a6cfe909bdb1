// SubscriptionWatch: the pure logic that decides whether each subscription delivers.
#include <catch2/catch.hpp>

#include "nova/cloud/subscriptions.h"

using nova::cloud::SubscriptionWatch;

namespace {

// Delivers every probe the watch asks for, as a broker that serves the filter would.
void echo_probes(SubscriptionWatch& w, const SubscriptionWatch::Actions& a, nova::schemas::Timestamp now) {
  for (const auto& [topic, payload] : a.probes) w.probe_arrived(payload, now);
}

}  // namespace

TEST_CASE("probe topics are concrete topics the filter matches", "[cloud][subscriptions]") {
  CHECK(SubscriptionWatch::probe_topic("nova/v1/up/+/alert", "cloud-a") == "nova/v1/up/cloud-a/alert");
  CHECK(SubscriptionWatch::probe_topic("$share/ingest/nova/v1/up/+/metrics", "cloud-a") == "nova/v1/up/cloud-a/metrics");
  CHECK(SubscriptionWatch::probe_topic("nova/v1/cloud/#", "cloud-a") == "nova/v1/cloud/probe/cloud-a");
  CHECK(SubscriptionWatch::unshared("$share/g/nova/v1/up/+/alert") == "nova/v1/up/+/alert");
  CHECK_FALSE(SubscriptionWatch::unshared("nova/v1/up/+/alert"));
}

TEST_CASE("a filter delivers once its probe comes back, a peer's probe is not ours", "[cloud][subscriptions]") {
  SubscriptionWatch w("cloud-a");
  w.reset({"nova/v1/up/+/state"}, 0);
  CHECK(w.not_delivering().size() == 1);
  w.suback("nova/v1/up/+/state", 1, 10);
  auto a = w.due(10);
  REQUIRE(a.probes.size() == 1);
  CHECK_FALSE(w.probe_arrived("nova-cloud-probe cloud-b nova/v1/up/+/state", 20));
  CHECK(w.not_delivering().size() == 1);
  echo_probes(w, a, 20);
  CHECK(w.not_delivering().empty());
  CHECK(w.due(30).probes.empty());
}

TEST_CASE("a SUBACK refusal is reported, retried and recovers", "[cloud][subscriptions]") {
  SubscriptionWatch w("cloud-a");
  w.reset({"nova/v1/up/+/alert"}, 0);
  w.suback("nova/v1/up/+/alert", 0x80, 5);
  auto a = w.due(5);
  REQUIRE(a.refused.size() == 1);
  CHECK(a.refused[0].reason.find("SUBACK 0x80") != std::string::npos);
  REQUIRE(w.not_delivering().size() == 1);
  CHECK(w.not_delivering()[0].find("SUBACK 0x80") != std::string::npos);
  CHECK(w.due(1000).subscribe.empty());  // not before retry_interval
  a = w.due(2005);
  REQUIRE(a.subscribe == std::vector<std::string>{"nova/v1/up/+/alert"});
  w.suback("nova/v1/up/+/alert", 1, 2010);
  echo_probes(w, w.due(2010), 2011);
  a = w.due(2020);
  CHECK(a.recovered == std::vector<std::string>{"nova/v1/up/+/alert"});
  CHECK(w.not_delivering().empty());
}

TEST_CASE("a granted filter whose probe never comes back is refused as deaf", "[cloud][subscriptions]") {
  SubscriptionWatch w("cloud-a");
  w.reset({"nova/v1/up/+/alert"}, 0);
  w.suback("nova/v1/up/+/alert", 1, 0);
  std::size_t probes = 0;
  SubscriptionWatch::Actions a;
  for (nova::schemas::Timestamp t = 0; t <= 3000 && a.refused.empty(); t += 250) {
    a = w.due(t);
    probes += a.probes.size();
  }
  REQUIRE(a.refused.size() == 1);
  CHECK(a.refused[0].reason.find("no probe came back") != std::string::npos);
  CHECK(probes == 12);  // one every 250 ms until the 3 s timeout
}

TEST_CASE("a deaf shared filter falls back to its plain filter once", "[cloud][subscriptions]") {
  SubscriptionWatch w("cloud-a");
  const std::string shared = "$share/ingest/nova/v1/up/+/metrics";
  w.reset({shared}, 0);
  w.suback(shared, 1, 0);
  auto a = w.due(3000);
  REQUIRE(a.fallbacks.size() == 1);
  CHECK(a.unsubscribe == std::vector<std::string>{shared});
  CHECK(a.subscribe == std::vector<std::string>{"nova/v1/up/+/metrics"});
  CHECK(w.filters() == std::vector<std::string>{"nova/v1/up/+/metrics"});
  CHECK(a.refused.empty());
}
