#include "nova/testing/test_broker.h"

#include "nova/testing/broker.h"
#include "nova/testing/nats_broker.h"

namespace nova::testing {

std::string to_string(BrokerKind kind) {
  switch (kind) {
    case BrokerKind::mosquitto: return "mosquitto";
    case BrokerKind::nats: return "nats";
  }
  return "unknown";
}

std::vector<BrokerKind> all_broker_kinds() { return {BrokerKind::mosquitto, BrokerKind::nats}; }

std::unique_ptr<TestBroker> start_broker(BrokerKind kind) {
  switch (kind) {
    case BrokerKind::mosquitto: return std::make_unique<Broker>();
    case BrokerKind::nats: return std::make_unique<NatsBroker>();
  }
  throw std::invalid_argument("start_broker: unknown broker kind");
}

}  // namespace nova::testing
