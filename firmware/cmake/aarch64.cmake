# nova-agent for 64-bit ARM (Debian arm64), on Debian 12's cross compiler and libraries.
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(NOVA_CROSS_TRIPLE aarch64-linux-gnu)
set(NOVA_CROSS_QEMU qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/cross.cmake)
