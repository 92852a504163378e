// The box formulas, written once for the CPU and the CUDA kernels.
//
// Every function is __host__ __device__ and inline so both compilers see the same arithmetic. The order of
// operations follows torchvision.ops (area = (x2 - x1) * (y2 - y1); union = area_a + area_b - inter; ...) so
// float32 results agree with it to the last bit or within rounding, and NaN coordinates give NaN results,
// as torch.max / torch.min / clamp do.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

#define DETOPS_HD C10_HOST_DEVICE inline

namespace detops {

// Center-size (cx, cy, w, h), read at `stride` apart, to corners (cx - w / 2, cy - h / 2, cx + w / 2,
// cy + h / 2): each step computed in Acc (float for half and bfloat16) and rounded to T, as the same
// expression does in tensors of T (YOLO's xywh2xyxy).
template <typename T, typename Acc = T>
DETOPS_HD void center_size_to_corners(const T* p, int64_t stride, T* out) {
  for (int i = 0; i < 2; ++i) {
    const Acc center = static_cast<Acc>(p[i * stride]);
    const Acc half = static_cast<Acc>(static_cast<T>(static_cast<Acc>(p[(i + 2) * stride]) / Acc(2)));
    out[i] = static_cast<T>(center - half);
    out[i + 2] = static_cast<T>(center + half);
  }
}

// Overlap measures; the integer values are part of the op schemas' string <-> enum mapping.
enum class IouMode : int { IoU = 0, GIoU = 1, DIoU = 2, CIoU = 3, IoF = 4 };

template <typename T>
struct Box {
  T x1, y1, x2, y2;
};

template <typename T>
DETOPS_HD Box<T> load_box(const T* p) {
  return {p[0], p[1], p[2], p[3]};
}

// NaN-propagating min/max/clamp: a NaN in either operand comes out, as with torch.min/torch.max.
template <typename T>
DETOPS_HD T nan_min(T a, T b) {
  return (a < b || a != a) ? a : b;
}
template <typename T>
DETOPS_HD T nan_max(T a, T b) {
  return (a > b || a != a) ? a : b;
}
template <typename T>
DETOPS_HD T clamp_min0(T v) {
  return v < T(0) ? T(0) : v;  // NaN < 0 is false: NaN passes through, as torch.clamp(min=0)
}

template <typename T>
DETOPS_HD T area(const Box<T>& b) {
  return (b.x2 - b.x1) * (b.y2 - b.y1);
}

template <typename T>
DETOPS_HD T intersection(const Box<T>& a, const Box<T>& b) {
  const T w = clamp_min0(nan_min(a.x2, b.x2) - nan_max(a.x1, b.x1));
  const T h = clamp_min0(nan_min(a.y2, b.y2) - nan_max(a.y1, b.y1));
  return w * h;
}

// The smallest box enclosing a and b: width and height, clamped at zero as torchvision's pairwise ops do.
template <typename T>
DETOPS_HD void enclosing_wh(const Box<T>& a, const Box<T>& b, T& w, T& h) {
  w = clamp_min0(nan_max(a.x2, b.x2) - nan_min(a.x1, b.x1));
  h = clamp_min0(nan_max(a.y2, b.y2) - nan_min(a.y1, b.y1));
}

template <typename T>
DETOPS_HD T iou(const Box<T>& a, const Box<T>& b, T area_a, T area_b) {
  const T inter = intersection(a, b);
  return inter / (area_a + area_b - inter);
}

// iou() for boxes known to hold no NaN coordinate (matching and NMS check their inputs first): the same
// arithmetic and result bit for bit, with plain comparisons that compile to vector min/max, so loops over
// boxes vectorise.
template <typename T>
DETOPS_HD T iou_no_nan(const Box<T>& a, const Box<T>& b, T area_a, T area_b) {
  T w = (a.x2 < b.x2 ? a.x2 : b.x2) - (a.x1 > b.x1 ? a.x1 : b.x1);
  T h = (a.y2 < b.y2 ? a.y2 : b.y2) - (a.y1 > b.y1 ? a.y1 : b.y1);
  w = w < T(0) ? T(0) : w;
  h = h < T(0) ? T(0) : h;
  const T inter = w * h;
  return inter / (area_a + area_b - inter);
}

// Squared distance between the centres of a and b (the DIoU penalty's numerator).
template <typename T>
DETOPS_HD T center_distance2(const Box<T>& a, const Box<T>& b) {
  const T dx = (a.x1 + a.x2) / T(2) - (b.x1 + b.x2) / T(2);
  const T dy = (a.y1 + a.y2) / T(2) - (b.y1 + b.y2) / T(2);
  return dx * dx + dy * dy;
}

// The angle atan(w / h) of a box's aspect ratio; CIoU compares the two boxes' angles.
template <typename T>
DETOPS_HD T aspect_angle(const Box<T>& b) {
  return atan((b.x2 - b.x1) / (b.y2 - b.y1));
}

// CIoU's aspect-ratio term v = 4/pi^2 (angle_a - angle_b)^2.
template <typename T>
DETOPS_HD T aspect_penalty(T angle_a, T angle_b) {
  const T d = angle_b - angle_a;
  return T(0.40528473456935108577551785283891) * d * d;  // 4 / pi^2
}

// One entry of a pairwise overlap matrix, as torchvision's box_iou / generalized_box_iou /
// distance_box_iou / complete_box_iou compute it (eps only where torchvision adds it), plus IoF
// (intersection over the area of a, as mmcv's bbox_overlaps(mode="iof")). Per-box values (area, and the
// aspect angle, which only CIoU reads) come precomputed: a matrix needs them once per box, not per pair.
template <typename T>
DETOPS_HD T pairwise_overlap(IouMode mode, const Box<T>& a, const Box<T>& b, T area_a, T area_b, T angle_a, T angle_b,
                             T eps) {
  const T inter = intersection(a, b);
  if (mode == IouMode::IoF) return inter / area_a;
  const T uni = area_a + area_b - inter;
  const T iou_v = inter / uni;
  if (mode == IouMode::IoU) return iou_v;
  T cw, ch;
  enclosing_wh(a, b, cw, ch);
  if (mode == IouMode::GIoU) {
    const T area_c = cw * ch;
    return iou_v - (area_c - uni) / area_c;
  }
  const T diou = iou_v - center_distance2(a, b) / (cw * cw + ch * ch + eps);
  if (mode == IouMode::DIoU) return diou;
  const T v = aspect_penalty(angle_a, angle_b);
  const T alpha = v / (T(1) - iou_v + v + eps);
  return diou - alpha * v;
}

// The overlap of two boxes of an aligned pair, as torchvision's IoU losses compute it (loss = 1 - value):
// eps is added to the union and to the enclosing box's area and diagonal, and the enclosing box is not
// clamped. The differentiable wrapper (detops.box_iou_aligned) and the losses use this.
template <typename T>
DETOPS_HD T aligned_overlap(IouMode mode, const Box<T>& a, const Box<T>& b, T eps) {
  const T inter = intersection(a, b);
  const T area_a = area(a);
  if (mode == IouMode::IoF) return inter / (area_a + eps);
  const T uni = area_a + area(b) - inter;
  const T iou_v = inter / (uni + eps);
  if (mode == IouMode::IoU) return iou_v;
  const T cw = nan_max(a.x2, b.x2) - nan_min(a.x1, b.x1);
  const T ch = nan_max(a.y2, b.y2) - nan_min(a.y1, b.y1);
  if (mode == IouMode::GIoU) {
    const T area_c = cw * ch;
    return iou_v - (area_c - uni) / (area_c + eps);
  }
  const T diou = iou_v - center_distance2(a, b) / (cw * cw + ch * ch + eps);
  if (mode == IouMode::DIoU) return diou;
  const T v = aspect_penalty(aspect_angle(a), aspect_angle(b));
  const T alpha = v / (T(1) - iou_v + v + eps);
  return diou - alpha * v;
}

// ---- Box coding (docs/ops.md, "Box coding"): deltas of a box relative to an anchor, both xyxy. ----

// Doubles, as the schema's float[] gives them: each formula casts a weight to its compute type T, so float64
// boxes are coded with the exact weights and float32 boxes with the same float(w) as before.
struct CodingWeights {
  double wx, wy, ww, wh;
};

// Each coding formula comes in two stages around its transcendental function (log to encode, exp to
// decode), so the CPU kernels can run that function over whole arrays with ATen's vectorised log/exp; the
// CUDA kernels and encode_box_center/decode_box simply chain the stages.

// Encode, stage 1: dx and dy into out[0..1], and the size ratios gw/aw, gh/ah whose logs are dw/ww, dh/wh.
// The anchor comes in center-size form (acx, acy, aw, ah), as SSD's priors do.
template <typename T>
DETOPS_HD void encode_box_ratios(const Box<T>& g, T acx, T acy, T aw, T ah, CodingWeights w, T* out, T& rw, T& rh) {
  const T gw = g.x2 - g.x1, gh = g.y2 - g.y1;
  const T gcx = g.x1 + T(0.5) * gw, gcy = g.y1 + T(0.5) * gh;
  out[0] = T(w.wx) * (gcx - acx) / aw;
  out[1] = T(w.wy) * (gcy - acy) / ah;
  rw = gw / aw;
  rh = gh / ah;
}

// Deltas of g against an anchor in center-size form: the tutorial's cxcy_to_gcxgcy(xy_to_cxcy(g), prior)
// with variances (0.1, 0.2) = weights (10, 10, 5, 5).
template <typename T>
DETOPS_HD void encode_box_center(const Box<T>& g, T acx, T acy, T aw, T ah, CodingWeights w, T* out) {
  T rw, rh;
  encode_box_ratios(g, acx, acy, aw, ah, w, out, rw, rh);
  out[2] = T(w.ww) * log(rw);
  out[3] = T(w.wh) * log(rh);
}

template <typename T>
DETOPS_HD void anchor_center_size(const Box<T>& a, T& acx, T& acy, T& aw, T& ah) {
  aw = a.x2 - a.x1, ah = a.y2 - a.y1;
  acx = a.x1 + T(0.5) * aw, acy = a.y1 + T(0.5) * ah;
}

template <typename T>
DETOPS_HD void encode_box(const Box<T>& g, const Box<T>& a, CodingWeights w, T* out) {
  T acx, acy, aw, ah;
  anchor_center_size(a, acx, acy, aw, ah);
  encode_box_center(g, acx, acy, aw, ah, w, out);
}

// Decode, stage 1: the log-scale factors dw/ww and dh/wh, clamped from above only (torchvision's
// bbox_xform_clip; clamp = +inf disables it; NaN stays NaN, as torch.clamp(max=...)).
template <typename T>
DETOPS_HD void decode_box_log_scales(const T* d, CodingWeights w, T clamp, T& dw, T& dh) {
  dw = d[2] / T(w.ww);
  dh = d[3] / T(w.wh);
  dw = dw > clamp ? clamp : dw;
  dh = dh > clamp ? clamp : dh;
}

// Decode, stage 2: the xyxy box from the deltas' dx, dy and the scale factors sw = exp(dw), sh = exp(dh).
template <typename T>
DETOPS_HD void decode_box_scaled(const T* d, const Box<T>& a, CodingWeights w, T sw, T sh, T* out) {
  T acx, acy, aw, ah;
  anchor_center_size(a, acx, acy, aw, ah);
  const T cx = d[0] / T(w.wx) * aw + acx, cy = d[1] / T(w.wy) * ah + acy;
  const T pw = sw * aw, ph = sh * ah;
  out[0] = cx - T(0.5) * pw;
  out[1] = cy - T(0.5) * ph;
  out[2] = cx + T(0.5) * pw;
  out[3] = cy + T(0.5) * ph;
}

template <typename T>
DETOPS_HD void decode_box(const T* d, const Box<T>& a, CodingWeights w, T clamp, T* out) {
  T dw, dh;
  decode_box_log_scales(d, w, clamp, dw, dh);
  decode_box_scaled(d, a, w, T(exp(dw)), T(exp(dh)), out);
}

}  // namespace detops
