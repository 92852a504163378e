// Schemas of the overlap ops, and the argument handling the CPU and CUDA kernels share.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/boxes.h"

#include <ATen/ExpandUtils.h>
#include <ATen/ops/empty.h>
#include <c10/util/safe_numerics.h>
#include <torch/library.h>

#include <limits>

#ifdef __linux__
#include <sys/sysinfo.h>
#endif

#include "checks.h"
#include "ops/lead_dims.h"

namespace detops {

IouMode parse_iou_mode(c10::string_view mode) {
  if (mode == "iou") return IouMode::IoU;
  if (mode == "giou") return IouMode::GIoU;
  if (mode == "diou") return IouMode::DIoU;
  if (mode == "ciou") return IouMode::CIoU;
  if (mode == "iof") return IouMode::IoF;
  TORCH_CHECK(false, "mode must be one of 'iou', 'giou', 'diou', 'ciou', 'iof', got '", std::string(mode), "'");
}

BoxFormat parse_box_format(c10::string_view fmt) {
  if (fmt == "xyxy") return BoxFormat::XYXY;
  if (fmt == "xywh") return BoxFormat::XYWH;
  if (fmt == "cxcywh") return BoxFormat::CXCYWH;
  TORCH_CHECK(false, "fmt must be one of 'xyxy', 'xywh', 'cxcywh', got '", std::string(fmt), "'");
}

// Physical memory plus swap, the most an allocation can get on Linux (0 where unknown: no limit is applied).
static double system_memory_bytes() {
#ifdef __linux__
  struct sysinfo info;
  if (sysinfo(&info) == 0)
    return (static_cast<double>(info.totalram) + static_cast<double>(info.totalswap)) * info.mem_unit;
#endif
  return 0.0;
}

// An output that cannot exist is refused before anything is allocated for it (the inputs' batched copies
// included): more elements than int64 counts, or, on the CPU, more bytes than the machine's memory and swap
// (an allocation the kernel would refuse anyway, or one overcommitted and then killed while being filled).
static void check_output_size(const at::Tensor& boxes1, const at::Tensor& boxes2, at::IntArrayRef lead, int64_t n,
                              int64_t m, at::ScalarType out_dtype) {
  std::vector<int64_t> shape(lead.begin(), lead.end());
  shape.push_back(n);
  shape.push_back(m);
  uint64_t count = 0;
  const bool overflow = c10::safe_multiplies_u64(shape, &count);
  TORCH_CHECK(!overflow && count <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
              "the overlap matrix of boxes1 ", shape_str(boxes1), " and boxes2 ", shape_str(boxes2), " would have ",
              "more elements than int64 can count: compare them in chunks");
  const auto numel = static_cast<int64_t>(count);
  const double bytes = static_cast<double>(numel) * static_cast<double>(c10::elementSize(out_dtype));
  const double limit = boxes1.is_cpu() ? system_memory_bytes() : 0.0;
  TORCH_CHECK(limit <= 0.0 || bytes <= limit, "the overlap matrix of boxes1 ", shape_str(boxes1), " and boxes2 ",
              shape_str(boxes2), " needs ", bytes / double(1 << 30), " GiB (", numel, " x ",
              c10::elementSize(out_dtype), " bytes), more than this machine's memory and swap (",
              limit / double(1 << 30), " GiB): compare boxes1 in chunks");
}

static at::ScalarType result_dtype(at::ScalarType t, bool keep_reduced_float) {
  if (at::isIntegralType(t, /*includeBool=*/true)) return at::kFloat;  // torchvision: int / int -> float32
  if (!keep_reduced_float && (t == at::kHalf || t == at::kBFloat16)) return at::kFloat;
  return t;
}

static void check_pair(const at::Tensor& boxes1, const at::Tensor& boxes2, int64_t min_dim) {
  check_boxes(boxes1, "boxes1", min_dim);
  check_boxes(boxes2, "boxes2", min_dim);
  check_same_device(boxes1, "boxes1", boxes2, "boxes2");
  check_same_dtype(boxes1, "boxes1", boxes2, "boxes2");
  TORCH_CHECK(boxes1.scalar_type() != at::kBool, "boxes must be numeric, got bool");
}

// [..., K, 4] expanded to the broadcast leading shape, as [batch, K, 4] with contiguous rows.
static at::Tensor as_batched(const at::Tensor& t, at::IntArrayRef lead, int64_t batch, at::ScalarType dtype) {
  std::vector<int64_t> shape(lead.begin(), lead.end());
  shape.push_back(t.size(-2));
  shape.push_back(4);
  at::Tensor r = t.to(dtype).expand(shape).reshape({batch, t.size(-2), 4});
  if (r.size(1) > 1 && r.stride(1) != 4) r = r.contiguous();
  if (r.stride(2) != 1) r = r.contiguous();
  return r;
}

PairwiseProblem prepare_pairwise(const at::Tensor& boxes1, const at::Tensor& boxes2, c10::string_view mode, double eps,
                                 c10::string_view fmt, bool allocate_out) {
  check_pair(boxes1, boxes2, 2);
  PairwiseProblem p;
  p.mode = parse_iou_mode(mode);
  p.fmt = parse_box_format(fmt);
  p.eps = eps;
  const std::vector<int64_t> lead = broadcast_lead_dims(boxes1, boxes2);
  p.batch = c10::multiply_integers(lead);
  p.n = boxes1.size(-2);
  p.m = boxes2.size(-2);
  p.out_dtype = result_dtype(boxes1.scalar_type(), /*keep_reduced_float=*/false);
  check_output_size(boxes1, boxes2, lead, p.n, p.m, p.out_dtype);
  const auto dtype = compute_dtype(boxes1.scalar_type());
  p.a = as_batched(boxes1, lead, p.batch, dtype);
  p.b = as_batched(boxes2, lead, p.batch, dtype);
  p.a_batch_stride = p.batch > 1 ? p.a.stride(0) : 0;
  p.b_batch_stride = p.batch > 1 ? p.b.stride(0) : 0;
  p.out_shape = lead;
  p.out_shape.push_back(p.n);
  p.out_shape.push_back(p.m);
  if (allocate_out) p.out = at::empty({p.batch, p.n, p.m}, p.a.options().dtype(p.out_dtype));
  return p;
}

at::Tensor finish_pairwise(PairwiseProblem& p) { return p.out.view(p.out_shape); }

AlignedProblem prepare_aligned(const at::Tensor& boxes1, const at::Tensor& boxes2, c10::string_view mode, double eps) {
  check_pair(boxes1, boxes2, 1);
  TORCH_CHECK(boxes1.sizes() == boxes2.sizes(), "aligned overlaps need boxes1 and boxes2 of one shape, got ",
              shape_str(boxes1), " and ", shape_str(boxes2));
  AlignedProblem p;
  p.mode = parse_iou_mode(mode);
  p.eps = eps;
  const auto dtype = compute_dtype(boxes1.scalar_type());
  p.a = boxes1.to(dtype).reshape({-1, 4}).contiguous();
  p.b = boxes2.to(dtype).reshape({-1, 4}).contiguous();
  p.count = p.a.size(0);
  const auto lead = boxes1.sizes().slice(0, boxes1.dim() - 1);
  p.out_shape.assign(lead.begin(), lead.end());
  p.out_dtype = result_dtype(boxes1.scalar_type(), /*keep_reduced_float=*/true);
  p.out = at::empty({p.count}, p.a.options());
  return p;
}

at::Tensor finish_aligned(AlignedProblem& p) { return p.out.view(p.out_shape).to(p.out_dtype); }

}  // namespace detops

TORCH_LIBRARY_FRAGMENT(detops, m) {
  // Pairwise overlap matrix: boxes1[..., N, 4] x boxes2[..., M, 4] -> [..., N, M]; mode is one of
  // iou, giou, diou, ciou, iof (torchvision's formulas; eps is used by diou and ciou only); fmt is the
  // boxes' format, xyxy, xywh or cxcywh (areas w * h for the last two, as torchvision's box_iou(fmt=...)).
  m.def("box_overlap(Tensor boxes1, Tensor boxes2, str mode=\"iou\", float eps=1e-7, str fmt=\"xyxy\") -> Tensor");
  // Overlap of aligned pairs: boxes1[..., 4], boxes2[..., 4] -> [...], as torchvision's IoU losses.
  m.def("box_iou_aligned(Tensor boxes1, Tensor boxes2, str mode=\"iou\", float eps=1e-7) -> Tensor");
}
