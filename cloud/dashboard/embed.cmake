# Writes the dashboard page into a C++ header (a raw string literal), so nova-cloud
# serves it without files on disk. Run at build time: cmake -DIN=... -DOUT=... -P embed.cmake
file(READ "${IN}" html)
string(FIND "${html}" ")nova\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )nova\"")
endif()
file(WRITE "${OUT}.tmp" "// Generated from cloud/dashboard/index.html by embed.cmake; do not edit.\n#pragma once\nnamespace nova::cloud {\ninline constexpr const char* kDashboardHtml = R\"nova(${html})nova\";\n}\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
