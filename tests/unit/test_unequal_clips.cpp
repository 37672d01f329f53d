// Clips of unequal length (a frame count the clips do not divide): every clip sits in a slot of
// the longest clip's length with padding after its own frames. Each primitive and each hook of
// the dual-scope context must give every clip exactly what it would get with its own frames
// alone: halos from the neighbours' real first/last frames, global frames sampled from real
// frames by the reference's rule on the clip's own length, GroupNorm statistics over real frames.
// The expected values are built clip by clip, unpadded, from the definitions (ALGORITHM.md §6);
// the padding holds NaN (or, where a product with a zero weight would still see it, large
// values), so any leak shows.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <limits>

#include "parallel/clip_parallel.h"
#include "parallel/dual_scope.h"
#include "parallel/dual_scope_context.h"

using namespace vi;
using namespace vi::parallel;

namespace {

const std::vector<int64_t> kLengths = {9, 9, 8, 8};  // 34 frames in 4 clips

// x [A, Cl, ..., F, ...] with frame dim fd: clip c's own frames [A, 1, ..., n_c, ...].
at::Tensor own(const at::Tensor& x, int64_t fd, int64_t c) { return x.narrow(1, c, 1).narrow(fd, 0, kLengths[c]); }

// Random [A, Cl, S, F, d] with `fill` in every clip's padding.
at::Tensor slotted(std::vector<int64_t> shape, int64_t fd, double fill) {
  at::Tensor x = at::randn(shape, at::kDouble);
  for (size_t c = 0; c < kLengths.size(); ++c) {
    const int64_t n = kLengths[c];
    x.narrow(1, static_cast<int64_t>(c), 1).narrow(fd, n, x.size(fd) - n).fill_(fill);
  }
  return x;
}

// Clip c's frames with `pad` halo frames each side from its neighbours' own frames (zeros at
// the video's ends, unless the clips form a ring): [A, 1, ..., n_c + 2 pad, ...].
at::Tensor with_halos(const at::Tensor& x, int64_t fd, int64_t c, int64_t pad, bool ring = false) {
  const auto C = static_cast<int64_t>(kLengths.size());
  at::Tensor mine = own(x, fd, c);
  at::Tensor left = at::zeros_like(mine.narrow(fd, 0, pad));
  at::Tensor right = at::zeros_like(left);
  const int64_t before = (c + C - 1) % C, after = (c + 1) % C;
  if (c > 0 || ring) left = own(x, fd, before).narrow(fd, kLengths[before] - pad, pad);
  if (c + 1 < C || ring) right = own(x, fd, after).narrow(fd, 0, pad);
  return at::cat({left, mine, right}, fd);
}

double max_abs(const at::Tensor& a) { return a.numel() == 0 ? 0.0 : a.abs().max().item<double>(); }

class UnequalClips : public ::testing::Test {
 protected:
  void SetUp() override {
    at::manual_seed(7);
    comm_ = make_local_communicator();
    layout_ = ClipLayout::make(kLengths, *comm_);
  }
  std::unique_ptr<Communicator> comm_;
  ClipLayout layout_;
};

TEST_F(UnequalClips, LayoutHasSlotsOfTheLongestClip) {
  EXPECT_EQ(layout_.frames, 9);
  EXPECT_EQ(layout_.shortest(), 8);
  EXPECT_FALSE(layout_.uniform());
  EXPECT_EQ(layout_.local_frames(2), 8);
  EXPECT_TRUE(ClipLayout::make(4, 8, *comm_).uniform());
}

TEST_F(UnequalClips, HalosComeFromTheNeighboursOwnFrames) {
  const int64_t pad = 3, fd = 3;
  at::Tensor x = slotted({2, 4, 3, 9, 2}, fd, std::numeric_limits<double>::quiet_NaN());
  at::Tensor ext = extend_with_halos(x, fd, pad, layout_, *comm_);  // [2, 4, 3, 9 + 6, 2]
  ASSERT_EQ(ext.size(fd), 9 + 2 * pad);
  for (int64_t c = 0; c < 4; ++c) {
    const int64_t n = kLengths[c];
    at::Tensor got = ext.narrow(1, c, 1).narrow(fd, 0, n + 2 * pad);
    EXPECT_TRUE(at::equal(got, with_halos(x, fd, c, pad))) << "clip " << c;
    // The padding stays after the right halo.
    EXPECT_TRUE(ext.narrow(1, c, 1).narrow(fd, n + 2 * pad, 9 - n).isnan().all().item<bool>()) << "clip " << c;
  }
  // Masks: the slot's data (halos count) and, with edge masking, the video's two zero halos.
  at::Tensor slots = slot_validity(layout_, pad, c10::kCPU);
  EXPECT_TRUE(at::equal(slots.sum(1), at::tensor({15, 15, 14, 14}, at::kLong)));
  at::Tensor halos = halo_validity(layout_, pad, c10::kCPU);
  EXPECT_TRUE(at::equal(halos.sum(1), at::tensor({12, 15, 14, 11}, at::kLong)));
  EXPECT_FALSE(halos[3][8 + pad].item<bool>());      // clip 3's right halo (the video's end)
  EXPECT_TRUE(halos[2][8 + pad].item<bool>());       // clip 2's right halo, right after its 8 frames
  EXPECT_FALSE(slot_validity(ClipLayout::make(4, 8, *comm_), pad, c10::kCPU).defined());
}

TEST_F(UnequalClips, OnARingTheEndsAreNeighbours) {
  const int64_t pad = 3, fd = 3;
  const ClipLayout ring = ClipLayout::make(kLengths, *comm_, /*ring=*/true);
  at::Tensor x = slotted({2, 4, 3, 9, 2}, fd, std::numeric_limits<double>::quiet_NaN());
  at::Tensor ext = extend_with_halos(x, fd, pad, ring, *comm_);
  for (int64_t c = 0; c < 4; ++c) {
    at::Tensor got = ext.narrow(1, c, 1).narrow(fd, 0, kLengths[c] + 2 * pad);
    EXPECT_TRUE(at::equal(got, with_halos(x, fd, c, pad, /*ring=*/true))) << "clip " << c;
  }
  // No zero halo anywhere: with edge masking only the padding is masked.
  EXPECT_TRUE(at::equal(halo_validity(ring, pad, c10::kCPU), slot_validity(ring, pad, c10::kCPU)));
}

TEST_F(UnequalClips, GlobalFramesAreSampledFromEachClipsOwnFrames) {
  const int64_t fd = 3, top_k = 8;
  at::Tensor x = slotted({2, 4, 3, 9, 2}, fd, std::numeric_limits<double>::quiet_NaN());
  auto indices = per_clip_indices(layout_, [&](int64_t n) { return global_frame_indices(n, top_k, 4); });
  // 9 frames: 0, 4, 8; 8 frames: 0, 4 (stride 4 each): counts differ.
  EXPECT_EQ(indices[0], (std::vector<int64_t>{0, 4, 8}));
  EXPECT_EQ(indices[3], (std::vector<int64_t>{0, 4}));
  std::vector<at::Tensor> expected;
  for (int64_t c = 0; c < 4; ++c) {
    expected.push_back(x.narrow(1, c, 1).index_select(fd, at::tensor(indices[c], at::kLong)).squeeze(1));
  }
  at::Tensor want = at::cat(expected, fd - 1).narrow(fd - 1, 0, top_k);  // 3 + 3 + 2 of 10
  at::Tensor got = gather_global_frames(x, fd, indices, top_k, layout_, *comm_);
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_TRUE(at::equal(got, want));
}

TEST_F(UnequalClips, GroupNormStatisticsCoverOwnFramesOnly) {
  // x [A * Cl, C, F, h, w] with NaN padding.
  at::Tensor x = slotted({2, 4, 6, 9, 4}, 3, std::numeric_limits<double>::quiet_NaN()).view({8, 6, 9, 2, 2}).to(at::kFloat);
  at::Tensor w = at::randn({6}), b = at::randn({6});
  at::Tensor valid = slot_validity(layout_, 0, c10::kCPU);
  at::Tensor got = masked_group_norm(x, 3, w, b, 1e-5, valid).view({2, 4, 6, 9, 2, 2});
  at::Tensor xs = x.view({2, 4, 6, 9, 2, 2});
  double worst = 0;
  for (int64_t c = 0; c < 4; ++c) {
    const int64_t n = kLengths[c];
    at::Tensor mine = xs.narrow(1, c, 1).narrow(3, 0, n).reshape({2, 6, n, 2, 2});
    at::Tensor want = at::group_norm(mine, 3, w, b, 1e-5);
    worst = std::max(worst, max_abs(got.narrow(1, c, 1).narrow(3, 0, n).reshape(want.sizes()) - want));
    EXPECT_EQ(max_abs(got.narrow(1, c, 1).narrow(3, n, 9 - n)), 0.0) << "clip " << c << ": padding comes out zero";
  }
  std::printf("masked GroupNorm vs at::group_norm per clip: max |diff| %.3g (tolerance 1e-5, fp32)\n", worst);
  EXPECT_LT(worst, 1e-5);
}

TEST_F(UnequalClips, SyncedGroupNormAveragesEachClipsOwnStatistics) {
  // --sync-groupnorm: the clips' means (over own frames) averaged, the variances around that mean
  // likewise; padding left out and zero.
  at::Tensor x = slotted({2, 4, 6, 9, 4}, 3, std::numeric_limits<double>::quiet_NaN()).view({8, 6, 9, 2, 2}).to(at::kFloat);
  at::Tensor w = at::randn({6}), b = at::randn({6});
  const int64_t groups = 3;
  at::Tensor got = synced_group_norm(x, groups, w, b, 1e-5, layout_, *comm_, slot_validity(layout_, 0, c10::kCPU))
                       .view({2, 4, 6, 9, 2, 2});
  at::Tensor xs = x.view({2, 4, 6, 9, 2, 2});
  // Per clip [A, G] statistics over its own frames, computed in double.
  auto own_groups = [&](int64_t c) {
    return xs.narrow(1, c, 1).narrow(3, 0, kLengths[c]).to(at::kDouble).reshape({2, groups, -1});
  };
  at::Tensor mean = at::zeros({2, groups, 1}, at::kDouble), var = at::zeros_like(mean);
  for (int64_t c = 0; c < 4; ++c) mean += own_groups(c).mean(-1, true) / 4.0;
  for (int64_t c = 0; c < 4; ++c) var += (own_groups(c) - mean).pow(2).mean(-1, true) / 4.0;
  double worst = 0;
  for (int64_t c = 0; c < 4; ++c) {
    const int64_t n = kLengths[c];
    at::Tensor y = ((own_groups(c) - mean) / (var + 1e-5).sqrt()).reshape({2, 6, n, 2, 2});
    y = y * w.to(at::kDouble).view({1, 6, 1, 1, 1}) + b.to(at::kDouble).view({1, 6, 1, 1, 1});
    worst = std::max(worst, max_abs(got.narrow(1, c, 1).narrow(3, 0, n).reshape(y.sizes()).to(at::kDouble) - y));
    EXPECT_EQ(max_abs(got.narrow(1, c, 1).narrow(3, n, 9 - n)), 0.0) << "clip " << c;
  }
  std::printf("synced GroupNorm over clips of 9 and 8 frames vs the definition: max |diff| %.3g (tolerance 1e-5)\n",
              worst);
  EXPECT_LT(worst, 1e-5);
  // With every frame valid it is the unmasked synced GroupNorm.
  const ClipLayout equal = ClipLayout::make(4, 9, *comm_);
  at::Tensor full = at::randn({8, 6, 9, 2, 2});
  const double same = max_abs(synced_group_norm(full, groups, w, b, 1e-5, equal, *comm_, at::ones({4, 9}, at::kBool)) -
                              synced_group_norm(full, groups, w, b, 1e-5, equal, *comm_));
  EXPECT_LT(same, 1e-5);
}

DualScopeSettings settings() {
  DualScopeSettings s;
  s.attn_padding = 3;
  s.conv_padding = 2;
  s.top_k = 8;
  return s;
}

TEST_F(UnequalClips, TemporalConvSeesNeighboursAndNoPadding) {
  const DualScopeSettings s = settings();
  DualScopeContext ctx(s, layout_, *comm_);
  const int64_t C = 4, A = 2, pad = s.conv_padding;
  at::Tensor x = slotted({A, 4, C, 9, 2, 2}, 3, std::numeric_limits<double>::quiet_NaN()).to(at::kFloat);
  at::Tensor w1 = at::randn({C, C, 3, 1, 1}) * 0.3, w2 = at::randn({C, C, 3, 1, 1}) * 0.3;
  at::Tensor gw = at::randn({C}), gb = at::randn({C});
  // Two (GroupNorm, SiLU, temporal conv) stages as in TemporalConvLayer; norms through `norm`.
  auto convs_with = [&](const std::function<at::Tensor(const at::Tensor&)>& norm) {
    return [&, norm](const at::Tensor& h0) {
      at::Tensor h = h0;
      for (const auto& w : {w1, w2}) h = at::conv3d(at::silu(norm(h)), w, {}, 1, {1, 0, 0});
      return h;
    };
  };
  ctx.begin_call(500, A * 4);
  at::Tensor got = ctx.temporal_conv(x.view({A * 4, C, 9, 2, 2}), convs_with([&](const at::Tensor& h) {
                     return ctx.group_norm(h, 2, gw, gb, 1e-5);
                   })).view({A, 4, C, 9, 2, 2});
  auto plain = convs_with([&](const at::Tensor& h) { return at::group_norm(h, 2, gw, gb, 1e-5); });
  double worst = 0;
  for (int64_t c = 0; c < 4; ++c) {
    const int64_t n = kLengths[c];
    at::Tensor ext = with_halos(x, 3, c, pad).reshape({A, C, n + 2 * pad, 2, 2});
    at::Tensor want = plain(ext).narrow(2, pad, n);
    worst = std::max(worst, max_abs(got.narrow(1, c, 1).narrow(3, 0, n).reshape(want.sizes()) - want));
    EXPECT_EQ(max_abs(got.narrow(1, c, 1).narrow(3, n, 9 - n)), 0.0) << "clip " << c;
  }
  std::printf("temporal conv, clips of 9 and 8 frames vs each clip alone: max |diff| %.3g (tolerance 1e-5)\n", worst);
  EXPECT_LT(worst, 1e-5);
}

TEST_F(UnequalClips, AttentionSeesNeighboursGlobalsAndNoPadding) {
  for (bool mask_edges : {false, true}) {
    DualScopeSettings s = settings();
    s.mask_edge_halos = mask_edges;
    DualScopeContext ctx(s, layout_, *comm_);
    const int64_t A = 2, S = 3, d = 4, P = s.attn_padding;
    // Large finite values in the padding: a zero attention weight times them is still zero.
    auto make = [&] { return slotted({A, 4, S, 9, d}, 3, 1e4).to(at::kFloat); };
    at::Tensor q = make(), k = make(), v = make();
    const double t = 900;  // global phase: bias on the global frames
    ctx.begin_call(t, A * 4);
    at::Tensor got = ctx.attention(q.reshape({-1, 9, d}), k.reshape({-1, 9, d}), v.reshape({-1, 9, d}))
                         .view({A, 4, S, 9, d});
    auto indices = per_clip_indices(layout_, [&](int64_t n) { return global_frame_indices(n, s.top_k, 4); });
    std::vector<at::Tensor> kgs, vgs;
    for (int64_t c = 0; c < 4; ++c) {
      at::Tensor idx = at::tensor(indices[c], at::kLong);
      kgs.push_back(k.narrow(1, c, 1).index_select(3, idx));
      vgs.push_back(v.narrow(1, c, 1).index_select(3, idx));
    }
    at::Tensor kg = at::cat(kgs, 3).narrow(3, 0, s.top_k).reshape({A * S, s.top_k, d});  // same for every clip
    at::Tensor vg = at::cat(vgs, 3).narrow(3, 0, s.top_k).reshape({A * S, s.top_k, d});
    double worst = 0;
    for (int64_t c = 0; c < 4; ++c) {
      const int64_t n = kLengths[c];
      at::Tensor valid;
      if (mask_edges) {
        valid = at::ones({1, n + 2 * P}, at::kBool);
        if (c == 0) valid.narrow(1, 0, P).fill_(false);
        if (c == 3) valid.narrow(1, n + P, P).fill_(false);
      }
      at::Tensor want = dense_reference_attention(
          own(q, 3, c).reshape({A * S, n, d}), with_halos(k, 3, c, P).reshape({A * S, n + 2 * P, d}),
          with_halos(v, 3, c, P).reshape({A * S, n + 2 * P, d}), kg, vg, P, s.attn_scale, s.token_num_scale,
          phase_bias(s, t), valid);
      worst = std::max(worst, max_abs(own(got, 3, c).reshape(want.sizes()) - want));
      EXPECT_EQ(max_abs(got.narrow(1, c, 1).narrow(3, n, 9 - n)), 0.0) << "clip " << c;
    }
    std::printf("dual-scope attention (mask edges %d), clips of 9 and 8 frames vs the dense reference per clip: "
                "max |diff| %.3g (tolerance 1e-5)\n", mask_edges, worst);
    EXPECT_LT(worst, 1e-5);
  }
}

}  // namespace
