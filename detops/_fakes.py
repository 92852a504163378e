"""Fake (meta) kernels for every torch.ops.detops op: output shapes and dtypes without computing anything,
so torch.compile, torch.export and FakeTensor tracing work. One section per op family; each fake mirrors
the shape rules of its kernel's prepare_* function in csrc/ops/<family>.cpp."""

import torch
from torch.library import register_fake

from detops.reference.boxes import result_dtype


def _box_shape(lead, box_dim):
    # "[N, 4]" or "[N, 5] (cx, cy, w, h, angle)": the box shape an error names, as the kernels' checks.
    return f"[{lead}{box_dim}]" + (" (cx, cy, w, h, angle)" if box_dim == 5 else "")


def _check_boxes(t, name, min_dim=1, box_dim=4):
    torch._check(
        t.dim() >= min_dim and t.shape[-1] == box_dim,
        lambda: f"{name} must have shape {_box_shape('..., ', box_dim)}, got {list(t.shape)}",
    )


# ---- boxes (csrc/ops/boxes.cpp) ----


@register_fake("detops::box_overlap")
def _box_overlap_fake(boxes1, boxes2, mode="iou", eps=1e-7, fmt="xyxy"):
    _check_boxes(boxes1, "boxes1", 2)
    _check_boxes(boxes2, "boxes2", 2)
    lead = torch.broadcast_shapes(boxes1.shape[:-2], boxes2.shape[:-2])
    shape = (*lead, boxes1.shape[-2], boxes2.shape[-2])
    return boxes1.new_empty(shape, dtype=result_dtype(boxes1.dtype, False))


@register_fake("detops::box_iou_aligned")
def _box_iou_aligned_fake(boxes1, boxes2, mode="iou", eps=1e-7):
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    return boxes1.new_empty(boxes1.shape[:-1], dtype=result_dtype(boxes1.dtype, True))


# ---- coding (csrc/ops/coding.cpp) ----


@register_fake("detops::encode_boxes")
def _encode_boxes_fake(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    _check_boxes(boxes, "boxes")
    _check_boxes(anchors, "anchors")
    return boxes.new_empty(torch.broadcast_shapes(boxes.shape, anchors.shape))


@register_fake("detops::decode_boxes")
def _decode_boxes_fake(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0), clamp=None):
    _check_boxes(deltas, "deltas")
    _check_boxes(anchors, "anchors")
    return deltas.new_empty(torch.broadcast_shapes(deltas.shape, anchors.shape))


# ---- matching and hard negatives (csrc/ops/matching.cpp, csrc/ops/hard_negatives.cpp) ----


@register_fake("detops::match_priors")
def _match_priors_fake(gt_boxes, gt_labels, counts, priors_cxcy, threshold=0.5, weights=(10.0, 10.0, 5.0, 5.0)):
    torch._check(gt_boxes.dim() == 3 and gt_boxes.shape[2] == 4, lambda: "gt_boxes must have shape [B, G, 4]")
    torch._check(priors_cxcy.dim() == 2 and priors_cxcy.shape[1] == 4, lambda: "priors_cxcy must have shape [P, 4]")
    B, P = gt_boxes.shape[0], priors_cxcy.shape[0]
    labels = gt_boxes.new_empty((B, P), dtype=torch.long)
    matched = gt_boxes.new_empty((B, P), dtype=torch.long)
    return labels, matched, gt_boxes.new_empty((B, P, 4))


@register_fake("detops::match_boxes")
def _match_boxes_fake(match_quality_matrix, high_threshold, low_threshold, allow_low_quality_matches=False):
    q = match_quality_matrix
    torch._check(q.dim() >= 2, lambda: "match_quality_matrix must have shape [..., G, P]")
    return q.new_empty((*q.shape[:-2], q.shape[-1]), dtype=torch.long)


@register_fake("detops::hard_negative_mining")
def _hard_negative_mining_fake(conf_loss, positives, neg_pos_ratio=3):
    torch._check(conf_loss.dim() == 2, lambda: "conf_loss must have shape [B, P]")
    return positives.new_empty(conf_loss.shape, dtype=torch.bool)


@register_fake("detops::softmax_cross_entropy")
def _softmax_cross_entropy_fake(logits, targets, ignore_index=-100):
    torch._check(logits.dim() >= 1 and logits.shape[-1] > 0, lambda: "logits must have shape [..., C] with C >= 1")
    torch._check(targets.shape == logits.shape[:-1], lambda: "targets must have the shape of logits without C")
    return logits.new_empty(targets.shape)


# ---- nms (csrc/ops/nms.cpp) ----


def _check_nms_args(boxes, scores, box_dim=4):
    torch._check(
        boxes.dim() == 2 and boxes.shape[1] == box_dim,
        lambda: f"boxes must have shape {_box_shape('N, ', box_dim)}, got {list(boxes.shape)}",
    )
    torch._check(scores.dim() == 1 and scores.shape[0] == boxes.shape[0], lambda: "scores must have shape [N]")


def _dynamic_index_tensor(boxes):
    n = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((n,), dtype=torch.int64)


@register_fake("detops::nms")
def _nms_fake(boxes, scores, iou_threshold):
    _check_nms_args(boxes, scores)
    return _dynamic_index_tensor(boxes)


@register_fake("detops::batched_nms")
def _batched_nms_fake(boxes, scores, idxs, iou_threshold):
    _check_nms_args(boxes, scores)
    return _dynamic_index_tensor(boxes)


def multiclass_output_size(priors, classes, max_detections, background_class=-1, max_candidates_per_class=-1):
    """K of multiclass_nms' padded outputs: max_detections, clamped to the candidates an image can have
    (the classes searched times the candidates each keeps), as prepare_multiclass does."""
    cap = priors if max_candidates_per_class < 0 else min(priors, max_candidates_per_class)
    searched = max(0, classes - (1 if background_class >= 0 else 0))
    return min(max_detections, searched * cap)


def _multiclass_fake(scores, max_detections, background_class, max_candidates_per_class, box_dim):
    torch._check(scores.dim() == 3, lambda: f"scores must have shape [B, P, C], got {list(scores.shape)}")
    b, p, c = scores.shape
    k = multiclass_output_size(p, c, max_detections, background_class, max_candidates_per_class)
    return (
        scores.new_empty((b, k, box_dim), dtype=scores.dtype),
        scores.new_empty((b, k), dtype=scores.dtype),
        scores.new_empty((b, k), dtype=torch.int64),
        scores.new_empty((b,), dtype=torch.int64),
    )


def _soft_fake(boxes, scores, box_dim):
    _check_nms_args(boxes, scores, box_dim)
    n = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((n,), dtype=torch.int64), scores.new_empty((n,))


@register_fake("detops::multiclass_nms")
def _multiclass_nms_fake(
    boxes, scores, score_threshold, iou_threshold, max_detections, background_class=-1, max_candidates_per_class=-1
):
    return _multiclass_fake(scores, max_detections, background_class, max_candidates_per_class, 4)


@register_fake("detops::soft_nms")
def _soft_nms_fake(boxes, scores, iou_threshold=0.3, sigma=0.5, score_threshold=0.001, method="gaussian"):
    return _soft_fake(boxes, scores, 4)


# ---- yolo (csrc/ops/yolo.cpp) ----


@register_fake("detops::yolo_candidates")
def _yolo_candidates_fake(prediction, conf_thres, objectness=True):
    first_class = 5 if objectness else 4
    torch._check(
        prediction.dim() == 3 and prediction.shape[2] > first_class,
        lambda: f"prediction must have shape [B, N, {first_class} + C], got {list(prediction.shape)}",
    )
    k = torch.library.get_ctx().new_dynamic_size()
    return (
        prediction.new_empty((k,), dtype=torch.int64),
        prediction.new_empty((k, 4)),
        prediction.new_empty((k,)),
        prediction.new_empty((k,), dtype=torch.int64),
    )


# ---- metrics (csrc/ops/metrics.cpp) ----


@register_fake("detops::coco_match")
def _coco_match_fake(dt_boxes, gt_boxes, gt_crowd, gt_ignore, dt_offsets, gt_offsets, iou_thresholds):
    torch._check(
        dt_boxes.dim() == 2 and dt_boxes.shape[1] == 4,
        lambda: f"dt_boxes must have shape [D, 4], got {list(dt_boxes.shape)}",
    )
    torch._check(gt_ignore.dim() == 2, lambda: f"gt_ignore must have shape [A, G], got {list(gt_ignore.shape)}")
    return dt_boxes.new_empty((gt_ignore.shape[0], len(iou_thresholds), dt_boxes.shape[0]), dtype=torch.int64)


@register_fake("detops::coco_accumulate")
def _coco_accumulate_fake(status, scores, rank, class_offsets, positives, rec_thresholds, max_detections):
    torch._check(status.dim() == 3, lambda: f"status must have shape [A, T, D], got {list(status.shape)}")
    A, T = status.shape[0], status.shape[1]
    K, R, M = class_offsets.shape[0] - 1, rec_thresholds.shape[0], len(max_detections)
    precision = scores.new_empty((T, R, K, A, M), dtype=torch.float64)
    recall = scores.new_empty((T, K, A, M), dtype=torch.float64)
    return precision, recall, scores.new_empty((T, R, K, A, M), dtype=torch.float64)


# ---- rotated (csrc/ops/rotated.cpp) ----


@register_fake("detops::box_iou_rotated")
def _box_iou_rotated_fake(boxes1, boxes2):
    _check_boxes(boxes1, "boxes1", 2, box_dim=5)
    _check_boxes(boxes2, "boxes2", 2, box_dim=5)
    lead = torch.broadcast_shapes(boxes1.shape[:-2], boxes2.shape[:-2])
    shape = (*lead, boxes1.shape[-2], boxes2.shape[-2])
    return boxes1.new_empty(shape, dtype=result_dtype(boxes1.dtype, False))


@register_fake("detops::box_iou_rotated_aligned")
def _box_iou_rotated_aligned_fake(boxes1, boxes2):
    _check_boxes(boxes1, "boxes1", box_dim=5)
    _check_boxes(boxes2, "boxes2", box_dim=5)
    return boxes1.new_empty(boxes1.shape[:-1], dtype=result_dtype(boxes1.dtype, True))


@register_fake("detops::nms_rotated")
def _nms_rotated_fake(boxes, scores, iou_threshold):
    _check_nms_args(boxes, scores, 5)
    return _dynamic_index_tensor(boxes)


@register_fake("detops::batched_nms_rotated")
def _batched_nms_rotated_fake(boxes, scores, idxs, iou_threshold):
    _check_nms_args(boxes, scores, 5)
    return _dynamic_index_tensor(boxes)


@register_fake("detops::multiclass_nms_rotated")
def _multiclass_nms_rotated_fake(
    boxes, scores, score_threshold, iou_threshold, max_detections, background_class=-1, max_candidates_per_class=-1
):
    return _multiclass_fake(scores, max_detections, background_class, max_candidates_per_class, 5)


@register_fake("detops::soft_nms_rotated")
def _soft_nms_rotated_fake(boxes, scores, iou_threshold=0.3, sigma=0.5, score_threshold=0.001, method="gaussian"):
    return _soft_fake(boxes, scores, 5)


# ---- focal loss (csrc/ops/focal_loss.cpp) ----


def _focal_dtype(inputs, targets):
    torch._check(inputs.dtype.is_floating_point, lambda: f"inputs must be a floating-point tensor, got {inputs.dtype}")
    torch._check(
        targets.dtype.is_floating_point, lambda: f"targets must be a floating-point tensor, got {targets.dtype}"
    )
    torch._check(
        targets.shape == inputs.shape,
        lambda: f"targets must have the shape of inputs {list(inputs.shape)}, got {list(targets.shape)}",
    )
    return torch.promote_types(inputs.dtype, targets.dtype)


@register_fake("detops::sigmoid_focal_loss")
def _sigmoid_focal_loss_fake(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    dtype = _focal_dtype(inputs, targets)
    return inputs.new_empty(inputs.shape if reduction == "none" else (), dtype=dtype)


@register_fake("detops::sigmoid_focal_loss_backward")
def _sigmoid_focal_loss_backward_fake(grad, inputs, targets, alpha, gamma, reduction):
    return inputs.new_empty(inputs.shape, dtype=_focal_dtype(inputs, targets))
