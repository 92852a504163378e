// Rotated-box geometry, written once for the CPU and the CUDA kernels (axis-aligned formulas: box_math.h).
//
// A rotated box is (cx, cy, w, h, angle): centre, width, height and an angle in degrees, counter-clockwise
// in the image plane, as torchvision's "cxcywhr". Its corners are torchvision's (box_convert to
// "xyxyxyxy"): p0 = top-left, p1 = p0 + w * (cos, -sin), p2 = p1 + h * (sin, cos), p3 = p0 + h * (sin, cos).
//
// The intersection of two boxes is box a clipped by the four edge lines of box b (Sutherland-Hodgman), then
// the shoelace area of what is left. Clipping never needs to sort vertices or decide which of two nearly
// equal points to drop, which is where vertex-sorting intersection kernels go wrong on identical, nested
// and near-identical boxes: a vertex on a clip line, however rounding classifies it, contributes a point
// at (or within rounding of) its true position, so the area is continuous in the input. Robustness rules:
//   * everything is computed relative to a's centre, so huge coordinates keep their local precision;
//   * the angle is reduced to a quarter turn plus a remainder in [-45, 45] degrees, so multiples of 90
//     degrees give exact 0 / +-1 cosines and angles of any size (outside (-180, 180] too) are exact;
//   * boxes equal in all five values have IoU exactly 1; the intersection is clamped to
//     [0, min(area_a, area_b)], so IoU is never negative and never above 1;
//   * a box with w <= 0 or h <= 0 is empty: IoU 0 with every box (torchvision gives 0 as well);
//   * a NaN or infinite value in either box gives NaN.
#pragma once

#include <cmath>

#include "box_math.h"

namespace detops {

// float and double overloads of the math the geometry uses, with names that exist on the host and the
// device alike (unqualified sin(float) would be the double function on the host).
DETOPS_HD float rot_sin(float v) { return sinf(v); }
DETOPS_HD double rot_sin(double v) { return sin(v); }
DETOPS_HD float rot_cos(float v) { return cosf(v); }
DETOPS_HD double rot_cos(double v) { return cos(v); }
DETOPS_HD float rot_fmod(float a, float b) { return fmodf(a, b); }
DETOPS_HD double rot_fmod(double a, double b) { return fmod(a, b); }
DETOPS_HD float rot_round(float v) { return rintf(v); }
DETOPS_HD double rot_round(double v) { return rint(v); }
DETOPS_HD float rot_sqrt(float v) { return sqrtf(v); }
DETOPS_HD double rot_sqrt(double v) { return sqrt(v); }

template <typename T>
struct Point {
  T x, y;
};

// A box with its angle's cosine and sine and its circumradius, computed once per box rather than per pair.
template <typename T>
struct RotatedBox {
  T cx, cy, w, h, angle, c, s, radius;
};

// x - x is 0 only for finite x (NaN and +-inf give NaN).
template <typename T>
DETOPS_HD bool rot_finite(T v) {
  return v - v == T(0);
}

template <typename T>
DETOPS_HD RotatedBox<T> load_rotated(const T* p) {
  RotatedBox<T> b{p[0], p[1], p[2], p[3], p[4], T(0), T(0), rot_sqrt(p[2] * p[2] + p[3] * p[3]) / T(2)};
  // fmod is exact; 90 * q is exact; so is the remainder, within rounding of the degrees-to-radians product.
  const T a = rot_fmod(p[4], T(360));
  const T q = rot_round(a / T(90));
  const T rem = (a - T(90) * q) * T(0.017453292519943295769236907684886);
  const T c0 = rot_cos(rem), s0 = rot_sin(rem);
  int quarter = static_cast<int>(q) % 4;  // q in [-4, 4] for finite angles; NaN is caught by rot_finite
  if (!rot_finite(q)) quarter = 0;
  if (quarter < 0) quarter += 4;
  switch (quarter) {
    case 0:
      b.c = c0, b.s = s0;
      break;
    case 1:
      b.c = -s0, b.s = c0;
      break;
    case 2:
      b.c = -c0, b.s = -s0;
      break;
    default:
      b.c = s0, b.s = -c0;
      break;
  }
  return b;
}

template <typename T>
DETOPS_HD bool rotated_finite(const RotatedBox<T>& b) {
  return rot_finite(b.cx) && rot_finite(b.cy) && rot_finite(b.w) && rot_finite(b.h) && rot_finite(b.angle);
}

// The four corners, counter-clockwise in the y-up sense (positive signed area) for w, h > 0, relative to
// the point (ox, oy).
template <typename T>
DETOPS_HD void rotated_corners(const RotatedBox<T>& b, T ox, T oy, Point<T>* p) {
  const T cx = b.cx - ox, cy = b.cy - oy;
  const T wx = b.w / T(2) * b.c, wy = -(b.w / T(2)) * b.s;  // half of the side p0 -> p1
  const T hx = b.h / T(2) * b.s, hy = b.h / T(2) * b.c;     // half of the side p1 -> p2
  p[0] = {cx - wx - hx, cy - wy - hy};
  p[1] = {cx + wx - hx, cy + wy - hy};
  p[2] = {cx + wx + hx, cy + wy + hy};
  p[3] = {cx - wx + hx, cy - wy + hy};
}

// Clipping a convex n-gon by a half-plane yields at most 1.5 n vertices even when rounding classifies
// vertices inconsistently with exact geometry (each kept vertex adds at most one crossing on each side):
// 4 -> 6 -> 9 -> 13 -> 19 over four clips.
constexpr int kClipCapacity = 20;

// The part of polygon `in` (n vertices) on the left of the directed line q0 -> q1 (inside of a
// counter-clockwise polygon), into `out`; returns its vertex count. Each vertex's side is computed once,
// so a vertex and the edges on either side of it always agree about it.
template <typename T>
DETOPS_HD int clip_left_of(const Point<T>* in, int n, Point<T> q0, Point<T> q1, Point<T>* out) {
  if (n == 0) return 0;
  const T ex = q1.x - q0.x, ey = q1.y - q0.y;
  const T d0 = ex * (in[0].y - q0.y) - ey * (in[0].x - q0.x);
  T dp = d0;
  int m = 0;
  for (int i = 0; i < n; ++i) {
    const Point<T> p = in[i];
    const Point<T> q = in[i + 1 == n ? 0 : i + 1];
    const T dq = i + 1 == n ? d0 : ex * (q.y - q0.y) - ey * (q.x - q0.x);
    const bool p_in = dp >= T(0), q_in = dq >= T(0);
    if (p_in && m < kClipCapacity) out[m++] = p;
    if (p_in != q_in && m < kClipCapacity) {
      const T t = dp / (dp - dq);  // dp and dq have strictly different signs: no division by zero
      out[m++] = {p.x + t * (q.x - p.x), p.y + t * (q.y - p.y)};
    }
    dp = dq;
  }
  return m;
}

template <typename T>
DETOPS_HD T polygon_area(const Point<T>* p, int n) {
  T twice = T(0);
  for (int i = 1; i + 1 < n; ++i) {
    const T ax = p[i].x - p[0].x, ay = p[i].y - p[0].y;
    const T bx = p[i + 1].x - p[0].x, by = p[i + 1].y - p[0].y;
    twice += ax * by - ay * bx;
  }
  return twice / T(2);
}

// Intersection area of two boxes with w, h > 0 and finite values.
template <typename T>
DETOPS_HD T rotated_intersection(const RotatedBox<T>& a, const RotatedBox<T>& b) {
  Point<T> buf0[kClipCapacity], buf1[kClipCapacity], pb[4];
  rotated_corners(a, a.cx, a.cy, buf0);
  rotated_corners(b, a.cx, a.cy, pb);
  Point<T>* cur = buf0;
  Point<T>* next = buf1;
  int n = 4;
  for (int e = 0; e < 4 && n > 0; ++e) {
    n = clip_left_of(cur, n, pb[e], pb[(e + 1) & 3], next);
    Point<T>* t = cur;
    cur = next;
    next = t;
  }
  return n >= 3 ? polygon_area(cur, n) : T(0);
}

// IoU of two rotated boxes under the rules at the top of this file.
template <typename T>
DETOPS_HD T rotated_iou(const RotatedBox<T>& a, const RotatedBox<T>& b) {
  if (!rotated_finite(a) || !rotated_finite(b)) return static_cast<T>(NAN);
  if (!(a.w > T(0) && a.h > T(0) && b.w > T(0) && b.h > T(0))) return T(0);
  if (a.cx == b.cx && a.cy == b.cy && a.w == b.w && a.h == b.h && a.angle == b.angle) return T(1);
  // Boxes whose circumscribed circles are apart cannot meet (with a margin for rounding): most pairs of a
  // large matrix end here.
  const T reach = (a.radius + b.radius) * T(1.0001);
  const T dx = b.cx - a.cx, dy = b.cy - a.cy;
  if (dx * dx + dy * dy > reach * reach) return T(0);
  const T area_a = a.w * a.h, area_b = b.w * b.h;
  T inter = rotated_intersection(a, b);
  const T cap = area_a < area_b ? area_a : area_b;
  inter = inter < T(0) ? T(0) : (inter > cap ? cap : inter);
  return inter / (area_a + area_b - inter);
}

}  // namespace detops
