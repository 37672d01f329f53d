// The distributed temporal context: what every temporal layer of the UNet calls when the video
// is cut into clips over ranks (ALGORITHM.md §6). Temporal conv layers see Pc frames of the
// neighbouring clips; temporal attention sees P neighbouring frames each side and G frames
// shared by every clip, with biases by timestep; temporal GroupNorms may use whole-video
// statistics. The model code sees only the TemporalContext interface.
#pragma once

#include <ATen/Tensor.h>

#include <functional>

#include "models/temporal_context.h"
#include "parallel/clip_parallel.h"
#include "parallel/dual_scope.h"
#include "video_infinity/communicator.h"

namespace vi::parallel {

class DualScopeContext final : public models::TemporalContext {
 public:
  DualScopeContext(const DualScopeSettings& settings, const ClipLayout& layout, Communicator& comm);

  // Before each UNet call: the scheduler's timestep (drives the phase biases) and the UNet
  // batch, laid out [A groups (CFG branches)] x [local clips].
  void begin_call(double timestep, int64_t batch) override;

  // x [B, C, F, h, w] -> convs applied to x extended by Pc halo frames, cropped back to F.
  at::Tensor temporal_conv(const at::Tensor& x, const std::function<at::Tensor(const at::Tensor&)>& convs) override;
  // q, k, v [B*h*w*heads, F, d] (batch-major) -> attention output [B*h*w*heads, F, d].
  at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) override;
  // A temporal GroupNorm over x [B, C, ...].
  at::Tensor group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                        double eps) override;

  const DualScopeSettings& settings() const { return settings_; }
  const ClipLayout& layout() const { return layout_; }
  Communicator& communicator() { return comm_; }

 private:
  DualScopeSettings settings_;
  ClipLayout layout_;
  Communicator& comm_;
  double timestep_ = 1000;
  int64_t batch_ = 0;
  std::vector<std::vector<int64_t>> global_indices_;  // per clip of the video
};

}  // namespace vi::parallel
