#include "models/sdpa.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "core/check.h"
#include "core/safetensors_format.h"

namespace vi::models {

at::Tensor dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                                 const at::Tensor& bias, int64_t max_batch) {
  const int64_t dims = q.dim();
  VI_CHECK((dims == 3 || dims == 4) && k.dim() == dims && v.dim() == dims,
           "attention: expected 3-d or 4-d q/k/v, got {}, {}, {} dims", q.dim(), k.dim(), v.dim());
  VI_CHECK(max_batch > 0, "attention: max_batch {} must be positive", max_batch);
  if (dims == 3) {  // [N, S, d] -> [N, 1, S, d]: the fused kernels take 4-d only
    at::Tensor b = bias.defined() && bias.dim() == 3 ? bias.unsqueeze(1) : bias;
    return dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale, b, max_batch).squeeze(1);
  }
  const int64_t n = q.size(0), sk = k.size(2), d = q.size(3);
  VI_CHECK(k.size(0) == n && v.size(0) == n && k.size(1) == q.size(1) && v.size(1) == q.size(1) && k.size(3) == d &&
               v.size(2) == sk,
           "attention: q {} / k {} / v {} do not fit together", core::shape_str(q.sizes().vec()),
           core::shape_str(k.sizes().vec()), core::shape_str(v.sizes().vec()));
  auto run = [&](int64_t begin, int64_t len) {
    std::optional<at::Tensor> b;  // an undefined tensor is not "no mask" to SDPA
    if (bias.defined()) b = bias.dim() == 4 && bias.size(0) == n && len < n ? bias.narrow(0, begin, len) : bias;
    return at::scaled_dot_product_attention(q.narrow(0, begin, len), k.narrow(0, begin, len),
                                            v.narrow(0, begin, len), b, /*dropout_p=*/0.0, /*is_causal=*/false,
                                            scale);
  };
  if (n <= max_batch) return run(0, n);
  std::vector<at::Tensor> parts;
  for (int64_t begin = 0; begin < n; begin += max_batch) parts.push_back(run(begin, std::min(max_batch, n - begin)));
  return at::cat(parts, 0);
}

}  // namespace vi::models
