// nova-pki: makes and keeps a NovaCron PKI folder (docs/security.md): the offline root,
// regional intermediates, leaf identities, CRLs, renewal, device export, Ed25519 signing
// keys, and everything a topology file needs in one command.
//
// Exit codes: 0 ok; 1 failure (a file cannot be read or written, a CA key needed for the
// operation is not present, some renewals failed); 2 refused argument (invalid or
// conflicting with the PKI: an unknown role, a bad name, an identity already issued, a
// region without an intermediate, a root that already exists, an invalid topology).
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <iterator>
#include <map>
#include <set>

#include "nova/security/audit_log.h"
#include "nova/security/control.h"
#include "nova/security/pki.h"
#include "nova/security/topology_identities.h"
#include "nova/tiers/topology.h"

namespace {

namespace fs = std::filesystem;
using namespace nova;
using security::Error;

constexpr int kOk = 0;
constexpr int kFailure = 1;
constexpr int kRefused = 2;

// The library names the field at fault; on the command line that field is an option.
const std::set<std::string, std::less<>> kArguments = {"dir", "name",     "region", "role", "days",
                                                       "san", "backdate", "within", "to", "ca-cert"};

int fail(const Error& error) {
  const bool argument = kArguments.contains(error.path);
  std::cerr << "nova-pki: " << (argument ? "--" : "") << error.message() << '\n';
  return argument ? kRefused : kFailure;
}

int fail_usage(const std::string& message) {
  std::cerr << "nova-pki: " << message << '\n';
  return kRefused;
}

std::string date_of(security::Clock::time_point t) {
  const std::time_t tt = security::Clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void print_issued(const security::CertificateInfo& info) {
  std::cout << info.common_name << " serial " << info.serial_hex << " issuer "
            << info.issuer_common_name << " valid until " << date_of(info.not_after) << '\n';
}

// The CN an identity argument names: the CN itself, or a role's name turned into one.
std::optional<std::string> identity_cn(const std::string& role, const std::string& name,
                                       int& code) {
  if (role.empty()) return name;
  auto parsed = security::parse_role(role);
  if (!parsed) {
    code = fail(parsed.error());
    return std::nullopt;
  }
  auto cn = security::common_name(*parsed, name);
  if (!cn) {
    code = fail(cn.error());
    return std::nullopt;
  }
  return *cn;
}

// --- topology ----------------------------------------------------------------------------

int cmd_topology(security::Pki& pki, const fs::path& file, int days) {
  const auto started = std::chrono::steady_clock::now();
  auto topology = tiers::Topology::load(file);
  if (!topology) return fail_usage("invalid topology: " + topology.error().message());
  auto report = security::issue_topology_identities(pki, *topology, days);
  if (!report) {
    if (report.error().path == "topology") return fail_usage("invalid topology: " + report.error().reason);
    return fail(report.error());
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
  std::cout << "topology '" << topology->name() << "': " << report->regions << " regions, "
            << report->issued << " identities issued, " << report->kept << " already issued, in " << ms
            << " ms\n";
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "nova-pki: makes and keeps a NovaCron PKI folder: an offline root CA, one intermediate CA "
      "per "
      "region, leaf certificates (ECDSA P-256) for brokers, bridges, nodes, sensors, nova-cloud "
      "and "
      "operators, CRLs, renewal, device export and Ed25519 signing keys."};
  app.set_version_flag("--version", std::string("nova-pki ") + NOVA_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  app.footer(
      "Exit codes: 0 ok; 1 failure (file I/O, a needed CA key is not present, a renewal failed); 2 "
      "refused "
      "argument (invalid, or conflicting with the PKI's state).\nSee docs/security.md for the "
      "folder layout.");

  fs::path dir;
  app.add_option("--dir", dir, "the PKI folder")->required();

  int days = 0;
  auto* init_root = app.add_subcommand("init-root",
                                       "make the root CA (its key stays in <dir>/root/: take it "
                                       "offline once the intermediates exist)");
  init_root->add_option("--days", days, "validity (default 7300)");

  std::string region;
  auto* init_intermediate = app.add_subcommand(
      "init-intermediate", "make a region's intermediate CA, signed by the root");
  init_intermediate->add_option("--region", region, "region: a level-2 site id, or 'cloud'")
      ->required();
  init_intermediate->add_option("--days", days, "validity (default 1825)");

  security::IssueRequest request;
  std::string role;
  auto* issue = app.add_subcommand(
      "issue", "make a key and a leaf certificate signed by the region's intermediate");
  issue->add_option("--role", role, "broker|bridge|node|sensor|cloud|operator")->required();
  issue
      ->add_option(
          "--name", request.name,
          "site id (broker, bridge), node id, <node>.<sensor>, nova-cloud[.<i>], or operator name")
      ->required();
  issue->add_option("--region", request.region, "whose intermediate signs")->required();
  issue->add_option("--san", request.subject_alt_names,
                    "extra DNS:<name> or IP:<address> (brokers), repeatable");
  issue->add_option("--days", request.days, "validity (default 90)");
  issue->add_option("--backdate", request.backdate_days,
                    "start the validity this many days ago (default 0)");

  std::string name;
  auto* revoke =
      app.add_subcommand("revoke",
                         "revoke a leaf (on its intermediate's CRL) or a region's intermediate "
                         "(on the root's CRL); rewrites trust/crl.pem");
  auto* revoke_name =
      revoke->add_option("--name", name, "the identity's CN (or its name, with --role)");
  revoke->add_option("--role", role, "turn --name into the CN as `issue` does");
  auto* revoke_region =
      revoke->add_option("--region", region, "revoke this region's intermediate CA");
  revoke_name->excludes(revoke_region);
  fs::path ca_cert;
  revoke->add_option("--ca-cert", ca_cert,
                     "with --region: revoke the region's CA found in this file (a leaf's cert.pem will do), "
                     "for an intermediate whose folder is lost or already replaced")
      ->needs(revoke_region);

  auto* crl = app.add_subcommand(
      "crl", "re-sign the CRL of every CA whose key is here and rebuild trust/crl.pem");

  double within_days = 0;
  auto* renew =
      app.add_subcommand("renew",
                         "re-issue every leaf expiring within DAYS, and every leaf its region's "
                         "current intermediate did not sign; or, with --name, that one leaf now "
                         "(same key and CN, a new serial)");
  auto* renew_within =
      renew->add_option("--within", within_days, "days")->check(CLI::NonNegativeNumber);
  auto* renew_name =
      renew->add_option("--name", name, "re-issue this identity now: its CN (or its name, with --role)");
  renew->add_option("--role", role, "turn --name into the CN as `issue` does");
  renew_name->excludes(renew_within);

  fs::path to;
  auto* exporter = app.add_subcommand(
      "export", "write one identity's key.pem, cert.pem, ca.pem and crl.pem to DIR");
  exporter->add_option("--name", name, "the identity's CN (or its name, with --role)")->required();
  exporter->add_option("--role", role, "turn --name into the CN as `issue` does");
  exporter->add_option("--to", to, "target directory (created 0700)")->required();

  auto* signing_key =
      app.add_subcommand("signing-key", "make an Ed25519 signing key pair signing/<name>.key/.pub");
  signing_key->add_option("--name", name, "key name, e.g. nova-cloud")->required();

  std::string topic;
  std::uint32_t ttl_s = 86400;
  auto* sign = app.add_subcommand(
      "sign",
      "sign a control message for a down topic with signing/<name>.key: the message (CBOR) on "
      "stdin, the signed envelope on stdout (schemas/cddl/signed.cddl)");
  sign->add_option("--name", name, "key name, e.g. nova-cloud")->required();
  sign->add_option("--topic", topic, "the down topic it is for, nova/v1/down/<site path>/<node>/<kind>")
      ->required();
  sign->add_option("--ttl-s", ttl_s, "seconds it stays valid (default 86400)")->check(CLI::Range(1u, 31u * 86400u));

  fs::path topology_file;
  auto* topology =
      app.add_subcommand("topology",
                         "issue everything a topology needs: root, intermediates, a "
                         "broker per site, a bridge per non-root site, a node per node, "
                         "nova-cloud; keeps what is already issued");
  topology->add_option("file", topology_file, "topology file (YAML)")->required();
  topology->add_option("--days", request.days, "leaf validity (default 90)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kOk : kRefused;
  }

  try {
    auto opened = security::Pki::open(dir);
    if (!opened) return fail(opened.error());
    security::Pki& pki = opened.value();
    // Every certificate action, done or failed, goes to <dir>/audit.log (the same chain
    // as nova-cloud's: security/audit_log.h), synced before nova-pki reports it.
    // Opened before any action: a log that cannot take entries refuses the run.
    auto audit_log = security::AuditLog::open(dir / "audit.log");
    if (!audit_log) return fail(audit_log.error());
    const auto record = [&](const std::string& action, const std::string& target,
                            const std::string& outcome) {
      auto st = audit_log.value()->append({"nova-pki", action, target, outcome});
      if (!st) std::cerr << "nova-pki: " << st.error().message() << '\n';
      return static_cast<bool>(st);
    };
    // The outcome of `action` on `target`: recorded, then the exit code of a failure.
    const auto audited_fail = [&](const std::string& action, const std::string& target,
                                  const schemas::Error& e) {
      record(action, target, "failed: " + e.message());
      return fail(e);
    };

    if (init_root->parsed()) {
      auto info = pki.init_root(days > 0 ? days : 7300);
      if (!info) return audited_fail("init-root", "root", info.error());
      if (!record("init-root", info->common_name + " serial " + info->serial_hex, "ok"))
        return kFailure;
      print_issued(*info);
    } else if (init_intermediate->parsed()) {
      auto info = pki.init_intermediate(region, days > 0 ? days : 1825);
      if (!info) return audited_fail("init-intermediate", region, info.error());
      if (!record("init-intermediate", info->common_name + " serial " + info->serial_hex, "ok"))
        return kFailure;
      print_issued(*info);
    } else if (issue->parsed()) {
      auto parsed = security::parse_role(role);
      if (!parsed) return fail(parsed.error());
      request.role = *parsed;
      auto info = pki.issue(request);
      if (!info) return audited_fail("issue", role + " " + request.name, info.error());
      if (!record("issue", info->common_name + " serial " + info->serial_hex, "ok"))
        return kFailure;
      print_issued(*info);
    } else if (revoke->parsed()) {
      if (!region.empty()) {
        if (auto s = ca_cert.empty() ? pki.revoke_intermediate(region) : pki.revoke_lost_intermediate(region, ca_cert);
            !s)
          return audited_fail("revoke", "region " + region, s.error());
        if (!record("revoke", "region " + region, "ok")) return kFailure;
        std::cout << "revoked the intermediate CA of region " << region << '\n';
      } else {
        if (name.empty()) return fail_usage("revoke: give --name or --region");
        int code = kOk;
        auto cn = identity_cn(role, name, code);
        if (!cn) return code;
        if (auto s = pki.revoke_identity(*cn); !s) return audited_fail("revoke", *cn, s.error());
        if (!record("revoke", *cn, "ok")) return kFailure;
        std::cout << "revoked " << *cn << '\n';
      }
    } else if (crl->parsed()) {
      if (auto s = pki.regenerate_crls(); !s) return audited_fail("crl", "all CAs", s.error());
      if (!record("crl", "all CAs", "ok")) return kFailure;
      std::cout << "CRLs written to " << pki.layout().trust_crl().string() << '\n';
    } else if (renew->parsed() && !name.empty()) {
      int code = kOk;
      auto cn = identity_cn(role, name, code);
      if (!cn) return code;
      auto info = pki.renew_identity(*cn);
      if (!info) return audited_fail("renew", *cn, info.error());
      if (!record("renew", info->common_name + " serial " + info->serial_hex, "ok")) return kFailure;
      print_issued(*info);
    } else if (renew->parsed()) {
      if (renew_within->count() == 0) return fail_usage("renew: give --within or --name");
      const auto within = std::chrono::seconds(static_cast<std::int64_t>(within_days * 86400));
      auto report = pki.renew(within);
      for (const auto& info : report.renewed) {
        if (!record("renew", info.common_name + " serial " + info.serial_hex, "ok"))
          return kFailure;
        print_issued(info);
      }
      for (const auto& e : report.failed) {
        record("renew", e.path, "failed: " + e.message());
        std::cerr << "nova-pki: renew " << e.message() << '\n';
      }
      std::cout << report.renewed.size() << " renewed, " << report.failed.size() << " failed\n";
      return report.failed.empty() ? kOk : kFailure;
    } else if (exporter->parsed()) {
      int code = kOk;
      auto cn = identity_cn(role, name, code);
      if (!cn) return code;
      if (auto s = pki.export_identity(*cn, to); !s) return fail(s.error());
      std::cout << "exported " << *cn << " to " << to.string() << '\n';
    } else if (signing_key->parsed()) {
      if (auto s = pki.create_signing_key(name); !s) return fail(s.error());
      std::cout << "wrote " << pki.layout().signing_key(name).string() << " and "
                << pki.layout().signing_public_key(name).string() << '\n';
    } else if (sign->parsed()) {
      auto key = security::SigningKey::load(pki.layout().signing_key(name));
      if (!key) return fail(key.error());
      const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
      auto claims = security::claims_for_topic(topic, static_cast<schemas::Timestamp>(now), std::chrono::seconds(ttl_s));
      if (!claims) {
        std::cerr << "nova-pki: --topic: " << claims.error().reason << '\n';
        return kRefused;
      }
      const std::string message{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
      const auto envelope = security::sign_control(
          *key, *claims, std::span(reinterpret_cast<const std::uint8_t*>(message.data()), message.size()));
      std::cout.write(reinterpret_cast<const char*>(envelope.data()), static_cast<std::streamsize>(envelope.size()));
    } else if (topology->parsed()) {
      const int code = cmd_topology(pki, topology_file, request.days);
      if (!record("topology", topology_file.string(),
                  code == kOk ? "ok" : "failed (exit " + std::to_string(code) + ")")) {
        return kFailure;
      }
      return code;
    }
  } catch (const std::exception& e) {
    std::cerr << "nova-pki: " << e.what() << '\n';
    return kFailure;
  }
  return kOk;
}
