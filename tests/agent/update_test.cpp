// Over-the-air updates end to end (docs/agent.md, "Updates"): devices provisioned with
// firmware/nova-device-bundle, each running the real launcher and the real nova-agent on a
// mutual-TLS Mosquitto; each bundle cut by `nova-device-bundle chunks` and published
// retained with mosquitto_pub (a client we did not write) on nova/v1/bundle/<sha256>/<i>,
// the offers signed as nova-cloud signs them.
//
// v1 -> v2 rolls out in two waves and every device reports v2 in its birth; a v3 that
// exits at once and one that starts but never connects are rolled back to v2 by each
// launcher, and the agent reports the rollback upward (alert); unsigned, wrongly signed
// and hash-mismatched offers are refused with a counter and an alert. Across all of it
// every metrics batch each device made reaches the consumer: no gap, stored once.
#include <catch2/catch.hpp>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nova/schemas/codec.h"
#include "nova/schemas/topic.h"
#include "nova/security/digest.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/broker.h"
#include "nova/testing/ota_devices.h"
#include "nova/testing/publish.h"
#include "nova/testing/signer.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace nova::testing::ota;
using nova::testing::Broker;

constexpr int kTrialS = kOtaTrialS;

std::string offer_cbor(const std::string& version, const Bundle& b) {
  nova::schemas::UpdateOffer o;
  o.version = version;
  o.sha256 = b.sha256;
  o.size = b.bytes.size();
  o.ts = static_cast<nova::schemas::Timestamp>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  const nova::schemas::Bytes enc = nova::schemas::encode_cbor(o);
  return std::string(enc.begin(), enc.end());
}

// With mosquitto_pub, as nova-cloud: QoS 1.
void publish_file(const Broker& broker, const std::string& topic, const fs::path& file, bool retained = true) {
  run("mosquitto_pub " + broker.mosquitto_client_args("nova-cloud") + " -V mqttv311 -q 1 " +
      (retained ? "-r " : "") + "-t '" + topic + "' -f " + quoted(file));
}

// `file` as an update bundle under the name `sha256`: its chunks (nova-device-bundle
// chunks), each retained on nova/v1/bundle/<sha256>/<index>.
void publish_bundle(const Broker& broker, const fs::path& file, const std::string& sha256) {
  const fs::path chunks = file.string() + ".chunks";
  run(std::string(NOVA_DEVICE_BUNDLE) + " chunks --binary " + quoted(file) + " --out " + quoted(chunks) + " >/dev/null");
  const auto id = nova::topics::Id::parse(sha256).value();
  for (std::uint64_t i = 0; fs::exists(chunks / std::to_string(i)); ++i) {
    publish_file(broker, nova::topics::bundle_chunk(id, i), chunks / std::to_string(i));
  }
}

}  // namespace

TEST_CASE("a signed update rolls out in waves, broken versions roll back by themselves, no batch is lost",
          "[agent][update][integration]") {
  TempDir tmp;
  Broker broker(nova::testing::mutual_tls());
  nova::testing::AckConsumer consumer(broker.uri(), "nova-cloud");
  Births births(broker.uri());

  // The bundles. v2: the agent built as 2.0.0-test, without its debug sections (what a
  // release ships). v3: one that exits at once, one that runs but never connects.
  run(std::string(NOVA_DEVICE_BUNDLE) + " make --binary " + NOVA_AGENT_BIN + " --out " + quoted(tmp.path / "bundle") +
      " >/dev/null");
  run("strip --strip-debug -o " + quoted(tmp.path / "v2") + " " NOVA_AGENT_V2_BIN);
  write_file(tmp.path / "v3-exits", "#!/bin/sh\nexit 1\n", fs::perms::owner_all);
  write_file(tmp.path / "v3-silent", "#!/bin/sh\nexec sleep 3600\n", fs::perms::owner_all);
  const Bundle v2 = bundle_of(tmp.path / "v2");
  const Bundle v3_exits = bundle_of(tmp.path / "v3-exits");
  const Bundle v3_silent = bundle_of(tmp.path / "v3-silent");

  std::vector<std::unique_ptr<Device>> devices;
  for (int i = 1; i <= 3; ++i) {
    // dev-3 runs under the init script (start/stop/reload), the others as systemd runs them.
    devices.push_back(std::make_unique<Device>("dev-" + std::to_string(i), tmp.path, tmp.path / "bundle", broker, i == 3));
  }
  std::map<std::string, std::uint64_t> bdseq;
  for (auto& d : devices) {
    auto b = births.wait_version(d->node(), NOVA_V1_VERSION);
    REQUIRE(b);
    bdseq[d->node()] = *b;
  }

  // v2 in two waves: dev-1 first; the others once it reported v2.
  publish_bundle(broker, v2.file, v2.sha256);
  const auto t0 = std::chrono::steady_clock::now();
  for (const std::vector<std::size_t>& wave : {std::vector<std::size_t>{0}, std::vector<std::size_t>{1, 2}}) {
    for (std::size_t i : wave) nova::testing::publish_as_cloud(broker.uri(), devices[i]->update_topic(), offer_cbor("2.0.0-test", v2), true);
    for (std::size_t i : wave) {
      auto b = births.wait_version(devices[i]->node(), "2.0.0-test", bdseq[devices[i]->node()]);
      REQUIRE(b);
      bdseq[devices[i]->node()] = *b;
      CHECK(devices[i]->wait_log("passed its trial"));
    }
  }
  std::cout << "update: offer to v2 births of all three (two waves, trials of " << kTrialS << " s) "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms\n";

  // The init script's reload is a SIGHUP the launcher passes on: the agent reads its file
  // again (an invalid one, so that the reload says which trigger it had), then the file
  // is put back.
  const fs::path config3 = tmp.path / "dev-3/etc/nova-agent/agent.yaml";
  const std::string config3_text = read_file(config3);
  write_file(config3, config3_text + "log: {level: loud}\n");
  run(quoted(tmp.path / "dev-3/etc/init.d/nova-agent") + " reload >/dev/null");
  CHECK(devices[2]->wait_log("event=reload_refused trigger=sighup"));
  write_file(config3, config3_text);

  // Broken v3s: each device goes back to v2 by itself and says so upward, dev-1 as
  // systemd runs it, dev-3 under the init script.
  const std::uint64_t alerts_before_1 = consumer.count("dev-1", "alerts").seqs.size();
  const std::uint64_t alerts_before_3 = consumer.count("dev-3", "alerts").seqs.size();
  publish_bundle(broker, v3_exits.file, v3_exits.sha256);
  publish_bundle(broker, v3_silent.file, v3_silent.sha256);
  nova::testing::publish_as_cloud(broker.uri(), devices[0]->update_topic(), offer_cbor("3.0.0-exits", v3_exits), true);
  nova::testing::publish_as_cloud(broker.uri(), devices[2]->update_topic(), offer_cbor("3.0.0-silent", v3_silent), true);
  REQUIRE(devices[0]->wait_log("rolling back from " + v3_exits.sha256 + " to " + v2.sha256 +
                               ": exited with status 1 during its trial"));
  REQUIRE(devices[2]->wait_log("rolling back from " + v3_silent.sha256 + " to " + v2.sha256 +
                               ": no acknowledged birth within " + std::to_string(kTrialS) + "s"));
  for (std::size_t i : {std::size_t{0}, std::size_t{2}}) {
    auto b = births.wait_version(devices[i]->node(), "2.0.0-test", bdseq[devices[i]->node()]);
    REQUIRE(b);
    bdseq[devices[i]->node()] = *b;
    CHECK(devices[i]->wait_log("event=update_rolled_back"));
  }
  CHECK(consumer.wait_for("dev-1", "alerts", alerts_before_1 + 1, 30s));
  CHECK(consumer.wait_for("dev-3", "alerts", alerts_before_3 + 1, 30s));
  // The retained v3 offer stays; the rolled-back bundle is never installed again.
  CHECK(devices[0]->count("switching from " + v2.sha256 + " to " + v3_exits.sha256) == 1);
  // Each switch keeps the version it left and the one it starts: v1 is gone.
  CHECK(fs::exists(devices[0]->versions() / v2.sha256));
  CHECK(!fs::exists(devices[0]->versions() / bundle_of(NOVA_AGENT_BIN).sha256));

  // Refusals, on dev-2: unsigned, signed by a key it does not trust, a bundle whose bytes
  // do not match the offer's SHA-256. Each is counted and logged; the mismatch goes up.
  const std::string offer_v4 = offer_cbor("4.0.0", v2);
  write_file(tmp.path / "unsigned", offer_v4);
  publish_file(broker, devices[1]->update_topic(), tmp.path / "unsigned", false);
  CHECK(devices[1]->wait_log("event=control_refused reason=unsigned topic=" + devices[1]->update_topic()));
  nova::testing::TestSigner stranger(tmp.path / "stranger");
  write_file(tmp.path / "stranger-signed", stranger.sign(devices[1]->update_topic(), offer_v4));
  publish_file(broker, devices[1]->update_topic(), tmp.path / "stranger-signed", false);
  CHECK(devices[1]->wait_log("event=control_refused reason=untrusted_key topic=" + devices[1]->update_topic()));

  std::string tampered = v3_exits.bytes;
  tampered[tampered.size() - 2] = '7';  // "exit 7": same size, other bytes
  write_file(tmp.path / "tampered", tampered);
  Bundle claimed = v3_exits;
  claimed.sha256 = nova::security::sha256_hex("a bundle that is not on the broker");
  publish_bundle(broker, tmp.path / "tampered", claimed.sha256);
  const std::uint64_t alerts_before_2 = consumer.count("dev-2", "alerts").seqs.size();
  nova::testing::publish_as_cloud(broker.uri(), devices[1]->update_topic(), offer_cbor("5.0.0-tampered", claimed), true);
  CHECK(devices[1]->wait_log("event=update_refused detail=\"update to 5.0.0-tampered (sha256 " + claimed.sha256 +
                             ") refused: bundle sha256 is " + nova::security::sha256_hex(tampered)));
  CHECK(consumer.wait_for("dev-2", "alerts", alerts_before_2 + 1, 30s));
  CHECK(devices[1]->count("event=update_staged") == 1);  // v2 only

  // Outside a trial, an agent that dies is started again by its launcher, same version.
  const pid_t victim = devices[1]->agent_pid();
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  CHECK(devices[1]->wait_log("nova-agent exited with status 137; starting it again in 1s"));
  auto after_kill = births.wait_version("dev-2", "2.0.0-test", bdseq["dev-2"]);
  CHECK(after_kill);

  // Every batch made reaches the consumer: stop all, count what each device made, start
  // them again so the last ones drain, and compare.
  std::map<std::string, std::uint64_t> made = batches_made_then_restart(devices);
  for (auto& d : devices) {
    INFO(d->node() << " made " << made[d->node()] << " batches");
    CHECK(made[d->node()] >= 3);
    REQUIRE(consumer.wait_for(d->node(), "metrics", made[d->node()], 60s));
    const nova::testing::StreamCount c = consumer.count(d->node(), "metrics");
    for (std::uint64_t seq = 1; seq <= made[d->node()]; ++seq) CHECK(c.seqs.count(seq) == 1);
    CHECK(*c.seqs.begin() == 1);
    std::cout << "update: " << d->node() << " made " << made[d->node()] << " batches across its updates, "
              << "all received (" << c.duplicates << " repeats dropped by dedup)\n";
  }
}
