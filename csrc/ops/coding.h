// Box coding (encode_boxes / decode_boxes): argument checks and the layout both kernels receive.
#pragma once

#include <ATen/core/Tensor.h>

#include "box_math.h"

namespace detops {

// x[..., 4] against anchors[..., 4], broadcast. x is [count, 4]; anchors is [period, 4] and row i of x uses
// anchor i % period (anchors shared by every image need no copy). Both contiguous, in compute dtype.
struct CodingProblem {
  at::Tensor x, anchors, out;
  int64_t count, period;
  CodingWeights weights;
  std::vector<int64_t> out_shape;
  at::ScalarType out_dtype;
};
CodingProblem prepare_coding(const at::Tensor& x, const char* x_name, const at::Tensor& anchors,
                             at::ArrayRef<double> weights);
at::Tensor finish_coding(CodingProblem& p);

}  // namespace detops
