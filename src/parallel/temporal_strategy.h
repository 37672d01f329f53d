// Which temporal context the UNet's temporal layers call, chosen from the settings: Video-Infinity's
// dual-scope exchange between clips, or every clip alone (plain diffusers, the ablation). A new
// attention mode is a TemporalContext of its own plus its case here; the pipeline only asks.
#pragma once

#include <memory>

#include "models/temporal_context.h"
#include "parallel/clip_parallel.h"
#include "video_infinity/communicator.h"
#include "video_infinity/dual_scope_settings.h"

namespace vi::parallel {

// The context for `layout`'s clips of this rank; it keeps references to `layout` and `comm`.
std::unique_ptr<models::TemporalContext> make_temporal_context(const DualScopeSettings& settings,
                                                               const ClipLayout& layout, Communicator& comm);

}  // namespace vi::parallel
