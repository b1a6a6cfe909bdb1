#include "task_process.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace nova::agent::detail {
namespace {

namespace fs = std::filesystem;
using schemas::Error;

std::string errno_text(int err) { return std::strerror(err); }

// ---------------------------------------------------------------------------------------
// The child between fork and execve.
//
// Everything it touches is prepared by the parent before fork, and it makes only system
// calls (async-signal-safe): another thread of the agent may have held the malloc lock,
// or any other lock, at the moment of fork, and the child has only the forking thread.

enum class Step : int { setpgid = 1, pdeathsig, cgroup, rlimit, user, chdir, stdio, no_new_privs, exec };

struct ChildFailure {
  int step = 0;
  int err = 0;
};

struct ChildPlan {
  const char* program = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* work_dir = nullptr;      // nullptr: inherit
  const char* cgroup_procs = nullptr;  // nullptr: stay in the agent's cgroup
  bool set_rlimit_as = false;
  rlimit rlimit_as{};
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  int devnull = -1;
  int out_w = -1;
  int err_w = -1;
  int max_fd = 0;  // close_range fallback
  pid_t parent = 0;
  const sigset_t* unblocked = nullptr;
  const struct sigaction* default_action = nullptr;
};

[[noreturn]] void child_fail(const ChildPlan& p, Step step, int err) {
  ChildFailure f{static_cast<int>(step), err};
  // Best effort: the parent sees EOF without a record and reports an unknown failure.
  [[maybe_unused]] const ssize_t n = ::write(p.err_w, &f, sizeof f);
  ::_exit(127);
}

[[noreturn]] void child_exec(const ChildPlan& p) noexcept {
  // Dispositions the agent set (an ignored SIGPIPE, say) would survive execve; handlers
  // would not, but one must not run in here either: signals stay blocked (the parent
  // blocked them all before fork) until just before execve.
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::sigaction(sig, p.default_action, nullptr);  // EINVAL for libc-reserved ones: fine
  }
  if (::setpgid(0, 0) != 0) child_fail(p, Step::setpgid, errno);
  // Dies with the agent (precisely: with the thread that forked it).
  if (::prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(SIGKILL)) != 0) {
    child_fail(p, Step::pdeathsig, errno);
  }
  if (::getppid() != p.parent) ::_exit(127);  // the agent died before prctl
  // Joining the cgroup and setting limits need the agent's privileges: before the switch.
  if (p.cgroup_procs != nullptr) {
    // Writing "0" to cgroup.procs moves the writer itself, before it allocates anything
    // under its limits.
    const int fd = ::open(p.cgroup_procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0) child_fail(p, Step::cgroup, errno);
    if (::write(fd, "0", 1) != 1) child_fail(p, Step::cgroup, errno);
    ::close(fd);
  }
  // setrlimit is not on POSIX's list, but glibc and musl implement it as the bare
  // prlimit64 system call.
  if (p.set_rlimit_as && ::setrlimit(RLIMIT_AS, &p.rlimit_as) != 0) {
    child_fail(p, Step::rlimit, errno);
  }
  if (p.switch_user) {
    // Raw system calls: glibc's setuid() and kin broadcast the change to every thread
    // of the process under a lock that another thread of the agent may have held at
    // fork. The child has one thread, so changing its own credentials is complete.
    // Groups first (they need privilege), the user last (it gives privilege up).
    const gid_t groups[1] = {p.gid};
    if (::syscall(SYS_setgroups, 1, groups) != 0 || ::syscall(SYS_setresgid, p.gid, p.gid, p.gid) != 0 ||
        ::syscall(SYS_setresuid, p.uid, p.uid, p.uid) != 0) {
      child_fail(p, Step::user, errno);
    }
    // A change of credentials clears the parent-death signal: set it again.
    if (::prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(SIGKILL)) != 0) {
      child_fail(p, Step::pdeathsig, errno);
    }
    if (::getppid() != p.parent) ::_exit(127);
  }
  if (p.work_dir != nullptr && ::chdir(p.work_dir) != 0) child_fail(p, Step::chdir, errno);
  // The three descriptors are >= 3 (the parent made sure), so no dup2 clobbers another.
  if (::dup2(p.devnull, 0) < 0 || ::dup2(p.out_w, 1) < 0 || ::dup2(p.out_w, 2) < 0) {
    child_fail(p, Step::stdio, errno);
  }
  // Nothing else of the agent's leaks into the task: mark every other descriptor
  // close-on-exec (err_w already is, and must stay open until execve).
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = 3; fd < p.max_fd; ++fd) {
      if (fd != p.err_w) ::close(fd);
    }
  }
  // Neither set-user-ID bits nor file capabilities raise what the task may do.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL) != 0) child_fail(p, Step::no_new_privs, errno);
  ::sigprocmask(SIG_SETMASK, p.unblocked, nullptr);
  ::execve(p.program, p.argv, p.envp);
  child_fail(p, Step::exec, errno);
}

const char* step_text(int step) {
  switch (static_cast<Step>(step)) {
    case Step::setpgid: return "create a process group";
    case Step::pdeathsig: return "set PR_SET_PDEATHSIG";
    case Step::cgroup: return "join the task's cgroup";
    case Step::rlimit: return "set RLIMIT_AS";
    case Step::user: return "switch to the task's user";
    case Step::no_new_privs: return "set PR_SET_NO_NEW_PRIVS";
    case Step::chdir: return "change to the working directory";
    case Step::stdio: return "set up stdin/stdout/stderr";
    case Step::exec: return "execute";
  }
  return "start";
}

// Moves fd to a number >= 3 so the child's dup2 onto 0..2 cannot overwrite it (the agent
// may run with a standard descriptor closed).
int above_stdio(int fd) {
  if (fd < 0 || fd > 2) return fd;
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  ::close(fd);
  return moved;
}

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  int release() { return std::exchange(fd, -1); }
};

// ---------------------------------------------------------------------------------------
// Files of the cgroup filesystem: each value is written with a single write().

int write_file(const fs::path& path, const std::string& value) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  const ssize_t n = ::write(fd, value.data(), value.size());
  const int err = n == static_cast<ssize_t>(value.size()) ? 0 : (n < 0 ? errno : EIO);
  ::close(fd);
  return err;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> words(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& w) {
  return std::find(v.begin(), v.end(), w) != v.end();
}

bool is_executable_file(const fs::path& path, int& err) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    err = errno;
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    err = EACCES;
    return false;
  }
  if (::access(path.c_str(), X_OK) != 0) {
    err = errno;
    return false;
  }
  return true;
}

}  // namespace

std::optional<std::string> not_executable(const std::string& path) {
  int err = 0;
  if (is_executable_file(path, err)) return std::nullopt;
  return "program " + path + " cannot be executed: " + errno_text(err);
}

schemas::Result<Child> spawn(const SpawnRequest& request) {
  // Everything the child reads, built before fork.
  std::vector<char*> argv;
  for (const std::string& a : request.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : request.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  const std::string work_dir = request.work_dir.string();
  const std::string procs = request.cgroup.empty() ? "" : (request.cgroup / "cgroup.procs").string();

  int out[2] = {-1, -1};
  int err[2] = {-1, -1};
  if (::pipe2(out, O_CLOEXEC) != 0) return Error{"", "pipe: " + errno_text(errno)};
  Fd out_r(above_stdio(out[0])), out_w(above_stdio(out[1]));
  if (::pipe2(err, O_CLOEXEC) != 0) return Error{"", "pipe: " + errno_text(errno)};
  Fd err_r(above_stdio(err[0])), err_w(above_stdio(err[1]));
  Fd devnull(above_stdio(::open("/dev/null", O_RDONLY | O_CLOEXEC)));
  if (out_r.fd < 0 || out_w.fd < 0 || err_r.fd < 0 || err_w.fd < 0 || devnull.fd < 0) {
    return Error{"", "cannot set up the child's descriptors: " + errno_text(errno)};
  }

  sigset_t all, unblocked, saved;
  ::sigfillset(&all);
  ::sigemptyset(&unblocked);
  struct sigaction default_action{};
  default_action.sa_handler = SIG_DFL;
  ::sigemptyset(&default_action.sa_mask);

  ChildPlan plan;
  plan.program = request.program.c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.work_dir = work_dir.empty() ? nullptr : work_dir.c_str();
  plan.cgroup_procs = procs.empty() ? nullptr : procs.c_str();
  if (request.rlimit_as_bytes > 0) {
    // rlim_t has 32 bits on armhf: a limit beyond it is beyond the address space, so no
    // limit at all (truncating it would make 4097 MB a 1 MB limit).
    const auto limit = static_cast<rlim_t>(std::min<std::uint64_t>(request.rlimit_as_bytes, RLIM_INFINITY));
    plan.set_rlimit_as = true;
    plan.rlimit_as.rlim_cur = limit;
    plan.rlimit_as.rlim_max = limit;
  }
  plan.switch_user = request.switch_user;
  plan.uid = static_cast<uid_t>(request.uid);
  plan.gid = static_cast<gid_t>(request.gid);
  plan.devnull = devnull.fd;
  plan.out_w = out_w.fd;
  plan.err_w = err_w.fd;
  plan.max_fd = static_cast<int>(std::clamp<long>(::sysconf(_SC_OPEN_MAX), 256, 65536));
  plan.parent = ::getpid();
  plan.unblocked = &unblocked;
  plan.default_action = &default_action;

  // No signal handler may run in the child before its dispositions are reset.
  ::pthread_sigmask(SIG_SETMASK, &all, &saved);
  const pid_t pid = ::fork();
  if (pid == 0) child_exec(plan);
  const int fork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  if (pid < 0) return Error{"", "fork: " + errno_text(fork_errno)};

  out_w.reset();
  err_w.reset();
  devnull.reset();
  // EOF: execve succeeded (err_w was close-on-exec). A record: the step that failed.
  // This blocks only for the child's few system calls before execve.
  ChildFailure failure;
  ssize_t n = 0;
  do {
    n = ::read(err_r.fd, &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  if (n != 0) {
    reap(pid);
    if (n != static_cast<ssize_t>(sizeof failure)) return Error{"", "the child failed before execve"};
    std::string what = std::string("cannot ") + step_text(failure.step);
    if (failure.step == static_cast<int>(Step::exec)) what += " " + request.program;
    if (failure.step == static_cast<int>(Step::chdir)) what += " " + work_dir;
    return Error{"", what + ": " + errno_text(failure.err)};
  }

  ::fcntl(out_r.fd, F_SETFL, ::fcntl(out_r.fd, F_GETFL) | O_NONBLOCK);
  Child child;
  child.pid = pid;
  child.output_fd = out_r.release();
#ifdef SYS_pidfd_open
  child.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#endif
  return child;
}

bool has_exited(pid_t pid) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    return errno != EINTR;  // ECHILD: reaped behind our back; reap() reports it
  }
  return info.si_pid != 0;
}

int reap(pid_t pid) {
  int status = 0;
  pid_t r = 0;
  do {
    r = ::waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  return r == pid ? status : -1;
}

// ---------------------------------------------------------------------------------------

void Cgroups::init(const fs::path& root) {
  root_ = root;
  support_ = LimitSupport{};
  if (root.empty()) {
    support_.detail = "no cgroup root configured: memory_mb is enforced with RLIMIT_AS, "
                      "cpu_millis is not enforced";
    return;
  }
  const std::string fallback = "; memory_mb is enforced with RLIMIT_AS, cpu_millis is not enforced";
  struct statfs sfs{};
  if (::statfs(root.c_str(), &sfs) != 0) {
    support_.detail = "cgroup root " + root.string() + ": " + errno_text(errno) + fallback;
    return;
  }
  if (sfs.f_type != CGROUP2_SUPER_MAGIC) {
    support_.detail = "cgroup root " + root.string() + " is not a cgroup v2 filesystem" + fallback;
    return;
  }
  const fs::path probe = root / ("nova-probe-" + std::to_string(::getpid()));
  if (::mkdir(probe.c_str(), 0755) != 0) {
    support_.detail = "cannot create cgroups under " + root.string() + ": " + errno_text(errno) + fallback;
    return;
  }
  ::rmdir(probe.c_str());
  support_.cgroups = true;

  const auto available = words(read_file(root / "cgroup.controllers"));
  std::string detail = "cgroup v2 at " + root.string() + ": each task in its own cgroup";
  for (const char* name : {"memory", "cpu"}) {
    const std::string ctl = name;
    bool enabled = contains(words(read_file(root / "cgroup.subtree_control")), ctl);
    std::string why;
    if (!enabled && !contains(available, ctl)) {
      why = "the " + ctl + " controller is not available there (not delegated, or bound to "
            "a cgroup v1 hierarchy)";
    } else if (!enabled) {
      const int e = write_file(root / "cgroup.subtree_control", "+" + ctl);
      enabled = e == 0;
      if (!enabled) {
        why = "cannot enable " + ctl + " in its cgroup.subtree_control: " + errno_text(e);
        if (e == EBUSY) why += " (the root must hold no processes: move the agent into a leaf)";
      }
    }
    if (ctl == "memory") {
      support_.cgroup_memory = enabled;
      detail += enabled ? "; memory_mb -> memory.max" : "; memory_mb -> RLIMIT_AS, as " + why;
    } else {
      support_.cgroup_cpu = enabled;
      detail += enabled ? "; cpu_millis -> cpu.max" : "; cpu_millis not enforced, as " + why;
    }
  }
  support_.detail = detail;
}

fs::path Cgroups::create(const std::string& task_id, std::uint64_t memory_mb,
                         std::uint64_t cpu_millis, std::string& why) {
  if (!support_.cgroups) return {};
  const fs::path dir = root_ / ("task-" + task_id);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno == EEXIST) {
    kill_all(dir);  // left by a crashed run whose cleanup did not finish
    ::rmdir(dir.c_str());
    ::mkdir(dir.c_str(), 0755);
  }
  struct stat st{};
  if (::stat((dir / "cgroup.procs").c_str(), &st) != 0) {
    why = "cannot create cgroup " + dir.string() + ": " + errno_text(errno);
    ::rmdir(dir.c_str());
    return {};
  }
  std::vector<std::pair<std::string, std::string>> limits;
  if (memory_mb > 0 && support_.cgroup_memory) {
    limits.emplace_back("memory.max", std::to_string(memory_mb * 1024 * 1024));
  }
  if (cpu_millis > 0 && support_.cgroup_cpu) {
    // quota per 100 ms period; the kernel's minimum quota is 1 ms.
    limits.emplace_back("cpu.max", std::to_string(std::max<std::uint64_t>(cpu_millis * 100, 1000)) + " 100000");
  }
  for (const auto& [file, value] : limits) {
    if (const int e = write_file(dir / file, value); e != 0) {
      why = "cannot write " + value + " to " + (dir / file).string() + ": " + errno_text(e);
      ::rmdir(dir.c_str());
      return {};
    }
  }
  if (memory_mb > 0 && support_.cgroup_memory) {
    // Optional refinements: no swapping around the limit, and an OOM kill takes the
    // whole task rather than one of its processes.
    write_file(dir / "memory.swap.max", "0");
    write_file(dir / "memory.oom.group", "1");
  }
  return dir;
}

std::uint64_t Cgroups::oom_kills(const fs::path& cgroup) const {
  std::istringstream in(read_file(cgroup / "memory.events"));
  std::string key;
  std::uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "oom_kill") return value;
  }
  return 0;
}

void Cgroups::kill_all(const fs::path& cgroup) const {
  if (write_file(cgroup / "cgroup.kill", "1") == 0) return;
  // Kernels before 5.14 have no cgroup.kill.
  std::istringstream in(read_file(cgroup / "cgroup.procs"));
  for (long pid = 0; in >> pid;) {
    if (pid > 0) ::kill(static_cast<pid_t>(pid), SIGKILL);
  }
}

bool Cgroups::remove(const fs::path& cgroup) const {
  return ::rmdir(cgroup.c_str()) == 0 || errno == ENOENT;
}

std::vector<fs::path> Cgroups::remove_stale() const {
  std::vector<fs::path> left;
  if (!support_.cgroups) return left;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    if (!entry.path().filename().string().starts_with("task-") || !entry.is_directory(ec)) continue;
    kill_all(entry.path());
    if (!remove(entry.path())) left.push_back(entry.path());
  }
  return left;
}

std::string signal_name(int sig) {
  if (const char* abbrev = ::sigabbrev_np(sig)) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(sig);
}

std::string utf8_tail(const std::string& text, std::size_t max_bytes) {
  // A raw tail may start inside a character: skip its continuation bytes.
  std::size_t i = 0;
  while (i < text.size() && i < 3 && (static_cast<std::uint8_t>(text[i]) & 0xc0u) == 0x80u) ++i;
  std::string out;
  out.reserve(text.size() - i);
  static constexpr char kReplacement[] = "\xef\xbf\xbd";
  while (i < text.size()) {
    const auto b = static_cast<std::uint8_t>(text[i]);
    std::size_t len = 0;
    std::uint32_t min = 0;
    std::uint32_t cp = 0;
    if (b < 0x80) {
      out.push_back(text[i++]);
      continue;
    } else if ((b & 0xe0u) == 0xc0u) {
      len = 2, min = 0x80, cp = b & 0x1fu;
    } else if ((b & 0xf0u) == 0xe0u) {
      len = 3, min = 0x800, cp = b & 0x0fu;
    } else if ((b & 0xf8u) == 0xf0u) {
      len = 4, min = 0x10000, cp = b & 0x07u;
    }
    bool valid = len > 0 && i + len <= text.size();
    for (std::size_t k = 1; valid && k < len; ++k) {
      const auto c = static_cast<std::uint8_t>(text[i + k]);
      valid = (c & 0xc0u) == 0x80u;
      cp = cp << 6 | (c & 0x3fu);
    }
    valid = valid && cp >= min && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff);
    if (valid) {
      out.append(text, i, len);
      i += len;
    } else {
      out += kReplacement;
      i += 1;
    }
  }
  if (out.size() <= max_bytes) return out;
  std::size_t cut = out.size() - max_bytes;
  while (cut < out.size() && (static_cast<std::uint8_t>(out[cut]) & 0xc0u) == 0x80u) ++cut;
  return out.substr(cut);
}

}  // namespace nova::agent::detail
