// An OCI image of deploy/containers/build-image.sh, run without a container engine:
// `umoci unpack` gives its root filesystem and the runtime config (config.json) an
// engine would derive from the image; the entrypoint then runs as the image's user in
// that root (chroot), as PID 1 of its own PID namespace (so, as in a container, it gets
// SIGTERM as PID 1) with its own /proc, and with the device nodes a runtime creates
// (/dev/null, zero, full, random, urandom). The network is the host's, so the process
// reaches test brokers on loopback. Needs root.
//
// Example:
//   UnpackedImage image(images_dir, "nova-cloud", work_dir);
//   image.put("/etc/nova-cloud/tls/ca.pem", host_file);   // as a Secret would be mounted
//   image.start(log_file, {"/var/lib/nova-cloud", "/tmp"});  // config.json's args, user, env
//
// Every failure throws std::runtime_error naming the image and the step.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "nova/testing/child_process.h"


namespace nova::test {

// Runs a shell command, returns its stdout; throws if it exits non-zero.
inline std::string run_command(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  if (!pipe) throw std::runtime_error("cannot run: " + command);
  std::string out;
  for (int c; (c = std::fgetc(pipe.get())) != EOF;) out.push_back(static_cast<char>(c));
  if (::pclose(pipe.release()) != 0) throw std::runtime_error("failed: " + command);
  return out;
}

// The image's OCI config as skopeo (containers/image, not umoci) reads it from the layout.
inline nlohmann::json image_config(const std::filesystem::path& layout) {
  return nlohmann::json::parse(run_command("skopeo inspect --config oci:" + layout.string() + ":latest"));
}

class UnpackedImage {
 public:
  UnpackedImage(const std::filesystem::path& images_dir, const std::string& name, const std::filesystem::path& dir)
      : name_(name), bundle_(dir / "bundle") {
    std::filesystem::create_directories(dir);
    run_command("umoci unpack --image " + (images_dir / name).string() + ":latest " + bundle_.string() + " >&2");
    std::ifstream in(bundle_ / "config.json");
    const auto spec = nlohmann::json::parse(in);
    const auto& process = spec.at("process");
    uid_ = process.at("user").at("uid").get<uid_t>();
    gid_ = process.at("user").at("gid").get<gid_t>();
    args_ = process.at("args").get<std::vector<std::string>>();
    env_ = process.at("env").get<std::vector<std::string>>();
    cwd_ = process.at("cwd").get<std::string>();
    make_runtime_mounts();
  }
  UnpackedImage(const UnpackedImage&) = delete;
  UnpackedImage& operator=(const UnpackedImage&) = delete;

  std::filesystem::path rootfs() const { return bundle_ / "rootfs"; }
  // A path inside the image, on the host.
  std::filesystem::path host_path(const std::string& image_path) const { return rootfs() / image_path.substr(1); }
  uid_t uid() const { return uid_; }
  const std::vector<std::string>& args() const { return args_; }
  const std::string& cwd() const { return cwd_; }

  // Places `text` at `image_path`, readable by the image's group only, as Kubernetes
  // mounts a ConfigMap or Secret item with defaultMode 0440 and the pod's fsGroup.
  void put_text(const std::string& image_path, const std::string& text) const {
    const auto file = host_path(image_path);
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file) << text;
    if (::chown(file.c_str(), 0, gid_) != 0 || ::chmod(file.c_str(), 0440) != 0) {
      throw std::runtime_error(name_ + ": cannot give " + file.string() + " to group " + std::to_string(gid_));
    }
  }
  void put(const std::string& image_path, const std::filesystem::path& host_file) const {
    std::ifstream in(host_file);
    std::stringstream text;
    text << in.rdbuf();
    put_text(image_path, text.str());
  }

  // Starts the image's process (config.json's args, env, user, cwd) as PID 1 of a new
  // PID namespace, in a mount namespace with its own /proc and a read-only root where
  // only `writable` (paths in the image, as a pod's writable volumes) can be written, as
  // with Kubernetes' readOnlyRootFilesystem; stderr to `log_file`. The
  // test's child waits for it, and both die with the test: each sets PR_SET_PDEATHSIG
  // itself, the image's process after taking the image's user (a change of user clears
  // the parent-death signal, so the chroot(1) --userspec of a shell would lose it).
  void start(const std::filesystem::path& log_file, const std::vector<std::string>& writable) {
    std::vector<std::string> volumes;
    for (const auto& path : writable) {
      std::filesystem::create_directories(host_path(path));
      volumes.push_back(host_path(path).string());
    }
    std::vector<std::string> strings = args_;
    std::vector<char*> argv, envp;
    for (auto& a : strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env_) envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string root = rootfs().string(), proc = (rootfs() / "proc").string();
    pid_ = ::fork();
    if (pid_ != 0) return;
    // The test's child: new namespaces, then the image's process as their PID 1.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 2);
    if (::unshare(CLONE_NEWNS | CLONE_NEWPID) != 0) fail("unshare");
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail("mount --make-rprivate /");
    const pid_t init = ::fork();
    if (init > 0) {
      int status = 0;
      ::waitpid(init, &status, 0);
      ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    }
    // The root becomes a mount of its own, the volumes mounts inside it; then only the
    // root is made read-only.
    if (::mount(root.c_str(), root.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) fail("bind root");
    for (const auto& v : volumes) {
      if (::mount(v.c_str(), v.c_str(), nullptr, MS_BIND, nullptr) != 0) fail("bind volume");
    }
    if (::mount(nullptr, root.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) fail("remount root ro");
    if (::mount("proc", proc.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) fail("mount proc");
    if (::chroot(root.c_str()) != 0 || ::chdir(cwd_.c_str()) != 0) fail("chroot");
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid_) != 0 || ::setuid(uid_) != 0) fail("setuid");
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::execve(argv[0], argv.data(), envp.data());
    fail("exec");
  }
  // The image's process as the host sees it (the namespace's PID 1), or -1.
  pid_t process() const { return nova::testing::only_child_of(pid_); }
  // Whether the image's process still runs (reaps the test's child if it exited).
  bool running() { return nova::testing::still_running(pid_); }
  // Waits for the image's process to exit; its exit code (128 + signal if killed).
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  // SIGKILLs the image's process first, so that the test's child reaps it and exits: a
  // PID namespace's init whose parent died is left to the host's PID 1, which may never
  // reap it.
  ~UnpackedImage() {
    if (pid_ <= 0) return;
    const pid_t process_pid = process();
    ::kill(process_pid > 0 ? process_pid : pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }

 private:
  // What a container runtime provides at start: /proc (mounted at start) and devices.
  void make_runtime_mounts() const {
    std::filesystem::create_directories(rootfs() / "proc");
    std::filesystem::create_directories(rootfs() / "dev");
    const struct {
      const char* name;
      unsigned minor;
    } devices[] = {{"null", 3}, {"zero", 5}, {"full", 7}, {"random", 8}, {"urandom", 9}};
    for (const auto& d : devices) {
      const auto path = rootfs() / "dev" / d.name;
      if (::mknod(path.c_str(), S_IFCHR | 0666, makedev(1, d.minor)) != 0 || ::chmod(path.c_str(), 0666) != 0) {
        throw std::runtime_error(name_ + ": cannot make " + path.string() + " (needs root)");
      }
    }
  }

  [[noreturn]] static void fail(const char* step) {
    std::perror(step);
    ::_exit(127);
  }

  std::string name_;
  std::filesystem::path bundle_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  std::vector<std::string> args_;
  std::vector<std::string> env_;
  std::string cwd_;
  pid_t pid_ = -1;
};

}  // namespace nova::test
