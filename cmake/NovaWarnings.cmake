# Project-wide compile flags. Every target gets them through nova_target_defaults().

# nova_warning_flags: the warnings alone, for code loaded into a process we do not build
# (the Mosquitto plugin, broker-bridge/acl-plugin), where a sanitizer runtime cannot load.
add_library(nova_warning_flags INTERFACE)
target_compile_options(nova_warning_flags INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
  -Wcast-align -Wunused -Woverloaded-virtual -Wconversion -Wsign-conversion
  -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough)
if(NOVA_WERROR)
  target_compile_options(nova_warning_flags INTERFACE -Werror)
endif()
add_library(nova_build_flags INTERFACE)
target_link_libraries(nova_build_flags INTERFACE nova_warning_flags)
if(NOVA_SANITIZE)
  target_compile_options(nova_build_flags INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(nova_build_flags INTERFACE -fsanitize=address,undefined)
endif()

# The libFuzzer build instruments every library so coverage guides the fuzzer.
if(NOVA_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "NOVA_FUZZ needs clang (configure with CXX=clang++ CC=clang)")
  endif()
  target_compile_options(nova_build_flags INTERFACE
    -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  target_link_options(nova_build_flags INTERFACE -fsanitize=address,undefined)
endif()

function(nova_target_defaults target)
  target_link_libraries(${target} PRIVATE nova_build_flags)
endfunction()
