// Banded dual-scope attention equals the reference's dense masked formulation, and the global
// frame selection follows the reference's rule.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>

#include "common/test_util.h"
#include "parallel/dual_scope.h"

using namespace vi::parallel;

TEST(DualScope, GlobalFrameIndicesFollowTheReferenceRule) {
  // The reference goldens: 8 frames, top_k 4: 1 clip -> 0,2,4,6; 2 clips -> 0,4 each.
  EXPECT_EQ(global_frame_indices(8, 4, 1), (std::vector<int64_t>{0, 2, 4, 6}));
  EXPECT_EQ(global_frame_indices(8, 4, 2), (std::vector<int64_t>{0, 4}));
  // Paper default K 16 on 8 clips of 24 frames: s = 2, stride 12.
  EXPECT_EQ(global_frame_indices(24, 16, 8), (std::vector<int64_t>{0, 12}));
  // More clips than K: s = 0, only frame 0.
  EXPECT_EQ(global_frame_indices(24, 4, 8), (std::vector<int64_t>{0}));
  // s = 3: stride 8 over 24 frames; over 23 frames stride 7 gives 4 frames (the gather keeps K).
  EXPECT_EQ(global_frame_indices(24, 3, 1), (std::vector<int64_t>{0, 8, 16}));
  EXPECT_EQ(global_frame_indices(23, 3, 1), (std::vector<int64_t>{0, 7, 14, 21}));
  // s larger than F: stride 1, every frame.
  EXPECT_EQ(global_frame_indices(3, 16, 1), (std::vector<int64_t>{0, 1, 2}));
}

TEST(DualScope, PhaseBiasesByTimestep) {
  DualScopeSettings s;  // reference defaults: +10 local below 800, +10 global from 800
  EXPECT_EQ(phase_bias(s, 799).local, 10);
  EXPECT_EQ(phase_bias(s, 799).global, 0);
  EXPECT_EQ(phase_bias(s, 800).local, 0);
  EXPECT_EQ(phase_bias(s, 800).global, 10);
  s.dynamic_scale = false;
  EXPECT_EQ(phase_bias(s, 100).local, 0);
  EXPECT_EQ(phase_bias(s, 900).global, 0);
}

TEST(DualScope, BandedEqualsDenseReference) {
  at::manual_seed(0);
  for (int64_t F : {2, 5, 12}) {
    for (int64_t P : {1, 2, 4}) {
      for (int64_t G : {0, 3}) {
        for (bool tns : {false, true}) {
          const int64_t BH = 6, d = 8;
          at::Tensor q = at::randn({BH, F, d}), k = at::randn({BH, F + 2 * P, d}), v = at::randn({BH, F + 2 * P, d});
          at::Tensor kg = at::randn({BH, G, d}), vg = at::randn({BH, G, d});
          PhaseBias phase{G > 0 ? 0.0 : 1.5, G > 0 ? 2.0 : 0.0};
          at::Tensor banded = banded_attention(q, k, v, kg, vg, P, 0.9, tns, phase);
          at::Tensor dense = dense_reference_attention(q, k, v, kg, vg, P, 0.9, tns, phase);
          double err = vi::test::rel_error(banded, dense);
          EXPECT_LT(err, 1e-6) << "F " << F << " P " << P << " G " << G << " tns " << tns;
        }
      }
    }
  }
}

TEST(DualScope, MaskedEdgeHalosMatchDense) {
  at::manual_seed(1);
  const int64_t BH = 4, F = 6, P = 2, G = 2, d = 8;
  at::Tensor q = at::randn({BH, F, d}), k = at::randn({BH, F + 2 * P, d}), v = at::randn({BH, F + 2 * P, d});
  at::Tensor kg = at::randn({BH, G, d}), vg = at::randn({BH, G, d});
  at::Tensor valid = at::ones({1, F + 2 * P}, at::kBool);
  valid.narrow(1, 0, P).fill_(false);  // no left neighbour
  for (bool tns : {false, true}) {
    at::Tensor banded = banded_attention(q, k, v, kg, vg, P, 1.0, tns, {10, 0}, valid);
    at::Tensor dense = dense_reference_attention(q, k, v, kg, vg, P, 1.0, tns, {10, 0}, valid);
    EXPECT_LT(vi::test::rel_error(banded, dense), 1e-6);
    // Masked keys have no influence: changing them changes nothing.
    at::Tensor k2 = k.clone(), v2 = v.clone();
    k2.narrow(1, 0, P).normal_();
    v2.narrow(1, 0, P).normal_();
    EXPECT_TRUE(at::allclose(banded, banded_attention(q, k2, v2, kg, vg, P, 1.0, tns, {10, 0}, valid)));
  }
}

// The gathered form (what runs on a GPU) equals the dense reference, through its explicit-matmul
// path and through scaled_dot_product_attention (banded_attention with kGathered), which share
// the gather, the bias and the folded scales.
TEST(DualScope, GatheredBlocksEqualDenseReference) {
  at::manual_seed(2);
  for (int64_t F : {1, 3, 8, 13}) {
    for (int64_t P : {0, 1, 3}) {
      if (P > F) continue;
      for (int64_t G : {0, 2}) {
        for (bool tns : {false, true}) {
          for (bool mask : {false, true}) {
            for (int64_t block : {0, 4}) {
              const int64_t BH = 5, d = 8;
              at::Tensor q = at::randn({BH, F, d}), k = at::randn({BH, F + 2 * P, d}),
                         v = at::randn({BH, F + 2 * P, d});
              at::Tensor kg = at::randn({BH, G, d}), vg = at::randn({BH, G, d});
              at::Tensor valid;
              if (mask) {  // per-row masks: row r misses its left halo when r is even, its right one when r % 3 == 0
                valid = at::ones({BH, F + 2 * P}, at::kBool);
                for (int64_t r = 0; r < BH; ++r) {
                  if (r % 2 == 0) valid[r].narrow(0, 0, P).fill_(false);
                  if (r % 3 == 0) valid[r].narrow(0, F + P, P).fill_(false);
                }
              }
              PhaseBias phase{1.5, G > 0 ? -2.0 : 0.0};
              auto blocks = gather_banded_blocks(q, k, v, kg, vg, P, 0.8, tns, phase, valid, block);
              at::Tensor got = ungather_blocks(blocks_attention(blocks, /*use_sdpa=*/false), F, q.scalar_type());
              at::Tensor dense = dense_reference_attention(q, k, v, kg, vg, P, 0.8, tns, phase, valid);
              const double err = vi::test::rel_error(got, dense);
              EXPECT_LT(err, 1e-6) << "F " << F << " P " << P << " G " << G << " tns " << tns << " mask " << mask
                                   << " block " << block;
              at::Tensor via = banded_attention(q, k, v, kg, vg, P, 0.8, tns, phase, valid, BandedImpl::kGathered);
              EXPECT_LT(vi::test::rel_error(via, dense), 1e-6);
              at::Tensor old = banded_attention(q, k, v, kg, vg, P, 0.8, tns, phase, valid, BandedImpl::kBlockMatmul);
              EXPECT_LT(vi::test::rel_error(old, dense), 1e-6);
            }
          }
        }
      }
    }
  }
}

TEST(DualScope, GatheredBlocksLayout) {
  // F 5, P 1, G 2, blocks of 2: 3 blocks, keys 2 + 2 + 2 per block, the last block half padding.
  const int64_t BH = 1, F = 5, P = 1, G = 2, d = 4;
  at::Tensor q = at::randn({BH, F, d}), k = at::arange(BH * (F + 2 * P) * d, at::kFloat).view({BH, F + 2 * P, d});
  at::Tensor kg = at::full({BH, G, d}, -1.0), vg = at::zeros({BH, G, d});
  auto b = gather_banded_blocks(q, k, k, kg, vg, P, 1.0, false, {3.0, 7.0}, at::Tensor(), 2);
  EXPECT_EQ(b.q.sizes(), (std::vector<int64_t>{1, 3, 2, d}));
  EXPECT_EQ(b.k.sizes(), (std::vector<int64_t>{1, 3, 6, d}));
  // Block 1's window starts at key frame 2; its globals follow.
  EXPECT_TRUE(at::equal(b.k[0][1].narrow(0, 0, 4), k[0].narrow(0, 2, 4)));
  EXPECT_TRUE(at::equal(b.k[0][1].narrow(0, 4, 2), kg[0]));
  // Row 0 sees window columns 0..2, row 1 columns 1..3; phase biases 3 (window) and 7 (globals).
  at::Tensor bias = b.bias.reshape({2, 6});
  const float inf = std::numeric_limits<float>::infinity();
  at::Tensor expected = at::tensor(std::vector<float>{3, 3, 3, -inf, 7, 7, -inf, 3, 3, 3, 7, 7}).view({2, 6});
  EXPECT_TRUE(at::equal(bias, expected)) << bias;
}
