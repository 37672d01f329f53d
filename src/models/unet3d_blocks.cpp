#include "models/unet3d_blocks.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <string>

#include "core/check.h"

namespace vi::models {

namespace {

// The layers shared by every block kind, registered under the diffusers list names.
struct LayerLists {
  torch::nn::ModuleList resnets, temp_convs, attentions, temp_attentions;
};

// Registers a block's lists under the diffusers names (attentions only in cross-attention blocks).
void register_lists(torch::nn::Module& block, const LayerLists& lists, bool with_attentions) {
  block.register_module("resnets", lists.resnets);
  block.register_module("temp_convs", lists.temp_convs);
  if (with_attentions) {
    block.register_module("attentions", lists.attentions);
    block.register_module("temp_attentions", lists.temp_attentions);
  }
}

// Appends one layer's resnet (resnet_in -> channels) and temporal conv.
void add_layer(const Block3DOptions& o, int64_t resnet_in, int64_t channels, double output_scale_factor,
               LayerLists& lists, std::vector<ResnetBlock2D>& resnets, std::vector<TemporalConvLayer>& temp_convs) {
  resnets.emplace_back(resnet_in, channels, o.temb_channels, o.groups, o.eps, output_scale_factor);
  lists.resnets->push_back(resnets.back());
  temp_convs.emplace_back(channels, o.groups);
  lists.temp_convs->push_back(temp_convs.back());
}

// Appends one layer's spatial and temporal transformers: channels / head_dim heads of head_dim.
void add_transformers(const Block3DOptions& o, int64_t channels, LayerLists& lists,
                      std::vector<Transformer2DModel>& attentions,
                      std::vector<TransformerTemporalModel>& temp_attentions) {
  const int64_t heads = channels / o.head_dim;
  VI_CHECK(heads >= 1, "{} channels are fewer than attention_head_dim {}", channels, o.head_dim);
  attentions.emplace_back(heads, o.head_dim, channels, o.groups, o.cross_attention_dim);
  lists.attentions->push_back(attentions.back());
  temp_attentions.emplace_back(heads, o.head_dim, channels, o.groups);
  lists.temp_attentions->push_back(temp_attentions.back());
}

// One 3D layer on [B*F, C, h, w]: resnet (per frame, in chunks), temporal conv, and for
// cross-attention blocks the spatial transformer (per frame, in chunks) and the temporal one.
// `input(begin, len)` yields the resnet's input rows (the up blocks concatenate a skip there).
at::Tensor run_layer(const std::function<at::Tensor(int64_t, int64_t)>& input, int64_t rows, const at::Tensor& temb,
                     const at::Tensor& context, const FrameRun& run, const ResnetBlock2D& resnet,
                     const TemporalConvLayer& temp_conv, const Transformer2DModel* attention,
                     const TransformerTemporalModel* temp_attention) {
  at::Tensor h = map_rows(rows, run.frame_chunk, [&](int64_t b, int64_t n) {
    return resnet->forward(input(b, n), temb.narrow(0, b, n));
  });
  h = temp_conv->forward(h, run.num_frames, run.ctx);
  if (attention != nullptr) {
    h = map_rows(rows, run.frame_chunk, [&](int64_t b, int64_t n) {
      return (*attention)->forward(h.narrow(0, b, n), context.narrow(0, b, n));
    });
    h = (*temp_attention)->forward(h, run.num_frames, run.ctx, run.frame_chunk);
  }
  return h;
}

}  // namespace

DownBlock3DImpl::DownBlock3DImpl(const Block3DOptions& o) {
  LayerLists lists;
  for (int64_t i = 0; i < o.num_layers; ++i) {
    add_layer(o, i == 0 ? o.in_channels : o.out_channels, o.out_channels, 1.0, lists, resnets_, temp_convs_);
    if (o.cross_attention) add_transformers(o, o.out_channels, lists, attentions_, temp_attentions_);
  }
  register_lists(*this, lists, o.cross_attention);
  if (o.resample) {
    auto list = torch::nn::ModuleList();
    downsampler_ = Downsample2D(o.out_channels, o.downsample_padding);
    list->push_back(downsampler_);
    register_module("downsamplers", list);
  }
}

std::pair<at::Tensor, std::vector<at::Tensor>> DownBlock3DImpl::forward(const at::Tensor& x, const at::Tensor& temb,
                                                                        const at::Tensor& context,
                                                                        const FrameRun& run) const {
  std::vector<at::Tensor> states;
  at::Tensor h = x;
  const int64_t rows = x.size(0);
  for (size_t i = 0; i < resnets_.size(); ++i) {
    const bool cross = !attentions_.empty();
    h = run_layer([&](int64_t b, int64_t n) { return h.narrow(0, b, n); }, rows, temb, context, run, resnets_[i],
                  temp_convs_[i], cross ? &attentions_[i] : nullptr, cross ? &temp_attentions_[i] : nullptr);
    states.push_back(h);
  }
  if (downsampler_) {
    h = map_rows(rows, run.frame_chunk, [&](int64_t b, int64_t n) { return downsampler_->forward(h.narrow(0, b, n)); });
    states.push_back(h);
  }
  return {h, std::move(states)};
}

UNetMidBlock3DCrossAttnImpl::UNetMidBlock3DCrossAttnImpl(const Block3DOptions& o) {
  LayerLists lists;
  const int64_t C = o.in_channels;
  add_layer(o, C, C, o.output_scale_factor, lists, resnets_, temp_convs_);
  for (int64_t i = 0; i < o.num_layers; ++i) {
    add_transformers(o, C, lists, attentions_, temp_attentions_);
    add_layer(o, C, C, o.output_scale_factor, lists, resnets_, temp_convs_);
  }
  register_lists(*this, lists, /*with_attentions=*/true);
}

at::Tensor UNetMidBlock3DCrossAttnImpl::forward(const at::Tensor& x, const at::Tensor& temb,
                                                const at::Tensor& context, const FrameRun& run) const {
  const int64_t rows = x.size(0);
  at::Tensor h = x;
  auto rows_of_h = [&](int64_t b, int64_t n) { return h.narrow(0, b, n); };
  h = run_layer(rows_of_h, rows, temb, context, run, resnets_[0], temp_convs_[0], nullptr, nullptr);
  for (size_t i = 0; i < attentions_.size(); ++i) {
    h = map_rows(rows, run.frame_chunk, [&](int64_t b, int64_t n) {
      return attentions_[i]->forward(h.narrow(0, b, n), context.narrow(0, b, n));
    });
    h = temp_attentions_[i]->forward(h, run.num_frames, run.ctx, run.frame_chunk);
    h = run_layer(rows_of_h, rows, temb, context, run, resnets_[i + 1], temp_convs_[i + 1], nullptr, nullptr);
  }
  return h;
}

UpBlock3DImpl::UpBlock3DImpl(const Block3DOptions& o) {
  LayerLists lists;
  for (int64_t i = 0; i < o.num_layers; ++i) {
    const int64_t skip = i == o.num_layers - 1 ? o.in_channels : o.out_channels;
    const int64_t resnet_in = i == 0 ? o.prev_output_channels : o.out_channels;
    add_layer(o, resnet_in + skip, o.out_channels, 1.0, lists, resnets_, temp_convs_);
    if (o.cross_attention) add_transformers(o, o.out_channels, lists, attentions_, temp_attentions_);
  }
  register_lists(*this, lists, o.cross_attention);
  if (o.resample) {
    auto list = torch::nn::ModuleList();
    upsampler_ = Upsample2D(o.out_channels);
    list->push_back(upsampler_);
    register_module("upsamplers", list);
  }
}

at::Tensor UpBlock3DImpl::forward(const at::Tensor& x, std::vector<at::Tensor> skips, const at::Tensor& temb,
                                  const at::Tensor& context, std::optional<std::array<int64_t, 2>> upsample_size,
                                  const FrameRun& run) const {
  VI_CHECK(skips.size() == resnets_.size(), "up block: {} skip states for {} layers", skips.size(), resnets_.size());
  const int64_t rows = x.size(0);
  at::Tensor h = x;
  for (size_t i = 0; i < resnets_.size(); ++i) {
    at::Tensor skip = std::move(skips.back());
    skips.pop_back();
    auto input = [&](int64_t b, int64_t n) { return at::cat({h.narrow(0, b, n), skip.narrow(0, b, n)}, 1); };
    const bool cross = !attentions_.empty();
    h = run_layer(input, rows, temb, context, run, resnets_[i], temp_convs_[i], cross ? &attentions_[i] : nullptr,
                  cross ? &temp_attentions_[i] : nullptr);
  }
  if (upsampler_) {
    h = map_rows(rows, run.frame_chunk,
                 [&](int64_t b, int64_t n) { return upsampler_->forward(h.narrow(0, b, n), upsample_size); });
  }
  return h;
}

}  // namespace vi::models
