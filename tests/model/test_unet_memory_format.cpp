// Channels-last (NHWC) activations and 2D conv weights give the same UNet output as the default
// layout, with and without frame chunks (map_rows must keep the chunks' layout).
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "models/temporal_context.h"
#include "testing/test_model_unet.h"

using namespace vi;

TEST(UNetMemoryFormat, ChannelsLastMatchesContiguous) {
  auto unet = vi::testing::make_random_unet("tiny", 5);
  c10::InferenceMode guard;
  at::manual_seed(5);
  at::Tensor sample = at::randn({2, 4, 3, 6, 10}), text = at::randn({2, 5, 32});
  models::PlainTemporalContext ctx;
  for (int64_t chunk : {0, 4}) {
    unet->set_frame_chunk(chunk);
    unet->set_channels_last(false);
    at::Tensor ref = unet->forward(sample, 500.0, text, 24.0, ctx);
    unet->set_channels_last(true);
    EXPECT_TRUE(unet->named_parameters()["conv_in.weight"].is_contiguous(at::MemoryFormat::ChannelsLast));
    at::Tensor out = unet->forward(sample, 500.0, text, 24.0, ctx);
    EXPECT_TRUE(out.is_contiguous());
    // fp32; only the convolutions' summation order differs between the layouts.
    EXPECT_LT(vi::test::rel_error(out, ref), 1e-5) << "frame chunk " << chunk;
    EXPECT_GT(ref.abs().max().item<double>(), 0.1);
  }
  unet->set_channels_last(false);
  EXPECT_TRUE(unet->named_parameters()["conv_in.weight"].is_contiguous());
}
