// The images deploy/containers/build-image.sh built (the ctest fixture containers_images),
// checked as an engine would read them and run from their own root filesystems
// (unpacked_image.h) against a real Mosquitto with mutual TLS, configured as the
// Kubernetes manifests in deploy/kubernetes configure them: nova-cloud with its
// ConfigMap's cloud.yaml, nova-agent with the example node config; only the broker's
// address and the HTTP port differ (loopback, a free port).
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <optional>
#include <httplib.h>
#include <sstream>
#include <string>

#include "nova/cloud/auth.h"
#include "nova/schemas/codec.h"
#include "nova/testing/broker.h"
#include "nova/testing/poll.h"
#include "nova/testing/signer.h"
#include "nova/testing/test_pki.h"
#include "unpacked_image.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const fs::path kImages = NOVA_IMAGES_DIR;
const fs::path kManifests = fs::path(NOVA_SOURCE_DIR) / "deploy" / "kubernetes";

// A fresh directory for one case's unpacked image, removed at the end.
struct WorkDir {
  fs::path path;
  explicit WorkDir(const std::string& name) {
    std::string templ = (fs::temp_directory_path() / ("nova-" + name + "-XXXXXX")).string();
    path = ::mkdtemp(templ.data());
  }
  ~WorkDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

// The object `kind`/`name` of a manifest file.
YAML::Node manifest(const std::string& file, const std::string& kind, const std::string& name) {
  for (const auto& doc : YAML::LoadAllFromFile((kManifests / file).string())) {
    if (doc["kind"].as<std::string>() == kind && doc["metadata"]["name"].as<std::string>() == name) return doc;
  }
  throw std::runtime_error(file + " has no " + kind + "/" + name);
}

std::vector<std::string> container_args(const std::string& file, const std::string& kind, const std::string& name) {
  return manifest(file, kind, name)["spec"]["template"]["spec"]["containers"][0]["args"].as<std::vector<std::string>>();
}

// The paths a workload's container may write: its volume mounts not marked readOnly (its
// root filesystem is read-only: readOnlyRootFilesystem).
std::vector<std::string> writable_mounts(const std::string& file, const std::string& kind, const std::string& name) {
  std::vector<std::string> paths;
  for (const auto& m : manifest(file, kind, name)["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]) {
    if (!(m["readOnly"] && m["readOnly"].as<bool>())) paths.push_back(m["mountPath"].as<std::string>());
  }
  return paths;
}

// The workload's memory limit in bytes (a Mi or Gi quantity, as the manifests write it).
std::uint64_t memory_limit(const std::string& file, const std::string& kind, const std::string& name) {
  const auto text = manifest(file, kind, name)["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"].as<std::string>();
  const std::uint64_t unit = text.ends_with("Gi") ? 1ull << 30 : text.ends_with("Mi") ? 1ull << 20 : 0;
  if (unit == 0) throw std::runtime_error("memory limit '" + text + "': not a Mi or Gi quantity");
  return std::stoull(text.substr(0, text.size() - 2)) * unit;
}

// The peak resident memory of process `pid` so far (VmHWM), in bytes.
std::uint64_t peak_rss(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmHWM:")) return std::stoull(line.substr(6)) * 1024;
  }
  throw std::runtime_error("no VmHWM for pid " + std::to_string(pid));
}

// "host:8080" -> "host:<port>": the manifests' port on loopback's free port.
std::string on_port(const std::string& host, std::uint16_t port) {
  return host.substr(0, host.rfind(':')) + ":" + std::to_string(port);
}

// The node's retained state record as an outside client reads it (mosquitto_sub with a
// certificate of its own): -C 1 ends at the first message, -W 60 bounds the wait for it.
std::optional<schemas::NodeState> retained_state(const testing::Broker& broker, const std::string& node) {
  std::string hex;
  try {
    hex = test::run_command("mosquitto_sub " + broker.mosquitto_client_args("state-reader") +
                            " -V mqttv311 -q 1 -t nova/v1/up/" + node + "/state -F %x -C 1 -W 60");
  } catch (const std::exception&) {
    return std::nullopt;  // nothing within the wait
  }
  std::string cbor;
  for (std::size_t i = 0; i + 1 < hex.size() && hex[i] != '\n'; i += 2) {
    cbor.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  auto state = schemas::decode_cbor<schemas::NodeState>(cbor);
  if (!state || state->node != node) return std::nullopt;
  return *state;
}

void require_root() {
  if (::geteuid() != 0) FAIL("the container tests unpack images and chroot into them: run them as root");
}

std::string file_text(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

uid_t owner(const fs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_uid;
}

}  // namespace

TEST_CASE("each image runs its binary as a numeric non-root user, with the manifests' arguments", "[containers]") {
  struct Expected {
    std::string image, manifest_file, kind;
    nlohmann::json exposed_ports;
  };
  for (const auto& e : {Expected{"nova-cloud", "nova-cloud.yaml", "Deployment", {{"8080/tcp", nlohmann::json::object()}}},
                        Expected{"nova-agent", "nova-agent.yaml", "DaemonSet", nullptr}}) {
    INFO(e.image);
    const auto config = test::image_config(kImages / e.image).at("config");
    // Numeric, so that the kubelet can check runAsNonRoot without reading /etc/passwd.
    REQUIRE(config.at("User") == "65532:65532");
    CHECK(config.at("Entrypoint") == nlohmann::json::array({"/usr/bin/" + e.image}));
    CHECK(config.at("Cmd").get<std::vector<std::string>>() == container_args(e.manifest_file, e.kind, e.image));
    CHECK(config.value("ExposedPorts", nlohmann::json()) == e.exposed_ports);
    CHECK(config.at("Volumes").contains("/var/lib/" + e.image));
  }
}

TEST_CASE("the nova-cloud image serves its REST API over a mutual-TLS broker from its own root", "[containers]") {
  require_root();
  testing::Broker broker(testing::mutual_tls());
  WorkDir work("cloud-image");
  test::UnpackedImage image(kImages, "nova-cloud", work.path);
  CHECK(image.uid() == 65532);
  CHECK_FALSE(fs::exists(image.rootfs() / "bin" / "sh"));  // no shell in the image

  // The ConfigMap's cloud.yaml, with loopback's broker and a free port.
  YAML::Node config = YAML::Load(manifest("nova-cloud.yaml", "ConfigMap", "nova-cloud-config")["data"]["cloud.yaml"].as<std::string>());
  const std::uint16_t port = testing::free_loopback_port();
  config["mqtt"]["uri"] = broker.uri();
  config["http"]["port"] = port;
  YAML::Node hosts = config["http"]["allowed_hosts"];
  for (std::size_t i = 0; i < hosts.size(); ++i) hosts[i] = on_port(hosts[i].as<std::string>(), port);

  // The Secrets, at the paths the config names (the Deployment mounts them there).
  const auto identity = testing::client_identity(config["mqtt"]["client_id"].as<std::string>());
  image.put(config["mqtt"]["tls_ca_file"].as<std::string>(), identity.ca);
  image.put(config["mqtt"]["tls_cert_file"].as<std::string>(), identity.cert);
  image.put(config["mqtt"]["tls_key_file"].as<std::string>(), identity.key);
  image.put(config["signing"]["key_file"].as<std::string>(), testing::test_signer().private_file());
  auto token = cloud::create_token("test-admin", cloud::Role::admin, "");
  REQUIRE(token);
  image.put_text(config["auth"]["tokens_file"].as<std::string>(), token->line + "\n");
  YAML::Emitter yaml;
  yaml << config;
  image.put_text(image.args().back(), yaml.c_str());  // the image's Cmd: --config <file>

  image.start(work.path / "cloud.log", writable_mounts("nova-cloud.yaml", "Deployment", "nova-cloud"));
  // What the kubelet's probes send (the Deployment's Host header).
  const auto probe = manifest("nova-cloud.yaml", "Deployment", "nova-cloud")["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"];
  const std::string probe_host = on_port(probe["httpHeaders"][0]["value"].as<std::string>(), port);
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2s);
  const httplib::Headers probe_headers = {{"Host", probe_host}};
  bool ready = false;
  testing::poll_until(  // until ready, or the process exited
      [&] {
        auto r = client.Get(probe["path"].as<std::string>().c_str(), probe_headers);
        ready = r && r->status == 200;
        return ready || !image.running();
      },
      60s);
  INFO(file_text(work.path / "cloud.log"));
  REQUIRE(ready);
  auto health = client.Get("/api/v1/health", probe_headers);
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(nlohmann::json::parse(health->body).at("mqtt_connected") == true);

  client.set_bearer_token_auth(token->token.c_str());
  auto nodes = client.Get("/api/v1/nodes", probe_headers);
  REQUIRE(nodes);
  CHECK(nodes->status == 200);
  // The store is in the image's volume, written by the image's user.
  CHECK(owner(image.host_path("/var/lib/nova-cloud/store")) == image.uid());
  // Within the Deployment's memory limit (the peak so far, connected and serving).
  const auto rss = peak_rss(image.process());
  WARN("nova-cloud VmHWM " << rss / 1024 << " KiB");
  CHECK(rss < memory_limit("nova-cloud.yaml", "Deployment", "nova-cloud"));
  CHECK(image.running());
}

TEST_CASE("the nova-agent image publishes its birth over mutual TLS from its own root", "[containers]") {
  require_root();
  testing::Broker broker(testing::mutual_tls());
  WorkDir work("agent-image");
  test::UnpackedImage image(kImages, "nova-agent", work.path);
  CHECK(image.uid() == 65532);
  CHECK_FALSE(fs::exists(image.rootfs() / "bin" / "sh"));

  // The example node config, with loopback's broker.
  YAML::Node config = YAML::LoadFile((kManifests / "agent-node.example.yaml").string());
  config["mqtt"]["uri"] = broker.uri();
  const std::string node = config["node"]["id"].as<std::string>();
  const auto identity = testing::client_identity(node);
  image.put(config["mqtt"]["tls_ca_file"].as<std::string>(), identity.ca);
  image.put(config["mqtt"]["tls_cert_file"].as<std::string>(), identity.cert);
  image.put(config["mqtt"]["tls_key_file"].as<std::string>(), identity.key);
  image.put(config["trust"]["signing_keys"][0].as<std::string>(), testing::test_signer().public_file());
  YAML::Emitter yaml;
  yaml << config;
  image.put_text(image.args().back(), yaml.c_str());

  image.start(work.path / "agent.log", writable_mounts("nova-agent.yaml", "DaemonSet", "nova-agent"));
  const auto birth = retained_state(broker, node);
  INFO(file_text(work.path / "agent.log"));
  REQUIRE(birth);
  CHECK(birth->status == schemas::NodeStatus::online);
  // Its outbox is on the state volume, written by the image's user.
  CHECK(owner(image.host_path(config["outbox"]["dir"].as<std::string>())) == image.uid());
  // Within the DaemonSet's memory limit (the peak so far, TLS connected and born).
  const auto rss = peak_rss(image.process());
  WARN("nova-agent VmHWM " << rss / 1024 << " KiB");
  CHECK(rss < memory_limit("nova-agent.yaml", "DaemonSet", "nova-agent"));

  // Deleting the pod: the runtime sends SIGTERM to the container's PID 1, which has no
  // default action for it; the agent handles it, says goodbye and exits 0.
  REQUIRE(::kill(image.process(), SIGTERM) == 0);
  CHECK(image.wait() == 0);
  const auto goodbye = retained_state(broker, node);
  REQUIRE(goodbye);
  CHECK(goodbye->status == schemas::NodeStatus::offline);
  CHECK(goodbye->bdseq == birth->bdseq);
}
