// The one way nova_bridge writes a file others read while it runs (rendered configs,
// hierarchy.json): to <file>.tmp, then renamed over <file>, so a reader sees the old
// file or the new one, never half of one. Private to nova_bridge.
#pragma once

#include <filesystem>
#include <string_view>

#include "nova/schemas/result.h"

namespace nova::bridge {

enum class FileMode {
  shared,   // 0666 less the umask
  private_, // 0600 from its creation, before a byte is written (the file holds a key)
};

schemas::Status replace_file(const std::filesystem::path& file, std::string_view text,
                             FileMode mode = FileMode::shared);

}  // namespace nova::bridge
