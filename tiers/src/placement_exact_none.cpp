// exact_batch() without a solver: the device build (NOVA_FIRMWARE), whose agent links
// tiers for residency and never places a batch (placement_exact.h). Batch placement then
// keeps its heuristic's answer.
#include "placement_exact.h"

namespace nova::tiers::detail {

PackingResult exact_batch(const Packing&, const PackingLimits&) { return {}; }

}  // namespace nova::tiers::detail
