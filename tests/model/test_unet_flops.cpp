// The analytic FLOP count of the UNet3D (models/unet3d_flops) against an independent count: the
// FLOPs of every convolution, matmul and attention that LibTorch actually runs in a forward of the tiny
// random model, observed through a RecordFunction callback on the dispatcher (op name + input
// shapes), so the two share no code and no knowledge of the module structure.
#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>

#include "common/test_util.h"
#include "models/temporal_context.h"
#include "testing/test_model_unet.h"
#include "models/unet3d_flops.h"
#include "parallel/dual_scope_context.h"

using namespace vi;

namespace {

// FLOPs (2 per multiply-add) of the ops seen, by kind; nested counted ops (a matmul inside a
// convolution kernel) are skipped through the depth counter.
struct Observed {
  double conv = 0, linear = 0, attention = 0;
  int depth = 0;
};
thread_local Observed* g_observed = nullptr;

struct Marker : at::ObserverContext {};

int64_t numel(at::IntArrayRef s) {
  int64_t n = 1;
  for (int64_t x : s) n *= x;
  return n;
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (g_observed == nullptr) return nullptr;
  const char* name = fn.name();
  const bool conv = std::strcmp(name, "aten::convolution") == 0;
  const bool mm = std::strcmp(name, "aten::mm") == 0, addmm = std::strcmp(name, "aten::addmm") == 0;
  const bool bmm = std::strcmp(name, "aten::bmm") == 0, baddbmm = std::strcmp(name, "aten::baddbmm") == 0;
  const bool sdpa = std::strcmp(name, "aten::scaled_dot_product_attention") == 0;
  if (!(conv || mm || addmm || bmm || baddbmm || sdpa)) return nullptr;
  Observed& o = *g_observed;
  if (o.depth++ > 0) return std::make_unique<Marker>();
  auto in = fn.inputs();
  if (conv) {
    // convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    at::IntArrayRef x = in[0].toTensor().sizes(), wt = in[1].toTensor().sizes();
    auto stride = in[3].toIntVector(), padding = in[4].toIntVector(), dilation = in[5].toIntVector();
    EXPECT_FALSE(in[6].toBool()) << "transposed convolution";
    EXPECT_EQ(in[8].toInt(), 1) << "grouped convolution";
    // One value stands for every spatial dim (at::conv2d's default dilation {1}).
    auto at_dim = [](const std::vector<int64_t>& v, size_t i) { return v.size() == 1 ? v[0] : v.at(i); };
    int64_t positions = 1;
    for (size_t d = 2; d < x.size(); ++d) {
      positions *= (x[d] + 2 * at_dim(padding, d - 2) - at_dim(dilation, d - 2) * (wt[d] - 1) - 1) /
                       at_dim(stride, d - 2) + 1;
    }
    // Per output element: Cin/groups x kernel MACs.
    o.conv += 2.0 * x[0] * positions * wt[0] * numel(wt.slice(1));
  } else if (sdpa) {
    // scaled_dot_product_attention(q [.., Sq, d], k [.., Sk, d], v [.., Sk, dv], ...): Q K^T and A V.
    at::IntArrayRef q = in[0].toTensor().sizes(), k = in[1].toTensor().sizes(), v = in[2].toTensor().sizes();
    o.attention += 2.0 * numel(q) * k[k.size() - 2] + 2.0 * numel(q.slice(0, q.size() - 1)) * k[k.size() - 2] * v.back();
  } else {
    const int off = (addmm || baddbmm) ? 1 : 0;
    at::IntArrayRef a = in[off].toTensor().sizes(), b = in[off + 1].toTensor().sizes();
    const double f = 2.0 * numel(a) * b.back();  // [.., n, k] x [.., k, m]
    // A Linear on a 3-d input that matmul does not fold into one mm runs as a bmm against the
    // weight expanded over the batch (batch stride 0): still a linear layer.
    const bool weight = (bmm || baddbmm) && in[off + 1].toTensor().stride(0) == 0;
    (mm || addmm || weight ? o.linear : o.attention) += f;
  }
  return std::make_unique<Marker>();
}

void on_end(const at::RecordFunction&, at::ObserverContext* ctx) {
  if (ctx != nullptr && g_observed != nullptr) --g_observed->depth;
}

// Runs `f` with the callback installed on this thread (ops run here: the tiny model's kernels
// do not dispatch ops from worker threads).
Observed observe(const std::function<void()>& f) {
  Observed o;
  g_observed = &o;
  auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(on_start, on_end).needsInputs(true).scopes({at::RecordScope::FUNCTION}));
  f();
  at::removeCallback(handle);
  g_observed = nullptr;
  EXPECT_EQ(o.depth, 0);
  return o;
}

void expect_close(double analytic, double observed, const char* what) {
  EXPECT_GT(observed, 0) << what;
  EXPECT_NEAR(analytic / observed, 1.0, 1e-12) << what << ": analytic " << analytic << ", observed " << observed;
}

}  // namespace

TEST(UNetFlops, SingleLayerFormulas) {
  // Conv2d 3x3, 4 images 8x8, 3 -> 5 channels: each of 4*64*5 outputs takes 3*9 MACs.
  EXPECT_DOUBLE_EQ(models::conv_flops(4, 3, 5, 9, 64), 2.0 * 4 * 64 * 5 * 3 * 9);
  EXPECT_DOUBLE_EQ(models::linear_flops(10, 7, 3), 2.0 * 10 * 7 * 3);
  // 6 sequences of 4 queries over 9 keys, d 8: Q K^T and A V are 6*4*9*8 MACs each.
  EXPECT_DOUBLE_EQ(models::attention_flops(6, 4, 9, 8), 2 * 2.0 * 6 * 4 * 9 * 8);

  // One layer of the count against the formula: the tiny model's conv_in and first resnet.
  const auto config = vi::testing::unet_preset("tiny");
  models::UNetFlopShape s;
  s.batch = 2, s.frames = 3, s.height = 6, s.width = 10, s.text_tokens = 5;
  const auto flops = models::count_unet_flops(config, s);
  auto find = [&](const std::string& name) {
    for (const auto& l : flops.layers) {
      if (l.name == name) return l.flops;
    }
    ADD_FAILURE() << "no layer " << name;
    return 0.0;
  };
  EXPECT_DOUBLE_EQ(find("conv_in"), 2.0 * 6 * 60 * 32 * 4 * 9);
  EXPECT_DOUBLE_EQ(find("down_blocks.0.resnets.0.conv1"), 2.0 * 6 * 60 * 32 * 32 * 9);
  // Temporal conv: B 2 videos x 3 frames x 60 pixels, 32 -> 32, kernel 3.
  EXPECT_DOUBLE_EQ(find("down_blocks.0.temp_convs.0.conv1.2"), 2.0 * 2 * 3 * 60 * 32 * 32 * 3);
  // Spatial cross-attention: 6 images x 4 heads, 60 queries over 5 text tokens, d 8.
  EXPECT_DOUBLE_EQ(find("down_blocks.0.attentions.0.transformer_blocks.0.attn2.attention"),
                   2 * 2.0 * 6 * 4 * 60 * 5 * 8);
  // Temporal self-attention: 2 x 60 pixels x 4 heads, 3 frames over 3 frames.
  EXPECT_DOUBLE_EQ(find("down_blocks.0.temp_attentions.0.transformer_blocks.0.attn1.attention"),
                   2 * 2.0 * 120 * 4 * 3 * 3 * 8);
  // Keys per query and conv halos change exactly the temporal layers.
  models::UNetFlopShape d = s;
  d.temporal_keys = 7;
  d.conv_halo = 2;
  const auto dual = models::count_unet_flops(config, d);
  EXPECT_DOUBLE_EQ(dual.of_kind("conv3d"), flops.of_kind("conv3d") * 7 / 3);
  EXPECT_DOUBLE_EQ(dual.of_kind("conv2d"), flops.of_kind("conv2d"));
  EXPECT_DOUBLE_EQ(dual.of_kind("linear"), flops.of_kind("linear"));
  EXPECT_GT(dual.of_kind("attention"), flops.of_kind("attention"));
}

TEST(UNetFlops, TinyCountEqualsTheOpsLibTorchRuns) {
  auto unet = vi::testing::make_random_unet("tiny", 3);
  c10::InferenceMode guard;
  // Odd latent 6x10: the downsampler gives 3x5 and the upsampler goes back to the skip's size.
  const int64_t B = 2, F = 3, h = 6, w = 10, S = 5;
  at::Tensor sample = at::randn({B, 4, F, h, w}), text = at::randn({B, S, unet->config().cross_attention_dim});
  models::PlainTemporalContext plain;
  Observed o = observe([&] { unet->forward(sample, 500.0, text, 24.0, plain); });
  models::UNetFlopShape s;
  s.batch = B, s.frames = F, s.height = h, s.width = w, s.text_tokens = S;
  const auto flops = models::count_unet_flops(unet->config(), s);
  expect_close(flops.of_kind("conv2d") + flops.of_kind("conv3d"), o.conv, "convolutions");
  expect_close(flops.of_kind("linear"), o.linear, "linear layers (mm / addmm)");
  expect_close(flops.of_kind("attention"), o.attention, "attention (scaled_dot_product_attention)");
  expect_close(flops.total(), o.conv + o.linear + o.attention, "total");
  std::printf("tiny, B %lld, F %lld, %lldx%lld: %.0f FLOPs analytic, %.0f observed\n", (long long)B, (long long)F,
              (long long)h, (long long)w, flops.total(), o.conv + o.linear + o.attention);
}

TEST(UNetFlops, DualScopeConvHalosAreCounted) {
  // Two clips of 4 frames in one process: the temporal convs run on 4 + 2 Pc frames.
  auto unet = vi::testing::make_random_unet("tiny", 4);
  c10::InferenceMode guard;
  auto comm = parallel::make_local_communicator();
  parallel::DualScopeSettings settings;
  settings.attn_padding = 2;
  settings.conv_padding = 2;
  settings.top_k = 2;
  const int64_t clips = 2, F = 4, h = 4, w = 6;
  auto layout = parallel::ClipLayout::make(clips, F, *comm);
  parallel::DualScopeContext ctx(settings, layout, *comm);
  at::Tensor sample = at::randn({2 * clips, 4, F, h, w}), text = at::randn({2 * clips, 7, 32});
  Observed o = observe([&] { unet->forward(sample, 500.0, text, 24.0, ctx); });
  models::UNetFlopShape s;
  s.batch = 2 * clips, s.frames = F, s.height = h, s.width = w, s.text_tokens = 7;
  s.conv_halo = settings.conv_padding;
  s.temporal_keys = 2 * settings.attn_padding + 1 + 2;  // G = min(top_k 2, 2 clips x 1 frame)
  const auto flops = models::count_unet_flops(unet->config(), s);
  expect_close(flops.of_kind("conv2d") + flops.of_kind("conv3d"), o.conv, "convolutions with halos");
  expect_close(flops.of_kind("linear"), o.linear, "linear layers");
  // The banded kernel computes whole query blocks (padding included): at least the useful work.
  EXPECT_GE(o.attention, flops.of_kind("attention"));
}
