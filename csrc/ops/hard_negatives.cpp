// Schemas of hard negative mining (docs/ops.md, "Hard negatives") and of the cross-entropy that ranks the
// negatives, and the argument handling both kernels share.
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
  check_int32_count(conf_loss.size(1), "conf_loss", "priors per row");
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

CrossEntropyProblem prepare_softmax_cross_entropy(const at::Tensor& logits, const at::Tensor& targets,
                                                  int64_t ignore_index) {
  TORCH_CHECK(logits.dim() >= 1 && logits.size(-1) > 0, "logits must have shape [..., C] with C >= 1 classes, got ",
              shape_str(logits));
  check_floating(logits, "logits");
  const auto rows_shape = logits.sizes().slice(0, logits.dim() - 1);
  TORCH_CHECK(targets.sizes() == rows_shape, "targets must have the shape of logits without the class dimension, ",
              rows_shape, " for logits ", shape_str(logits), ", got ", shape_str(targets));
  TORCH_CHECK(targets.scalar_type() == at::kLong || targets.scalar_type() == at::kInt,
              "targets must be class indices (int64 or int32), got ", targets.scalar_type());
  check_same_device(logits, "logits", targets, "targets");
  CrossEntropyProblem p;
  p.C = logits.size(-1);
  p.rows = targets.numel();
  p.ignore_index = ignore_index;
  p.out_shape = targets.sizes().vec();
  p.out_dtype = logits.scalar_type();
  p.logits = logits.to(compute_dtype(logits.scalar_type())).contiguous().view({p.rows, p.C});
  p.targets = targets.to(at::kLong).contiguous().view({p.rows});
  p.out = at::empty({p.rows}, p.logits.options());
  return p;
}

at::Tensor finish_cross_entropy(const CrossEntropyProblem& p) { return p.out.view(p.out_shape).to(p.out_dtype); }

void bad_cross_entropy_target(const CrossEntropyProblem& p) {
  const int64_t* t = p.targets.data_ptr<int64_t>();
  for (int64_t r = 0; r < p.rows; ++r) {
    if (t[r] == p.ignore_index || (t[r] >= 0 && t[r] < p.C)) continue;
    // The row as an index into targets' own shape, so the caller can find it.
    std::vector<int64_t> index(p.out_shape.size());
    int64_t rest = r;
    for (size_t d = index.size(); d-- > 0;) {
      index[d] = rest % p.out_shape[d];
      rest /= p.out_shape[d];
    }
    TORCH_CHECK(false, "softmax_cross_entropy: targets", c10::IntArrayRef(index), " is ", t[r],
                "; targets must be class indices in [0, ", p.C, ") or ignore_index (", p.ignore_index, ")");
  }
  TORCH_CHECK(false, "softmax_cross_entropy: targets must be class indices in [0, ", p.C, ") or ignore_index (",
              p.ignore_index, ")");
}

}  // namespace detops

TORCH_LIBRARY_FRAGMENT(detops, m) {
  // Per row: among non-positive priors, the neg_pos_ratio * n_pos with the highest loss -> bool mask [B, P].
  m.def("hard_negative_mining(Tensor conf_loss, Tensor positives, int neg_pos_ratio=3) -> Tensor");
  // logits[..., C], targets[...] -> F.cross_entropy(logits, targets, reduction="none") in one pass: SSD ranks
  // every prior's background loss, and log_softmax's [..., C] intermediate costs more than the ranking.
  // Rows whose target is ignore_index have loss 0 and gradient 0, as in F.cross_entropy.
  m.def("softmax_cross_entropy(Tensor logits, Tensor targets, int ignore_index=-100) -> Tensor");
}
