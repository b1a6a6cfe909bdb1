// How many heap allocations `work` makes, counted by the operator new that
// metrics_test.cpp puts in place for the whole agent_components_test binary.
#pragma once

#include <cstddef>
#include <functional>

std::size_t allocations_during(const std::function<void()>& work);
