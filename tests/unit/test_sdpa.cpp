// models::dot_product_attention, the one attention kernel of the project: the explicit
// softmax(q k^T * scale + bias) v it stands for, in 3-d and 4-d layouts, with and without a
// bias, and the batch slicing that keeps the fused CUDA kernels within their grid limit.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <limits>

#include "common/test_util.h"
#include "models/sdpa.h"

namespace {

using vi::models::dot_product_attention;

at::Tensor explicit_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                              const at::Tensor& bias = at::Tensor()) {
  at::Tensor scores = at::matmul(q.to(at::kDouble), k.to(at::kDouble).transpose(-1, -2)) * scale;
  if (bias.defined()) scores = scores + bias.to(at::kDouble);
  return at::matmul(at::softmax(scores, -1), v.to(at::kDouble)).to(q.scalar_type());
}

TEST(Attention, ThreeDimensionalInputsAreOneHead) {
  c10::InferenceMode guard;
  at::manual_seed(2);
  at::Tensor q = at::randn({37, 9, 16}), k = at::randn({37, 11, 16}), v = at::randn({37, 11, 12});
  const double scale = 0.25;
  at::Tensor out = dot_product_attention(q, k, v, scale);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{37, 9, 12}));
  EXPECT_LE(vi::test::rel_error(out, explicit_attention(q, k, v, scale)), 1e-6);
}

TEST(Attention, HeadsAndStridedViewsMatchTheExplicitForm) {
  c10::InferenceMode guard;
  at::manual_seed(3);
  // [N, S, heads*d] projections viewed as [N, heads, S, d] without a copy, as the UNet does.
  const int64_t N = 3, S = 20, heads = 4, d = 8;
  at::Tensor x = at::randn({N, S, heads * d}), c = at::randn({N, 7, heads * d});
  auto heads_view = [&](const at::Tensor& t) { return t.view({N, t.size(1), heads, d}).transpose(1, 2); };
  at::Tensor q = heads_view(x), k = heads_view(c), v = heads_view(c * 2);
  ASSERT_FALSE(q.is_contiguous());
  at::Tensor out = dot_product_attention(q, k, v, 1.0 / std::sqrt(double(d)));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{N, heads, S, d}));
  EXPECT_LE(vi::test::rel_error(out, explicit_attention(q.contiguous(), k.contiguous(), v.contiguous(),
                                                        1.0 / std::sqrt(double(d)))),
            1e-6);
}

TEST(Attention, BiasIsAddedAndMinusInfinityHidesKeys) {
  c10::InferenceMode guard;
  at::manual_seed(4);
  const int64_t N = 5, H = 3, Sq = 6, Sk = 10, d = 8;
  at::Tensor q = at::randn({N, H, Sq, d}), k = at::randn({N, H, Sk, d}), v = at::randn({N, H, Sk, d});
  at::Tensor bias = at::randn({N, 1, Sq, Sk});  // per batch row, shared by the heads
  bias.narrow(3, 0, 3).fill_(-std::numeric_limits<float>::infinity());
  at::Tensor out = dot_product_attention(q, k, v, 0.3, bias);
  EXPECT_LE(vi::test::rel_error(out, explicit_attention(q, k, v, 0.3, bias)), 1e-6);
  // Hidden keys have no influence.
  at::Tensor k2 = k.clone(), v2 = v.clone();
  k2.narrow(2, 0, 3).normal_();
  v2.narrow(2, 0, 3).normal_();
  EXPECT_LE(vi::test::rel_error(dot_product_attention(q, k2, v2, 0.3, bias), out), 1e-6);
}

TEST(Attention, BatchSlicesGiveTheSameRowsAsOneCall) {
  c10::InferenceMode guard;
  at::manual_seed(5);
  const int64_t N = 11, H = 2, Sq = 5, Sk = 7, d = 4;
  at::Tensor q = at::randn({N, H, Sq, d}), k = at::randn({N, H, Sk, d}), v = at::randn({N, H, Sk, d});
  for (const at::Tensor& bias : {at::Tensor(), at::randn({N, H, Sq, Sk}), at::randn({1, 1, Sq, Sk})}) {
    at::Tensor one = dot_product_attention(q, k, v, 0.5, bias);
    for (int64_t max_batch : {1, 3, 10}) {
      at::Tensor sliced = dot_product_attention(q, k, v, 0.5, bias, max_batch);
      EXPECT_LE(vi::test::rel_error(sliced, one), 1e-6) << "max_batch " << max_batch << " bias "
                                                         << (bias.defined() ? bias.size(0) : 0);
    }
  }
  // 3-d inputs with a per-row bias slice the same way.
  at::Tensor q3 = at::randn({N, Sq, d}), k3 = at::randn({N, Sk, d}), b3 = at::randn({N, Sq, Sk});
  EXPECT_LE(vi::test::rel_error(dot_product_attention(q3, k3, k3, 0.5, b3, 4), explicit_attention(q3, k3, k3, 0.5, b3)),
            1e-6);
}

TEST(Attention, MismatchedShapesAreRefused) {
  at::Tensor q = at::randn({2, 3, 4, 8}), k = at::randn({2, 3, 5, 6});
  EXPECT_NE(vi::test::error_of([&] { dot_product_attention(q, k, k, 1.0); }).find("do not fit together"),
            std::string::npos);
  EXPECT_NE(vi::test::error_of([&] { dot_product_attention(q[0][0], k[0][0], k[0][0], 1.0); }).find("3-d or 4-d"),
            std::string::npos);
}

}  // namespace
