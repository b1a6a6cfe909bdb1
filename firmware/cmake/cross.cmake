# What the three toolchain files share. Each sets NOVA_CROSS_TRIPLE (the Debian cross
# compiler's prefix) and NOVA_CROSS_QEMU (the qemu-user program) and includes this file.
# The sysroot (firmware/sysroot.sh) comes in as NOVA_SYSROOT: a cache variable on the
# first configure, kept for try_compile and re-configures.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${NOVA_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${NOVA_CROSS_TRIPLE}-g++)

if(NOT NOVA_SYSROOT)
  message(FATAL_ERROR "set NOVA_SYSROOT to a sysroot made by firmware/sysroot.sh")
endif()
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES NOVA_SYSROOT)
set(CMAKE_SYSROOT ${NOVA_SYSROOT})

# Libraries, headers and CMake packages come from the sysroot only; programs from the host.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(ENV{PKG_CONFIG_SYSROOT_DIR} ${NOVA_SYSROOT})
set(ENV{PKG_CONFIG_LIBDIR} ${NOVA_SYSROOT}/usr/lib/${NOVA_CROSS_TRIPLE}/pkgconfig:${NOVA_SYSROOT}/usr/share/pkgconfig)

# Test programs (catch_discover_tests, ctest) run under qemu-user with the sysroot's
# loader and libraries.
set(CMAKE_CROSSCOMPILING_EMULATOR ${NOVA_CROSS_QEMU} -L ${NOVA_SYSROOT})
