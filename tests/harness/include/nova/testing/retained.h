// What an outside client reads as retained state: runs `mosquitto_sub` (Debian's
// mosquitto-clients, a client that shares no code with ours) against any MQTT 3.1.1
// broker and returns the retained messages that match a filter. For an mqtts:// uri it
// presents the test PKI's certificate of CN test-retained-reader (test_pki.h).
//
// A subscriber receives the retained messages at once after its SUBACK, but MQTT has no
// "end of retained" marker: the read ends when `expected` messages arrived or after
// `wait` (a whole number of seconds, mosquitto_sub's -W), whichever is first. So
// `expected` must be the number of retained topics the filter can match: with more, the
// read stops at a subset (in the broker's order). Cleared (empty) retained messages are
// never delivered, so they are simply absent, and a read that expects them waits `wait`.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <string>

namespace nova::testing {

// topic -> payload bytes
using RetainedMessages = std::map<std::string, std::string>;

RetainedMessages read_retained(const std::string& broker_uri, const std::string& filter, std::size_t expected,
                               std::chrono::seconds wait = std::chrono::seconds(1));

// Reads again and again until `holds` is true of what was read or `deadline` passes;
// returns whether it held. The predicate is a state everyone can observe, so this is
// the condition a restart must restore, polled against a deadline (never a sleep).
bool retained_until(const std::string& broker_uri, const std::string& filter, std::size_t expected,
                    const std::function<bool(const RetainedMessages&)>& holds, std::chrono::milliseconds deadline);

}  // namespace nova::testing
