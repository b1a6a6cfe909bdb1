// Erasures (cloud/include/nova/cloud/erasures.h) with recording hooks: what goes down,
// what is audited, when the store is erased, and the order of a node's erasures.
#include <catch2/catch.hpp>

#include "nova/cloud/erasures.h"
#include "nova/schemas/codec.h"

using namespace nova;
using namespace nova::cloud;

namespace {

struct Recorder {
  std::vector<schemas::ErasureRequest> sent;  // decoded from what went down
  std::vector<std::string> topics;
  std::vector<std::string> audit;  // "actor|action|target|outcome"
  int store_erasures = 0;
  Erasures erasures{Erasures::Hooks{
      [this](const std::string& topic, const std::vector<std::uint8_t>& payload, bool retained) {
        CHECK(retained);
        topics.push_back(topic);
        sent.push_back(schemas::decode_cbor<schemas::ErasureRequest>(payload).value());
        return true;
      },
      [](const std::string&, const std::string& json) -> schemas::Status {
        CHECK(erasure_from_json(json).ok());
        return schemas::Ok{};
      },
      [this](const std::string&, const std::optional<std::string>&) -> schemas::Result<ErasureCounts> {
        ++store_erasures;
        return ErasureCounts{{"raw", 2}};
      },
      [this](const std::string& actor, const std::string& action, const std::string& target,
             const std::string& outcome) -> schemas::Status {
        audit.push_back(actor + "|" + action + "|" + target + "|" + outcome);
        return schemas::Ok{};
      },
      nullptr}};
};

schemas::ErasureReport report_of(const Erasure& e) {
  schemas::ErasureReport r;
  r.position = {e.node, "erasures", 1, std::nullopt};
  r.erasure_id = e.id;
  r.counts = {{"outbox_removed", 3}};
  return r;
}

}  // namespace

TEST_CASE("a node's erasures go down one at a time, again at its birth, and are audited with counts",
          "[cloud][erasure]") {
  Recorder r;
  auto first = r.erasures.request("gw-1", "cloud/eu", std::nullopt, "ops", 1000);
  REQUIRE(first.ok());
  CHECK(first->state == "pending");
  CHECK(first->cloud == ErasureCounts{{"raw", 2}});
  auto second = r.erasures.request("gw-1", "cloud/eu", std::string("cam1"), "ops", 1000);
  REQUIRE(second.ok());
  CHECK(second->id != first->id);  // the same millisecond: its own id
  CHECK(second->state == "queued");
  REQUIRE(r.sent.size() == 1);  // the retained topic holds one request at a time
  CHECK(r.topics[0] == "nova/v1/down/cloud/eu/gw-1/erase");
  CHECK(r.sent[0].erasure_id == first->id);
  CHECK_FALSE(r.sent[0].sensor);

  r.erasures.on_birth("gw-1");  // back online: the pending one again
  REQUIRE(r.sent.size() == 2);
  CHECK(r.sent[1].erasure_id == first->id);

  r.erasures.on_report("gw-9", report_of(*first), 2000);  // not that node's: ignored
  CHECK(r.erasures.get(first->id)->state == "pending");
  r.erasures.on_report("gw-1", report_of(*first), 2000);
  const Erasure done = *r.erasures.get(first->id);
  CHECK(done.state == "done");
  CHECK(done.node_counts == ErasureCounts{{"outbox_removed", 3}});
  CHECK(done.cloud == ErasureCounts{{"raw", 4}});  // erased again at the confirmation
  CHECK(r.store_erasures == 3);
  REQUIRE(r.sent.size() == 3);  // then the queued one
  CHECK(r.sent[2].erasure_id == second->id);
  CHECK(r.sent[2].sensor == std::optional<std::string>("cam1"));
  CHECK(r.erasures.get(second->id)->state == "pending");

  REQUIRE(r.audit.size() == 3);
  CHECK(r.audit[0] == "ops|erasure requested|node=gw-1 sensor=* erasure=" + first->id + "|cloud raw=2");
  CHECK(r.audit[2] == "gw-1|erasure confirmed|node=gw-1 sensor=* erasure=" + first->id +
                          "|node outbox_removed=3; cloud raw=4");
}
