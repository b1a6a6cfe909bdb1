# nova-agent for 32-bit ARMv7 with hardware floating point (Debian armhf), on Debian 12's
# cross compiler and libraries.
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(NOVA_CROSS_TRIPLE arm-linux-gnueabihf)
set(NOVA_CROSS_QEMU qemu-arm)
include(${CMAKE_CURRENT_LIST_DIR}/cross.cmake)
# gcc notes that passing some structures changed in GCC 7.1: that matters only when
# mixing objects built before it, and every object here is built by gcc 12 or later.
set(CMAKE_CXX_FLAGS_INIT "-Wno-psabi")
