#include "parallel/dual_scope_context.h"

#include <ATen/ATen.h>

#include "core/check.h"

namespace vi::parallel {

DualScopeContext::DualScopeContext(const DualScopeSettings& settings, const ClipLayout& layout, Communicator& comm)
    : settings_(settings), layout_(layout), comm_(comm) {
  VI_CHECK(layout.ring == settings.loop, "DualScopeContext: --loop is {} but the clip layout is {}",
           settings.loop ? "on" : "off", layout.ring ? "a ring" : "a line");
  VI_CHECK(layout.shortest() >= settings.attn_padding, "frames per clip ({}) smaller than --attn-padding ({})",
           layout.shortest(), settings.attn_padding);
  VI_CHECK(layout.shortest() >= settings.conv_padding, "frames per clip ({}) smaller than --conv-padding ({})",
           layout.shortest(), settings.conv_padding);
  // Each clip samples its own frames by the reference's rule (clips of unequal length may share
  // different counts).
  global_indices_ = per_clip_indices(
      layout, [&](int64_t frames) { return global_frame_indices(frames, settings.top_k, layout.clips); });
}

void DualScopeContext::begin_call(double timestep, int64_t batch) {
  VI_CHECK(batch % layout_.local_clips == 0, "UNet batch {} is not a multiple of the {} local clips", batch,
           layout_.local_clips);
  timestep_ = timestep;
  batch_ = batch;
}

at::Tensor DualScopeContext::temporal_conv(const at::Tensor& x,
                                           const std::function<at::Tensor(const at::Tensor&)>& convs) {
  // [B, C, F, h, w] -> [A, Cl, C, F, h, w], halos on the frame dim, back to [B, C, F + 2Pc, h, w].
  const int64_t Cl = layout_.local_clips, B = x.size(0), F = x.size(2), pad = settings_.conv_padding;
  VI_CHECK(B % Cl == 0, "temporal conv: batch {} is not a multiple of the {} local clips", B, Cl);
  std::vector<int64_t> grouped = {B / Cl, Cl};
  for (int64_t d = 1; d < x.dim(); ++d) grouped.push_back(x.size(d));
  at::Tensor ext = extend_with_halos(x.reshape(grouped), 3, pad, layout_, comm_);
  std::vector<int64_t> flat = x.sizes().vec();
  flat[2] = F + 2 * pad;
  at::Tensor y = convs(ext.reshape(flat));  // GroupNorms inside see all F + 2Pc frames
  if (layout_.uniform()) return y.narrow(2, pad, F);
  // A shorter clip's frames are [Pc, Pc + n) of its extended slot; its padding stays zero.
  std::vector<at::Tensor> clips;
  const at::Tensor by_clip = y.reshape({B / Cl, Cl, y.size(1), y.size(2), y.size(3), y.size(4)});
  for (int64_t j = 0; j < Cl; ++j) {
    const at::Tensor yj = by_clip.narrow(1, j, 1);
    const int64_t n = layout_.local_frames(j);
    clips.push_back(at::cat({yj.narrow(3, pad, n), at::zeros_like(yj.narrow(3, 0, F - n))}, 3));
  }
  return at::cat(clips, 1).reshape(x.sizes());
}

at::Tensor DualScopeContext::attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  VI_CHECK(batch_ > 0, "DualScopeContext: begin_call() was not called before the UNet");
  const int64_t BH = q.size(0), F = q.size(1), d = q.size(2);
  const int64_t Cl = layout_.local_clips, A = batch_ / Cl;
  VI_CHECK(BH % batch_ == 0, "temporal attention: {} rows are not a multiple of the batch {}", BH, batch_);
  const int64_t S = BH / batch_;  // pixels x heads
  const int64_t P = settings_.attn_padding;
  // k and v travel together: one exchange and one all-gather per attention.
  at::Tensor kv = at::cat({k.reshape({A, Cl, S, F, d}), v.reshape({A, Cl, S, F, d})}, 0);  // [2A, Cl, S, F, d]
  at::Tensor kv_ext = extend_with_halos(kv, 3, P, layout_, comm_);                        // [2A, Cl, S, F+2P, d]
  at::Tensor kv_glob = gather_global_frames(kv, 3, global_indices_, settings_.top_k, layout_, comm_);  // [2A, S, G, d]
  const int64_t G = kv_glob.size(2);
  at::Tensor k_ext = kv_ext.narrow(0, 0, A).reshape({BH, F + 2 * P, d});
  at::Tensor v_ext = kv_ext.narrow(0, A, A).reshape({BH, F + 2 * P, d});
  // Every clip sees the same global frames.
  auto per_clip = [&](const at::Tensor& g) {
    return g.unsqueeze(1).expand({A, Cl, S, G, d}).reshape({BH, G, d});
  };
  at::Tensor kg = per_clip(kv_glob.narrow(0, 0, A));
  at::Tensor vg = per_clip(kv_glob.narrow(0, A, A));
  // Masked key frames: the zero halos at the video's ends (when asked) and shorter clips' padding.
  at::Tensor valid = settings_.mask_edge_halos && P > 0 ? halo_validity(layout_, P, q.device())
                                                        : slot_validity(layout_, P, q.device());  // [Cl, F + 2P]
  if (valid.defined()) valid = valid.view({1, Cl, 1, F + 2 * P}).expand({A, Cl, S, F + 2 * P}).reshape({BH, F + 2 * P});
  at::Tensor out = banded_attention(q, k_ext, v_ext, kg, vg, P, settings_.attn_scale, settings_.token_num_scale,
                                    phase_bias(settings_, timestep_), valid);
  if (layout_.uniform()) return out;
  // Padding rows may see no key at all (NaN); zeros keep them harmless to the layers after.
  at::Tensor rows = slot_validity(layout_, 0, q.device()).view({1, Cl, 1, F}).expand({A, Cl, S, F}).reshape({BH, F, 1});
  return at::where(rows, out, 0.0);
}

at::Tensor DualScopeContext::group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                                        const at::Tensor& bias, double eps) {
  // x holds F own frames or F + 2Pc with the conv halos; shorter clips' padding is left out.
  at::Tensor valid;
  if (!layout_.uniform()) {
    const int64_t extra = x.size(2) - layout_.frames;
    VI_CHECK(extra >= 0 && extra % 2 == 0, "temporal GroupNorm: {} frames in slots of {}", x.size(2), layout_.frames);
    valid = slot_validity(layout_, extra / 2, x.device());
  }
  if (settings_.sync_groupnorm) return synced_group_norm(x, groups, weight, bias, eps, layout_, comm_, valid);
  if (valid.defined()) return masked_group_norm(x, groups, weight, bias, eps, valid);
  return at::group_norm(x, groups, weight, bias, eps);
}

}  // namespace vi::parallel
