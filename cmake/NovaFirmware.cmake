# The firmware build (NOVA_FIRMWARE, firmware/README.md): nova-agent for a device whose
# root file system may lack every library it needs. Each dependency Debian ships as a
# static archive is linked in: libstdc++ and libgcc, OpenSSL, Paho C, LevelDB (with
# snappy), yaml-cpp and zstd. libcbor has no static archive in Debian (12 or 13) and
# glibc must stay dynamic (its NSS and dlopen need a loader), so firmware/build.sh ships
# those beside the binary.
#
# Debian's CMake configs import the shared libraries. The targets are found here, at the
# top of the tree, so they are visible everywhere and the find_package() calls in the
# subdirectories reuse them; each is then pointed at its static archive.

# The sysroot's /usr/include is the compiler's own: never repeated as -isystem, which
# would move it ahead of the C++ headers' #include_next (firmware/cmake/riscv64.cmake).
list(APPEND CMAKE_C_IMPLICIT_INCLUDE_DIRECTORIES ${CMAKE_SYSROOT}/usr/include)
list(APPEND CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES ${CMAKE_SYSROOT}/usr/include)

set(OPENSSL_USE_STATIC_LIBS TRUE)
find_package(OpenSSL 3 REQUIRED)
# Debian 13's libcrypto.a calls zlib; an archive only adds what something calls.
find_library(NOVA_ZLIB_ARCHIVE NAMES libz.a)
if(NOVA_ZLIB_ARCHIVE)
  set_property(TARGET OpenSSL::Crypto APPEND PROPERTY INTERFACE_LINK_LIBRARIES ${NOVA_ZLIB_ARCHIVE})
endif()
find_package(leveldb REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(zstd REQUIRED)
find_package(eclipse-paho-mqtt-c REQUIRED)

# nova_use_static_archive(<imported target>): links the target's .a instead of its .so.
function(nova_use_static_archive target)
  get_target_property(configs ${target} IMPORTED_CONFIGURATIONS)
  foreach(config IN LISTS configs)
    get_target_property(shared ${target} IMPORTED_LOCATION_${config})
    string(REGEX REPLACE "\\.so[.0-9]*$" ".a" archive "${shared}")
    if(NOT EXISTS "${archive}")
      message(FATAL_ERROR "${target}: no static archive ${archive} beside ${shared}")
    endif()
    set_target_properties(${target} PROPERTIES IMPORTED_LOCATION_${config} "${archive}" IMPORTED_SONAME_${config} "")
  endforeach()
  set_target_properties(${target} PROPERTIES IMPORTED_NO_SONAME TRUE)
endfunction()

# yaml-cpp 0.8 (Debian 13) names its target yaml-cpp::yaml-cpp; 0.7 (Debian 12), which
# the rest of the tree is written for, names it yaml-cpp.
if(NOT TARGET yaml-cpp)
  add_library(yaml-cpp INTERFACE IMPORTED)
  target_link_libraries(yaml-cpp INTERFACE yaml-cpp::yaml-cpp)
  nova_use_static_archive(yaml-cpp::yaml-cpp)
else()
  nova_use_static_archive(yaml-cpp)
endif()
foreach(target leveldb::leveldb zstd::libzstd_shared eclipse-paho-mqtt-c::paho-mqtt3as)
  nova_use_static_archive(${target})
endforeach()
# LevelDB's config names snappy as a bare library name, which the linker resolves to the
# shared one.
find_library(NOVA_SNAPPY_ARCHIVE NAMES libsnappy.a REQUIRED)
set_target_properties(leveldb::leveldb PROPERTIES INTERFACE_LINK_LIBRARIES "${NOVA_SNAPPY_ARCHIVE};Threads::Threads")

# Stripped size matters on a device: unused sections go (docs/benchmarks.md has the size).
add_compile_options(-ffunction-sections -fdata-sections)
add_link_options(-static-libstdc++ -static-libgcc -Wl,--gc-sections -Wl,--as-needed)
