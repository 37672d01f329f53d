#include "parallel/dual_scope.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "core/check.h"
#include "models/sdpa.h"

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

// Which key columns of a query block's window each of its rows sees, on `device`: row i of a
// block of Fb rows sees window columns i .. i + 2P (Kb = Fb + 2P columns), minus the key frames
// halo_valid ([BH|1, F + 2P], optional) masks. Blocks cover Fp >= F query frames.
// Returns [1, 1, Fb, Kb], or [BH|1, nb, Fb, Kb] with halo_valid.
at::Tensor window_visibility(int64_t Fb, int64_t P, int64_t F, int64_t Fp, const at::Tensor& halo_valid,
                             c10::Device device) {
  const int64_t Kb = Fb + 2 * P;
  const auto index_opts = at::TensorOptions().dtype(at::kLong).device(device);
  at::Tensor row = at::arange(Fb, index_opts).unsqueeze(1);
  at::Tensor col = at::arange(Kb, index_opts).unsqueeze(0);
  at::Tensor visible = (col >= row).logical_and(col <= row + 2 * P).view({1, 1, Fb, Kb});
  if (!halo_valid.defined()) return visible;
  at::Tensor valid = halo_valid.to(device, at::kBool);
  valid = at::cat({valid, at::zeros({valid.size(0), Fp - F}, valid.options())}, 1);  // [BH|1, Fp + 2P]
  return visible.logical_and(valid.unfold(1, Kb, Fb).unsqueeze(2));                 // [BH|1, nb, Fb, Kb]
}

}  // namespace

BandedBlocks gather_banded_blocks(const at::Tensor& q, const at::Tensor& k_ext, const at::Tensor& v_ext,
                                  const at::Tensor& kg, const at::Tensor& vg, int64_t padding, double attn_scale,
                                  bool token_num_scale, PhaseBias phase, const at::Tensor& halo_valid,
                                  int64_t block_frames) {
  check_shapes(q, k_ext, v_ext, kg, vg, padding);
  const int64_t BH = q.size(0), F = q.size(1), d = q.size(2), P = padding, G = kg.size(1);
  VI_CHECK(block_frames >= 0, "gather_banded_blocks: block_frames {} must be >= 0", block_frames);
  const int64_t Fb = std::min<int64_t>(F, block_frames > 0 ? block_frames : std::max<int64_t>(2 * P, 8));
  const int64_t nb = (F + Fb - 1) / Fb, Fp = nb * Fb, Kb = Fb + 2 * P;
  const auto opts = q.options().dtype(at::kFloat);
  auto pad_frames = [&](const at::Tensor& t, int64_t frames) {  // [BH, n, d] -> [BH, frames, d]
    if (t.size(1) == frames) return t;
    return at::cat({t, at::zeros({t.size(0), frames - t.size(1), t.size(2)}, t.options())}, 1);
  };
  BandedBlocks out;
  out.frames = F;
  // Keys/values: each block's window (unfold: [BH, nb, d, Kb] -> [BH, nb, Kb, d]), then the globals.
  auto gather = [&](const at::Tensor& ext, const at::Tensor& glob) {
    at::Tensor win = pad_frames(ext, Fp + 2 * P).unfold(1, Kb, Fb).transpose(2, 3);  // [BH, nb, Kb, d]
    if (G == 0) return win.contiguous();
    return at::cat({win, glob.unsqueeze(1).expand({BH, nb, G, d})}, 2);  // [BH, nb, S, d]
  };
  out.k = gather(k_ext, kg);
  out.v = gather(v_ext, vg);

  const at::Tensor visible = window_visibility(Fb, P, F, Fp, halo_valid, q.device());
  at::Tensor window = at::full({}, phase.local, opts).expand(visible.sizes()).masked_fill(visible.logical_not(),
                                                                                            kNegInf);
  at::Tensor bias = window;
  if (G > 0) {
    std::vector<int64_t> gshape = visible.sizes().vec();
    gshape[3] = G;
    bias = at::cat({window, at::full(gshape, phase.global, opts)}, 3);  // [.., Fb, S]
  }
  out.bias = bias.to(q.scalar_type() == at::kDouble ? at::kDouble : q.scalar_type());

  // Scale folded into the query rows: softmax(q k^T * s_i + bias) = softmax((s_i sqrt(d) q) k^T / sqrt(d) + bias).
  const auto compute = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor rows_scale = at::full({1, 1, Fb, 1}, attn_scale, opts.dtype(compute));
  if (token_num_scale) {
    at::Tensor n = visible.sum(-1, /*keepdim=*/true).to(compute) + static_cast<double>(G);  // keys per row
    rows_scale = n.clamp_min(1).log() / std::log(16.0) * attn_scale;
  }
  at::Tensor qb = pad_frames(q, Fp).view({BH, nb, Fb, d});
  out.q = (qb.to(compute) * rows_scale).to(q.scalar_type());
  return out;
}

at::Tensor blocks_attention(const BandedBlocks& b, bool use_sdpa) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(b.q.size(-1)));
  // The batch (clips x pixels x heads) passes the fused kernels' 65,535 grid limit from ~96 frames on.
  if (use_sdpa) return models::dot_product_attention(b.q, b.k, b.v, scale, b.bias);
  const bool half = b.q.scalar_type() == at::kHalf || b.q.scalar_type() == at::kBFloat16;
  at::Tensor scores = at::matmul(b.q, b.k.transpose(-1, -2));  // [BH, nb, Fb, S]
  scores = half ? scores.to(at::kFloat).mul_(scale).add_(b.bias) : scores.mul_(scale).add_(b.bias);
  at::Tensor probs = at::softmax(scores, -1).to(b.v.scalar_type());
  return at::matmul(probs, b.v);  // [BH, nb, Fb, d]
}

at::Tensor ungather_blocks(const at::Tensor& out, int64_t frames, at::ScalarType dtype) {
  const int64_t BH = out.size(0), Fp = out.size(1) * out.size(2), d = out.size(3);
  return out.reshape({BH, Fp, d}).narrow(1, 0, frames).to(dtype);
}

at::Tensor banded_attention(const at::Tensor& q, const at::Tensor& k_ext, const at::Tensor& v_ext, const at::Tensor& kg,
                            const at::Tensor& vg, int64_t padding, double attn_scale, bool token_num_scale,
                            PhaseBias phase, const at::Tensor& halo_valid, BandedImpl impl) {
  if (impl == BandedImpl::kAuto) impl = q.is_cuda() ? BandedImpl::kGathered : BandedImpl::kBlockMatmul;
  if (impl == BandedImpl::kGathered) {
    BandedBlocks blocks =
        gather_banded_blocks(q, k_ext, v_ext, kg, vg, padding, attn_scale, token_num_scale, phase, halo_valid);
    return ungather_blocks(blocks_attention(blocks, /*use_sdpa=*/true), blocks.frames, q.scalar_type());
  }
  check_shapes(q, k_ext, v_ext, kg, vg, padding);
  const int64_t BH = q.size(0), F = q.size(1), d = q.size(2), P = padding, G = kg.size(1);
  // Queries go in blocks of Fb frames; block b sees key frames [b*Fb, b*Fb + Fb + 2P) of k_ext,
  // so every block is one small dense attention with the same band mask, and all blocks run as
  // one batched matmul. Work is F * (Fb + 2P + G) per row instead of F * (F + 2P + G).
  const int64_t Fb = std::min<int64_t>(F, std::max<int64_t>(2 * P, 8));
  const int64_t nb = (F + Fb - 1) / Fb, Fp = nb * Fb, Kb = Fb + 2 * P;
  const auto compute = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto pad_frames = [&](const at::Tensor& t, int64_t frames) {  // [BH, n, d] -> [BH, frames, d]
    at::Tensor c = t.to(compute);
    if (c.size(1) == frames) return c;
    return at::cat({c, at::zeros({c.size(0), frames - c.size(1), c.size(2)}, c.options())}, 1);
  };
  at::Tensor qb = pad_frames(q, Fp).view({BH, nb, Fb, d});
  // unfold: [BH, nb, d, Kb] -> [BH, nb, Kb, d] (a copy of (Fb+2P)/Fb times the keys)
  at::Tensor kb = pad_frames(k_ext, Fp + 2 * P).unfold(1, Kb, Fb).transpose(2, 3);
  at::Tensor vb = pad_frames(v_ext, Fp + 2 * P).unfold(1, Kb, Fb).transpose(2, 3);

  at::Tensor scores = at::matmul(qb, kb.transpose(2, 3));                   // [BH, nb, Fb, Kb]
  if (G > 0) {
    scores = at::cat({scores, at::matmul(qb, kg.to(compute).transpose(1, 2).unsqueeze(1))}, 3);  // [.., Kb + G]
  }

  // On q's device: the mask meets the scores (a CPU mask on CUDA scores would throw).
  const at::Tensor visible = window_visibility(Fb, P, F, Fp, halo_valid, q.device());
  const double base = attn_scale / std::sqrt(static_cast<double>(d));
  if (token_num_scale) {
    // n = keys each row sees; the reference counts bias entries > -100.
    at::Tensor n = visible.sum(-1).to(compute) + static_cast<double>(G);
    scores.mul_((n.clamp_min(1).log() / std::log(16.0) * base).unsqueeze(-1));
  } else {
    scores.mul_(base);
  }
  scores.narrow(3, 0, Kb).add_(phase.local).masked_fill_(visible.logical_not(), kNegInf);
  if (G > 0) scores.narrow(3, Kb, G).add_(phase.global);

  at::Tensor probs = at::softmax(scores, -1);
  at::Tensor out = at::matmul(probs.narrow(3, 0, Kb), vb);                   // [BH, nb, Fb, d]
  if (G > 0) out.add_(at::matmul(probs.narrow(3, Kb, G), vg.to(compute).unsqueeze(1)));
  return out.view({BH, Fp, d}).narrow(1, 0, F).to(q.scalar_type());
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
