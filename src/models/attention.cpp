#include "models/attention.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/container/modulelist.h>

#include <cmath>

#include "models/sdpa.h"

namespace vi::models {

namespace {

// [N, S, heads*d] -> [N*heads, S, d] (batch-major: row = n*heads + head): the layout the
// temporal contexts exchange. Ref: diffusers Attention.head_to_batch_dim.
at::Tensor split_heads(const at::Tensor& x, int64_t heads) {
  const int64_t N = x.size(0), S = x.size(1), d = x.size(2) / heads;
  return x.view({N, S, heads, d}).permute({0, 2, 1, 3}).reshape({N * heads, S, d});
}

// [N*heads, S, d] -> [N, S, heads*d]. Ref: diffusers Attention.batch_to_head_dim.
at::Tensor merge_heads(const at::Tensor& x, int64_t heads) {
  const int64_t N = x.size(0) / heads, S = x.size(1), d = x.size(2);
  return x.view({N, heads, S, d}).permute({0, 2, 1, 3}).reshape({N, S, heads * d});
}

// [N, S, heads*d] -> [N, heads, S, d] as a view (no copy): the 4-d layout of the fused kernels.
at::Tensor head_view(const at::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}

}  // namespace

AttentionImpl::AttentionImpl(const AttentionOptions& o)
    : heads_(o.heads), dim_head_(o.dim_head), residual_connection_(o.residual_connection) {
  const int64_t inner = o.heads * o.dim_head;
  const int64_t kv_dim = o.cross_attention_dim > 0 ? o.cross_attention_dim : o.query_dim;
  if (o.norm_num_groups > 0) {
    group_norm_ = register_module("group_norm", GroupNorm(o.norm_num_groups, o.query_dim, o.eps));
  }
  to_q_ = register_module("to_q", Linear(o.query_dim, inner, o.bias, o.arithmetic));
  to_k_ = register_module("to_k", Linear(kv_dim, inner, o.bias, o.arithmetic));
  to_v_ = register_module("to_v", Linear(kv_dim, inner, o.bias, o.arithmetic));
  auto to_out = torch::nn::ModuleList();
  to_out_ = Linear(inner, o.query_dim, /*bias=*/true, o.arithmetic);
  to_out->push_back(to_out_);
  to_out->push_back(Placeholder());  // Dropout
  register_module("to_out", to_out);
}

AttentionImpl::AttentionImpl(int64_t query_dim, int64_t cross_attention_dim, int64_t heads, int64_t dim_head)
    : AttentionImpl(AttentionOptions{query_dim, cross_attention_dim, heads, dim_head}) {}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const at::Tensor& context, TemporalContext* temporal) const {
  const at::Tensor& kv_in = context.defined() ? context : x;
  at::Tensor q = to_q_->forward(x), k = to_k_->forward(kv_in), v = to_v_->forward(kv_in);  // [N, S|Sk, inner]
  if (temporal != nullptr) {  // over frames, run by the context on [N*heads, F, d]
    at::Tensor o = temporal->attention(split_heads(q, heads_), split_heads(k, heads_), split_heads(v, heads_));
    return to_out_->forward(merge_heads(o, heads_));  // [N, F, query_dim]
  }
  // Spatial and cross attention: [N, heads, S, d] views in, [N, heads, S, d] out; the fused
  // kernels write it in [N, S, heads, d] order, so the merge below is usually a view too.
  at::Tensor o = dot_product_attention(head_view(q, heads_), head_view(k, heads_), head_view(v, heads_),
                                       1.0 / std::sqrt(static_cast<double>(dim_head_)));
  return to_out_->forward(o.transpose(1, 2).reshape({x.size(0), x.size(1), heads_ * dim_head_}));  // [N, S, query_dim]
}

at::Tensor AttentionImpl::forward_image(const at::Tensor& x) const {
  const int64_t n = x.size(0), c = x.size(1), height = x.size(2), width = x.size(3);
  at::Tensor h = group_norm_ ? group_norm_->forward(x) : x;
  h = h.view({n, c, height * width}).transpose(1, 2);    // [N, h*w, C]
  at::Tensor o = forward(h, at::Tensor(), nullptr);      // [N, h*w, C]
  o = o.transpose(1, 2).reshape({n, c, height, width});  // [N, C, h, w]
  return residual_connection_ ? o + x : o;
}

}  // namespace vi::models
