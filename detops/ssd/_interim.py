"""TEMPORARY plain-PyTorch stand-ins for pieces other branches deliver (priors, loss, NMS, data, metrics).

Imported only through detops/ssd/_deps.py. Delete once the real modules are merged.
"""

import math
import os
import random
import xml.etree.ElementTree as ET
from itertools import product

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image, ImageDraw

import detops

# ----------------------------------------------------------------------------------------------- priors


def prior_boxes(fmap_dims, obj_scales, aspect_ratios, device=None):
    """Priors [P, 4] cxcywh, tutorial order (map, row, column, aspect ratio; extra prior after ratio 1)."""
    priors = []
    k = len(fmap_dims)
    for i in range(k):
        d = fmap_dims[i]
        for r, c in product(range(d), repeat=2):
            cx, cy = (c + 0.5) / d, (r + 0.5) / d
            for ar in aspect_ratios[i]:
                s = obj_scales[i]
                priors.append([cx, cy, s * math.sqrt(ar), s / math.sqrt(ar)])
                if ar == 1.0:
                    extra = math.sqrt(s * obj_scales[i + 1]) if i + 1 < k else 1.0
                    priors.append([cx, cy, extra, extra])
    return torch.tensor(priors, dtype=torch.float32, device=device)


def ssd300_prior_boxes(device=None):
    return prior_boxes(
        [38, 19, 10, 5, 3, 1],
        [0.1, 0.2, 0.375, 0.55, 0.725, 0.9],
        [[1.0, 2.0, 0.5], [1.0, 2.0, 3.0, 0.5, 1 / 3], [1.0, 2.0, 3.0, 0.5, 1 / 3],
         [1.0, 2.0, 3.0, 0.5, 1 / 3], [1.0, 2.0, 0.5], [1.0, 2.0, 0.5]],
        device=device,
    )


# ------------------------------------------------------------------------------------------------- loss


class MultiBoxLoss(torch.nn.Module):
    def __init__(self, priors_cxcy, threshold=0.5, neg_pos_ratio=3, alpha=1.0, loc_loss="smooth_l1"):
        super().__init__()
        self.register_buffer("priors_cxcy", priors_cxcy, persistent=False)
        self.threshold, self.neg_pos_ratio, self.alpha, self.loc_loss = threshold, neg_pos_ratio, alpha, loc_loss

    def forward(self, predicted_locs, predicted_scores, boxes, labels):
        priors_xy = detops.box_convert(self.priors_cxcy, "cxcywh", "xyxy")
        B, P, C = predicted_scores.shape
        true_locs = torch.zeros(B, P, 4, device=predicted_locs.device)
        true_classes = torch.zeros(B, P, dtype=torch.long, device=predicted_locs.device)
        for i in range(B):
            if boxes[i].numel() == 0:
                continue
            ov = detops.box_iou(boxes[i], priors_xy)  # [G, P]
            ov_p, obj_p = ov.max(dim=0)
            _, prior_o = ov.max(dim=1)
            obj_p[prior_o] = torch.arange(len(prior_o), device=ov.device)
            ov_p[prior_o] = 1.0
            lab = labels[i][obj_p]
            lab[ov_p < self.threshold] = 0
            true_classes[i] = lab
            true_locs[i] = detops.encode_boxes(boxes[i][obj_p], priors_xy, (10.0, 10.0, 5.0, 5.0))
        pos = true_classes != 0
        n_pos = pos.sum(dim=1)
        fn = F.l1_loss if self.loc_loss == "l1" else F.smooth_l1_loss
        loc = fn(predicted_locs[pos], true_locs[pos]) if pos.any() else predicted_locs.sum() * 0
        conf_all = F.cross_entropy(predicted_scores.reshape(-1, C), true_classes.reshape(-1), reduction="none").view(B, P)
        conf_pos = conf_all[pos].sum()
        conf_neg = conf_all.clone()
        conf_neg[pos] = 0
        conf_neg, _ = conf_neg.sort(dim=1, descending=True)
        hard = torch.arange(P, device=conf_all.device)[None] < (self.neg_pos_ratio * n_pos)[:, None]
        conf = (conf_neg[hard].sum() + conf_pos) / n_pos.sum().clamp(min=1).float()
        return conf + self.alpha * loc


# -------------------------------------------------------------------------------------------------- NMS


def multiclass_nms(boxes, scores, score_threshold=0.05, iou_threshold=0.5, max_detections=100, *,
                   background_class=None, max_candidates_per_class=None):
    B, P, C = scores.shape
    K = max_detections
    out_b = boxes.new_zeros(B, K, 4)
    out_s = scores.new_zeros(B, K)
    out_l = torch.full((B, K), -1, dtype=torch.long, device=scores.device)
    counts = torch.zeros(B, dtype=torch.long, device=scores.device)
    for i in range(B):
        s = scores[i].clone()
        if background_class is not None:
            s[:, background_class] = -1
        pi, ci = (s > score_threshold).nonzero(as_tuple=True)
        bx = boxes[i][pi] if boxes.dim() == 3 else boxes[i][pi, ci]
        sc = s[pi, ci]
        keep = torchvision.ops.batched_nms(bx.float(), sc.float(), ci, iou_threshold)[:K]
        n = len(keep)
        out_b[i, :n], out_s[i, :n], out_l[i, :n], counts[i] = bx[keep], sc[keep], ci[keep], n
    return out_b, out_s, out_l, counts


# ------------------------------------------------------------------------------------------------- data

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
SYNTHETIC_CLASSES = ("circle", "square", "triangle", "cross")


def generate_voc_dataset(root, n_train=200, n_test=50, image_size=160, seed=0, classes=SYNTHETIC_CLASSES):
    rng = random.Random(seed)
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    ids = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for j in range(n):
            iid = f"{split}_{j:05d}"
            ids[split].append(iid)
            bg = tuple(rng.randint(0, 255) for _ in range(3))
            img = Image.new("RGB", (image_size, image_size), bg)
            dr = ImageDraw.Draw(img)
            objs = []
            for _ in range(rng.randint(1, 4)):
                c = rng.randrange(len(classes))
                s = rng.randint(image_size // 8, image_size // 2)
                x, y = rng.randint(0, image_size - s), rng.randint(0, image_size - s)
                col = tuple(rng.randint(0, 255) for _ in range(3))
                if classes[c] == "circle":
                    dr.ellipse([x, y, x + s, y + s], fill=col)
                elif classes[c] == "square":
                    dr.rectangle([x, y, x + s, y + s], fill=col)
                elif classes[c] == "triangle":
                    dr.polygon([(x, y + s), (x + s, y + s), (x + s / 2, y)], fill=col)
                else:
                    t = s // 3
                    dr.rectangle([x + t, y, x + s - t, y + s], fill=col)
                    dr.rectangle([x, y + t, x + s, y + s - t], fill=col)
                objs.append((classes[c], x, y, x + s, y + s))
            img.save(os.path.join(root, "JPEGImages", iid + ".jpg"), quality=95)
            a = ET.Element("annotation")
            for name, x1, y1, x2, y2 in objs:
                o = ET.SubElement(a, "object")
                ET.SubElement(o, "name").text = name
                ET.SubElement(o, "difficult").text = "0"
                bb = ET.SubElement(o, "bndbox")
                for k, v in zip(("xmin", "ymin", "xmax", "ymax"), (x1, y1, x2, y2)):
                    ET.SubElement(bb, k).text = str(v)
            ET.ElementTree(a).write(os.path.join(root, "Annotations", iid + ".xml"))
    ids["trainval"] = ids["train"]
    for split, lst in ids.items():
        with open(os.path.join(root, "ImageSets/Main", split + ".txt"), "w") as f:
            f.write("\n".join(lst) + "\n")
    return root


class VOCDataset(torch.utils.data.Dataset):
    def __init__(self, root, split="train", transforms=None, keep_difficult=False, classes=VOC_CLASSES,
                 skip_corrupt=True):
        self.root, self.transforms, self.keep_difficult = root, transforms, keep_difficult
        self.classes = tuple(classes)
        with open(os.path.join(root, "ImageSets/Main", split + ".txt")) as f:
            self.ids = [line.strip() for line in f if line.strip()]

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        iid = self.ids[i]
        image = torchvision.io.decode_image(os.path.join(self.root, "JPEGImages", iid + ".jpg"),
                                            mode=torchvision.io.ImageReadMode.RGB)
        boxes, labels, diff = [], [], []
        for o in ET.parse(os.path.join(self.root, "Annotations", iid + ".xml")).getroot().iter("object"):
            d = int(o.findtext("difficult", "0"))
            if d and not self.keep_difficult:
                continue
            bb = o.find("bndbox")
            boxes.append([float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
            labels.append(self.classes.index(o.findtext("name").strip()) + 1)
            diff.append(d)
        boxes = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
        labels = torch.tensor(labels, dtype=torch.int64)
        diff = torch.tensor(diff, dtype=torch.uint8)
        if self.transforms is not None:
            return self.transforms(image, boxes, labels, diff)
        h, w = image.shape[-2:]
        return image.float() / 255, boxes / torch.tensor([w, h, w, h], dtype=torch.float32), labels, diff


def collate_fn(batch):
    images, boxes, labels, diffs = zip(*batch)
    return torch.stack(images), list(boxes), list(labels), list(diffs)


def ssd_transforms(train, size=300, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    def t(image, boxes, labels, difficulties):
        h, w = image.shape[-2:]
        if train and random.random() < 0.5:
            image = image.flip(-1)
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
        x = F.interpolate(image[None].float() / 255, size=(size, size), mode="bilinear", align_corners=False)[0]
        boxes = boxes / torch.tensor([w, h, w, h], dtype=torch.float32)
        x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        return x, boxes, labels, difficulties

    return t


# ---------------------------------------------------------------------------------------------- metrics


def voc_map(det_boxes, det_labels, det_scores, true_boxes, true_labels, true_difficulties, n_classes,
            method="voc07"):
    aps = {}
    for c in range(1, n_classes):
        gts = {}
        n_gt = 0
        for i, (tb, tl, td) in enumerate(zip(true_boxes, true_labels, true_difficulties)):
            m = tl == c
            gts[i] = (tb[m], td[m].bool(), torch.zeros(int(m.sum()), dtype=torch.bool))
            n_gt += int((~td[m].bool()).sum())
        dets = []
        for i, (db, dl, ds) in enumerate(zip(det_boxes, det_labels, det_scores)):
            m = dl == c
            for b, s in zip(db[m], ds[m]):
                dets.append((float(s), i, b))
        dets.sort(key=lambda d: -d[0])
        tp = np.zeros(len(dets))
        fp = np.zeros(len(dets))
        for k, (_, i, b) in enumerate(dets):
            gb, gd, used = gts[i]
            if len(gb) == 0:
                fp[k] = 1
                continue
            ov, j = detops.box_iou(b[None].float(), gb.float())[0].max(0)
            if ov.item() > 0.5:
                if gd[j]:
                    continue
                if not used[j]:
                    used[j] = True
                    tp[k] = 1
                else:
                    fp[k] = 1
            else:
                fp[k] = 1
        if n_gt == 0:
            aps[c] = 0.0
            continue
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        rec = tp / n_gt
        prec = tp / np.maximum(tp + fp, 1e-12)
        if method == "voc07":
            ap = 0.0
            for t in np.arange(0, 1.1, 0.1):
                p = prec[rec >= t].max() if (rec >= t).any() else 0.0
                ap += p / 11
        else:
            mrec = np.concatenate([[0], rec, [1]])
            mpre = np.concatenate([[0], prec, [0]])
            for k in range(len(mpre) - 2, -1, -1):
                mpre[k] = max(mpre[k], mpre[k + 1])
            idx = np.where(mrec[1:] != mrec[:-1])[0]
            ap = float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))
        aps[c] = float(ap)
    return float(np.mean(list(aps.values()))) if aps else 0.0, aps
