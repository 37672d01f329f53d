// The TemporalContext interface as a distributed implementation sees it: every temporal layer
// calls it (22/17 per VideoCrafter2-shaped model, here the tiny preset's 8 conv layers and 5
// temporal transformers), with the documented shapes; begin_call gets the timestep and the batch;
// a context that extends the frames (like a halo exchange) works through the convs callback.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/test_util.h"
#include "models/temporal_context.h"
#include "testing/test_model_unet.h"
#include "models/unet3d_condition.h"

namespace {

using vi::models::PlainTemporalContext;
using vi::models::TemporalContext;

// Plain behaviour, recording every call.
class RecordingContext : public TemporalContext {
 public:
  void begin_call(double timestep, int64_t batch) override {
    timestep_ = timestep;
    batch_ = batch;
    ++calls_;
  }
  at::Tensor temporal_conv(const at::Tensor& x, const std::function<at::Tensor(const at::Tensor&)>& convs) override {
    conv_shapes_.push_back(x.sizes().vec());
    return plain_.temporal_conv(x, convs);
  }
  at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) override {
    attention_shapes_.push_back(q.sizes().vec());
    return plain_.attention(q, k, v);
  }
  at::Tensor group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                        double eps) override {
    norm_shapes_.push_back(x.sizes().vec());
    return plain_.group_norm(x, groups, weight, bias, eps);
  }

  PlainTemporalContext plain_;
  double timestep_ = -1;
  int64_t batch_ = -1;
  int calls_ = 0;
  std::vector<std::vector<int64_t>> conv_shapes_, attention_shapes_, norm_shapes_;
};

// Extends every temporal conv input with `pad` zero frames each side and crops back, as a
// distributed context does with its neighbours' frames (zeros at the video's ends).
class ZeroHaloContext : public TemporalContext {
 public:
  explicit ZeroHaloContext(int64_t pad) : pad_(pad) {}
  void begin_call(double, int64_t) override {}
  at::Tensor temporal_conv(const at::Tensor& x, const std::function<at::Tensor(const at::Tensor&)>& convs) override {
    const int64_t F = x.size(2);
    at::Tensor ext = at::constant_pad_nd(x, {0, 0, 0, 0, pad_, pad_});  // [B, C, F + 2pad, h, w]
    at::Tensor y = convs(ext);
    EXPECT_EQ(y.size(2), F + 2 * pad_);
    return y.narrow(2, pad_, F);
  }
  at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) override {
    return plain_.attention(q, k, v);
  }
  at::Tensor group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                        double eps) override {
    return plain_.group_norm(x, groups, weight, bias, eps);
  }

 private:
  int64_t pad_;
  PlainTemporalContext plain_;
};

TEST(TemporalContext, EveryTemporalLayerCallsTheContext) {
  auto model = vi::testing::make_random_unet("tiny", 1);
  c10::InferenceMode guard;
  const int64_t B = 2, F = 6, h = 8, w = 8;
  at::manual_seed(0);
  at::Tensor sample = at::randn({B, 4, F, h, w}), text = at::randn({B, 77, 32});
  RecordingContext rec;
  at::Tensor out = model->forward(sample, 801.0, text, 8, rec);
  EXPECT_EQ(rec.calls_, 1);
  EXPECT_DOUBLE_EQ(rec.timestep_, 801.0);
  EXPECT_EQ(rec.batch_, B);
  // Tiny: temp convs 1 + 1 (down) + 2 (mid) + 2 + 2 (up) = 8; temporal transformers:
  // transformer_in + down 1 + mid 1 + up 2 = 5, each with attn1 and attn2 over frames.
  ASSERT_EQ(rec.conv_shapes_.size(), 8u);
  ASSERT_EQ(rec.attention_shapes_.size(), 10u);
  ASSERT_EQ(rec.norm_shapes_.size(), 8u * 4u + 5u);
  for (const auto& s : rec.conv_shapes_) {
    ASSERT_EQ(s.size(), 5u);
    EXPECT_EQ(s[0], B);
    EXPECT_EQ(s[2], F);  // [B, C, F, h, w]
  }
  // transformer_in: 8 heads of 8 over the 8x8 latent: q [B*h*w*heads, F, d].
  EXPECT_EQ(rec.attention_shapes_[0], (std::vector<int64_t>{B * h * w * 8, F, 8}));
  // down_blocks.0 temporal attention: 32 channels / 8 = 4 heads of 8.
  EXPECT_EQ(rec.attention_shapes_[2], (std::vector<int64_t>{B * h * w * 4, F, 8}));
  for (const auto& s : rec.norm_shapes_) EXPECT_EQ(s[2], F);

  // Recording changes nothing.
  PlainTemporalContext plain;
  EXPECT_EQ(vi::test::rel_error(out, model->forward(sample, 801.0, text, 8, plain)), 0.0);

  // frame_chunk 3: temporal transformers run on pixel subsets of n = 3*h*w / (B*F) = 16 pixels,
  // so transformer_in's attentions come as 4 calls of [B*16*8 heads, F, 8] each.
  model->set_frame_chunk(3);
  RecordingContext chunked;
  at::Tensor out_chunked = model->forward(sample, 801.0, text, 8, chunked);
  EXPECT_EQ(chunked.conv_shapes_.size(), 8u);
  EXPECT_EQ(chunked.norm_shapes_.size(), 8u * 4u + 5u);
  ASSERT_EQ(chunked.attention_shapes_.size(), 10u * 4u);
  EXPECT_EQ(chunked.attention_shapes_[0], (std::vector<int64_t>{B * 16 * 8, F, 8}));
  const double rel = vi::test::rel_error(out_chunked, out);
  std::printf("  frame_chunk 3 vs all at once: rel %.3e (tolerance 1e-5)\n", rel);
  EXPECT_LE(rel, 1e-5);
}

TEST(TemporalContext, HaloExtendingContextRunsTheConvsOnMoreFrames) {
  auto model = vi::testing::make_random_unet("tiny", 2);
  c10::InferenceMode guard;
  at::manual_seed(1);
  at::Tensor sample = at::randn({1, 4, 5, 8, 8}), text = at::randn({1, 77, 32});
  PlainTemporalContext plain;
  ZeroHaloContext halo(4);
  at::Tensor a = model->forward(sample, 500.0, text, 24, plain);
  at::Tensor b = model->forward(sample, 500.0, text, 24, halo);
  EXPECT_EQ(a.sizes(), b.sizes());
  EXPECT_TRUE(b.isfinite().all().item<bool>());
  // Zero frames change the GroupNorm statistics and the convs at the ends: a different output.
  const double diff = vi::test::rel_error(b, a);
  std::printf("  zero halos of 4 frames vs plain: rel %.3e (must differ)\n", diff);
  EXPECT_GT(diff, 1e-4);
}

}  // namespace
