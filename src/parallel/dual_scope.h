// The arithmetic of Video-Infinity's dual-scope attention (ALGORITHM.md §6), free of any
// communication: which frames each clip shares globally, the phase biases by timestep, and the
// banded attention that gives each query its own frame, P frames each side and G global frames
// in time and memory linear in the frame count.
#pragma once

#include <ATen/Tensor.h>

#include "video_infinity/dual_scope_settings.h"

#include <cstdint>
#include <vector>

namespace vi::parallel {

// Local frame indices a clip of `frames` frames shares for the global scope when the video has
// `clips` clips: 0, stride, 2*stride, ... < frames with s = top_k div clips,
// stride = max(frames div s, 1); only frame 0 when s == 0 (the reference's "infinite" stride).
std::vector<int64_t> global_frame_indices(int64_t frames, int64_t top_k, int64_t clips);

// Total bias (local, global) at timestep t.
struct PhaseBias {
  double local = 0;
  double global = 0;
};
PhaseBias phase_bias(const DualScopeSettings& settings, double t);

// How banded_attention runs. kBlockMatmul: per query block, batched matmuls against the block's
// window and (separately) the globals, masks applied to the scores. kGathered: every block's keys
// (window + globals) gathered once and one attention with a shared additive bias per block,
// through at::scaled_dot_product_attention (models::dot_product_attention). kAuto: kGathered on
// CUDA (fused kernels), kBlockMatmul on the CPU (less transient memory; see docs/benchmarks.md).
enum class BandedImpl { kAuto, kBlockMatmul, kGathered };

// Banded dual-scope attention for one clip batch.
//   q      [BH, F, d]
//   k_ext  [BH, F + 2P, d]   left halo | own frames | right halo (zeros where no neighbour)
//   v_ext  [BH, F + 2P, d]
//   kg, vg [BH, G, d]        global frames (G may be 0)
//   halo_valid: optional bool [BH or 1, F + 2P]: false marks masked key frames (edge halos)
// Query i attends to k_ext[i .. i + 2P] and all of kg, with softmax(q k^T * scale + bias):
// scale = attn_scale / sqrt(d) (times ln(n)/ln(16) per row with token_num_scale), bias =
// phase.local on window columns, phase.global on global columns. Cost O(BH * F * (2P+1+G) * d).
at::Tensor banded_attention(const at::Tensor& q, const at::Tensor& k_ext, const at::Tensor& v_ext,
                            const at::Tensor& kg, const at::Tensor& vg, int64_t padding, double attn_scale,
                            bool token_num_scale, PhaseBias phase, const at::Tensor& halo_valid = at::Tensor(),
                            BandedImpl impl = BandedImpl::kAuto);

// The gathered form of banded_attention (BandedImpl::kGathered): nb = ceil(F / Fb) query blocks
// of Fb frames; block b's keys are k_ext frames [b*Fb, b*Fb + Fb + 2P) then the G globals.
// attention(q, k, v, bias) = softmax(q k^T / sqrt(d) + bias) v per block equals banded_attention
// on the first F rows: the scale (attn_scale, and ln(n)/ln(16) per row with token_num_scale) is
// folded into q's rows, and bias holds the phase biases, -inf outside the band and on masked
// halo frames. Rows past F are padding (possibly all -inf: NaN there); ungather drops them.
struct BandedBlocks {
  at::Tensor q;     // [BH, nb, Fb, d]           scaled queries (compute dtype)
  at::Tensor k, v;  // [BH, nb, Fb + 2P + G, d]  contiguous
  at::Tensor bias;  // [1 or BH, 1 or nb, Fb, Fb + 2P + G]
  int64_t frames = 0;  // F
};
// block_frames: Fb, 0 = max(2P, 8) (at most F).
BandedBlocks gather_banded_blocks(const at::Tensor& q, const at::Tensor& k_ext, const at::Tensor& v_ext,
                                  const at::Tensor& kg, const at::Tensor& vg, int64_t padding, double attn_scale,
                                  bool token_num_scale, PhaseBias phase, const at::Tensor& halo_valid = at::Tensor(),
                                  int64_t block_frames = 0);
// softmax(q k^T / sqrt(d) + bias) v over the blocks, [BH, nb, Fb, d]: scaled_dot_product_attention
// when use_sdpa (BH in slices within the fused kernels' grid limit), else explicit matmuls
// (softmax in float32 for half types), the reference the tests hold the fused path to.
at::Tensor blocks_attention(const BandedBlocks& blocks, bool use_sdpa);
// [BH, nb, Fb, d] -> [BH, F, d] in `dtype`.
at::Tensor ungather_blocks(const at::Tensor& out, int64_t frames, at::ScalarType dtype);

// The reference's formulation (an F x (F+2P+G) masked matrix, quadratic in F), for tests.
at::Tensor dense_reference_attention(const at::Tensor& q, const at::Tensor& k_ext, const at::Tensor& v_ext,
                                     const at::Tensor& kg, const at::Tensor& vg, int64_t padding, double attn_scale,
                                     bool token_num_scale, PhaseBias phase,
                                     const at::Tensor& halo_valid = at::Tensor());

}  // namespace vi::parallel
