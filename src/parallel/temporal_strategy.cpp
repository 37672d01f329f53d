#include "parallel/temporal_strategy.h"

#include "parallel/dual_scope_context.h"

namespace vi::parallel {

std::unique_ptr<models::TemporalContext> make_temporal_context(const DualScopeSettings& settings,
                                                               const ClipLayout& layout, Communicator& comm) {
  if (!settings.enabled) return std::make_unique<models::PlainTemporalContext>();
  return std::make_unique<DualScopeContext>(settings, layout, comm);
}

}  // namespace vi::parallel
