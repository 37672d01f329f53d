#include "parallel/dual_scope.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "core/check.h"

namespace vi::parallel {

std::vector<int64_t> global_frame_indices(int64_t frames, int64_t top_k, int64_t clips) {
  VI_CHECK(frames > 0 && clips > 0 && top_k >= 0, "global_frame_indices: frames {}, top_k {}, clips {}", frames, top_k,
           clips);
  // Ref: Video-Infinity plugins.py AttentionPlugin.get_topk (world size read as clip count).
  const int64_t share = top_k / clips;
  const int64_t stride = share > 0 ? std::max<int64_t>(frames / share, 1) : frames;
  std::vector<int64_t> out;
  for (int64_t f = 0; f < frames; f += stride) out.push_back(f);
  return out;
}

PhaseBias phase_bias(const DualScopeSettings& s, double t) {
  PhaseBias b;
  if (!s.dynamic_scale) return b;
  if (t < s.local_phase.t) {
    b.local += s.local_phase.local_bias;
    b.global += s.local_phase.global_bias;
  }
  if (t >= s.global_phase.t) {
    b.local += s.global_phase.local_bias;
    b.global += s.global_phase.global_bias;
  }
  return b;
}

namespace {

void check_shapes(const at::Tensor& q, const at::Tensor& k_ext, const at::Tensor& v_ext, const at::Tensor& kg,
                  const at::Tensor& vg, int64_t padding) {
  VI_CHECK(q.dim() == 3 && k_ext.dim() == 3 && v_ext.dim() == 3 && kg.dim() == 3 && vg.dim() == 3,
           "dual-scope attention: q, k, v and global k, v must be [BH, frames, head_dim]");
  const int64_t F = q.size(1);
  VI_CHECK(k_ext.size(1) == F + 2 * padding && v_ext.sizes() == k_ext.sizes(),
           "dual-scope attention: keys/values have {} frames, expected {} + 2 x {}", k_ext.size(1), F, padding);
  VI_CHECK(kg.sizes() == vg.sizes() && kg.size(0) == q.size(0) && kg.size(2) == q.size(2),
           "dual-scope attention: global keys/values of the wrong shape");
}

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

}  // namespace

at::Tensor banded_attention(const at::Tensor& q, const at::Tensor& k_ext, const at::Tensor& v_ext, const at::Tensor& kg,
                            const at::Tensor& vg, int64_t padding, double attn_scale, bool token_num_scale,
                            PhaseBias phase, const at::Tensor& halo_valid) {
  check_shapes(q, k_ext, v_ext, kg, vg, padding);
  const int64_t BH = q.size(0), F = q.size(1), d = q.size(2);
  const int64_t W = 2 * padding + 1, G = kg.size(1);
  const auto compute = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor qc = q.to(compute), kc = k_ext.to(compute), vc = v_ext.to(compute);

  // scores [BH, F, W + G]: window column w of query i is key frame i + w of k_ext.
  at::Tensor scores = at::empty({BH, F, W + G}, qc.options());
  for (int64_t w = 0; w < W; ++w) {
    scores.select(2, w).copy_((qc * kc.narrow(1, w, F)).sum(-1));  // [BH, F]
  }
  if (G > 0) scores.narrow(2, W, G).copy_(at::matmul(qc, kg.to(compute).transpose(1, 2)));  // [BH, F, G]

  at::Tensor local_valid;  // [BH or 1, F, W] bool
  if (halo_valid.defined()) local_valid = halo_valid.to(at::kBool).unfold(1, W, 1);
  double base = attn_scale / std::sqrt(static_cast<double>(d));
  if (token_num_scale) {
    // n = keys each row sees; the reference counts bias entries > -100.
    at::Tensor n = local_valid.defined() ? local_valid.sum(-1).to(compute) + static_cast<double>(G)
                                         : at::full({1, 1}, static_cast<double>(W + G), qc.options());
    scores.mul_((n.log() / std::log(16.0) * base).unsqueeze(-1));
  } else {
    scores.mul_(base);
  }
  scores.narrow(2, 0, W).add_(phase.local);
  if (G > 0) scores.narrow(2, W, G).add_(phase.global);
  if (local_valid.defined()) scores.narrow(2, 0, W).masked_fill_(local_valid.logical_not(), kNegInf);

  at::Tensor probs = at::softmax(scores, -1);  // [BH, F, W + G]
  at::Tensor out = G > 0 ? at::matmul(probs.narrow(2, W, G), vg.to(compute)) : at::zeros_like(qc);  // [BH, F, d]
  for (int64_t w = 0; w < W; ++w) {
    out.add_(probs.narrow(2, w, 1) * vc.narrow(1, w, F));
  }
  return out.to(q.scalar_type());
}

at::Tensor dense_reference_attention(const at::Tensor& q, const at::Tensor& k_ext, const at::Tensor& v_ext,
                                     const at::Tensor& kg, const at::Tensor& vg, int64_t padding, double attn_scale,
                                     bool token_num_scale, PhaseBias phase, const at::Tensor& halo_valid) {
  check_shapes(q, k_ext, v_ext, kg, vg, padding);
  const int64_t F = q.size(1), d = q.size(2), L = F + 2 * padding, G = kg.size(1), S = L + G;
  // Ref: plugins.py AttentionPlugin: a bias of ones, -inf outside each query's window.
  at::Tensor bias = at::ones({F, S}, q.options());
  for (int64_t i = 0; i < F; ++i) {
    bias[i].narrow(0, 0, i).fill_(kNegInf);
    const int64_t end = std::min(L, i + 1 + 2 * padding);
    bias[i].narrow(0, end, L - end).fill_(kNegInf);
  }
  bias.narrow(1, 0, L).add_(phase.local);
  bias.narrow(1, L, G).add_(phase.global);
  at::Tensor full_bias = bias.unsqueeze(0);  // [1 or BH, F, S]
  if (halo_valid.defined()) {
    at::Tensor keep = at::cat({halo_valid.to(at::kBool), at::ones({halo_valid.size(0), G}, halo_valid.options().dtype(at::kBool))}, 1);
    full_bias = full_bias.masked_fill(keep.logical_not().unsqueeze(1), kNegInf);
  }
  at::Tensor keys = at::cat({k_ext, kg}, 1), values = at::cat({v_ext, vg}, 1);
  double base = attn_scale / std::sqrt(static_cast<double>(d));
  at::Tensor scores = at::matmul(q, keys.transpose(1, 2));
  if (token_num_scale) {
    at::Tensor n = (full_bias > -100).sum(-1).to(q.scalar_type());
    scores = scores * (n.log() / std::log(16.0) * base).unsqueeze(-1);
  } else {
    scores = scores * base;
  }
  return at::matmul(at::softmax(scores + full_bias, -1), values);
}

}  // namespace vi::parallel
