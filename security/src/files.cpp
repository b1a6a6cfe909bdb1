#include "files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace nova::security::files {

namespace {
schemas::Error os_error(const std::filesystem::path& file, std::string_view what) {
  return {file.string(), std::string(what) + ": " + std::strerror(errno)};
}
}  // namespace

schemas::Status write_atomic(const std::filesystem::path& file, std::string_view content,
                             mode_t mode) {
  const std::filesystem::path tmp = file.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return os_error(file, "cannot create");
  // open() applies the umask; the mode must be exactly what was asked.
  bool ok = ::fchmod(fd, mode) == 0;
  for (std::size_t done = 0; ok && done < content.size();) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  const int write_errno = errno;
  ::close(fd);
  if (!ok) {
    errno = write_errno;
    auto err = os_error(file, "cannot write");
    ::unlink(tmp.c_str());
    return err;
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    auto err = os_error(file, "cannot replace");
    ::unlink(tmp.c_str());
    return err;
  }
  return schemas::Ok{};
}

schemas::Result<std::string> read(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return schemas::Error{file.string(), "not present"};
  std::ifstream in(file, std::ios::binary);
  if (!in) return os_error(file, "cannot read");
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

schemas::Status make_private_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return schemas::Error{dir.string(), "cannot create directory: " + ec.message()};
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  if (ec) return schemas::Error{dir.string(), "cannot set mode 0700: " + ec.message()};
  return schemas::Ok{};
}

}  // namespace nova::security::files
