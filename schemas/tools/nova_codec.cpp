// nova-codec: converts topic-API payloads between JSON and CBOR, and validates them.
//
//   nova-codec encode <type>   JSON on stdin  -> CBOR on stdout
//   nova-codec decode <type>   CBOR on stdin  -> JSON on stdout
//   nova-codec check  <type>   CBOR or JSON on stdin -> "ok" or the error
//   nova-codec types           lists the type names
//
// Every conversion goes through the typed codec, so what it prints is exactly what a
// NovaCron component would accept or refuse. Exit codes: 0 ok, 1 invalid payload,
// 2 usage error.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include "nova/schemas/codec.h"

namespace {

using namespace nova::schemas;

struct TypeEntry {
  std::string_view name;
  Result<Bytes> (*json_to_cbor)(std::string_view);
  Result<std::string> (*cbor_to_json)(std::string_view);
};

template <class T>
Result<Bytes> json_to_cbor(std::string_view in) {
  auto m = decode_json<T>(in);
  if (!m) return m.error();
  return encode_cbor(*m);
}

template <class T>
Result<std::string> cbor_to_json(std::string_view in) {
  auto m = decode_cbor<T>(in);
  if (!m) return m.error();
  return encode_json(*m);
}

template <class T>
constexpr TypeEntry entry(std::string_view name) {
  return TypeEntry{name, json_to_cbor<T>, cbor_to_json<T>};
}

constexpr TypeEntry kTypes[] = {
    entry<NodeState>("node_state"),         entry<MetricsBatch>("metrics_batch"),
    entry<SensorReading>("sensor_reading"), entry<SensorError>("sensor_error"),
    entry<Task>("task"),                    entry<TaskResult>("task_result"),
    entry<DecisionRecord>("decision_record"), entry<DecisionVerdict>("decision_verdict"),
    entry<Alert>("alert"),                  entry<Config>("config"),
    entry<Model>("model"),                  entry<Ack>("ack"),
    entry<WorkloadSpec>("workload_spec"),   entry<Placement>("placement"),
    entry<ClusterRecord>("cluster_record"), entry<UpdateOffer>("update_offer"),
    entry<TaskCancel>("task_cancel"),
};

const TypeEntry* find_type(const std::string& name) {
  for (const TypeEntry& t : kTypes) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::string read_stdin() {
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

bool looks_like_json(std::string_view payload) {
  const auto first = payload.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && payload[first] == '{';
}

int report(const Error& e) {
  std::cerr << "nova-codec: invalid payload: " << e.message() << '\n';
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Convert and validate NovaCron topic-API payloads (CBOR <-> JSON)."};
  app.require_subcommand(1);
  std::string type_name;
  auto* encode = app.add_subcommand("encode", "JSON on stdin to CBOR on stdout");
  auto* decode = app.add_subcommand("decode", "CBOR on stdin to JSON on stdout");
  auto* check = app.add_subcommand("check", "validate CBOR or JSON on stdin");
  auto* types = app.add_subcommand("types", "list the payload type names");
  for (auto* sub : {encode, decode, check}) {
    sub->add_option("type", type_name, "payload type (see 'nova-codec types')")->required();
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (types->parsed()) {
    for (const TypeEntry& t : kTypes) std::cout << t.name << '\n';
    return 0;
  }
  const TypeEntry* type = find_type(type_name);
  if (type == nullptr) {
    std::cerr << "nova-codec: unknown type '" << type_name << "' (see 'nova-codec types')\n";
    return 2;
  }
  std::ios::sync_with_stdio(false);
  const std::string input = read_stdin();

  if (encode->parsed()) {
    auto cbor = type->json_to_cbor(input);
    if (!cbor) return report(cbor.error());
    std::cout.write(reinterpret_cast<const char*>(cbor->data()),
                    static_cast<std::streamsize>(cbor->size()));
    return std::cout.good() ? 0 : 1;
  }
  if (decode->parsed()) {
    auto json = type->cbor_to_json(input);
    if (!json) return report(json.error());
    std::cout << *json << '\n';
    return 0;
  }
  if (looks_like_json(input)) {
    auto cbor = type->json_to_cbor(input);
    if (!cbor) return report(cbor.error());
  } else {
    auto json = type->cbor_to_json(input);
    if (!json) return report(json.error());
  }
  std::cout << "ok\n";
  return 0;
}
