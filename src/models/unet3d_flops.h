// Multiply-add FLOPs (2 per MAC) of one UNet3DConditionModel forward, counted layer by layer
// from the module structure the model builds (UNet3DConditionModelImpl's constructor): every
// Conv2d, Conv3d, Linear and the two matmuls of every attention (Q K^T and A V). Elementwise
// work (norms, activations, softmax, residual adds, biases, upsampling) is left out: it is
// memory-bound and under 1% of the matmul FLOPs at the real configuration.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/unet3d_condition.h"

namespace vi::models {

struct UNetFlopShape {
  int64_t batch = 1;         // B of the UNet call (CFG branches x clips)
  int64_t frames = 16;       // F per batch element
  int64_t height = 40;       // latent h x w
  int64_t width = 64;
  int64_t text_tokens = 77;  // encoder_hidden_states length
  // Keys each temporal-attention query sees: 0 = all F frames (plain); dual-scope 2P + 1 + G.
  int64_t temporal_keys = 0;
  // Halo frames added on each side before a temporal conv layer's four convs (dual-scope Pc).
  int64_t conv_halo = 0;
};

struct FlopLayer {
  std::string name;  // diffusers module path, e.g. down_blocks.0.attentions.1.transformer_blocks.0.attn2
  std::string kind;  // conv2d, conv3d, linear, attention (Q K^T + A V)
  double flops = 0;
};

struct UNetFlops {
  std::vector<FlopLayer> layers;
  double total() const;
  double of_kind(const std::string& kind) const;
  // Sum over layers whose name starts with `prefix` (e.g. "up_blocks.1.").
  double under(const std::string& prefix) const;
};

// The single-operation formulas the count is made of.
double conv_flops(int64_t images, int64_t in_channels, int64_t out_channels, int64_t kernel_volume,
                  int64_t output_positions);
double linear_flops(int64_t rows, int64_t in_features, int64_t out_features);
// softmax(q k^T) v for `sequences` sequences (batch x heads) of sq queries over sk keys, head dim d.
double attention_flops(int64_t sequences, int64_t sq, int64_t sk, int64_t head_dim);

UNetFlops count_unet_flops(const UNet3DConfig& config, const UNetFlopShape& shape);

}  // namespace vi::models
