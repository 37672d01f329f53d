// Clip-parallel primitives under mpiexec -n 1..4: each rank holds its clips of a video that
// every rank can also build whole, so each rank checks its result against the single-process
// truth exactly — whatever the number of ranks and of clips per rank.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "parallel/clip_parallel.h"
#include "parallel/dual_scope.h"

using namespace vi::parallel;

namespace {

class ClipParallelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    init_launch(nullptr, nullptr);
    comm_ = vi::test::world_communicator();
  }
  // The whole video: [A, C, S, F, d], every value distinct.
  static at::Tensor video(int64_t A, int64_t C, int64_t S, int64_t F, int64_t d) {
    return at::arange(A * C * S * F * d, at::TensorOptions().dtype(at::kFloat)).reshape({A, C, S, F, d});
  }
  std::unique_ptr<Communicator> comm_;
};

// Line: zeros beyond the video's ends. Ring (--loop): the first clip's left neighbour is the last
// clip and the last clip's right neighbour the first, also when they are on one rank.
TEST_F(ClipParallelTest, HalosAreTheNeighbourClipsFrames) {
  for (bool ring : {false, true}) {
    for (int64_t per_rank : {1, 2, 3}) {
      const int64_t C = per_rank * comm_->world_size(), A = 2, S = 3, F = 5, d = 2;
      for (int64_t pad : {0, 1, 4, 5}) {
        ClipLayout layout = ClipLayout::make(C, F, *comm_, ring);
        at::Tensor full = video(A, C, S, F, d);
        at::Tensor mine = full.narrow(1, layout.first_clip, layout.local_clips);
        at::Tensor ext = extend_with_halos(mine, 3, pad, layout, *comm_);
        EXPECT_EQ(ext.sizes(), (std::vector<int64_t>{A, per_rank, S, F + 2 * pad, d}));
        for (int64_t j = 0; j < per_rank; ++j) {
          const int64_t c = layout.first_clip + j;
          const bool has_left = ring || c > 0, has_right = ring || c + 1 < C;
          at::Tensor left = has_left ? full.select(1, (c + C - 1) % C).narrow(2, F - pad, pad) : at::zeros({A, S, pad, d});
          at::Tensor right = has_right ? full.select(1, (c + 1) % C).narrow(2, 0, pad) : at::zeros({A, S, pad, d});
          at::Tensor expected = at::cat({left, full.select(1, c), right}, 2);
          EXPECT_TRUE(at::equal(ext.select(1, j), expected))
              << "clip " << c << " pad " << pad << " per rank " << per_rank << " ring " << ring;
        }
        at::Tensor valid = halo_validity(layout, pad, c10::kCPU);
        for (int64_t j = 0; j < per_rank; ++j) {
          const int64_t c = layout.first_clip + j;
          EXPECT_EQ(valid[j].narrow(0, 0, pad).all().item<bool>(), ring || c > 0 || pad == 0);
          EXPECT_EQ(valid[j].narrow(0, F + pad, pad).all().item<bool>(), ring || c + 1 < C || pad == 0);
        }
      }
    }
  }
}

TEST_F(ClipParallelTest, GlobalFramesAreTheSameEverywhere) {
  for (int64_t per_rank : {1, 2}) {
    const int64_t C = per_rank * comm_->world_size(), A = 2, S = 3, F = 8, d = 2;
    for (int64_t K : {0, 1, 4, 16}) {
      ClipLayout layout = ClipLayout::make(C, F, *comm_);
      at::Tensor full = video(A, C, S, F, d);
      auto idx = global_frame_indices(F, K, C);
      at::Tensor got = gather_global_frames(full.narrow(1, layout.first_clip, per_rank), 3, idx, K, layout, *comm_);
      std::vector<at::Tensor> parts;
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t i : idx) parts.push_back(full.select(1, c).narrow(2, i, 1));
      }
      at::Tensor expected = at::cat(parts, 2);
      expected = expected.narrow(2, 0, std::min<int64_t>(K, expected.size(2)));
      EXPECT_TRUE(at::equal(got, expected)) << "K " << K << " per rank " << per_rank << " got " << got.sizes();
    }
  }
}

TEST_F(ClipParallelTest, SyncedGroupNormUsesWholeVideoStatistics) {
  const int64_t per_rank = 2, C = per_rank * comm_->world_size(), A = 2, ch = 8, groups = 4, F = 3, hw = 5;
  at::manual_seed(7);
  at::Tensor full = at::randn({A, C, ch, F, hw});  // same on every rank (same seed)
  at::Tensor weight = at::randn({ch}), bias = at::randn({ch});
  ClipLayout layout = ClipLayout::make(C, F, *comm_);
  at::Tensor mine = full.narrow(1, layout.first_clip, per_rank).reshape({A * per_rank, ch, F, hw});
  at::Tensor got = synced_group_norm(mine, groups, weight, bias, 1e-5, layout, *comm_);
  // Truth: statistics over every clip of each CFG branch (equal clip sizes).
  at::Tensor g = full.reshape({A, C, groups, -1});
  at::Tensor mean = g.mean({1, 3}, true);
  at::Tensor var = (g - mean).pow(2).mean({1, 3}, true);
  at::Tensor norm = ((g - mean) / (var + 1e-5).sqrt()).reshape({A, C, ch, F, hw});
  at::Tensor expected = norm * weight.view({1, 1, ch, 1, 1}) + bias.view({1, 1, ch, 1, 1});
  expected = expected.narrow(1, layout.first_clip, per_rank).reshape({A * per_rank, ch, F, hw});
  EXPECT_LT((got - expected).abs().max().item<double>(), 1e-5);
  // With a single clip it is an ordinary GroupNorm.
  auto local = make_local_communicator();
  ClipLayout one = ClipLayout::make(1, F, *local);
  at::Tensor x = at::randn({2, ch, F, hw});
  EXPECT_LT((synced_group_norm(x, groups, weight, bias, 1e-5, one, *local) -
             at::group_norm(x, groups, weight, bias, 1e-5)).abs().max().item<double>(), 1e-5);
}

}  // namespace
