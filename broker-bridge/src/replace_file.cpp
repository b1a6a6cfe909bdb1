#include "replace_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

namespace nova::bridge {

schemas::Status replace_file(const std::filesystem::path& file, std::string_view text, FileMode mode) {
  using schemas::Error;
  const std::filesystem::path temp = file.string() + ".tmp";
  const bool is_private = mode == FileMode::private_;
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, is_private ? 0600 : 0666);
  if (fd < 0) return Error{"", "cannot write " + temp.string() + ": " + std::strerror(errno)};
  // A temporary file left by an earlier run keeps its mode through O_CREAT: set it.
  bool ok = !is_private || ::fchmod(fd, 0600) == 0;
  for (std::size_t done = 0; ok && done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  const int saved = errno;
  if (::close(fd) != 0) ok = false;
  if (!ok) return Error{"", "cannot write " + temp.string() + ": " + std::strerror(saved)};
  std::error_code ec;
  std::filesystem::rename(temp, file, ec);
  if (ec) return Error{"", "cannot write " + file.string() + ": " + ec.message()};
  return schemas::Ok{};
}

}  // namespace nova::bridge
