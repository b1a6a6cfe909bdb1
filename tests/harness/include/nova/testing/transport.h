// How a test's brokers listen and how its clients connect: one name for every test
// broker (test_broker.h) and every test hierarchy (tests/broker-bridge/support/
// hierarchy_support.h). Header-only: the hierarchy benchmark uses it without the harness.
#pragma once

namespace nova::testing {

enum class Transport {
  // Every connection presents a certificate and the brokers' identity ACLs apply:
  // nova-bridge's default. URIs are mqtts://; a test broker's clients take their
  // certificates from the test PKI (test_pki.h, paho_tls.h), a hierarchy's clients from
  // the hierarchy's own PKI (RunningHierarchy::identity).
  mutual_tls,
  // tcp://, anyone (nova-bridge's --insecure-plaintext): only for tests and benchmark
  // figures whose point is plaintext.
  insecure_plaintext,
};

}  // namespace nova::testing
