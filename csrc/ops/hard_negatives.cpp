// Schema of hard negative mining (SPEC "Hard negative mining") and the argument handling both kernels share.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/hard_negatives.h"

#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <limits>

#include "checks.h"

namespace detops {

MiningProblem prepare_hard_negative_mining(const at::Tensor& conf_loss, const at::Tensor& positives,
                                           int64_t neg_pos_ratio) {
  TORCH_CHECK(conf_loss.dim() == 2, "conf_loss must have shape [B, P] (a loss per prior), got ", shape_str(conf_loss));
  check_floating(conf_loss, "conf_loss");
  TORCH_CHECK(positives.sizes() == conf_loss.sizes(), "positives must have the shape of conf_loss ",
              shape_str(conf_loss), ", got ", shape_str(positives));
  TORCH_CHECK(positives.scalar_type() == at::kBool, "positives must be a bool tensor, got ", positives.scalar_type());
  check_same_device(conf_loss, "conf_loss", positives, "positives");
  TORCH_CHECK(neg_pos_ratio >= 0, "neg_pos_ratio must be >= 0, got ", neg_pos_ratio);
  TORCH_CHECK(conf_loss.size(1) < std::numeric_limits<int32_t>::max(), "conf_loss has ", conf_loss.size(1),
              " priors per row; at most 2^31 - 2 are supported");
  MiningProblem m;
  const auto t = conf_loss.scalar_type();
  m.loss = conf_loss.to(t == at::kDouble ? at::kDouble : at::kFloat).contiguous();  // half/bf16 order exactly in float
  m.positives = positives.contiguous();
  m.B = conf_loss.size(0);
  m.P = conf_loss.size(1);
  // ratio * n_pos never overflows: n_pos <= P < 2^31, and the ratio is capped where it selects every negative.
  m.ratio = std::min<int64_t>(neg_pos_ratio, std::numeric_limits<int32_t>::max());
  m.mask = at::empty({m.B, m.P}, positives.options());
  return m;
}

}  // namespace detops

TORCH_LIBRARY_FRAGMENT(detops, m) {
  // Per row: among non-positive priors, the neg_pos_ratio * n_pos with the highest loss -> bool mask [B, P].
  m.def("hard_negative_mining(Tensor conf_loss, Tensor positives, int neg_pos_ratio=3) -> Tensor");
}
