// Small files the agent must find intact after a crash (bdseq, update markers).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string_view>

namespace nova::agent {

// Writes `text` to `path` atomically and durably: a temporary file beside it with `mode`,
// fsync, rename, fsync of the folder. False on any failure (the old file, if any, stays).
bool write_file_durably(const std::filesystem::path& path, std::string_view text, mode_t mode = 0644);

}  // namespace nova::agent
