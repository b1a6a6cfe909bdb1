#include "nova/testing/test_ca.h"

#include <array>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <sys/wait.h>

namespace nova::testing {
namespace {

// Single-quoted for sh.
std::string quote(const std::filesystem::path& p) {
  std::string out = "'";
  for (const char c : p.string()) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

constexpr const char* kNewKey = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

}  // namespace

std::string run_command(const std::string& command_line) {
  FILE* pipe = ::popen((command_line + " 2>&1").c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot run: " + command_line);
  std::string output;
  std::array<char, 4096> buf{};
  while (const std::size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("command failed: " + command_line + "\n" + output);
  }
  return output;
}

TestCa::TestCa(std::filesystem::path dir, std::string name)
    : dir_(std::move(dir)), cert_(dir_ / "ca.crt"), key_(dir_ / "ca.key"), config_(dir_ / "ca.cnf") {
  std::filesystem::create_directories(dir_);
  run_command("openssl req -x509 " + std::string(kNewKey) + " -keyout " + quote(key_) + " -out " + quote(cert_) +
              " -days 30 -subj " + quote("/CN=" + name) +
              " -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign");
  // `openssl ca` keeps revocations in an index file; only revoke and gencrl use it.
  std::ofstream(dir_ / "index.txt").flush();
  std::ofstream(dir_ / "crlnumber") << "1000\n";
  std::ofstream(config_) << "[ca]\ndefault_ca = test\n[test]\ndatabase = " << (dir_ / "index.txt").string()
                         << "\ncrlnumber = " << (dir_ / "crlnumber").string()
                         << "\ndefault_md = sha256\ndefault_crl_days = 30\n";
}

CertFiles TestCa::issue(const CertSpec& spec) {
  char serial[16];
  std::snprintf(serial, sizeof serial, "%X", next_serial_++);
  const std::string base = spec.cn + "-" + serial;
  CertFiles out{dir_ / (base + ".crt"), dir_ / (base + ".key"), serial};
  const auto csr = dir_ / (base + ".csr");
  const auto ext = dir_ / (base + ".ext");
  {
    std::ofstream e(ext);
    e << "basicConstraints=CA:false\n";
    if (!spec.sans.empty()) {
      e << "subjectAltName=";
      for (std::size_t i = 0; i < spec.sans.size(); ++i) e << (i ? "," : "") << spec.sans[i];
      e << "\n";
    }
  }
  run_command("openssl req -new " + std::string(kNewKey) + " -keyout " + quote(out.key) + " -out " + quote(csr) +
              " -subj " + quote("/CN=" + spec.cn));
  run_command("openssl x509 -req -in " + quote(csr) + " -CA " + quote(cert_) + " -CAkey " + quote(key_) +
              " -set_serial 0x" + serial + " -days " + std::to_string(spec.days) + " -extfile " + quote(ext) +
              " -out " + quote(out.cert));
  return out;
}

void TestCa::revoke(const CertFiles& files) {
  run_command("openssl ca -config " + quote(config_) + " -cert " + quote(cert_) + " -keyfile " + quote(key_) +
              " -revoke " + quote(files.cert));
}

std::filesystem::path TestCa::crl() {
  const auto path = dir_ / "crl.pem";
  run_command("openssl ca -config " + quote(config_) + " -cert " + quote(cert_) + " -keyfile " + quote(key_) +
              " -gencrl -out " + quote(path));
  return path;
}

}  // namespace nova::testing
