// The two box geometries the NMS kernels are written over, CPU and CUDA alike: each kernel of the family is
// a template on one of these, so the greedy sweep, the bit-mask sweep, the per-class sweep and Soft-NMS
// exist once and serve axis-aligned and rotated boxes.
//
// A geometry says how wide a box is in memory (kDim values), which boxes take part (valid), what a box
// looks like once loaded for repeated overlap tests (Loaded: its area, or its angle's cosine and sine,
// computed once), and the overlap of two loaded boxes.
#pragma once

#include "box_math.h"
#include "rotated_math.h"

namespace detops {

// True when the box (x1, y1, x2, y2) and its score take part in NMS (no NaN anywhere).
template <typename T>
DETOPS_HD bool nms_valid(const T* box, T score) {
  return score == score && box[0] == box[0] && box[1] == box[1] && box[2] == box[2] && box[3] == box[3];
}

// An (x1, y1, x2, y2) box with its area.
template <typename T>
struct AreaBox {
  Box<T> box;
  T area;
};

// (x1, y1, x2, y2) boxes; the IoU is box_math.h's, torchvision's formula.
template <typename T>
struct AxisAligned {
  static constexpr int kDim = 4;
  using Loaded = AreaBox<T>;
  DETOPS_HD static bool valid(const T* box, T score) { return nms_valid(box, score); }
  DETOPS_HD static Loaded load(const T* box) {
    const Box<T> b = load_box(box);
    return {b, area(b)};
  }
  DETOPS_HD static T overlap(const Loaded& a, const Loaded& b) { return iou(a.box, b.box, a.area, b.area); }
};

// (cx, cy, w, h, angle in degrees) boxes; the IoU is rotated_math.h's. A box with a NaN score or any
// non-finite value does not take part (an infinite coordinate has no rotated IoU).
template <typename T>
struct Rotated {
  static constexpr int kDim = 5;
  using Loaded = RotatedBox<T>;
  DETOPS_HD static bool valid(const T* box, T score) {
    return score == score && rot_finite(box[0]) && rot_finite(box[1]) && rot_finite(box[2]) && rot_finite(box[3]) &&
           rot_finite(box[4]);
  }
  DETOPS_HD static Loaded load(const T* box) { return load_rotated(box); }
  DETOPS_HD static T overlap(const Loaded& a, const Loaded& b) { return rotated_iou(a, b); }
};

}  // namespace detops
