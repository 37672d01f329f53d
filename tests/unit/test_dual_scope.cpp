// Banded dual-scope attention equals the reference's dense masked formulation, and the global
// frame selection follows the reference's rule.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

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
