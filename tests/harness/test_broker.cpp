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

std::unique_ptr<TestBroker> start_broker(BrokerKind kind, Transport transport) {
  switch (kind) {
    case BrokerKind::mosquitto: {
      BrokerOptions options;
      options.tls = transport == Transport::mutual_tls;
      return std::make_unique<Broker>(options);
    }
    case BrokerKind::nats: return std::make_unique<NatsBroker>(transport);
  }
  throw std::invalid_argument("start_broker: unknown broker kind");
}

}  // namespace nova::testing
