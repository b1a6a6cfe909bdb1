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

set(OPENSSL_USE_STATIC_LIBS TRUE)
find_package(OpenSSL 3 REQUIRED)
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

foreach(target leveldb::leveldb yaml-cpp zstd::libzstd_shared eclipse-paho-mqtt-c::paho-mqtt3as)
  nova_use_static_archive(${target})
endforeach()
# LevelDB's config names snappy as a bare library name, which the linker resolves to the
# shared one.
find_library(NOVA_SNAPPY_ARCHIVE NAMES libsnappy.a REQUIRED)
set_target_properties(leveldb::leveldb PROPERTIES INTERFACE_LINK_LIBRARIES "${NOVA_SNAPPY_ARCHIVE};Threads::Threads")

# Stripped size matters on a device: unused sections go (docs/benchmarks.md has the size).
add_compile_options(-ffunction-sections -fdata-sections)
add_link_options(-static-libstdc++ -static-libgcc -Wl,--gc-sections -Wl,--as-needed)
