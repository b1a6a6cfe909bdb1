// How many heap allocations `work` makes, counted by the operator new that
// alloc_count.cpp puts in place for the whole test binary it is linked into.
#pragma once

#include <cstddef>
#include <functional>

std::size_t allocations_during(const std::function<void()>& work);
