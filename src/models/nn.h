// Minimal inference layers with the parameter names of torch.nn (weight, bias), the leaf layers
// of every model family here. Unlike torch::nn::Linear & co. they do not initialise their
// parameters: a 1.4 B-parameter UNet is constructed in no time and without touching its memory,
// because every parameter is then overwritten by the loader (core::load_state_dict) or by
// randomize_parameters().
#pragma once

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>

namespace vi::models {

// fn(begin, len) computes rows [begin, begin + len) of a row-wise layer's output (rows = dim 0);
// the chunks are written into one output tensor, so a chunk's intermediates are all that is
// added to the layer's input and output. chunk <= 0 or >= rows: one call.
at::Tensor map_rows(int64_t rows, int64_t chunk, const std::function<at::Tensor(int64_t, int64_t)>& fn);

// An uninitialised parameter, frozen (inference only).
at::Tensor new_parameter(torch::nn::Module& module, const std::string& name, at::IntArrayRef shape);

// Ref: torch.nn.Linear. y = x W^T + b.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias = true);
  at::Tensor forward(const at::Tensor& x) const;
  int64_t in_features() const { return weight_.size(1); }
  int64_t out_features() const { return weight_.size(0); }

 private:
  at::Tensor weight_, bias_;
};
TORCH_MODULE(Linear);

// Ref: torch.nn.Conv2d (square kernel, symmetric stride and padding).
class Conv2dImpl : public torch::nn::Module {
 public:
  Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1, int64_t padding = 0);
  at::Tensor forward(const at::Tensor& x) const;  // [N, Cin, h, w] -> [N, Cout, h', w']

 private:
  at::Tensor weight_, bias_;
  int64_t stride_, padding_;
};
TORCH_MODULE(Conv2d);

// Ref: torch.nn.Conv3d.
class Conv3dImpl : public torch::nn::Module {
 public:
  Conv3dImpl(int64_t in_channels, int64_t out_channels, std::array<int64_t, 3> kernel,
             std::array<int64_t, 3> padding);
  at::Tensor forward(const at::Tensor& x) const;  // [B, Cin, F, h, w] -> [B, Cout, F', h', w']

 private:
  at::Tensor weight_, bias_;
  std::array<int64_t, 3> padding_;
};
TORCH_MODULE(Conv3d);

// Ref: torch.nn.GroupNorm (affine).
class GroupNormImpl : public torch::nn::Module {
 public:
  GroupNormImpl(int64_t groups, int64_t channels, double eps);
  at::Tensor forward(const at::Tensor& x) const;
  int64_t groups() const { return groups_; }
  double eps() const { return eps_; }
  const at::Tensor& weight() const { return weight_; }
  const at::Tensor& bias() const { return bias_; }

 private:
  at::Tensor weight_, bias_;
  int64_t groups_;
  double eps_;
};
TORCH_MODULE(GroupNorm);

// Ref: torch.nn.LayerNorm over the last dim (elementwise affine).
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x) const;

 private:
  at::Tensor weight_, bias_;
  double eps_;
};
TORCH_MODULE(LayerNorm);

// A parameterless placeholder (nn.Dropout at inference, nn.SiLU) that keeps ModuleList indices
// equal to the checkpoint's (conv2.3.weight, to_out.0.weight, ff.net.2.weight).
class PlaceholderImpl : public torch::nn::Module {};
TORCH_MODULE(Placeholder);

}  // namespace vi::models
