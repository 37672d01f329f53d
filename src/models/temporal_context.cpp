#include "models/temporal_context.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/safetensors.h"
#include "core/torch_compat.h"

namespace vi::models {

void PlainTemporalContext::begin_call(double timestep, int64_t batch) {
  timestep_ = timestep;
  batch_ = batch;
}

at::Tensor PlainTemporalContext::temporal_conv(const at::Tensor& x,
                                               const std::function<at::Tensor(const at::Tensor&)>& convs) {
  return convs(x);
}

at::Tensor PlainTemporalContext::attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return dot_product_attention(q, k, v, 1.0 / std::sqrt(static_cast<double>(q.size(-1))));
}

at::Tensor PlainTemporalContext::group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                                            const at::Tensor& bias, double eps) {
  return at::group_norm(x, groups, weight, bias, eps);
}

namespace {

// Ref: diffusers attention_processor.py Attention.get_attention_scores + AttnProcessor.
at::Tensor attention_slice(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  const bool half = q.scalar_type() == at::kHalf || q.scalar_type() == at::kBFloat16;
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)).mul_(scale);  // [n, Sq, Sk]
  at::Tensor probs = half ? at::softmax(scores, -1, at::kFloat).to(q.scalar_type()) : at::softmax(scores, -1);
  return at::matmul(probs, v);  // [n, Sq, d]
}

}  // namespace

at::Tensor dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                                 int64_t max_score_elements) {
  VI_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, "attention: expected 3-d q/k/v, got {}, {}, {} dims",
           q.dim(), k.dim(), v.dim());
  const int64_t n = q.size(0), sq = q.size(1), sk = k.size(1), d = q.size(2);
  VI_CHECK(k.size(0) == n && v.size(0) == n && k.size(2) == d && v.size(1) == sk,
           "attention: q {} / k {} / v {} do not fit together", core::shape_str(q.sizes().vec()),
           core::shape_str(k.sizes().vec()), core::shape_str(v.sizes().vec()));
#if VI_HAS_SDPA
  // On CUDA the fused kernels (flash / memory-efficient) never build the score matrix.
  if (q.is_cuda() && std::fabs(scale * std::sqrt(static_cast<double>(d)) - 1.0) < 1e-12) {
    return at::scaled_dot_product_attention(q, k, v);
  }
#endif
  const int64_t per_row = std::max<int64_t>(sq * sk, 1);
  const int64_t step = std::max<int64_t>(1, max_score_elements / per_row);
  if (step >= n) return attention_slice(q, k, v, scale);
  at::Tensor out = at::empty({n, sq, v.size(2)}, q.options());
  for (int64_t begin = 0; begin < n; begin += step) {
    const int64_t len = std::min(step, n - begin);
    out.narrow(0, begin, len).copy_(attention_slice(q.narrow(0, begin, len), k.narrow(0, begin, len),
                                                    v.narrow(0, begin, len), scale));
  }
  return out;
}

}  // namespace vi::models
