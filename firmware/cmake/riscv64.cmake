# nova-agent for 64-bit RISC-V (Debian riscv64). Debian 12 has no riscv64 libraries, so
# the sysroot is Debian 13's, while the compiler stays Debian 12's gcc 12. Two things
# follow from that mix:
# - The headers must be trixie's glibc's, which the cross compiler would otherwise mix
#   with Debian 12's (its own include directory comes before the sysroot's): the
#   compiler's search list is replayed without that directory (-nostdinc).
# - trixie's C++ libraries (leveldb, yaml-cpp, snappy) are built with gcc 14 and need
#   its libstdc++, which the sysroot holds: its directory goes first in the link path,
#   ahead of gcc 12's own libstdc++ and libgcc, and the sysroot's C start files go ahead
#   of the cross compiler's (Debian 12's glibc).
# - Debian 12's riscv64 ld (binutils 2.40) cannot read trixie's objects (relocation
#   types it does not know; it crashes), so links run trixie's own riscv64 ld under
#   qemu: the compiler finds it as `ld` in a directory of the build tree (-B). Its
#   linker plugin is an x86-64 library that ld cannot load, hence -fno-use-linker-plugin.
set(CMAKE_SYSTEM_PROCESSOR riscv64)
set(NOVA_CROSS_TRIPLE riscv64-linux-gnu)
set(NOVA_CROSS_QEMU qemu-riscv64)
include(${CMAKE_CURRENT_LIST_DIR}/cross.cmake)

# nova_trixie_includes(<lang> <compiler> <var>): the compiler's include flags, minus the
# directory of Debian 12's riscv64 glibc headers.
function(nova_trixie_includes lang compiler var)
  execute_process(COMMAND ${compiler} --sysroot=${NOVA_SYSROOT} -x${lang} -E -v -
    INPUT_FILE /dev/null OUTPUT_QUIET ERROR_VARIABLE out COMMAND_ERROR_IS_FATAL ANY)
  string(REGEX REPLACE ".*#include <...> search starts here:\n(.*)End of search list.*" "\\1" dirs "${out}")
  string(REPLACE "\n" ";" dirs "${dirs}")
  set(flags "-nostdinc")
  foreach(d IN LISTS dirs)
    string(STRIP "${d}" d)
    if(d AND NOT d MATCHES "/riscv64-linux-gnu/include$")
      string(APPEND flags " -isystem ${d}")
    endif()
  endforeach()
  set(${var} "${flags}" PARENT_SCOPE)
endfunction()
nova_trixie_includes(c ${CMAKE_C_COMPILER} CMAKE_C_FLAGS_INIT)
nova_trixie_includes(c++ ${CMAKE_CXX_COMPILER} CMAKE_CXX_FLAGS_INIT)

set(_nova_ld_dir ${CMAKE_BINARY_DIR}/trixie-ld)
file(WRITE ${_nova_ld_dir}/ld
  "#!/bin/sh\nexec ${NOVA_CROSS_QEMU} -L '${NOVA_SYSROOT}' '${NOVA_SYSROOT}/usr/bin/riscv64-linux-gnu-ld.bfd' \"$@\"\n")
file(CHMOD ${_nova_ld_dir}/ld PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
file(GLOB _nova_gcc_dir LIST_DIRECTORIES true ${NOVA_SYSROOT}/usr/lib/gcc/riscv64-linux-gnu/*)
set(CMAKE_EXE_LINKER_FLAGS_INIT
  "-B${_nova_ld_dir}/ -fno-use-linker-plugin -B${NOVA_SYSROOT}/usr/lib/riscv64-linux-gnu/ -L${_nova_gcc_dir} -L${NOVA_SYSROOT}/usr/lib/riscv64-linux-gnu")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "${CMAKE_EXE_LINKER_FLAGS_INIT}")
