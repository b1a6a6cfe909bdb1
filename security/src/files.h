// File primitives of the PKI: atomic replacement with a given mode, whole-file reads,
// private directories. Private to nova_security.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "nova/schemas/result.h"

namespace nova::security::files {

constexpr mode_t kPrivate = 0600;
constexpr mode_t kPublic = 0644;

// Writes `content` to a temporary file beside `file` created with `mode`, fsyncs it and
// renames it over `file`: readers see the old content or the new, never a mix, and a
// key is never readable by others, not even for a moment. Error path: the file.
schemas::Status write_atomic(const std::filesystem::path& file, std::string_view content,
                             mode_t mode);

// The whole file; error path: the file ("not present" when it does not exist).
schemas::Result<std::string> read(const std::filesystem::path& file);

// Creates `dir` and missing parents; `dir` itself gets mode 0700.
schemas::Status make_private_dir(const std::filesystem::path& dir);

}  // namespace nova::security::files
