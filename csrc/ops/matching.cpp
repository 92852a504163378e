// Schemas of the matching ops (docs/ops.md, "Matching"), and the argument handling the CPU and
// CUDA kernels share.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/matching.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/cat.h>
#include <torch/library.h>

#include <cmath>

#include "checks.h"

namespace detops {

MatchProblem prepare_match_priors(const at::Tensor& gt_boxes, const at::Tensor& gt_labels, const at::Tensor& counts,
                                  const at::Tensor& priors_cxcy, double threshold, at::ArrayRef<double> weights) {
  TORCH_CHECK(gt_boxes.dim() == 3 && gt_boxes.size(2) == 4,
              "gt_boxes must have shape [B, G, 4] (padded xyxy boxes), got ", shape_str(gt_boxes));
  TORCH_CHECK(gt_labels.dim() == 2, "gt_labels must have shape [B, G], got ", shape_str(gt_labels));
  TORCH_CHECK(gt_labels.size(0) == gt_boxes.size(0) && gt_labels.size(1) == gt_boxes.size(1),
              "gt_labels must have shape [B, G] = [", gt_boxes.size(0), ", ", gt_boxes.size(1),
              "] to go with gt_boxes ", shape_str(gt_boxes), ", got ", shape_str(gt_labels));
  TORCH_CHECK(counts.dim() == 1 && counts.size(0) == gt_boxes.size(0), "counts must have shape [B] = [",
              gt_boxes.size(0), "] (objects per image), got ", shape_str(counts));
  TORCH_CHECK(priors_cxcy.dim() == 2 && priors_cxcy.size(1) == 4,
              "priors_cxcy must have shape [P, 4] (center-size priors), got ", shape_str(priors_cxcy));
  check_floating(gt_boxes, "gt_boxes");
  check_floating(priors_cxcy, "priors_cxcy");
  TORCH_CHECK(!at::isFloatingType(gt_labels.scalar_type()) && gt_labels.scalar_type() != at::kBool,
              "gt_labels must be an integer tensor, got ", gt_labels.scalar_type());
  TORCH_CHECK(!at::isFloatingType(counts.scalar_type()) && counts.scalar_type() != at::kBool,
              "counts must be an integer tensor, got ", counts.scalar_type());
  check_same_device(gt_boxes, "gt_boxes", gt_labels, "gt_labels");
  check_same_device(gt_boxes, "gt_boxes", counts, "counts");
  check_same_device(gt_boxes, "gt_boxes", priors_cxcy, "priors_cxcy");
  TORCH_CHECK(std::isfinite(threshold), "threshold must be finite, got ", threshold);
  TORCH_CHECK(weights.size() == 4, "weights must have 4 values (wx, wy, ww, wh), got ", weights.size());
  for (double w : weights) TORCH_CHECK(std::isfinite(w) && w != 0, "weights must be finite and non-zero, got ", w);
  check_int32_count(priors_cxcy.size(0), "priors_cxcy", "priors");
  check_int32_count(gt_boxes.size(1), "gt_boxes", "objects per image");

  MatchProblem p;
  const auto dtype = compute_dtype(gt_boxes.scalar_type());
  p.out_dtype = gt_boxes.scalar_type();
  p.boxes = gt_boxes.to(dtype).contiguous();
  p.labels = gt_labels.to(at::kLong).contiguous();
  p.counts = counts.to(at::kLong).contiguous();
  p.priors_cxcy = priors_cxcy.to(dtype).contiguous();
  // The tutorial's cxcy_to_xy: (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2).
  const at::Tensor c = p.priors_cxcy.narrow(1, 0, 2), half = p.priors_cxcy.narrow(1, 2, 2).div(2);
  p.priors_xy = at::cat({c.sub(half), c.add(half)}, 1).contiguous();
  p.B = gt_boxes.size(0);
  p.G = gt_boxes.size(1);
  p.P = priors_cxcy.size(0);
  p.threshold = threshold;
  p.weights = {weights[0], weights[1], weights[2], weights[3]};
  return p;
}

void check_match_values_cpu(const MatchProblem& p) {
  const int64_t* counts = p.counts.data_ptr<int64_t>();
  const int64_t* labels = p.labels.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "check_match_values_cpu", [&] {
    const scalar_t* boxes = p.boxes.data_ptr<scalar_t>();
    for (int64_t b = 0; b < p.B; ++b) {
      TORCH_CHECK(counts[b] >= 0 && counts[b] <= p.G, "counts[", b, "] must be in [0, ", p.G,
                  "] (the padded number of objects), got ", counts[b]);
      for (int64_t g = 0; g < counts[b]; ++g) {
        const int64_t i = b * p.G + g;
        TORCH_CHECK(labels[i] >= 0, "gt_labels must be >= 0 (0 is background), got ", labels[i], " for object ", g,
                    " of image ", b);
        const Box<scalar_t> box = load_box(boxes + 4 * i);
        // inf too: its width is inf or NaN, so the encoded centre and log-size would be NaN with no warning.
        TORCH_CHECK(std::isfinite(box.x1) && std::isfinite(box.y1) && std::isfinite(box.x2) && std::isfinite(box.y2),
                    "gt_boxes must be finite, got (", box.x1, ", ", box.y1, ", ", box.x2, ", ", box.y2, ") for object ",
                    g, " of image ", b);
        TORCH_CHECK(box.x2 >= box.x1 && box.y2 >= box.y1, "gt_boxes must be xyxy with x2 >= x1 and y2 >= y1, got (",
                    box.x1, ", ", box.y1, ", ", box.x2, ", ", box.y2, ") for object ", g, " of image ", b);
      }
    }
    const scalar_t* pr = p.priors_cxcy.data_ptr<scalar_t>();
    for (int64_t i = 0; i < p.P; ++i) {
      TORCH_CHECK(std::isfinite(pr[4 * i]) && std::isfinite(pr[4 * i + 1]) && pr[4 * i + 2] > 0 && pr[4 * i + 3] > 0 &&
                      std::isfinite(pr[4 * i + 2]) && std::isfinite(pr[4 * i + 3]),
                  "priors_cxcy must be finite with positive width and height, got (", pr[4 * i], ", ", pr[4 * i + 1],
                  ", ", pr[4 * i + 2], ", ", pr[4 * i + 3], ") for prior ", i);
    }
  });
}

MatcherProblem prepare_match_boxes(const at::Tensor& quality, double high, double low, bool allow_low_quality) {
  TORCH_CHECK(quality.dim() >= 2, "match_quality_matrix must have shape [..., G, P], got ", shape_str(quality));
  check_floating(quality, "match_quality_matrix");
  TORCH_CHECK(!std::isnan(high), "high_threshold is NaN: it must be a number (a quality in [0, 1] for IoUs)");
  TORCH_CHECK(!std::isnan(low), "low_threshold is NaN: it must be a number (a quality in [0, 1] for IoUs)");
  TORCH_CHECK(low <= high, "low_threshold must be <= high_threshold, got low ", low, " and high ", high);
  check_int32_count(quality.size(-1), "match_quality_matrix", "predictions");
  MatcherProblem m;
  m.G = quality.size(-2);
  m.P = quality.size(-1);
  m.out_shape = quality.sizes().vec();
  m.out_shape.erase(m.out_shape.end() - 2);
  m.N = 1;
  for (int64_t d = 0; d + 2 < quality.dim(); ++d) m.N *= quality.size(d);
  m.quality = quality.to(compute_dtype(quality.scalar_type())).contiguous().view({m.N, m.G, m.P});
  m.high = high;
  m.low = low;
  m.allow_low_quality = allow_low_quality;
  return m;
}

}  // namespace detops

TORCH_LIBRARY_FRAGMENT(detops, m) {
  // SSD matching for a padded batch: (labels [B, P] int64, matched object [B, P] int64 (-1 background),
  // targets [B, P, 4] encoded against the priors with `weights`). No [B, G, P] tensor is formed.
  m.def(
      "match_priors(Tensor gt_boxes, Tensor gt_labels, Tensor counts, Tensor priors_cxcy, float threshold=0.5, "
      "float[] weights=[10., 10., 5., 5.]) -> (Tensor, Tensor, Tensor)");
  // torchvision's Matcher on a quality matrix [..., G, P] -> matches [..., P] int64 (-1 below low, -2 between).
  m.def(
      "match_boxes(Tensor match_quality_matrix, float high_threshold, float low_threshold, "
      "bool allow_low_quality_matches=False) -> Tensor");
}
